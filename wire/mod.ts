/**
 * @module
 * The wire protocol v1 of DESIGN.md, and the only code that touches sockets'
 * bytes. Files, bottom up:
 *
 * - `errors.ts` the one error class and its codes; `frame.ts` length-prefixed
 *   frames; `codec.ts` JSON and MessagePack payloads (JSON text read with
 *   `json_parse.ts`'s parseJson, never bare JSON.parse); `json_value.ts`
 *   binary values as base64 in JSON, and a value's JSON size without its text;
 *   `turn.ts` a clock read and a check made once per turn of the event loop;
 * - `conn.ts` a framed TCP connection, made of `inbound.ts` (the read loop,
 *   pauses, backpressure), `outbound.ts` (coalesced, bounded writes) and
 *   `deadlines.ts` (write, frame and heartbeat deadlines, judged by the
 *   process's one ticker in `heartbeat.ts`); input is handed over with
 *   `attach()`; `send_queue.ts` asks the kernel whether a socket's peer
 *   takes what it is sent (the broker's queue groups, the balancer's shares);
 * - `handshake.ts` agrees on the codec and heartbeat, and has the dialer
 *   prove its credentials to the listener's authenticator without sending
 *   them (`challenge.ts` the challenge and proof, `scram.ts` their
 *   cryptography, `credentials.ts` the fields and the seam; the deciding is
 *   auth/'s); `foreign.ts` names a peer that does not speak dist by its
 *   first bytes;
 * - `peer.ts` the RPC endpoint, made of `calls.ts` (our calls: ids, timeouts,
 *   aborts), `admission.ts` (the peer's requests: limits, budget, held
 *   frames), `classify.ts` (what a message is), `answers.ts` (results and
 *   errors) and `fast_path.ts` (byte-level handling: raw frames, pass-through
 *   via `json_envelope.ts`, `json_scan.ts` (a JSON value checked as bytes)
 *   and `passthrough.ts`; `msgpack_scan.ts` a MessagePack value checked
 *   as bytes, `msgpack_envelope.ts` a MessagePack request's envelope,
 *   `msgpack_to_json.ts` MessagePack written as JSON text undecoded,
 *   `msgpack_json_size.ts` that text's size counted, not written, both
 *   walking with `msgpack_reader.ts`'s cursor);
 * - `check.ts` parsers of untrusted values, and `contract.ts` a service's
 *   methods defined once: `dispatch` serves them, `call`/`request` call them
 *   and check the answer (the contracts are in clients/contracts/);
 * - `transport.ts` the only code that opens sockets: binds and dials in TCP
 *   or TLS (`tls.ts` the settings and what a failure means, `tls_node.ts`
 *   mutual TLS through node:tls);
 * - `net.ts` listens and dials; `redial.ts` keeps a connection up, with the
 *   backoff and abortable sleep of `backoff.ts` that every retry loop uses;
 * - `pubsub_json.ts` the canonical JSON layouts of the broker's publishes and
 *   deliveries, read as bytes by the broker and (`pubsub_delivery.ts`) by
 *   subscribers.
 */
