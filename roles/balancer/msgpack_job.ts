/**
 * A MessagePack client's request, forwarded as bytes (hostile34 Z7): its
 * envelope is read by wire/msgpack_scan.ts, its params checked and kept as
 * the bytes they came as, never built into objects. Their size as JSON is
 * counted when the request comes, up to the frame (wire/msgpack_json_size.ts;
 * hostile46a G8: 900 KB of U+0001 is 5.4 MB of JSON, written whole twice and
 * counted whole against the client's share until its queue timeout): one
 * that does not fit a JSON backend's frame is refused FRAME_TOO_LARGE at
 * once unless a MessagePack backend may take it. To a JSON backend they are
 * written as JSON text byte to byte (wire/msgpack_to_json.ts) at each send;
 * to a MessagePack backend they are decoded for the send. The answer, a JSON
 * backend's bytes, is decoded and written to the client in MessagePack.
 */
import {
  DistError,
  type Envelope,
  jsonCodec,
  msgpackCodec,
  type MsgpackRequest,
  type OutBuffer,
  parseJson,
  type Peer,
  type RawReply,
} from "../../wire/mod.ts";
import { HEADER_BYTES } from "../../wire/frame.ts";
import { msgpackToJson } from "../../wire/msgpack_to_json.ts";
import { msgpackJsonSize } from "../../wire/msgpack_json_size.ts";
import type { Trial } from "./trials.ts";
import type { Backend } from "./backends.ts";
import type { BytesJob } from "./bytes_job.ts";
import type { FairItem, Flow } from "./queue.ts";
import type { ClientShare } from "./shares.ts";
import { keep, keptAt } from "./raw_frames.ts";

const encoder = new TextEncoder();
const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });
const ID_OPEN = encoder.encode('{"id":');
const METHOD_MEMBER = encoder.encode(',"method":');
const PARAMS_MEMBER = encoder.encode(',"params":');
const IDEM_FALSE = encoder.encode(',"idem":false');

/** What a MsgpackJob's answer goes back through (the Relay). */
export interface Answered {
  rawAnswered(job: BytesJob, answer: Envelope | DistError): void;
}

/** The last method's JSON text: a connection mostly sends one name over and over. */
let lastMethod = "";
let lastMethodJson = encoder.encode('""');

function methodJson(method: string): Uint8Array {
  if (method !== lastMethod) {
    lastMethodJson = encoder.encode(JSON.stringify(method));
    lastMethod = method;
  }
  return lastMethodJson;
}

function put(out: OutBuffer, bytes: Uint8Array): void {
  out.bytes.set(bytes, out.length);
  out.length += bytes.length;
}

/**
 * The size as JSON text of the MessagePack `params`, what they take on a
 * JSON backend's connection (hostile33 Y9), counted without writing them;
 * -1 past `atMost` (counted no further).
 * @throws {DistError} BAD_REQUEST for what the transcoder does not write
 */
export function jsonSizeOf(params: Uint8Array, atMost = Infinity): number {
  try {
    return msgpackJsonSize(params, atMost);
  } catch (err) {
    throw new DistError("BAD_REQUEST", `Cannot forward as JSON: ${(err as Error).message}`);
  }
}

/** The JSON request's bytes besides its params and the digits of its id. */
function envelopeBytes(method: Uint8Array, idempotent: boolean): number {
  return ID_OPEN.length + METHOD_MEMBER.length + method.length + PARAMS_MEMBER.length +
    (idempotent ? 0 : IDEM_FALSE.length) + 1;
}

/** Where a MsgpackJob may go, as its client's request comes. */
export interface MsgpackRoute {
  /** The frame limit of the backends' connections (`--max-frame`). */
  maxFrame: number;
  /** Whether a backend of the pool speaks MessagePack (it takes params of any size as JSON). */
  decodes: () => boolean;
  /** Whether `b` speaks MessagePack; undefined when every backend does (`--codec msgpack`). */
  decoder?: (b: Backend) => boolean;
  /** Told of a request refused for its size as JSON (tarpit.ts), once it is answered. */
  refused?: (client: Peer) => void;
  /** Told of each client connection (tarpit.ts pauses a large frame's body: early()). */
  arrived?: (client: Peer) => void;
}

/** A MessagePack client's request kept as bytes; its own RawCall and RawReply. */
export class MsgpackJob implements BytesJob, RawReply {
  readonly raw = true as const;
  readonly size: number;
  readonly method: string;
  readonly id: number | string;
  readonly idempotent: boolean;
  readonly client: Peer;
  readonly flow: Peer;
  attempts = 0;
  deadline = 0;
  sentAt = 0;
  takenAt = 0;
  queuedBytes = 0;
  bulk = false;
  bytes = 0;
  backend?: Backend;
  via: Peer | undefined;
  share: ClientShare | undefined = undefined;
  line: Flow<FairItem> | undefined = undefined;
  trial: Trial | undefined = undefined;
  /** The backends it may go to: those that speak MessagePack when its params pass the frame as JSON. */
  only: ((b: Backend) => boolean) | undefined = undefined;
  /** The buffer holding a copy of the params (shared with other requests: see keep), and where. */
  #held: Uint8Array | undefined;
  #start = 0;
  #end = 0;
  #relay: Answered;
  #answer: Envelope | undefined;
  /** The params' size as JSON text; -1 when that passes the frame (sent only to a MessagePack backend). */
  #json = 0;

