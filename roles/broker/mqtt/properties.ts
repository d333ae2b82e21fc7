/**
 * A client's PUBLISH (or will) properties, checked as MQTT 5 has a server
 * check them before it passes them on: a subscriber's client library
 * refuses a PUBLISH whose properties break the rules (libmosquitto drops
 * its connection and, for a retained value, gets it again on every
 * reconnect: hostile review 37 K2), so such a publish is refused where it
 * comes in, and a stored retained value whose properties do not pass is
 * dropped when it is read back.
 */
import { frame, type PublishExtras, readExpiry, readFrame } from "./packets.ts";
import { skipUtf8 } from "../../../wire/json_scan.ts";

/** A client's PUBLISH properties, checked: what is passed on, and what is ours. */
export interface ScannedProperties extends PublishExtras {
  /** MQTT 5 Topic Alias, or -1 for none (this hop's: not passed on). */
  alias: number;
}

/** Why properties are refused, with the DISCONNECT reason MQTT 5 gives it. */
export class PropertyFault {
  constructor(
    /** 0x81 Malformed Packet (a string that is not an MQTT UTF-8 string: {@link mqttString}) or 0x82 Protocol Error. */
    readonly code: 0x81 | 0x82,
    readonly why: string,
  ) {}
}

const NAMES: Record<number, string> = {
  0x01: "Payload Format Indicator",
  0x03: "Content Type",
  0x08: "Response Topic",
  0x09: "Correlation Data",
};

/**
 * Whether `b[from..to)` is an MQTT UTF-8 string a subscriber's client takes:
 * well-formed UTF-8 without U+0000 (MQTT 5 §1.5.4: either is a Malformed
 * Packet), nor the code points §1.5.4 lets a receiver refuse and
 * libmosquitto does (`mosquitto_validate_utf8`, for every string it reads):
 * controls (U+0001–U+001F, U+007F–U+009F) and non-characters (U+FDD0–U+FDEF,
 * U+xFFFE, U+xFFFF) — the characters a topic may not hold either
 * (TOPIC_FORBIDDEN_CLASS, but for spaces; hostile review 38 L1).
 */
export function mqttString(b: Uint8Array, from: number, to: number): boolean {
  let j = from;
  while (j < to) {
    const c = b[j];
    if (c < 0x80) {
      if (c < 0x20 || c === 0x7f) return false;
      j++;
      continue;
    }
    const next = skipUtf8(b, j);
    if (next < 0 || next > to || refusedCodePoint(b, j, next - j)) return false;
    j = next;
  }
  return true;
}

/** Whether the well-formed UTF-8 sequence of `n` (2–4) bytes at `j` is a C1 control or a non-character. */
function refusedCodePoint(b: Uint8Array, j: number, n: number): boolean {
  if (n === 2) return b[j] === 0xc2 && b[j + 1] < 0xa0; // U+0080–U+009F
  if (n === 3) {
    // U+FDD0–U+FDEF (EF B7 90–AF), U+FFFE and U+FFFF (EF BF BE–BF).
    return b[j] === 0xef &&
      ((b[j + 1] === 0xb7 && b[j + 2] >= 0x90 && b[j + 2] <= 0xaf) ||
        (b[j + 1] === 0xbf && b[j + 2] >= 0xbe));
  }
  // U+xFFFE and U+xFFFF of planes 1–16: the low 16 bits all ones but the last.
  return (b[j + 1] & 0x0f) === 0x0f && b[j + 2] === 0xbf && b[j + 3] >= 0xbe;
}

/**
 * The properties of a PUBLISH from a client, checked: what is passed on
 * (every property but Message Expiry, which is kept apart as seconds or -1,
 * and Topic Alias, which is this connection's), or what is wrong. Refused:
 * a Subscription Identifier (only a server sends it), a property PUBLISH
 * does not have, one that runs past the properties, two of a property that
 * may come once, a Payload Format Indicator other than 0 or 1, a Response
 * Topic with a wildcard, and a string (Content Type, Response Topic, User
 * Property name or value) that is not an MQTT UTF-8 string.
 */
