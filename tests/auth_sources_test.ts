/**
 * addressSource and hostSource read an address with config/hosts.ts's
 * parser (the one the binder's and balancer's keys use), not a twin of it:
 * every spelling of one address is one source, the IPv4-mapped ones in
 * hex too, and every spelling of a loopback address is the loopback host.
 */
import assert from "node:assert/strict";
import { addressSource, hostSource } from "../auth/mod.ts";

Deno.test("addressSource: an IPv6 address by its /64 whatever its spelling, a mapped IPv4 address as itself", () => {
  for (
    const spelling of [
      "2001:db8:0:1::5",
      "2001:DB8:0:1:0:0:0:5",
      "2001:0db8:0000:0001::0005",
      "2001:db8:0:1:ffff::1%eth0",
    ]
  ) {
    assert.equal(addressSource(spelling), "2001:db8:0:1::/64", spelling);
  }
  assert.equal(addressSource("192.0.2.1"), "192.0.2.1");
  assert.equal(addressSource("::ffff:192.0.2.1"), "192.0.2.1");
  assert.equal(addressSource("::ffff:c000:201"), "192.0.2.1");
  assert.equal(addressSource("::1"), "::1");
  assert.equal(addressSource("0:0:0:0:0:0:0:1"), "::1");
  assert.equal(addressSource("2001:db8:0:1::/64"), "2001:db8:0:1::/64");
});

Deno.test("hostSource: every spelling of a loopback address is one host", () => {
  for (
    const spelling of [
      "127.0.0.1",
      "127.0.0.2",
      "::1",
      "0:0:0:0:0:0:0:1",
      "::ffff:127.0.0.1",
      "::ffff:7f00:1",
    ]
  ) {
    assert.equal(hostSource(spelling), "loopback", spelling);
  }
  assert.equal(hostSource("10.0.0.1"), "10.0.0.1");
  assert.equal(hostSource("2001:db8:0:1::5"), "2001:db8:0:1::/64");
});
