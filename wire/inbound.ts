/**
 * The read side of a connection: a loop that reads, splits frames and hands each read's frames over
 * together; it stops while output backs up (backpressure) or while the owner pauses it, and keeps
 * the stream's first bytes until the handshake is over (see foreign.ts).
 */
import { DistError } from "./errors.ts";
import { FrameDecoder, HEADER_BYTES } from "./frame.ts";
import { HEAD_BYTES } from "./foreign.ts";
import { drainTarget, type Outbound } from "./outbound.ts";
import { pollTurn } from "./poll_turn.ts";
import { EAGAIN, rawReads, type RawSocket, type RawSocketHandler } from "./raw_reads.ts";

/**
 * The read buffer starts small, doubles whenever a read fills it (up to MAX_READ) and halves after
 * SHRINK_AFTER reads in a row that used less than an eighth of it: an idle connection costs a few
 * KiB, a busy one reads 64 KiB at a time. A read that ends a large frame (BIG_FRAME or more) and
 * leaves nothing partial is likely the last of a burst: the next read is into MIN_READ, back to the
 * grown size at once if it fills, so a connection that sent one 1 MB frame and went idle does not
 * wait with 64 KiB (hostile review 39b Q13).
 */
const MIN_READ = 1024;
const MAX_READ = 64 * 1024;
/**
 * The largest read of a connection set to `wideReads` (the broker's publisher whose run goes to one
 * subscriber: stop 48): a quarter of the turns, lane openings, flushes and ops for the same bytes.
 * Not for a fan-out (its turn's outputs would outgrow the CPU's cache), and for at most
 * WIDE_CONNECTIONS at once (a flood of such publishers keeps 64 KiB each).
 */
const WIDE_READ = 256 * 1024;
const WIDE_CONNECTIONS = 64;
let wideConnections = 0;
const SHRINK_AFTER = 8;
const BIG_FRAME = MAX_READ / 2;

/**
 * Reads in a row that filled the largest buffer (the peer sends faster than this side reads) after
 * which the read loop yields a turn of the event loop (poll_turn.ts) before it reads again. A read
 * that finds bytes waiting completes at once, and a connection that always has them makes a chain
 * of such reads; with a few of those running (clients flooding 1 MB requests) the runtime went
 * hundreds of ms to seconds without taking up other sockets' input: in a Deno process reading 8
 * flooding sockets, a ping on another socket took 510 ms (median; 0.5 ms without the flood), 1.8 ms
 * with a yield every 4 full reads, at 2.5 GB of flood read in 5 s instead of 6 (one yield per read:
 * 0.9 ms and 0.7 GB). A balancer's backends then went unread past their frame and heartbeat
 * deadlines.
 */
const FULL_READS_PER_TURN = 4;
/**
 * The run of full reads between yields doubles, up to this, after each yield during which no other
 * connection of the process read anything: nobody was waiting for that turn, and each one costs the
 * process an idle wake-up (~100 µs of CPU here, a quarter of a 64 KiB read's work in the broker).
 * Once another connection reads during one, it is FULL_READS_PER_TURN again.
 */
const MAX_FULL_READS_PER_TURN = 16;
/**
 * Largest first frame (the handshake: a hello, or the welcome answering it) read, whatever the
 * connection's frame limit. A hello is ~120 bytes, and its credentials (token, user, password) at
 * most MAX_SECRET_LENGTH (4,096) characters each (credentials.ts): 16 KiB holds them all in ASCII.
 * The first frame comes before any credential is checked and is parsed whole: at the 1 MiB frame
 * limit, a hello of 62,000 escaped keys took the balancer's event loop ~200 ms each, a probe beside
 * it waited up to 419 ms (hostile41a W9). Past it, the stream fails FRAME_TOO_LARGE before the
 * frame is read (the listener answers it and closes).
 */
export const FIRST_FRAME_BYTES = 16 * 1024;

/** Reads completed by every read loop of the process (see MAX_FULL_READS_PER_TURN). */
let processReads = 0;

/** Resolves on a later turn of the event loop (after the runtime has polled its sockets). */
const nextTurn = pollTurn;

/** Sockets whose reading never stops for output backlog (see keepReading). */
const keptReading = new WeakSet<Deno.Conn>();

