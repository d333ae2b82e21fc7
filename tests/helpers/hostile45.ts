/**
 * Helpers of hostile review 45b's tests: the live heap of this process after
 * full collections (for tests that compare it with what the broker counts).
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { sleep } from "./raw.ts";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as (o: { type: "major"; execution: "sync" }) => void;

/** This process's heap after full collections: what is live. */
export async function liveHeap(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc({ type: "major", execution: "sync" });
    await sleep(50);
  }
  return Deno.memoryUsage().heapUsed;
}

const MIB = 1024 * 1024;

/**
 * Marks this process's live heap and what the broker counts (`counted`,
 * its memory.bytes) now; the function returned says what each grew by
 * since, with a line saying so.
 */
export async function memoryMark(
  counted: () => Promise<number>,
): Promise<() => Promise<{ heap: number; count: number; say: string }>> {
  const heap0 = await liveHeap(), counted0 = await counted();
  return async () => {
    await sleep(300);
    const heap = (await liveHeap()) - heap0, count = (await counted()) - counted0;
    const say = `live heap +${(heap / MIB).toFixed(1)} MiB, counted +${
      (count / MIB).toFixed(2)
    } MiB`;
    console.log(say);
    return { heap, count, say };
  };
}
