/**
 * An MQTT connection's read loop: packets framed from the fixed header and
 * refused by size before they are buffered, a read buffer that grows for a
 * burst or a large packet and shrinks after, and no reading while the
 * connection's own output is backed up (a publisher that reads no acks is
 * slowed by TCP). What a packet means is the connection's (connection.ts).
 */
import type { Outbound } from "../../../wire/outbound.ts";
import { frame, readFrame } from "./packets.ts";
import { readBuffers } from "../memory.ts";
import { pollTurn } from "../../../wire/poll_turn.ts";

/**
 * Read buffer of an idle connection (a PINGREQ, a small PUBLISH fit), grown
 * eightfold per filled read for a burst or to a large packet's size, shrunk
 * after: what an idle connection keeps (issue 18), and a read's C-side copy.
 */
const READ_BYTES = 64;
/** Read buffer of a busy connection. */
const BURST_BYTES = 64 * 1024;
/**
 * Most a connection keeps once a read left nothing to handle and did not
 * fill its buffer (the burst is over for now): a client silent after a
 * burst (keep-alive 0) held its 64 KiB, counted, for good (hostile39b Q8:
 * 1,100 of them held a 64 MiB broker over its budget, every new
 * subscription and topic refused). Regrown eightfold by the next full read.
 */
const REST_BYTES = 16 * 1024;
/**
 * Longest run of full reads (of a buffer of BURST_BYTES) before the read
 * loop yields a turn of the event loop (ms; poll_turn.ts, as wire/inbound.ts
 * does by count): a read that finds bytes waiting completes at once, so a
 * publisher that always has them read chain after chain and the runtime took
 * up no other socket. Under hostile review 41b's flood (1,000-byte QoS 0 at
 * full speed to 100 stalled sessions) a PINGREQ was read about once in
 * 1.5 s, PINGRESP p50 1.4–1.5 s with or without --data-dir. By time, not by
 * count: a yield costs a wake-up, and a run of cheap reads (a 1 → 1 flow)
 * needs few.
 */
const RUN_MS = 8;
/** Packets of one read handled between two looks at the clock (RUN_MS). */
const PACKETS_PER_LOOK = 32;
/** Output above which a connection stops reading. */
export const HIGH_WATER = 1024 * 1024;

/** A connection's state, as the read loop needs it. */
export const NEW = 0;
export const CONNECTED = 1;
/** Answered and closing: input is no longer handled. */
export const CLOSING = 2;
export const CLOSED = 3;

/** What the read loop tells its connection, and asks of it. */
export interface PacketHost {
  state(): number;
  /** One packet at `buf[s..e)`, its body from `body`: a promise while judged (CONNECT) or waiting (SUBSCRIBE). */
  packet(buf: Uint8Array, s: number, body: number, e: number): Promise<void> | undefined;
  /**
   * Told when bytes came (keep-alive), whether a packet has begun and is not
   * yet whole, and while the input is held for a packet's work.
   */
  readonly live: { heard(): void; partial(begun: boolean): void; hold(on: boolean): void };
  /** The peer closed. */
  ended(): void;
  failed(err: Error): void;
  /** Not MQTT, or a malformed fixed header. */
  malformed(why: string): void;
  /** A remaining length over `max`, refused before it is read. */
  oversize(length: number, max: number): void;
  /** Whether a packet of `total` bytes may be buffered now (the broker within its memory). */
  mayBuffer(total: number): boolean;
}

