/**
 * The broker's event loop thread asks for 0.1 ms scheduler slices while it
 * is mostly idle (roles/_slice.ts), and `DIST_SLICE_US=0` leaves the
 * kernel's default: what `/proc/<pid>/sched` shows of its main thread. Only
 * where the kernel takes custom slices (Linux 6.12+) and shows them.
 */
import assert from "node:assert/strict";
import { startDist } from "./helpers/dist.ts";

/** The main thread's slice (ns), as the kernel's scheduler debug file shows it. */
function sliceOf(pid: number): number | undefined {
  const text = Deno.readTextFileSync(`/proc/${pid}/sched`);
  const m = /^se\.slice\s*:\s*(\d+)/m.exec(text);
  return m === null ? undefined : Number(m[1]);
}

function kernelTakesSlices(): boolean {
  if (Deno.build.os !== "linux") return false;
  const [major, minor] = Deno.osRelease().split(".").map(Number);
  if (major < 6 || (major === 6 && minor < 12)) return false;
  try {
    return sliceOf(Deno.pid) !== undefined;
  } catch {
    return false;
  }
}

Deno.test({
  name: "broker: its event loop asks for 0.1 ms slices; DIST_SLICE_US=0 leaves the default",
  ignore: !kernelTakesSlices(),
  async fn() {
    const short = await startDist(["broker", "--port", "0"]);
    const plain = await startDist(["broker", "--port", "0"], { env: { DIST_SLICE_US: "0" } });
    try {
      // Asked once idle: a broker starting on a loaded machine wants a CPU more than half its
      // time and keeps the default until its load falls (checked every 250 ms).
      const deadline = Date.now() + 15_000;
      while (sliceOf(short.child.pid) !== 100_000 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(sliceOf(short.child.pid), 100_000);
      // The kernel's own default (0.7 ms or more), whatever slice the process that started it
      // had (a slice is inherited: a broker run in this test process may have left one).
      const def = sliceOf(plain.child.pid);
      assert.ok(def !== undefined && def >= 700_000, `default slice ${def} ns`);
    } finally {
      await short.stop();
      await plain.stop();
    }
  },
});
