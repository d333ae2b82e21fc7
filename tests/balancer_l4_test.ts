/**
 * `dist balancer --mode tcp` as a user runs it: a real process in front of
 * real HTTP servers (Deno.serve, each a process a test can SIGKILL) and raw
 * TCP backends, driven over plain sockets.
 */
import assert from "node:assert/strict";
import { type DistProcess, runDist } from "./helpers/dist.ts";
import { type HttpBackend, startHttpBackend } from "./helpers/http_backend.ts";
import { closeQuietly, concat, sleep, waitFor, within, writeAll } from "./helpers/raw.ts";
import { EAGAIN, openRawTcp } from "../wire/raw_tcp.ts";
import {
  countThenAnswer,
  drainCount,
  halfClose,
  rawBackend,
  startTcpBalancer,
} from "./helpers/tcp_backend.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function connect(address: string): Promise<Deno.TcpConn> {
  const [host, port] = address.split(":");
  return Deno.connect({ hostname: host, port: Number(port) });
}

/**
 * One `GET /` on `conn` (kept alive): the body, or null when the connection
 * ended (EOF or reset) before a whole answer came.
 */
async function get(conn: Deno.Conn): Promise<string | null> {
  await writeAll(conn, encoder.encode("GET / HTTP/1.1\r\nHost: l4\r\n\r\n"));
  let text = "";
  const buf = new Uint8Array(4096);
  while (true) {
    const head = text.indexOf("\r\n\r\n");
    const length = /content-length: (\d+)/i.exec(text);
    if (head >= 0 && length && text.length >= head + 4 + Number(length[1])) {
      return text.slice(head + 4, head + 4 + Number(length[1]));
    }
    let n: number | null;
    try {
      n = await within(conn.read(buf), 5000, "an HTTP answer");
    } catch (err) {
      if (err instanceof Deno.errors.ConnectionReset) return null;
      throw err;
    }
    if (n === null) return null;
    text += decoder.decode(buf.subarray(0, n));
  }
}

/** The backend name of a fresh connection's `GET /`. */
async function getOnce(address: string): Promise<string | null> {
  const conn = await connect(address);
  try {
    return await get(conn);
  } finally {
    closeQuietly(conn);
  }
}

/** Lines of the balancer's stderr matching `pattern`. */
function count(p: DistProcess, pattern: RegExp): number {
  return p.stderr().split("\n").filter((l) => pattern.test(l)).length;
}

Deno.test("balancer --mode tcp: HTTP through it, round-robin, bytes both ways untouched", async () => {
  const backends = await Promise.all([startHttpBackend("A"), startHttpBackend("B")]);
  const lb = await startTcpBalancer(backends.map((b) => b.address));
  const client = Deno.createHttpClient({});
  try {
    const names = [];
    for (let i = 0; i < 6; i++) names.push(await getOnce(lb.address));
    assert.deepEqual(names, ["A", "B", "A", "B", "A", "B"]);

    // 4 MiB of every byte value up and back, through fetch on a kept-alive connection.
    const body = new Uint8Array(4 * 1024 * 1024).map((_, i) => (i * 7 + (i >> 11)) & 0xff);
    const res = await fetch(`http://${lb.address}/`, { method: "POST", body, client });
    assert.equal(res.status, 200);
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), body);

    // The connection log of the RPC mode: every connection opening and closing.
    assert.match(lb.stderr(), /Connection from 127\.0\.0\.1:\d+ to 127\.0\.0\.1:\d+\n/);
    assert.match(
      lb.stderr(),
      /Connection from 127\.0\.0\.1:\d+ to 127\.0\.0\.1:\d+ closed \(eof\): 28 bytes up, \d+ bytes down in \d+ ms/,
    );
  } finally {
    client.close();
    await lb.stop();
    await Promise.all(backends.map((b) => b.stop()));
  }
});

