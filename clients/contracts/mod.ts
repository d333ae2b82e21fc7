/**
 * @module
 * The contracts of dist's services: each method's wire name, params and
 * result, defined once and used by the side that serves it and the side
 * that calls it. `sys.ts` (every role), `ops.ts` (servers and workers),
 * `binder.ts`, `broker.ts`, `balancer.ts` (also `worker.register`).
 */
export * from "./sys.ts";
export * from "./ops.ts";
export * from "./binder.ts";
export * from "./broker.ts";
export * from "./balancer.ts";
