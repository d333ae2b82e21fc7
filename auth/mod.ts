/**
 * @module
 * Authentication and authorisation (issue 15): who a dialer is and what it
 * may do. The wire carries the dialer's proof (or, from older dialers and
 * MQTT, its secret) and asks a listener's Authenticator
 * (wire/credentials.ts); this folder decides.
 *
 * - `passwords.ts` what a users file keeps of a password or token (keys
 *   that check a proof, wire/scram.ts), constant-time comparisons, and the
 *   bounded hashing slots;
 * - `users.ts` the users file (`--users FILE`), checked line by line;
 * - `permissions.ts` allow and deny lists per kind (roles, methods, topics,
 *   services), deny beating allow, and the checks;
 * - `access.ts` those checks as the dispatch point asks them;
 * - `gate.ts` the listener's authenticator: proofs (the challenge hello),
 *   tokens, passwords, certificate subjects; `records.ts` the failures per
 *   host and user, and the growing delay that makes guessing expensive;
 * - `unknown_names.ts` the salt and cost a challenge gives a name that is
 *   no user (told apart from a user's by neither);
 * - `sources.ts` whose a connection is (its user, or its address's source);
 * - `options.ts` the `--token`, `--user`, `--password`, `--users` options and
 *   what a role makes of them;
 * - `passwd.ts` `dist passwd`, which writes users file entries.
 */
export { userAccess } from "./access.ts";
export { DEFAULT_DELAYS, type DelayOptions, Gate, type GateOptions } from "./gate.ts";
export {
  addressSource,
  clientSource,
  hostSource,
  machineSource,
  TOKEN_USER,
  userSource,
} from "./sources.ts";
export {
  DEFAULT_COST,
  hashPassword,
  HashSlots,
  hashToken,
  newToken,
  parsePasswordHash,
  verifyPassword,
} from "./passwords.ts";
export { Grants, noPermissions, type Permissions, type Rule } from "./permissions.ts";
export { isUserName, loadUsers, parseUsers, type UserEntry, type Users } from "./users.ts";
