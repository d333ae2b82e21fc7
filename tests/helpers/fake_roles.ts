/** Shared by the config and argv tests: a fake role table and an assertion. */
import assert from "node:assert/strict";
import { HOST_OPTION, type RoleInfo, UsageError } from "../../config/mod.ts";

/** A fake role table, so these tests do not depend on the real roles. */
export const ROLES: Record<string, RoleInfo> = {
  server: {
    summary: "Answers requests",
    usage: ["dist server [flags]"],
    options: {
      host: HOST_OPTION,
      port: { type: "port", description: "Port to listen on", default: 5557, short: "p" },
      service: { type: "string", description: "Service name" },
      binders: { type: "addresses", description: "Binders", ref: true },
    },
  },
  balancer: {
    summary: "Spreads requests over backends",
    usage: ["dist balancer [flags]"],
    options: {
      host: HOST_OPTION,
      port: { type: "port", description: "Port for clients", default: 5556, short: "p" },
      backends: { type: "addresses", description: "Servers to dial", ref: true, default: [] },
      workerPort: { type: "port", description: "Port workers dial", default: 8889 },
      policy: {
        type: "choice",
        description: "Balancing policy",
        choices: ["round-robin", "least-loaded", "p2c", "random"],
        default: "round-robin",
      },
    },
  },
  client: {
    summary: "Sends requests",
    usage: ["dist client [flags] <op> [args...]"],
    positionals: true,
    flagHints: { "--port": "the client dials: give --connect HOST:PORT" },
    options: {
      connect: {
        type: "address",
        description: "Server",
        ref: true,
        default: "127.0.0.1:5556",
        short: "c",
      },
      random: { type: "integer", description: "Random requests", min: 0 },
      timeout: { type: "duration", description: "Timeout", default: 5000 },
    },
  },
};

/** Asserts that `fn` throws a UsageError with exactly this message (or matching it). */
export function throwsUsage(fn: () => unknown, expected: string | RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof UsageError, `not a UsageError: ${error}`);
    if (typeof expected === "string") assert.equal(error.message, expected);
    else assert.match(error.message, expected);
    return true;
  });
}
