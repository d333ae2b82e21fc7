/**
 * h48 P16: `dist cert issue --host` takes IP addresses and DNS names only
 * (letter-digit-hyphen labels of 1-63 characters, `*.` leftmost), as mkcert
 * checks: `--host 'a b,1.2.3.4.5'` wrote a certificate for `DNS:a b,
 * DNS:1.2.3.4.5` that no dialer can match.
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";
import { hostProblem } from "../cert/hosts.ts";

Deno.test("hostProblem takes addresses and DNS names, nothing else (h48 P16)", () => {
  for (
    const good of ["10.0.0.5", "[::1]", "::1", "node-1.lan", "localhost", "*.x.lan", "a.b-c.d"]
  ) {
    assert.equal(hostProblem(good), undefined, good);
  }
  for (
    const bad of [
      "a b",
      "1.2.3.4.5",
      "x".repeat(64),
      "a.".repeat(130) + "a",
      "*.lan",
      "a.*.b",
      "-a",
      "a-",
      "a..b",
      "a.",
      "",
      "a\u202eb",
      "a_b",
      "[node]",
      "host:80",
    ]
  ) {
    assert.notEqual(hostProblem(bad), undefined, JSON.stringify(bad));
  }
});

Deno.test("dist cert issue refuses a --host that is no address or DNS name, before writing (h48 P16)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.equal((await runDist(["cert", "ca", "--dir", dir])).code, 0);
    const r = await runDist(["cert", "issue", "y", "--host", "ok.lan,a b,1.2.3.4.5", "--dir", dir]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^dist: --host "a b" is neither an IP address nor a DNS name/m);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["ca.crt", "ca.key"]);
    const ok = await runDist(["cert", "issue", "y", "--host", "node-1.lan,10.0.0.5", "--dir", dir]);
    assert.equal(ok.code, 0, ok.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
