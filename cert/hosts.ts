/**
 * What `dist cert issue --host` takes: an IP address, or a DNS name of
 * letter-digit-hyphen labels of 1 to 63 characters (`*.` only as the
 * leftmost label), as mkcert checks; anything else makes a certificate no
 * dialer can match, found only at the first handshake (hostile h48 P16:
 * `--host 'a b,1.2.3.4.5'` wrote `DNS:a b, DNS:1.2.3.4.5`).
 */
import { isIP } from "node:net";

const LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** Why `host` cannot be a certificate's name, or undefined when it can. */
export function hostProblem(host: string): string | undefined {
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  if (isIP(bare) !== 0) return undefined;
  if (bare !== host) return "is not an IPv6 address";
  if (host.length > 253) return "is longer than a DNS name's 253 characters";
  const labels = host.split(".");
  for (const [i, label] of labels.entries()) {
    if (label === "*" && i === 0 && labels.length > 2) continue;
    if (label.length > 63) return `has a label of ${label.length} characters (at most 63)`;
    if (!LABEL.test(label)) {
      return label === "*"
        ? "has a wildcard that is not the leftmost label of a name of three or more"
        : "is neither an IP address nor a DNS name (letters, digits and inner hyphens, " +
          "labels of 1 to 63 characters between dots)";
    }
  }
  // 1.2.3.4.5: all digits in its last label is no DNS name (RFC 3696 2) and no address either.
  if (/^\d+$/.test(labels[labels.length - 1])) return "is neither an IP address nor a DNS name";
  return undefined;
}
