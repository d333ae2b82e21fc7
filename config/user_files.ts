/**
 * One reader for every file a user names (h48 P1): `--token-file`,
 * `--password-file`, `--users`, the `--tls-*` PEM files, `--config`, the
 * topology of `dist up`/`export`/`status`, `dist passwd`'s users file and
 * `dist cert`'s CA. It opens the file once, checks a secrets file's owner
 * and mode on that handle (N9, config/owner.ts), and reads at most its
 * bound + 1 bytes: a file past its bound (`/dev/zero`, a log file named by
 * mistake, a pipe that never ends) is refused, `dist: …` and exit 2, where a
 * whole read took the machine's memory. A pipe is a fair file
 * (`--token-file <(pass show dist)`): not refused for not being regular;
 * and since a pipe can be read once, what was read of one that is not a
 * regular file (or why it could not be) is kept by path for the next reader
 * in the process (the token is read by the dialer's and the listener's
 * settings alike). A regular file is read afresh each time.
 *
 * {@link readUserFile} reads asynchronously, so that SIGTERM still stops a
 * read that blocks (a FIFO without a writer); main.ts reads a role's files
 * so before it runs ({@link prefetchUserFiles}), and the synchronous
 * {@link readUserFileSync} of the role's settings then takes the text read.
 * As HAProxy and Mosquitto bound what they read of their files.
 */
import { UsageError } from "./errors.ts";
import { parse } from "smol-toml";
import { checkSecretInfo } from "./owner.ts";

const KIB = 1024;
const MIB = 1024 * KIB;

/** How a named file is read. */
export interface FileRule {
  /** The most bytes it may hold. */
  max: number;
  /** What it holds, for the refusal: `a token or password`. */
  holds: string;
  /** A secrets file: its owner and mode are checked (N9); `private` for a key, token or password. */
  secret?: { private: boolean; mounted?: boolean };
  /** The secret a text holds inline (`token`), if any: then others may not read it (h48b V4). */
  inline?: (text: string) => string | undefined;
}

/** A token or password (`--token-file`, `--password-file`): 64 KiB. */
export const SECRET_RULE: FileRule = {
  max: 64 * KIB,
  holds: "a token or password",
  secret: { private: true },
};
/** A users file (`--users`, `dist passwd`): 8 MiB (some 40,000 users). */
export const USERS_RULE: FileRule = {
  max: 8 * MIB,
  holds: "a users file",
  secret: { private: false },
};
/** A PEM certificate or CA bundle: 1 MiB (the system's bundle is some 200 KiB). */
export const PEM_RULE: FileRule = { max: 1 * MIB, holds: "a PEM certificate file" };
/**
 * A CA bundle a side trusts (`--tls-ca`, `--tls-client-ca`): 1 MiB; owner and write checked, not
 * read (a certificate is no secret, but whoever may write a listener's client CA makes any user, N9).
 */
export const CA_RULE: FileRule = { ...PEM_RULE, secret: { private: false } };
/** A PEM private key (`--tls-key`, `--ca-key`): 1 MiB, private. */
export const KEY_RULE: FileRule = {
  max: 1 * MIB,
  holds: "a PEM key file",
  secret: { private: true },
};
/**
 * A topology (`--config`, `dist up FILE`): 4 MiB (256 instances take some 100 KiB). Its owner and
 * mode are checked as a users file's: it names every file N9 checks and may hold the token inline
 * (h48b V4); holding a token or password inline, others may not read it either.
 */
export const TOPOLOGY_RULE: FileRule = {
  max: 4 * MIB,
  holds: "a topology",
  secret: { private: false, mounted: true },
  inline: inlineSecret,
};

/** Keys of a topology whose string value is a secret (spec.ts `secret`). */
const SECRET_KEYS = new Set(["token", "password"]);

/** The first secret key (`token`, `password`) of a TOML text's tables, if any. */
function inlineSecret(text: string): string | undefined {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch {
    return undefined; // Its parser says why.
  }
  const walk = (value: unknown, depth: number): string | undefined => {
    if (typeof value !== "object" || value === null || depth > 32) return undefined;
    for (const [key, v] of Object.entries(value)) {
      if (SECRET_KEYS.has(key) && typeof v === "string" && v !== "") return key;
      const found = walk(v, depth + 1);
      if (found !== undefined) return found;
    }
    return undefined;
  };
  return walk(doc, 0);
}

/** Refuses a text holding a secret inline (`rule.inline`) that others may read. */
function checkInline(
  flag: string,
  path: string,
  info: Deno.FileInfo,
  rule: FileRule,
  text: string,
) {
  if (rule.inline === undefined || info.mode === null || (info.mode & 0o004) === 0) return;
  const key = rule.inline(text);
  if (key === undefined) return;
  const mode = (info.mode & 0o777).toString(8);
  throw new UsageError(
    `${flag} ${path} holds a ${key} inline and may be read by others (mode ${mode}): ` +
      `chmod 600 ${path}, or put the ${key} in a file of its own named by ${key}_file`,
  );
}

/** What was read of a file that is not regular, by path: a pipe gives its text once. */
const taken = new Map<string, { text: string } | { error: unknown }>();

function sizeText(bytes: number): string {
  return bytes >= MIB ? `${bytes / MIB} MiB` : `${bytes / KIB} KiB`;
}

function tooLarge(flag: string, path: string, rule: FileRule): UsageError {
  return new UsageError(
    `${flag} ${path}: more than ${sizeText(rule.max)}, more than ${rule.holds} holds ` +
      "(is it the right file?)",
  );
}

const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

