/**
 * hostile47 Q20: `binder.register` took unspecified, broadcast and multicast
 * hosts (`0.0.0.0`, `::`, `255.255.255.255`, `224.0.0.1`): a client handed
 * `0.0.0.0:5557` dials its own machine, and the binder's down-check of one
 * dialed the binder's. Now BAD_REQUEST, in any spelling.
 */
import assert from "node:assert/strict";
import { undialableHost } from "../config/mod.ts";
import { ids, reg, startBinder } from "./helpers/binder.ts";

Deno.test("undialableHost: unspecified, broadcast and multicast, in any spelling; names never", () => {
  for (const host of ["0.0.0.0", "0", "0.1.2.3", "::", "[::]", "::ffff:0.0.0.0"]) {
    assert.match(undialableHost(host) ?? "", /unspecified/, host);
  }
  assert.match(undialableHost("255.255.255.255") ?? "", /broadcast/);
  assert.match(undialableHost("0xffffffff") ?? "", /broadcast/);
  for (const host of ["224.0.0.1", "239.255.255.250", "ff02::1", "::ffff:224.0.0.1"]) {
    assert.match(undialableHost(host) ?? "", /multicast/, host);
  }
  for (const host of ["127.0.0.1", "10.0.0.255", "223.255.255.255", "::1", "fe80::1", "example"]) {
    assert.equal(undialableHost(host), undefined, host);
  }
});

Deno.test("binder.register refuses a host no client could dial, BAD_REQUEST naming it", async () => {
  const b = await startBinder();
  try {
    for (const host of ["0.0.0.0", "::", "255.255.255.255", "224.0.0.1", "0x0"]) {
      await assert.rejects(
        b.call("binder.register", reg(5557, { service: "w", host })),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, "BAD_REQUEST");
          assert.match(
            err.message,
            new RegExp(`"host" ${host.replace(/[.]/g, "\\.")} is .*no client could dial`),
          );
          return true;
        },
        host,
      );
    }
    await b.call("binder.register", reg(5557, { service: "w" }));
    assert.deepEqual(await ids(b, "w"), ["w@127.0.0.1:5557"]);
  } finally {
    await b.stop();
  }
});