  /**
   * Keeps a copy of the params of `request` (read by scanMsgpackRequest).
   * @throws {DistError} BAD_REQUEST when its params cannot be written as JSON;
   * FRAME_TOO_LARGE when as JSON they pass the frame and no backend decodes them
   */
  constructor(relay: Answered, request: MsgpackRequest, client: Peer, route: MsgpackRoute) {
    this.#relay = relay;
    this.client = this.flow = client;
    this.method = request.method!;
    this.id = request.id!;
    this.idempotent = request.idempotent;
    let size = this.method.length + 32;
    if (request.paramsStart >= 0) {
      const params = request.payload.subarray(request.paramsStart, request.paramsEnd);
      // What is left of the frame for them, with a one-digit id (the send checks its own).
      const room = route.maxFrame - envelopeBytes(methodJson(this.method), this.idempotent) - 1;
      const json = this.#json = jsonSizeOf(params, room);
      if (json < 0 && !route.decodes()) {
        throw new DistError(
          "FRAME_TOO_LARGE",
          `Params of ${params.length} bytes of MessagePack take more than ${room} bytes as ` +
            `JSON, past the frame limit of ${route.maxFrame} bytes of a JSON backend`,
        );
      }
      if (json < 0) this.only = route.decoder;
      // The larger of what it holds and what it takes as JSON on a backend's connection.
      size += Math.max(params.length, json < 0 ? room : json);
      this.#held = keep(params);
      this.#start = keptAt();
      this.#end = this.#start + params.length;
    }
    this.size = size;
  }

  /** The params as they came, a view of the copy. */
  #params(): Uint8Array | undefined {
    return this.#held?.subarray(this.#start, this.#end);
  }

  /** `{"id":ID,"method":M,"params":P}` as JSON, P written from the MessagePack bytes. */
  writeRequest(out: OutBuffer, id: number, maxFrame: number): void {
    const method = methodJson(this.method);
    const held = this.#params();
    const idText = String(id);
    // Its length is known before the params are written: written once, only if it fits.
    const len = held === undefined
      ? envelopeBytes(method, this.idempotent) - PARAMS_MEMBER.length + idText.length
      : envelopeBytes(method, this.idempotent) + this.#json + idText.length;
    if (len > maxFrame || this.#json < 0) {
      throw new DistError(
        "FRAME_TOO_LARGE",
        this.#json < 0
          ? `Params of ${
            held!.length
          } bytes of MessagePack pass the frame limit of ${maxFrame} bytes as JSON`
          : `Message of ${len} bytes exceeds the frame limit of ${maxFrame} bytes`,
      );
    }
    const params = held === undefined ? undefined : msgpackToJson(held);
    // The count and the text agree (tests/msgpack_json_size_test.ts); the frame is the text's.
    if (params !== undefined && params.length !== this.#json) {
      throw new DistError(
        "INTERNAL",
        `Params counted ${this.#json} bytes as JSON, written ${params.length}`,
      );
    }
    out.reserve(HEADER_BYTES + len);
    out.setHeader(out.length, len);
    out.length += HEADER_BYTES;
    put(out, ID_OPEN);
    for (let i = 0; i < idText.length; i++) out.bytes[out.length++] = idText.charCodeAt(i);
    put(out, METHOD_MEMBER);
    put(out, method);
    if (params !== undefined) {
      put(out, PARAMS_MEMBER);
      put(out, params);
    }
    if (!this.idempotent) put(out, IDEM_FALSE);
    out.bytes[out.length++] = 0x7d;
  }

  onAnswer(answer: Envelope | DistError): void {
    this.#relay.rawAnswered(this, answer);
  }

  decodeParams(): unknown {
    const held = this.#params();
    return held === undefined ? undefined : msgpackCodec.decode(held);
  }

  reply(answer: Envelope): void {
    this.#answer = answer;
    this.client.answerRaw(this.id, this);
    this.#answer = undefined;
  }

  /** The JSON answer, decoded, as a MessagePack frame (`by` kept). */
  writeAnswer(out: OutBuffer, maxFrame: number): void {
    const a = this.#answer!;
    const b = a.payload;
    const message: { id: number | string; result?: unknown; error?: unknown; by?: unknown } = {
      id: this.id,
    };
    if (a.errorStart >= 0) message.error = jsonCodec.decode(b.subarray(a.errorStart, a.errorEnd));
    else message.result = jsonCodec.decode(b.subarray(a.resultStart, a.resultEnd));
    if (a.byStart >= 0) message.by = parseJson(utf8.decode(b.subarray(a.byStart, a.byEnd)));
    msgpackCodec.writeFrame(out, message, maxFrame);
  }
}
