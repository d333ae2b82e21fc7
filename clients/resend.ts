/**
 * Requests across redials: one made while the connection is down waits for
 * it within its own timeout, and one whose connection dropped under it is
 * sent again once redialed when it is idempotent (at most
 * {@link SEND_ATTEMPTS} sends), or fails saying it may have run.
 */
import { type CallOptions, DistError, type Peer, sleep, type TypedResponse } from "../wire/mod.ts";

/** Most times a request lost with its connection is sent (the first included). */
export const SEND_ATTEMPTS = 3;

/** What a {@link Resender} reads of its connection, when it needs it. */
export interface ResendHost {
  /** The connection once up (now or once redialed), within `timeoutMs`. */
  ready(timeoutMs: number): Promise<Peer>;
  /** Why the connection is closing or closed, if it is. */
  closing(): DistError | undefined;
  /** The address dialed, as `host:port` (for the error). */
  where(): string;
  /** Whether the connection dials again when it drops. */
  redial(): boolean;
  /** The connection's default request timeout (ms). */
  timeout(): number | undefined;
  /**
   * Whether a request lost with `peer` is not counted as a send: it hung up
   * before answering anything (a service's instance; then the request's time
   * bounds the sends). Default: every one counts.
   */
  silent?(peer: Peer): boolean;
  /** Told of every request sent (a service's instance that holds one is closed: discovery/hold.ts). */
  watch?(peer: Peer, sent: Promise<unknown>, timeoutMs: number, idempotent: boolean): void;
}

/** Sends a connection's requests when it is down or after it dropped. */
export class Resender {
  #host: ResendHost;

  constructor(host: ResendHost) {
    this.#host = host;
  }

  /** `sent` on `peer` with `options`, shown to the host's {@link ResendHost.watch}. */
  sent<T>(peer: Peer, sent: Promise<T>, options: CallOptions | undefined): Promise<T> {
    const timeout = options?.timeout ?? this.#host.timeout() ?? 30_000;
    this.#host.watch?.(peer, sent, timeout, options?.idempotent !== false);
    return sent;
  }

  /**
   * A request made while not connected (or sent again after its connection
   * dropped): waits for the connection within what is left of its timeout.
   */
  async later(
    method: string,
    params: unknown,
    options: CallOptions = {},
    t0 = performance.now(),
    attempt = 0,
  ): Promise<TypedResponse<unknown>> {
    const closing = this.#host.closing();
    if (closing !== undefined) throw closing;
    const timeout = options.timeout ?? this.#host.timeout() ?? 30_000;
    const left = () => Math.max(1, timeout - (performance.now() - t0));
    let peer = await this.#host.ready(left()).catch((err) => {
      throw this.#host.closing() ?? err;
    });
    // One whose other side hung up is still open while it finishes: wait for the next.
    if (!peer.canCall && attempt > 0) {
      await Promise.race([peer.closed, sleep(left())]);
      peer = await this.#host.ready(left()).catch((err) => {
        throw this.#host.closing() ?? err;
      });
    }
    if (options.signal?.aborted) throw new DistError("UNAVAILABLE", "Call aborted");
    const timed = { ...options, timeout: left() };
    const sent = this.sent(peer, peer.request(method, params, timed), timed);
    if (!this.#host.redial()) return sent;
    return sent.catch((err) => this.again(err, peer, method, params, options, t0, attempt + 1));
  }

  /**
   * A request sent on `peer` failed with `err`: when that is the connection
   * dropping (not the other side's answer), an idempotent request is sent
   * again once redialed (within its timeout); one marked non-idempotent is
   * not, since it may have run.
   * @throws {DistError} `err` as it is when not a lost connection; UNAVAILABLE with
   * `data: { mayHaveRun: true }` for a non-idempotent request that was in flight
   */
  again(
    err: unknown,
    peer: Peer,
    method: string,
    params: unknown,
    options: CallOptions | undefined,
    t0: number,
    attempt: number,
  ): Promise<TypedResponse<unknown>> {
    const lost = err instanceof DistError && err.code === "UNAVAILABLE" && !peer.canCall &&
      this.#host.closing() === undefined && !options?.signal?.aborted;
    if (!lost || (attempt >= SEND_ATTEMPTS && !this.#host.silent?.(peer))) {
      return Promise.reject(err);
    }
    if (options?.idempotent === false) {
      const where = this.#host.where();
      return Promise.reject(
        new DistError(
          "UNAVAILABLE",
          `Connection to ${where} lost with ${method} in flight; not sent again: it is ` +
            `marked non-idempotent and may have run`,
          { cause: err, data: { mayHaveRun: true } },
        ),
      );
    }
    return this.later(method, params, options, t0, attempt);
  }
}
