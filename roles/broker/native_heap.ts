/**
 * Gives the C heap's free pages back to the system: glibc's
 * `malloc_trim(0)`, through FFI where it is permitted (Linux; else nothing).
 * Buffers V8 frees (queued deliveries, the journal's values) are freed into
 * glibc's heap, which keeps most of them: after hostile review 41b's flood
 * (X8) RSS stayed 100–280 MiB over what the broker counts, for good.
 */
let trim: (() => void) | null | undefined;
/** Shortest time between two trims (ms): one took up to 22 ms under a flood. */
const GAP_MS = 1000;
let last = -Infinity;

/** malloc_trim(0), where it can be called, at most every GAP_MS. */
export function trimNativeHeap(): void {
  if (performance.now() - last < GAP_MS) return;
  last = performance.now();
  if (trim === undefined) {
    trim = null;
    try {
      if (
        Deno.build.os === "linux" && Deno.permissions.querySync({ name: "ffi" }).state === "granted"
      ) {
        const libc = Deno.dlopen("libc.so.6", {
          malloc_trim: { parameters: ["usize"], result: "i32" },
        });
        trim = () => libc.symbols.malloc_trim(0n);
      }
    } catch {
      // No glibc by that name: nothing to trim with.
    }
  }
  trim?.();
}
