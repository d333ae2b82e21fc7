/**
 * The guarded HTTP server's connections (a role's `--metrics`, `dist up`'s
 * dashboard) in the process's descriptor account (wire/descriptors.ts), as
 * every other port's are (hostile36 J11). Left out, they were descriptors
 * nobody counted: under `ulimit -n 1024`, `dist balancer --mode tcp` lowered
 * `--max-connections` to 445 to fit its own connections, and 256 silent
 * connections to its metrics port (that server's own bound) plus 380 to its
 * L4 port (below 445) ran it out of descriptors: `Accept failed: Too many
 * open files`, checks not made, a legit client unanswered. Charged here, a
 * connection to the metrics port counts against its address's share like
 * one to any other port: when the descriptors for connections are all in
 * use, the address holding the most gives way, whichever port it holds them
 * on, and one that holds its share is refused (503).
 */
import { clientSource } from "../auth/mod.ts";
import type { DistError } from "../wire/mod.ts";
import {
  type DescriptorAccount,
  type DescriptorHolder,
  processAccount,
} from "../wire/descriptors.ts";
import type { Connection } from "./http_conn.ts";

/** A guarded server's connections, charged one descriptor each to the process's account. */
export class HttpDescriptors implements DescriptorHolder {
  readonly #account: DescriptorAccount;
  /** The connections charged, in the order taken, each with its source's key. */
  readonly #charged = new Map<Connection, string>();

  /** @param account the process's (default {@link processAccount}) */
  constructor(account: DescriptorAccount = processAccount()) {
    this.#account = account;
  }

  /**
   * Takes a new connection into the account, making room for it when the
   * descriptors for connections are all in use (other connections, of any
   * port, may be closed for it).
   * @returns the error to refuse it with when no room can be made
   */
  admit(c: Connection): DistError | undefined {
    const key = clientSource(undefined, c.address);
    const refused = this.#account.makeRoom(key, 1);
    if (refused !== undefined) return refused;
    this.#account.charge(this, key, 1);
    this.#charged.set(c, key);
    return undefined;
  }

  /** A connection {@link admit}ted ended (again: nothing). */
  leave(c: Connection): void {
    const key = this.#charged.get(c);
    if (key === undefined) return;
    this.#charged.delete(c);
    this.#account.release(this, key, 1);
  }

  /**
   * For the accept loop, before each accept: a turn of the event loop once
   * connections were closed to make room (their descriptors are freed then),
   * else undefined (see DescriptorAccount.freed).
   */
  freed(): Promise<void> | undefined {
    return this.#account.freed();
  }

  /**
   * For the account: closes the oldest connection of `key` (any source's
   * when undefined) that waits for a request header: one that has not
   * asked anything yet, or a kept-alive one between requests.
   */
  closeNewcomer(key: string | undefined): boolean {
    for (const [c, k] of this.#charged) {
      if ((key === undefined || k === key) && c.waitingSince >= 0) {
        this.#close(c);
        return true;
      }
    }
    return false;
  }

  /** For the account: closes `key`'s newest connection. */
  closeNewest(key: string, _why: DistError): boolean {
    let newest: Connection | undefined;
    for (const [c, k] of this.#charged) if (k === key) newest = c;
    if (newest === undefined) return false;
    this.#close(newest);
    return true;
  }

  /** Closes `c` and gives its descriptor back at once (the account's loop counts on it). */
  #close(c: Connection): void {
    this.#account.closing();
    c.close();
    this.leave(c);
  }
}
