/**
 * The MQTT ports' connection slots: `--max-connections` and
 * `--max-connections-per-source`, counted by source as on the native port,
 * by the same table (wire/sources.ts). Before, only connections without
 * CONNACK made room: 500 clean-session clients from one address, CONNACK'd
 * with keep-alive 600 s and then silent, held every slot of
 * `--max-connections 500` for 15 minutes and every other client's CONNECT
 * was closed (hostile review 34, Z1). Now, while the ports are full, one
 * source may hold a quarter, and a newcomer from another source closes a
 * connection of the source holding the most past that (its oldest without
 * CONNACK, else its newest), which is told why (MQTT 5: DISCONNECT
 * 0x97, quota exceeded). A source is the client's user once its CONNECT
 * proves one, else its address (auth's clientSource).
 *
 * A connection counts from its accept (its TLS handshake or WebSocket
 * upgrade included) until it closes, on the TCP and WebSocket ports
 * together.
 */
import { clientSource } from "../../../auth/mod.ts";
import { sourceOf } from "../../../wire/newcomers.ts";
import { type SourceEntry, type SourceStats, SourceTable } from "../../../wire/sources.ts";
import { DistError } from "../../../wire/mod.ts";
import type { MqttConnection } from "./connection.ts";

/** MQTT 5's DISCONNECT reason for a connection closed to make room: quota exceeded. */
const QUOTA_EXCEEDED = 0x97;

export class MqttSlots {
  readonly table: SourceTable;
  /** The connections past their TLS handshake, with their entries. */
  readonly #entries = new Map<MqttConnection, SourceEntry>();

  constructor(limits: { maxConnections: number; maxConnectionsPerSource?: number }) {
    this.table = new SourceTable({
      max: limits.maxConnections,
      perSource: limits.maxConnectionsPerSource,
      source: clientSource,
    });
  }

  /**
   * A connection just accepted, before its TLS handshake (or WebSocket
   * upgrade): its entry, or the error it is refused with (the ports are
   * full of sources within their share, or its own holds its bound).
   */
  admit(conn: Deno.Conn): SourceEntry | DistError {
    return this.table.admit(sourceOf(conn), () => {
      try {
        conn.close();
      } catch {
        // Closed already.
      }
    }, { handshaking: true });
  }

  /**
   * `c` speaks MQTT now (its handshake is over): closed to make room, it
   * is closed at once before CONNACK, told why after.
   */
  attach(
    c: MqttConnection,
    entry: SourceEntry,
    warn: (c: MqttConnection, message: string) => void,
  ): void {
    entry.close = (why, connected) => {
      warn(c, why.message);
      if (connected) c.refuse(QUOTA_EXCEEDED, why.message);
      else c.close(why.message, false);
    };
    this.#entries.set(c, entry);
  }

  /**
   * `c`'s CONNECT proved `user`: it counts as that user's from now on.
   * @throws {DistError} OVERLOADED when that user holds its bound (or its share while full)
   */
  authenticated(c: MqttConnection, user: string | undefined): void {
    this.#entries.get(c)?.hello(user);
  }

  /** `c` was given CONNACK: closed to make room only as its source's. */
  settled(c: MqttConnection): void {
    this.#entries.get(c)?.settled();
  }

  /** `c` closed. */
  gone(c: MqttConnection): void {
    this.#entries.get(c)?.leave();
    this.#entries.delete(c);
  }

  stats(): SourceStats {
    return this.table.stats();
  }
}
