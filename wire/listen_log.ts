/**
 * What a listener logs about a connection that did not get as far as a
 * Peer (net.ts): its address before it is framed, and why its hello failed.
 */
import type { FramedConn } from "./conn.ts";
import { foreignBytes } from "./foreign.ts";
import { cut, log, warnPeer } from "./_log.ts";
import { hostPort } from "./transport.ts";

/**
 * Logs why `framed`'s hello failed with `err`: a warning when it speaks TLS
 * to a listener that does not, or not the dist protocol at all (what it
 * sent, cut); else at debug (a timeout, a bad or refused hello, said there).
 */
export function logFailedHello(framed: FramedConn, err: unknown): void {
  const foreign = foreignBytes(framed.head, framed.maxFrame);
  if (foreign !== undefined && foreign.startsWith("a TLS")) {
    warnPeer(
      "Connection from {remote} speaks TLS (it sent {what}), this listener does not: " +
        "give it --tls-cert and --tls-key, or the dialer no --tls-ca; closed",
      { remote: framed.remoteAddress, what: foreign },
    );
  } else if (foreign !== undefined) {
    warnPeer("Connection from {remote} does not speak the dist protocol (it sent {what}); closed", {
      remote: framed.remoteAddress,
      what: foreign,
    });
  } else {
    log.debug("Handshake from {remote} failed: {error}", {
      remote: framed.remoteAddress,
      error: cut(String(err)),
    });
  }
}

/** The peer's address as `host:port` (for logs), before it is framed. */
export function remoteOf(conn: Deno.Conn): string {
  try {
    const a = conn.remoteAddr as Deno.NetAddr;
    return hostPort(a.hostname, a.port);
  } catch {
    return "unknown";
  }
}
