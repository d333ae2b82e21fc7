/**
 * `dist broker --mqtt-port` with the reference command-line clients
 * (Debian mosquitto-clients, installed by .ci/run) and dist's own roles:
 * `dist producer` → `mosquitto_sub`, `mosquitto_pub` → `dist consumer`,
 * retained values, QoS 1 in order, and MQTT 5.
 */
import assert from "node:assert/strict";
import { HAVE_MOSQUITTO, mosquitto } from "./helpers/mqtt.ts";
import { lines, runDist, startDist } from "./helpers/dist.ts";
import { BrokerClient, statsUntil, streamDist } from "./helpers/broker.ts";

if (!HAVE_MOSQUITTO) {
  console.warn(
    "mqtt_clients_test: skipped, mosquitto_sub is not installed (apt mosquitto-clients)",
  );
}

/** A broker process with an MQTT port, a native client on it, and both ports. */
async function withBrokerProcess(
  body: (mqttPort: number, port: number, native: BrokerClient) => Promise<void>,
): Promise<void> {
  const broker = await startDist(["broker", "--port", "0", "--mqtt-port", "0"]);
  const native = await BrokerClient.connect(broker.port, "json", "watch");
  try {
    const stats = await native.stats();
    const mqttPort = (stats.mqtt as { port: number }).port;
    assert.match(broker.stderr(), new RegExp(`MQTT on 127\\.0\\.0\\.1:${mqttPort}`));
    await body(mqttPort, broker.port, native);
  } finally {
    native.close();
    const { code } = await broker.stop();
    assert.equal(code, 0);
  }
}

/** Waits until the broker holds `n` subscriptions (a background subscriber is in). */
function subscribed(native: BrokerClient, n: number) {
  return statsUntil(native, (s) => (s.subscriptions as number) >= n, 10_000);
}

Deno.test({
  name: "mqtt clients: dist producer reaches mosquitto_sub; mosquitto_pub reaches dist consumer",
  ignore: !HAVE_MOSQUITTO,
  fn: () =>
    withBrokerProcess(async (mqttPort, port, native) => {
      const sub = mosquitto("mosquitto_sub", [
        ...["-p", String(mqttPort), "-t", "lab/#", "-v", "-C", "3"],
      ]);
      await subscribed(native, 1);
      for (
        const [topic, value] of [["/lab/a", '{"k": "v"}'], ["/lab/b", "hi"], ["/lab/c", "3.5"]]
      ) {
        const r = await runDist([
          "producer",
          ...["--broker", `127.0.0.1:${port}`, "--topic", topic, "--value", value],
        ]);
        assert.equal(r.code, 0, r.stderr);
      }
      const got = await sub;
      assert.equal(got.code, 0, got.stderr);
      assert.deepEqual(lines(got.stdout), ['lab/a {"k":"v"}', "lab/b hi", "lab/c 3.5"]);

      const consumer = streamDist([
        "consumer",
        ...["--broker", `127.0.0.1:${port}`, "--topic", "/back", "--count", "3"],
      ]);
      await subscribed(native, 1);
      await consumer.until("stderr", /Subscribed to \/back/);
      const pub = (t: string, m: string) =>
        mosquitto("mosquitto_pub", ["-p", String(mqttPort), "-t", t, "-m", m, "-q", "1"]);
      assert.equal((await pub("back/json", '{"a":[1,2]}')).code, 0);
      assert.equal((await pub("back/text", "plain text")).code, 0);
      assert.equal((await pub("back/num", "42")).code, 0);
      assert.equal(await consumer.exited(10_000), 0, consumer.stderr());
      assert.deepEqual(lines(consumer.stdout()), [
        '/back/json {"a":[1,2]}',
        "/back/text plain text",
        "/back/num 42",
      ]);
    }),
});

Deno.test({
  name: "mqtt clients: retained values, their clearing, and QoS 1 in order (3.1.1 and 5)",
  ignore: !HAVE_MOSQUITTO,
  fn: () =>
    withBrokerProcess(async (mqttPort, _port, native) => {
      const p = ["-p", String(mqttPort)];
      assert.equal(
        (await mosquitto("mosquitto_pub", [...p, "-t", "k/1", "-m", "one", "-r"])).code,
        0,
      );
      assert.equal(
        (await mosquitto("mosquitto_pub", [...p, "-t", "k/2", "-m", "two", "-r"])).code,
        0,
      );
      assert.equal((await mosquitto("mosquitto_pub", [...p, "-t", "k/2", "-n", "-r"])).code, 0);
      for (const v of ["mqttv311", "mqttv5"]) {
        const r = await mosquitto("mosquitto_sub", [...p, "-V", v, "-t", "k/+", "-v", "-W", "1"]);
        assert.deepEqual(lines(r.stdout), ["k/1 one"], `${v}: ${r.stderr}`);
      }
      // 200 lines, one PUBLISH each at QoS 1, to a QoS 1 subscriber of each version.
      const n = 200;
      const text = [...Array(n).keys()].map((i) => `line ${i}`).join("\n") + "\n";
      const subs = ["mqttv311", "mqttv5"].map((v) =>
        mosquitto("mosquitto_sub", [...p, "-V", v, "-t", "q/lines", "-q", "1", "-C", String(n)])
      );
      await subscribed(native, 2);
      const pub = await mosquitto("mosquitto_pub", [...p, "-t", "q/lines", "-q", "1", "-l"], text);
      assert.equal(pub.code, 0, pub.stderr);
      for (const sub of await Promise.all(subs)) {
        assert.equal(sub.code, 0, sub.stderr);
        assert.deepEqual(lines(sub.stdout), lines(text));
      }
    }),
});
