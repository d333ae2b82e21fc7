/**
 * The broker's methods (`broker.publish`, `broker.subscribe` …), its events
 * (`broker.message`, `broker.topic_created`), and what a topic is: one rule
 * for the broker, the producer, the consumer and applications.
 *
 * A topic is `/`-separated segments, normalised to a leading `/` and no
 * trailing `/` (`telephony/orange/` → `/telephony/orange`); `/` alone is the
 * root. A subscription pattern may also use `+` as a whole segment, matching
 * exactly one segment; a subscription covers its topic's whole subtree.
 */
import { describe, DistError } from "../../wire/errors.ts";
import {
  any,
  arrayOf,
  bool,
  count,
  MAX_TOPIC_LENGTH,
  obj,
  type ObjectOptions,
  opt,
  type Parse,
  str,
} from "../../wire/check.ts";
import { type Contract, type Event, event, type Method, method } from "../../wire/contract.ts";

export { MAX_TOPIC_LENGTH };
/** Deepest topic accepted, in segments (bounds every walk of the tree). */
export const MAX_TOPIC_DEPTH = 64;

/** The wildcard segment of a pattern: exactly one segment. */
export const ONE_SEGMENT = "+";

/**
 * What is never part of a topic, as a regular expression character class
 * (flag `u`): whitespace and control characters, C0 and C1 (output is
 * `topic value` lines), Unicode non-characters (U+FDD0–U+FDEF, U+xFFFE,
 * U+xFFFF) and lone surrogates. MQTT 5 (§1.5.4) lets a client refuse a
 * packet holding a control character or a non-character, and libmosquitto
 * does: it drops its connection, and for a retained value again on every
 * reconnect (hostile review 38 L1); a lone surrogate has no UTF-8 form.
 * One rule for topics published natively and over MQTT.
 */
export const TOPIC_FORBIDDEN_CLASS = "\\s\\p{Cc}\\p{Cs}\\p{Noncharacter_Code_Point}";
const FORBIDDEN = new RegExp(`[${TOPIC_FORBIDDEN_CLASS}]`, "u");

/**
 * The normal form of a topic or, with `pattern`, of a subscription pattern.
 * @throws {DistError} BAD_REQUEST for a non-string, an empty segment (`/a//b`),
 * whitespace, control characters, non-characters or lone surrogates (see
 * {@link TOPIC_FORBIDDEN_CLASS}), `+` inside a segment or in a topic that
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
      `Invalid topic ${
        JSON.stringify(describe(raw))
      }: no spaces, control characters or non-characters`,
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

/** What the broker does with a subscriber that falls behind. */
export type Policy = "disconnect" | "drop-oldest" | "latest";
/** The policies, the default first. */
export const POLICIES: readonly Policy[] = ["disconnect", "drop-oldest", "latest"];
/** Longest queue group name. */
export const MAX_GROUP_LENGTH = 256;

/** A queue group name. */
export const groupName: Parse<string> = (group): string => {
  if (typeof group !== "string" || group === "" || group.length > MAX_GROUP_LENGTH) {
    throw new DistError(
      "BAD_REQUEST",
      `A group must be a non-empty string of at most ${MAX_GROUP_LENGTH} characters, not ${
        describe(group)
      }`,
    );
  }
  return group;
};

/** A slow-subscriber policy. */
export const policy: Parse<Policy> = (v): Policy => {
  if (typeof v === "string" && (POLICIES as readonly string[]).includes(v)) return v as Policy;
  throw new DistError(
    "BAD_REQUEST",
    `Unknown policy ${describe(v)}: expected one of ${POLICIES.join(", ")}`,
  );
};

/** A topic as sent, not yet normalised (the broker normalises it, and keeps what it named). */
const topicText: Parse<string> = (v) => {
  if (typeof v !== "string") {
    throw new DistError("BAD_REQUEST", `A topic must be a string, not ${describe(v)}`);
  }
  return v;
};

const retainFlag: Parse<boolean> = (v) => {
  if (typeof v !== "boolean") {
    throw new DistError("BAD_REQUEST", `retain must be true or false, not ${describe(v)}`);
  }
  return v;
};

