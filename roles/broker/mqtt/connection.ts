/**
 * One MQTT connection: CONNECT and its answer, the packets that follow
 * dispatched (PUBLISH to publish_in.ts, SUBSCRIBE and UNSUBSCRIBE to
 * subscribe_in.ts, acknowledgements to the session), keep-alive and write
 * deadlines, closing and the will. Its read loop is reader.ts. What may
 * outlive it (subscriptions, deliveries in flight, the QoS 2 publishes
 * awaiting PUBREL) is its {@link MqttSession}, the subscriptions' sink.
 */
import { DistError } from "../../../wire/mod.ts";
import { Outbound } from "../../../wire/outbound.ts";
import { ticker } from "../../../wire/heartbeat.ts";
import type { Identity } from "../../../wire/credentials.ts";
import type { IConnectPacket } from "mqtt-packet";
import { Inbound, type PublishSide } from "./publish_in.ts";
import { onSubscribe, onUnsubscribe } from "./subscribe_in.ts";
import type { MqttSession } from "./session.ts";
import { OutAliases } from "./delivery.ts";
import { PropertyFault } from "./properties.ts";
import { onDeliveryAck } from "./publish_out.ts";
import {
  connackOk,
  connectRefused,
  keepAliveOf,
  onDisconnect,
  sessionExpiryOf,
  sessionRefused,
  type Will,
  willOf,
} from "./connect.ts";
import {
  ackId,
  CONNECT,
  connectLevel,
  DISCONNECT,
  generate,
  PacketFault,
  parseSlow,
  PINGREQ,
  PINGRESP_BYTES,
  PUBACK,
  PUBCOMP,
  PUBLISH,
  PUBREC,
  PUBREL,
  SUBSCRIBE,
  UNSUBSCRIBE,
  writeAck,
} from "./packets.ts";
import type { MqttFront } from "./front.ts";
import { clientSource } from "../../../auth/mod.ts";
import { Liveness } from "./liveness.ts";
import {
  CLOSED,
  CLOSING,
  CONNECTED,
  HIGH_WATER,
  NEW,
  type PacketHost,
  readPackets,
} from "./reader.ts";

/** QoS 1 and 2 deliveries in flight per connection (MQTT 5: at most the client's Receive Maximum). */
export const INFLIGHT_WINDOW = 1024;

export class MqttConnection implements PacketHost, PublishSide {
  clientId = "";
  /** Deliveries in flight at once (MQTT 5: at most the client's Receive Maximum). */
  window = INFLIGHT_WINDOW;
  /** The largest packet the client takes (MQTT 5's Maximum Packet Size). */
  clientMaxPacket = Infinity;
  /** Who its verified TLS client certificate says it is (its common name; `--tls-client-ca`). */
  certSubject: string | undefined;
  /** Our Topic Aliases (MQTT 5, when the client's Topic Alias Maximum allows some). */
  aliases: OutAliases | undefined;
  readonly #conn: Deno.Conn;
  readonly front: MqttFront;
  readonly #out: Outbound;
  #version = 4;
  #v5 = false;
  #connected = false;
  #closed = false;
  /** Answered and closing: input is no longer handled. */
  #closing = false;
  #session: MqttSession | undefined;
  #will: Will | undefined;
  #identity: Identity | undefined;
  /** Its deadlines (told by the read loop of bytes and of packets begun). */
  readonly live: Liveness;
  /** Made at the first PUBLISH (a subscriber holds none). */
  #inbound: Inbound | undefined;
  /** Kept by the fan-out (see Publisher): held back, no packet is read past the gate. */
  waiting = 0;
  heldBack = false;
  #gate: Promise<void> | undefined;
  #openGate: (() => void) | undefined;

  /** `ageMs`: time the connection took already (its TLS handshake), counted in the CONNECT deadline. */
  constructor(conn: Deno.Conn, front: MqttFront, ageMs = 0) {
    this.#conn = conn;
    this.live = new Liveness(ageMs);
    this.front = front;
    this.#out = new Outbound(conn, HIGH_WATER, () => this.close("write error", true));
    ticker.add(this);
  }

