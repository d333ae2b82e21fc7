/** What the broker's core (core.ts) is given and answers: its options, and its calls' requests and results. */
import type { Subscription } from "./subscriber.ts";

export type { TopicInfo } from "../../clients/contracts/broker.ts";

export interface BrokerCoreOptions {
  /** Byte budget of the retained values. */
  retainBytes: number;
  /** Each connection's pending-byte limit (all its subscriptions together). */
  maxPending: number;
  /** Most topics kept; past it the least recently active topic is forgotten. */
  maxTopics: number;
  /**
   * Byte budget of the topics' names and tree nodes (estimated); past it the
   * least recently active topics are forgotten. Default: no budget.
   */
  maxTopicBytes?: number;
  /** Most subscriptions over all connections. Default: no limit. */
  maxSubscriptions?: number;
  /**
   * Most subscriptions one source (a user, an address: see shares.ts) may
   * hold; its subscriptions may also take that fraction of
   * `maxSubscriptions` of `maxMemory`. Default: no share.
   */
  maxSubscriptionsPerSource?: number;
  /**
   * Process-wide budget of what the broker counts (see `memoryBytes`):
   * past it new subscriptions and new topics are refused and `onOverBudget`
   * is called (the front end sheds its slowest subscribers). Default: none.
   */
  maxMemory?: number;
  /** Clock (epoch ms); tests may replace it. */
  now?: () => number;
}

export interface PublishResult {
  topic: string;
  /** Subscribers the message went to (a group counts once). */
  deliveries: number;
  /** The topic did not exist before. */
  created: boolean;
  /**
   * Set when the publish waits for its match (see matching.ts): its
   * deliveries, once known (`deliveries` is then 0).
   */
  later?: Promise<number>;
  /**
   * Set when its deliveries are not all made and kept yet: resolves once
   * they are made (its match found, the fan-out's backlog past it) and
   * what they wrote to disk is committed (BrokerCore.keeper); rejects when
   * that commit failed. An acknowledgement that promises the publish is
   * kept (an MQTT PUBACK, a confirmed `broker.publish`) waits for it.
   */
  settled?: Promise<void>;
}

/** A store deliveries are written to (MQTT persistent sessions' journal). */
export interface Keeper {
  /** Writes made so far (a publish that made none needs no commit). */
  readonly written: number;
  /**
   * Resolves once every write made so far is committed (as the store's
   * fsync mode says; with `synced` false, under `batch`, before its sync).
   */
  commit(synced?: boolean): Promise<void>;
  /**
   * Commits what was written since `since` (an earlier `written`), or
   * nothing (undefined): as `commit(synced)`, in this turn when `now`; the
   * promise marked handled (see Store.commitSince).
   */
  commitSince(since: number, synced?: boolean, now?: boolean): Promise<void> | undefined;
  /** Whether the last commit failed and writes wait for its retry (a full disk). */
  readonly failing?: boolean;
}

export interface SubscribeRequest {
  /** A topic or pattern, not yet normalised. */
  topic: unknown;
  group?: unknown;
  policy?: unknown;
  /** Only topics at the pattern's own depth (an MQTT filter without `#`). */
  exact?: boolean;
  /** Whose share it counts in (shares.ts shareSource); none: no one's. */
  source?: string;
  /** Read back from disk: counted in its source's share, not refused by it. */
  restored?: boolean;
  /** Most bytes of names `topics` may list (default TOPIC_NAMES_BYTES; see snapshot.ts). */
  namesBytes?: number;
  /** False: `topicCount` is not asked for (MQTT sends none), so the tree is not walked to count. */
  count?: boolean;
}

export interface Subscribed {
  sub: Subscription;
  /** Existing topics the subscription covers (at most `TOPIC_NAMES_LIMIT`, and `namesBytes`). */
  topics: string[];
  /** How many existing topics it covers (at least; see `complete`). */
  topicCount: number;
  /**
   * False when counting stopped at its work bound (SUBSCRIBE_VISITS): a
   * pattern with `+` over a very wide level. `topicCount` is then a floor.
   */
  complete: boolean;
}
