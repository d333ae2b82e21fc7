import { describe, DistError } from "./errors.ts";
import { type Codec, CODEC_NAMES, codecByName, type CodecName, jsonCodec } from "./codec.ts";
import { CloseReason, type FramedConn } from "./conn.ts";
import type { PeerInfo } from "./peer_options.ts";
import {
  type Authenticator,
  type Credentials,
  helloCredentials,
  type Identity,
} from "./credentials.ts";
import {
  answerChallenge,
  type ChallengeRequest,
  challengeRequest,
  checkVerifier,
  ListenerChallenge,
  parseChallengeRequest,
} from "./challenge.ts";
import { COST_BOUNDS, ProofCheck } from "./scram.ts";

/** The wire protocol version this side speaks (`v` of the handshake). */
export const PROTOCOL_VERSION = 1;

export interface Hello {
  op: "hello";
  v: number;
  codec: CodecName;
  role: string;
  name: string;
  /** The dialer's heartbeat (ms); the listener answers the one both use. */
  heartbeat?: number;
  /**
   * The largest frame payload the dialer accepts (bytes; the welcome says
   * the listener's): a broker skips deliveries past it rather than send
   * what the dialer would refuse. Left out, the listener's own limit.
   */
  max_frame?: number;
  /** Asks for a challenge (challenge.ts): how the dialer will prove who it is. */
  auth?: ChallengeRequest;
  /** Credentials in clear, from a dialer older than the challenge (credentials.ts); never logged. */
  token?: string;
  user?: string;
  password?: string;
}

/**
 * The heartbeat both sides of a connection use: the shorter of the two, so
 * neither side declares the other dead for pinging at its own slower pace
 * (0, "off", only when both are off).
 */
export function agreeHeartbeat(mine: number, theirs: unknown): number {
  const other = typeof theirs === "number" && Number.isFinite(theirs) && theirs > 0 ? theirs : 0;
  const agreed = mine <= 0 ? other : other === 0 ? mine : Math.min(mine, other);
  // A peer may ask for anything: keep pings sane (not every few ms, not never).
  return agreed === 0 ? 0 : Math.min(MAX_HEARTBEAT_MS, Math.max(MIN_HEARTBEAT_MS, agreed));
}

/** Bounds of an agreed heartbeat (ms). */
export const MIN_HEARTBEAT_MS = 10;
export const MAX_HEARTBEAT_MS = 24 * 60 * 60 * 1000;

/** Whether a connection's reading is paused by its handshake (see firstFrame). */
interface Gate {
  paused: boolean;
}

/**
 * Waits for the first frame on a connection whose read loop is started.
 * What comes behind it (frames, a broken stream, EOF) is held for the Peer,
 * which handles it in order when it attaches. Once the first frame is in,
 * reading pauses (`gate.paused`) until the caller's `reopen`: what a peer
 * pipelines behind its hello waits in its socket while the hello is
 * checked, not read whole into memory. A new connection was read at line
 * rate until its Peer attached, and every request of those reads went to
 * the balancer at once: 40 non-readers that dialed again once paused had
 * ~200 requests each refused per connection, 13,000-23,000 a second
 * (hostile41a W8); now one read's worth (1 KiB).
 */
function firstFrame(
  conn: FramedConn,
  timeoutMs: number,
  gate: Gate,
  first = true,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let got = false;
    const timer = setTimeout(() => {
      reject(new DistError("TIMEOUT", `No handshake within ${timeoutMs} ms`));
    }, timeoutMs);
    conn.attach({
      onFrames(frames) {
        got = true;
        clearTimeout(timer);
        conn.pauseReading();
        gate.paused = true;
        if (first && frames.length > 1) pipelined.add(conn);
        conn.hold(frames.slice(1));
        try {
          resolve(jsonCodec.decode(frames[0]));
        } catch (err) {
          reject(err);
        }
      },
      onStreamError(err) {
        clearTimeout(timer);
        reject(err);
      },
      onEnd: () => conn.close(CloseReason.RemoteClosed),
      onClose(reason) {
        clearTimeout(timer);
        reject(new DistError("UNAVAILABLE", `Connection closed during handshake (${reason})`));
      },
    });
    // A later frame (the challenge's answer): what was held is given above; else read on.
    if (!got) reopen(conn, gate);
  });
}

/** Connections whose first read held frames behind the hello (see {@link pipelinedHello}). */
const pipelined = new WeakSet<FramedConn>();

/**
 * Whether the peer sent more frames behind its hello before it was
 * welcomed (the first read held them): a dist client waits for its welcome,
 * so this tells a flood written blind (hostile41a W8) from such a client.
 */
export function pipelinedHello(conn: FramedConn): boolean {
  return pipelined.has(conn);
}