  /** Its user, else its address: waiting matches rotate over sources (see ../matching.ts). */
  get source(): string {
    return clientSource(this.#identity?.user, (this.#conn.remoteAddr as Deno.NetAddr).hostname);
  }

  /** The peer's address: made when a log line or the authenticator asks, not kept (idle bytes). */
  get remote(): string {
    const addr = this.#conn.remoteAddr as Deno.NetAddr;
    return `${addr.hostname}:${addr.port}`;
  }

  // ---- the read side ----

  /** Reads and handles packets until the connection closes. */
  run(): Promise<void> {
    return readPackets(this.#conn, this.#out, this.front.limits.maxPacket, this);
  }

  // The read loop's PacketHost: methods, not closures (an idle connection's every byte counts).

  state(): number {
    return this.#closed ? CLOSED : this.#closing ? CLOSING : this.#connected ? CONNECTED : NEW;
  }

  ended(): void {
    this.close(this.#closing ? "closed" : "closed without DISCONNECT", true);
  }

  failed(err: Error): void {
    this.close(`read error: ${err.message}`, true);
  }

  malformed(why: string): void {
    this.protocolError(why);
  }

  oversize(length: number, max: number): void {
    this.front.oversize++;
    this.refuse(0x95, `a packet of ${length} bytes, over the limit of ${max}`);
  }

  mayBuffer(total: number): boolean {
    // A CONNECT this large brings a will: none past their share (sessions.ts), nor buffered.
    const f = this.front;
    const full = this.#connected ? f.core.overBudget : f.sessions.refusesBuffer(total);
    if (!full) return true;
    this.refuse(0x97, `a packet of ${total} bytes while the broker is at its memory budget`);
    return false;
  }

  holdBack(): void {
    this.#gate ??= new Promise((resolve) => this.#openGate = resolve);
  }

  goOn(): void {
    const open = this.#openGate;
    this.#gate = this.#openGate = undefined;
    open?.();
  }

  /** Handles one packet at `buf[s..e)`, its body from `body`; a promise while CONNECT is judged. */
  packet(buf: Uint8Array, s: number, body: number, e: number): Promise<void> | undefined {
    const first = buf[s];
    const type = first >> 4;
    if (!this.#connected) {
      if (type !== CONNECT) return this.protocolError("a first packet that is not CONNECT");
      return this.#onConnect(buf.slice(s, e), body - s);
    }
    switch (type) {
      case PUBLISH:
        // Held back by it, or paced (pace.ts): the read loop waits before the next packet.
        return (this.#inbound ??= new Inbound()).publish(this, first, buf, body, e)
          ?.then(() => this.#gate) ?? this.#gate;
      case PUBACK:
      case PUBCOMP:
      case PUBREC:
        return onDeliveryAck(this, first, buf, body, e);
      case PUBREL: {
        const id = ackId(buf, body, e, this.#v5);
        if (first !== 0x62 || id < 0) return this.protocolError("a bad PUBREL");
        return (this.#inbound ??= new Inbound()).released(this, id);
      }
      case PINGREQ:
        if (first !== 0xc0) return this.protocolError("a bad PINGREQ");
        this.send(PINGRESP_BYTES);
        return;
      case SUBSCRIBE:
        return onSubscribe(this, buf.subarray(s, e));
      case UNSUBSCRIBE:
        return onUnsubscribe(this, buf.subarray(s, e));
      case DISCONNECT:
        return onDisconnect(this, buf.subarray(s, e), e - body);
      case CONNECT:
        return this.protocolError("a second CONNECT");
      default:
        return this.protocolError(`a packet of type ${type}, which a client does not send`);
    }
  }

  async #onConnect(packet: Uint8Array, head: number): Promise<void> {
    const level = connectLevel(packet, head);
    if (level !== 3 && level !== 4 && level !== 5) {
      // 3.1.1's "unacceptable protocol version" (MQTT 5 clients read it too).
      this.front.badConnects++;
      return this.#finish(Uint8Array.of(0x20, 2, 0, 1), `protocol level ${level}`);
    }
    this.#version = level === 5 ? 5 : 4;
    this.#v5 = level === 5;
    if (this.front.sessions.refusesWill(packet, head)) {
      return this.#connack(...sessionRefused("memory", this.#v5, this.front.limits));
    }
    let p: IConnectPacket;
    try {
      p = parseSlow(packet, this.#version) as IConnectPacket;
    } catch (err) {
      this.front.badConnects++;
      const code = err instanceof PacketFault ? err.code : 0x80; // (3.1.1: closed)
      return this.refuse(code, `a malformed CONNECT (${(err as Error).message})`);
    }
    const refused = connectRefused(p, this.#v5);
    if (refused !== undefined) return this.#connack(...refused);
    this.clientId = p.clientId || `dist-${crypto.randomUUID()}`;
    try {
      this.#will = willOf(p);
    } catch (err) {
      if (err instanceof PropertyFault) return this.#connack(err.code, `a will with ${err.why}`);
      return this.#connack(this.#v5 ? 0x90 : 2, `a will on ${(err as Error).message}`);
    }
    try {
      this.#identity = await this.front.authenticate(this, p.username, p.password);
    } catch (err) {
      if (this.#closed) return;
      const e = DistError.from(err);
      return this.#connack(
        this.#v5 ? (e.code === "OVERLOADED" ? 0x89 : 0x86) : (e.code === "OVERLOADED" ? 3 : 4),
        e.message,
      );
    }
    if (!this.#closed) this.#accept(p);
  }

  /**
   * An authenticated CONNECT: its will's permission, what it sets on the
   * connection, and its session (taken over, resumed or new); then CONNACK.
   */
  #accept(p: IConnectPacket): undefined {
    // The will is a publish the broker makes for this user later: it needs
    // the same permission, asked now (unchecked, a user allowed to publish
    // nothing wrote a retained value anywhere by vanishing).
    if (this.#will !== undefined) {
      try {
        this.#identity?.access?.check("broker.publish", {
          action: "publish",
          name: this.#will.topic,
        });
      } catch (err) {
        this.#will = undefined;
        return this.#connack(this.#v5 ? 0x87 : 5, `a will: ${DistError.from(err).message}`);
      }
    }
    const { keepAlive, serverKeepAlive } = keepAliveOf(p, this.#v5, this.front.limits);
    this.live.keepAliveMs = keepAlive * 1500;
    const props = p.properties;
    if (props?.receiveMaximum !== undefined) {
      this.window = Math.max(1, Math.min(INFLIGHT_WINDOW, props.receiveMaximum));
    }
    if (props?.maximumPacketSize !== undefined) this.clientMaxPacket = props.maximumPacketSize;
    if ((props?.topicAliasMaximum ?? 0) > 0) {
      this.aliases = new OutAliases(props!.topicAliasMaximum!);
    }
    const expiry = sessionExpiryOf(p, this.#v5);
    const maxPacket = this.front.limits.maxPacket;
    const ack = {
      assignedId: p.clientId ? undefined : this.clientId,
      expiry,
      serverKeepAlive,
      maxPacket,
    };
    const fits = (present: boolean) => connackOk(this.#v5, present, ack, this.clientMaxPacket);
    // Past its Maximum Packet Size even without what it may leave out: no CONNACK (as Mosquitto).
    if (this.clientMaxPacket < Infinity && fits(false) === undefined) {
      this.front.oversizeOut++;
      this.close("a CONNACK past the client's Maximum Packet Size", false);
      return;
    }
    const taken = this.front.register(this, {
      clean: p.clean !== false,
      expiry: expiry.given,
      owner: this.#identity?.user,
      version: this.#version,
      clientId: this.clientId,
      will: this.#will,
    });
    if (typeof taken === "string") {
      return this.#connack(...sessionRefused(taken, this.#v5, this.front.limits));
    }
    this.#session = taken.session;
    this.#connected = true;
    this.front.wills.hold(this.#will);
    this.send(fits(taken.present)!);
    // After the CONNACK: what was in flight goes again, then what waited.
    taken.session.attach(this);
  }

  // ---- what the session and the packets' handlers use ----

  get v5(): boolean {
    return this.#v5;
  }

  /** The protocol level packets are parsed at: 4 (3.1.1, and 3.1) or 5. */
  get version(): number {
    return this.#version;
  }

  get session(): MqttSession {
    return this.#session!;
  }

  get identity(): Identity | undefined {
    return this.#identity;
  }

  get out(): Outbound {
    return this.#out;
  }

  // ---- housekeeping (the process's one ticker) ----

  readonly tickMs = 1000;

  tick(elapsed: number): void {
    if (this.#closed) return;
    const verdict = this.live.check(elapsed, this.#connected, this.#out, this.front.limits);
    if (verdict !== undefined) {
      if (verdict.slow) this.front.slowConsumers++;
      return this.close(verdict.why, verdict.withWill);
    }
    if (!this.#connected || this.#out.writing) return;
    this.#out.trim();
    // Nothing to write: an idle connection keeps no output buffer (512 bytes each otherwise).
    this.#out.buffer.release(0);
  }

  // ---- closing ----

  /** Closes now: subscriptions go, and the will is published when `withWill`. */
  close(why: string, withWill: boolean): void {
    if (this.#closed) return;
    this.#closed = true;
    // Read before the session is detached (and, with expiry 0, ended).
    const expiry = this.#session?.expiry ?? 0;
    ticker.delete(this);
    this.#inbound?.release();
    this.#out.close();
    try {
      this.#conn.close();
    } catch {
      // Already closed by the peer.
    }
    this.front.gone(this, why);
    // The session ends, or waits for the client (it may be back with another connection).
    this.#session?.detach(this);
    const will = this.#will;
    this.#will = undefined;
    if (this.#connected) this.front.wills.leave(this.clientId, will, expiry, withWill);
  }

  /** MQTT 5: says why in a DISCONNECT (or a CONNACK before CONNECT is accepted), then closes. */
  refuse(reason: number, why: string): undefined {
    if (!this.#v5) {
      this.close(why, true);
      return;
    }
    const packet = this.#connected
      ? generate({ cmd: "disconnect", reasonCode: reason }, 5)
      : generate({ cmd: "connack", sessionPresent: false, reasonCode: reason }, 5);
    this.#finish(packet, why);
  }

  #connack(code: number, why: string): undefined {
    this.front.badConnects++;
    const packet = this.#v5
      ? generate({ cmd: "connack", sessionPresent: false, reasonCode: code }, 5)
      : Uint8Array.of(0x20, 2, 0, code);
    this.#finish(packet, why);
  }

  protocolError(why: string, reason = 0x82 /* or e.g. 0x81 Malformed Packet */): undefined {
    this.front.protocolErrors++;
    this.front.warn(this, `Protocol error: ${why}`);
    this.refuse(reason, why);
  }

  /** Sends a last packet, then closes once it is out (the ticker's write deadline bounds the wait). */
  #finish(packet: Uint8Array, why: string): undefined {
    if (this.#closing || this.#closed) return;
    this.send(packet);
    this.#closing = true;
    this.#out.drained(0).then(() => this.close(why, true));
  }

  // ---- output ----

  /** An acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP) with no reason code. */
  ack(type: number, id: number): undefined {
    const out = this.#out.buffer;
    out.reserve(4);
    writeAck(out.bytes, out.length, type, id);
    out.length += 4;
    this.queuedOut();
  }

  send(packet: Uint8Array): void {
    if (this.#closed) return;
    // MQTT-3.1.2-24: none past its Maximum Packet Size (a SUBACK of many filters: not sent, as EMQX).
    if (packet.length > this.clientMaxPacket) return this.#tooLarge(packet);
    const out = this.#out.buffer;
    out.reserve(packet.length);
    out.bytes.set(packet, out.length);
    out.length += packet.length;
    this.queuedOut();
  }

  /** A packet past the client's Maximum Packet Size: not sent, counted, logged. */
  #tooLarge(packet: Uint8Array): void {
    this.front.oversizeOut++;
    const what = PACKET_NAMES[packet[0] >> 4] ?? `type ${packet[0] >> 4}`;
    this.front.warn(this, `Not sent: ${what} of ${packet.length} bytes, past its limit`);
  }

  /** Output was queued: past its bound the client does not read, and is closed. */
  queuedOut(): void {
    if (!this.#out.queued(this.front.limits.maxOutbound)) {
      this.front.slowConsumers++;
      this.close("output past its bound: the client does not read", true);
    }
  }
}

/** Names of the packets the broker sends, for a log line. */
const PACKET_NAMES: Record<number, string> = { 2: "a CONNACK", 9: "a SUBACK", 11: "an UNSUBACK" };
