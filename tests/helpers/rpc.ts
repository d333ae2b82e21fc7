import assert from "node:assert/strict";
import {
  dial,
  type DialOptions,
  DistError,
  listen,
  type Listener,
  type ListenOptions,
  type Peer,
} from "../../wire/mod.ts";
import { RawReader } from "./raw.ts";

/** Helpers for tests that run real listeners and dialers on 127.0.0.1 port 0. */

export const HOST = "127.0.0.1";

/** A request handler that answers with its params. */
export const echo = (_method: string, params: unknown): unknown => params;

/** An `assert.throws`/`rejects` validator: a DistError with this code. */
export function isCode(code: string): (err: unknown) => true {
  return (err: unknown) => {
    assert.ok(err instanceof DistError, `expected a DistError, got ${err}`);
    assert.equal(err.code, code, err.message);
    return true;
  };
}

/** A listener on 127.0.0.1 port 0 named "srv". */
export function server(options: Partial<ListenOptions> = {}): Listener {
  return listen({ host: HOST, port: 0, role: "server", name: "srv", ...options });
}

/** Dials a listener (or a port) as a client named "cli". */
export function connect(to: Listener | number, options: Partial<DialOptions> = {}): Promise<Peer> {
  const port = typeof to === "number" ? to : to.addr.port;
  return dial({ host: HOST, port }, { role: "client", name: "cli", ...options });
}

/** A promise with its resolve, for handlers that answer when the test says so. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => resolve = r);
  return { promise, resolve };
}

/** A raw TCP client to `l` that has not said hello yet. */
export async function rawClient(l: Listener): Promise<{ conn: Deno.Conn; reader: RawReader }> {
  const conn = await Deno.connect({ hostname: HOST, port: l.addr.port });
  return { conn, reader: new RawReader(conn) };
}
