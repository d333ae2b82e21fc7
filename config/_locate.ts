/**
 * Finds the line of a table or key in a TOML text, for error messages. The
 * parser does not keep positions, so this scans the text for `[table]`,
 * `[[array]]` headers and `key =` lines. The Nth `[[server]]` header is
 * section "server#N" (from 0), a `[defaults]` header section "defaults", and
 * keys before any header section "".
 *
 * It is a best effort: keys inside inline tables are not found, and the caller
 * falls back to the header of the section.
 */

const SEGMENT = String.raw`(?:"(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)`;
const KEY_LINE = new RegExp(String.raw`^\s*(${SEGMENT})(?:\s*\.\s*${SEGMENT})*\s*=`);
const ARRAY_HEADER = /^\s*\[\[\s*(.+?)\s*\]\]/;
const TABLE_HEADER = /^\s*\[\s*(.+?)\s*\]/;

/**
 * "server", ' "a" . b ' -> "a.b": a header path without quotes or spaces; a
 * basic string's escapes decoded (`"\u001b"` is the key ESC, as the parser
 * reads it: h48 P17 found such a key at its table's line).
 */
function normalisePath(path: string): string {
  return path.split(".").map((part) => {
    const bare = part.trim();
    if (bare.startsWith("'") && bare.endsWith("'") && bare.length >= 2) return bare.slice(1, -1);
    if (!bare.startsWith('"') || !bare.endsWith('"') || bare.length < 2) return bare;
    return unescapeBasic(bare.slice(1, -1));
  }).join(".");
}

/** A TOML basic string's body with its escapes decoded (itself when they are not valid). */
function unescapeBasic(body: string): string {
  if (!body.includes("\\")) return body;
  // \UXXXXXXXX and \e are TOML's, not JSON's.
  const json = body
    .replace(/\\U([0-9A-Fa-f]{8})/g, (_, hex: string) => {
      const cp = parseInt(hex, 16);
      return cp <= 0x10ffff ? JSON.stringify(String.fromCodePoint(cp)).slice(1, -1) : "?";
    })
    .replace(/\\e/g, "\\u001b");
  try {
    return JSON.parse(`"${json}"`);
  } catch {
    return body;
  }
}

export class LineLocator {
  #headers = new Map<string, number>();
  #keys = new Map<string, number>();

  constructor(text: string) {
    const counts = new Map<string, number>();
    let section = "";
    let inString: string | undefined; // the delimiter of an open multi-line string
    const lines = text.split(/\r?\n/);
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      const number = i + 1;
      if (inString !== undefined) {
        if (line.includes(inString)) inString = undefined;
        continue;
      }
      const array = ARRAY_HEADER.exec(line);
      const table = array ? null : TABLE_HEADER.exec(line);
      if (array) {
        const path = normalisePath(array[1]);
        const index = counts.get(path) ?? 0;
        counts.set(path, index + 1);
        section = `${path}#${index}`;
        this.#remember(this.#headers, section, number);
      } else if (table) {
        section = normalisePath(table[1]);
        this.#remember(this.#headers, section, number);
      } else {
        const key = KEY_LINE.exec(line);
        if (key) this.#remember(this.#keys, `${section}\0${normalisePath(key[1])}`, number);
      }
      for (const delimiter of ['"""', "'''"]) {
        if (line.split(delimiter).length % 2 === 0) inString = delimiter;
      }
    }
  }

  #remember(map: Map<string, number>, id: string, line: number): void {
    if (!map.has(id)) map.set(id, line);
  }

  /** The line of the section's header (undefined for the root or when not found). */
  header(section: string): number | undefined {
    return this.#headers.get(section);
  }

  /** The line of `key` in `section`, or undefined when not found. */
  key(section: string, key: string): number | undefined {
    return this.#keys.get(`${section}\0${key}`);
  }
}