/** Reads and hands over packets until the connection closes. */
export async function readPackets(
  conn: Deno.Conn,
  out: Outbound,
  maxPacket: number,
  host: PacketHost,
): Promise<void> {
  let buf = new Uint8Array(READ_BYTES);
  let start = 0;
  let end = 0;
  // What this connection's buffer adds to readBuffers (beyond READ_BYTES).
  let counted = 0;
  const count = () => {
    readBuffers.bytes += buf.length - READ_BYTES - counted;
    counted = buf.length - READ_BYTES;
  };
  // When the present run of full reads began (0: none).
  let runSince = 0;
  try {
    while (host.state() !== CLOSED) {
      if (out.pending > HIGH_WATER) {
        await out.drained(HIGH_WATER / 2);
        continue;
      }
      if (end === buf.length) {
        // Full: what is left moved to the front, or (a packet fills it) a larger buffer.
        if (start > 0) buf.copyWithin(0, start, end);
        else buf = grown(buf, Math.min(BURST_BYTES, buf.length * 4), start, end);
        end -= start;
        start = 0;
        count();
      }
      const room = buf.length - end;
      // The buffer itself when it is empty (an idle connection's): no view kept with the read.
      const n = await conn.read(end === 0 ? buf : buf.subarray(end));
      if (n === null) return host.ended();
      if (host.state() >= CLOSING) continue;
      end += n;
      host.live.heard();
      let turnAt = performance.now(), handled = 0;
      while (start < end) {
        // Not MQTT at all (an HTTP request, TLS): said at the first byte, not after its "length".
        if (host.state() === NEW && buf[start] !== 0x10) {
          return host.malformed("a first packet that is not CONNECT");
        }
        readFrame(buf, start, end);
        if (frame.length === -2) return host.malformed("a malformed remaining length");
        if (frame.length === -1) break;
        if (frame.length > maxPacket) return host.oversize(frame.length, maxPacket);
        const total = frame.head + frame.length;
        if (start + total > end) {
          if (total > buf.length) {
            if (total > BURST_BYTES && !host.mayBuffer(total)) return;
            buf = grown(buf, total, start, end);
            count();
            end -= start;
            start = 0;
          }
          break;
        }
        const pending = host.packet(buf, start, start + frame.head, start + total);
        start += total;
        if (pending !== undefined) {
          // Nothing is read meanwhile: not the client's silence (liveness.ts).
          host.live.hold(true);
          try {
            await pending;
          } finally {
            host.live.hold(false);
          }
        }
        if (host.state() >= CLOSING) break;
        // One read's packets within a turn's RUN_MS too: thousands of small PUBLISHes to new topics
        // held every other client for seconds (hostile44b H-B8: PINGRESP p50 0.3-2 s).
        if (++handled % PACKETS_PER_LOOK === 0 && performance.now() - turnAt >= RUN_MS) {
          await pollTurn();
          turnAt = performance.now();
          if (host.state() >= CLOSING) break;
        }
      }
      host.live.partial(start < end);
      if (n !== room) runSince = 0;
      else if (runSince === 0) runSince = performance.now();
      else if (performance.now() - runSince >= RUN_MS) {
        runSince = 0;
        await pollTurn();
      }
      const next = afterRead(buf, n, room, start, end);
      if (next !== undefined) {
        buf = next;
        end -= start;
        start = 0;
        count();
      }
    }
  } catch (err) {
    host.failed(err as Error);
  } finally {
    readBuffers.bytes -= counted;
  }
}

/**
 * The buffer to read into next once a read's packets are handled, what is
 * left of it (`buf[start..end)`) at its beginning; undefined: as it is.
 */
function afterRead(
  buf: Uint8Array<ArrayBuffer>,
  n: number,
  room: number,
  start: number,
  end: number,
): Uint8Array<ArrayBuffer> | undefined {
  // A read that filled the buffer: more is coming, read it in larger pieces.
  if (n === room && buf.length < BURST_BYTES) {
    return grown(buf, Math.min(BURST_BYTES, buf.length * 8), start, end);
  }
  if (start !== end) return undefined;
  // All handled, and the read did not fill a large buffer: keep a page of it.
  if (buf.length > REST_BYTES && n < room) {
    spare(buf);
    return fresh(REST_BYTES);
  }
  // All handled; a light read after a burst: back to the small buffer.
  return buf.length > READ_BYTES && n < room >> 2 && n < READ_BYTES
    ? new Uint8Array(READ_BYTES)
    : buf;
}

/** A larger read buffer holding `buf[start..end)` at its beginning. */
function grown(
  buf: Uint8Array<ArrayBuffer>,
  size: number,
  start: number,
  end: number,
): Uint8Array<ArrayBuffer> {
  const bigger = fresh(Math.max(size, end - start));
  bigger.set(buf.subarray(start, end));
  spare(buf);
  return bigger;
}

/**
 * Buffers of REST_BYTES and BURST_BYTES let go, for the next connection to
 * grow or rest: a busy publisher whose reads drain its socket rests and
 * grows again every turn, and new 64 KiB buffers each time cost it 10–50 %
 * more CPU a message (allocation and the collections they bring). Counted
 * in readBuffers while here.
 */
const spares = new Map<number, Uint8Array<ArrayBuffer>[]>([[REST_BYTES, []], [BURST_BYTES, []]]);
/** Most buffers of each size kept. */
const SPARES = 8;

function spare(buf: Uint8Array<ArrayBuffer>): void {
  const kept = spares.get(buf.length);
  if (kept === undefined || kept.length >= SPARES) return;
  kept.push(buf);
  readBuffers.bytes += buf.length;
}

/** A buffer of `size` bytes; one let go if there is one (its contents are stale: read over). */
function fresh(size: number): Uint8Array<ArrayBuffer> {
  const kept = spares.get(size)?.pop();
  if (kept === undefined) return new Uint8Array(size);
  readBuffers.bytes -= size;
  return kept;
}
