/**
 * @module
 * The role table: every part `dist` can play, by name. Each role is its own
 * module exporting its option spec and `run(options, { signal })`; roles talk
 * to each other only through wire/. `ops.ts` is the operation table the
 * server and the worker share; `_logging.ts` sets up logtape for a process.
 * `load.ts` loads one role's module when asked (main.ts: a process plays
 * one role, and loads only its code).
 */
import type { Role } from "./_role.ts";
import { server } from "./server.ts";
import { client } from "./client/mod.ts";
import { broker } from "./broker/mod.ts";
import { binder } from "./binder/mod.ts";
import { balancer } from "./balancer/mod.ts";
import { worker } from "./worker.ts";
import { producer } from "./producer/mod.ts";
import { consumer } from "./consumer.ts";

export const ROLES: Readonly<Record<string, Role>> = {
  server,
  client,
  broker,
  binder,
  balancer,
  worker,
  producer,
  consumer,
};

export type { Role, RunContext } from "./_role.ts";
export {
  announceListening,
  FORCED_EXIT_CODE,
  onStdoutClosed,
  Stopper,
  untilAborted,
  writeStdout,
} from "./_role.ts";
export { closeLogging, setLogInstance, setupLogging } from "./_logging.ts";
export {
  formatOperation,
  type Operation,
  OPERATIONS,
  parseOperation,
  randomOperation,
} from "./ops.ts";
