/** Did-you-mean suggestions shared by the argv parser and the topology loader. */

/**
 * Edit distance (insertions, deletions, substitutions) between two strings,
 * in two rows reused (h48 P2: a row a character was 2 ms of a server's loop
 * for a 1 KB unknown name).
 */
export function levenshtein(a: string, b: string): number {
  if (a === b) return 0;
  if (a.length === 0) return b.length;
  if (b.length === 0) return a.length;
  let previous = new Uint32Array(b.length + 1).map((_, i) => i);
  let current = new Uint32Array(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    current[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost);
    }
    [previous, current] = [current, previous];
  }
  return previous[b.length];
}

/**
 * The candidate closest to `word`: within edit distance 2 (1 for words of
 * three letters or fewer, so short typos do not match everything), or one
 * that starts with `word` (or that `word` starts with), which ranks between
 * one edit and two. Case-insensitive. Its cost does not grow with the
 * word's length past the candidates' (a word from a peer or a file may be
 * megabytes).
 *
 * @returns the best candidate, or undefined when none is close enough
 */
export function suggest(word: string, candidates: Iterable<string>): string | undefined {
  const needle = word.toLowerCase();
  const limit = needle.length <= 3 ? 1 : 2;
  let best: string | undefined;
  let bestScore = Infinity;
  for (const candidate of candidates) {
    const hay = candidate.toLowerCase();
    if (hay === needle) return candidate;
    // Lengths further apart than the limit cannot be within it: no distance
    // to compute (h48 P2, P7: an 8 MiB word took 8 s here, a 1 KB unknown
    // name 2 ms of a server's loop), so a hint costs O(1) a candidate.
    const distance = Math.abs(needle.length - hay.length) > limit
      ? Infinity
      : levenshtein(needle, hay);
    const prefix = needle.length >= 2 && (hay.startsWith(needle) || needle.startsWith(hay));
    // A prefix ranks between one edit and two: "work" means "worker-port", not "port".
    let score = distance <= limit ? distance : Infinity;
    if (prefix) score = Math.min(score, 1.5);
    if (score < bestScore) {
      best = candidate;
      bestScore = score;
    }
  }
  return best;
}

/**
 * A ready-to-append hint: ` (did you mean "backends"?)`, or "" when nothing
 * is close. `format` renders the candidate (default: in double quotes).
 */
export function didYouMean(
  word: string,
  candidates: Iterable<string>,
  options: { format?: (candidate: string) => string } = {},
): string {
  const best = suggest(word, candidates);
  if (best === undefined) return "";
  const format = options.format ?? ((c: string) => JSON.stringify(c));
  return ` (did you mean ${format(best)}?)`;
}
