/**
 * An app for tests/clients_held_bytes_test.ts, run with `--v8-flags=--expose-gc`
 * so that what it holds is measured without garbage: `ADDRESS CODEC BUFFER_BYTES`.
 * Subscribes to /amp without consuming and prints `ready BYTES`; on each line
 * `measure` from stdin prints `held BYTES WAITING WAITING_BYTES`; on `consume N`
 * takes N messages and prints `got FIRST LENGTH` for each, then exits.
 */
import { connect } from "../../clients/mod.ts";

const [address, codec, bufferBytes] = Deno.args;
const gc = (globalThis as { gc?: () => void }).gc!;
const held = async () => {
  // Twice, a turn apart: array buffers are freed after the collection.
  gc();
  await new Promise((r) => setTimeout(r, 100));
  gc();
  const m = Deno.memoryUsage();
  return m.heapUsed + m.external;
};
const conn = await connect(address, { codec: codec as "json" | "msgpack" });
const sub = await conn.subscribe("/amp", { bufferBytes: Number(bufferBytes) });
console.log(`ready ${await held()}`);
const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
let text = "";
for await (const chunk of lines) {
  text += chunk;
  let i;
  while ((i = text.indexOf("\n")) >= 0) {
    const [word, n] = text.slice(0, i).split(" ");
    text = text.slice(i + 1);
    if (word === "measure") console.log(`held ${await held()} ${sub.waiting} ${sub.waitingBytes}`);
    if (word !== "consume") continue;
    let left = Number(n);
    for await (const m of sub) {
      const v = m.value as unknown[];
      console.log(`got ${v[0]} ${v.length}`);
      if (--left === 0) break;
    }
    conn.close();
    Deno.exit(0);
  }
}
