/**
 * review45 R7: the system's resolver takes an IPv4 address in any of
 * inet_aton's forms (`0x7f000001`, `2130706433`, `127.1`, `0177.0.0.1` …,
 * and leading zeros without end) and an IPv4-mapped IPv6 one
 * (`::ffff:127.0.0.1`), and each spelling was a key of its own: a binder
 * open to registrations kept a server's address registered under 15 more
 * spellings as 16 instances, and a `--service` balancer dialed 16 backends
 * that were one server, which then took 16 shares of the load beside a
 * server registered once. Now the binder keeps one instance per address
 * and the balancer one backend (config/hosts.ts).
 *
 * A user checks the binder's list and the balancer's, and how the calls
 * spread over the two servers.
 */
import assert from "node:assert/strict";
import { canonicalHost } from "../config/mod.ts";
import {
  backendsOf,
  connectTo,
  eventually,
  startBalancer,
  startServers,
  stopAll,
} from "./helpers/balancer.ts";
import { startDist } from "./helpers/dist.ts";
import { connectTo as binderConn, ids, startService } from "./helpers/binder.ts";

/** 15 more spellings of 127.0.0.1, each of which `Deno.connect` takes for it. */
const SPELLINGS = [
  "0x7f000001",
  "2130706433",
  "127.1",
  "127.0.1",
  "0177.0.0.1",
  "0x7f.0.0.1",
  "017700000001",
  "127.000.000.001",
  "0x07f000001",
  "0X7F.1",
  "::ffff:127.0.0.1",
  "::ffff:7f00:1",
  "0:0:0:0:0:ffff:7f00:1",
  "::FFFF:127.0.0.1",
  "0000::ffff:127.0.0.1",
];

const portOf = (address: string) => Number(address.split(":").at(-1));

Deno.test("canonicalHost() gives one spelling per address", () => {
  for (const s of SPELLINGS) assert.equal(canonicalHost(s), "127.0.0.1", s);
  assert.equal(canonicalHost("[::ffff:127.0.0.1]"), "127.0.0.1");
  assert.equal(canonicalHost("0:0:0:0:0:0:0:1"), "::1");
  assert.equal(canonicalHost("[0000::0001]"), "::1");
  assert.equal(canonicalHost("2001:DB8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
  assert.equal(canonicalHost("fe80::0001%eth0"), "fe80::1%eth0");
  assert.equal(canonicalHost("::127.0.0.1"), "::7f00:1"); // IPv4-compatible: another address
  assert.equal(canonicalHost("Server-1.Example"), "server-1.example");
  assert.equal(canonicalHost("0x"), "0x"); // a name
  assert.equal(canonicalHost("127.0.0.256"), "127.0.0.256"); // no address: a name
  assert.equal(canonicalHost("127.65535"), "127.0.255.255");
  assert.equal(canonicalHost("4294967296"), "4294967296");
  assert.equal(canonicalHost("08.0.0.1"), "08.0.0.1"); // 08 is no octal: a name
});

Deno.test("a server's address under 16 spellings is one instance and one backend (review45 R7)", async () => {
  const binder = await startDist(["binder", "--port", "0"]);
  const s1 = await startService("compute", binder.address, ["--name", "s1"]);
  const s2 = await startService("compute", binder.address, ["--name", "s2"]);
  const lb = await startBalancer([], ["--service", "compute", "--binders", binder.address]);
  const client = await connectTo(lb.address, 10_000);
  try {
    const mallory = await binderConn(binder.address);
    try {
      for (const host of SPELLINGS) {
        await mallory.call("binder.register", {
          service: "compute",
          host,
          port: portOf(s1.address),
          ttl_ms: 600_000,
        });
      }
    } finally {
      mallory.close();
    }
    const listed = await ids(binder.address, "compute");
    await eventually(
      async () => (await backendsOf(client)).filter((b) => b.state === "up").length >= 2,
      5000,
      "both servers up",
    );
    await new Promise((r) => setTimeout(r, 1500)); // the balancer's list follows the binder's
    const calls = 340;
    for (let i = 0; i < calls; i += 10) {
      await Promise.all(
        Array.from({ length: 10 }, () => client.call("add", { a: 1, b: 2 }, { timeout: 5000 })),
      );
    }
    const view = await backendsOf(client);
    const served = (peer: string) =>
      view.filter((b) => b.peer === peer).reduce((n, b) => n + b.served, 0);
    const summary = `binder lists ${listed.length} (${listed.join(", ")}); balancer has ${
      view.map((b) => `${b.name} (${b.peer}) served ${b.served}`).join(", ")
    }; s1 ${served("s1")}, s2 ${served("s2")} of ${calls}`;
    console.log(summary);
    assert.equal(listed.length, 2, `one instance per address (${summary})`);
    assert.equal(view.length, 2, `one backend per address (${summary})`);
    assert.ok(served("s2") >= calls / 4, `s2 takes its share (${summary})`);
  } finally {
    client.close();
    await stopAll([lb, s1, s2, binder]);
  }
});

Deno.test("--backends that name one server under several spellings dial it once (review45 R7)", async () => {
  const [s1, s2] = await startServers(2);
  const p1 = portOf(s1.address);
  const lb = await startBalancer([], [
    "--backends",
    [`127.0.0.1:${p1}`, `0x7f000001:${p1}`, `127.1:${p1}`, `[::ffff:127.0.0.1]:${p1}`, s2.address]
      .join(","),
  ]);
  const client = await connectTo(lb.address);
  try {
    const view = await backendsOf(client);
    assert.deepEqual(view.map((b) => b.name).sort(), [s1.address, s2.address].sort());
  } finally {
    client.close();
    await stopAll([lb, s1, s2]);
  }
});

Deno.test("a host name that reaches a server that is a backend already is no second backend (review45 R7)", async () => {
  const [s1, s2] = await startServers(2);
  const p1 = portOf(s1.address);
  const lb = await startBalancer([], [
    "--backends",
    [s1.address, `localhost:${p1}`, s2.address].join(","),
    "--policy",
    "round-robin",
  ]);
  const client = await connectTo(lb.address);
  try {
    await eventually(
      async () => (await backendsOf(client)).filter((b) => b.state === "up").length >= 2,
      5000,
      "both servers up",
    );
    for (let i = 0; i < 100; i++) await client.call("add", { a: i, b: 1 });
    const view = await backendsOf(client);
    const summary = view.map((b) => `${b.name} (${b.peer}) ${b.state} ${b.reason}: ${b.served}`)
      .join("; ");
    const up = view.filter((b) => b.state === "up");
    assert.equal(up.length, 2, `one backend per server (${summary})`);
    assert.deepEqual(up.map((b) => b.peer).sort(), ["s1", "s2"], summary);
    const dup = view.find((b) => b.name === `localhost:${p1}`);
    assert.match(dup?.reason ?? "", /the same server as/, summary);
    assert.ok(up.every((b) => b.served >= 40), `the calls spread evenly (${summary})`);
  } finally {
    client.close();
    await stopAll([lb, s1, s2]);
  }
});
