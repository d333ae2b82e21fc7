/**
 * Watching a service: keeps a `binder.watch` open on one binder and hands
 * every new list of instances to a callback; when that binder goes away, the
 * watch moves to the next binder, and the list it answers is handed over too.
 */
import { getLogger } from "@logtape/logtape";
import { cut } from "../../wire/_log.ts";
import { Backoff, call, sleep } from "../../wire/mod.ts";
import { binder, type Instance } from "../contracts/mod.ts";
import type { BinderClient } from "./binders.ts";

const log = getLogger(["dist", "discovery"]);

/** A running watch. */
export interface ServiceWatch {
  /** The latest list of live instances (empty until a binder answered). */
  readonly instances: readonly Instance[];
  /** Resolves once a binder has answered the watch (or after `timeoutMs`, with false). */
  ready(timeoutMs: number): Promise<boolean>;
  /** Stops watching (the binder client stays open; close it yourself). */
  stop(): Promise<void>;
}

/**
 * Watches `service` through `binders`, calling `onChange` with the full list
 * of live instances when the watch starts, on every change, and after moving
 * to another binder when the list it has differs. Runs until stopped.
 */
export function watchService(
  binders: BinderClient,
  service: string,
  onChange: (instances: Instance[]) => void,
): ServiceWatch {
  let instances: Instance[] = [];
  let shown: string | undefined;
  const abort = new AbortController();
  const stopping = new Promise<void>((resolve) =>
    abort.signal.addEventListener("abort", () => resolve(), { once: true })
  );
  let answered = false;
  const readyWaiters: (() => void)[] = [];

  const update = (list: Instance[]) => {
    const text = JSON.stringify(list);
    if (text === shown) return;
    shown = text;
    instances = list;
    try {
      onChange(list);
    } catch (err) {
      log.error("A watch callback of {service} failed: {error}", {
        service,
        error: cut(String(err)),
      });
    }
  };

  const loop = (async () => {
    const backoff = new Backoff({ min: 100, max: 2000 });
    while (!abort.signal.aborted) {
      let unsubscribe = () => {};
      try {
        const { peer, address } = await binders.connection();
        unsubscribe = binders.onNotification((method, params, from) => {
          if (method !== binder.events.changed.name || from !== address) return;
          let changed;
          try {
            changed = binder.events.changed.params(params);
          } catch (err) {
            log.debug("Ignored a malformed binder.changed: {error}", { error: cut(String(err)) });
            return;
          }
          if (changed.service === service) update(changed.instances);
        });
        const answer = await call(peer, binder.methods.watch, { service });
        update(answer.instances);
        if (!answered) {
          answered = true;
          for (const w of readyWaiters.splice(0)) w();
        }
        backoff.reset();
        log.debug("Watching {service} on binder {binder}", { service, binder: address });
        await Promise.race([peer.closed, stopping]);
        if (!abort.signal.aborted) {
          log.info("Watch of {service} lost binder {binder}; moving on", {
            service,
            binder: address,
          });
        }
      } catch (err) {
        log.debug("Cannot watch {service}: {error}", { service, error: cut(String(err)) });
        await sleep(backoff.next(), abort.signal);
      } finally {
        unsubscribe();
      }
    }
  })();

  return {
    get instances() {
      return instances;
    },
    ready(timeoutMs) {
      if (answered) return Promise.resolve(true);
      return new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), timeoutMs);
        readyWaiters.push(() => {
          clearTimeout(timer);
          resolve(true);
        });
      });
    },
    async stop() {
      abort.abort();
      await loop;
    },
  };
}
