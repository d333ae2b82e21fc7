/**
 * The dashboard's files, embedded in the program as modules (text imports):
 * nothing is read from disk at run time, so the compiled `dist` serves them
 * as `deno run` does, and nothing comes from another site (no CDN: the page
 * works offline). The chart library is uPlot (npm `uplot`, MIT, 50 KB
 * minified, no dependencies), its browser build served as it is published.
 */
import uplotJs from "uplot/dist/uPlot.iife.min.js" with { type: "text" };
import uplotCss from "uplot/dist/uPlot.min.css" with { type: "text" };
import pageHtml from "./page.html" with { type: "text" };
import pageJs from "./page.js" with { type: "text" };
import pageCss from "./page.css" with { type: "text" };

/** One file the dashboard serves. */
export interface Asset {
  readonly type: string;
  readonly body: Uint8Array<ArrayBuffer>;
  /** A strong validator of the body, for If-None-Match. */
  readonly etag: string;
}

/** FNV-1a over the bytes: an ETag needs to differ when the body does, nothing more. */
function fnv1a(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}

/** An asset whose bytes and ETag are made when first served, not when `dist` starts. */
function asset(type: string, text: string): Asset {
  let body: Uint8Array<ArrayBuffer> | undefined;
  let etag: string | undefined;
  return {
    type,
    get body() {
      return body ??= new TextEncoder().encode(text);
    },
    get etag() {
      return etag ??= `"${fnv1a(this.body)}-${this.body.length}"`;
    },
  };
}

const JS = "text/javascript; charset=utf-8";
const CSS = "text/css; charset=utf-8";

/** The files by path. */
export const ASSETS: ReadonlyMap<string, Asset> = new Map([
  ["/", asset("text/html; charset=utf-8", pageHtml)],
  ["/assets/page.js", asset(JS, pageJs)],
  ["/assets/page.css", asset(CSS, pageCss)],
  ["/assets/uplot.js", asset(JS, uplotJs)],
  ["/assets/uplot.css", asset(CSS, uplotCss)],
]);
