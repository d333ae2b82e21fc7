/**
 * What the relay (relay.ts) needs of a request it keeps as bytes: a JSON
 * client's (relay.ts RawJob) or a MessagePack client's (msgpack_job.ts).
 */
import type { Envelope, Peer, RawCall } from "../../wire/mod.ts";
import type { Job } from "./forward.ts";

/**
 * A request kept as its client's bytes, sent to a JSON backend with
 * `callRaw`: a RawJob (relay.ts, a JSON client's) or a MessagePack client's
 * (msgpack_job.ts).
 */
export interface BytesJob extends Job, RawCall {
  readonly raw: true;
  /** What it counts in the byte bounds. */
  readonly size: number;
  readonly method: string;
  /** The client's id. */
  readonly id: number | string;
  readonly client: Peer;
  readonly flow: Peer;
  /** The backend connection of the current send. */
  via: Peer | undefined;
  /** Its params decoded, for a backend of another codec. @throws {DistError} BAD_REQUEST */
  decodeParams(): unknown;
  /** Passes a backend's answer (a view valid only now) to the client. */
  reply(answer: Envelope): void;
}
