/**
 * The C library for every module that calls it: raw_tcp.ts and
 * raw_epoll.ts (the balancer's sockets), send_queue.ts (a socket's unsent
 * bytes), obs/heap_trim.ts (the C heap), roles/_slice.ts (scheduler slices)
 * and roles/_stderr.ts (a non-blocking stderr). Each did its own `dlopen`
 * and its own checks before.
 *
 * {@link libc} gives a set of calls, bound at its first use and kept, or
 * null where they cannot be had: not Linux, `--allow-ffi` not granted
 * (asked once, never prompted for), or no `libc.so.6` (musl); each caller
 * then does without, as before. The sets are bound apart because binding a
 * call costs the runtime time at start: all 33 at once took 13–76 ms against
 * 0.2–4.5 ms for two (loaded 2-core machine), and every process trims its
 * heap while only a balancer uses the sockets.
 */

/** Shared by two sets. */
const getsockname = { parameters: ["i32", "buffer", "buffer"], result: "i32" } as const;
const getpeername = { parameters: ["i32", "buffer", "buffer"], result: "i32" } as const;

/** The sets of calls, by name. */
const SETS = {
  /** The balancer's sockets (raw_tcp.ts, raw_epoll.ts). */
  sockets: {
    socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
    setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
    getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
    getsockname,
    getpeername,
    bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
    listen: { parameters: ["i32", "i32"], result: "i32" },
    accept4: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
    connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
    // ssize_t read as its low 32 bits (counts here are at most 64 KiB): a 64-bit result is a
    // BigInt, allocated per call. Every size_t is given as a BigInt (raw_tcp.ts sizeT).
    send: { parameters: ["i32", "buffer", "usize", "i32"], result: "i32" },
    recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "i32" },
    shutdown: { parameters: ["i32", "i32"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
    epoll_create1: { parameters: ["i32"], result: "i32" },
    eventfd: { parameters: ["u32", "i32"], result: "i32" },
    timerfd_create: { parameters: ["i32", "i32"], result: "i32" },
    timerfd_settime: { parameters: ["i32", "i32", "buffer", "pointer"], result: "i32" },
    // An eventfd's counter: 8 bytes, read or written whole.
    read: { parameters: ["i32", "buffer", "usize"], result: "i32" },
    write: { parameters: ["i32", "buffer", "usize"], result: "i32" },
    epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
    epoll_poll: { name: "epoll_wait", parameters: ["i32", "buffer", "i32", "i32"], result: "i32" },
    epoll_wait: {
      parameters: ["i32", "buffer", "i32", "i32"],
      result: "i32",
      nonblocking: true,
    },
    inet_pton: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
    inet_ntop: { parameters: ["i32", "buffer", "buffer", "u32"], result: "pointer" },
    strerror: { parameters: ["i32"], result: "pointer" },
    __errno_location: { parameters: [], result: "pointer" },
  },
  /** A socket's unsent bytes and its addresses (send_queue.ts). */
  queue: {
    ioctl: { parameters: ["i32", "u32", "buffer"], result: "i32" },
    getsockname,
    getpeername,
  },
  /** A descriptor's flags (roles/_stderr.ts). */
  fcntl: { fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" } },
  /** System calls glibc has no wrapper for: sched_setattr (roles/_slice.ts). */
  syscall: { syscall: { parameters: ["i64", "i64", "buffer", "i64"], result: "i64" } },
  /** The C heap (obs/heap_trim.ts): glibc's, mallinfo2 2.33+. */
  heap: {
    malloc_trim: { parameters: ["usize"], result: "i32" },
    // `struct mallinfo2`: ten size_t.
    mallinfo2: {
      parameters: [],
      result: {
        struct: [
          "usize",
          "usize",
          "usize",
          "usize",
          "usize",
          "usize",
          "usize",
          "usize",
          "usize",
          "usize",
        ],
      },
    },
  },
} as const satisfies Record<string, Deno.ForeignLibraryInterface>;

type Sets = typeof SETS;

/** The calls of one set. */
export type Libc<S extends keyof Sets> = Deno.DynamicLibrary<Sets[S]>["symbols"];

let allowed: boolean | undefined;
const bound = new Map<keyof Sets, unknown>();

/** The calls of set `name`, or null where they cannot be had (see the module). */
export function libc<S extends keyof Sets>(name: S): Libc<S> | null {
  if (bound.has(name)) return bound.get(name) as Libc<S> | null;
  let calls: Libc<S> | null = null;
  try {
    allowed ??= Deno.build.os === "linux" &&
      Deno.permissions.querySync({ name: "ffi" }).state === "granted";
    if (allowed) calls = Deno.dlopen("libc.so.6", SETS[name]).symbols as Libc<S>;
  } catch {
    calls = null; // No libc by that name (musl), a call it lacks (an older glibc), or FFI refused.
  }
  bound.set(name, calls);
  return calls;
}