Deno.test("balancer --mode tcp --policy least-loaded: a new connection goes to the backend with the fewest open", async () => {
  const backends = await Promise.all([startHttpBackend("A"), startHttpBackend("B")]);
  const lb = await startTcpBalancer(backends.map((b) => b.address), ["--policy", "least-loaded"]);
  const open: Deno.TcpConn[] = [];
  try {
    const held = async () => {
      const conn = await connect(lb.address);
      open.push(conn);
      return { conn, name: await get(conn) };
    };
    // A, B, A: two connections held on A, one on B.
    const first = [await held(), await held(), await held()];
    assert.deepEqual(first.map((c) => c.name), ["A", "B", "A"]);
    // B's one closes: B has none, A two, so the next two both go to B (round-robin would alternate).
    const closedBefore = count(lb, / closed \(/);
    first[1].conn.close();
    await waitFor(
      () => count(lb, / closed \(/) > closedBefore,
      5000,
      "the close seen by the balancer",
    );
    const next = [await held(), await held()];
    assert.deepEqual(next.map((c) => c.name), ["B", "B"]);
    // Two each now: ties go round the list.
    const tie = [await held(), await held()];
    assert.deepEqual(tie.map((c) => c.name).sort(), ["A", "B"]);
  } finally {
    for (const c of open) closeQuietly(c);
    await lb.stop();
    await Promise.all(backends.map((b) => b.stop()));
  }
});

Deno.test("balancer --mode tcp: a backend killed mid-connection ends that connection; new ones go to the live one; it is marked down and comes back", async () => {
  const backends = await Promise.all([startHttpBackend("A"), startHttpBackend("B")]);
  const lb = await startTcpBalancer(backends.map((b) => b.address), ["--rise", "2", "--fall", "2"]);
  let restarted: HttpBackend | undefined;
  try {
    const conn = await connect(lb.address);
    const victimName = await get(conn);
    assert.ok(victimName === "A" || victimName === "B");
    const victim = backends.find((b) => b.name === victimName)!;
    const other = backends.find((b) => b !== victim)!;

    await victim.stop("SIGKILL");
    // The client sees its connection end (EOF or reset), not a hang.
    assert.equal(await get(conn).catch(() => null), null);
    closeQuietly(conn);

    // New connections all reach the live backend (a refused connect is retried on it).
    for (let i = 0; i < 4; i++) assert.equal(await getOnce(lb.address), other.name);
    const down = new RegExp(`Backend ${victim.address} is down`);
    await waitFor(() => down.test(lb.stderr()), 5000, "the dead backend marked down");

    // Back on its port: up after --rise checks, and in the rotation again.
    restarted = await startHttpBackend(victim.name, victim.port);
    // Its second "is up" (the first was at the start).
    const up = new RegExp(`Backend ${victim.address} is up`);
    await waitFor(() => count(lb, up) === 2, 5000, "the backend back up");
    const seen = new Set<string | null>();
    for (let i = 0; i < 4; i++) seen.add(await getOnce(lb.address));
    assert.deepEqual([...seen].sort(), ["A", "B"]);
  } finally {
    await lb.stop();
    await Promise.all([...backends, ...restarted ? [restarted] : []].map((b) => b.stop()));
  }
});

Deno.test("balancer --mode tcp: half-close passes through (client's EOF reaches the backend, its answer still comes back)", async () => {
  // Reads to the end of the stream, then answers how much it got, then closes.
  const backend = rawBackend(countThenAnswer);
  const lb = await startTcpBalancer([backend.address]);
  try {
    assert.equal(await halfClose(lb.address), "got 200000");
    await waitFor(
      () => / closed \(eof\): 200000 bytes up, 10 bytes down/.test(lb.stderr()),
      5000,
      "the log line",
    );
  } finally {
    await lb.stop();
    await backend.close();
  }
});

/** Reads `conn` to its end: every byte it sent. */
async function readToEnd(conn: Deno.Conn): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const buf = new Uint8Array(16 * 1024);
  for (let n; (n = await conn.read(buf)) !== null;) parts.push(buf.slice(0, n));
  return concat(parts);
}

/** `size` bytes that tell their places apart. */
function pattern(size: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: size }, (_, i) => (i * 31 + seed) & 255);
}

