/**
 * Whether a connection's client takes what its socket holds: the kernel's
 * send queue (Linux `TIOCOUTQ`: bytes written to the socket and not yet
 * acknowledged by the peer), so that a queue group can tell a member that
 * reads from one whose socket merely has room (hostile review 36 J3), and
 * the balancer's shares a client that pipelines and reads its answers from
 * one that never reads them (roles/balancer/shares.ts).
 *
 * A write completes as soon as the kernel takes the bytes, so the broker's
 * own counts (its queues, the writes in flight) see a member that never
 * reads as keeping up until its socket is full: on loopback about 4 MB
 * (the send buffer grows to `tcp_wmem`'s maximum), and 40 such connections
 * took 97.6 % of a group's 100,000 messages of 1 KB. The kernel knows: a
 * peer that reads acknowledges what arrives; one that does not leaves
 * everything past its receive buffer (about 120 KB) in ours, and its
 * acknowledged count stops. A socket holding more than a member that keeps
 * up may, whose peer acknowledged nothing for STALL_MS, is stalled: the
 * pick ranks it after every member that is not, and the longer stalled
 * after the more lately stalled (STALLED). One that holds
 * as much but drains counts as before, by the broker's own bytes alone, so
 * that members reading at full rate cost a pick no more.
 *
 * Reading it costs a system call (about 2 µs here), so a reading is reused:
 * the estimate is the last reading plus the bytes written since (the queue
 * can grow by no more), read again only when that passes the threshold
 * asked about and either READ_BYTES more went out or READ_MS passed. The
 * socket's descriptor is found once per connection, by its addresses,
 * among the process's descriptors (a scan when one is not found, at most
 * every SCAN_MS and 1/20 of the time).
 *
 * A member on trial: a connection whose peer has not yet acknowledged
 * 256 KiB, or on probation: not yet its receive buffer and 256 KiB more
 * (trialOf), which a queue group gives only a budget's worth
 * (group_delivery.ts), so that connections that join and never read cannot take a
 * fresh share each (hostile review 38 L6). An MQTT-over-WebSocket
 * connection is found by its upgraded socket's addresses (WsStream's),
 * like any other (38 L7: before, its members counted as keeping up while
 * their socket had room). Where a member's client can be asked something
 * it must answer (roles/broker/group_proof.ts), its answers prove it
 * instead: what the kernel acknowledged then only tells trial from
 * probation.
 *
 * Only on Linux, with `--allow-ffi` (granted, never prompted for) and read
 * access to /proc/self/fd; elsewhere, and for a connection whose socket is
 * without addresses, no socket is stalled or on trial: the broker's own counts
 * alone, as before.
 */
import { type Libc, libc } from "./libc.ts";

/** The side of a connection a sink writes to: its socket and the bytes written to it. */
export interface SocketSide {
  readonly conn: Deno.Conn;
  /** Bytes the kernel took so far (writes completed). */
  readonly bytesOut: number;
}

/** Bytes written since the last reading after which a member past the threshold is read again. */
const READ_BYTES = 16 * 1024;
/** Time after which a member past the threshold is read again, though nothing went out. */
const READ_MS = 4;
/**
 * Least time between two scans of the process's descriptors (a connection
 * that joins a group meanwhile counts by the broker's bytes alone until the
 * next): more when a scan takes longer (at most 1/20 of the time).
 */
const SCAN_MS = 10;
/** ioctl request: bytes in the socket's send queue. */
const TIOCOUTQ = 0x5411;
/**
 * A socket past the threshold whose peer acknowledged nothing for this long
 * is stalled: it ranks after every member that drains (STALLED).
 */
const STALL_MS = 10;
/** The least load of a stalled socket: past any count of bytes, short of the fan-out's "behind". */
export const STALLED = 2 ** 39;
const AF_INET = 2, AF_INET6 = 10;

interface Probe {
  side: SocketSide;
  /** The socket's descriptor; -1: not found (looked for again after the next scan). */
  fd: number;
  key: string;
  /** The scan it was looked for in. */
  scan: number;
  /** The last reading, and when (`bytesOut` then, the turn clock then). */
  unsent: number;
  bytesOutAt: number;
  readAt: number;
  /** Bytes its peer acknowledged as of the last reading, and when that last grew. */
  acked: number;
  progressAt: number;
  /**
   * What its peer acknowledged between the last two readings (at most
   * CREDIT_MAX): so much more may go out before the next reading, as a peer
   * that takes that much is not one that never reads.
   */
  credit: number;
  /**
   * What its peer has shown (trialOf): ON_TRIAL, acknowledged less than
   * TRIAL_BYTES; ON_PROBATION, less than proofBytes; 0, more: its client reads.
   */
  trial: number;
}

