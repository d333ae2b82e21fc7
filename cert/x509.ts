/**
 * Making certificates without openssl: a CA and the certificates it signs,
 * ECDSA P-256 on WebCrypto through @peculiar/x509 (which needs
 * reflect-metadata loaded first). Keys are written as PKCS#8 PEM, which
 * Deno's TLS, node:tls, openssl and Python's ssl all read.
 *
 * Loaded only by what makes certificates (`dist cert`, `dist up` with
 * `tls = "auto"`): the library takes about half a second to load.
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { createPrivateKey, type KeyObject } from "node:crypto";
import { isIP } from "node:net";

x509.cryptoProvider.set(crypto);

const EC_P256 = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY_MS = 86_400_000;
/** Backdating, so that a clock a little behind still accepts a new certificate. */
const BACKDATE_MS = 5 * 60_000;

/** A certificate and its private key, PEM. */
export interface CertAndKey {
  cert: string;
  key: string;
}

/** What {@link makeCa} makes. */
export interface CaOptions {
  /** The CA's common name (default "dist CA"). */
  name?: string;
  /** Days it is valid (default 3650). */
  days?: number;
}

/** Makes a self-signed CA that may sign leaf certificates only (path length 0). */
export async function makeCa(options: CaOptions = {}): Promise<CertAndKey> {
  const keys = await crypto.subtle.generateKey(EC_P256, true, ["sign", "verify"]);
  const notBefore = new Date(Date.now() - BACKDATE_MS);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: distinguishedName(options.name ?? "dist CA"),
    notBefore,
    notAfter: new Date(notBefore.getTime() + (options.days ?? 3650) * DAY_MS),
    keys,
    signingAlgorithm: EC_P256,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: cert.toString("pem") + "\n", key: await pkcs8Pem(keys.privateKey) };
}

/** What {@link issueCert} makes. */
export interface IssueOptions {
  /** The certificate's common name: an instance or user name. */
  name: string;
  /** Host names and IP addresses it is valid for (its subject alternative names). */
  hosts: string[];
  /** Days it is valid (default 825, the most browsers accept). */
  days?: number;
  /** Start of validity (default now, backdated 5 minutes); tests make expired ones. */
  notBefore?: Date;
}

/**
 * Makes a certificate signed by `ca`, for a server and a client alike
 * (extended key usage serverAuth and clientAuth).
 * @throws {Error} when the CA's key is not one WebCrypto can sign with (EC P-256/P-384, RSA)
 */
export async function issueCert(ca: CertAndKey, options: IssueOptions): Promise<CertAndKey> {
  const caCert = new x509.X509Certificate(ca.cert);
  const signing = await importSigningKey(ca.key);
  const keys = await crypto.subtle.generateKey(EC_P256, true, ["sign", "verify"]);
  const notBefore = options.notBefore ?? new Date(Date.now() - BACKDATE_MS);
  const names = options.hosts.map((host) => {
    const bare = host.replace(/^\[(.*)\]$/, "$1");
    return isIP(bare)
      ? { type: "ip" as const, value: bare }
      : { type: "dns" as const, value: host };
  });
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: distinguishedName(options.name),
    issuer: caCert.subject,
    notBefore,
    notAfter: new Date(notBefore.getTime() + (options.days ?? 825) * DAY_MS),
    signingKey: signing.key,
    publicKey: keys.publicKey,
    signingAlgorithm: signing.algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      // A client's certificate may name no host; an empty list is not allowed (RFC 5280).
      ...(names.length > 0 ? [new x509.SubjectAlternativeNameExtension(names)] : []),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: cert.toString("pem") + "\n", key: await pkcs8Pem(keys.privateKey) };
}

/** The CA's key (PKCS#8, SEC1 or PKCS#1 PEM) as a WebCrypto signing key. */
async function importSigningKey(
  pem: string,
): Promise<{ key: CryptoKey; algorithm: EcdsaParams & EcKeyImportParams | RsaHashedImportParams }> {
  let object: KeyObject;
  try {
    object = createPrivateKey(pem);
  } catch (err) {
    throw new Error(`Not a private key: ${(err as Error).message}`);
  }
  const der = new Uint8Array(object.export({ format: "der", type: "pkcs8" }));
  const details = object.asymmetricKeyDetails;
  let algorithm;
  if (object.asymmetricKeyType === "ec" && details?.namedCurve === "prime256v1") {
    algorithm = EC_P256;
  } else if (object.asymmetricKeyType === "ec" && details?.namedCurve === "secp384r1") {
    algorithm = { name: "ECDSA", namedCurve: "P-384", hash: "SHA-384" };
  } else if (object.asymmetricKeyType === "rsa") {
    algorithm = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
  } else {
    throw new Error(
      `Cannot sign with a ${object.asymmetricKeyType} key` +
        `${details?.namedCurve ? ` (${details.namedCurve})` : ""}: use EC P-256, P-384 or RSA`,
    );
  }
  const key = await crypto.subtle.importKey("pkcs8", der, algorithm, false, ["sign"]);
  return { key, algorithm };
}

/** `CN=name`, its special characters escaped (RFC 4514). */
function distinguishedName(commonName: string): string {
  return `CN=${commonName.replace(/([,+"\\<>;=])/g, "\\$1").replace(/^([ #])/, "\\$1")}`;
}

/** A random positive 128-bit serial number, in hex. */
function serial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] &= 0x7f;
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function pkcs8Pem(key: CryptoKey): Promise<string> {
  const der = new Uint8Array(await crypto.subtle.exportKey("pkcs8", key));
  const b64 = btoa(String.fromCharCode(...der)).match(/.{1,64}/g)!.join("\n");
  return `-----BEGIN PRIVATE KEY-----\n${b64}\n-----END PRIVATE KEY-----\n`;
}
