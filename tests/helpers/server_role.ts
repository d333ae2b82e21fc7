/**
 * The real server role run in this process on 127.0.0.1 port 0, for tests
 * that talk to it over raw sockets (faster than a child process; the same
 * code path from the socket on). Stop it in `finally`.
 */
import { mergeOptions, type Options, roleSpec } from "../../config/mod.ts";
import { server } from "../../roles/server.ts";
import { within } from "./raw.ts";

export interface InProcessServer {
  port: number;
  /** Aborts the role (as SIGTERM would) and waits for it to return. */
  stop(): Promise<void>;
}

/** Starts `dist server --port 0` in-process with `flags` (camelCase option keys). */
export async function startServerRole(flags: Options = {}): Promise<InProcessServer> {
  const abort = new AbortController();
  let resolvePort!: (port: number) => void;
  const listening = new Promise<number>((resolve) => resolvePort = resolve);
  const options = mergeOptions(roleSpec(server), { port: 0, grace: 200, ...flags });
  const done = server.run(options, {
    signal: abort.signal,
    positionals: [],
    onListening: (addr) => resolvePort(addr.port),
  });
  const port = await within(Promise.race([listening, done.then(() => -1)]), 5000, "server start");
  if (port < 0) throw new Error("The server role returned before listening");
  return {
    port,
    async stop() {
      abort.abort();
      await within(done, 5000, "server stop");
    },
  };
}