/** Reads again after the handshake (see firstFrame). */
function reopen(conn: FramedConn, gate: Gate): void {
  if (!gate.paused) return;
  gate.paused = false;
  conn.resumeReading();
}

/**
 * The dialer's half: sends hello, waits for welcome.
 * @throws {DistError} the listener's error (e.g. OVERLOADED, BAD_REQUEST),
 * TIMEOUT, or UNAVAILABLE.
 */
export async function handshakeDialer(
  conn: FramedConn,
  hello: {
    codec: Codec;
    role: string;
    name: string;
    timeoutMs: number;
    heartbeatMs: number;
    credentials?: Credentials;
  },
): Promise<{ remote: PeerInfo; heartbeatMs: number }> {
  const gate = { paused: false };
  try {
    return await dialerHandshake(conn, hello, gate);
  } finally {
    reopen(conn, gate);
  }
}

/** {@link handshakeDialer}, reading through `gate`. */
async function dialerHandshake(
  conn: FramedConn,
  hello: Parameters<typeof handshakeDialer>[1],
  gate: Gate,
): Promise<{ remote: PeerInfo; heartbeatMs: number }> {
  const deadline = performance.now() + hello.timeoutMs;
  const auth = challengeRequest(hello.credentials);
  conn.send(
    jsonCodec,
    {
      op: "hello",
      v: PROTOCOL_VERSION,
      codec: hello.codec.name,
      role: hello.role,
      name: hello.name,
      heartbeat: hello.heartbeatMs,
      max_frame: conn.maxFrame,
      ...(auth === undefined ? {} : { auth }),
    } satisfies Hello,
  );
  let msg = await firstFrame(conn, hello.timeoutMs, gate) as Record<string, unknown> | null;
  let verifier: Uint8Array | undefined;
  if (auth !== undefined && msg && typeof msg === "object" && msg.op === "challenge") {
    const answer = await answerChallenge(msg, auth, hello.credentials!, hello);
    conn.send(jsonCodec, answer.proof);
    verifier = answer.verifier;
    const left = Math.max(1, deadline - performance.now());
    msg = await firstFrame(conn, left, gate, false) as Record<string, unknown> | null;
  }
  if (msg && typeof msg === "object" && msg.op === "welcome") {
    if (msg.codec !== hello.codec.name) {
      throw new DistError("BAD_REQUEST", `Listener chose codec ${describe(msg.codec)}`);
    }
    // A listener that challenged must show it holds the keys (a squatter could welcome anyone);
    // one that did not challenge a dialer with credentials proved nothing (h46d D6).
    if (auth !== undefined && verifier === undefined) throw notAuthenticated();
    if (verifier !== undefined) checkVerifier(msg, verifier);
    conn.releaseHead();
    return {
      remote: withFrameLimit({ role: peerText(msg.role), name: peerText(msg.name) }, msg.max_frame),
      heartbeatMs: agreeHeartbeat(hello.heartbeatMs, msg.heartbeat),
    };
  }
  if (msg && typeof msg === "object" && msg.error !== undefined) {
    throw DistError.fromBody(msg.error);
  }
  throw new DistError("BAD_REQUEST", "Unexpected handshake answer");
}

/** What {@link notAuthenticated}'s error carries in `data` (net.ts names the listener). */
export const NOT_AUTHENTICATED = "listener_not_authenticated";

/**
 * The refusal of a welcome that answers a hello with credentials without a
 * challenge: whatever welcomed the dialer (a listener without `--token` or
 * `--users`, or another process on its port while it restarts) did not
 * prove it knows the secret, so it gets no request (h46d D6: it took every
 * call and publish). Nothing is sent after the hello.
 */
function notAuthenticated(): DistError {
  const err = new DistError(
    "UNAUTHORIZED",
    "The listener did not authenticate: it welcomed a hello with credentials without a " +
      "challenge, so it did not prove it knows the secret (a listener without --token or " +
      "--users, or another process on its port); no request was sent to it",
    { data: { reason: NOT_AUTHENTICATED } },
  );
  refusedWelcomes.add(err);
  return err;
}

/** The errors notAuthenticated made here (a peer's error may carry any data). */
const refusedWelcomes = new WeakSet<DistError>();

/** Whether this dialer refused `err`'s welcome itself: the listener did not authenticate. */
export function refusedWelcome(err: DistError): boolean {
  return refusedWelcomes.has(err);
}

/**
 * The listener's half: waits for hello, asks `self.authenticator` (when
 * there is one) who the dialer is, answers welcome, and says which codec to
 * use. On a bad or refused hello it answers an error and closes the
 * connection.
 */
