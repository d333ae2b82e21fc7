/**
 * A real headless browser for tests of the dashboard: Debian's `chromium`
 * driven by npm `puppeteer-core` (which downloads no browser of its own).
 * Flags for a closed network: no sandbox (tests run as root), no GPU, no
 * QUIC, no first-run, background networking, component updates or sync,
 * and a fresh profile directory removed on close.
 */
import puppeteer, { type Browser } from "puppeteer-core";

/** Where chromium is: `$CHROMIUM_BIN`, else the first of the usual paths that exists. */
export function chromiumPath(): string | undefined {
  const explicit = Deno.env.get("CHROMIUM_BIN");
  const candidates = explicit ? [explicit] : ["/usr/bin/chromium", "/usr/bin/chromium-browser"];
  for (const path of candidates) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // Not there.
    }
  }
  return undefined;
}

export const CHROMIUM_FLAGS: readonly string[] = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage",
];

/** A browser and the profile directory it uses. */
export interface TestBrowser {
  browser: Browser;
  close(): Promise<void>;
}

/** Launches chromium headless with a fresh profile. */
export async function launchBrowser(executablePath: string): Promise<TestBrowser> {
  const profile = await Deno.makeTempDir({ prefix: "dist-chromium-" });
  const browser = await puppeteer.launch({
    executablePath,
    headless: true,
    args: [...CHROMIUM_FLAGS, `--user-data-dir=${profile}`],
    timeout: 30_000,
  });
  return {
    browser,
    close: async () => {
      try {
        await browser.close();
      } finally {
        await Deno.remove(profile, { recursive: true }).catch(() => {});
      }
    },
  };
}
