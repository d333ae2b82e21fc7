/**
 * A mistake by the user: an unknown flag, a bad value, an invalid topology
 * file. main.ts prints `dist: <message>` without a stack trace and exits 2.
 *
 * Messages are one line: capital first letter, no final period, detail after
 * a colon.
 */
export class UsageError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UsageError";
  }
}

/** One problem of a topology file: its line (when known) and what is wrong. */
export interface TopologyProblem {
  line?: number;
  /** `role.key: what is wrong`, without the file and the line. */
  text: string;
}

/** Most problems listed, one per line; the rest are counted. */
const MAX_PROBLEMS = 20;

/**
 * Throws `problems`, in line order, one per line of the message (each line
 * names the file, so each reads alone, as a compiler's do); at most 20,
 * the rest counted.
 *
 * @throws {UsageError} when there is any problem
 */
export function throwProblems(file: string, problems: readonly TopologyProblem[]): void {
  if (problems.length === 0) return;
  const sorted = problems.toSorted((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity));
  const lines = sorted.slice(0, MAX_PROBLEMS).map(({ line, text }) =>
    `Cannot load ${file}: ${line === undefined ? "" : `line ${line}: `}${text}`
  );
  const rest = sorted.length - lines.length;
  if (rest > 0) lines.push(`Cannot load ${file}: ${rest} more problems not shown`);
  throw new UsageError(lines.join("\n"));
}
