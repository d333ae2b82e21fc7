/**
 * TLS as the wire sees it: the material a listener or a dialer is given
 * (PEM text, read and checked by its owner at start), what a handshake
 * failure means said in the words of dist's flags, and the one process-wide
 * step that makes `--tls-ca` the only trust of Deno's dialers.
 *
 * Why that step: `Deno.startTls` and `Deno.connectTls` add `caCerts` to
 * Deno's root store (Mozilla's roots, or the system's with
 * `DENO_TLS_CA_STORE=system`) instead of replacing it, and they show no
 * peer certificate that dist could check itself. The store is built once
 * per process, on the first TLS use, from `DENO_TLS_CA_STORE`; a list with
 * no store in it (`,`) builds an empty one. So before a process's first TLS
 * dial, {@link exclusiveRoots} sets that variable for the moment the store
 * is built and restores it after (children spawned later do not inherit
 * it). A store built before (by something else in the process) cannot be
 * emptied: the dialer then warns once, and README says to start the
 * process with `DENO_TLS_CA_STORE=,`. `DENO_CERT` adds its certificates to
 * any store: a process with it set warns once too.
 */
import { log } from "./_log.ts";

/**
 * The TLS material of a listener or a dialer (PEM text).
 *
 * - A listener with `cert` and `key` speaks TLS; with `clientCa` too it
 *   requires a client certificate signed by one of those CAs (mutual TLS).
 * - A dialer with `ca` speaks TLS and accepts only a listener whose
 *   certificate one of those CAs signed, for the host name it dialed; with
 *   `cert` and `key` too it presents them when a listener asks.
 */
export interface TlsSettings {
  /** This side's certificate (a chain, leaf first). */
  cert?: string;
  /** The private key of `cert`. */
  key?: string;
  /** CA certificates a dialer verifies listeners against (exclusively). */
  ca?: string;
  /** CA certificates a listener verifies client certificates against; set, it requires one. */
  clientCa?: string;
}

/** Who a mutual-TLS dialer is, as its verified client certificate says. */
export interface TlsPeer {
  /** The subject, as `CN=alice, O=dist`. */
  subject: string;
  /** The subject's common name (`alice`), the identity a users file can name. */
  commonName?: string;
  /** SHA-256 fingerprint of the certificate, `AB:CD:…`. */
  fingerprint256: string;
}

/** Whether a listener with these settings speaks TLS. */
export function listensTls(tls: TlsSettings | undefined): tls is TlsSettings & {
  cert: string;
  key: string;
} {
  return tls?.cert !== undefined && tls.key !== undefined;
}

/** Whether a dialer with these settings speaks TLS. */
export function dialsTls(tls: TlsSettings | undefined): tls is TlsSettings & { ca: string } {
  return tls?.ca !== undefined;
}

const STORE_VARIABLE = "DENO_TLS_CA_STORE";
/** A store name Deno does not know: building the store with it fails, and is not kept. */
const PROBE_STORE = "dist-probe-unknown-store";
let exclusive: Promise<boolean> | undefined;

/**
 * Makes the process's TLS root store empty, so that a dialer's `caCerts`
 * (its `--tls-ca`) is all it trusts (see the module's comment). Runs once
 * per process; later calls share the answer.
 * @returns whether the store is empty now
 */
export function exclusiveRoots(): Promise<boolean> {
  return exclusive ??= emptyRootStore().then((done) => {
    if (!done) {
      log.warn(
        "Dialers trust Deno's built-in root certificates besides --tls-ca: the root store " +
          "was loaded before TLS was set up; start dist with DENO_TLS_CA_STORE=, to prevent it",
      );
    }
    if (Deno.env.get("DENO_CERT")) {
      log.warn("DENO_CERT is set: dialers trust its certificates besides --tls-ca");
    }
    return done;
  });
}

async function emptyRootStore(): Promise<boolean> {
  const before = Deno.env.get(STORE_VARIABLE);
  // Started with an empty list (by dist up, or a user): nothing to do.
  if (before !== undefined && before.split(",").every((s) => s.trim() === "")) return true;
  try {
    Deno.env.set(STORE_VARIABLE, PROBE_STORE);
    // Fails with "Unknown certificate store" only while no store is built yet.
    const probe = await startTlsOnce();
    if (!probe?.includes("Unknown certificate store")) return false;
    Deno.env.set(STORE_VARIABLE, ",");
    await startTlsOnce();
    return true;
  } finally {
    if (before === undefined) Deno.env.delete(STORE_VARIABLE);
    else Deno.env.set(STORE_VARIABLE, before);
  }
}

