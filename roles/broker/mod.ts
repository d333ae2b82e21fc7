/**
 * @module
 * `dist broker`: publish/subscribe over hierarchical topics, retained last
 * values, topic listing and queue groups.
 *
 * The core has no sockets, so a second front end (MQTT) can reuse it:
 * `topics.ts` is the tree of existing topics, `subscriptions.ts` the tree
 * of subscription patterns and queue groups (`group.ts` a group and its
 * pick), `retained.ts` the retained values within their byte budget,
 * `subscriber.ts` a subscriber's pending
 * buffer and policy, and `core.ts` ties them into publish and subscribe.
 * The dist wire protocol is `front.ts` (requests, sessions) and `frames.ts`
 * (deliveries encoded once per codec). This file holds the option spec and
 * wires the parts to a listener.
 */
import { deliveryLatency } from "../../obs/mod.ts";
import { getLogger } from "@logtape/logtape";
import { defineOptions, LISTENER_OPTIONS, type RoleOptions, UsageError } from "../../config/mod.ts";
import { counted, defineRole, type RunContext } from "../_role.ts";
import { listening } from "../_shell.ts";
import { BrokerCore } from "./core.ts";
import { SOURCE_SHARE } from "./shares.ts";
import { MemoryGuard } from "./memory.ts";
import { WireFront } from "./front.ts";
import { giveBacksOf } from "./give_back.ts";
import { DurableBroker } from "./durable.ts";
import { FSYNC_OPTION, STORE_OPTIONS, storeOptions } from "../../store/mod.ts";
import type { MqttFront } from "./mqtt/front.ts";
// Light (the store only): no MQTT packet code is loaded by it.
import { openSessionStore } from "./mqtt/persist.ts";
import { connSettings } from "../_flags.ts";
import { explainListenError } from "../_listen.ts";
import { shortSlicesWhileIdle } from "../_slice.ts";
import { DistError, memoMemory, setFlushAt, type TlsSettings } from "../../wire/mod.ts";

export { BrokerCore } from "./core.ts";
export {
  Message,
  PendingBudget,
  POLICIES,
  type Policy,
  type Sink,
  Subscription,
} from "./subscriber.ts";

const log = getLogger(["dist", "broker"]);
const MIB = 1024 * 1024;
/**
 * The part of --max-memory the publishers' memos of their last frames may
 * take, and at most this much (wire/publish_memo.ts: up to 16 KB for a
 * publisher of 200-byte frames, 32 KB at 1 KiB, as RSS grows): past it a
 * new publisher's frames are read in full each time (hostile37 K8).
 */
const MEMO_SHARE = 16, MEMO_BUDGET_MOST = 64 * MIB;

