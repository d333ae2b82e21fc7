/**
 * hostile h48 P6: `dist producer --value V` parses V as JSON "when it is
 * JSON", and a JSON number is read as a double: an order number or an id
 * past 2^53, `--value 12345678901234567890`, is published as
 * 12345678901234567000, and the producer itself prints
 * `/big 12345678901234567000` as if that were what it was given. No
 * error, no warning: a different value reaches every subscriber (and is
 * retained). `nats pub` and `mosquitto_pub -m` send the bytes given. Either
 * answer is right: the digits arrive as given (as text, or a number that
 * keeps them), or the producer refuses the value with a `dist:` line
 * saying how to send it as text.
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";
import { startBroker } from "./helpers/broker.ts";

const DIGITS = "12345678901234567890";

Deno.test("producer --value past 2^53 is published as given, or refused (h48 P6)", async () => {
  const broker = await startBroker();
  try {
    const sent = await runDist([
      "producer",
      "-b",
      broker.address,
      "--topic",
      "/big",
      "--value",
      DIGITS,
    ]);
    if (sent.code !== 0) {
      assert.match(sent.stderr, /^dist: .*--value/m, "refused without saying why");
      return;
    }
    const got = await runDist(
      ["consumer", "-b", broker.address, "--topic", "/big", "--count", "1", "--json"],
      { timeoutMs: 15_000 },
    );
    assert.equal(got.code, 0, got.stderr);
    assert.ok(
      got.stdout.includes(DIGITS),
      `published ${DIGITS}, the subscriber got: ${got.stdout.trim()} (the producer said: ${sent.stdout.trim()})`,
    );
  } finally {
    await broker.stop();
  }
});