/** Default and largest number of topics one `broker.topics` answer lists. */
export const TOPICS_DEFAULT_LIMIT = 1000;
/** The most topics one `broker.topics` answer lists. */
export const TOPICS_MAX_LIMIT = 10_000;

const topicLimit: Parse<number> = (v) => {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
    throw new DistError("BAD_REQUEST", `limit must be a positive integer, not ${describe(v)}`);
  }
  return Math.min(v, TOPICS_MAX_LIMIT);
};

/** A subscription id as a connection's subscribe answered it (any other is not found). */
const sid: Parse<number> = (v) => {
  if (typeof v !== "number") {
    throw new DistError("NOT_FOUND", `No subscription ${describe(v)} on this connection`);
  }
  return v;
};

/** Params of the broker's methods: an object, a positional array, or nothing. */
function params(name: string): ObjectOptions {
  return {
    positional: true,
    omittable: true,
    notObject: (v) => `Params must be an object, not ${describe(v)}`,
    missing: (key) => `${name} needs a ${key}`,
  };
}

/** `broker.publish` params. */
export interface Publish {
  /** The topic (no `+`). */
  topic: string;
  /** Any JSON value (MessagePack: also binary and dates). */
  value: unknown;
  /** Keep it as the topic's retained value (default true; a null value clears it). */
  retain?: boolean;
}

/** What a confirmed publish answers. */
export interface Published {
  /** The topic, normalised. */
  topic: string;
  /** Subscribers it went to (a queue group counts once). */
  deliveries: number;
}

/** `broker.subscribe` params. */
export interface Subscribe {
  /** A topic or pattern (`+` is one segment); covers the subtree. */
  topic: string;
  /** Subscribers of one group share the messages: each goes to one of them. */
  group?: string;
  /** What happens when this subscriber falls behind (default `disconnect`). */
  policy?: Policy;
}

/** What `broker.subscribe` answers; the retained values follow it. */
export interface Subscribed {
  /** The subscription's id on this connection (deliveries carry it). */
  sid: number;
  /** The pattern, normalised. */
  topic: string;
  /** Existing topics it covers (at most 1000). */
  topics: string[];
  /** How many existing topics it covers (at least, when `truncated`). */
  topic_count: number;
  /** The count stopped at its work bound, or more topics than listed. */
  truncated?: boolean;
}

/** What `broker.unsubscribe` answers. */
export interface Unsubscribed {
  /** The subscription ended. */
  sid: number;
  /** Messages it was sent. */
  delivered: number;
  /** Messages its policy dropped. */
  dropped: number;
}

/** One topic of `broker.topics`. */
export interface TopicInfo {
  /** The topic's name. */
  topic: string;
  /** It has a retained value. */
  retained: boolean;
  /** When it last saw a message (ISO 8601). */
  last_active: string;
  /** Subscriptions that cover it (at least, with `subscribers_floor`). */
  subscribers: number;
  /** Counting its subscribers stopped at the listing's work bound: `subscribers` is a floor. */
  subscribers_floor?: boolean;
  /** Messages published to it. */
  messages: number;
  /** Deliveries made from it. */
  delivered: number;
}

/** What `broker.topics` answers. */
export interface TopicList {
  /** The topics, in tree order. */
  topics: TopicInfo[];
  /** More topics may match than listed (stopped at the limit or at the work bound). */
  truncated: boolean;
  /** With `truncated`: where it stopped; pass it as `after` to list the next page. */
  next?: string;
}

/** `broker.topics` params. */
export interface ListTopics {
  /** A topic or pattern (default `/`). */
  prefix?: string;
  /** The most topics to list (default 1000, at most 10,000). */
  limit?: number;
  /** Go on after this place: the `next` of an earlier answer. */
  after?: string;
}

/** A delivery (`broker.message`). */
export interface Delivery {
  /** The subscription it is for. */
  sid?: number;
  /** The topic it was published to. */
  topic: string;
  /** What was published. */
  value: unknown;
  /** A retained value, sent on subscribe (not a live message). */
  retained?: boolean;
}