/** The broker's options. */
export const BROKER_OPTIONS = defineOptions({
  port: {
    type: "port",
    description: "Port to listen on (0 picks a free one)",
    default: 8000,
    short: "p",
  },
  ...LISTENER_OPTIONS,
  mqttPort: {
    type: "port",
    description:
      "Also speak MQTT 3.1.1 and 5 on this port, on the same topics (0 picks a free one)",
    metavar: "PORT",
  },
  mqttWsPort: {
    type: "port",
    description:
      "Also speak MQTT over WebSocket (subprotocol mqtt; wss with --tls-cert) on this port " +
      "(0 picks a free one)",
    metavar: "PORT",
  },
  mqttMaxKeepalive: {
    type: "integer",
    description:
      "Longest keep-alive an MQTT 5 client may have, in seconds; one asking for more or none " +
      "is told this in CONNACK (0: any)",
    default: 0,
    min: 0,
    max: 65_535,
    metavar: "SECONDS",
  },
  mqttUserSessions: {
    type: "integer",
    description:
      "Most persistent MQTT sessions one user of --users (or of a client certificate) may hold; " +
      "one more is refused at CONNECT (0: a tenth of --max-connections, at least 1)",
    default: 0,
    min: 0,
    metavar: "N",
  },
  mqttQueueQos0: {
    type: "boolean",
    description: "Queue QoS 0 messages for away persistent MQTT sessions too (as Mosquitto's " +
      "queue_qos0_messages); without it they are dropped, counted in away_qos0_dropped",
    default: false,
  },
  mqttSysInterval: {
    type: "duration",
    description: "How often MQTT's $SYS/broker/… statistics are published, when changed (0: never)",
    default: 10_000,
  },
  retainBytes: {
    type: "integer",
    description: "Byte budget of retained values; past it the least recently updated go",
    default: 64 * MIB,
    min: 0,
    metavar: "BYTES",
  },
  maxPending: {
    type: "integer",
    description:
      "Bytes a connection's subscriptions may have pending, together, before their policy applies",
    default: 8 * MIB,
    min: 1024,
    metavar: "BYTES",
  },
  maxTopics: {
    type: "integer",
    description: "Most topics kept; past it the least recently active are forgotten",
    default: 1_000_000,
    min: 1,
    metavar: "N",
  },
  maxTopicBytes: {
    type: "integer",
    description:
      "Byte budget of topic names and tree nodes; past it the least recently active are forgotten",
    default: 256 * MIB,
    min: MIB,
    metavar: "BYTES",
  },
  maxSubscriptions: {
    type: "integer",
    description: "Most subscriptions over all connections",
    default: 500_000,
    min: 1,
    metavar: "N",
  },
  maxSubscriptionsPerSource: {
    type: "integer",
    description:
      "Most subscriptions one user of --users (else one address; not loopback's) may hold, " +
      "MQTT ones included; they may take that part of --max-memory too " +
      "(0: an eighth of --max-subscriptions)",
    default: 0,
    min: 0,
    metavar: "N",
  },
  maxMemory: {
    type: "integer",
    description:
      "Memory budget of topics, retained values, subscriptions and pending deliveries together; " +
      "past it new subscriptions and topics are refused and the slowest subscribers cut off",
    default: 1024 * MIB,
    min: 16 * MIB,
    metavar: "BYTES",
  },
  ...STORE_OPTIONS,
  ...FSYNC_OPTION,
});
type BrokerOptions = RoleOptions<typeof BROKER_OPTIONS>;

export const broker = defineRole({
  summary: "Publish/subscribe over hierarchical topics with retained values and queue groups",
  usage: [
    "dist broker [--port 8000] [--mqtt-port 1883] [--mqtt-ws-port 8083] [--retain-bytes BYTES]",
    "            [--max-pending BYTES]",
    "            [--max-topics N] [--max-topic-bytes BYTES] [--max-subscriptions N]",
    "            [--max-subscriptions-per-source N] [--max-memory BYTES]",
    "            [--data-dir DIR [--fsync always|batch|off]]",
    "",
    "Methods:",
    "  broker.publish {topic, value, retain?}       a request is confirmed once routed",
    "                                               (and stored, with --data-dir);",
    "                                               a notification is fire-and-forget",
    "  broker.subscribe {topic, group?, policy?}    -> {sid, topics}; then broker.message",
    "                                               {sid, topic, value, retained} notifications",
    "  broker.unsubscribe {sid}, broker.topics {prefix?, limit?, after?}, sys.ping, sys.stats",
    "",
    "Topics are /-separated; a subscription covers its subtree, + matches one segment.",
    "Policies of a slow subscriber: disconnect (default), drop-oldest, latest.",
    "With --mqtt-port, MQTT clients share the topics: MQTT a/b is /a/b, a/# is /a.",
  ],
  options: BROKER_OPTIONS,
  run: runBroker,
});

/**
 * Output queued in a turn that starts going out before the turn ends (see
 * wire/outbound.ts setFlushAt; other processes start at 1,500 bytes). A
 * turn's deliveries to a subscriber are a batch, not answers someone waits
 * on one by one: split at 1,500 bytes, every read of more than eight
 * publishes became two writes to each subscriber, and two reads and wakeups
 * there (3,193 writes for 2,181 reads at 10,000 msgs/s, against nats-server's
 * 1,557 writes), each costing several µs in the kernel on both sides.
 */
const FANOUT_FLUSH_AT = 64 * 1024;

/**
 * The broker on the shell: the broker contract goes through the shell's
 * dispatch (front.serving()); the byte-level publish path (front.rawFrames)
 * goes to the listener beside it, as it is.
 */