/** One bounded read of an opened file, fed by a sync or an async reader (one rule for both). */
class Bounded {
  readonly #chunks: Uint8Array[] = [];
  #size = 0;
  constructor(readonly flag: string, readonly path: string, readonly rule: FileRule) {}

  /** The next buffer to read into; null once one byte past the bound is in. */
  next(): Uint8Array | null {
    const room = this.rule.max + 1 - this.#size;
    return room > 0 ? new Uint8Array(Math.min(64 * KIB, room)) : null;
  }

  /** Keeps what a read put in `buf`; false at the file's end. */
  took(buf: Uint8Array, n: number | null): boolean {
    if (n === null) return false;
    this.#chunks.push(buf.subarray(0, n));
    this.#size += n;
    return true;
  }

  /** The text read, checked against the bound and (a topology) its inline secrets. */
  text(info: Deno.FileInfo): string {
    if (this.#size > this.rule.max) throw tooLarge(this.flag, this.path, this.rule);
    const all = new Uint8Array(this.#size);
    let at = 0;
    for (const chunk of this.#chunks) {
      all.set(chunk, at);
      at += chunk.length;
    }
    const text = decoder.decode(all);
    checkInline(this.flag, this.path, info, this.rule, text);
    return text;
  }
}

/**
 * The text of `path`, read asynchronously and at most `rule.max` bytes.
 * @param flag how the user named it (`--token-file`, `topology file`)
 * @throws {UsageError} for a file past its bound or (a secrets file) others could plant or read;
 * Deno's error for a file that cannot be opened or read (the caller says which file)
 */
export async function readUserFile(flag: string, path: string, rule: FileRule): Promise<string> {
  const kept = taken.get(path);
  if (kept !== undefined) return keptText(kept);
  const file = await Deno.open(path, { read: true });
  let regular = true;
  try {
    const info = await file.stat();
    regular = info.isFile;
    if (rule.secret) checkSecretInfo(flag, path, info, rule.secret);
    const read = new Bounded(flag, path, rule);
    for (let buf = read.next(); buf !== null && read.took(buf, await file.read(buf));) {
      buf = read.next();
    }
    return keep(path, regular, { text: read.text(info) });
  } catch (error) {
    throw keep(path, regular, { error });
  } finally {
    file.close();
  }
}

/**
 * {@link readUserFile} without waiting: the text a prefetch read (or its
 * error), else read now, synchronously, with the same bound and checks.
 */
export function readUserFileSync(flag: string, path: string, rule: FileRule): string {
  const kept = taken.get(path);
  if (kept !== undefined) return keptText(kept);
  const file = Deno.openSync(path, { read: true });
  let regular = true;
  try {
    const info = file.statSync();
    regular = info.isFile;
    if (rule.secret) checkSecretInfo(flag, path, info, rule.secret);
    const read = new Bounded(flag, path, rule);
    for (let buf = read.next(); buf !== null && read.took(buf, file.readSync(buf));) {
      buf = read.next();
    }
    return keep(path, regular, { text: read.text(info) });
  } catch (error) {
    throw keep(path, regular, { error });
  } finally {
    file.close();
  }
}

function keptText(kept: { text: string } | { error: unknown }): string {
  if ("error" in kept) throw kept.error;
  return kept.text;
}

/** The text read (or the error, to throw), kept first when the file is not regular. */
function keep(path: string, regular: boolean, read: { text: string }): string;
function keep(path: string, regular: boolean, read: { error: unknown }): unknown;
function keep(path: string, regular: boolean, read: { text: string } | { error: unknown }) {
  if (!regular && !taken.has(path)) taken.set(path, read);
  return "error" in read ? read.error : read.text;
}

/**
 * Reads each file asynchronously, keeping a pipe's text (or why it could
 * not be read) for {@link readUserFileSync}; gives up when `signal` is aborted
 * (SIGTERM during a read that blocks), returning false.
 */
export async function prefetchUserFiles(
  files: readonly { flag: string; path: string; rule: FileRule }[],
  signal: AbortSignal,
): Promise<boolean> {
  const all = (async () => {
    for (const { flag, path, rule } of files) {
      try {
        await readUserFile(flag, path, rule); // A pipe's is kept; a regular file is read again.
      } catch {
        // Said by the reader that needs it, in its order.
      }
    }
  })();
  const aborted = new Promise<void>((done) => {
    if (signal.aborted) done();
    signal.addEventListener("abort", () => done(), { once: true });
  });
  await Promise.race([all, aborted]);
  return !signal.aborted;
}

/** A role's options that name files its settings read, with how each is read. */
const FILE_OPTIONS: readonly { key: string; flag: string; rule: FileRule }[] = [
  { key: "tokenFile", flag: "--token-file", rule: SECRET_RULE },
  { key: "passwordFile", flag: "--password-file", rule: SECRET_RULE },
  { key: "users", flag: "Users file", rule: USERS_RULE },
  { key: "tlsCert", flag: "--tls-cert", rule: PEM_RULE },
  { key: "tlsKey", flag: "--tls-key", rule: KEY_RULE },
  { key: "tlsCa", flag: "--tls-ca", rule: CA_RULE },
  { key: "tlsClientCa", flag: "--tls-client-ca", rule: CA_RULE },
];

/** The files a role's options name, for {@link prefetchUserFiles}. */
export function userFilesOf(
  options: Readonly<Record<string, unknown>>,
): { flag: string; path: string; rule: FileRule }[] {
  return FILE_OPTIONS.flatMap(({ key, flag, rule }) => {
    const path = options[key];
    return typeof path === "string" ? [{ flag, path, rule }] : [];
  });
}
