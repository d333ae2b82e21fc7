/**
 * What authentication costs (issue 15), against a real `dist server` each
 * way, sides alternating in every round:
 *
 * - handshakes: dial + welcome + close, 16 at a time, with no security
 *   setting, a shared `--token`, a users file user's token, and a users
 *   file user's password (after the first success, remembered: no scrypt);
 * - one scrypt check at the default cost (what a password's first login,
 *   or a wrong one, costs the listener);
 * - in this process, the listener's CPU per authenticate() of each kind and
 *   per permission check of a request (no sockets: precise on a busy machine);
 * - RPC echo at c=64 (`dist client --bench`) with no setting, a shared
 *   token (no permissions to check) and a users file user (every request
 *   checked at the dispatch point).
 */
import {
  Gate,
  hashPassword,
  hashToken,
  parsePasswordHash,
  parseUsers,
  verifyPassword,
} from "../auth/mod.ts";
import { parseAddress } from "../config/mod.ts";
import { type Credentials, dial, type HelloClaim } from "../wire/mod.ts";
import { startDist } from "../tests/helpers/dist.ts";
import { type BenchFlags, clientBench, median, Rounds } from "./_common.ts";

const TOKEN = "bench-shared-token-0123456789";
const USER_TOKEN = "bench-user-token-0123456789";
const PASSWORD = "bench-password-0123";

async function handshakes(address: string, credentials: Credentials | undefined, n: number) {
  const at = parseAddress(address);
  const t0 = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next++ < n) {
      const peer = await dial(at, { role: "client", name: "bench", credentials });
      peer.close();
    }
  }));
  return n / ((performance.now() - t0) / 1000);
}

/**
 * The listener's own cost, in this process: µs per authenticate() of each
 * kind of credential (the hashing of a password excepted: remembered), and
 * ns per permission check of a request.
 */
async function inProcess(usersText: string, rounds: Rounds): Promise<void> {
  const gate = new Gate({ token: TOKEN, users: parseUsers(usersText, "bench") });
  const claim = (credentials: Credentials): HelloClaim => ({
    role: "client",
    name: "bench",
    credentials,
    host: "127.0.0.1",
    address: "127.0.0.1:1",
    closed: new Promise(() => {}),
  });
  const kinds: [string, Credentials][] = [
    ["gate_token_us", { token: TOKEN }],
    ["gate_user_token_us", { token: USER_TOKEN }],
    ["gate_user_password_us", { user: "bench", password: PASSWORD }],
  ];
  await gate.authenticate(claim(kinds[2][1])); // the one scrypt: then remembered
  for (const [key, credentials] of kinds) {
    const n = 20_000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await gate.authenticate(claim(credentials));
    rounds.add(key, (performance.now() - t0) * 1000 / n);
  }
  const { access } = await gate.authenticate(claim({ token: USER_TOKEN }));
  const n = 1_000_000;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) access!.check("echo");
  rounds.add("check_ns", (performance.now() - t0) * 1e6 / n);
}

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  const dir = await Deno.makeTempDir();
  const users = `${dir}/users.toml`;
  const usersText = [
    "[users.bench]",
    `token = "${hashToken(USER_TOKEN)}"`,
    `password = "${await hashPassword(PASSWORD)}"`,
    'methods = ["echo", "add", "sys.*"]',
  ].join("\n") + "\n";
  await Deno.writeTextFile(users, usersText);
  const plain = await startDist(["server", "--port", "0"]);
  const token = await startDist([
    "server",
    "--port",
    "0",
    "--token",
    TOKEN,
  ]);
  const usersd = await startDist([
    "server",
    "--port",
    "0",
    "--users",
    users,
    "--token",
    TOKEN,
  ]);
  const n = flags.quick ? 200 : 2000;
  const rounds = new Rounds();
  try {
    const sides: [string, string, Credentials | undefined][] = [
      ["hs_none", plain.address, undefined],
      ["hs_token", token.address, { token: TOKEN }],
      ["hs_user_token", usersd.address, { token: USER_TOKEN }],
      ["hs_user_password", usersd.address, { user: "bench", password: PASSWORD }],
    ];
    const stored = parsePasswordHash(await hashPassword(PASSWORD));
    if (typeof stored === "string") throw new Error(stored);
    // One login first: then the password is remembered (as after any real first login).
    (await dial(parseAddress(usersd.address), {
      role: "client",
      name: "warm",
      credentials: { user: "bench", password: PASSWORD },
    })).close();
    for (let r = 1; r <= flags.runs; r++) {
      // Alternate the order of sides each round.
      const order = r % 2 ? sides : [...sides].reverse();
      for (const [key, address, credentials] of order) {
        rounds.add(`${key}_per_s`, await handshakes(address, credentials, n));
      }
      const times: number[] = [];
      for (let i = 0; i < 5; i++) {
        const t0 = performance.now();
        await verifyPassword(PASSWORD, stored);
        times.push(performance.now() - t0);
      }
      rounds.add("scrypt_check_ms", median(times));
      await inProcess(usersText, rounds);
      const bench = ["--requests", flags.quick ? "20000" : "100000", "--concurrency", "64"];
      const rpc: [string, string, string[]][] = [
        ["rpc_none", plain.address, []],
        ["rpc_token", token.address, ["--token", TOKEN]],
        ["rpc_users", usersd.address, ["--token", USER_TOKEN]],
      ];
      for (const [key, address, args] of r % 2 ? rpc : [...rpc].reverse()) {
        const out = await clientBench(address, [...bench, ...args]);
        rounds.add(`${key}_req_s`, out.rps);
      }
      rounds.printRound("auth", r);
    }
  } finally {
    await Promise.all([plain.stop(), token.stop(), usersd.stop()]);
    await Deno.remove(dir, { recursive: true });
  }
  const m = rounds.medians();
  console.log(
    `auth medians: handshakes/s none ${m.hs_none_per_s.toFixed(0)}, token ${
      m.hs_token_per_s.toFixed(0)
    }, user token ${m.hs_user_token_per_s.toFixed(0)}, user password (remembered) ${
      m.hs_user_password_per_s.toFixed(0)
    }; one scrypt check ${m.scrypt_check_ms.toFixed(0)} ms; authenticate() token ${
      m.gate_token_us.toFixed(1)
    } µs, user token ${m.gate_user_token_us.toFixed(1)} µs, remembered password ${
      m.gate_user_password_us.toFixed(1)
    } µs; permission check ${m.check_ns.toFixed(0)} ns; ` +
      `RPC c=64 req/s none ${m.rpc_none_req_s.toFixed(0)}, token ${m.rpc_token_req_s.toFixed(0)} (${
        (m.rpc_token_req_s / m.rpc_none_req_s).toFixed(2)
      }×), users file ${m.rpc_users_req_s.toFixed(0)} (${
        (m.rpc_users_req_s / m.rpc_none_req_s).toFixed(2)
      }×)`,
  );
  return m;
}
