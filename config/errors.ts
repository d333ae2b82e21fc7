/**
 * A mistake by the user: an unknown flag, a bad value, an invalid topology
 * file. main.ts prints `dist: <message>` without a stack trace and exits 2.
 *
 * Messages are one line: capital first letter, no final period, detail after
 * a colon.
 */
export class UsageError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UsageError";
  }
}
