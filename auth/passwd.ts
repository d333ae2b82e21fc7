/**
 * `dist passwd FILE USER`: writes a user's password hash (or, with
 * `--token`, a new token's digest) into a users file, making the file or
 * the user's table when missing and keeping every other line as written
 * (comments, permissions). The secret is read from the terminal without
 * echo (asked twice), or as the first line of stdin when piped; it is
 * never taken from the command line, where `ps` would show it.
 */
import { readUserFile, UsageError, USERS_RULE } from "../config/mod.ts";
import { DEFAULT_COST, hashPassword, hashToken, newToken } from "./passwords.ts";
import { isUserName, parseUsers } from "./users.ts";

export const PASSWD_USAGE = [
  "Usage: dist passwd FILE USER [--token] [--cost LN]",
  "",
  "Sets USER's password in the users file FILE (made if missing; other lines are kept).",
  "The password is asked twice on a terminal, or read as the first line of stdin.",
  "",
  "  --token      Make USER a new random token instead: printed once, only keys made from it are stored",
  `  --cost LN    scrypt cost, N = 2^LN, 10 to 17 (default ${DEFAULT_COST.ln}; each check takes 2^LN·1 KiB)`,
  "  -h, --help   This help",
].join("\n");

/** Runs `dist passwd` with its arguments; resolves with the exit code. */
export async function passwd(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(PASSWD_USAGE);
    return 0;
  }
  const positional: string[] = [];
  let token = false;
  let ln = DEFAULT_COST.ln;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--token") token = true;
    else if (a === "--cost" || a.startsWith("--cost=")) {
      const v = a === "--cost" ? argv[++i] : a.slice("--cost=".length);
      ln = Number(v);
      // A dialer derives at most N = 2^17 (r = 8) for a challenge (wire/challenge.ts).
      if (!Number.isInteger(ln) || ln < 10 || ln > 17) {
        throw new UsageError(`--cost must be a whole number from 10 to 17, not ${v}`);
      }
    } else if (a.startsWith("-")) {
      throw new UsageError(`passwd: unknown flag ${a}\n${PASSWD_USAGE}`);
    } else positional.push(a);
  }
  if (positional.length !== 2) throw new UsageError(`passwd needs FILE and USER\n${PASSWD_USAGE}`);
  const [file, user] = positional;
  if (!isUserName(user)) {
    throw new UsageError(
      `${JSON.stringify(user)}: a user name is 1 to 128 printable characters without spaces`,
    );
  }
  let text = "";
  try {
    text = await readUserFile("users file", file, { ...USERS_RULE, secret: undefined }); // Bounded (h48 P1).
  } catch (err) {
    if (err instanceof UsageError) throw err;
    if (!(err instanceof Deno.errors.NotFound)) {
      throw new UsageError(`Cannot read users file ${file}: ${(err as Error).message}`);
    }
  }
  parseUsers(text, file); // Refuse to edit a file that does not load.
  let secret: string;
  let line: string;
  if (token) {
    secret = newToken();
    line = `token = "${hashToken(secret)}"`;
  } else {
    secret = await readPassword(user);
    line = `password = "${await hashPassword(secret, { ...DEFAULT_COST, ln })}"`;
  }
  const updated = setKey(text, user, token ? "token" : "password", line);
  parseUsers(updated, file); // What is written loads.
  const tmp = `${file}.tmp-${Deno.pid}`;
  await Deno.writeTextFile(tmp, updated, { mode: 0o600 });
  await Deno.rename(tmp, file);
  if (token) {
    // The only time it is shown: the file keeps its digest.
    console.log(secret);
    console.error(
      `dist passwd: ${user}'s new token is above (stored in ${file} as keys that check it, not as the token)`,
    );
  } else {
    console.error(`dist passwd: ${user}'s password set in ${file}`);
  }
  return 0;
}

/** The TOML key of a user's table: bare when it can be, else quoted. */
function tableKey(user: string): string {
  return /^[A-Za-z0-9_-]+$/.test(user) ? user : JSON.stringify(user);
}

/**
 * `text` with `key = …` of `[users.USER]` set to `line`: replaced where it
 * is, else added under the table's header, else a new table at the end.
 */
export function setKey(text: string, user: string, key: string, line: string): string {
  const lines = text === "" ? [] : text.replace(/\n$/, "").split("\n");
  const header = new RegExp(
    `^\\s*\\[\\s*users\\s*\\.\\s*(?:${escape(user)}|"${
      escape(JSON.stringify(user).slice(1, -1))
    }"|'${escape(user)}')\\s*\\]\\s*(#.*)?$`,
  );
  const start = lines.findIndex((l) => header.test(l));
  if (start === -1) {
    if (lines.length > 0 && lines.at(-1)!.trim() !== "") lines.push("");
    lines.push(`[users.${tableKey(user)}]`, line);
    return lines.join("\n") + "\n";
  }
  let end = lines.findIndex((l, i) => i > start && /^\s*\[/.test(l));
  if (end === -1) end = lines.length;
  const keyRe = new RegExp(`^\\s*${key}\\s*=`);
  const at = lines.findIndex((l, i) => i > start && i < end && keyRe.test(l));
  if (at !== -1) lines[at] = line;
  else lines.splice(start + 1, 0, line);
  return lines.join("\n") + "\n";
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The password: asked twice without echo on a terminal, else stdin's first line. */
async function readPassword(user: string): Promise<string> {
  if (!Deno.stdin.isTerminal()) {
    const text = new TextDecoder("utf-8", { ignoreBOM: true }).decode(
      await new Response(Deno.stdin.readable).arrayBuffer(),
    );
    const first = text.split(/\r?\n/)[0];
    if (first === "") throw new UsageError("No password on stdin (its first line is the password)");
    return first;
  }
  const first = await ask(`Password for ${user}: `);
  if (first === "") throw new UsageError("Empty password");
  if (await ask("Again: ") !== first) throw new UsageError("The passwords differ");
  return first;
}

/** One line from the terminal, not echoed. */
async function ask(prompt: string): Promise<string> {
  const enc = new TextEncoder();
  await Deno.stderr.write(enc.encode(prompt));
  Deno.stdin.setRaw(true);
  const bytes: number[] = [];
  const buf = new Uint8Array(64);
  try {
    outer: while (true) {
      const n = await Deno.stdin.read(buf);
      if (n === null) break;
      for (const b of buf.subarray(0, n)) {
        if (b === 13 || b === 10) break outer;
        if (b === 3) throw new UsageError("Interrupted");
        if (b === 127 || b === 8) bytes.pop();
        else bytes.push(b);
      }
    }
  } finally {
    Deno.stdin.setRaw(false);
    await Deno.stderr.write(enc.encode("\n"));
  }
  return new TextDecoder("utf-8", { ignoreBOM: true }).decode(new Uint8Array(bytes));
}
