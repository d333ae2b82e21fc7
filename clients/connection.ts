/**
 * A connection to one dist process that stays up: {@link connect} dials it,
 * and when the connection drops it is dialed again with backoff while
 * requests made meanwhile wait (each within its own timeout); idempotent
 * requests in flight when it dropped are sent again on the next connection.
 * Dialing a service (`{ binders, service }`) looks an instance up through
 * the binders before every dial, so a redial moves to another instance.
 * Requests are typed when given a contract's method (the answer is
 * checked), or take any method by name.
 */
import { type Address, parseAddress } from "../config/values.ts";
import {
  type AnyMethod,
  type CallOptions,
  checkResult,
  codecByName,
  DELIVERY_PREFIX,
  DistError,
  type Event,
  mayStartWith,
  type Method,
  type Peer,
  type PeerInfo,
  Redialer,
  sleep,
  type TypedResponse,
} from "../wire/mod.ts";
import type { Instance, ListTopics, Published, TopicList, Unsubscribed } from "./contracts/mod.ts";
import { PubSub } from "./pubsub.ts";
import type { SubscribeOptions, Subscription } from "./subscription.ts";
import { BinderClient } from "./discovery/binders.ts";
import { binders as bindersOf } from "./discovery/mod.ts";
import { ServiceSource } from "./discovery/service.ts";
import type { InstanceMemory } from "./discovery/memory.ts";
import type { ConnectOptions, LinkHooks, ServiceTarget } from "./connect_options.ts";
import { Listeners } from "./listeners.ts";
import { Resender } from "./resend.ts";
import { checkConnectOptions } from "./connect_options.ts";
export type { ConnectOptions, LinkHooks, ServiceTarget } from "./connect_options.ts";

/**
 * Opens a connection to a dist process (`"host:port"` or `{host, port}`), or
 * to some instance of a service found through binders (`{ binders, service }`):
 * when that instance goes away, the connection moves to another one.
 *
 * @example A service's instances, through binders
 * ```ts ignore
 * const conn = await connect({ binders: ["127.0.0.1:5555"], service: "compute" });
 * console.log(await conn.request(ops.methods.add, { a: 1, b: 2 }));
 * conn.close();
 * ```
 * @throws {DistError} UNAVAILABLE when it cannot connect (at once when refused, unless
 * `waitOnFirstConnect`), TIMEOUT when connecting takes longer than `connectTimeout`,
 * NOT_FOUND when the service has no instance (or no binder answers), BAD_REQUEST for an option
 */
export async function connect(
  target: string | Address | ServiceTarget,
  options: ConnectOptions = {},
): Promise<Connection> {
  const conn = new Connection(target, checkConnectOptions(options, "connect()", target));
  await conn.ready();
  return conn;
}