/**
 * What a connection's peer must have acknowledged to be off trial (256
 * KiB): twice what a client's socket takes without being read at all with
 * the default receive buffer (hostile review 38 L6). Only on probation
 * then: a client can ask for a larger buffer.
 */
const TRIAL_BYTES = 256 * 1024;
/** Stages of a connection's client (trialOf): not yet shown to read anything; shown to read little. */
export const ON_TRIAL = 2, ON_PROBATION = 1;

/**
 * What a connection's peer must have acknowledged before its client counts
 * as one that reads: 256 KiB past the most its kernel can acknowledge
 * without its client reading a byte, which is its receive buffer (hostile
 * review 38 L6: 127 KB by default; 38b M1: a client that sets SO_RCVBUF
 * gets up to twice `net.core.rmem_max`, 8 MiB here, and took 84 % of a
 * group proven at 256 KiB). Twice rmem_max as this host sets it, read once
 * (4 MiB when it cannot be read); a peer on another host with a larger one,
 * or with SO_RCVBUFFORCE, can still be acknowledged more unread.
 *
 * The peer's advertised window (TCP_INFO) does not tell more: it grew by
 * 2 MB while 1.3 MB arrived unread, and with TCP_WINDOW_CLAMP it stayed at
 * 128 KiB while 8.2 MB were acknowledged unread (measured here).
 */
const proofBytes = TRIAL_BYTES + 2 * rmemMax();

/** `net.core.rmem_max`: the most receive buffer SO_RCVBUF asks for (then doubled). */
function rmemMax(): number {
  const path = "/proc/sys/net/core/rmem_max", fallback = 4 * 1024 * 1024;
  try {
    if (Deno.build.os !== "linux") return fallback;
    if (Deno.permissions.querySync({ name: "read", path }).state !== "granted") return fallback;
    const n = Number(Deno.readTextFileSync(path).trim());
    return Number.isSafeInteger(n) && n > 0 ? Math.min(n, 2 ** 30) : fallback;
  } catch {
    return fallback;
  }
}

/** Most bytes a reading's proven drain lets go out before the next reading. */
const CREDIT_MAX = 256 * 1024;

let lib: Libc<"queue"> | null | undefined;
const probes = new WeakMap<Deno.Conn, Probe>();
/** Descriptors by their sockets' addresses, as of the last scan. */
let fds = new Map<string, number>();
let scans = 0, scannedAt = -Infinity, scanGap = SCAN_MS;
const word = new Int32Array(1), wordBytes = new Uint8Array(word.buffer);
const addr = new Uint8Array(128), addrLen = new Uint32Array(1);
const addrLenBytes = new Uint8Array(addrLen.buffer);

/** For `sys.stats` (sendQueueStats): readings, and sockets last read past the threshold. */
const counts = { readings: 0, behind: new Set<Probe>() };
/** Past this many, the sockets counted as behind are checked for closed ones. */
let pruneAt = 256;
/** The threshold last asked about: a socket holding more counts as behind in stats. */
let threshold = Infinity;

/** The C library's calls, or null where they cannot be had (libc.ts, or /proc/self/fd not readable). */
function libcHere(): Libc<"queue"> | null {
  if (lib !== undefined) return lib;
  lib = null;
  try {
    const read = Deno.permissions.querySync({ name: "read", path: "/proc/self/fd" });
    if (read.state === "granted") lib = libc("queue");
  } catch {
    lib = null;
  }
  return lib;
}

/** A clock read once per stretch of synchronous work (a fan-out of many deliveries: once). */
let now = 0, stale = true;
const expire = () => {
  stale = true;
};
function clock(): number {
  if (stale) {
    now = Date.now();
    stale = false;
    queueMicrotask(expire);
  }
  return now;
}
/** The same clock, for a queue group's other judgements of its members (group_proof.ts). */
export const turnClock = clock;

/**
 * 0 while `side`'s socket drains; past STALLED once the bytes it holds are
 * more than `past` and its peer acknowledged none for STALL_MS, the more
 * the longer it has not (then by the bytes it holds). The
 * bytes it holds are estimated as the last reading plus what was written
 * since (no more can be there), read again when that passes `past` and the
 * reading is stale. 0 where unknown. With `readFirst`, the first look at
 * a socket reads the kernel at once, so what it holds already counts (for
 * a caller that looks only now and then at a socket written to for long),
 * not only what goes out after.
 */
