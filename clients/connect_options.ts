/**
 * What `connect()` is given: the target when it is a service found
 * through binders, the options of the connection, and what the library's
 * own parts (serve, pubsub) add to it.
 */
import type {
  CodecName,
  ConnSettings,
  Credentials,
  DistError,
  NotificationHandler,
  Peer,
  RawFrameHandler,
  RequestHandler,
  TlsSettings,
} from "../wire/mod.ts";
import type { BinderClient } from "./discovery/binders.ts";

/**
 * A service to connect to: each dial asks the binders for its next
 * instance (they hand them out in turn).
 */
export interface ServiceTarget {
  /**
   * The binders to ask: their addresses ("host:port"; a client for them is
   * opened with the connection's name, codec and credentials and closed
   * with it), or a {@link BinderClient} of your own (left open).
   */
  binders: readonly string[] | BinderClient;
  /** The service's name, as its servers registered it. */
  service: string;
  /**
   * How long each lookup waits for an instance to appear (ms, default 0:
   * none registered is NOT_FOUND at once).
   */
  wait?: number;
  /** Cuts a lookup's wait short (the connection stays open: see `signal` of the options). */
  waitSignal?: AbortSignal;
}

/** How `connect()` connects. */
export interface ConnectOptions {
  /** This program's name, told to the other side (default `client-PID`). */
  name?: string;
  /** The role told in the handshake (default `client`). */
  role?: string;
  /** Codec of the connection (default `json`). */
  codec?: CodecName;
  /** Timeout of a request that names none (ms, default 30 s). */
  timeout?: number;
  /** How long dialing and the handshake may take (ms, default 5 s). */
  connectTimeout?: number;
  /**
   * Keep dialing until the first connection is up (within `connectTimeout`)
   * instead of failing at the first refusal (default false).
   */
  waitOnFirstConnect?: boolean;
  /** Dial again when the connection drops (default true). */
  redial?: boolean;
  /** Aborting it closes the connection. */
  signal?: AbortSignal;
  /**
   * Read `broker.message` deliveries as bytes on a JSON connection (default
   * true): subscriptions with a `raw` handler get each value's text
   * unparsed, the others only the value parsed (while nothing else listens
   * to `broker.message`). False decodes every delivery whole.
   */
  byteDeliveries?: boolean;
  /**
   * What to prove who this program is with, where the other side asks
   * (`--token`/`--users` on it): a token, or a user and password.
   */
  credentials?: Credentials;
  /**
   * TLS (PEM text): `ca` dials in TLS, trusting only listeners whose
   * certificate it signed, for the host dialed; `cert` and `key` are shown
   * to a listener that requires a client certificate.
   */
  tls?: TlsSettings;
  /** Frame limit, heartbeat, liveness and write timeout of the connection. */
  wire?: ConnSettings;
}

/** What the library's own parts (serve, pubsub) add to a connection; not public. */
export interface LinkHooks {
  /** Runs on every connection before requests go out on it (subscribe again, register). */
  onConnect?: (peer: Peer) => void | Promise<void>;
  onRequest?: RequestHandler;
  onNotification?: NotificationHandler;
  rawFrames?: RawFrameHandler;
  /** Put in `by` of answers to requests served on this connection. */
  by?: string;
  /** Told of every failed dial, instead of the dialer's own log lines. */
  onDialError?: (err: DistError) => void;
}
