/**
 * The challenge-response hello (issue K-C2): a dialer with a token or a
 * password never sends it. Its hello asks for a challenge:
 *
 *   dialer   → `{"op":"hello", …, "auth":{"mech":"token"|"password","user"?:…,"nonce":N1}}`
 *   listener → `{"op":"challenge","nonce":N2,"role":…,"name":…,"salt"?:…,"cost"?:"ln=14,r=8,p=1"}`
 *   dialer   → `{"op":"proof","proof":…}`
 *   listener → `{"op":"welcome", …, "verifier":…}` or an error
 *
 * A listener without an authenticator answers the hello with a welcome at
 * once, as before. The proof signs both nonces, the user, both roles and
 * names and the salt and cost (scram.ts): a listener that is not the one
 * dialed (a squatter on the port while it restarts) learns no secret and
 * gets nothing it can replay to another connection. A dialer that gave a
 * proof takes the welcome only with the verifier its keys make.
 */
import { describe, DistError } from "./errors.ts";
import { type Credentials, MAX_SECRET_LENGTH } from "./credentials.ts";
import {
  authMessage,
  b64,
  clientProof,
  costProblem,
  type Exchange,
  KEY_BYTES,
  keysOf,
  newNonce,
  passwordKey,
  ProofCheck,
  sameBytes,
  type ScryptCost,
  serverSignature,
  tokenId,
  tokenKey,
  unb64,
} from "./scram.ts";

/** What a dialer's hello asks for (its `auth` field). */
export interface ChallengeRequest {
  mech: "token" | "password";
  user?: string;
  /** The token's id (scram.ts tokenId), for mech token. */
  id?: string;
  nonce: string;
}

/** Longest nonce, salt or proof field taken from a peer (base64 characters). */
const MAX_FIELD = 256;

/** The hello's `auth` field for these credentials, with a fresh nonce; undefined for none. */
export function challengeRequest(
  credentials: Credentials | undefined,
): ChallengeRequest | undefined {
  if (credentials === undefined) return undefined;
  if (credentials.user !== undefined && credentials.password !== undefined) {
    return { mech: "password", user: credentials.user, nonce: newNonce() };
  }
  if (credentials.token !== undefined) {
    return { mech: "token", id: tokenId(keysOf(tokenKey(credentials.token))), nonce: newNonce() };
  }
  return undefined;
}

/** A hello's `auth` field, checked (types and lengths); undefined when absent. */
export function parseChallengeRequest(m: Record<string, unknown>): ChallengeRequest | undefined {
  const auth = m.auth;
  if (auth === undefined) return undefined;
  if (m.token !== undefined || m.password !== undefined) {
    throw new DistError("BAD_REQUEST", 'A hello with "auth" carries no "token" or "password"');
  }
  if (auth === null || typeof auth !== "object" || Array.isArray(auth)) {
    throw new DistError("BAD_REQUEST", `Hello field "auth" must be an object`);
  }
  const a = auth as Record<string, unknown>;
  if (a.mech !== "token" && a.mech !== "password") {
    throw new DistError(
      "BAD_REQUEST",
      `Unsupported auth mech ${describe(a.mech)} (token, password)`,
    );
  }
  const nonce = base64Field(a.nonce, "auth.nonce");
  if (a.mech === "token") return { mech: "token", id: base64Field(a.id, "auth.id"), nonce };
  if (typeof a.user !== "string" || a.user === "" || a.user.length > MAX_SECRET_LENGTH) {
    throw new DistError(
      "BAD_REQUEST",
      `Hello field "auth.user" must be a non-empty string of at most ${MAX_SECRET_LENGTH} characters`,
    );
  }
  return { mech: "password", user: a.user, nonce };
}

/** A base64 string of 16 to 256 characters from a peer, or BAD_REQUEST naming the field. */
function base64Field(value: unknown, name: string): string {
  if (
    typeof value !== "string" || value.length < 16 || value.length > MAX_FIELD ||
    !/^[A-Za-z0-9+/]+={0,2}$/.test(value)
  ) {
    throw new DistError("BAD_REQUEST", `Handshake field "${name}" must be base64`);
  }
  return value;
}

/**
 * The most scrypt a dialer derives for a challenge (128·N·r·p bytes: its
 * memory, and its time over p): whoever answers the dialer names the cost,
 * and 2^20 with r = 32 would be 4 GiB. 128 MiB is N = 2^17 at r = 8, p = 1,
 * the most `dist passwd` writes (one derivation at a time: scram.ts
 * passwordKey; 8 at once at 256 MiB each took a dialer to 2.3 GiB, h46d D3).
 */
const MAX_DIALER_SCRYPT = 128 << 20;
/**
 * The least: N = 2^10 at r = 8, what `dist passwd --cost 10` writes. A
 * squatter naming ln=10, r=1 (and a salt of its own) had proofs it could
 * guess against at 0.59 ms a guess, one table for every dialer (h46d D2).
 */
const MIN_DIALER_SCRYPT = 1 << 20;

/** `ln=14,r=8,p=1` of a cost. */
export function costText(cost: ScryptCost): string {
  return `ln=${cost.ln},r=${cost.r},p=${cost.p}`;
}

