/**
 * What `dist export`'s `--bin` and `--image` may be: a unit or a manifest
 * that names something systemd or a container runtime refuses is an error
 * here, not at deployment (hostile h48 P14: `--bin relative/dist` wrote
 * units systemd-analyze calls a fatal error, `--bin ''` wrote `ExecStart=""`,
 * `--image ''` wrote `image: ""`).
 */
import { UsageError } from "../config/mod.ts";

/** C0 and C1 controls, DEL, line and paragraph separators, bidirectional controls. */
// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

/**
 * Refuses a `--bin` systemd cannot run: empty, a path that is not absolute
 * (`relative/dist`), or one holding a control character (h48 P3: a line
 * break wrote unit lines of its own; `%` and `$` are escaped where it is
 * written). A bare name (`dist`) is looked up in systemd's own executable
 * path, as ExecStart= allows.
 *
 * @throws {UsageError}
 */
export function checkBin(bin: string): void {
  if (CONTROL.test(bin)) {
    throw new UsageError(
      `--bin ${JSON.stringify(bin)}: a path holding a control character (a line break)`,
    );
  }
  if (bin === "") throw new UsageError("--bin is empty: give the path of dist on the hosts");
  if (bin.includes("/") && !bin.startsWith("/")) {
    throw new UsageError(
      `--bin ${JSON.stringify(bin)} is a relative path: systemd runs an absolute path ` +
        `(or a bare name from its executable path), e.g. /usr/local/bin/dist`,
    );
  }
}

/**
 * An image reference as docker and Kubernetes take it: `[HOST[:PORT]/]NAME[:TAG][@DIGEST]`,
 * letters, digits and `._-/:@+` only (no space, no control character).
 */
const IMAGE = /^[A-Za-z0-9][A-Za-z0-9._\-/:@+]*$/;

/**
 * Refuses an `--image` that is no image reference (empty, a space, a line break).
 *
 * @throws {UsageError}
 */
export function checkImage(image: string): void {
  if (image.length > 1024 || !IMAGE.test(image)) {
    throw new UsageError(
      `--image ${JSON.stringify(image.slice(0, 80))} is not an image reference ` +
        `(such as dist:latest or registry.example/dist:1.0)`,
    );
  }
}