async function runBroker(options: BrokerOptions, ctx: RunContext): Promise<number> {
  // A turn's deliveries go to each subscriber in one write (see FANOUT_FLUSH_AT).
  setFlushAt(FANOUT_FLUSH_AT);
  // Each wake-up for a publisher's batch runs sooner on a loaded machine (see _slice.ts).
  const stopSlices = shortSlicesWhileIdle();
  const core = new BrokerCore({
    retainBytes: options.retainBytes,
    maxPending: options.maxPending,
    maxTopics: options.maxTopics,
    maxTopicBytes: options.maxTopicBytes,
    maxSubscriptions: options.maxSubscriptions,
    maxSubscriptionsPerSource: options.maxSubscriptionsPerSource > 0
      ? options.maxSubscriptionsPerSource
      : Math.max(1, Math.ceil(options.maxSubscriptions * SOURCE_SHARE)),
    maxMemory: options.maxMemory,
  });
  if (ctx.metrics) core.delivery = deliveryLatency(ctx.metrics.registry);
  // The publishers' memos of their last frames: counted in max-memory, and at most this part of it.
  memoMemory.budget = Math.min(MEMO_BUDGET_MOST, options.maxMemory / MEMO_SHARE);
  const front = new WireFront(core);
  const mqtt = await mqttFront(options, core);
  // A consumer that reads nothing for the write timeout is gone anyway; until then,
  // what was queued for it and the error saying why are still worth sending.
  front.cutOffFlushMs = options.writeTimeout;
  const memory = new MemoryGuard(core);
  // Sessions kept for absent MQTT clients: held to their share of max-memory.
  if (mqtt !== undefined) memory.away = mqtt.sessions.away;
  const stopWatching = memory.watch();
  return listening(ctx, {
    role: "broker",
    log,
    options,
    // The subscriber policies act at max-pending; the wire's own cut-off is a backstop.
    listen: { maxOutbound: 2 * options.maxPending + 2 * options.maxFrame },
    setUp: (bound) => {
      // Read back before the port accepts: the first subscriber sees every retained value.
      const stored = readBack(options, core, front, mqtt);
      // Before `Listening on`, which tools wait for: the MQTT ports are known by then.
      if (mqtt !== undefined) bindMqttPorts(mqtt, options);
      return {
        serve: front.serving(),
        stats: () => ({
          ...front.stats(),
          memory: memory.stats(),
          fanout_waiting: core.fanOut.waiting,
          fanout_held_back: core.fanOut.heldBackCount,
          match_waiting: core.matches.waiting,
          match_deferred: core.matches.deferred,
          ...(stored.durable === undefined ? {} : { store: stored.durable.stats() }),
          ...(mqtt === undefined ? {} : { mqtt: mqtt.stats() }),
        }),
        // Bound already: clients that connect before this wait in the backlog.
        started: () => mqtt?.start(),
        fast: { rawFrames: front.rawFrames },
        onPeer: front.onPeer,
        inFlight: () => stillToSend(core),
        stopping: () => {
          log.info("Shutting down: flushing {n} connection(s)", {
            n: bound.peers.size + (mqtt?.connections ?? 0),
          });
          mqtt?.close();
          giveBacksOf(core).close(); // what is not given back yet: counted undeliverable
        },
        stopped: () => {
          stopWatching();
          stopSlices();
          stored.close();
          log.info("Stopped after {n} in, {out} out", {
            n: counted(core.messagesIn, "message"),
            out: core.messagesOut,
          });
        },
      };
    },
  });
}

/** What a stopping broker still has to send, if anything. */
function stillToSend(core: BrokerCore): string | undefined {
  const queued = core.queuedBytes, waiting = core.fanOut.waiting;
  if (waiting > 0) return `${waiting} deliveries of a large fan-out still to make`;
  return queued > 0 ? `${queued} bytes queued for slow subscribers` : undefined;
}

/** The MQTT front end on the core, with --mqtt-port or --mqtt-ws-port (else none). */
async function mqttFront(
  options: BrokerOptions,
  core: BrokerCore,
): Promise<MqttFront | undefined> {
  if (options.mqttPort === undefined && options.mqttWsPort === undefined) return undefined;
  // Loaded only with an MQTT port: mqtt-packet (npm, CommonJS on node:buffer)
  // costs every dist process about a third more CPU per message when loaded
  // (broker 1→1: 0.68 → 1.05 µs per message at bcac331; every role imports
  // this module through roles/mod.ts).
  const { MqttFront } = await import("./mqtt/front.ts");
  return new MqttFront(core, {
    maxPacket: options.maxFrame,
    maxOutbound: 2 * options.maxPending + 2 * options.maxFrame,
    maxConnections: options.maxConnections,
    maxConnectionsPerSource: options.maxConnectionsPerSource,
    maxSessions: options.maxConnections,
    maxUserSessions: options.mqttUserSessions > 0
      ? options.mqttUserSessions
      : Math.max(1, Math.floor(options.maxConnections / 10)),
    connectTimeoutMs: 10_000,
    writeTimeoutMs: options.writeTimeout,
    sysIntervalMs: options.mqttSysInterval,
    queueQos0: options.mqttQueueQos0,
    maxKeepAliveS: options.mqttMaxKeepalive,
  }, connSettings(options).authenticator);
}

