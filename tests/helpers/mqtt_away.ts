/**
 * Helpers for tests of MQTT sessions kept while their clients are away:
 * numbered QoS 1 publishes, each PUBACKed, and a client coming back to see
 * which of them its session kept.
 */
import { atLeast, connectWithAck, mqttClient } from "./mqtt.ts";

/** `n` QoS 1 publishes of `size` bytes to `topic`, each PUBACKed; payloads start with their number. */
export async function publishAll(
  port: number,
  topic: string,
  n: number,
  size: number,
): Promise<void> {
  const pub = await mqttClient(port, { clientId: `pub-${topic}` });
  const body = "x".repeat(size);
  for (let i = 0; i < n; i += 20) {
    const sent: Promise<unknown>[] = [];
    for (let j = i; j < Math.min(n, i + 20); j++) {
      sent.push(pub.publishAsync(topic, `${String(j).padStart(6, "0")} ${body}`, { qos: 1 }));
    }
    await Promise.all(sent);
  }
  await pub.endAsync();
}

/**
 * `id` comes back (3.1.1, clean session 0) until `want` arrive or `ms` pass:
 * Session Present, and the numbers of what it received.
 */
export async function comeBack(
  port: number,
  id: string,
  want: number,
  ms: number,
): Promise<{ present: boolean; numbers: number[] }> {
  const { c, ack, got } = await connectWithAck(port, {
    clientId: id,
    clean: false,
    protocolVersion: 4,
  });
  await atLeast(got, want, ms).catch(() => {});
  await c.endAsync();
  const numbers = got.map((m) => Number(new TextDecoder().decode(m.payload.subarray(0, 6))));
  return { present: ack.sessionPresent, numbers };
}