function parseCost(text: unknown): ScryptCost {
  const m = typeof text === "string" ? /^ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})$/.exec(text) : null;
  const cost = m === null ? undefined : { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  const problem = cost === undefined
    ? "must be ln=N,r=N,p=N"
    : costProblem(cost) ?? (128 * 2 ** cost.ln * cost.r * cost.p > MAX_DIALER_SCRYPT
      ? `asks more than ${MAX_DIALER_SCRYPT >> 20} MiB of scrypt (128·N·r·p)`
      : 128 * 2 ** cost.ln * cost.r * cost.p < MIN_DIALER_SCRYPT
      ? `asks less than ${MIN_DIALER_SCRYPT >> 20} MiB of scrypt (128·N·r·p): cheap to guess at`
      : undefined);
  if (problem !== undefined) {
    throw new DistError("BAD_REQUEST", `Challenge cost ${describe(text)}: ${problem}`);
  }
  return cost!;
}

/** What a listener asks a password's dialer to derive its key with. */
export interface SaltAndCost {
  /** The user's salt, as its users file entry keeps it. */
  salt: Uint8Array;
  /** scrypt's cost parameters for that entry. */
  cost: ScryptCost;
}

/** The listener's half: its challenge, and the check of the proof that answers it. */
export class ListenerChallenge {
  readonly message: Record<string, unknown>;
  #exchange: Exchange;
  #tokenId: string | undefined;

  /** @param hello the dialer's role and name as sent (unknown when not strings) */
  constructor(
    request: ChallengeRequest,
    hello: { role: unknown; name: unknown },
    self: { role: string; name: string },
    salt?: SaltAndCost,
  ) {
    const serverNonce = newNonce();
    this.#tokenId = request.id;
    this.#exchange = {
      mech: request.mech,
      user: request.user ?? "",
      dialerRole: typeof hello.role === "string" ? hello.role : "",
      dialerName: typeof hello.name === "string" ? hello.name : "",
      clientNonce: request.nonce,
      serverNonce,
      listenerRole: self.role,
      listenerName: self.name,
      salt: salt === undefined ? "" : b64(salt.salt),
      cost: salt === undefined ? "" : costText(salt.cost),
    };
    this.message = {
      op: "challenge",
      nonce: serverNonce,
      role: self.role,
      name: self.name,
      ...(salt === undefined ? {} : { salt: this.#exchange.salt, cost: this.#exchange.cost }),
    };
  }

  /** The check of the dialer's answer. @throws {DistError} BAD_REQUEST for anything but a proof */
  answer(msg: unknown): ProofCheck {
    const m = msg as Record<string, unknown> | null;
    if (m === null || typeof m !== "object" || m.op !== "proof") {
      throw new DistError("BAD_REQUEST", 'A challenge is answered with op "proof"');
    }
    const proof = unb64(base64Field(m.proof, "proof"));
    return new ProofCheck(this.#exchange, proof, this.#tokenId);
  }
}

/**
 * The dialer's half: the proof answering `msg` (a challenge), and the
 * verifier the welcome must then carry.
 * @throws {DistError} BAD_REQUEST for a challenge that is not well formed
 */
export async function answerChallenge(
  msg: Record<string, unknown>,
  request: ChallengeRequest,
  credentials: Credentials,
  hello: { role: string; name: string },
): Promise<{ proof: Record<string, unknown>; verifier: Uint8Array }> {
  if (typeof msg.role !== "string" || typeof msg.name !== "string") {
    throw new DistError("BAD_REQUEST", "A challenge names the listener's role and name");
  }
  const exchange: Exchange = {
    mech: request.mech,
    user: request.user ?? "",
    dialerRole: hello.role,
    dialerName: hello.name,
    clientNonce: request.nonce,
    serverNonce: base64Field(msg.nonce, "nonce"),
    listenerRole: msg.role,
    listenerName: msg.name,
    salt: "",
    cost: "",
  };
  let salted: Uint8Array;
  if (request.mech === "password") {
    exchange.salt = base64Field(msg.salt, "salt");
    const cost = parseCost(msg.cost);
    exchange.cost = costText(cost);
    salted = await passwordKey(credentials.password!, unb64(exchange.salt), cost);
  } else {
    salted = tokenKey(credentials.token!);
  }
  const message = authMessage(exchange);
  const { serverKey } = keysOf(salted);
  return {
    proof: { op: "proof", proof: b64(clientProof(salted, message)) },
    verifier: serverSignature(serverKey, message),
  };
}

/**
 * Whether a welcome's verifier is the one expected (the listener holds the
 * user's keys).
 * @throws {DistError} UNAUTHORIZED when it is missing or wrong
 */
export function checkVerifier(welcome: Record<string, unknown>, expected: Uint8Array): void {
  const told = welcome.verifier;
  let ok = false;
  try {
    ok = typeof told === "string" && told.length <= MAX_FIELD &&
      sameBytes(unb64(told), expected) && expected.length === KEY_BYTES;
  } catch {
    ok = false;
  }
  if (!ok) {
    throw new DistError(
      "UNAUTHORIZED",
      "The listener did not prove it holds this dialer's keys (a wrong or missing verifier)",
    );
  }
}
