/**
 * The client port's requests taken as bytes, never decoded: JSON ones by
 * the pass-through (wire/passthrough.ts, relay.ts RawJob), MessagePack ones
 * by their envelope (wire/msgpack_scan.ts, msgpack_job.ts). The balancer's
 * own methods (`sys.*`, `balancer.*`) and what the scanners leave alone are
 * decoded and dispatched as usual.
 *
 * Under a users file too: what a client may forward depends on its method
 * alone (dispatch's fallback checks the same), so the method is checked
 * here and the params stay bytes (hostile34 Z7: decoded, 300,000 empty maps
 * took some 20 MB of heap for 300 KB on the wire and ~100 ms of one turn).
 * The shell gives such connections' frames to `rawFrames` only (its
 * `checksAccess`), so a user's JSON request is scanned there, after the
 * pass-through declined it.
 */
import {
  DistError,
  Envelope,
  type FastHooks,
  jsonCodec,
  msgpackCodec,
  MsgpackRequest,
  type Peer,
  scanJson,
  scanMsgpackRequest,
} from "../../wire/mod.ts";
import type { Dispatcher } from "./forward.ts";
import type { ForwardJob, Relay } from "./relay.ts";
import { MsgpackJob, type MsgpackRoute } from "./msgpack_job.ts";

/**
 * A MessagePack request the scanner does not take (an extension type, a map
 * key that is not a string, an integer past 2^53 in its params, say) is
 * decoded, as before, up to this size; a larger one is refused BAD_REQUEST,
 * so no frame builds more than this many bytes' worth of objects.
 */
export const DECODE_AT_MOST = 16 * 1024;

const OPEN_BRACE = 0x7b;

/** A MessagePack map's first byte (fixmap, map 16, map 32): what a request starts with. */
function mapHeader(frame: Uint8Array): boolean {
  const c = frame[0];
  return (c & 0xf0) === 0x80 || c === 0xde || c === 0xdf;
}

/**
 * The fast paths of the client port.
 * @param own whether a method is the balancer's own (decoded and dispatched)
 * @param route what a MessagePack request's params may take as JSON (msgpack_job.ts)
 */
export function rawForwarding(
  dispatcher: Dispatcher<ForwardJob>,
  relay: Relay,
  own: (method: string) => boolean,
  route: MsgpackRoute,
): FastHooks {
  // The last method forwarded: a connection mostly sends one name over and over.
  let forwarded = "";
  const forwards = (method: string) => {
    if (method === forwarded) return true;
    if (own(method)) return false;
    forwarded = method;
    return true;
  };
  const mp = new MsgpackRequest();
  const json = new Envelope();
  /** Takes a request (`took` called) when its connection may forward `method`, else answers it. */
  const admits = (peer: Peer, method: string, id: number | string, took: () => void) => {
    took();
    try {
      peer.identity?.access?.check(method);
      return true;
    } catch (err) {
      peer.answerError(id, err);
      return false;
    }
  };
  return {
    // A connection with permissions to check (a users file's user) is given only to rawFrames (roles/_shell.ts).
    onRawRequest: (peer, request) => {
      if (!forwards(request.method!) || peer.identity?.access !== undefined) return false;
      relay.forwardRaw(request, peer, dispatcher);
      return true;
    },
    rawFrames: {
      checksAccess: true,
      accepts: (frame) => (mapHeader(frame) || frame[0] === OPEN_BRACE) && "request",
      handle: (frame, peer, took) => {
        if (took === undefined) return false;
        if (peer.codec === jsonCodec) {
          // A user's JSON request, which the pass-through above was not given: scanned here.
          if (peer.identity?.access === undefined || !scanJson(frame, json) || !json.isRequest) {
            return false;
          }
          if (!forwards(json.method!)) return false;
          if (admits(peer, json.method!, json.id!, took)) relay.forwardRaw(json, peer, dispatcher);
          return true;
        }
        if (peer.codec !== msgpackCodec) return false;
        if (!scanMsgpackRequest(frame, mp)) {
          if (mp.problem === "" || frame.length <= DECODE_AT_MOST) return false;
          took();
          peer.answerError(mp.id!, refusal(mp, frame.length));
          return true;
        }
        if (!forwards(mp.method!)) return false;
        if (!admits(peer, mp.method!, mp.id!, took)) return true;
        let job: MsgpackJob;
        try {
          job = new MsgpackJob(relay, mp, peer, route);
        } catch (err) {
          peer.answerError(mp.id!, err); // params the transcoder does not write, or too large as JSON
          if ((err as DistError).code === "FRAME_TOO_LARGE") route.refused?.(peer);
          return true;
        }
        dispatcher.submit(job);
        return true;
      },
    },
  };
}

/** Why a MessagePack request above DECODE_AT_MOST is not forwarded. */
function refusal(request: MsgpackRequest, size: number): DistError {
  if (request.invalid) {
    return new DistError("BAD_REQUEST", `Invalid MessagePack: ${request.problem}`);
  }
  return new DistError(
    "BAD_REQUEST",
    `Cannot forward a MessagePack request of ${size} bytes holding ${request.problem} ` +
      `(such requests are forwarded up to ${DECODE_AT_MOST} bytes)`,
  );
}
