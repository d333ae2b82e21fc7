/**
 * What main.ts needs of roles/ without loading every role: the module of
 * the one role a command names, loaded when asked ({@link rolesFor}), and
 * the process helpers (stdout, logging, stopping). `mod.ts` is the whole
 * table, for what needs every role (`dist up`, `status`, `export`, the
 * main help, `--config`).
 */
import type { Role } from "./_role.ts";

export { closeLogging, setupLogging } from "./_logging.ts";
export { onStdoutClosed, type Role, stdoutFailure, Stopper, writeStdout } from "./_role.ts";

/** Each role's module, loaded when asked (the same roles as mod.ts's table: a test holds it so). */
export const ROLE_LOADERS: Readonly<Record<string, () => Promise<Role>>> = {
  server: async () => (await import("./server.ts")).server,
  client: async () => (await import("./client/mod.ts")).client,
  broker: async () => (await import("./broker/mod.ts")).broker,
  binder: async () => (await import("./binder/mod.ts")).binder,
  balancer: async () => (await import("./balancer/mod.ts")).balancer,
  worker: async () => (await import("./worker.ts")).worker,
  producer: async () => (await import("./producer/mod.ts")).producer,
  consumer: async () => (await import("./consumer.ts")).consumer,
};

/**
 * The role table a command needs: when its first word is a role and no
 * flag can name another (`--role`, `--config`), that role alone, so a
 * process loads one role's code, not all eight (a client starts in about
 * 30 ms less CPU); else every role (mod.ts). Parsing reads only the named
 * role's entry, so what it prints is the same either way.
 */
export async function rolesFor(argv: readonly string[]): Promise<Readonly<Record<string, Role>>> {
  const first = argv[0];
  const another = argv.some((t) => t.startsWith("--role") || t.startsWith("--config"));
  if (first === undefined || another || !Object.hasOwn(ROLE_LOADERS, first)) {
    return (await import("./mod.ts")).ROLES;
  }
  return { [first]: await ROLE_LOADERS[first]() };
}
