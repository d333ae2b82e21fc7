/**
 * Review r47 R5: for `data_dir = "auto"` the compose and k8s exports set
 * `STATE_DIRECTORY=/var/lib/dist/data` and their notes say to "mount a volume" (compose) or "a
 * PersistentVolumeClaim" (k8s) there to keep the data. Doing what the note says breaks the
 * instance: the image runs as user 65532 and makes only /var/lib/dist its own (Containerfile), so
 * a new named volume mounted at /var/lib/dist/data — a path the image lacks — is root's (Docker
 * copies a mount point's owner from the image only where the image has that directory), and a
 * PVC is root's too unless the pod sets `fsGroup`, which the k8s export does only when it mounts
 * Secrets. The broker then cannot create its directory: `dist: Cannot use data directory …`,
 * exit 2, a restart loop — the data the note promised to keep is never written.
 *
 * Expected: the image has /var/lib/dist/data, owned by 65532; a pod of an instance with a
 * data_dir has `fsGroup: 65532`.
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";

const TOPOLOGY = `[[broker]]\nname = "b"\nport = 45512\ndata_dir = "auto"\n`;

Deno.test("r47 R5: the image makes the compose export's data volume path its user's", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist-r47-r5a-" });
  try {
    await Deno.writeTextFile(`${dir}/t.toml`, TOPOLOGY);
    const r = await runDist(["export", "compose", `${dir}/t.toml`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /STATE_DIRECTORY: \/var\/lib\/dist\/data/);
    assert.match(r.stdout, /mount a volume there/);
    const containerfile = await Deno.readTextFile(new URL("../Containerfile", import.meta.url));
    assert.match(
      containerfile,
      /mkdir -p [^\n]*\/var\/lib\/dist\/data[^\n]*chown[^\n]*65532/,
      "the image has no /var/lib/dist/data owned by 65532: a named volume mounted there, as the " +
        "export's note says, is root's, and the broker cannot write it",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("r47 R5: a k8s pod of an instance with a data_dir can write a volume mounted there", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist-r47-r5b-" });
  try {
    await Deno.writeTextFile(`${dir}/t.toml`, TOPOLOGY);
    const r = await runDist(["export", "k8s", `${dir}/t.toml`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /PersistentVolumeClaim/);
    assert.match(
      r.stdout,
      /fsGroup: 65532/,
      "no fsGroup: a PersistentVolumeClaim mounted at /var/lib/dist/data, as the export's note " +
        "says, stays root's and user 65532 cannot write it",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
