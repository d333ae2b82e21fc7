/**
 * Watching a service: keeps a `binder.watch` open on one binder and hands
 * every new list of instances to a callback; when that binder goes away, the
 * watch moves to the next binder, and the list it answers is handed over too.
 * A list too large for one frame (the binder refuses the watch with
 * FRAME_TOO_LARGE) is paged with `binder.list` instead, again every
 * {@link LIST_POLL_MS}, and the watch is tried again each time.
 */
import { getLogger } from "@logtape/logtape";
import { cut } from "../../wire/_log.ts";
import { Backoff, call, DistError, type Peer, sleep } from "../../wire/mod.ts";
import { binder, type Instance, MAX_LIST } from "../contracts/mod.ts";
import type { BinderClient } from "./binders.ts";

const log = getLogger(["dist", "discovery"]);

/** How often a list too large to watch is paged again with `binder.list`. */
export const LIST_POLL_MS = 3000;
const TOO_LARGE = Symbol("too large");
/** Most `binder.list` pages read for one list (a page holds up to 1,000 instances). */
const MAX_PAGES = 200;
/**
 * Most weight (see heapWeight) one list may take: 100,000 instances of 300
 * characters. A hostile binder's pages of 4 KB metadata made of empty arrays
 * were 200 MB read and over 1 GiB of heap for one list, every 3 s
 * (hostile46c F3); counted in characters alone, still 521-844 MiB of heap
 * (review r46 R3).
 */
const MAX_LIST_CHARS = 32 * 2 ** 20;
/** Most weight of one page (a binder writes up to a quarter of its frame, 256 KiB at 1 MiB). */
const MAX_PAGE_WEIGHT = 4 * 2 ** 20;

/**
 * What a decoded instance costs on the heap, read from the value itself
 * (not from its JSON made again): about its JSON's characters (strings as
 * their length, not their escapes), and 32 each array or object within it.
 */
function heapWeight(instance: unknown): number {
  let weight = -32; // (the instance itself: counted by its characters alone)
  const stack: unknown[] = [instance];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === "string") weight += v.length + 2;
    else if (typeof v === "number") weight += String(v).length;
    else if (typeof v !== "object" || v === null) weight += 5; // true, false, null
    else if (Array.isArray(v)) {
      weight += 34 + v.length;
      for (const x of v) stack.push(x);
    } else {
      weight += 34;
      for (const k in v) {
        weight += k.length + 4;
        stack.push((v as Record<string, unknown>)[k]);
      }
    }
  }
  return weight;
}

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

  const markAnswered = () => {
    if (answered) return;
    answered = true;
    for (const w of readyWaiters.splice(0)) w();
  };
  let warned = false;
  /** The watch was refused FRAME_TOO_LARGE: pages the list instead (true when it did). */
  const pageInstead = async (peer: Peer, address: string): Promise<boolean> => {
    if (!warned) {
      warned = true;
      log.warn(
        "The list of {service} is too large for one frame, so binder {binder} cannot push " +
          "its changes; paging it with binder.list every {ms} ms instead (and trying the watch again)",
        { service, binder: address, ms: LIST_POLL_MS },
      );
    }
    const list = await listAll(peer, service, abort.signal);
    if (list === undefined) return false;
    update(list);
    markAnswered();
    return true;
  };

  const loop = (async () => {
    const backoff = new Backoff({ min: 100, max: 2000 });
    while (!abort.signal.aborted) {
      let unsubscribe = () => {};
      let peer: Peer | undefined;
      let address = "";
      try {
        ({ peer, address } = await binders.connection());
        let tooLarge = () => {};
        const refused = new Promise<void>((resolve) => tooLarge = resolve);
        unsubscribe = binders.onNotification((method, params, from) => {
          if (from !== address) return;
          // The list grew past a frame: the binder ended the watch (see pageInstead).
          if (method === "binder.too_large") {
            if ((params as { service?: unknown } | undefined)?.service === service) tooLarge();
            return;
          }
          if (method !== binder.events.changed.name) return;
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
        markAnswered();
        if (warned) {
          warned = false;
          log.info("Watching {service} again: its list fits a frame", { service });
        }
        backoff.reset();
        log.debug("Watching {service} on binder {binder}", { service, binder: address });
        if (
          await Promise.race([peer.closed, stopping, refused.then(() => TOO_LARGE)]) === TOO_LARGE
        ) {
          continue; // watched again: refused FRAME_TOO_LARGE, then paged
        }
        if (!abort.signal.aborted) {
          log.info("Watch of {service} lost binder {binder}; moving on", {
            service,
            binder: address,
          });
        }
      } catch (caught) {
        let err = caught;
        unsubscribe();
        if (err instanceof DistError && err.code === "FRAME_TOO_LARGE" && peer !== undefined) {
          try {
            if (await pageInstead(peer, address)) {
              backoff.reset();
              await sleep(LIST_POLL_MS, abort.signal);
              continue;
            }
          } catch (listErr) {
            err = listErr;
          }
        }
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

/**
 * Every live instance of `service`, paged with `binder.list` from `peer`;
 * undefined past {@link MAX_PAGES} pages or {@link MAX_LIST_CHARS}, when a
 * page holds more than asked or does not move on, or once `signal` aborts.
 */
async function listAll(
  peer: Peer,
  service: string,
  signal: AbortSignal,
): Promise<Instance[] | undefined> {
  const all: Instance[] = [];
  let after: string | undefined;
  let chars = 0;
  for (let pages = 0; pages < MAX_PAGES && !signal.aborted; pages++) {
    const page = await call(
      peer,
      binder.methods.list,
      after === undefined ? { service, limit: MAX_LIST } : { service, after, limit: MAX_LIST },
    );
    if (page.instances.length > MAX_LIST) return undefined;
    let weight = 0;
    for (const i of page.instances) {
      if (i.service !== service) continue;
      weight += heapWeight(i);
      all.push(i);
    }
    // An honest page is a quarter of the binder's frame: one far past it is not paged on.
    if (weight > MAX_PAGE_WEIGHT) {
      log.warn("A page of the list of {service} weighs {mib} MiB; not taken", {
        service,
        mib: Math.round(weight / 2 ** 20),
      });
      return undefined;
    }
    chars += weight;
    if (chars > MAX_LIST_CHARS) {
      log.warn("The list of {service} runs past {mib} MiB; not taken", {
        service,
        mib: MAX_LIST_CHARS / 2 ** 20,
      });
      return undefined;
    }
    if (page.next === undefined) return all;
    if (page.next === after) return undefined;
    after = page.next;
  }
  if (!signal.aborted) {
    log.warn("The list of {service} runs past {pages} pages; not taken", {
      service,
      pages: MAX_PAGES,
    });
  }
  return undefined;
}
