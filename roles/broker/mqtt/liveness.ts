/**
 * The deadlines an MQTT connection is held to, advanced by the process's
 * one ticker: CONNECT within `connectTimeoutMs`, a client silent for no
 * longer than 1.5 × its keep-alive, a packet whole within
 * PACKET_TIMEOUTS write timeouts of its first byte, and waiting output taken
 * at a minimum pace (a trickle reader is cut, see wire/deadlines.ts).
 */
import type { Outbound } from "../../../wire/outbound.ts";
import { WriteProgress } from "../../../wire/deadlines.ts";
import type { MqttLimits } from "./front.ts";

/**
 * How long a packet may take to arrive once it has begun, in write timeouts
 * (30 s by default: a 1 MiB PUBLISH at 35 KB/s). Its buffer is counted in
 * max-memory meanwhile; a client that sends all of a large packet but its
 * last byte holds it no longer than this.
 */
const PACKET_TIMEOUTS = 3;

/** Why a connection must close: said in the log, with its will or not, a slow consumer or not. */
export interface Verdict {
  why: string;
  withWill: boolean;
  slow?: boolean;
}

/** One connection's deadlines; see the module comment. */
export class Liveness {
  /** 1.5 × the keep-alive agreed at CONNECT (ms); 0: none. */
  keepAliveMs = 0;
  #ageMs: number;
  #quietMs = 0;
  /** How long the packet being received has been coming (undefined: none is). */
  #partialMs: number | undefined;
  /** While output waits on the client: whether it takes enough of it. */
  #progress: WriteProgress | undefined;

  /** `ageMs`: time the connection took already (its TLS handshake), counted in the CONNECT deadline. */
  constructor(ageMs: number) {
    this.#ageMs = ageMs;
  }

  /** Bytes came. */
  heard(): void {
    this.#quietMs = 0;
  }

  /**
   * The broker holds the connection's input (`true`: a SUBSCRIBE waits for
   * its costly turns, and nothing more is read meanwhile) or lets it go:
   * that time is not the client's silence, and what it sent meanwhile waits
   * unread, so the keep-alive clock stands still and starts afresh after
   * (hostile review 35, H9: a client pinging every half keep-alive was cut
   * as silent while its SUBSCRIBE waited behind other sources' listings).
   */
  hold(on: boolean): void {
    this.#held = on;
    this.#quietMs = 0;
  }
  #held = false;

  /** Whether a packet has begun and is not yet whole. */
  partial(begun: boolean): void {
    this.#partialMs = begun ? this.#partialMs ?? 0 : undefined;
  }

  /** `elapsed` ms went by: why the connection must close now, if it must. */
  check(
    elapsed: number,
    connected: boolean,
    out: Outbound,
    limits: MqttLimits,
  ): Verdict | undefined {
    if (!connected) {
      this.#ageMs += elapsed;
      return this.#ageMs > limits.connectTimeoutMs
        ? { why: "no CONNECT in time", withWill: false }
        : undefined;
    }
    if (!this.#held) this.#quietMs += elapsed;
    const packetMs = PACKET_TIMEOUTS * limits.writeTimeoutMs;
    if (this.#partialMs !== undefined && (this.#partialMs += elapsed) > packetMs) {
      return { why: `a packet not whole ${packetMs / 1000} s after it began`, withWill: true };
    }
    if (this.keepAliveMs > 0 && this.#quietMs > this.keepAliveMs) {
      return { why: `silent for 1.5 × keep-alive (${this.keepAliveMs} ms)`, withWill: true };
    }
    if (!out.writing) {
      this.#progress = undefined;
      return undefined;
    }
    // Made while output waits on the client only (an idle connection's every byte counts).
    const progress = this.#progress ??= new WriteProgress();
    const timeout = limits.writeTimeoutMs;
    return progress.tick(elapsed, true, out.bytesOut, out.pending, timeout)
      ? { why: progress.describe(timeout), withWill: true, slow: true }
      : undefined;
  }
}
