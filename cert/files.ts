/**
 * The `--tls-*` files of a role, read and checked at start, so that a
 * mistake is one `dist: …` line before anything listens: node:tls accepts
 * a key that does not match its certificate, or no certificate at all,
 * without a word (the research notes, "bad --tls-cert").
 */
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import {
  CA_RULE,
  type FileRule,
  KEY_RULE,
  PEM_RULE,
  readUserFileSync,
  UsageError,
} from "../config/mod.ts";
import type { TlsSettings } from "../wire/mod.ts";

/** The TLS options every role takes (config/spec.ts, TLS_OPTIONS). */
export interface TlsFileOptions {
  readonly tlsCert?: string;
  readonly tlsKey?: string;
  readonly tlsCa?: string;
  readonly tlsClientCa?: string;
}

/** Settings already read, by their files: every caller shares one object. */
const read = new Map<string, TlsSettings | undefined>();

/**
 * Reads and checks the TLS files the options name; undefined when they name
 * none (plain TCP).
 * @throws {UsageError} naming the flag and the file: missing or unreadable,
 * not PEM, a key that does not match, a certificate out of its validity
 */
export function readTlsFiles(options: TlsFileOptions): TlsSettings | undefined {
  const key = JSON.stringify([options.tlsCert, options.tlsKey, options.tlsCa, options.tlsClientCa]);
  if (read.has(key)) return read.get(key);
  const settings = check(options);
  read.set(key, settings);
  return settings;
}

function check(options: TlsFileOptions): TlsSettings | undefined {
  const { tlsCert, tlsKey, tlsCa, tlsClientCa } = options;
  if (!tlsCert && !tlsKey && !tlsCa && !tlsClientCa) return undefined;
  if (!tlsCert !== !tlsKey) {
    throw new UsageError(
      `--tls-cert and --tls-key go together: give ${tlsCert ? "--tls-key" : "--tls-cert"} too`,
    );
  }
  if (tlsClientCa && !tlsCert) {
    throw new UsageError(
      "--tls-client-ca makes a listener require client certificates: " +
        "give it --tls-cert and --tls-key too",
    );
  }
  const settings: TlsSettings = {};
  if (tlsCert && tlsKey) {
    settings.cert = readPem("--tls-cert", tlsCert, "CERTIFICATE");
    settings.key = readPem("--tls-key", tlsKey, "PRIVATE KEY", KEY_RULE); // Checked (N9).
    checkPair(tlsCert, settings.cert, tlsKey, settings.key);
  }
  if (tlsCa) settings.ca = readCaBundle("--tls-ca", tlsCa);
  if (tlsClientCa) settings.clientCa = readCaBundle("--tls-client-ca", tlsClientCa);
  return settings;
}

/** A PEM file's text, with at least one block whose label ends with `label`. */
function readPem(flag: string, path: string, label: string, rule: FileRule = PEM_RULE): string {
  let text: string;
  try {
    text = readUserFileSync(flag, path, rule); // Bounded (h48 P1).
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`${flag} ${path}: cannot read it: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (!new RegExp(`-----BEGIN [A-Z ]*${label}-----`).test(text)) {
    throw new UsageError(`${flag} ${path}: no PEM ${label.toLowerCase()} in it`);
  }
  return text;
}

/** The certificate and key of one side: they parse, match, and the certificate is valid now. */
function checkPair(certPath: string, certPem: string, keyPath: string, keyPem: string): void {
  const cert = parseCert("--tls-cert", certPath, firstBlock(certPem, "CERTIFICATE"));
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw new UsageError(`--tls-key ${keyPath}: not a private key: ${(err as Error).message}`);
  }
  if (!cert.checkPrivateKey(key)) {
    throw new UsageError(`--tls-key ${keyPath} is not the key of --tls-cert ${certPath}`);
  }
  checkValidity("--tls-cert", certPath, cert);
}

/** A file of one or more CA certificates, each parsed and valid now. */
function readCaBundle(flag: string, path: string): string {
  // Whoever may write it picks whom this side trusts: a client CA planted is any user (N9).
  const text = readPem(flag, path, "CERTIFICATE", CA_RULE);
  for (const block of blocks(text, "CERTIFICATE")) {
    checkValidity(flag, path, parseCert(flag, path, block));
  }
  return text;
}

function parseCert(flag: string, path: string, pem: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new UsageError(`${flag} ${path}: not a certificate: ${(err as Error).message}`);
  }
}

function checkValidity(flag: string, path: string, cert: X509Certificate): void {
  const now = Date.now();
  if (Date.parse(cert.validTo) < now) {
    throw new UsageError(`${flag} ${path}: the certificate expired on ${cert.validTo}`);
  }
  if (Date.parse(cert.validFrom) > now) {
    throw new UsageError(`${flag} ${path}: the certificate is not valid before ${cert.validFrom}`);
  }
}

function blocks(text: string, label: string): string[] {
  const re = new RegExp(`-----BEGIN ${label}-----[\\s\\S]*?-----END ${label}-----`, "g");
  return text.match(re) ?? [];
}

function firstBlock(text: string, label: string): string {
  return blocks(text, label)[0] ?? text;
}

/**
 * Whether `cert` names `host` among its subject alternative names (one `*.`
 * label for a DNS name), as TLS clients check it. Read here rather than with
 * `checkHost`, which in Deno's node:crypto also takes the subject's common
 * name (dist names its certificates after their instance).
 */
export function certNames(cert: X509Certificate, host: string): boolean {
  const names = (cert.subjectAltName ?? "").split(", ");
  if (isIP(host)) return names.includes(`IP Address:${host}`);
  const h = host.toLowerCase();
  const dot = h.indexOf(".");
  return names.some((n) => {
    if (!n.startsWith("DNS:")) return false;
    const dns = n.slice(4).toLowerCase();
    return dns === h || (dns.startsWith("*.") && dot > 0 && h.slice(dot) === dns.slice(1));
  });
}
