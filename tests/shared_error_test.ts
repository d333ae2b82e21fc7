/**
 * Refusals made by the thousand share one error per message (wire/shared_error.ts):
 * making an Error costs 1.4-2 µs here, a third of the balancer's CPU under
 * hostile41a's W8 flood when each refused request built its own; the
 * connection table (wire/sources.ts) built one per refused connection.
 */
import assert from "node:assert/strict";
import { DistError } from "../wire/errors.ts";
import { sharedError } from "../wire/shared_error.ts";
import { SourceTable } from "../wire/sources.ts";
import { DescriptorAccount } from "../wire/descriptors.ts";

Deno.test("sharedError: the same words give the same error, other words another", () => {
  const a = sharedError("OVERLOADED", "Queue full");
  assert.ok(a instanceof DistError);
  assert.equal(a.code, "OVERLOADED");
  assert.equal(sharedError("OVERLOADED", "Queue full"), a);
  const b = sharedError("OVERLOADED", "Something else");
  assert.notEqual(b, a);
  assert.equal(sharedError("OVERLOADED", "Queue full"), a, "two messages in turn keep both");
  assert.notEqual(sharedError("UNAVAILABLE", "Queue full"), a, "by code too");
});

Deno.test("sources: connections refused for one reason share one error", () => {
  const table = new SourceTable({
    max: 2,
    perSource: 1,
    account: new DescriptorAccount({ limit: 100_000 }),
  });
  assert.ok(!(table.admit("10.0.0.1", () => {}) instanceof DistError));
  const first = table.admit("10.0.0.1", () => {});
  const second = table.admit("10.0.0.1", () => {});
  assert.ok(first instanceof DistError && second instanceof DistError);
  assert.match(first.message, /per source/);
  assert.equal(second, first);
  assert.equal(table.stats().refused_source, 2);
});
