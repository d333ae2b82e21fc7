/**
 * Where an export goes: into `--out DIR` (made if missing; the export's own
 * files are replaced, nothing else is touched), or to stdout, each file
 * under a `# ==> PATH <==` line when there are several. A secret's file
 * (one with a mode) is written with that mode into a folder only its
 * owner may enter.
 */
import { dirname, join } from "node:path";
import { UsageError } from "../config/mod.ts";
import { writeStdoutQuietly } from "../launch/mod.ts";
import type { ExportFile } from "./model.ts";

/**
 * Writes the files, and says on stderr what it wrote.
 *
 * @throws {UsageError} when a file cannot be written
 */
export async function writeFiles(files: ExportFile[], out: string | undefined): Promise<void> {
  if (out === undefined) {
    const several = files.length > 1;
    for (const file of files) {
      writeStdoutQuietly((several ? `# ==> ${file.path} <==\n` : "") + file.text);
    }
    return;
  }
  for (const file of files) {
    const path = join(out, file.path);
    try {
      await Deno.mkdir(dirname(path), { recursive: true });
      if (file.mode !== undefined) {
        await Deno.chmod(dirname(path), 0o700);
        // Made empty with its mode first: the secret is never readable by others.
        await Deno.writeTextFile(path, "", { mode: file.mode });
        await Deno.chmod(path, file.mode);
      }
      await Deno.writeTextFile(path, file.text);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new UsageError(`Cannot write ${path}: ${reason}`, { cause: error });
    }
  }
  console.error(`Wrote ${files.length} files to ${out}: ${files.map((f) => f.path).join(", ")}`);
}
