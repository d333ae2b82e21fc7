/**
 * @module
 * `dist broker`: publish/subscribe over hierarchical topics, retained last
 * values, topic listing and queue groups.
 *
 * The core has no sockets, so a second front end (MQTT) can reuse it:
 * `topics.ts` is the tree of existing topics, `subscriptions.ts` the tree
 * of subscription patterns and queue groups, `retained.ts` the retained
 * values within their byte budget, `subscriber.ts` a subscriber's pending
 * buffer and policy, and `core.ts` ties them into publish and subscribe.
 * The dist wire protocol is `front.ts` (requests, sessions) and `frames.ts`
 * (deliveries encoded once per codec). This file holds the option spec and
 * wires the parts to a listener.
 */
import { getLogger } from "@logtape/logtape";
import { LISTENER_OPTIONS, type Options } from "../../config/mod.ts";
import { announceListening, counted, type Role, type RunContext, untilAborted } from "../_role.ts";
import { setLogInstance } from "../_logging.ts";
import { connSettings } from "../_flags.ts";
import { BrokerCore } from "./core.ts";
import { WireFront } from "./front.ts";

export { BrokerCore } from "./core.ts";
export {
  Message,
  PendingBudget,
  POLICIES,
  type Policy,
  type Sink,
  Subscription,
} from "./subscriber.ts";
import { listenOn } from "../_listen.ts";

const log = getLogger(["dist", "broker"]);
const MIB = 1024 * 1024;

export const broker: Role = {
  summary: "Publish/subscribe over hierarchical topics with retained values and queue groups",
  usage: [
    "dist broker [--port 8000] [--retain-bytes BYTES] [--max-pending BYTES] [--max-topics N]",
    "            [--max-topic-bytes BYTES]",
    "",
    "Methods:",
    "  broker.publish {topic, value, retain?}       a request is confirmed once routed;",
    "                                               a notification is fire-and-forget",
    "  broker.subscribe {topic, group?, policy?}    -> {sid, topics}; then broker.message",
    "                                               {sid, topic, value, retained} notifications",
    "  broker.unsubscribe {sid}, broker.topics {prefix?, limit?}, sys.ping, sys.stats",
    "",
    "Topics are /-separated; a subscription covers its subtree, + matches one segment.",
    "Policies of a slow subscriber: disconnect (default), drop-oldest, latest.",
  ],
  options: {
    port: {
      type: "port",
      description: "Port to listen on (0 picks a free one)",
      default: 8000,
      short: "p",
    },
    ...LISTENER_OPTIONS,
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
      default: 512 * MIB,
      min: MIB,
      metavar: "BYTES",
    },
  },
  run: runBroker,
};

async function runBroker(options: Options, ctx: RunContext): Promise<number> {
  const started = performance.now();
  const maxPending = options.maxPending as number;
  const maxFrame = options.maxFrame as number;
  let name = options.name as string | undefined;
  const core = new BrokerCore({
    retainBytes: options.retainBytes as number,
    maxPending,
    maxTopics: options.maxTopics as number,
    maxTopicBytes: options.maxTopicBytes as number,
  });
  const front = new WireFront(core, () => ({
    role: "broker",
    name,
    uptime_ms: Math.round(performance.now() - started),
    rss_bytes: Deno.memoryUsage().rss,
  }));
  // A consumer that reads nothing for the write timeout is gone anyway; until then,
  // what was queued for it and the error saying why are still worth sending.
  front.cutOffFlushMs = options.writeTimeout as number;
  const listener = listenOn("--port", {
    host: options.host as string,
    port: options.port as number,
    role: "broker",
    name: "broker",
    maxConnections: options.maxConnections as number,
    ...connSettings(options),
    // The subscriber policies act at max-pending; the wire's own cut-off is a backstop.
    maxOutbound: 2 * maxPending + 2 * maxFrame,
    onRequest: front.onRequest,
    onNotification: front.onNotification,
    rawFrames: front.rawFrames,
    onPeer: front.onPeer,
  });
  name ??= `broker-${listener.addr.port}`;
  setLogInstance(name);
  listener.name = listener.by = name;
  announceListening(ctx, log, { addr: listener.addr, name });
  ctx.onForcedExit?.(() => {
    const queued = core.queuedBytes;
    return queued > 0 ? `${queued} bytes queued for slow subscribers` : undefined;
  });
  await untilAborted(ctx.signal);
  log.info("Shutting down: flushing {n} connection(s)", { n: listener.peers.size });
  await listener.close(options.grace as number);
  log.info("Stopped after {n} in, {out} out", {
    n: counted(core.messagesIn, "message"),
    out: core.messagesOut,
  });
  return 0;
}
