/**
 * The balancer with what users send: `echo` requests of three shapes, each
 * at 64 in flight over 4 raw connections, straight to a server and through
 * a balancer over 3 servers (alternating which goes first), with the
 * balancer's CPU per request:
 * - `ascii`: the client library's layout, `{"id":…,"method":…,"params":{"text":64 × "x"}}`;
 * - `object`: members in another order (params first, id last), a nested
 *   object with unicode, escapes, numbers, booleans and null beside the text;
 * - `spaced`: hand-written JSON, spaces and newlines between members,
 *   `\u` escapes and a surrogate pair in the text;
 * - `big`: the client library's layout with 4 KB of text;
 * - `msgpack`: the `ascii` request as a MessagePack client sends it (a
 *   connection of that codec; msgpack_job.ts's path).
 * With DIST_BASELINE=DIR, the balancer of that checkout over the same
 * servers is a third side (`base`), with its CPU per request and the paired
 * difference per round (`SHAPE_cpu_minus_base_us`).
 * Every answer is checked to be a result (not an error), and the first
 * answer of each shape through the balancer to equal the server's own.
 *
 * The load is generated here, on raw sockets (frames built once, a fixed
 * number in flight per connection), so that any shape can be sent.
 */
import { type DistProcess, startDist } from "../tests/helpers/dist.ts";
import { balancerArgs, type BenchFlags, cpuUs, Rounds, startServers } from "./_common.ts";
import { frame } from "../tests/helpers/raw.ts";
import { decode, encode } from "@msgpack/msgpack";
import { startBaseline } from "./balancer_hostile.ts";

const CONNECTIONS = 4;
const PER_CONNECTION = 16;
/** Distinct ids per connection, reused in turn (far more than are ever in flight). */
const IDS = 1024;

const SHAPES: Record<string, (id: number) => string> = {
  ascii: (id) => `{"id":${id},"method":"echo","params":{"text":"${"x".repeat(64)}"}}`,
  object: (id) =>
    `{"params":{"text":"Zoë says \\"héllo\\" ✓ 日本語","meta":{"user":{"name":"Ødegård",` +
    `"id":42},"tags":["α","β","γ"],"score":1.5e3,"ok":true,"none":null}},"method":"echo",` +
    `"id":${id}}`,
  spaced: (id) =>
    `{ "method" : "echo" ,\n  "id" : ${id} ,\n  "params" : { "text" : ` +
    `"caf\\u00e9 \\ud83d\\ude00 tab\\t end" }\n}`,
  big: (id) => `{"id":${id},"method":"echo","params":{"text":"${"x".repeat(4096)}"}}`,
};

/** Shapes sent on a MessagePack connection (each request built as a value, then encoded). */
const MSGPACK: Record<string, (id: number) => unknown> = {
  msgpack: (id) => ({ id, method: "echo", params: { text: "x".repeat(64) } }),
};

const ALL = [...Object.keys(SHAPES), ...Object.keys(MSGPACK)];

/** The frames of `shape`, one per id, and the codec its connection says. */
function framesOf(shape: string): { frames: Uint8Array[]; codec: string } {
  const json = SHAPES[shape];
  if (json !== undefined) {
    return { frames: Array.from({ length: IDS }, (_, i) => frame(json(i + 1))), codec: "json" };
  }
  const value = MSGPACK[shape];
  return {
    frames: Array.from({ length: IDS }, (_, i) => frame(encode(value(i + 1)))),
    codec: "msgpack",
  };
}

/** An answer as text for the checks (a MessagePack one decoded and written as JSON). */
function answerText(f: Uint8Array, codec: string): string {
  return codec === "json" ? decoder.decode(f) : JSON.stringify(decode(f));
}

const decoder = new TextDecoder();

/** Complete frames at the start of `buf[0, end)`: their count and where the rest starts. */
function splitFrames(buf: Uint8Array, end: number, onFrame: (f: Uint8Array) => void): number {
  let at = 0;
  while (end - at >= 4) {
    const len = ((buf[at] << 24) | (buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3]) >>> 0;
    if (end - at < 4 + len) break;
    onFrame(buf.subarray(at + 4, at + 4 + len));
    at += 4 + len;
  }
  return at;
}

