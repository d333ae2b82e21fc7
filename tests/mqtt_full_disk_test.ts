/**
 * A broker whose data directory fills up goes on serving, and starts again
 * on the full directory (hostile review 40a T10: a QoS 0 publish to an away
 * persistent session left the failed commit's promise unhandled and the
 * process exited, 3 of 3 runs; restarted, it refused to open `broker.db`,
 * exit 2). The directory is a 4 MiB tmpfs mounted here: the test is
 * skipped where mounting is not allowed (not root).
 */
import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import { durableBroker as broker } from "./helpers/mqtt_durable.ts";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import type { DistProcess } from "./helpers/dist.ts";
import { fill, run, smallDisk } from "./helpers/small_disk.ts";

const disk = Deno.build.os === "linux" ? smallDisk("dist-full-") : undefined;

/** A QoS 0 PUBLISH `live/t` from a clean session reaches a clean subscriber (the broker serves). */
async function serves(port: number): Promise<void> {
  const sub = await RawMqtt.connect(port, { clientId: "live-sub" });
  await sub.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "live/t", qos: 0 }] });
  await sub.next("suback");
  const pub = await RawMqtt.connect(port, { clientId: "live-pub" });
  await pub.send({ cmd: "publish", topic: "live/t", payload: "still here", qos: 0 } as never);
  const got = await sub.next("publish") as mqttPacket.IPublishPacket;
  assert.equal(String(got.payload), "still here");
  await pub.end();
  await sub.end();
}

function alive(b: DistProcess): Promise<boolean> {
  return Promise.race([
    b.child.status.then(() => false),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 500)),
  ]);
}

Deno.test({
  name: "mqtt full disk: the broker survives a failed commit, and restarts on the full directory",
  ignore: disk === undefined,
  ...opts,
}, async () => {
  const dir = `${disk}/data`;
  let b: DistProcess | undefined;
  try {
    const first = await broker(dir, "batch", "--mqtt-queue-qos0");
    b = first.b;
    // An away persistent session on `#`: every publish writes it a row.
    const away = await RawMqtt.connect(first.port, { clientId: "away", clean: false });
    await away.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "#", qos: 1 }] });
    await away.next("suback");
    await away.send({ cmd: "disconnect" });
    await away.end();
    // 8 MiB of QoS 0 publishes: twice what the disk holds.
    const filler = await RawMqtt.connect(first.port, { clientId: "filler" });
    const one = mqttPacket.generate({
      cmd: "publish",
      topic: "junk/x",
      payload: Buffer.alloc(1024, 106),
      qos: 0,
    } as mqttPacket.Packet);
    const batch = new Uint8Array(one.length * 64);
    for (let i = 0; i < 64; i++) batch.set(one, i * one.length);
    for (let i = 0; i < 128 && !filler.closed; i++) await filler.write(batch);
    await filler.end();
    const full = () => b!.stderr().includes("database or disk is full");
    for (let i = 0; i < 50 && !full(); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(full(), `the disk was filled: ${b.stderr()}`);
    assert.ok(await alive(b), `the broker runs on: ${b.stderr()}`);
    await serves(first.port);
    assert.doesNotMatch(b.stderr(), /Uncaught/);
    // Killed on the full directory: it starts again, and serves what needs no disk.
    b.child.kill("SIGKILL");
    await b.stop();
    const again = await broker(dir, "batch", "--mqtt-queue-qos0");
    b = again.b;
    await serves(again.port);
    assert.ok(await alive(b), b.stderr());
  } finally {
    await b?.stop();
    run("umount", "-l", disk!);
    Deno.removeSync(disk!, { recursive: true });
  }
});

/**
 * Runs `body` against a broker (`--fsync batch`) on a 4 MiB tmpfs of its own,
 * with an away persistent session `clientId` subscribed to `filter`;
 * unmounted afterwards.
 */
async function onSmallDisk(
  clientId: string,
  filter: string,
  qos: 1 | 2,
  body: (port: number, own: string, b: DistProcess) => Promise<void>,
): Promise<void> {
  const own = smallDisk("dist-full-")!;
  let b: DistProcess | undefined;
  try {
    const first = await broker(`${own}/data`, "batch");
    b = first.b;
    const away = await RawMqtt.connect(first.port, { clientId, clean: false });
    await away.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: filter, qos }] });
    await away.next("suback");
    await away.send({ cmd: "disconnect" });
    await away.end();
    await body(first.port, own, b);
  } finally {
    await b?.stop();
    run("umount", "-l", own);
    Deno.removeSync(own, { recursive: true });
  }
}

Deno.test({
  name:
    "mqtt full disk: a QoS 2 PUBLISH whose commit failed is not acknowledged when sent again (hostile review 41b X2)",
  ignore: disk === undefined,
  ...opts,
}, async () => {
  // An away persistent session on `z/#`: a publish to z/x writes it a row.
  await onSmallDisk("q1", "z/#", 2, async (port, own, b) => {
    await fill(own);
    const publish = (dup: boolean) =>
      ({
        cmd: "publish",
        topic: "z/x",
        payload: Buffer.alloc(300_000, 120),
        qos: 2,
        messageId: 7,
        dup,
      }) as mqttPacket.Packet;
    // The commit fails: closed, no PUBREC (the client is to send it again).
    const pub = await RawMqtt.connect(port, { clientId: "pp", clean: false });
    await pub.send(publish(false));
    await pub.closedWithin(10_000);
    assert.ok(!pub.packets.some((p) => p.cmd === "pubrec"), "no PUBREC for what was not kept");
    await pub.end();
    // Sent again on a new connection, as MQTT says: not kept either, so no PUBREC.
    const again = await RawMqtt.connect(port, { clientId: "pp", clean: false });
    await again.send(publish(true));
    await again.closedWithin(10_000);
    assert.deepEqual(
      again.packets.map((p) => p.cmd).filter((cmd) => cmd === "pubrec"),
      [],
      `the resend was acknowledged though nothing was kept: ${b.stderr()}`,
    );
    await again.end();
  });
});

Deno.test({
  name:
    "mqtt full disk: a Clean Start is refused (server unavailable) while its discard cannot be written (hostile review 41b X6)",
  ignore: disk === undefined,
  ...opts,
}, async () => {
  // An away persistent session with messages queued.
  await onSmallDisk("cs", "q/#", 1, async (port, own, b) => {
    const pub = await RawMqtt.connect(port, { clientId: "p" });
    for (let id = 1; id <= 5; id++) {
      await pub.send(
        { cmd: "publish", topic: "q/x", payload: `m${id}`, qos: 1, messageId: id } as never,
      );
      await pub.next("puback");
    }
    await fill(own);
    // A publish whose rows cannot be written: the store's commits fail from now on.
    await pub.send({
      cmd: "publish",
      topic: "q/x",
      payload: Buffer.alloc(300_000, 120),
      qos: 1,
      messageId: 9,
    } as never);
    await pub.closedWithin(10_000);
    await pub.end();
    // Clean Start: its old session's discard would not be on disk, so no CONNACK 0.
    const again = await RawMqtt.open(port);
    await again.send({
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: 4,
      clientId: "cs",
      clean: true,
      keepalive: 0,
    } as mqttPacket.Packet);
    const ack = await again.next("connack") as mqttPacket.IConnackPacket;
    assert.equal(ack.returnCode, 3, `refused, server unavailable: ${b.stderr()}`);
    await again.end();
  });
});
