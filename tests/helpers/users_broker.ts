/**
 * A broker process with a users file, and clients dialed as its users (the
 * attack tests of one user against another's values and shares).
 */
import { hashToken } from "../../auth/mod.ts";
import { parseAddress } from "../../config/mod.ts";
import { dial, type Peer } from "../../wire/mod.ts";
import { startDist } from "./dist.ts";
import { waitFor } from "./raw.ts";

export const ALICE = "alice-token-0123456789";
export const MALLORY = "mallory-token-0123456789";
/** alice publishes and subscribes under `/a`; mallory may publish under `/m` only. */
export const USERS = `
[users.alice]
token = "${hashToken(ALICE)}"
publish = ["/a"]
subscribe = ["/a"]

[users.mallory]
token = "${hashToken(MALLORY)}"
publish = ["/m"]
`;

export interface UsersBroker {
  /** The broker's `host:port`. */
  readonly address: string;
  /** A client holding `token`, closed by {@link UsersBroker.stop}. */
  as(token: string, onNotification?: (method: string, params: unknown) => void): Promise<Peer>;
  /** What a new subscriber holding `token` gets first on `topic` (its retained value). */
  firstValue(token: string, topic: string): Promise<unknown>;
  stop(): Promise<void>;
}

/** `dist broker --port 0 --users FILE ...flags`, FILE holding `users`. */
export async function usersBroker(users: string, flags: string[]): Promise<UsersBroker> {
  const file = await Deno.makeTempFile({ suffix: ".toml" });
  await Deno.writeTextFile(file, users, { mode: 0o600 });
  const broker = await startDist(["broker", "--port", "0", "--users", file, ...flags]);
  const peers: Peer[] = [];
  const as = async (token: string, onNotification?: (m: string, p: unknown) => void) => {
    const peer = await dial(parseAddress(broker.address), {
      role: "client",
      name: "c",
      credentials: { token },
      onNotification,
    });
    peers.push(peer);
    return peer;
  };
  return {
    address: broker.address,
    as,
    async firstValue(token, topic) {
      const got: unknown[] = [];
      const reader = await as(token, (method, params) => {
        if (method === "broker.message") got.push((params as { value: unknown }).value);
      });
      await reader.call("broker.subscribe", { topic });
      await waitFor(() => got.length > 0, 5000, `the first value on ${topic}`);
      return got[0];
    },
    async stop() {
      for (const p of peers) p.close();
      await broker.stop();
      await Deno.remove(file);
    },
  };
}
