/**
 * Any role run in this process on 127.0.0.1 (port 0 unless told), as main.ts
 * would run it, for tests that talk to it over real connections.
 */
import { mergeOptions, type Options, roleSpec } from "../../config/mod.ts";
import type { Role } from "../../roles/mod.ts";
import { within } from "./raw.ts";

/** A role running in this process. */
export interface InProcessRole {
  port: number;
  address: string;
  name: string;
  /** Aborts the role (as SIGTERM would) and waits for it to return. */
  stop(): Promise<void>;
}

/** Starts `role` with `flags` (camelCase option keys) and waits for it to listen. */
export async function startRole(role: Role, flags: Options = {}): Promise<InProcessRole> {
  const abort = new AbortController();
  let listening!: (addr: { port: number; name: string }) => void;
  const bound = new Promise<{ port: number; name: string }>((r) => listening = r);
  const done = role.run(mergeOptions(roleSpec(role), { port: 0, grace: 200, ...flags }), {
    signal: abort.signal,
    positionals: [],
    onListening: listening,
  });
  const { port, name } = await within(
    Promise.race([bound, done.then(() => Promise.reject(new Error("stopped before listening")))]),
    5000,
    "the role to listen",
  );
  return {
    port,
    name,
    address: `127.0.0.1:${port}`,
    async stop() {
      abort.abort();
      await within(done, 5000, "the role to stop");
    },
  };
}
