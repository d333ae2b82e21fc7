/**
 * The producer's load mode: `--count N --payload BYTES` as fast as the broker
 * takes them, or at `--rate R`, fire-and-forget (or confirmed with
 * `--confirm`), with a progress bar and a summary.
 *
 * Every message is the same, so its frame is encoded once and its bytes
 * copied to the socket N times, as a NATS load generator reuses its payload.
 */
import { counted } from "../_role.ts";
import { DistError, OutBuffer, type Peer, sleep } from "../../wire/mod.ts";

export interface LoadPlan {
  topic: string;
  payload: number;
  count: number;
  /** Messages per second; undefined for as fast as possible. */
  rate?: number;
  retain: boolean;
  confirm: boolean;
  timeout: number;
  signal: AbortSignal;
  /** Called every 200 ms with the messages sent so far (for a progress bar). */
  onProgress?: (sent: number, elapsedMs: number) => void;
  /** Kept up to date for --metrics: sent (confirmed, with confirm) and failed. */
  counts?: PublishCounts;
}

/** What a producer has published and failed to, for --metrics (obs/dialers.ts). */
export interface PublishCounts {
  published: number;
  failed: number;
}

export interface LoadSummary {
  topic: string;
  payload_bytes: number;
  sent: number;
  confirmed?: number;
  errors: Record<string, number>;
  duration_s: number;
  msgs_per_s: number;
  rate?: number;
}

/** Output queued above this waits for the socket before more is produced. */
const HIGH_WATER = 512 * 1024;
const LOW_WATER = 128 * 1024;
/** Confirmed publishes in flight at once. */
const CONFIRM_WINDOW = 256;

/** The publish notification, framed once. */
function preparedFrame(peer: Peer, params: unknown): Uint8Array {
  const out = new OutBuffer(256);
  peer.codec.writeFrame(out, { method: "broker.publish", params }, peer.conn.maxFrame);
  return out.bytes.slice(0, out.length);
}

/**
 * Publishes `plan.count` messages of `plan.payload` bytes, then makes one
 * round trip, so that the time counts until the broker has routed them all.
 */
export async function runLoad(peer: Peer, plan: LoadPlan): Promise<LoadSummary> {
  const params = { topic: plan.topic, value: "x".repeat(plan.payload), retain: plan.retain };
  const conn = peer.conn;
  const errors: Record<string, number> = {};
  let sent = 0;
  let confirmed = 0;
  const t0 = performance.now();
  const progress = plan.onProgress
    ? setInterval(() => plan.onProgress!(sent, performance.now() - t0), 200)
    : undefined;
  /** How many may have gone by now: all, or what the rate allows. */
  const due = (): number =>
    plan.rate === undefined
      ? plan.count
      : Math.min(plan.count, Math.floor(((performance.now() - t0) * plan.rate) / 1000) + 1);
  try {
    if (plan.confirm) {
      let inFlight = 0;
      let freed: (() => void) | undefined;
      while (sent < plan.count && !plan.signal.aborted && !peer.isClosed) {
        if (sent >= due()) {
          await sleep(1);
          continue;
        }
        while (inFlight >= CONFIRM_WINDOW) await new Promise<void>((r) => freed = r);
        inFlight++;
        sent++;
        peer.call("broker.publish", params, { timeout: plan.timeout }).then(
          () => {
            confirmed++;
            if (plan.counts) plan.counts.published++;
          },
          (err) => {
            const code = DistError.from(err).code;
            errors[code] = (errors[code] ?? 0) + 1;
            if (plan.counts) plan.counts.failed++;
          },
        ).finally(() => {
          inFlight--;
          freed?.();
          freed = undefined;
        });
      }
      while (inFlight > 0) await new Promise<void>((r) => freed = r);
    } else {
      const frame = preparedFrame(peer, params);
      while (sent < plan.count && !plan.signal.aborted) {
        const until = due();
        if (sent >= until) {
          await sleep(1);
          continue;
        }
        while (sent < until) {
          if (!conn.sendRaw(frame)) throw new DistError("UNAVAILABLE", "Connection closed");
          sent++;
          if (plan.counts) plan.counts.published++;
          if (conn.pendingBytes > HIGH_WATER) break;
        }
        if (conn.pendingBytes > HIGH_WATER) await conn.drained(LOW_WATER);
      }
      // One round trip: the broker answers it after routing everything before it.
      await peer.call("sys.ping", undefined, { timeout: plan.timeout });
    }
  } catch (err) {
    const code = DistError.from(err).code;
    errors[code] = (errors[code] ?? 0) + 1;
  } finally {
    clearInterval(progress);
  }
  const elapsed = performance.now() - t0;
  plan.onProgress?.(sent, elapsed);
  return {
    topic: plan.topic,
    payload_bytes: plan.payload,
    sent,
    ...(plan.confirm ? { confirmed } : {}),
    errors,
    duration_s: Math.round(elapsed) / 1000,
    msgs_per_s: Math.round(sent / (elapsed / 1000)),
    ...(plan.rate !== undefined ? { rate: plan.rate } : {}),
  };
}

/** The human-readable summary. */
export function formatLoadSummary(s: LoadSummary): string[] {
  const errs = Object.entries(s.errors);
  return [
    `${counted(s.sent, "message")} of ${counted(s.payload_bytes, "byte")} to ${s.topic} in ${
      s.duration_s.toFixed(2)
    } s: ${s.msgs_per_s} msg/s` + (s.rate !== undefined ? ` (rate ${s.rate}/s)` : "") +
    (s.confirmed !== undefined ? `, ${s.confirmed} confirmed` : ""),
    `errors: ${errs.length === 0 ? "none" : errs.map(([c, n]) => `${c} ${n}`).join(", ")}`,
  ];
}

/** A one-line progress bar for a terminal. */
export function progressBar(sent: number, total: number, elapsedMs: number): string {
  const width = 30;
  const filled = Math.max(0, Math.min(width, Math.round((sent / total) * width)));
  const rate = elapsedMs > 0 ? Math.round(sent / (elapsedMs / 1000)) : 0;
  return `\r[${"#".repeat(filled)}${" ".repeat(width - filled)}] ${
    Math.round((sent / total) * 100)
  }% ${sent} msgs ${rate} msg/s `;
}