/**
 * Starts TLS once on a loopback connection (whose far end closes at once),
 * which makes Deno build its root store.
 * @returns the error's message, if it failed
 */
async function startTlsOnce(): Promise<string | undefined> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const accepted = listener.accept().then((c) => c.close(), () => {});
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    try {
      const tls = await Deno.startTls(tcp, { hostname: "127.0.0.1" });
      tls.close();
      return undefined;
    } catch (err) {
      try {
        tcp.close();
      } catch {
        // Consumed by startTls.
      }
      return (err as Error).message;
    } finally {
      await accepted;
    }
  } finally {
    listener.close();
  }
}

/**
 * How a dialer's TLS handshake failed: the listener speaks no TLS (`plain`), its certificate is
 * not one --tls-ca vouches for (`untrusted`), not valid now (`expired`) or not for the address
 * dialed (`name`), it wants a client certificate (`client-certificate`), or else (`handshake`).
 */
export type DialTlsFailure =
  | "plain"
  | "untrusted"
  | "expired"
  | "name"
  | "client-certificate"
  | "handshake";

/** A dialer's failed TLS handshake, in the words of dist's flags, and what kind it was. */
export function explainDialTls(
  where: string,
  err: unknown,
): { text: string; failure: DialTlsFailure } {
  const text = (err as Error)?.message ?? String(err);
  if (/InvalidContentType|corrupt message|WrongVersion|wrong version/i.test(text)) {
    return {
      text: `${where} does not speak TLS (give no --tls-ca to dial it in plain TCP)`,
      failure: "plain",
    };
  }
  if (/UnknownIssuer|unknown ca|self.signed|unable to (get|verify)/i.test(text)) {
    return {
      text: `The certificate of ${where} is not signed by a CA of --tls-ca (${short(text)})`,
      failure: "untrusted",
    };
  }
  if (/expired|NotValidYet|not yet valid/i.test(text)) {
    return {
      text: `The certificate of ${where} is not valid now (${short(text)})`,
      failure: "expired",
    };
  }
  if (/not valid for name|NotValidForName|altname/i.test(text)) {
    return {
      text: `The certificate of ${where} is not valid for its address (${short(text)})`,
      failure: "name",
    };
  }
  if (/CertificateRequired|certificate required/i.test(text)) {
    return {
      text: `${where} requires a client certificate: give --tls-cert and --tls-key`,
      failure: "client-certificate",
    };
  }
  if (/invalid peer certificate|certificate/i.test(text)) {
    return {
      text: `The certificate of ${where} is refused (${short(text)})`,
      failure: "untrusted",
    };
  }
  return { text: `TLS handshake with ${where} failed: ${short(text)}`, failure: "handshake" };
}

/** The kind of a dial's TLS failure `err` is, if it is one (see {@link explainDialTls}). */
export function dialTlsFailure(err: unknown): DialTlsFailure | undefined {
  const data = (err as { data?: unknown } | undefined)?.data;
  if (data === null || typeof data !== "object") return undefined;
  const failure = (data as { tls?: unknown }).tls;
  return typeof failure === "string" ? failure as DialTlsFailure : undefined;
}

/**
 * What a listener's failed TLS handshake means, for its one log line.
 * @returns the sentence, and whether it is worth a warning (a peer that
 * only went away is not)
 */
export function explainListenTls(err: unknown): { text: string; warn: boolean } {
  const text = (err as Error)?.message ?? String(err);
  if (/InvalidContentType|corrupt message|wrong version|WRONG_VERSION|http request/i.test(text)) {
    return {
      text: "it sent plain TCP, not TLS (a dialer without --tls-ca?)",
      warn: true,
    };
  }
  const alert = /received fatal alert: (\w+)/.exec(text)?.[1] ??
    /alert (unknown ca|bad certificate|certificate expired|[a-z ]+)/i.exec(text)?.[1];
  if (alert !== undefined) {
    return {
      text: `it refused our certificate (TLS alert ${alert}: is our CA in its --tls-ca, ` +
        `and our --tls-cert valid for the address it dialed?)`,
      warn: true,
    };
  }
  if (/eof|reset|broken pipe|connection closed|socket hang up/i.test(text)) {
    return { text: `it went away during the TLS handshake (${short(text)})`, warn: false };
  }
  return { text: `TLS handshake failed: ${short(text)}`, warn: true };
}

/** The first line of a TLS library's message, without its error-class prefix. */
function short(text: string): string {
  return text.split("\n")[0].replace(/^(InvalidData|ConnectionReset|Error|TypeError): /, "")
    .slice(0, 240);
}
