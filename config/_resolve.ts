/** Resolving instance names in `ref` options to "host:port". */
import { didYouMean } from "./_suggest.ts";
import type { OptionDef, Options } from "./spec.ts";
import { formatAddress, isReferenceName, toSnake } from "./values.ts";

/** What a reference needs to know about an instance. */
export interface Target {
  name: string;
  group: string;
  /** The machine it runs on (where its port is). */
  host: string;
  options: Options;
}

/** The host to dial for an instance listening on `host`: wildcards mean this machine. */
export function dialHost(host: unknown): string {
  if (typeof host !== "string" || ["", "0.0.0.0", "::", "[::]"].includes(host)) return "127.0.0.1";
  return host;
}

/** Instances by name: each entry's name (all its replicas) and each replica's name. */
export function nameTable<T extends Target>(instances: T[]): Map<string, T[]> {
  const names = new Map<string, T[]>();
  for (const instance of instances) {
    const group = names.get(instance.group);
    if (group === undefined) names.set(instance.group, [instance]);
    else group.push(instance);
    if (instance.name !== instance.group) names.set(instance.name, [instance]);
  }
  return names;
}

/**
 * Resolves the names in one `ref` option value to "host:port"; "host:port"
 * items pass through. A replicated name means all its replicas, which only a
 * list (`addresses`) can take.
 *
 * @returns the resolved value and the instance names it resolved to, or the
 *   problem as text (without the key)
 */
export function resolveValue(
  def: OptionDef,
  value: unknown,
  names: Map<string, Target[]>,
): { value: unknown; targets: string[] } | string {
  const addresses: string[] = [];
  const targets: string[] = [];
  for (const item of Array.isArray(value) ? value : [value]) {
    if (typeof item !== "string" || !isReferenceName(item)) {
      addresses.push(String(item));
      continue;
    }
    const found = names.get(item);
    if (found === undefined) {
      return `unknown instance ${JSON.stringify(item)}${didYouMean(item, names.keys())}`;
    }
    if (def.type === "address" && found.length > 1) {
      const range = `${found[0].name}..${found[found.length - 1].name}`;
      return `${JSON.stringify(item)} names ${found.length} instances (${range}): name one of them`;
    }
    const portKey = def.refPort ?? "port";
    for (const target of found) {
      const port = target.options[portKey];
      if (typeof port !== "number") {
        return `${JSON.stringify(target.name)} has no ${toSnake(portKey)} to connect to`;
      }
      addresses.push(formatAddress({ host: dialHost(target.host), port }));
      targets.push(target.name);
    }
  }
  return { value: def.type === "address" ? addresses[0] : addresses, targets };
}