export async function handshakeListener(
  conn: FramedConn,
  self: {
    role: string;
    name: string;
    timeoutMs: number;
    heartbeatMs: number;
    authenticator?: Authenticator;
  },
): Promise<{ codec: Codec; remote: PeerInfo; heartbeatMs: number; identity?: Identity }> {
  let msg: unknown;
  const gate = { paused: false };
  try {
    const deadline = performance.now() + self.timeoutMs;
    msg = await firstFrame(conn, self.timeoutMs, gate);
    const hello = checkHello(msg);
    const m = msg as Record<string, unknown>;
    const credentials = helloCredentials(m);
    const request = parseChallengeRequest(m);
    const authenticator = self.authenticator;
    let proof: ProofCheck | undefined;
    if (authenticator !== undefined && request !== undefined) {
      const salt = request.mech === "password"
        ? authenticator.saltFor?.(request.user!) ?? madeUpSalt()
        : undefined;
      const challenge = new ListenerChallenge(request, { role: m.role, name: m.name }, self, salt);
      conn.send(jsonCodec, challenge.message);
      const left = Math.max(1, deadline - performance.now());
      proof = challenge.answer(await firstFrame(conn, left, gate, false));
    }
    const identity = authenticator === undefined ? undefined : await authenticator.authenticate({
      role: hello.role,
      name: hello.name,
      credentials,
      proof,
      host: conn.remoteHost,
      address: conn.remoteAddress,
      certSubject: conn.peerIdentity,
      closed: conn.closed,
    });
    const codec = codecByName(hello.codec)!;
    const heartbeatMs = agreeHeartbeat(self.heartbeatMs, hello.heartbeat);
    conn.send(jsonCodec, {
      op: "welcome",
      v: PROTOCOL_VERSION,
      codec: codec.name,
      role: self.role,
      name: self.name,
      heartbeat: heartbeatMs,
      max_frame: conn.maxFrame,
      ...(proof?.verifier() === undefined ? {} : { verifier: proof.verifier() }),
    });
    conn.releaseHead();
    reopen(conn, gate);
    const remote = withFrameLimit({ role: hello.role, name: hello.name }, hello.max_frame);
    if (identity === undefined) return { codec, remote, heartbeatMs };
    remote.user = identity.user;
    return { codec, remote, heartbeatMs, identity };
  } catch (err) {
    const e = DistError.from(err);
    const reason = e.code === "FRAME_TOO_LARGE"
      ? CloseReason.FrameTooLarge
      : CloseReason.HandshakeFailed;
    await conn.closeWith(reason, e, refusal(e));
    throw e;
  }
}

/** The listener's farewell to a dialer it refuses (a bad hello, too many connections). */
export function refusal(err: DistError): { codec: Codec; message: unknown } {
  return { codec: jsonCodec, message: { op: "error", error: err.toBody() } };
}

/** Longest role or name kept from a handshake; the rest is cut (it ends up in logs and `by`). */
const MAX_NAME_LENGTH = 128;

/** A role or name a peer told us, as we keep it. */
function peerText(value: unknown): string {
  if (typeof value !== "string" || value === "") return "unknown";
  return value.length > MAX_NAME_LENGTH ? value.slice(0, MAX_NAME_LENGTH) : value;
}

function checkHello(msg: unknown): Hello {
  if (msg === null || typeof msg !== "object" || Array.isArray(msg)) {
    throw new DistError("BAD_REQUEST", "Handshake must be a JSON object");
  }
  const m = msg as Record<string, unknown>;
  if (m.op !== "hello") throw new DistError("BAD_REQUEST", 'Handshake must start with op "hello"');
  if (m.v !== PROTOCOL_VERSION) {
    throw new DistError(
      "BAD_REQUEST",
      `Unsupported protocol version ${describe(m.v)} (this side speaks ${PROTOCOL_VERSION})`,
    );
  }
  if (typeof m.codec !== "string" || !codecByName(m.codec)) {
    throw new DistError(
      "BAD_REQUEST",
      `Unsupported codec ${describe(m.codec)} (expected one of ${CODEC_NAMES.join(", ")})`,
    );
  }
  return {
    op: "hello",
    v: PROTOCOL_VERSION,
    codec: m.codec as CodecName,
    role: peerText(m.role),
    name: peerText(m.name),
    heartbeat: typeof m.heartbeat === "number" ? m.heartbeat : undefined,
    max_frame: m.max_frame as number | undefined, // checked by withFrameLimit
  };
}

/** `info` with the frame limit a peer told, if it is a positive safe integer (else left out). */
function withFrameLimit(info: PeerInfo, told: unknown): PeerInfo {
  if (typeof told === "number" && Number.isSafeInteger(told) && told > 0) info.maxFrame = told;
  return info;
}

/** A salt for an authenticator that gives none: the proof cannot match, the refusal is its. */
function madeUpSalt(): { salt: Uint8Array; cost: { ln: number; r: number; p: number } } {
  return {
    salt: crypto.getRandomValues(new Uint8Array(16)),
    cost: { ln: COST_BOUNDS.minLn, r: 8, p: 1 },
  };
}