export {
  describe,
  DistError,
  ERROR_CODES,
  type ErrorBody,
  type ErrorCode,
  isErrorCode,
  truncate,
} from "./errors.ts";
export {
  DEFAULT_MAX_FRAME,
  encodeFrame,
  FrameDecoder,
  MAX_FRAME_LIMIT,
  OutBuffer,
} from "./frame.ts";
export {
  type Codec,
  CODEC_NAMES,
  codecByName,
  type CodecName,
  jsonCodec,
  MAX_DEPTH,
  msgpackCodec,
  RefusedMessage,
  toJsonText,
  toMsgpack,
} from "./codec.ts";
export { hasEscapedKey, parseJson } from "./json_parse.ts";
export {
  asJsonBinary,
  base64Of,
  jsonReplacer,
  jsonSize,
  type JsonSizeOptions,
  jsonStringBytes,
} from "./json_value.ts";
export {
  CloseReason,
  type ConnHandler,
  FramedConn,
  type FramedConnOptions,
  type FrameWriter,
} from "./conn.ts";
export { drainTarget, processOutbound, setFlushAt } from "./outbound.ts";
export {
  sendQueueStats,
  type SocketSide,
  STALLED,
  stalledLoad,
  unsentBytes,
} from "./send_queue.ts";
export { keepReading } from "./inbound.ts";
export { type Newcomer, Newcomers, sourceOf } from "./newcomers.ts";
export { SourceEntry, type SourceLimits, type SourceStats, SourceTable } from "./sources.ts";
export { NOT_AUTHENTICATED, PROTOCOL_VERSION } from "./handshake.ts";
export type { SaltAndCost } from "./challenge.ts";
export type { ScramKeys, ScryptCost } from "./scram.ts";
export {
  type Access,
  type Authenticator,
  type Credentials,
  type HelloClaim,
  type Identity,
  MAX_SECRET_LENGTH,
  type Proof,
  type Resource,
} from "./credentials.ts";
export {
  type NotificationHandler,
  type PeerInfo,
  type PeerOptions,
  type RequestCounter,
  type RequestHandler,
  type RequestMeta,
  type RequestTally,
} from "./peer_options.ts";
export { Peer } from "./peer.ts";
export { type CallOptions, type Response } from "./calls.ts";
export { type AnswerLimits, Reply } from "./answers.ts";
export { type AdmissionLimits, DEFAULT_MAX_IN_FLIGHT_TOTAL, InFlightBudget } from "./admission.ts";
export {
  type FastHooks,
  type RawCall,
  type RawFrameHandler,
  type RawReply,
  type RawRequestHandler,
} from "./fast_path.ts";
export {
  bind,
  type BoundPort,
  type ConnSettings,
  dial,
  type DialOptions,
  listen,
  type Listener,
  type ListenOptions,
} from "./net.ts";
export { exclusiveRoots, type TlsPeer, type TlsSettings } from "./tls.ts";
export { Envelope, scanJson } from "./json_envelope.ts";
export { MsgpackRequest, scanMsgpackRequest } from "./msgpack_envelope.ts";
export { type IdSpan, type RequestSpans, writeAnswerAs, writeRequestAs } from "./passthrough.ts";
export { type AddressSource, Redialer, type RedialOptions } from "./redial.ts";
export {
  DELIVERY_PREFIX,
  type FramePublish,
  METHOD_WORD_AT,
  PUBLISH_PREFIX,
  PublishRead,
  type RawPublish,
  readPublish,
} from "./pubsub_json.ts";
export { parseRawValue, type RawDelivery, readDelivery } from "./pubsub_delivery.ts";
export { TopicCache } from "./topic_cache.ts";
export { memoMemory } from "./publish_memo.ts";
export { knownFrame, mayStartWith } from "./byte_words.ts";
export { Backoff, type BackoffOptions, goneBeforeAccept, Nap, sleep } from "./backoff.ts";
export {
  any,
  arrayOf,
  bool,
  count,
  finite,
  int,
  literal,
  maybe,
  mustBe,
  none,
  obj,
  type ObjectOf,
  type ObjectOptions,
  oneOf,
  opt,
  type Optional,
  type Parse,
  type Parsed,
  record,
  refine,
  type Shape,
  str,
  text,
} from "./check.ts";
export {
  type AllMethods,
  type AnyEvent,
  type AnyMethod,
  call,
  checkResult,
  type Contract,
  type Dispatch,
  dispatch,
  type DispatchHooks,
  type DispatchOptions,
  emit,
  type Event,
  event,
  type Handler,
  type Handlers,
  type Method,
  method,
  type MethodDef,
  type MethodsOf,
  owns,
  type ParamsOf,
  permit,
  request,
  type Requester,
  type ResultOf,
  type ServiceHandlers,
  type TypedResponse,
} from "./contract.ts";
