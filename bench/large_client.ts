/**
 * A polite client with large requests, in its own process: one connection
 * that keeps K `echo` requests of SIZE characters outstanding and reads
 * every answer (hostile32 X2: within its share by count, but each request
 * holds a backend's connection for a while). Used by
 * tests/balancer_hostile_bytes_test.ts.
 *
 *   deno run -A bench/large_client.ts HOST:PORT K SIZE
 *
 * Prints "ready" once connected; when stdin closes, prints "answered N"
 * (echoes that came back whole) and exits.
 */
import { dial } from "../wire/mod.ts";

const [address, kText, sizeText] = Deno.args;
const [host, port] = address.split(":");
const k = Number(kText);
const text = "B".repeat(Number(sizeText));
const peer = await dial({ host, port: Number(port) }, { role: "client", name: "large" });
let answered = 0;
let stopping = false;
async function loop(): Promise<void> {
  while (!stopping) {
    try {
      const got = await peer.call("echo", { text }, { timeout: 30_000 });
      if (typeof got === "string" && got.length === text.length) answered++;
    } catch {
      if (stopping || !peer.canCall) return;
    }
  }
}
const loops = Array.from({ length: k }, loop);
console.log("ready");
for await (const _ of Deno.stdin.readable) { /* until stdin closes */ }
stopping = true;
await Promise.race([Promise.all(loops), new Promise((r) => setTimeout(r, 2000))]);
console.log(`answered ${answered}`);
peer.close();
Deno.exit(0);
