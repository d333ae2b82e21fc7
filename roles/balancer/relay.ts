/**
 * Relaying one request to a backend's connection and classifying how it
 * ended, for the dispatcher (forward.ts): an answer (result or error reply)
 * goes back to the client with the backend's `by`; a connection that died
 * with the request on it is "lost" (the dispatcher fails over); no answer
 * within `--timeout` is a TIMEOUT.
 */
import { getLogger } from "@logtape/logtape";
import { DistError, Reply } from "../../wire/mod.ts";
import type { Backend, Transition } from "./backends.ts";
import type { Dispatcher, DispatchHooks, Job, Outcome } from "./forward.ts";
import type { Link } from "./links.ts";

const log = getLogger(["dist", "balancer"]);

/** A request decoded from a client, waiting for its answer. */
export interface DecodedJob extends Job {
  method: string;
  params: unknown;
  /** The client's name, for the request log. */
  client: string;
  resolve: (reply: Reply) => void;
  reject: (err: DistError) => void;
}

export interface RelayOptions {
  /** Longest wait for a backend's answer (`--timeout`), ms. */
  timeoutMs: number;
  /** Told when a send finds a backend's connection gone. */
  report: (t: Transition | undefined) => void;
  /** Log every request at debug level. */
  logRequests: boolean;
}

/** The hooks that send decoded requests with `Peer.request`. */
export function decodedHooks(
  dispatcher: () => Dispatcher<DecodedJob>,
  options: RelayOptions,
): DispatchHooks<DecodedJob> {
  const { timeoutMs, report, logRequests } = options;
  const done = (job: DecodedJob, backend: Backend, outcome: Outcome, detail: string) => {
    if (logRequests) {
      log.debug("{client} {method} -> {backend}: {outcome} in {ms} ms", {
        client: job.client,
        method: job.method,
        backend: backend.name,
        outcome: detail,
        ms: Math.round((performance.now() - job.sentAt) * 1000) / 1000,
      });
    }
    dispatcher().finish(job, outcome);
  };
  return {
    send(job, backend) {
      const peer = (backend.link as Link | undefined)?.peer;
      if (peer === undefined || peer.isClosed || peer.conn.readEnded) {
        report(backend.onLost("connection closed"));
        return false;
      }
      const callOptions = { timeout: timeoutMs, idempotent: job.idempotent };
      peer.request(job.method, job.params, callOptions).then(
        (res) => {
          done(job, backend, "answered", "ok");
          job.resolve(new Reply(res.result, res.by));
        },
        (err) => {
          const e = DistError.from(err);
          if (e.code === "UNAVAILABLE" && (peer.isClosed || peer.conn.readEnded)) {
            // The connection died (or the backend closed its side) with the
            // request on it: our own call's failure, not an UNAVAILABLE
            // answered by the backend.
            report(backend.onLost(e.message));
            done(job, backend, "lost", "lost");
          } else if (e.code === "TIMEOUT") {
            done(job, backend, "timeout", "timeout");
            job.reject(
              new DistError(
                "TIMEOUT",
                `Backend ${backend.name} did not answer within ${timeoutMs} ms`,
              ),
            );
          } else {
            done(job, backend, "answered", e.code);
            job.reject(e);
          }
        },
      );
      return true;
    },
    reject(job, err) {
      job.reject(err);
    },
  };
}