/** The broker's methods. */
export interface BrokerContract extends Contract {
  /** The service's name. */
  readonly service: "broker";
  /** Its methods, by short name. */
  readonly methods: {
    /** Routes a message (a notification: fire-and-forget; a request: confirmed). */
    readonly publish: Method<"broker.publish", Publish, Published>;
    /** Subscribes this connection; deliveries follow as `broker.message`. */
    readonly subscribe: Method<"broker.subscribe", Subscribe, Subscribed>;
    /** @throws NOT_FOUND for a sid this connection does not hold */
    readonly unsubscribe: Method<"broker.unsubscribe", { sid: number }, Unsubscribed>;
    /** Existing topics under `prefix` (a pattern), at most `limit` (≤ 10,000), after `after`. */
    readonly topics: Method<"broker.topics", ListTopics, TopicList>;
  };
  /** What it sends unasked. */
  readonly events: {
    readonly message: Event<"broker.message", Delivery>;
    /** A new topic appeared under a subscription (a notice; a slow subscriber may miss it). */
    readonly topic_created: Event<"broker.topic_created", { sid: number; topic: string }>;
    /**
     * A delivery skipped: `bytes` past the frame limit of this connection (the
     * broker's, or the smaller one told at hello); `topic` when known.
     */
    readonly undeliverable: Event<"broker.undeliverable", Undeliverable>;
  };
}

/** What `broker.undeliverable` says. */
export interface Undeliverable {
  /** The subscription the delivery was for. */
  sid: number;
  /** The delivery's size as a frame, in bytes. */
  bytes: number;
  /** The frame limit it passed (the smaller of the broker's and this connection's). */
  limit: number;
  /** The delivery's topic, when known. */
  topic?: string;
}

const topicInfo: Parse<TopicInfo> = obj({
  topic: str,
  retained: bool,
  last_active: str,
  subscribers: count,
  messages: count,
  delivered: count,
  subscribers_floor: opt(bool),
});

/**
 * A delivery decoded by a codec (MessagePack subscribers and JSON frames
 * off the byte path): checked with two `typeof`s, as it is the hot one.
 */
const delivery: Parse<Delivery> = (v) => {
  if (v === null || typeof v !== "object" || typeof (v as Delivery).topic !== "string") {
    throw new DistError(
      "BAD_REQUEST",
      `A delivery must be {sid, topic, value}, got ${describe(v)}`,
    );
  }
  return v as Delivery;
};

/** The broker's methods and events. */
export const broker: BrokerContract = {
  service: "broker",
  prefix: "broker.",
  methods: {
    publish: method("broker.publish", {
      params: obj(
        { topic: topicText, value: any, retain: opt(retainFlag) },
        params("broker.publish"),
      ),
      resource: (p) => ({ action: "publish", name: p.topic }),
      result: obj({ topic: str, deliveries: count }),
      notify: true,
      errors: ["BAD_REQUEST"],
    }),
    subscribe: method("broker.subscribe", {
      params: obj(
        { topic: topicText, group: opt(groupName), policy: opt(policy) },
        params("broker.subscribe"),
      ),
      resource: (p) => ({ action: "subscribe", name: p.topic }),
      result: obj({
        sid: count,
        topic: str,
        topics: arrayOf(str, 100_000),
        topic_count: count,
        truncated: opt(bool),
      }),
      errors: ["BAD_REQUEST", "OVERLOADED"],
    }),
    unsubscribe: method("broker.unsubscribe", {
      params: obj({ sid }, { ...params("broker.unsubscribe"), missing: undefined }),
      result: obj({ sid: count, delivered: count, dropped: count }),
      errors: ["NOT_FOUND"],
    }),
    topics: method("broker.topics", {
      params: obj(
        { prefix: opt(topicText), limit: opt(topicLimit), after: opt(topicText) },
        params("broker.topics"),
      ),
      // Topic names are what a subscriber could see: the same permission.
      resource: (p) => ({ action: "subscribe", name: p.prefix ?? "/" }),
      result: obj({
        topics: arrayOf(topicInfo, TOPICS_MAX_LIMIT),
        truncated: bool,
        next: opt(str),
      }),
      errors: ["BAD_REQUEST"],
    }),
  },
  events: {
    message: event("broker.message", delivery),
    topic_created: event("broker.topic_created", obj({ sid: count, topic: str })),
    undeliverable: event(
      "broker.undeliverable",
      obj({ sid: count, bytes: count, limit: count, topic: opt(str) }),
    ),
  },
};
