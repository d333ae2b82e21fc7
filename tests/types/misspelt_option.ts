// Expected NOT to compile: tests/types_test.ts runs `deno check` on it and
// wants exactly one error, TS2551 on the line below the marker.
import type { LISTENER_OPTIONS, RoleOptions } from "../../config/mod.ts";

export function limit(options: RoleOptions<typeof LISTENER_OPTIONS>): number {
  // FIXTURE-ERROR
  return options.maxConection;
}
