/**
 * Topic names, shared by the broker, the producer and the consumer: one rule
 * for what a topic is, so a name the producer accepts is one the broker
 * accepts.
 *
 * A topic is `/`-separated segments, normalised to a leading `/` and no
 * trailing `/` (`telephony/orange/` → `/telephony/orange`); `/` alone is the
 * root. A subscription pattern may also use `+` as a whole segment, matching
 * exactly one segment; a subscription covers its topic's whole subtree.
 */
import { describe, DistError } from "../wire/mod.ts";

/** Longest topic accepted, in UTF-16 units. */
export const MAX_TOPIC_LENGTH = 1024;
/** Deepest topic accepted, in segments (bounds every walk of the tree). */
export const MAX_TOPIC_DEPTH = 64;

/** The wildcard segment of a pattern: exactly one segment. */
export const ONE_SEGMENT = "+";

/** Whitespace and control characters: never part of a topic (output is `topic value` lines). */
// deno-lint-ignore no-control-regex
const FORBIDDEN = /[\s\u0000-\u001f\u007f]/;

/**
 * The normal form of a topic or, with `pattern`, of a subscription pattern.
 * @throws {DistError} BAD_REQUEST for a non-string, an empty segment (`/a//b`),
 * whitespace or control characters, `+` inside a segment or in a topic that
 * is not a pattern, or a name too long or too deep
 */
export function normalizeTopic(raw: unknown, options: { pattern?: boolean } = {}): string {
  if (typeof raw !== "string") {
    throw new DistError("BAD_REQUEST", `A topic must be a string, not ${describe(raw)}`);
  }
  if (raw === "") throw new DistError("BAD_REQUEST", "A topic must not be empty");
  if (raw.length > MAX_TOPIC_LENGTH) {
    throw new DistError(
      "BAD_REQUEST",
      `Topic is too long: ${raw.length} characters (at most ${MAX_TOPIC_LENGTH})`,
    );
  }
  if (FORBIDDEN.test(raw)) {
    throw new DistError(
      "BAD_REQUEST",
      `Invalid topic ${JSON.stringify(describe(raw))}: no spaces or control characters`,
    );
  }
  if (raw.includes("//")) {
    throw new DistError("BAD_REQUEST", `Invalid topic ${JSON.stringify(raw)}: empty segment`);
  }
  let topic = raw.startsWith("/") ? raw : "/" + raw;
  if (topic.length > 1 && topic.endsWith("/")) topic = topic.slice(0, -1);
  if (topic === "/") return topic;
  const segments = topic.split("/");
  if (segments.length - 1 > MAX_TOPIC_DEPTH) {
    throw new DistError(
      "BAD_REQUEST",
      `Topic is too deep: ${segments.length - 1} segments (at most ${MAX_TOPIC_DEPTH})`,
    );
  }
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i];
    if (s === "") {
      throw new DistError("BAD_REQUEST", `Invalid topic ${JSON.stringify(raw)}: empty segment`);
    }
    if (s.includes(ONE_SEGMENT) && (s !== ONE_SEGMENT || !options.pattern)) {
      throw new DistError(
        "BAD_REQUEST",
        options.pattern
          ? `Invalid pattern ${JSON.stringify(raw)}: + must be a whole segment`
          : `Invalid topic ${JSON.stringify(raw)}: + is only for subscriptions`,
      );
    }
  }
  return topic;
}

/** The segments of a normalised topic: `/a/b` → `["a", "b"]`, `/` → `[]`. */
export function topicSegments(topic: string): string[] {
  return topic === "/" ? [] : topic.slice(1).split("/");
}
