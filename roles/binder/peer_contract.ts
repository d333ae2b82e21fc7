/**
 * The methods binders call on each other (not public): `binder.sync`, a
 * push of records (also as a notification), and `binder.diff`, the
 * anti-entropy round. Only a connection whose handshake role is `binder`
 * may call them (that stops accidents and casual abuse; an attacker can
 * say "binder" too). Their params are read by replication.ts, records one by one by
 * parseRecord; answers are checked here, records likewise (anti_entropy.ts).
 */
import {
  any,
  arrayOf,
  bool,
  type Contract,
  count,
  int,
  method,
  obj,
  opt,
  str,
} from "../../wire/mod.ts";
import { BUCKETS } from "./digest.ts";

const FROM_BINDERS = ["binder"] as const;

/** The replication methods. */
export const binderPeers = {
  service: "binder-peers",
  prefix: "binder.",
  methods: {
    sync: method("binder.sync", {
      params: any,
      result: obj({ merged: count }),
      notify: true,
      from: FROM_BINDERS,
      errors: ["BAD_REQUEST", "UNAUTHORIZED"],
    }),
    diff: method("binder.diff", {
      params: any,
      // The page's shape; its records are checked one by one by parseRecord.
      result: obj({
        node: str,
        ready: bool,
        buckets: arrayOf(int(0, BUCKETS - 1), BUCKETS),
        records: arrayOf(any, 1 << 20),
        next: opt(obj({ b: int(0, BUCKETS - 1), o: count })),
        authenticated: opt(bool),
        key_hash: opt(str),
      }),
      from: FROM_BINDERS,
      errors: ["BAD_REQUEST", "UNAUTHORIZED"],
    }),
  },
  events: {},
} as const satisfies Contract;
