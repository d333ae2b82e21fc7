/**
 * The layout of a publisher's last publish in another layout than
 * JSON.stringify's (Python's json.dumps spacing, another member order: read
 * member by member, see readPublish), kept as the bytes before its value
 * (its head) and after it (its tail). The next frame of that publisher that
 * starts with the head and, once its value is scanned, ends with the tail is
 * the same publish with another value: same topic, same retain flag, no
 * member to look for. As TopicCache's head does for the canonical layout,
 * whose head ends at the value and whose tail is one of three.
 *
 * Why that is the same publish: the head leaves the reader where a value is
 * due (at the same depth), the value scanned is valid and ends where a
 * value ends (a tail starts with `,`, `}`, `]` or a space: nothing that
 * continues a number or a literal), and the tail is the bytes that followed
 * a value in a frame read in full.
 */
import { WordRun } from "./byte_words.ts";
import { charge, runCost } from "./publish_memo.ts";

/** Frames longer than this are not kept: a head and a tail are a few dozen bytes. */
const MAX_KEPT = 1024;
/** Misses in a row past which fewer layouts are kept: the 8th, 16th, … up to one in 256. */
const RETRY_EVERY = 4, RETRY_MOST = 256;

export class LayoutMemo {
  #head: WordRun | undefined = undefined;
  #tail: Uint8Array = new Uint8Array(0);
  #misses = 0;
  /** What the head and tail take, as counted in memoMemory. */
  #cost = 0;
  /** The kept publish's topic and retain flag. */
  topic = "";
  retain = true;

  /**
   * Where the value starts when `b` starts with the kept head and has room
   * for a value and the tail after it, else 0.
   */
  head(b: Uint8Array): number {
    const head = this.#head;
    if (head === undefined || b.length <= head.length + this.#tail.length) return 0;
    return head.at(b, 0) ? head.length : 0;
  }

  /** Whether `b` ends with the kept tail from `end` (where its value ends) on. */
  tail(b: Uint8Array, end: number): boolean {
    const tail = this.#tail;
    const n = tail.length;
    if (b.length - end !== n) return false;
    for (let i = 0; i < n; i++) if (b[end + i] !== tail[i]) return false;
    this.#misses = 0;
    return true;
  }

  /**
   * A notification `b` read in full by the member-by-member reader, its
   * value `b[start, end)`: kept, but after RETRY_EVERY in a row, only the
   * 8th, 16th, … and then one in RETRY_MOST (a publisher whose layout keeps
   * changing does not pay two copies a publish).
   */
  keep(b: Uint8Array, start: number, end: number, topic: string, retain: boolean): void {
    const run = ++this.#misses;
    if (b.length > MAX_KEPT) return;
    if (run > RETRY_EVERY && (run & (run - 1)) !== 0 && run % RETRY_MOST !== 0) return;
    // Within the process's budget for memos (else the next ones are read member by member too).
    const cost = runCost(start) + runCost(b.length - end);
    if (!charge(cost - this.#cost)) return;
    this.#cost = cost;
    this.#head = new WordRun(b.slice(0, start));
    this.#tail = b.slice(end);
    this.topic = topic;
    this.retain = retain;
  }

  /** Gives back what is kept (the publisher's connection closed). */
  release(): void {
    charge(-this.#cost);
    this.#cost = 0;
    this.#head = undefined;
    this.#tail = new Uint8Array(0);
  }
}
