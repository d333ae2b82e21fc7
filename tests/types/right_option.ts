// Expected to compile: tests/types_test.ts runs `deno check` on it (the twin
// of misspelt_option.ts, so a failure there is the misspelling, not the setup).
import type { LISTENER_OPTIONS, RoleOptions } from "../../config/mod.ts";

export function limit(options: RoleOptions<typeof LISTENER_OPTIONS>): number {
  const host: string = options.host;
  const name: string | undefined = options.name;
  const codec: "json" | "msgpack" = options.codec;
  void [host, name, codec];
  return options.maxConnections;
}