export function scanPublishProperties(
  props: Uint8Array,
  fromServer = false,
): ScannedProperties | PropertyFault {
  let expiry = -1;
  let alias = -1;
  /** Which of 0x01, 0x03, 0x08, 0x09 were seen (a bit each). */
  let seen = 0;
  /** Where the properties not passed on lie: [start, end) pairs. */
  let cuts: number[] | undefined;
  let i = 0;
  const n = props.length;
  const str = (at: number) => (at + 2 <= n ? at + 2 + ((props[at] << 8) | props[at + 1]) : n + 1);
  const protocol = (why: string) => new PropertyFault(0x82, why);
  const text = (at: number, end: number) => end > n || mqttString(props, at + 2, end);
  while (i < n) {
    const id = props[i++];
    let end: number;
    switch (id) {
      case 0x01: // Payload Format Indicator
      case 0x03: // Content Type
      case 0x08: // Response Topic
      case 0x09: // Correlation Data
        if (seen & (1 << id)) return protocol(`a PUBLISH with two ${NAMES[id]}s`);
        seen |= 1 << id;
        if (id === 0x01) {
          end = i + 1;
          if (end <= n && props[i] > 1) {
            return protocol(`a Payload Format Indicator of ${props[i]} (0 or 1)`);
          }
          break;
        }
        end = str(i);
        if (id === 0x09) break;
        if (!text(i, end)) {
          return new PropertyFault(0x81, `a ${NAMES[id]} that is not an MQTT UTF-8 string`);
        }
        if (id === 0x08 && end <= n) {
          for (let k = i + 2; k < end; k++) {
            if (props[k] === 0x23 || props[k] === 0x2b) {
              return protocol("a Response Topic with a wildcard");
            }
          }
        }
        break;
      case 0x02: // Message Expiry Interval
        end = i + 4;
        if (expiry >= 0) return protocol("a PUBLISH with two Message Expiry Intervals");
        if (end <= n) {
          expiry = readExpiry(props, i);
          (cuts ??= []).push(i - 1, end);
        }
        break;
      case 0x23: // Topic Alias
        end = i + 2;
        if (alias >= 0) return protocol("a PUBLISH with two Topic Aliases");
        if (end <= n) {
          alias = (props[i] << 8) | props[i + 1];
          (cuts ??= []).push(i - 1, end);
        }
        break;
      case 0x26: { // User Property: two strings
        const name = str(i);
        end = name <= n ? str(name) : name;
        if (!text(i, name) || !text(name, end)) {
          return new PropertyFault(0x81, "a User Property that is not an MQTT UTF-8 string pair");
        }
        break;
      }
      case 0x0b: // Subscription Identifier: only a server sends it (a variable byte integer)
        if (!fromServer) return protocol("a Subscription Identifier from a client");
        for (end = i; end < n && (props[end] & 0x80) !== 0;) end++;
        end++;
        break;
      default:
        return protocol(`a PUBLISH property 0x${id.toString(16)} that PUBLISH does not have`);
    }
    if (end > n) return protocol("a PUBLISH property longer than its properties");
    i = end;
  }
  if (cuts === undefined) return { properties: props, expiry, alias };
  let cut = 0;
  for (let k = 0; k < cuts.length; k += 2) cut += cuts[k + 1] - cuts[k];
  const rest = new Uint8Array(n - cut);
  let at = 0;
  let from = 0;
  for (let k = 0; k < cuts.length; k += 2) {
    rest.set(props.subarray(from, cuts[k]), at);
    at += cuts[k] - from;
    from = cuts[k + 1];
  }
  rest.set(props.subarray(from), at);
  return { properties: rest, expiry, alias };
}

/**
 * Whether properties kept with a retained value (Message Expiry taken out)
 * pass {@link scanPublishProperties}, for a value read back from a data
 * file written before the check (or damaged).
 */
export function keptPropertiesPass(props: Uint8Array): boolean {
  if (props.length === 0) return true;
  const scanned = scanPublishProperties(props);
  return !(scanned instanceof PropertyFault) && scanned.expiry < 0 && scanned.alias < 0;
}

/**
 * Whether a PUBLISH the broker wrote and kept (a persistent session's
 * delivery queued or in flight, read back from `--data-dir`) holds what its
 * client takes: a topic and property strings that are MQTT UTF-8 strings
 * ({@link mqttString}). One kept before the check (hostile review 38 L1)
 * would be sent again at every return of its client, and cut it off each
 * time.
 */
export function keptPublishPasses(packet: Uint8Array, v5: boolean): boolean {
  readFrame(packet, 0, packet.length);
  const end = packet.length;
  if (frame.length < 0 || frame.head + frame.length !== end || packet[0] >> 4 !== 3) return false;
  let at = frame.head + 2 + ((packet[frame.head] << 8) | packet[frame.head + 1]);
  if (at > end || !mqttString(packet, frame.head + 2, at)) return false;
  if (!v5) return true;
  if (((packet[0] >> 1) & 3) > 0) at += 2; // the packet id
  let length = 0;
  for (let mul = 1, k = 0;; k++, mul *= 128) {
    if (at >= end || k === 4) return false;
    const b = packet[at++];
    length += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) break;
  }
  if (at + length > end) return false;
  return !(scanPublishProperties(packet.subarray(at, at + length), true) instanceof PropertyFault);
}
