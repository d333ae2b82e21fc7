/**
 * The comments every export opens with: where it comes from, how to use it,
 * and what the target does differently from `dist up` (each a note, so
 * nothing differs silently).
 */
import denoJson from "../deno.json" with { type: "json" };
import type { PlannedInstance } from "../launch/mod.ts";
import type { ExportInput } from "./model.ts";

/** This dist's version, for the default image and the header. */
export const VERSION: string = denoJson.version;

/** The header of an export: origin, usage lines, then the findings' notes. */
export function header(input: ExportInput, target: string, usage: readonly string[]): string[] {
  const on = input.on === undefined ? "" : ` --on ${input.on}`;
  const notes = input.context.findings.notes;
  return [
    `dist export ${target} of ${input.context.topology.file}${on} (dist ${VERSION}).`,
    `Generated: edit the topology file and export again rather than editing this.`,
    ...usage,
    ...(notes.length === 0 ? [] : ["", "Notes:", ...notes.flatMap(bullet)]),
  ];
}

/** A note as a bullet, wrapped at about 92 columns. */
function bullet(text: string): string[] {
  const lines: string[] = [];
  let line = "-";
  for (const word of text.split(" ")) {
    if (line.length + 1 + word.length > 92 && line !== "-") {
      lines.push(line);
      line = " ";
    }
    line += ` ${word}`;
  }
  lines.push(line);
  return lines;
}

/** What each role's ready line means, for notes. */
const READY_MEANING: Readonly<Record<string, string>> = {
  worker: "registered with its balancer",
  consumer: "subscribed",
  server: "registered with its binders",
};

/**
 * The note for instances that `dist up` deems ready by a log line, when
 * another instance waits for them, or undefined when none does.
 */
export function readyLineNote(planned: PlannedInstance[], instead: string): string | undefined {
  const awaited = new Set(planned.flatMap((p) => p.after));
  const which = planned.filter((p) => p.readyLine !== undefined && awaited.has(p.instance.name));
  if (which.length === 0) return undefined;
  const names = which.map((p) => p.instance.name);
  const shown = names.length <= 4
    ? names.join(", ")
    : `${names.slice(0, 3).join(", ")}, … (${names.length})`;
  const meanings = [...new Set(which.map((p) => READY_MEANING[p.instance.role] ?? "ready"))];
  return `dist up starts what waits for ${shown} once its log says it has ${
    meanings.join(" or ")
  }; ` +
    `${instead}, so the first requests or messages may miss some of them`;
}
