/**
 * Answers counted a run at a time (issue 16). The requests one client
 * connection hands over in one turn go to one backend (runs.ts), and their
 * answers come back together, in one read of that backend's connection: a
 * run of answers of one connection, from one backend, sent at one time and
 * answered at one time. The shares count such a run once (slots, unread
 * bytes, pacing, the allowance: Shares.gave), not answer by answer; it is
 * counted before anything reads what they count (Shares flushes it first).
 * Only requests under PACED_BYTES join a run: a larger one counts alone.
 */
import type { ClientShare } from "./slots.ts";

/** A request as the run sees it (forward.ts's Job: its backend is set before it is sent). */
type Sent = { readonly bytes?: number; readonly backend?: object; readonly sentAt: number };

export class AnswerRun {
  /** Answers in the run (0: none pending). */
  n = 0;
  /** Their bytes together. */
  bytes = 0;
  share: ClientShare | undefined;
  backend: object | undefined;
  sentAt = 0;
  now = 0;
  bulk = false;

  /** Whether the answer to `sent` (of `share`, sent as `bulk`, answered at `now`) joins the run. */
  joins(share: ClientShare, bulk: boolean, now: number, sent: Sent): boolean {
    return this.share === share && this.backend === sent.backend && this.sentAt === sent.sentAt &&
      this.now === now && this.bulk === bulk;
  }

  /** Starts a run with the answer to `sent`. */
  start(share: ClientShare, bulk: boolean, now: number, sent: Sent): void {
    this.share = share;
    this.backend = sent.backend;
    this.sentAt = sent.sentAt;
    this.now = now;
    this.bulk = bulk;
    this.bytes = sent.bytes ?? 0;
    this.n = 1;
  }

  /** Ends the run (its share and backend are not kept). */
  clear(): void {
    this.n = 0;
    this.share = this.backend = undefined;
  }
}
