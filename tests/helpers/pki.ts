/**
 * Certificates for TLS tests, made by dist's own cert/ in a temporary
 * folder: a CA and what it signs (a server for 127.0.0.1 and localhost, an
 * expired one, one for another host, clients), and a second CA with its
 * own server and client (the impostors). Made once per test file.
 */
import { join } from "node:path";
import { type CertAndKey, issueCert, makeCa } from "../../cert/x509.ts";

/** One certificate's files and PEM text. */
export interface Pair {
  cert: string;
  key: string;
  certPem: string;
  keyPem: string;
}

/** The test PKI (see the module's comment). */
export interface Pki {
  dir: string;
  /** The CA's certificate file (what dialers get as --tls-ca). */
  ca: string;
  caPem: string;
  server: Pair;
  expired: Pair;
  otherHost: Pair;
  alice: Pair;
  expiredAlice: Pair;
  /** The second CA's certificate file. */
  otherCa: string;
  impostor: Pair;
  mallory: Pair;
  /** Removes the folder. */
  remove(): Promise<void>;
}

const YEAR_AGO = () => new Date(Date.now() - 400 * 86_400_000);

/** Makes the test PKI in a new temporary folder. */
export async function makePki(): Promise<Pki> {
  const dir = await Deno.makeTempDir({ prefix: "dist-pki-" });
  const write = async (name: string, pair: CertAndKey): Promise<Pair> => {
    const files = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
    await Deno.writeTextFile(files.cert, pair.cert, { mode: 0o644 }); // Not group-writable (umask 002)
    await Deno.writeTextFile(files.key, pair.key, { mode: 0o600 });
    return { ...files, certPem: pair.cert, keyPem: pair.key };
  };
  const ca = await makeCa({ name: "dist test CA" });
  const other = await makeCa({ name: "impostor CA" });
  const local = ["127.0.0.1", "localhost"];
  const caFiles = await write("ca", ca);
  const otherFiles = await write("other-ca", other);
  return {
    dir,
    ca: caFiles.cert,
    caPem: ca.cert,
    server: await write("server", await issueCert(ca, { name: "server", hosts: local })),
    expired: await write(
      "expired",
      await issueCert(ca, { name: "expired", hosts: local, days: 30, notBefore: YEAR_AGO() }),
    ),
    otherHost: await write(
      "other-host",
      await issueCert(ca, { name: "other-host", hosts: ["example.com"] }),
    ),
    alice: await write("alice", await issueCert(ca, { name: "alice", hosts: [] })),
    expiredAlice: await write(
      "expired-alice",
      await issueCert(ca, { name: "alice", hosts: [], days: 30, notBefore: YEAR_AGO() }),
    ),
    otherCa: otherFiles.cert,
    impostor: await write("impostor", await issueCert(other, { name: "impostor", hosts: local })),
    mallory: await write("mallory", await issueCert(other, { name: "mallory", hosts: [] })),
    remove: () => Deno.remove(dir, { recursive: true }),
  };
}
