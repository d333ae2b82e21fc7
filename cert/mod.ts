/**
 * @module
 * Certificates: the `--tls-*` files a role is given, and making them.
 *
 * - `files.ts`: reads and checks a role's TLS files at start
 *   ({@link readTlsFiles}); node:crypto only, so every role loads it cheaply.
 * - `x509.ts`: makes a CA and the certificates it signs (@peculiar/x509 on
 *   WebCrypto); loaded on demand ({@link makeCa}, {@link issueCert}), as it
 *   takes about half a second to load.
 * - `command.ts`: `dist cert ca` and `dist cert issue` (main.ts loads it for
 *   `dist cert` only).
 */
import type { CaOptions, CertAndKey, IssueOptions } from "./x509.ts";

export { certNames, readTlsFiles, type TlsFileOptions } from "./files.ts";
export type { CaOptions, CertAndKey, IssueOptions } from "./x509.ts";

/** Makes a CA (see x509.ts `makeCa`); loads the certificate library on first use. */
export async function makeCa(options: CaOptions = {}): Promise<CertAndKey> {
  return (await import("./x509.ts")).makeCa(options);
}

/** Makes a certificate signed by `ca` (see x509.ts `issueCert`); loads the library on first use. */
export async function issueCert(ca: CertAndKey, options: IssueOptions): Promise<CertAndKey> {
  return (await import("./x509.ts")).issueCert(ca, options);
}