export function stalledLoad(
  side: SocketSide | undefined,
  past: number,
  readFirst = false,
): number {
  let p = side === undefined ? undefined : probes.get(side.conn);
  const fresh = p === undefined;
  if (p === undefined || p.fd < 0) p = probeOf(side);
  last = p;
  if (p === undefined || p.fd < 0) return 0;
  side = p.side;
  if (fresh && readFirst) read(p, side);
  const written = side.bytesOut - p.bytesOutAt;
  // On trial: read often enough that a client that reads is proven within its first few readings.
  if (p.trial > 0 && (written >= READ_BYTES || clock() - p.readAt >= READ_MS)) read(p, side);
  if (p.unsent + written < past + p.credit) return 0;
  threshold = past;
  if (written >= READ_BYTES || clock() - p.readAt >= READ_MS) read(p, side);
  const unsent = p.unsent + (side.bytesOut - p.bytesOutAt);
  const stalledFor = p.readAt - p.progressAt;
  if (unsent < past || stalledFor < STALL_MS) return 0;
  // Longer stalled ranks after (a reader pausing a moment before a peer that never reads), then
  // the bytes held: both capped so that the sum stays short of the fan-out's "behind" (2^40).
  return STALLED + Math.min(stalledFor, 2 ** 18) * 2 ** 20 + Math.min(unsent, 2 ** 20 - 1);
}

/**
 * Bytes `side`'s socket holds that its peer has not acknowledged (the
 * kernel's send queue): the last reading plus what was written since, read
 * again when READ_BYTES more went out or READ_MS passed. 0 where unknown.
 */
export function unsentBytes(side: SocketSide | undefined): number {
  const p = probeOf(side);
  if (p === undefined || p.fd < 0) return 0;
  const written = p.side.bytesOut - p.bytesOutAt;
  if (written >= READ_BYTES || clock() - p.readAt >= READ_MS) read(p, p.side);
  return p.unsent + (p.side.bytesOut - p.bytesOutAt);
}

/** The probe of `side`'s socket (its descriptor looked for again after a scan); none where unknown. */
function probeOf(side: SocketSide | undefined): Probe | undefined {
  if (side === undefined) return undefined;
  let p = probes.get(side.conn);
  if (p === undefined) {
    if (libcHere() === null) return undefined;
    p = find(side);
    probes.set(side.conn, p);
  }
  if (p.fd < 0 && (p.scan !== scans || rescan())) {
    const found = find(side);
    p.fd = found.fd;
    p.scan = found.scan;
    if (p.fd >= 0) p.bytesOutAt = side.bytesOut;
  }
  return p;
}

/**
 * How far `side`'s client is from showing that it reads: ON_TRIAL while
 * its peer has acknowledged less than TRIAL_BYTES in all, or its socket is
 * not found yet (a connection that joined since the last scan);
 * ON_PROBATION while less than proofBytes (what it took may sit unread in
 * its receive buffer); 0 past that (read from the kernel at most every
 * READ_BYTES written or READ_MS). 0 for a connection whose socket cannot
 * be asked about (not Linux, no `--allow-ffi`).
 */
export function trialOf(side: SocketSide | undefined): number {
  const p = probeOf(side);
  if (p === undefined || p.trial === 0) return 0;
  if (p.fd < 0) return p.key !== "" ? ON_TRIAL : 0;
  if (p.side.bytesOut - p.bytesOutAt >= READ_BYTES || clock() - p.readAt >= READ_MS) {
    read(p, p.side);
  }
  return p.trial;
}

/** The probe stalledLoad last looked at (undefined: none to be had). */
let last: Probe | undefined;

/**
 * How far the client of the socket stalledLoad was last asked about is
 * from showing that it reads (as {@link trialOf} says, from the reading
 * stalledLoad made): no second look-up for the member a pick just judged.
 */
export function lastTrial(): number {
  const p = last;
  if (p === undefined || p.trial === 0) return 0;
  return p.fd >= 0 ? p.trial : p.key !== "" ? ON_TRIAL : 0;
}

/** Reads the kernel's count. */
function read(p: Probe, side: SocketSide): void {
  p.bytesOutAt = side.bytesOut;
  p.readAt = clock();
  counts.readings++;
  if (lib!.ioctl(p.fd, TIOCOUTQ, wordBytes) !== 0) {
    p.fd = -1; // closed meanwhile
    p.unsent = 0;
  } else {
    p.unsent = word[0];
  }
  const acked = p.bytesOutAt - p.unsent;
  if (p.fd >= 0 && p.trial > 0) {
    p.trial = acked >= proofBytes ? 0 : acked >= TRIAL_BYTES ? ON_PROBATION : ON_TRIAL;
  }
  if (acked > p.acked) {
    p.credit = p.acked < 0 ? 0 : Math.min(acked - p.acked, CREDIT_MAX);
    p.acked = acked;
    p.progressAt = p.readAt;
  } else {
    p.credit = 0;
  }
  if (p.unsent === 0 || p.unsent < threshold) {
    counts.behind.delete(p);
  } else {
    counts.behind.add(p);
    // Connections close without telling: forget theirs before the set grows.
    if (counts.behind.size > pruneAt) pruneAt = Math.max(256, 2 * prune().size);
  }
}

