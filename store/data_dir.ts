/**
 * A data directory: created when missing, and locked for as long as the
 * process uses it (an exclusive `flock` on `DIR/LOCK`, which the kernel
 * drops when the process dies, SIGKILL included), so two processes never
 * write one set of files. The lock file holds the owner's pid, for the
 * message the second process prints.
 */
import { UsageError } from "../config/mod.ts";

/** A locked data directory. */
export class DataDir {
  readonly path: string;
  #lock: Deno.FsFile | undefined;

  private constructor(path: string, lock: Deno.FsFile) {
    this.path = path;
    this.#lock = lock;
  }

  /**
   * Creates `path` if needed and locks it.
   * @throws {UsageError} when it cannot be created, or another process holds it
   */
  static open(path: string): DataDir {
    const dir = path.replace(/(?<=.)\/+$/, "");
    try {
      Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new UsageError(`Cannot create data directory ${dir}: ${(err as Error).message}`);
    }
    let file: Deno.FsFile;
    try {
      file = Deno.openSync(`${dir}/LOCK`, { read: true, write: true, create: true });
    } catch (err) {
      throw new UsageError(`Cannot open ${dir}/LOCK: ${(err as Error).message}`);
    }
    if (!file.tryLockSync(true)) {
      const owner = readOwner(file);
      file.close();
      throw new UsageError(
        `Cannot use data directory ${dir}: another process holds it` +
          (owner === undefined ? "" : ` (pid ${owner})`) + `: give each instance its own directory`,
      );
    }
    try {
      file.truncateSync(0);
      file.writeSync(new TextEncoder().encode(`${Deno.pid}\n`));
    } catch {
      // A full disk: the lock holds all the same; only the holder's pid goes unsaid.
    }
    return new DataDir(dir, file);
  }

  /** The path of a file in the directory. */
  file(name: string): string {
    return `${this.path}/${name}`;
  }

  /** Releases the lock (also released when the process ends, however it ends). */
  close(): void {
    const lock = this.#lock;
    this.#lock = undefined;
    if (lock === undefined) return;
    try {
      lock.unlockSync();
    } finally {
      lock.close();
    }
  }
}

function readOwner(file: Deno.FsFile): number | undefined {
  try {
    const buf = new Uint8Array(32);
    file.seekSync(0, Deno.SeekMode.Start);
    const n = file.readSync(buf) ?? 0;
    const pid = Number.parseInt(
      new TextDecoder("utf-8", { ignoreBOM: true }).decode(buf.subarray(0, n)),
      10,
    );
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
