/**
 * A connection's listeners of the events the other side sends
 * (`Connection.on`): by event name, each checked and typed by its contract
 * when given one.
 */
import type { Event } from "../wire/mod.ts";

export class Listeners {
  #byName = new Map<string, Set<(params: unknown) => void>>();

  /**
   * Calls `listener` with the params of every `event`: parsed by the
   * event's contract when it has one (a malformed one is dropped, as a
   * server drops a bad notification), as they came for a name.
   * @returns a function that stops listening
   */
  add(event: string | Event, listener: (params: never) => void): () => void {
    const name = typeof event === "string" ? event : event.name;
    const parse = typeof event === "string" ? undefined : event.params;
    const l = (params: unknown) => {
      let p = params;
      if (parse !== undefined) {
        try {
          p = parse(params);
        } catch {
          return;
        }
      }
      (listener as (params: unknown) => void)(p);
    };
    let set = this.#byName.get(name);
    if (set === undefined) this.#byName.set(name, set = new Set());
    set.add(l);
    return () => set.delete(l);
  }

  /** Tells every listener of `method` its params. */
  emit(method: string, params: unknown): void {
    for (const l of this.#byName.get(method) ?? []) l(params);
  }

  /** How many listen to `method`. */
  count(method: string): number {
    return this.#byName.get(method)?.size ?? 0;
  }
}