/**
 * Marks a connection whose reading must never stop because output backs up, on it or in the
 * process: this side calls the peer, and the peer's answers are what drains output (a balancer's
 * backend: its answers go to the clients; pausing it for the requests waiting to go to it, or for
 * the clients' unread answers, stops the very answers that would let them drain, and the backend
 * then stops reading requests too). What this side sends it must be bounded by its owner (a
 * balancer's in-flight slots and output budget per backend); `pauseReading()` still stops it.
 * @param socket the connection's socket (`FramedConn.conn`)
 */
export function keepReading(socket: Deno.Conn): void {
  keptReading.add(socket);
}

/** Where the read side reports (its connection). */
export interface InboundSink {
  /** Whether the connection is closed: reading stops. */
  isClosed(): boolean;
  /**
   * The frames of one read, in order: views valid only during the call (the
   * arrays are reused), and each one's ArrayBuffer (see FrameDecoder.frameBuffer).
   */
  frames(batch: Uint8Array[], buffers: ArrayBufferLike[]): void;
  /** The peer closed its side (EOF). */
  end(): void;
  /** The stream broke: a DistError from the decoder (FRAME_TOO_LARGE), else a read error. */
  failed(err: unknown): void;
  /** A frame after the first begun, not complete: the `length` its prefix says (once a frame). */
  begun?(length: number): void;
}

export class Inbound implements RawSocketHandler {
  #conn: Deno.Conn;
  #decoder: FrameDecoder;
  #outbound: Outbound;
  #highWater: number;
  #sink: InboundSink;
  #head: Uint8Array | undefined;
  #received = false;
  #bytesIn = 0;
  #framesIn = 0;
  #ended = false;
  /** Paused by backpressure (output backed up). */
  #backedUp = false;
  #gate: Promise<void> | undefined;
  #openGate: (() => void) | undefined;
  #pauses = 0;
  /** The largest read buffer: MAX_READ, or WIDE_READ (see wideReads). */
  #maxRead = MAX_READ;
  /** Whether the first frame's length was checked against FIRST_FRAME_BYTES. */
  #firstChecked = false;
  /** The index of the last frame told `begun` (0: the handshake's is not). */
  #begun = 0;
  /** A read's frames and their buffers (reused: see InboundSink.frames). */
  readonly #batch: Uint8Array[] = [];
  readonly #buffers: ArrayBufferLike[] = [];
  /** Its socket on raw_reads.ts's epoll, once adopted there (then the read loop has ended). */
  #socket: RawSocket | undefined;

  constructor(
    conn: Deno.Conn,
    limits: { maxFrame: number; highWater: number },
    outbound: Outbound,
    sink: InboundSink,
  ) {
    this.#conn = conn;
    this.#decoder = new FrameDecoder(limits.maxFrame);
    this.#highWater = limits.highWater;
    this.#outbound = outbound;
    this.#sink = sink;
  }

  get bytesIn(): number {
    return this.#bytesIn;
  }

  get framesIn(): number {
    return this.#framesIn;
  }

  /** Bytes of a frame begun but not complete. */
  get buffered(): number {
    return this.#decoder.buffered;
  }

  /** Whether the peer has closed its side (EOF was read). */
  get ended(): boolean {
    return this.#ended;
  }

  /** The stream's first bytes (up to HEAD_BYTES), until released. */
  get head(): Uint8Array | undefined {
    return this.#head;
  }

  releaseHead(): void {
    this.#head = undefined;
  }

  /** Whether bytes arrived since the last call (the ticker's liveness check). */
  takeReceived(): boolean {
    const received = this.#received;
    this.#received = false;
    return received;
  }

  /** Whether reading is stopped by backpressure. */
  get backedUp(): boolean {
    return this.#backedUp;
  }

  /** Whether reading is stopped, by backpressure or by `pause()`. */
  get paused(): boolean {
    return this.#backedUp || this.#gate !== undefined;
  }

