/**
 * One spelling per address. The system's resolver (getaddrinfo, as
 * `Deno.connect` calls it) takes an IPv4 address in any of inet_aton's
 * forms (`127.0.0.1`, `127.1`, `0x7f000001`, `2130706433`, `0177.0.0.1`,
 * `0x07f000001` …: without end, leading zeros) and an IPv6 one in any case,
 * with or without leading zeros and `::`, and an IPv4 address mapped into
 * IPv6 (`::ffff:127.0.0.1`, `::ffff:7f00:1`) reaches the same IPv4 socket.
 * Where an address is a key (a binder's instance id, a balancer's backend),
 * each spelling was one more instance of the same server (review45 R7: 16
 * registrations of one server took 16 shares of the load), so the binder and
 * the balancer key them by {@link canonicalHost}. Host names stay names
 * (lowercased: DNS ignores case); what they resolve to is the resolver's.
 */

/** The value of one inet_aton part (decimal, 0-octal or 0x-hex), or -1. */
function atonPart(part: string): number {
  let n: number;
  if (/^0[xX][0-9a-fA-F]+$/.test(part)) n = parseInt(part.slice(2), 16);
  else if (/^0[0-7]*$/.test(part)) n = part.length === 1 ? 0 : parseInt(part.slice(1), 8);
  else if (/^[1-9][0-9]*$/.test(part)) n = Number(part);
  else return -1;
  // Leading zeros may make a part any length: a value past 2^32 is no address (a name, then).
  return Number.isSafeInteger(n) && n <= 0xffff_ffff ? n : -1;
}

/**
 * An IPv4 address in inet_aton's forms (`a`, `a.b`, `a.b.c`, `a.b.c.d`, each
 * part decimal, octal or hex; the last part fills the bytes left) as a
 * 32-bit number, or undefined when `text` is not one.
 */
export function parseIPv4(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length > 4) return undefined;
  let value = 0;
  for (let i = 0; i < parts.length; i++) {
    const n = atonPart(parts[i]);
    if (n < 0) return undefined;
    const last = i === parts.length - 1;
    const bytes = last ? 4 - i : 1;
    if (n >= 2 ** (8 * bytes)) return undefined;
    value = last ? value * 2 ** (8 * bytes) + n : value * 256 + n;
  }
  return value;
}

/** Dotted decimal of a 32-bit number. */
function dotted(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** The 8 groups of an IPv6 address (inet_pton's forms, any case), or undefined. */
export function parseIPv6(text: string): number[] | undefined {
  if (!/^[0-9A-Fa-f:.]+$/.test(text) || !text.includes(":")) return undefined;
  let head = text;
  const tail: number[] = [];
  const lastColon = text.lastIndexOf(":");
  if (text.includes(".", lastColon)) {
    // An IPv4 tail: strict dotted decimal, as inet_pton takes it.
    const v4 = text.slice(lastColon + 1);
    if (
      !/^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/.test(v4)
    ) {
      return undefined;
    }
    const n = parseIPv4(v4)!;
    tail.push(n >>> 16, n & 0xffff);
    head = text.slice(0, lastColon + 1);
    // "…:" left by the tail: "::" stays "::", "a:" loses its colon.
    if (!head.endsWith("::")) head = head.slice(0, -1);
  }
  const halves = head.split("::");
  if (halves.length > 2) return undefined;
  const groups = (s: string): number[] | undefined => {
    if (s === "") return [];
    const out: number[] = [];
    for (const g of s.split(":")) {
      if (!/^[0-9A-Fa-f]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const left = groups(halves[0]);
  const right = halves.length === 2 ? groups(halves[1]) : [];
  if (left === undefined || right === undefined) return undefined;
  const given = left.length + right.length + tail.length;
  if (halves.length === 1) return given === 8 ? [...left, ...tail] : undefined;
  if (given > 7) return undefined;
  return [...left, ...new Array(8 - given).fill(0), ...right, ...tail];
}

/** RFC 5952's text of 8 groups: lowercase, no leading zeros, the longest run of zeros as `::`. */
function ipv6Text(g: number[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

/**
 * The one spelling of `host`: an IPv4 address in dotted decimal (from any
 * of inet_aton's forms), an IPv4-mapped IPv6 address as its IPv4 address,
 * another IPv6 address in RFC 5952's form (a `%zone` kept as it is), a
 * host name lowercased. Brackets around an IPv6 address are dropped.
 */
export function canonicalHost(host: string): string {
  let h = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  let zone = "";
  const percent = h.indexOf("%");
  if (percent >= 0) [h, zone] = [h.slice(0, percent), h.slice(percent)];
  const v4 = zone === "" ? parseIPv4(h) : undefined;
  if (v4 !== undefined) return dotted(v4);
  const v6 = parseIPv6(h);
  if (v6 === undefined) return host.toLowerCase();
  if (zone === "" && v6.slice(0, 5).every((x) => x === 0) && v6[5] === 0xffff) {
    return dotted(v6[6] * 65536 + v6[7]);
  }
  return ipv6Text(v6) + zone;
}

/**
 * Why no client could dial `host` as an instance's address, or undefined:
 * an unspecified address (`0.0.0.0/8`, `::`: Linux dials the dialer's own
 * machine), the IPv4 broadcast address, or a multicast one (224.0.0.0/4,
 * ff00::/8). A name is never refused here. (hostile47 Q20: such addresses
 * were registered, and a binder's down-check of one dialed its own machine.)
 */
export function undialableHost(host: string): string | undefined {
  const canonical = canonicalHost(host);
  const v4 = /^\d+\.\d+\.\d+\.\d+$/.test(canonical) ? parseIPv4(canonical) : undefined;
  if (v4 !== undefined) {
    if (v4 >>> 24 === 0) return "an unspecified address (0.0.0.0/8)";
    if (v4 === 0xffff_ffff) return "the broadcast address";
    if (v4 >>> 28 === 0xe) return "a multicast address (224.0.0.0/4)";
    return undefined;
  }
  const v6 = parseIPv6(canonical.split("%")[0]);
  if (v6 === undefined) return undefined;
  if (v6.every((g) => g === 0)) return "the unspecified address (::)";
  if (v6[0] >>> 8 === 0xff) return "a multicast address (ff00::/8)";
  return undefined;
}