/** A connection to one process, or to a service's instances; see {@link connect}. */
export class Connection {
  #dialer: Redialer;
  #service: ServiceSource | undefined;
  /** Binders this connection opened for a service target (closed with it). */
  #ownBinders: BinderClient | undefined;
  /** A service target's wait for an instance (ms). */
  #waitMs = 0;
  #options: ConnectOptions;
  #connectHooks: ((peer: Peer) => void | Promise<void>)[] = [];
  #listeners = new Listeners();
  #first: DistError | undefined;
  /** Why the last dial failed (said when waiting for a service's first instance times out). */
  #lastDialError: DistError | undefined;
  /** The connection now, or the last one while dialing again. */
  #last: Peer | undefined;
  #closing: DistError | undefined;
  #onAbort = () => this.close();
  #pubsub: PubSub | undefined;
  #resend = new Resender({
    ready: (ms) => this.#dialer.ready(ms),
    closing: () => this.#closing,
    where: () => `${this.address.host}:${this.address.port}`,
    redial: () => this.#options.redial !== false,
    timeout: () => this.#options.timeout,
    silent: (peer) => this.#service?.silent(peer) === true,
    watch: (peer, sent, ms, idem) => this.#service?.holds.watch(peer, sent, ms, idem),
  });

  /** A connection that starts dialing at once; prefer {@link connect}, which resolves once up. */
  constructor(
    target: string | Address | ServiceTarget,
    options: ConnectOptions = {},
    hooks: LinkHooks = {},
  ) {
    this.#options = options;
    if (hooks.onConnect) this.#connectHooks.push(hooks.onConnect);
    const connectTimeout = options.connectTimeout ?? 5000;
    this.#dialer = new Redialer(this.#where(target), {
      ...options.wire,
      credentials: options.credentials ?? options.wire?.credentials,
      tls: options.tls ?? options.wire?.tls,
      role: options.role ?? "client",
      name: options.name ?? `client-${Deno.pid}`,
      by: hooks.by,
      codec: codecByName(options.codec ?? "json"),
      timeoutMs: options.timeout ?? options.wire?.timeoutMs,
      connectTimeoutMs: connectTimeout,
      onRequest: hooks.onRequest,
      onNotification: (method, params, peer) => {
        this.#listeners.emit(method, params);
        hooks.onNotification?.(method, params, peer);
      },
      // Deliveries read as bytes unless the link brings its own raw frames: a subscription's
      // straight to it (its value parsed) when nobody else listens to them.
      rawFrames: options.byteDeliveries ||
          (hooks.rawFrames === undefined && options.byteDeliveries !== false)
        ? {
          accepts: (frame) => mayStartWith(frame, DELIVERY_PREFIX),
          handle: (frame, peer) =>
            peer.codec.name === "json" && this.#pubsub !== undefined &&
            this.#pubsub.rawFrame(
              frame,
              hooks.onNotification === undefined &&
                this.#listeners.count("broker.message") <= 1,
            ),
        }
        : hooks.rawFrames,
      onConnect: async (peer) => {
        this.#service?.connected(peer); // first: what the hooks get answered counts (service.ts)
        for (const hook of this.#connectHooks) await hook(peer);
        this.#service?.hooked(peer);
        this.#last = peer;
      },
      // A service's instances are named by the source's own lines (clients/discovery/service.ts).
      logFailures: hooks.onDialError === undefined && this.#service === undefined,
      onDialError: (err) => {
        hooks.onDialError?.(err);
        this.#lastDialError = err;
        // The first connection fails at once unless told to wait for it; a
        // service's next instances are tried first, within the connect timeout
        // (service.ts), unless it has none or none but dead ones.
        const over = this.#service?.gaveUp ?? this.#dialer.failures === 1;
        if (over && !this.#last && !options.waitOnFirstConnect) {
          this.#first = err;
          void this.#dialer.stop();
        }
      },
      onDisconnect: () => {
        if (options.redial === false) this.#close(this.#last?.reported);
      },
    }).start();
    options.signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  /** Where the dialer dials: an address, or a service's instances. */
  #where(target: string | Address | ServiceTarget) {
    if (typeof target === "string") return parseAddress(target);
    if (!("service" in target)) return target;
    let through = target.binders;
    if (!(through instanceof BinderClient)) {
      through = this.#ownBinders = bindersOf(through, {
        name: this.#options.name,
        role: this.#options.role,
        codec: this.#options.codec,
        credentials: this.#options.credentials,
        tls: this.#options.tls, // (hostile46c F8: binders were dialed in plain TCP, token in clear)
        wire: this.#options.wire,
      });
    }
    this.#waitMs = target.wait ?? 0;
    return this.#service = new ServiceSource(through, target.service, {
      waitMs: target.wait,
      signal: target.waitSignal,
      searchMs: this.#options.connectTimeout ?? 5000,
    });
  }

  /** The address dialed (of a service, the instance's dialed last). */
  get address(): Address {
    return this.#dialer.address;
  }

  /** Of a connection to a service, the instance dialed last (undefined otherwise). */
  get instance(): Instance | undefined {
    return this.#service?.instance;
  }

  /** @ignore Of a connection to a service, what its dials found (a ServiceCaller over it shares it). */
  get instanceMemory(): InstanceMemory | undefined {
    return this.#service?.memory;
  }

  /**
   * Resolves once connected the first time.
   * @throws {DistError} why the first connection failed
   */
  async ready(): Promise<this> {
    // Without waitOnFirstConnect the dial's own timeout or refusal says why first.
    const wait = (this.#options.connectTimeout ?? 5000) + this.#waitMs +
      (this.#options.waitOnFirstConnect ? 0 : 1000);
    try {
      await this.#dialer.ready(wait);
      return this;
    } catch (err) {
      this.close();
      // A service's dialer has no one address to name: why its last dial failed, or what it sought.
      throw this.#first ?? this.#service?.whyNot(this.#lastDialError, wait, err) ?? err;
    }
  }

  /**
   * The connection now, if up (for what the library does not wrap: raw
   * sends, counters).
   * @ignore
   */
  get peer(): Peer | undefined {
    return this.#dialer.peer;
  }

  /**
   * The connection once up (now, or once dialed again after a drop), within
   * `timeoutMs`.
   * @throws {DistError} TIMEOUT, or UNAVAILABLE once closed
   * @ignore
   */
  whenUp(timeoutMs: number): Promise<Peer> {
    if (this.#closing !== undefined) return Promise.reject(this.#closing);
    return this.#dialer.ready(timeoutMs);
  }

  /** Whether the connection is up now. */
  get connected(): boolean {
    return this.#dialer.peer !== undefined;
  }

  /**
   * Who is at the other end (as told in the handshake): of the connection
   * now, or of the last one while dialing again or once closed.
   */
  get remote(): PeerInfo | undefined {
    return this.#last?.remote;
  }

  /** Requests awaiting answers. */
  get pendingCalls(): number {
    return this.#dialer.peer?.pendingCalls ?? 0;
  }

  /**
   * Whether a request made now may be sent: not closed, not draining, and
   * without `redial`, the connection's read side has not ended (nothing
   * more can come on it).
   */
  get canCall(): boolean {
    if (this.#closing !== undefined) return false;
    return this.#options.redial !== false || this.#last?.canCall !== false;
  }

  /**
   * Sends a request and resolves with its result: checked and typed when
   * `method` is a contract's (`binder.methods.lookup`), as it came when it
   * is a name (`"sys.stats"`).
   * @throws {DistError} the other side's error (its code), TIMEOUT, UNAVAILABLE when the
   * connection closes first or `signal` aborts, INTERNAL for a malformed answer
   */
  request<N extends string, P, R>(
    method: Method<N, P, R>,
    params: NoInfer<P>,
    options?: CallOptions,
  ): Promise<R>;
  /** Sends a request by method name; the result is as it came. */
  request(method: string, params?: unknown, options?: CallOptions): Promise<unknown>;
  request(method: string | AnyMethod, params?: unknown, options?: CallOptions): Promise<unknown> {
    if (typeof method === "string") {
      const peer = this.#dialer.peer;
      if (peer !== undefined && this.#closing === undefined) {
        const sent = this.#resend.sent(peer, peer.call(method, params, options), options);
        if (this.#options.redial === false) return sent;
        const t0 = performance.now();
        return sent.catch((err) =>
          this.#resend.again(err, peer, method, params, options, t0, 1).then((r) => r.result)
        );
      }
      return this.#resend.later(method, params, options).then((r) => r.result);
    }
    return this.exchange(method, params, options).then((r) => r.result);
  }

  /** Like {@link request}, but resolves with the result and `by`: who did the work. */
  exchange<N extends string, P, R>(
    method: Method<N, P, R>,
    params: NoInfer<P>,
    options?: CallOptions,
  ): Promise<TypedResponse<R>>;
  /** Like {@link request} by method name, with `by`. */
  exchange(
    method: string,
    params?: unknown,
    options?: CallOptions,
  ): Promise<TypedResponse<unknown>>;
  exchange(
    method: string | AnyMethod,
    params?: unknown,
    options?: CallOptions,
  ): Promise<TypedResponse<unknown>> {
    if (typeof method === "string") {
      const peer = this.#dialer.peer;
      if (peer !== undefined && this.#closing === undefined) {
        const sent = this.#resend.sent(peer, peer.request(method, params, options), options);
        if (this.#options.redial === false) return sent;
        const t0 = performance.now();
        return sent.catch((err) => this.#resend.again(err, peer, method, params, options, t0, 1));
      }
      return this.#resend.later(method, params, options);
    }
    const opts = method.idempotent ? options : { ...options, idempotent: false };
    return this.exchange(method.name, params, opts).then((r) => {
      r.result = checkResult(method, r.result, r.by);
      return r;
    });
  }

  /**
   * The connection a notification goes on now: undefined when not
   * connected or closing (then `notify` says why).
   * @ignore
   */
  get notifyPeer(): Peer | undefined {
    return this.#closing === undefined ? this.#dialer.peer : undefined;
  }

  /**
   * Sends a notification (no answer).
   * @throws {DistError} UNAVAILABLE when not connected
   */
  notify<N extends string, P>(method: Method<N, P, unknown>, params: NoInfer<P>): void;
  /** Sends a notification by method name. */
  notify(method: string, params?: unknown): void;
  notify(method: string | AnyMethod, params?: unknown): void {
    const name = typeof method === "string" ? method : method.name;
    const peer = this.#dialer.peer;
    if (peer === undefined || this.#closing !== undefined || !peer.notify(name, params)) {
      throw this.#closing ?? new DistError("UNAVAILABLE", "Not connected");
    }
  }

  /**
   * Calls `listener` with the params of every `event` the other side sends:
   * checked and typed when `event` is a contract's (a malformed one is
   * dropped), as they came when it is a name.
   * @returns a function that stops listening
   */
  on<N extends string, P>(event: Event<N, P>, listener: (params: P) => void): () => void;
  /** Listens to an event by name: its params as they came. */
  on(event: string, listener: (params: unknown) => void): () => void;
  on(event: string | Event, listener: (params: never) => void): () => void {
    return this.#listeners.add(event, listener);
  }

  /**
   * Publishes `value` to `topic` on a broker: fire-and-forget, or with
   * `confirm`, a request answered once the broker has routed it.
   * @param options `retain` (default true): keep it as the topic's retained value
   * @returns the broker's answer with `confirm`, else undefined
   * @throws {DistError} UNAVAILABLE when not connected; with `confirm`, the broker's
   * BAD_REQUEST for a bad topic or value
   */
  publish(
    topic: string,
    value: unknown,
    options?: { retain?: boolean; confirm?: boolean; timeout?: number },
  ): Promise<Published | undefined> {
    return this.#broker().publish(topic, value, options);
  }

  /**
   * Subscribes to a topic subtree on a broker: iterate the subscription
   * (`for await (const m of sub)`) for its messages.
   * @throws {DistError} BAD_REQUEST for a bad pattern, group or policy
   */
  subscribe(topic: string, options?: SubscribeOptions): Promise<Subscription> {
    return this.#broker().subscribe(topic, options);
  }

  /** Ends a subscription (as `sub.unsubscribe()`). */
  unsubscribe(sub: Subscription): Promise<Unsubscribed | undefined> {
    return this.#broker().unsubscribe(sub);
  }

  /**
   * The broker's topics under `prefix` (a pattern, default `/`), a page at a
   * time: an answer with `next` goes on with `{after: next}`.
   */
  topics(options?: ListTopics): Promise<TopicList> {
    return this.#broker().topics(options);
  }

  #broker(): PubSub {
    return this.#pubsub ??= new PubSub(this);
  }

  /** @ignore Runs `hook` on every new connection before it is used. */
  onConnect(hook: (peer: Peer) => void | Promise<void>): void {
    this.#connectHooks.push(hook);
  }

  /**
   * Refuses new requests, waits (up to `timeoutMs`) for those in flight and
   * for what is queued to be written, then closes.
   */
  async drain(timeoutMs = 5000): Promise<void> {
    this.#closing ??= new DistError("UNAVAILABLE", "Connection draining");
    const deadline = performance.now() + timeoutMs;
    const subs = this.#pubsub?.subscriptions ?? [];
    await Promise.all(
      subs.map((sub) => this.#pubsub!.unsubscribe(sub, timeoutMs).catch(() => undefined)),
    );
    let peer = this.#dialer.peer;
    while (peer !== undefined && peer.pendingCalls > 0 && performance.now() < deadline) {
      await sleep(Math.min(10, deadline - performance.now()));
      peer = this.#dialer.peer;
    }
    await peer?.conn.drained(0);
    this.close();
  }

  /** Closes the connection now: requests in flight fail with UNAVAILABLE. */
  close(): void {
    this.#close();
  }

  /** Closes; subscriptions end with `why` the other side closed it, if it said. */
  #close(why?: DistError): void {
    this.#closing ??= new DistError("UNAVAILABLE", "Connection closed");
    this.#options.signal?.removeEventListener("abort", this.#onAbort);
    this.#pubsub?.close(why);
    void this.#dialer.stop();
    this.#ownBinders?.close();
  }

  /** Resolves once closed. */
  async closed(): Promise<void> {
    await this.#dialer.stop();
  }
}