  /** Reads of up to WIDE_READ rather than MAX_READ (from the next full read on). */
  set wideReads(on: boolean) {
    const full = wideConnections >= WIDE_CONNECTIONS || this.#sink.isClosed();
    if (on === (this.#maxRead === WIDE_READ) || (on && full)) return;
    wideConnections += on ? 1 : -1;
    this.#maxRead = on ? WIDE_READ : MAX_READ;
  }

  /** Stops reading (after the read in progress) until as many `resume()`. */
  pause(): void {
    if (this.#pauses++ > 0) return;
    this.#gate = new Promise((resolve) => this.#openGate = resolve);
    this.#socket?.read(false);
  }

  resume(): void {
    if (this.#pauses === 0 || --this.#pauses > 0) return;
    this.#open();
  }

  /**
   * The connection closes: a loop waiting at the gate goes on and ends; an
   * adopted socket leaves our epoll (before its descriptor is closed).
   */
  close(): void {
    this.wideReads = false;
    this.#pauses = 0;
    this.#socket?.release();
    this.#open();
  }

  #open(): void {
    const open = this.#openGate;
    this.#gate = this.#openGate = undefined;
    open?.();
    this.#readOn();
  }

  /** An adopted socket waits to read again, unless something else stops it. */
  #readOn(): void {
    const socket = this.#socket;
    if (socket === undefined || this.#gate !== undefined || this.#backedUp || this.#ended) return;
    if (!this.#sink.isClosed()) socket.read(true);
  }

  /**
   * Moves the reading onto raw_reads.ts's epoll (see there) once the
   * connection's descriptor is known (it has written through send) and no
   * write of the runtime's is in flight: whether it did (the loop then ends).
   */
  #adopt(): boolean {
    const out = this.#outbound;
    if (out.fd < 0 || out.writing || rawReads === undefined) return false;
    const socket = rawReads.adopt(out.fd, this);
    if (socket === null) return false; // not now: reads are sparse
    if (socket === undefined) {
      out.stayOnRuntime();
      return false;
    }
    this.#socket = socket;
    out.adopted(socket);
    return true;
  }

  /** The adopted socket has input (or an end, or an error): one read. */
  readable(): void {
    const socket = this.#socket!;
    const sink = this.#sink;
    if (sink.isClosed()) return socket.release();
    if (this.#gate !== undefined) return socket.read(false);
    const out = this.#outbound;
    const target = drainTarget(out.pending, this.#highWater);
    if (target >= 0 && !keptReading.has(this.#conn)) {
      this.#backedUp = true;
      socket.read(false);
      out.drained(target).then(() => {
        this.#backedUp = false;
        this.#readOn();
      });
      return;
    }
    const n = socket.recv();
    if (n === -EAGAIN) return;
    if (n <= 0) {
      socket.read(false);
      if (n === 0) {
        this.#ended = true;
        sink.end();
      } else sink.failed(new Error(socket.reads.raw.describe(n)));
      return;
    }
    processReads++;
    try {
      this.#took(socket.reads.buffer.bytes, n);
    } catch (err) {
      socket.read(false);
      if (!sink.isClosed()) sink.failed(err);
    }
  }

  /** The adopted socket takes output again. */
  writable(): void {
    this.#outbound.writable();
  }

  /** The adopted socket went back to the runtime (reads there are sparse): the read loop goes on. */
  returned(): void {
    this.#socket = undefined;
    this.#outbound.adopted(undefined);
    this.run(false);
  }

  /** Reads until the end; `adopt` false: not onto raw_reads.ts's epoll before a first read of the runtime's. */
  async run(adopt = true): Promise<void> {
    let buf = new Uint8Array(MIN_READ);
    /** The size the read buffer had before a burst's end shrank it (0: none). */
    let grown = 0;
    let smallReads = 0;
    let fullReads = 0;
    let perTurn = FULL_READS_PER_TURN;
    const decoder = this.#decoder;
    const out = this.#outbound;
    const sink = this.#sink;
    try {
      while (!sink.isClosed()) {
        if (this.#gate !== undefined) {
          await this.#gate;
          continue;
        }
        // Output backed up (its own, or the process's: then the connections
        // holding a real share of it): stop making more until it drains;
        // unless reading this peer is what drains output (see keepReading).
        const target = drainTarget(out.pending, this.#highWater);
        if (target >= 0 && !keptReading.has(this.#conn)) {
          this.#backedUp = true;
          await out.drained(target);
          this.#backedUp = false;
          continue;
        }
        if (adopt && this.#adopt()) return;
        adopt = true;
        const n = await this.#conn.read(buf);
        if (n === null) {
          if (sink.isClosed()) return;
          // The peer closed its side: what it sent is read; what we owe it
          // may still be written (the owner decides when to close).
          this.#ended = true;
          sink.end();
          return;
        }
        processReads++;
        const big = this.#took(buf, n);
        if (n === buf.length) {
          smallReads = 0;
          const max = this.#maxRead;
          if (grown > 0) {
            buf = new Uint8Array(Math.min(grown, max));
            grown = 0;
          } else if (buf.length < max) buf = new Uint8Array(Math.min(buf.length * 2, max));
          else if (buf.length > max) buf = new Uint8Array(max);
          else if (++fullReads >= perTurn) {
            fullReads = 0;
            const before = processReads;
            await nextTurn();
            perTurn = processReads === before
              ? Math.min(2 * perTurn, MAX_FULL_READS_PER_TURN)
              : FULL_READS_PER_TURN;
          }
        } else if (big && buf.length > MIN_READ && decoder.buffered === 0) {
          // Likely the end of a burst: the next read waits in a small buffer (see MIN_READ).
          grown = buf.length;
          buf = new Uint8Array(MIN_READ);
          smallReads = fullReads = 0;
        } else if (n <= buf.length >> 3 && buf.length > MIN_READ) {
          fullReads = 0;
          if (++smallReads >= SHRINK_AFTER) {
            smallReads = 0;
            buf = new Uint8Array(buf.length >> 1);
          }
        } else {
          smallReads = fullReads = 0;
        }
      }
    } catch (err) {
      if (!sink.isClosed()) sink.failed(err); // else a read cut short by our own close
    }
  }

  /**
   * Takes the `n` bytes a read put at the start of `buf`: hands their
   * complete frames over together. Whether one of them was large (BIG_FRAME).
   * @throws {DistError} FRAME_TOO_LARGE (frames before it are handed over first)
   */
  #took(buf: Uint8Array, n: number): boolean {
    const decoder = this.#decoder;
    const sink = this.#sink;
    const batch = this.#batch;
    const buffers = this.#buffers;
    this.#received = true;
    if (this.#bytesIn < HEAD_BYTES && this.#framesIn === 0) this.#keepHead(buf, n);
    if (!this.#firstChecked) this.#checkFirst();
    this.#bytesIn += n;
    decoder.push(buf, n);
    let frame: Uint8Array | null;
    let big = false;
    try {
      while ((frame = decoder.next()) !== null) {
        batch.push(frame);
        buffers.push(decoder.frameBuffer);
        if (frame.length >= BIG_FRAME) big = true;
      }
    } finally {
      // Frames before a broken length prefix are delivered before the error.
      this.#framesIn += batch.length;
      if (batch.length > 0 && !sink.isClosed()) sink.frames(batch, buffers);
      // Nothing here keeps the frames (nor their buffers) while the next read waits.
      batch.length = buffers.length = 0;
      decoder.handedOver();
    }
    const length = decoder.partialLength;
    if (length >= 0 && this.#begun !== this.#framesIn && !sink.isClosed()) {
      this.#begun = this.#framesIn;
      sink.begun?.(length);
    }
    return big;
  }

  /** Refuses a first frame longer than FIRST_FRAME_BYTES, once its length prefix is in. */
  #checkFirst(): void {
    const head = this.#head;
    if (this.#framesIn > 0 || head === undefined) {
      this.#firstChecked = true;
      return;
    }
    if (head.length < HEADER_BYTES) return;
    this.#firstChecked = true;
    const len = new DataView(head.buffer, head.byteOffset).getUint32(0);
    // Longer than the frame limit too: the decoder's own error says so.
    if (len > FIRST_FRAME_BYTES && len <= this.#decoder.maxFrame) {
      throw new DistError(
        "FRAME_TOO_LARGE",
        `First frame (the handshake) of ${len} bytes exceeds the limit of ${FIRST_FRAME_BYTES} bytes`,
      );
    }
  }

  /** Appends the first `n` bytes of `buf` to the head (see `head`). */
  #keepHead(buf: Uint8Array, n: number): void {
    const old = this.#head ?? EMPTY;
    const head = new Uint8Array(Math.min(HEAD_BYTES, old.length + n));
    head.set(old);
    head.set(buf.subarray(0, head.length - old.length), old.length);
    this.#head = head;
  }
}

const EMPTY = new Uint8Array(0);
