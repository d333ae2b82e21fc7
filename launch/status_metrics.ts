/**
 * Figures of an instance that speaks no `dist` on its port (a balancer in
 * `--mode tcp`), read from its Prometheus endpoint (`--metrics`) when it
 * has one on a fixed port: each `dist_<role>_` series summed over its
 * labels, named as sys.stats would (`healthy`, `backend_connections` …).
 */
import { dialHost, formatAddress, type Instance, parseAddress } from "../config/mod.ts";

/** Most of a scrape read: a role's page is a few KB. */
const MAX_BYTES = 1024 * 1024;

/** Series named otherwise in the RPC mode's sys.stats. */
const SAME_AS_STATS: Record<string, string> = { backend_up: "healthy" };

/** Where `instance` serves /metrics, when on a fixed port. */
export function metricsUrl(instance: Instance): string | undefined {
  const value = instance.options.metrics;
  if (typeof value !== "string") return undefined;
  try {
    const { host, port } = parseAddress(value, instance.host);
    if (port === 0) return undefined;
    return `http://${formatAddress({ host: dialHost(host), port })}/metrics`;
  } catch {
    return undefined;
  }
}

/**
 * The figures of the exposition text `text` for `role`: the role's series
 * (not histograms' buckets, sums and counts) summed over their labels.
 */
export function figuresOf(text: string, role: string): Record<string, number> {
  const prefix = `dist_${role}_`;
  const out: Record<string, number> = {};
  for (const line of text.split("\n")) {
    if (!line.startsWith(prefix)) continue;
    const end = line.search(/[{ ]/);
    const name = line.slice(prefix.length, end < 0 ? undefined : end);
    if (/_(bucket|sum|count)$/.test(name) || !/^[a-z_]{1,64}$/.test(name)) continue;
    // The value is the first field after the name and labels (a timestamp may follow).
    const rest = line.slice(line.indexOf(" ", line.lastIndexOf("}") + 1) + 1).trim();
    const value = Number(rest.split(/\s+/)[0]);
    if (!Number.isFinite(value)) continue;
    const key = SAME_AS_STATS[name] ?? name.replace(/_total$/, "");
    out[key] = (out[key] ?? 0) + value;
  }
  return out;
}

/** The figures `instance` serves at `url`, or undefined when it does not answer in time. */
export async function scrapeFigures(
  url: string,
  role: string,
  timeoutMs: number,
): Promise<Record<string, number> | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok || res.body === null) {
      await res.body?.cancel();
      return undefined;
    }
    const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
    let text = "";
    let size = 0;
    for await (const chunk of res.body) {
      size += chunk.byteLength;
      if (size > MAX_BYTES) return undefined; // Leaving the loop cancels the body.
      text += decoder.decode(chunk, { stream: true });
    }
    return figuresOf(text + decoder.decode(), role);
  } catch {
    return undefined;
  }
}