Deno.test("balancer --mode tcp: the last bytes before either side's end arrive whole and in order, the end after them (1 B to 200 KB, around the 64 KiB read)", async () => {
  // Reads to the end of the stream, answers it back reversed, then closes at once.
  const backend = rawBackend(async (conn) => {
    await writeAll(conn, (await readToEnd(conn)).reverse());
  });
  const lb = await startTcpBalancer([backend.address]);
  try {
    for (const size of [1, 100, 4096, 65_535, 65_536, 65_537, 200_000]) {
      const conn = await connect(lb.address);
      try {
        const sent = pattern(size, size);
        // The request and its end, sent together: both reach the backend, in that order.
        await writeAll(conn, sent);
        await conn.closeWrite();
        const got = await within(readToEnd(conn), 5000, `the ${size}-byte answer`);
        assert.deepEqual(got, sent.slice().reverse(), `${size} bytes`);
      } finally {
        closeQuietly(conn);
      }
    }
    await waitFor(
      () => / closed \(eof\): 200000 bytes up, 200000 bytes down/.test(lb.stderr()),
      5000,
      "the log line",
    );
  } finally {
    await lb.stop();
    await backend.close();
  }
});

Deno.test("balancer --mode tcp --idle-timeout: a silent connection is closed, a talking one is not", async () => {
  const backend = rawBackend(async (conn) => {
    const buf = new Uint8Array(1024);
    for (let n; (n = await conn.read(buf)) !== null;) await writeAll(conn, buf.subarray(0, n));
  });
  const lb = await startTcpBalancer([backend.address], ["--idle-timeout", "300ms"]);
  try {
    const silent = await connect(lb.address);
    const talking = await connect(lb.address);
    const started = performance.now();
    const silentEnd = within(silent.read(new Uint8Array(16)), 5000, "the idle close");
    // The talking one sends a byte every 100 ms for 1 s (more than 3 idle timeouts) and hears it back.
    const buf = new Uint8Array(16);
    for (let i = 0; i < 10; i++) {
      await writeAll(talking, encoder.encode("x"));
      assert.equal(await within(talking.read(buf), 2000, "the echo"), 1);
      await sleep(100);
    }
    assert.equal(await silentEnd, null);
    assert.ok(performance.now() - started >= 300, "not closed before the idle timeout");
    await waitFor(() => / closed \(idle\)/.test(lb.stderr()), 5000, "the idle close logged");
    silent.close();
    talking.close();
  } finally {
    await lb.stop();
    await backend.close();
  }
});

Deno.test("balancer --mode tcp --max-connections: the oldest connection that sent no byte makes room; talking ones are never closed", async () => {
  const backend = rawBackend(async (conn) => {
    const buf = new Uint8Array(1024);
    for (let n; (n = await conn.read(buf)) !== null;) await writeAll(conn, buf.subarray(0, n));
  });
  const lb = await startTcpBalancer([backend.address], ["--max-connections", "6"]);
  const talking: Deno.Conn[] = [];
  const silent: Deno.Conn[] = [];
  const buf = new Uint8Array(16);
  /** A connection that says a byte and hears it back. */
  const talk = async () => {
    const c = await connect(lb.address);
    talking.push(c);
    await writeAll(c, encoder.encode("x"));
    assert.equal(await within(c.read(buf), 2000, "the echo"), 1, lb.stderr());
  };
  /** Whether the balancer closed `c` within `ms`. */
  const closedWithin = (c: Deno.Conn, ms: number) =>
    Promise.race([
      c.read(buf).catch(() => null).then((n) => n === null),
      sleep(ms).then(() => false),
    ]);
  try {
    await talk();
    for (let i = 0; i < 5; i++) silent.push(await connect(lb.address));
    await sleep(200);
    // Full of silent connections, renewed: clients still get in, the oldest silent ones go.
    for (let round = 0; round < 3; round++) {
      await talk();
      for (let i = 0; i < 2; i++) silent.push(await connect(lb.address));
    }
    for (const c of silent.slice(0, 9)) assert.equal(await closedWithin(c, 2000), true);
    for (const c of silent.slice(9)) {
      assert.equal(await closedWithin(c, 300), false, "the newest silent ones stay");
    }
    // Every slot talks: one more is refused, and nobody is closed to make room for it.
    for (let i = 0; i < 2; i++) await talk();
    const extra = await connect(lb.address);
    silent.push(extra);
    assert.equal(await closedWithin(extra, 2000), true);
    for (const c of talking) {
      await writeAll(c, encoder.encode("y"));
      assert.equal(await within(c.read(buf), 2000, "the echo"), 1);
    }
    assert.ok(/closed to make room: no byte sent yet/.test(lb.stderr()), lb.stderr());
    assert.ok(/refused: Connection limit of 6 reached/.test(lb.stderr()), lb.stderr());
  } finally {
    for (const c of [...talking, ...silent]) closeQuietly(c);
    await lb.stop();
    await backend.close();
  }
});

