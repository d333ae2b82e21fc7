/**
 * Who counts as one source for the balancer's shares and slots (hostile33's
 * review): an IPv6 client by its /64, not by each of its 2^64 addresses.
 */
import assert from "node:assert/strict";
import { clientSource } from "../auth/mod.ts";

Deno.test("clientSource() groups IPv6 addresses by their /64", () => {
  const net = "2001:db8:0:1::/64";
  for (
    const host of [
      "2001:db8:0:1::5",
      "2001:db8:0:1:ffff:ffff:ffff:fffe",
      "2001:0DB8:0000:0001:1:2:3:4",
      "2001:db8:0:1::9%eth0",
    ]
  ) assert.equal(clientSource(undefined, host), net, host);
  assert.equal(clientSource(undefined, "2001:db8:0:2::5"), "2001:db8:0:2::/64");
  assert.equal(clientSource(undefined, "fe80::1"), "fe80:0:0:0::/64");
  // IPv4 (also IPv4-mapped) and loopback stay themselves; a user is a user.
  assert.equal(clientSource(undefined, "10.0.0.1"), "10.0.0.1");
  assert.equal(clientSource(undefined, "::ffff:10.0.0.1"), "10.0.0.1");
  assert.equal(clientSource(undefined, "::1"), "::1");
  assert.equal(clientSource("alice", "2001:db8:0:1::5"), "user alice");
  assert.equal(clientSource("token", "2001:db8:0:1::5"), net);
});
