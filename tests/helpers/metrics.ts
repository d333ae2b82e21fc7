/**
 * Reading a process's `/metrics` in tests: the URL it logged, a scrape,
 * one sample's value, and `promtool check metrics` (Debian `prometheus`,
 * installed by .ci/run; when missing, said once and the check is skipped).
 */
import assert from "node:assert/strict";
import { waitFor } from "./raw.ts";

/** The line a process logs with its metrics URL. */
export const METRICS_LINE: RegExp = /Metrics at (http:\/\/[\d.]+:\d+\/metrics)/;

function findPromtool(): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(`${dir}/promtool`).isFile) return `${dir}/promtool`;
    } catch {
      // Not in this folder.
    }
  }
  return undefined;
}

/** promtool's path, or undefined when it cannot be had. */
export const PROMTOOL: string | undefined = findPromtool();
if (PROMTOOL === undefined) {
  console.error("helpers/metrics: promtool not found (Debian prometheus): checks skipped");
}

/** `promtool check metrics` on `text`: its complaints, or "" when clean (or promtool missing). */
export async function promtoolCheck(text: string): Promise<string> {
  if (PROMTOOL === undefined) return "";
  const child = new Deno.Command(PROMTOOL, {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  const said = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  return code === 0 && said.trim() === "" ? "" : `exit ${code}: ${said}`;
}

/** The URL a process logged for its metrics (`Metrics at …`). */
export async function metricsUrl(stderr: () => string): Promise<string> {
  await waitFor(() => METRICS_LINE.test(stderr()), 10_000, "the Metrics at line");
  return stderr().match(METRICS_LINE)![1];
}

/** One scrape: status 200 and the 0.0.4 text format. */
export async function scrape(url: string): Promise<string> {
  const r = await fetch(url);
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  return await r.text();
}

/** The value of the sample `series` (name and labels as rendered), or undefined. */
export function sample(text: string, series: string): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith(series + " ")) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

/** Scrapes every 50 ms until `ok(text)`, at most `ms`; the text of that scrape. */
export async function scrapeUntil(
  url: string,
  ok: (text: string) => boolean,
  ms: number,
  what: string,
): Promise<string> {
  let text = "";
  const end = performance.now() + ms;
  while (performance.now() < end) {
    text = await scrape(url);
    if (ok(text)) return text;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`${what} not seen within ${ms} ms:\n${text}`);
}
