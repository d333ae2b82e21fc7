/**
 * Where an export goes: into `--out DIR` (made if missing; the export's own
 * files are replaced, nothing else is touched), or to stdout, each file
 * under a `# ==> PATH <==` line when there are several. A secret's file
 * (one with a mode) is written with that mode; in a subfolder, the folder
 * is one only its owner may enter.
 *
 * `DIR` and every folder under it that the export writes into must be the
 * user's own and not writable by others, as `tls = "auto"`'s folder
 * (launch/state.ts `dirProblem`): nobody else can then plant a link there.
 * Each file is written to a fresh name (`O_EXCL`) and renamed into place,
 * so a link already at its path is replaced, never written through
 * (hostile47 Q17).
 */
import { dirname, join, relative, sep } from "node:path";
import { UsageError } from "../config/mod.ts";
import { dirProblem, writeStdoutQuietly } from "../launch/mod.ts";
import type { ExportFile } from "./model.ts";

/**
 * Writes the files, and says on stderr what it wrote.
 *
 * @throws {UsageError} when a file cannot be written, or a folder may not
 *   be trusted with it
 */
export async function writeFiles(files: ExportFile[], out: string | undefined): Promise<void> {
  if (out === undefined) {
    const several = files.length > 1;
    for (const file of files) {
      writeStdoutQuietly((several ? `# ==> ${file.path} <==\n` : "") + file.text);
    }
    return;
  }
  await ownFolder(out, true);
  for (const file of files) {
    const path = join(out, file.path);
    const folder = dirname(path);
    // Each folder between DIR and the file, made and checked one by one.
    let at = out;
    for (const part of relative(out, folder).split(sep).filter((p) => p !== "")) {
      at = join(at, part);
      await ownFolder(at, false);
    }
    try {
      if (file.mode !== undefined && folder !== out) await Deno.chmod(folder, 0o700);
      await replaceFile(path, file.text, file.mode);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new UsageError(`Cannot write ${path}: ${reason}`, { cause: error });
    }
  }
  console.error(`Wrote ${files.length} files to ${out}: ${files.map((f) => f.path).join(", ")}`);
}

/**
 * Makes folder `dir` if missing (with its parents when `parents`), then
 * refuses it if it is a link, another user's or writable by others.
 * @throws {UsageError} naming what is wrong
 */
async function ownFolder(dir: string, parents: boolean): Promise<void> {
  try {
    // 0700: made with the umask's mode (0775 under a umask of 002) the check below refused it.
    await Deno.mkdir(dir, { recursive: parents, mode: 0o700 });
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new UsageError(`Cannot make ${dir}: ${reason}`, { cause: error });
    }
  }
  const problem = dirProblem(dir);
  if (problem !== undefined) {
    throw new UsageError(
      `--out writes no files where others may plant links or read them: ${problem}; ` +
        `give a folder of your own`,
    );
  }
}

/**
 * Writes `text` to a fresh name beside `path` (created exclusively, with
 * `mode` when given) and renames it to `path`: whatever was at `path` (a
 * link included) is replaced, never followed.
 */
async function replaceFile(path: string, text: string, mode: number | undefined): Promise<void> {
  const temp = `${path}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  const file = await Deno.open(temp, { write: true, createNew: true, mode: mode ?? 0o666 });
  try {
    try {
      if (mode !== undefined) await Deno.chmod(temp, mode);
      const bytes = new TextEncoder().encode(text);
      let done = 0;
      while (done < bytes.length) done += await file.write(bytes.subarray(done));
    } finally {
      file.close();
    }
    await Deno.rename(temp, path);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
}
