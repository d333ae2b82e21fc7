/**
 * What a publish's acknowledgement waits for when deliveries are kept on
 * disk (BrokerCore.keeper: MQTT persistent sessions under `--data-dir`):
 * its deliveries made (its match, the fan-out's backlog), then the
 * keeper's commit of the rows they wrote (hostile review 39b Q1: an MQTT
 * PUBACK went before them, and a SIGKILL lost what it acknowledged).
 * Under `--fsync batch` it waits for the commit, not for the WAL's sync
 * that follows it: a SIGKILL keeps what is committed, and an fdatasync per
 * PUBACK made a sequential QoS 1 publisher 75 times slower as soon as one
 * away session matched its topic (hostile review 40a T3; `always` still
 * syncs each commit before it resolves).
 *
 * Every promise given out is observed here: a publish nobody answers (MQTT
 * QoS 0, a Will, the `$SYS` statistics) drops it, and a failed commit (a
 * full disk) must not reject it unhandled, which ends the process (hostile
 * review 40a T10). The store warns of the failure and retries the writes.
 */
import type { FanOut } from "./fanout.ts";
import type { Keeper } from "./core_types.ts";

export class Settles {
  /**
   * What the last publish's answer waits for (see PublishResult.settled):
   * `written` is the keeper's count of writes before it. Undefined: nothing.
   */
  settled(
    fanOut: FanOut,
    later: Promise<number> | undefined,
    keeper: Keeper,
    written: number,
  ): Promise<void> | undefined {
    if (later === undefined) {
      const made = fanOut.whenMade();
      if (made !== undefined) return observed(made.then(() => keeper.commit(false)));
      // One promise for the publishes until the next commit (it covers them all).
      return keeper.commitSince(written, false);
    }
    // Its deliveries are being made once `later` resolves: those waiting then are made after.
    const made = () => fanOut.whenMade(true);
    return observed(later.then(made, made).then(() => keeper.commit(false)));
  }
}

function ignore(): void {}

/** `promise`, marked handled: whoever waits for it still sees it reject. */
function observed(promise: Promise<void>): Promise<void> {
  promise.catch(ignore);
  return promise;
}
