/**
 * The commit promises `Store.commitSince` gives: one shared by its callers
 * until a commit runs (that commit covers every write made before it), so
 * a turn of many publishes waits with one promise, not one each; marked
 * handled, so a caller that drops it (a publish nobody answers) does not
 * end the process when the commit fails (hostile review 40a T10).
 */

/** What of a store the sharing reads. */
interface Committing {
  commit(synced: boolean): Promise<void>;
  /** Commits done and failed so far: while they are unchanged, the next commit covers every write. */
  readonly counters: { readonly commits: number; readonly failed: number };
  /** Writes not committed yet. */
  readonly pending: number;
}

export class SharedCommits {
  readonly #store: Committing;
  /** By `synced` (0: false, 1: true): the promise, and the commits and failures when it was made. */
  readonly #slots: ({ promise: Promise<void>; at: number } | undefined)[] = [undefined, undefined];

  constructor(store: Committing) {
    this.#store = store;
  }

  /** `store.commit(synced)`, the promise shared until a commit runs. */
  commit(synced: boolean): Promise<void> {
    const { counters } = this.#store;
    const at = counters.commits + counters.failed;
    const slot = synced ? 1 : 0;
    const shared = this.#slots[slot];
    if (shared !== undefined && shared.at === at) return shared.promise;
    const promise = this.#store.commit(synced);
    promise.catch(() => {});
    // Shared only while writes wait for it: the commit that takes them ends the sharing.
    this.#slots[slot] = this.#store.pending > 0 ? { promise, at } : undefined;
    return promise;
  }
}