Deno.test("balancer --mode tcp: backpressure both ways (a side that does not read stops the other being read)", async () => {
  // More than the kernel's socket buffers on the way may hold (here up to 32 MiB
  // for each receive buffer, 4 MiB for each send buffer): a proxy that read on
  // regardless would take it all.
  const TOTAL = 256 * 1024 * 1024;
  const chunk = new Uint8Array(1024 * 1024);
  for (const way of ["client to backend", "backend to client"]) {
    let release!: () => void;
    const reading = new Promise<void>((resolve) => release = resolve);
    let received = 0;
    let sent = 0;
    // The sender writes TOTAL bytes; the reader starts only once released.
    const send = async (conn: Deno.Conn) => {
      while (sent < TOTAL) {
        sent += await conn.write(chunk.subarray(0, Math.min(chunk.length, TOTAL - sent)));
      }
    };
    const receive = async (conn: Deno.Conn) => {
      await reading;
      received += await drainCount(conn);
    };
    const toBackend = way === "client to backend";
    // Health checks connect too, and hang up at once: only the client's connection,
    // which starts with one byte, carries the transfer.
    const backend = rawBackend(async (conn) => {
      if (await conn.read(new Uint8Array(1)) === null) return;
      if (toBackend) await receive(conn);
      else {
        await send(conn);
        await conn.closeWrite();
        await drainCount(conn);
      }
    });
    const lb = await startTcpBalancer([backend.address]);
    const conn = await connect(lb.address);
    await writeAll(conn, new Uint8Array(1));
    try {
      const transfer = toBackend ? send(conn).then(() => conn.closeWrite()) : receive(conn);
      // Writing stalls once the kernel's buffers are full: the balancer holds no more.
      let last = -1;
      for (let still = 0; still < 3;) {
        await sleep(100);
        still = sent === last ? still + 1 : 0;
        last = sent;
      }
      assert.ok(sent < TOTAL, `${way}: the sender stalled (after ${sent} bytes)`);
      release();
      await within(transfer, 30_000, `${way}: the transfer`);
      await waitFor(() => received === TOTAL, 30_000, `${way}: every byte received`);
    } finally {
      closeQuietly(conn);
      await lb.stop();
      await backend.close();
    }
  }
});

Deno.test("balancer --mode tcp: wrong flags are one dist: line and exit 2", async () => {
  const cases: [string[], RegExp][] = [
    [[], /^dist: --mode tcp needs --backends HOST:PORT/],
    [
      ["--backends", "127.0.0.1:1", "--retries", "5"],
      /^dist: --retries applies only with --mode rpc/,
    ],
    [["--backends", "127.0.0.1:1", "--worker-port", "0"], /^dist: --worker-port applies only/],
    [
      ["--backends", "127.0.0.1:1", "--tls-cert", "c.pem"],
      /^dist: --tls-cert applies only with --mode rpc/,
    ],
    [["--backends", "127.0.0.1:1", "--mode", "udp"], /^dist: .*--mode/],
  ];
  const runs = await Promise.all(
    cases.map(([args]) => runDist(["balancer", "--mode", "tcp", "--port", "0", ...args])),
  );
  for (const [i, [args, expected]] of cases.entries()) {
    const r = runs[i];
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, expected);
    assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
  }
  const rpc = await runDist(["balancer", "--port", "0", "--idle-timeout", "5s"]);
  assert.equal(rpc.code, 2);
  assert.match(rpc.stderr, /^dist: --idle-timeout applies only with --mode tcp/);
});

/** Reads `conn` to its end slowly (16 KiB reads, a pause every 128 KiB): every byte it sent. */
async function readSlowly(conn: Deno.Conn): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const buf = new Uint8Array(16 * 1024);
  for (let n, i = 0; (n = await conn.read(buf)) !== null; i++) {
    parts.push(buf.slice(0, n));
    if (i % 8 === 7) await sleep(1);
  }
  return concat(parts);
}

