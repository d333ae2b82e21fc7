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

/** What a load run counts as it goes. */
interface LoadState {
  sent: number;
  confirmed: number;
  errors: Record<string, number>;
  /** How many may have gone by now: all, or what the rate allows. */
  due: () => number;
}

/**
 * Publishes `plan.count` messages of `plan.payload` bytes, then makes one
 * round trip, so that the time counts until the broker has routed them all.
 */
export async function runLoad(peer: Peer, plan: LoadPlan): Promise<LoadSummary> {
  const params = { topic: plan.topic, value: "x".repeat(plan.payload), retain: plan.retain };
  const t0 = performance.now();
  const state: LoadState = {
    sent: 0,
    confirmed: 0,
    errors: {},
    due: () =>
      plan.rate === undefined
        ? plan.count
        : Math.min(plan.count, Math.floor(((performance.now() - t0) * plan.rate) / 1000) + 1),
  };
  const progress = plan.onProgress
    ? setInterval(() => plan.onProgress!(state.sent, performance.now() - t0), 200)
    : undefined;
  try {
    if (plan.confirm) await publishConfirmed(peer, plan, params, state);
    else await publishPrepared(peer, plan, params, state);
  } catch (err) {
    countError(state.errors, err);
  } finally {
    clearInterval(progress);
  }
  const elapsed = performance.now() - t0;
  plan.onProgress?.(state.sent, elapsed);
  return {
    topic: plan.topic,
    payload_bytes: plan.payload,
    sent: state.sent,
    ...(plan.confirm ? { confirmed: state.confirmed } : {}),
    errors: state.errors,
    duration_s: Math.round(elapsed) / 1000,
    msgs_per_s: Math.round(state.sent / (elapsed / 1000)),
    ...(plan.rate !== undefined ? { rate: plan.rate } : {}),
  };
}

function countError(errors: Record<string, number>, err: unknown): void {
  const code = DistError.from(err).code;
  errors[code] = (errors[code] ?? 0) + 1;
}

/** `--confirm`: each message is a call, at most CONFIRM_WINDOW in flight. */
async function publishConfirmed(
  peer: Peer,
  plan: LoadPlan,
  params: unknown,
  state: LoadState,
): Promise<void> {
  let inFlight = 0;
  let freed: (() => void) | undefined;
  while (state.sent < plan.count && !plan.signal.aborted && !peer.isClosed) {
    if (state.sent >= state.due()) {
      await sleep(1);
      continue;
    }
    while (inFlight >= CONFIRM_WINDOW) await new Promise<void>((r) => freed = r);
    inFlight++;
    state.sent++;
    peer.call("broker.publish", params, { timeout: plan.timeout }).then(
      () => {
        state.confirmed++;
        if (plan.counts) plan.counts.published++;
      },
      (err) => {
        countError(state.errors, err);
        if (plan.counts) plan.counts.failed++;
      },
    ).finally(() => {
      inFlight--;
      freed?.();
      freed = undefined;
    });
  }
  while (inFlight > 0) await new Promise<void>((r) => freed = r);
}

/**
 * Fire-and-forget: the frame encoded once and its bytes queued as fast as
 * the socket takes them (or the rate allows), then one round trip.
 * @throws {DistError} UNAVAILABLE when the connection closes
 */
async function publishPrepared(
  peer: Peer,
  plan: LoadPlan,
  params: unknown,
  state: LoadState,
): Promise<void> {
  const conn = peer.conn;
  const frame = preparedFrame(peer, params);
  while (state.sent < plan.count && !plan.signal.aborted) {
    const until = state.due();
    if (state.sent >= until) {
      await sleep(1);
      continue;
    }
    while (state.sent < until) {
      if (!conn.sendRaw(frame)) throw new DistError("UNAVAILABLE", "Connection closed");
      state.sent++;
      if (plan.counts) plan.counts.published++;
      if (conn.pendingBytes > HIGH_WATER) break;
    }
    if (conn.pendingBytes > HIGH_WATER) await conn.drained(LOW_WATER);
  }
  // One round trip: the broker answers it after routing everything before it.
  await peer.call("sys.ping", undefined, { timeout: plan.timeout });
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
