/**
 * wire/poll_turn.ts: the read loop's yield ends once the runtime has polled
 * its sockets (input waiting on another socket is taken up), and a process
 * that may not open a loopback listener still gets its turns (by timer).
 */
import assert from "node:assert/strict";
import { pollTurn } from "../wire/poll_turn.ts";

async function socketPair(): Promise<[Deno.Conn, Deno.Conn]> {
  const listener = Deno.listen({ port: 0, hostname: "127.0.0.1" });
  const dial = Deno.connect({ port: (listener.addr as Deno.NetAddr).port, hostname: "127.0.0.1" });
  const accepted = await listener.accept();
  listener.close();
  return [await dial, accepted];
}

Deno.test({
  name: "a poll turn completes a read whose bytes arrived meanwhile on another socket",
  // The turn's own socket pair is made once and kept for the process.
  sanitizeResources: false,
  fn: async () => {
    const [a, b] = await socketPair();
    try {
      for (let i = 0; i < 20; i++) {
        const buf = new Uint8Array(16);
        let read = -1;
        const pending = b.read(buf).then((n) => read = n ?? 0);
        await a.write(Uint8Array.of(i));
        // Only microtasks since: nothing has polled the sockets yet (the read is still pending).
        await Promise.resolve();
        await pollTurn();
        for (let k = 0; k < 5 && read < 0; k++) await Promise.resolve();
        assert.equal(read, 1, `turn ${i}: the waiting read was taken up`);
        assert.equal(buf[0], i);
        await pending;
      }
      // Turns asked for at once share one.
      await Promise.all([pollTurn(), pollTurn(), pollTurn()]);
    } finally {
      a.close();
      b.close();
    }
  },
});

Deno.test("without permission to listen, a poll turn is a timer's (no prompt, no error)", async () => {
  const code = `import { pollTurn } from ${
    JSON.stringify(new URL("../wire/poll_turn.ts", import.meta.url).href)
  };
for (let i = 0; i < 3; i++) await pollTurn();
console.log("turned");`;
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  await Deno.writeTextFile(script, code);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", "--allow-read", script],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  await Deno.remove(script);
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.ok(out.success, text);
  assert.equal(text.trim(), "turned");
});
