/**
 * h48 P14: `dist export systemd --bin` empty or relative, and `--image`
 * that is no image reference (empty, a line break), are refused (exit 2)
 * instead of writing units systemd refuses or a manifest with `image: ""`.
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";

const FILE = new URL("../examples/client_server.toml", import.meta.url).pathname;

Deno.test("dist export refuses an empty or relative --bin and an --image that is no reference (h48 P14)", async () => {
  const refused: [string, string, RegExp][] = [
    ["systemd", "--bin=", /^dist: --bin is empty/m],
    ["systemd", "--bin=relative/dist", /^dist: --bin "relative\/dist" is a relative path/m],
    ["compose", "--image=", /^dist: --image "" is not an image reference/m],
    ["k8s", "--image=dist:1\nx: y", /^dist: --image "dist:1\\nx: y" is not an image reference/m],
    ["compose", "--image=dist latest", /^dist: --image "dist latest" is not an image reference/m],
  ];
  for (const [target, flag, message] of refused) {
    const r = await runDist(["export", target, FILE, flag]);
    assert.equal(r.code, 2, `${target} ${flag}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.equal(r.stdout, "", "nothing written");
  }
  for (
    const [target, flag] of [
      ["systemd", "--bin=/opt/dist/bin/dist"],
      ["systemd", "--bin=dist"],
      ["compose", "--image=registry.example:5000/team/dist:1.0"],
      ["k8s", "--image=dist@sha256:0123abcd"],
    ]
  ) {
    const r = await runDist(["export", target, FILE, flag]);
    assert.equal(r.code, 0, `${target} ${flag}: ${r.stderr}`);
  }
});
