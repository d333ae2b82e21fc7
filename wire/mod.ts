/**
 * @module
 * The wire protocol v1 of DESIGN.md, and the only code that touches sockets'
 * bytes. `frame.ts` splits and builds length-prefixed frames; `codec.ts` turns
 * messages into payloads (JSON or MessagePack); `conn.ts` runs a socket's read
 * loop and coalesced, bounded writes; `handshake.ts` agrees on the codec and
 * the heartbeat; `peer.ts` is the RPC endpoint (calls, answers, notifications,
 * timeouts); `heartbeat.ts` pings and declares a silent peer dead; `net.ts`
 * listens and dials; `redial.ts` keeps a connection up.
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
export {
  CloseReason,
  type ConnHandler,
  FramedConn,
  type FramedConnOptions,
  type FrameWriter,
  processOutbound,
} from "./conn.ts";
export { PROTOCOL_VERSION } from "./handshake.ts";
export {
  type NotificationHandler,
  Peer,
  type PeerInfo,
  type PeerOptions,
  type RequestHandler,
  type RequestMeta,
} from "./peer.ts";
export { type CallOptions, type Response } from "./calls.ts";
export { Reply } from "./answers.ts";
export { DEFAULT_MAX_IN_FLIGHT_TOTAL, InFlightBudget } from "./admission.ts";
export {
  type RawCall,
  type RawFrameHandler,
  type RawReply,
  type RawRequestHandler,
} from "./fast_path.ts";
export {
  type ConnSettings,
  dial,
  type DialOptions,
  listen,
  type Listener,
  type ListenOptions,
} from "./net.ts";
export {
  Envelope,
  type IdSpan,
  type RequestSpans,
  scanJson,
  writeAnswerAs,
  writeRequestAs,
} from "./passthrough.ts";
export { Redialer, type RedialOptions } from "./redial.ts";
export { Backoff, type BackoffOptions, Nap, sleep } from "./backoff.ts";