/**
 * With --data-dir, the retained values and the MQTT sessions read back
 * from it (and kept there from now on); `close` closes both stores.
 */
function readBack(
  options: BrokerOptions,
  core: BrokerCore,
  front: WireFront,
  mqtt: MqttFront | undefined,
): { durable: DurableBroker | undefined; close: () => void } {
  if (options.dataDir === undefined) return { durable: undefined, close: () => {} };
  const durable = new DurableBroker(core, options.dataDir, {
    ...storeOptions(options, log),
    onLoaded: (n, ms) => {
      log.info("Read {n} retained value(s) back from {path} in {s} s", {
        n,
        path: durable.stats().path,
        s: (ms / 1000).toFixed(2),
      });
    },
  });
  front.committed = () => durable.committed();
  if (mqtt !== undefined) mqtt.committed = front.committed;
  const { restored, path } = durable.stats();
  if (durable.loading) {
    // A large file: the port opens now, and what it holds is read back behind it (durable.ts).
    log.info("Read {n} retained value(s) back from {path} so far; reading the rest while serving", {
      n: restored,
      path,
    });
  } else log.info("Read {n} retained value(s) back from {path}", { n: restored, path });
  if (mqtt === undefined) return { durable, close: () => durable.close() };
  // A file of its own in the directory the retained values locked.
  const sessions = openSessionStore(options.dataDir, storeOptions(options, log));
  const { restored: n, unreadable, messages } = mqtt.persist(sessions);
  log.info("Read {n} MQTT session(s) back with {m} message(s) for them{bad}", {
    n,
    m: messages,
    bad: unreadable > 0 ? ` (${unreadable} unreadable, dropped)` : "",
  });
  return {
    durable,
    close: () => {
      sessions.close();
      durable.close();
    },
  };
}

/** Binds the MQTT ports asked for (TCP, WebSocket) and says where they are. */
function bindMqttPorts(mqtt: MqttFront, options: BrokerOptions): void {
  const { tls } = connSettings(options);
  if (options.mqttPort !== undefined) {
    const { hostname, port } = bindMqtt(mqtt, options.host, options.mqttPort, tls);
    log.info("MQTT on {host}:{port}", { host: hostname, port });
  }
  if (options.mqttWsPort !== undefined) {
    const { hostname, port } = bindMqttWs(mqtt, options.host, options.mqttWsPort, tls);
    log.info("MQTT over WebSocket on {host}:{port}", { host: hostname, port });
  }
}

/** Binds the MQTT WebSocket port (wss with the native port's certificate). */
function bindMqttWs(
  mqtt: MqttFront,
  host: string,
  port: number,
  tls: TlsSettings | undefined,
): Deno.NetAddr {
  if (tls?.clientCa !== undefined) {
    // Browsers seldom hold a client certificate: the port is refused rather than made useless.
    throw new UsageError("--mqtt-ws-port cannot require client certificates (--tls-client-ca)");
  }
  try {
    return mqtt.bindWebSocket(host, port, tls);
  } catch (err) {
    throw explainListenError(
      new DistError("UNAVAILABLE", `Cannot listen on ${host}:${port}: ${err}`, { cause: err }),
      "--mqtt-ws-port",
      host,
      port,
    );
  }
}

/** Binds the MQTT port (TLS with the native port's files, when it has them); a busy one said in the flag's words. */
function bindMqtt(
  mqtt: MqttFront,
  host: string,
  port: number,
  tls: TlsSettings | undefined,
): Deno.NetAddr {
  try {
    return mqtt.bind(host, port, tls);
  } catch (err) {
    throw explainListenError(
      new DistError("UNAVAILABLE", `Cannot listen on ${host}:${port}: ${err}`, { cause: err }),
      "--mqtt-port",
      host,
      port,
    );
  }
}