Deno.test("balancer --mode tcp: both sides half-closed while one way is still backed up, every byte still passes (hostile41a W1: a truncated stream with a clean end)", async () => {
  const SIZE = 8 * 1024 * 1024;
  const body = pattern(SIZE, 41);
  // Health checks connect too and hang up at once: only a connection that speaks is served.
  let uploaded: Promise<Uint8Array> | undefined;
  const backend = rawBackend(async (conn) => {
    const first = new Uint8Array(1);
    if (await conn.read(first) === null) return;
    if (first[0] === 68) {
      // "D": a download. The request to its end, then the answer, then close at once.
      await readToEnd(conn);
      await writeAll(conn, body);
      return;
    }
    // An upload: "OK" and this side's end at once, then the upload read slowly.
    await writeAll(conn, encoder.encode("OK"));
    await conn.closeWrite();
    uploaded = readSlowly(conn);
    await uploaded;
  });
  const lb = await startTcpBalancer([backend.address]);
  try {
    for (let run = 0; run < 3; run++) {
      // Download: the request and its end, then the answer read more slowly than it comes.
      const down = await connect(lb.address);
      try {
        await writeAll(down, encoder.encode("D"));
        await down.closeWrite();
        const got = await within(readSlowly(down), 20_000, "the download");
        assert.equal(got.length, SIZE, `run ${run}: bytes downloaded`);
        assert.deepEqual(got, body, `run ${run}: the download's bytes`);
      } finally {
        closeQuietly(down);
      }
      // Upload: the body and its end; the backend ended its side first and reads slowly.
      uploaded = undefined;
      const up = await connect(lb.address);
      try {
        await writeAll(up, encoder.encode("U"));
        await writeAll(up, body);
        await up.closeWrite();
        assert.equal(decoder.decode(await within(readToEnd(up), 20_000, "the OK")), "OK");
        await waitFor(() => uploaded !== undefined, 5000, "the backend reading");
        const got = await within(uploaded!, 20_000, "the upload");
        assert.equal(got.length, SIZE, `run ${run}: bytes uploaded`);
        assert.deepEqual(got, body, `run ${run}: the upload's bytes`);
      } finally {
        closeQuietly(up);
      }
    }
  } finally {
    await lb.stop();
    await backend.close();
  }
});

Deno.test("balancer --mode tcp over libc: a client's reset reaches the backend as a reset, not a clean end (hostile41a W2: an aborted upload looked whole)", async () => {
  let ended: string | undefined;
  let got = 0;
  // Health checks connect too and hang up at once: only a connection that speaks is followed.
  const backend = rawBackend(async (conn) => {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (let n; (n = await conn.read(buf)) !== null;) got += n;
      if (got > 0) ended = "a clean end (EOF)";
    } catch (err) {
      ended = err instanceof Deno.errors.ConnectionReset ? "reset" : String(err);
    }
  });
  const lb = await startTcpBalancer([backend.address]);
  // The client through libc: Deno's sockets cannot reset a connection (SO_LINGER 0).
  const raw = openRawTcp()!;
  const to = raw.address("127.0.0.1", Number(lb.address.split(":")[1]))!;
  const fd = raw.connect(to);
  try {
    assert.ok(fd >= 0, `connect: ${raw.describe(fd)}`);
    await waitFor(() => raw.connected(fd, to) === 1, 5000, "the connect");
    const upload = new Uint8Array(100_000).fill(1);
    for (let sent = 0; sent < upload.length;) {
      const n = raw.send(fd, upload.subarray(sent));
      if (n === -EAGAIN) await sleep(1);
      else if (n < 0) throw new Error(raw.describe(n));
      else sent += n;
    }
    await waitFor(() => got === upload.length, 5000, "the upload at the backend");
    // Aborted: a reset, the upload was not whole.
    raw.abort(fd);
    await waitFor(() => ended !== undefined, 5000, "the backend's end");
    assert.equal(ended, "reset");
  } finally {
    await lb.stop();
    await backend.close();
  }
});
