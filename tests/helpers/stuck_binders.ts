/**
 * The set-up of the tests of binders that hang or freeze (h47 Q1, Q3, r47
 * R2): waiting for a registration to reach a binder, stopping binder
 * processes and letting them go on, and the failover scenario of a server
 * whose first binders hang.
 */
import { binder, BinderClient, binders, register, sys } from "../../clients/mod.ts";
import { startBinderProcs } from "./binder.ts";

/** Polls (every 100 ms, at most `timeoutMs`) until `client` finds an instance of `service`. */
export async function lookedUp(
  client: BinderClient,
  service: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await client.call(binder.methods.lookup, { service });
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** SIGCONT to each of `pids` (one that has ended is passed over). */
export function resume(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      Deno.kill(pid, "SIGCONT");
    } catch { /* gone */ }
  }
}

/** What {@link failoverFromStuck} saw once the stuck binders had hung `hangMs`. */
export interface Failover {
  /** The binder the server's client was on then, and the live one it should be on. */
  current: string | undefined;
  live: string;
  /** Whether the live binder found the instance then (one lookup). */
  listed: boolean;
  /** The live binder's counts: a renewal taken is no new registration. */
  registrations: number;
  renewals: number;
}

/**
 * `n` binder processes; a server registered (default 3 s lease) through a
 * client that starts with binder 0, as one picking it at random would;
 * once the registration reached the last binder, the first `stuck` are
 * stopped (SIGSTOP) for `hangMs`, and what the live last one counted is read.
 */
export async function failoverFromStuck(
  n: number,
  stuck: number,
  service: string,
  hangMs: number,
): Promise<Failover> {
  const cluster = await startBinderProcs(n);
  const pids = cluster.procs.slice(0, stuck).map((p) => p.child.pid);
  const through = new BinderClient({
    binders: cluster.addresses,
    role: "server",
    name: service,
    random: () => 0,
  });
  const liveAddress = cluster.addresses[n - 1];
  const live = binders([liveAddress]);
  const registrar = register(through, { service, host: "127.0.0.1", port: 9 });
  try {
    if (!await registrar.registered(10_000)) throw new Error("not registered");
    if (through.current !== cluster.addresses[0]) {
      throw new Error(`registered with ${through.current}, not binder 0`);
    }
    await lookedUp(live, service);
    for (const pid of pids) Deno.kill(pid, "SIGSTOP");
    await new Promise((r) => setTimeout(r, hangMs));
    const current = through.current;
    const listed = await live.call(binder.methods.lookup, { service }).then(
      () => true,
      () => false,
    );
    const stats = await live.call(sys.methods.stats, {}) as unknown as {
      registrations: number;
      renewals: number;
    };
    return { current, live: liveAddress, listed, ...stats };
  } finally {
    resume(pids);
    await registrar.stop(false);
    live.close();
    await cluster.stop();
  }
}
