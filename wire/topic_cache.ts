/**
 * The last topic a frame reader read (wire/pubsub_json.ts, the broker's
 * MessagePack reader), kept with the head of a publisher's run on it.
 */
import { WordRun } from "./byte_words.ts";
import { charge, PublishMemo, runCost } from "./publish_memo.ts";
import { LayoutMemo } from "./layout_memo.ts";
import { MAX_TOPIC_LENGTH } from "./check.ts";

const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * Remembers the last topic read, so a run of messages on one topic makes one
 * string; and for a publisher's run of publishes on one topic in the
 * canonical layout, the bytes they start with up to the value (its head:
 * see readPublish), so that each one after the first two checks its head
 * as one run of words rather than piece by piece.
 */
export class TopicCache {
  #bytes = new Uint8Array(0);
  #topic = "";
  /** Whether the last call to `topic` gave the topic of the call before. */
  #repeated = false;
  #head: WordRun | undefined = undefined;
  #headTopic = "";
  /** What the head takes, as counted in memoMemory (see PublishMemo). */
  #headCost = 0;
  /** The publisher's last publishes read in full (see PublishMemo). */
  readonly memo: PublishMemo = new PublishMemo();
  /** The publisher's last publish in another layout (see LayoutMemo). */
  readonly layout: LayoutMemo = new LayoutMemo();

  /** The topic in `frame[from, to)` (ASCII). */
  topic(frame: Uint8Array, from: number, to: number): string {
    const cached = this.#bytes;
    const len = to - from;
    if (len === cached.length) {
      let same = true;
      for (let i = 0; i < len; i++) {
        if (frame[from + i] !== cached[i]) {
          same = false;
          break;
        }
      }
      if (same) {
        this.#repeated = true;
        return this.#topic;
      }
    }
    this.#repeated = false;
    // Longer than any topic the broker takes (ASCII: a byte a character): read, not kept, since it
    // is refused (hostile45b K-B7: 60 publishers' refused 500,000-character topics, each kept with
    // its connection, held 30 MiB counted nowhere).
    if (len > MAX_TOPIC_LENGTH) return decoder.decode(frame.subarray(from, to));
    this.#bytes = frame.slice(from, to);
    this.#topic = decoder.decode(this.#bytes);
    return this.#topic;
  }

  /**
   * The length of the head kept (see `keepHead`) when `frame` starts with
   * it and has more after it, else 0; its topic is then `headTopic`.
   */
  head(frame: Uint8Array): number {
    const head = this.#head;
    return head !== undefined && frame.length > head.length && head.at(frame, 0) ? head.length : 0;
  }

  get headTopic(): string {
    return this.#headTopic;
  }

  /**
   * Keeps `frame[0, end)`, a canonical publish's bytes up to its value,
   * whose topic `topic` has just given: only when it gave the same
   * topic the time before too (a run of publishes on one topic), so a
   * publisher going round many topics does not copy a head per publish.
   */
  keepHead(frame: Uint8Array, end: number, topic: string): void {
    if (!this.#repeated || (this.#head !== undefined && this.#headTopic === topic)) return;
    if (!charge(runCost(end) - this.#headCost)) return; // past the process's budget for memos
    this.#headCost = runCost(end);
    this.#head = new WordRun(frame.slice(0, end));
    this.#headTopic = topic;
  }

  /** Gives back what the memos and the head take (the publisher's connection closed). */
  release(): void {
    this.memo.release();
    this.layout.release();
    charge(-this.#headCost);
    this.#headCost = 0;
    this.#head = undefined;
  }
}
