/**
 * Relaying one request to a backend's connection and classifying how it
 * ended, for the dispatcher (forward.ts): an answer (result or error reply)
 * goes back to the client with the backend's `by`; a connection that died
 * with the request on it is "lost" (the dispatcher fails over); no answer
 * within `--timeout` is a TIMEOUT.
 *
 * Two kinds of job share one dispatcher (one queue, one rotation):
 * - a {@link RawJob} came from a JSON client and is never decoded: its
 *   method and params go to a JSON backend as the bytes they arrived as,
 *   and the answer comes back the same way (wire/passthrough.ts); only the
 *   id changes on the way. Sent to a backend of another codec, its params
 *   are decoded once and the answer encoded once.
 * - a {@link DecodedJob} is one the Peer decoded (a MessagePack client, or
 *   a frame the pass-through leaves to the decoder).
 */
import { getLogger } from "@logtape/logtape";
import {
  DistError,
  type Envelope,
  jsonCodec,
  type Peer,
  Reply,
  type RequestSpans,
  writeAnswerAs,
  writeRequestAs,
} from "../../wire/mod.ts";
import type { Backend, Transition } from "./backends.ts";
import type { Dispatcher, DispatchHooks, Job, Outcome } from "./forward.ts";
import type { Link } from "./links.ts";

const log = getLogger(["dist", "balancer"]);

/** A request decoded from a client, waiting for its answer. */
export interface DecodedJob extends Job {
  readonly raw: false;
  method: string;
  params: unknown;
  /** The client's name, for the request log. */
  client: string;
  resolve: (reply: Reply) => void;
  reject: (err: DistError) => void;
}

/** A request kept as the client's bytes: a copy of its frame and the spans in it. */
export interface RawJob extends Job, RequestSpans {
  readonly raw: true;
  method: string;
  /** The client's id, and where its bytes sit in `payload`. */
  id: number | string;
  idStart: number;
  idEnd: number;
  client: Peer;
}

export type ForwardJob = DecodedJob | RawJob;

/** A RawJob for a request scanned by the pass-through (copies the frame). */
export function rawJob(request: Envelope, client: Peer): RawJob {
  return {
    raw: true,
    payload: request.payload.slice(),
    method: request.method!,
    id: request.id!,
    idStart: request.idStart,
    idEnd: request.idEnd,
    methodStart: request.methodStart,
    methodEnd: request.methodEnd,
    paramsStart: request.paramsStart,
    paramsEnd: request.paramsEnd,
    idempotent: request.idempotent,
    client,
    attempts: 0,
    deadline: 0,
    sentAt: 0,
  };
}

export interface RelayOptions {
  /** Longest wait for a backend's answer (`--timeout`), ms. */
  timeoutMs: number;
  /** Told when a send finds a backend's connection gone. */
  report: (t: Transition | undefined) => void;
  /** Log every request at debug level. */
  logRequests: boolean;
}

/** Whether a local call failure means the backend's connection died with the request. */
function connectionLost(peer: Peer, err: DistError): boolean {
  return err.code === "UNAVAILABLE" && (peer.isClosed || peer.conn.readEnded);
}

const textDecoder = new TextDecoder();

/** The hooks that send both kinds of job to backends' connections. */
export function relayHooks(
  dispatcher: () => Dispatcher<ForwardJob>,
  options: RelayOptions,
): DispatchHooks<ForwardJob> {
  const { timeoutMs, report, logRequests } = options;
  const timedOut = (backend: Backend) =>
    new DistError("TIMEOUT", `Backend ${backend.name} did not answer within ${timeoutMs} ms`);

  const done = (job: ForwardJob, backend: Backend, outcome: Outcome, detail: string) => {
    if (logRequests) {
      log.debug("{client} {method} -> {backend}: {outcome} in {ms} ms", {
        client: job.raw ? job.client.remote.name : job.client,
        method: job.method,
        backend: backend.name,
        outcome: detail,
        ms: Math.round((performance.now() - job.sentAt) * 1000) / 1000,
      });
    }
    dispatcher().finish(job, outcome);
  };

  /** The end of a call that failed locally (not an error answered by the backend). */
  const failed = (job: ForwardJob, backend: Backend, peer: Peer, e: DistError) => {
    if (connectionLost(peer, e)) {
      report(backend.onLost(e.message));
      done(job, backend, "lost", "lost");
    } else if (e.code === "TIMEOUT") {
      done(job, backend, "timeout", "timeout");
      answerError(job, timedOut(backend));
    } else {
      done(job, backend, "answered", e.code);
      answerError(job, e);
    }
  };

  const answerError = (job: ForwardJob, err: DistError) => {
    if (job.raw) job.client.answerError(job.id, err);
    else job.reject(err);
  };

  /** Bytes in, bytes out: the JSON pass-through. */
  const sendRaw = (job: RawJob, backend: Backend, peer: Peer): boolean => {
    const onAnswer = (answer: Envelope | DistError) => {
      if (answer instanceof DistError) return failed(job, backend, peer, answer);
      done(job, backend, "answered", answer.errorStart >= 0 ? "error" : "ok");
      const id = { bytes: job.payload, start: job.idStart, end: job.idEnd };
      const client = job.client;
      client.answerRaw(job.id, (out) => writeAnswerAs(out, answer, id, client.conn.maxFrame));
    };
    try {
      return peer.callRaw(
        (out, id) => writeRequestAs(out, job, id, peer.conn.maxFrame),
        onAnswer,
        timeoutMs,
      );
    } catch (err) {
      // Too large for the backend's frame limit: the client's answer, not the backend's fault.
      queueMicrotask(() => {
        done(job, backend, "answered", "too large");
        answerError(job, DistError.from(err));
      });
      return true;
    }
  };

  /** Values in, values out: `Peer.request`. */
  const sendDecoded = (
    job: ForwardJob,
    params: unknown,
    backend: Backend,
    peer: Peer,
  ): boolean => {
    peer.request(job.method, params, { timeout: timeoutMs, idempotent: job.idempotent }).then(
      (res) => {
        done(job, backend, "answered", "ok");
        if (job.raw) job.client.answer(job.id, new Reply(res.result, res.by));
        else job.resolve(new Reply(res.result, res.by));
      },
      (err) => {
        const e = DistError.from(err);
        if (connectionLost(peer, e) || e.code === "TIMEOUT") return failed(job, backend, peer, e);
        done(job, backend, "answered", e.code);
        answerError(job, e);
      },
    );
    return true;
  };

  return {
    send(job, backend) {
      const peer = (backend.link as Link | undefined)?.peer;
      if (peer === undefined || peer.isClosed || peer.conn.readEnded) {
        report(backend.onLost("connection closed"));
        return false;
      }
      if (!job.raw) return sendDecoded(job, job.params, backend, peer);
      if (peer.codec === jsonCodec) {
        if (sendRaw(job, backend, peer)) return true;
        report(backend.onLost("connection closed"));
        return false;
      }
      // A backend of another codec: decode the params once.
      let params: unknown;
      if (job.paramsStart >= 0) {
        try {
          params = JSON.parse(
            textDecoder.decode(job.payload.subarray(job.paramsStart, job.paramsEnd)),
          );
        } catch (err) {
          queueMicrotask(() => {
            done(job, backend, "answered", "BAD_REQUEST");
            answerError(job, new DistError("BAD_REQUEST", `Invalid JSON params: ${err}`));
          });
          return true;
        }
      }
      return sendDecoded(job, params, backend, peer);
    },
    reject(job, err) {
      answerError(job, err);
    },
  };
}
