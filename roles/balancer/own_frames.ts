/**
 * A bound on what the balancer parses for itself after the handshake
 * (hostile41a W9's rest): a frame longer than {@link OWN_FRAME_BYTES} on
 * the client port is decoded only when it is a request the balancer
 * forwards (those keep `--max-frame`, and go as bytes with the
 * pass-through); one to the balancer's own methods (`sys.*`,
 * `balancer.*`) is refused FRAME_TOO_LARGE by its id, unread, and any
 * other (an answer, a notification, a frame whose envelope the scanners do
 * not read) is dropped with a FRAME_TOO_LARGE report (`id` null).
 *
 * Before, such frames were decoded whole up to `--max-frame` (1 MiB): a
 * `sys.stats` whose params held 62,000 keys written with escapes took
 * ~200 ms of the event loop each, every other connection waiting (a
 * `sys.ping` beside 20 of them: 135 ms p90), no credential needed. Its own
 * methods take small params (`sys.stats` none, `balancer.backends` none):
 * 4 KiB is far past any of them. It was 64 KiB: 64 KiB of MessagePack is
 * 65,000 empty maps, ~13 ms and 4 MB of objects to decode, and 8
 * connections with 4 such `sys.stats` in flight each held a `sys.ping`
 * beside them 372 ms at the median (hostile43a A8).
 *
 * The check is the frame's length, then (past it) one scan of its
 * envelope that builds nothing but the method and the id (wire's scanJson,
 * scanMsgpackRequest).
 */
import {
  DistError,
  Envelope,
  type FastHooks,
  jsonCodec,
  msgpackCodec,
  MsgpackRequest,
  type Peer,
  type RawFrameHandler,
  scanJson,
  scanMsgpackRequest,
} from "../../wire/mod.ts";

/** Longest frame of the client port that the balancer decodes for its own methods. */
export const OWN_FRAME_BYTES = 4 * 1024;

/**
 * `fast` (the pass-through's hooks, or none) with the bound above in front
 * of its raw frames.
 * @param own whether a method is the balancer's own
 */
export function boundOwnFrames(
  fast: FastHooks | undefined,
  own: (method: string) => boolean,
): FastHooks {
  const inner = fast?.rawFrames;
  const json = new Envelope();
  const mp = new MsgpackRequest();
  /** The method and id of an oversized request, or undefined when it is no request it reads. */
  const scan = (frame: Uint8Array, peer: Peer) => {
    if (peer.codec === jsonCodec) {
      return scanJson(frame, json) && json.isRequest ? json : undefined;
    }
    if (peer.codec !== msgpackCodec || !scanMsgpackRequest(frame, mp)) return undefined;
    return mp;
  };
  const rawFrames: RawFrameHandler = {
    // It takes requests of users whose permissions are checked only to refuse them.
    checksAccess: true,
    accepts: (frame) => frame.length > OWN_FRAME_BYTES ? "request" : inner?.accepts(frame) ?? false,
    handle: (frame, peer, took, buffer) => {
      if (frame.length <= OWN_FRAME_BYTES) {
        if (inner === undefined) return false;
        if (!inner.checksAccess && peer.identity?.access !== undefined) return false;
        return inner.handle(frame, peer, took, buffer);
      }
      if (took === undefined) return false; // offered as a request always (see accepts)
      const request = scan(frame, peer);
      if (request !== undefined && !own(request.method!)) {
        // Forwarded: as before (the pass-through's scanners, else decoded).
        return inner !== undefined && (inner.checksAccess || peer.identity?.access === undefined)
          ? inner.handle(frame, peer, took, buffer)
          : false;
      }
      // A MessagePack request the scanner does not read (an extension type in its params, say):
      // the pass-through refuses it by id; without it, one to forward is decoded as before.
      if (request === undefined && mp.problem !== "" && peer.codec === msgpackCodec) {
        if (inner) return inner.handle(frame, peer, took, buffer);
        if (mp.method !== undefined && !own(mp.method)) return false;
      }
      took();
      peer.answerError(request?.id ?? null, tooLarge(frame.length, request?.method));
      return true;
    },
  };
  return { ...fast, rawFrames };
}

function tooLarge(bytes: number, method: string | undefined): DistError {
  const what = method === undefined
    ? "A frame that is no forwarded request"
    : `A ${method} request`;
  return new DistError(
    "FRAME_TOO_LARGE",
    `${what} of ${bytes} bytes exceeds the limit of ${OWN_FRAME_BYTES} bytes ` +
      `for what the balancer reads itself (forwarded requests may be --max-frame long)`,
  );
}