/** Forgets sockets behind whose connection closed (their descriptor is gone or another's). */
function prune(): Set<Probe> {
  for (const p of counts.behind) {
    if (p.fd < 0 || keyOf(p.fd) !== p.key) counts.behind.delete(p);
  }
  return counts.behind;
}

/** Its descriptor, from the last scan (verified: numbers are reused), else after a new one. */
function find(side: SocketSide): Probe {
  const conn = side.conn;
  const key = keyOfConn(conn);
  const at = clock();
  const p: Probe = {
    side,
    fd: -1,
    key,
    scan: scans,
    unsent: 0,
    bytesOutAt: side.bytesOut,
    readAt: at,
    acked: -1,
    progressAt: at,
    credit: 0,
    trial: ON_TRIAL,
  };
  if (key === "") return p;
  let fd = fds.get(key);
  if ((fd === undefined || keyOf(fd) !== key) && rescan()) fd = fds.get(key);
  if (fd !== undefined && keyOf(fd) === key) p.fd = fd;
  p.scan = scans;
  return p;
}

/** Scans the process's descriptors again, unless it did so too lately; whether it did. */
function rescan(): boolean {
  // The turn's clock first: a socket not found asks each time it is looked at.
  if (clock() - scannedAt < scanGap) return false;
  const start = Date.now();
  const found = new Map<string, number>();
  try {
    for (const entry of Deno.readDirSync("/proc/self/fd")) {
      const fd = Number(entry.name);
      const key = keyOf(fd);
      if (key !== "") found.set(key, fd);
    }
  } catch {
    // Not readable after all: what was found stays.
  }
  fds = found;
  scans++;
  scannedAt = Date.now();
  // At most 1/20 of the time: a process with thousands of sockets scans less often.
  scanGap = Math.max(SCAN_MS, 20 * (scannedAt - start));
  return true;
}

/** "local port|remote port|remote IPv4 address" of a connected TCP socket ("" if it is none). */
function keyOf(fd: number): string {
  const c = lib!;
  addrLen[0] = addr.length;
  if (c.getsockname(fd, addr, addrLenBytes) !== 0) return "";
  const family = addr[0] | (addr[1] << 8);
  if (family !== AF_INET && family !== AF_INET6) return "";
  const local = (addr[2] << 8) | addr[3];
  addrLen[0] = addr.length;
  if (c.getpeername(fd, addr, addrLenBytes) !== 0) return "";
  const remote = (addr[2] << 8) | addr[3];
  let host = "";
  if (family === AF_INET) host = `${addr[4]}.${addr[5]}.${addr[6]}.${addr[7]}`;
  else if (isV4Mapped()) host = `${addr[20]}.${addr[21]}.${addr[22]}.${addr[23]}`;
  return `${local}|${remote}|${host}`;
}

/** Whether the IPv6 address in `addr` is an IPv4 one (::ffff:a.b.c.d). */
function isV4Mapped(): boolean {
  for (let i = 8; i < 18; i++) if (addr[i] !== 0) return false;
  return addr[18] === 0xff && addr[19] === 0xff;
}

/** The key keyOf gives its socket (IPv6 peers by ports alone). */
function keyOfConn(conn: Deno.Conn): string {
  try {
    const local = conn.localAddr as Deno.NetAddr, remote = conn.remoteAddr as Deno.NetAddr;
    if (typeof local?.port !== "number" || typeof remote?.port !== "number") return "";
    let host = remote.hostname;
    if (host.startsWith("::ffff:") && host.includes(".")) host = host.slice(7);
    else if (host.includes(":")) host = "";
    return `${local.port}|${remote.port}|${host}`;
  } catch {
    return ""; // no socket's addresses
  }
}

/**
 * For `sys.stats`: `stalled_sockets`, connections of queue group members
 * whose socket holds more than a member that keeps up may and whose peer
 * acknowledged nothing for STALL_MS (they do not read what they were
 * given), read now; `stalled_bytes`, what those sockets hold;
 * `socket_readings`, how often the kernel was asked.
 */
export function sendQueueStats(): Record<string, number> {
  let stalled = 0, bytes = 0;
  for (const p of prune()) {
    read(p, p.side);
    if (p.fd < 0 || p.unsent === 0 || p.unsent < threshold || p.readAt - p.progressAt < STALL_MS) {
      continue;
    }
    stalled++;
    bytes += p.unsent;
  }
  return { stalled_sockets: stalled, stalled_bytes: bytes, socket_readings: counts.readings };
}
