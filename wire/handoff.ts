/**
 * Who takes a connection's input, one at a time: until someone attaches, a
 * handler that closes the connection on EOF or a broken stream; then the
 * handshake's; then the Peer's. Between the handshake and the Peer, input
 * is held (what a dialer pipelines behind its hello) and given to the Peer
 * first when it attaches. The one way a connection changes hands.
 */
import type { DistError } from "./errors.ts";
import type { CloseReason } from "./conn.ts";

/** Takes a connection's input (see the module comment). */
export interface ConnHandler {
  /**
   * The frames of one read, in order: views valid only during the call (the
   * array is reused). Receiving a read's frames together lets a codec
   * decode them in one pass. `buffers`, when given, holds each frame's
   * ArrayBuffer (a fast path's readers then need not ask the frames).
   */
  onFrames(frames: Uint8Array[], buffers?: ArrayBufferLike[]): void;
  /** The decoder rejected the stream (e.g. FRAME_TOO_LARGE): nothing more is read. */
  onStreamError(err: DistError): void;
  /** The peer closed its side (EOF): nothing more is read, answers may still be written. */
  onEnd(): void;
  /** The connection has closed (called once). */
  onClose(reason: CloseReason, err?: unknown): void;
}

/** The state of the connection an attach needs. */
interface InputState {
  readonly isClosed: boolean;
  readonly readEnded: boolean;
}

/** The current {@link ConnHandler} of one connection, and input held for the next. */
export class InputHandoff {
  #handler: ConnHandler;
  /** Input that arrived while held (see hold()): copies of frames, then an error or EOF. */
  #held: Uint8Array[] | undefined;
  #heldError: DistError | undefined;

  /** @param first the handler until someone attaches */
  constructor(first: ConnHandler) {
    this.#handler = first;
  }

  /** Who takes the input now. */
  get handler(): ConnHandler {
    return this.#handler;
  }

  /**
   * Hands the input to `handler`: input held since `hold()` first, in
   * order (frames, then a broken stream or EOF, unless `conn` closed).
   */
  attach(handler: ConnHandler, conn: InputState): void {
    this.#handler = handler;
    const held = this.#held;
    this.#held = undefined;
    if (held !== undefined) handler.onFrames(held);
    const err = this.#heldError;
    this.#heldError = undefined;
    if (conn.isClosed) return;
    if (err !== undefined) handler.onStreamError(err);
    else if (conn.readEnded) handler.onEnd();
  }

  /** Keeps `frames` and what arrives from now on for the next `attach()`; a close still happens. */
  hold(frames: readonly Uint8Array[]): void {
    const onClose = this.#handler.onClose;
    const keep = (more: readonly Uint8Array[]) => {
      for (const f of more) (this.#held ??= []).push(f.slice());
    };
    keep(frames);
    this.#handler = {
      onFrames: keep,
      onStreamError: (err) => this.#heldError = err,
      onEnd: () => {}, // readEnded says it
      onClose,
    };
  }
}