/** One connection: handshake, then PER_CONNECTION in flight until `until`. */
async function connection(
  port: number,
  frames: Uint8Array[],
  codec: string,
  until: number,
  first: { text?: string },
): Promise<{ answered: number; errors: number }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  await conn.write(frame(JSON.stringify({ op: "hello", v: 1, codec, role: "bench" })));
  let buf = new Uint8Array(64 * 1024);
  let have = 0;
  let welcomed = false;
  let next = 0;
  let answered = 0;
  let errors = 0;
  /** Answers owed to the balancer's own requests (its `sys.ping`s: is this client reading?). */
  const owed: Uint8Array[] = [];
  const send = async (n: number) => {
    const parts = owed.splice(0);
    for (let i = 0; i < n; i++) parts.push(frames[next++ % frames.length]);
    const out = new Uint8Array(parts.reduce((t, p) => t + p.length, 0));
    let off = 0;
    for (const p of parts) {
      out.set(p, off);
      off += p.length;
    }
    for (let w = 0; w < out.length;) w += await conn.write(out.subarray(w));
  };
  let inflight = 0;
  try {
    while (true) {
      if (have === buf.length) {
        const grown = new Uint8Array(buf.length * 2);
        grown.set(buf);
        buf = grown;
      }
      const n = await conn.read(buf.subarray(have));
      if (n === null) throw new Error(`The connection closed (${codec}, ${answered} answered)`);
      have += n;
      let got = 0;
      const used = splitFrames(buf, have, (f) => {
        if (!welcomed) {
          welcomed = true;
          return;
        }
        const text = answerText(f, codec);
        if (!text.includes('"result"') && text.includes('"method"')) {
          // The peer's heartbeat, or its request to see that this client reads: answered as a
          // client does (left unanswered, the balancer holds this bulk flow's requests).
          const id = JSON.parse(text).id;
          if (id !== undefined) {
            const answer = { id, result: null };
            owed.push(frame(codec === "json" ? JSON.stringify(answer) : encode(answer)));
          }
          return;
        }
        got++;
        if (!text.includes('"result"')) errors++;
        first.text ??= text.replace(/"id":\d+,?/, "");
      });
      buf.copyWithin(0, used, have);
      have -= used;
      answered += got;
      inflight -= got;
      if (welcomed && inflight === 0 && answered === 0) {
        inflight = PER_CONNECTION;
        await send(PER_CONNECTION);
      } else if (got > 0 && performance.now() < until) {
        inflight += got;
        await send(got);
      } else if (inflight === 0) {
        break;
      } else if (owed.length > 0) {
        await send(0);
      }
    }
  } finally {
    conn.close();
  }
  return { answered, errors };
}

/** 64 in flight over 4 connections for `ms`: requests/s and answers that were errors. */
async function load(port: number, shape: string, ms: number, first: { text?: string }) {
  const { frames, codec } = framesOf(shape);
  const t0 = performance.now();
  const results = await Promise.all(
    Array.from({ length: CONNECTIONS }, () => connection(port, frames, codec, t0 + ms, first)),
  );
  const seconds = (performance.now() - t0) / 1000;
  const answered = results.reduce((t, r) => t + r.answered, 0);
  return { answered, rps: answered / seconds, errors: results.reduce((t, r) => t + r.errors, 0) };
}

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  const ms = flags.quick ? 1000 : 3000;
  const servers = await startServers();
  const balancer = await startDist(balancerArgs(servers));
  const base = await startBaseline(balancerArgs(servers));
  await new Promise((r) => setTimeout(r, 2000)); // every backend up
  console.log(
    `${flags.runs} round(s) of ${ms} ms per shape and side; ${CONNECTIONS * PER_CONNECTION} ` +
      `in flight over ${CONNECTIONS} raw connections; shapes: ${ALL.join(", ")}` +
      (base === undefined ? "" : `; baseline ${Deno.env.get("DIST_BASELINE")}`),
  );
  const rounds = new Rounds();
  const sides: [string, DistProcess][] = [["direct", servers[0]], ["balancer", balancer]];
  if (base !== undefined) sides.push(["base", base]);
  const proxies = new Set(["balancer", "base"]);
  try {
    // Each proxy's hot path compiled twice first (see balancer.ts's warm-up).
    for (let pass = 0; pass < 2; pass++) {
      for (const [side, target] of sides) {
        if (proxies.has(side)) {
          for (const shape of ALL) await load(target.port, shape, 300, {});
        }
      }
    }
    for (let round = 1; round <= flags.runs; round++) {
      for (const shape of ALL) {
        const first: Record<string, { text?: string }> = {};
        const rps: Record<string, number> = {};
        const cpu: Record<string, number> = {};
        for (let k = 0; k < sides.length; k++) {
          const [side, target] = sides[(round - 1 + k) % sides.length];
          const cpu0 = cpuUs(target.child.pid);
          const r = await load(target.port, shape, ms, first[side] = {});
          if (r.errors > 0) throw new Error(`${shape} via ${side}: ${r.errors} error answers`);
          rps[side] = r.rps;
          rounds.add(`${shape}_${side}_rps`, r.rps);
          if (proxies.has(side)) {
            cpu[side] = (cpuUs(target.child.pid) - cpu0) / r.answered;
            rounds.add(`${shape}_${side}_cpu_us`, cpu[side]);
          }
        }
        if (base !== undefined) {
          rounds.add(`${shape}_cpu_minus_base_us`, cpu.balancer - cpu.base);
        }
        // The balancer passes the server's answer through unchanged (but for the id and by).
        const strip = (t?: string) => t?.replace(/"by":"[^"]*"/, "");
        if (strip(first.direct.text) !== strip(first.balancer.text)) {
          throw new Error(`${shape}: ${first.direct.text} direct, ${first.balancer.text} through`);
        }
        rounds.add(`${shape}_ratio`, rps.balancer / rps.direct);
      }
      rounds.printRound("balancer-shapes", round);
    }
  } finally {
    await balancer.stop();
    await base?.stop();
    await Promise.all(servers.map((s) => s.stop()));
  }
  const m = rounds.medians();
  for (const shape of ALL) {
    console.log(
      `${shape.padEnd(7)}: direct ${m[`${shape}_direct_rps`].toFixed(0)} req/s, balancer ` +
        `${m[`${shape}_balancer_rps`].toFixed(0)} req/s (${m[`${shape}_ratio`].toFixed(2)}×), ` +
        `balancer CPU ${m[`${shape}_balancer_cpu_us`].toFixed(2)} µs per request` +
        (base === undefined ? "" : `, base ${m[`${shape}_base_cpu_us`].toFixed(2)} µs (paired ` +
          `${m[`${shape}_cpu_minus_base_us`].toFixed(2)})`),
    );
  }
  return m;
}
