import { dial, jsonCodec, listen, msgpackCodec } from "../wire/mod.ts";
const mode = Deno.args[0];
if (mode === "server") {
  const l = listen({
    port: 0,
    role: "server",
    name: "s",
    by: "s",
    onRequest: (_m, p: unknown) => (p as { text: string }).text,
  });
  console.log(l.addr.port);
  await l.done;
} else {
  const port = Number(Deno.args[1]);
  const conc = Number(Deno.args[2] ?? 64);
  const codec = Deno.args[3] === "msgpack" ? msgpackCodec : jsonCodec;
  const peer = await dial({ host: "127.0.0.1", port }, { role: "client", name: "c", codec });
  const text = "x".repeat(64);
  for (const [n, label] of [[50000, "warm"], [600000, "run"]] as const) {
    let left = n;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: conc }, async () => {
      while (left-- > 0) await peer.call("echo", { text });
    }));
    const dt = performance.now() - t0;
    console.log(
      label,
      conc,
      Math.round(n / dt * 1000),
      "req/s",
      (dt * 1000 / n).toFixed(2),
      "us/req",
    );
  }
  peer.close();
}
