/**
 * `--log-file` on a full disk (hostile47 Q18): logtape's file sink printed
 * `[FTL] … Failed to emit a log record to sink` and a 16-line stack per
 * failed flush. Now the first failure is said once (`[ERR]`, no stack), the
 * lines are dropped and counted, the process serves on, and once there is
 * room the file is written again, stderr saying how many lines were lost.
 * The disk is a 4 MiB tmpfs mounted here: skipped where mounting is not
 * allowed (not root).
 */
import assert from "node:assert/strict";
import { startDist } from "./helpers/dist.ts";
import { fill, run, smallDisk } from "./helpers/small_disk.ts";
import { dial } from "../wire/net.ts";

const disk = Deno.build.os === "linux" ? smallDisk("dist-logfull-") : undefined;

Deno.test({
  name: "--log-file on a full disk: said once, lines counted, no stack, written again with room",
  ignore: disk === undefined,
}, async () => {
  const log = `${disk}/s.log`;
  const server = await startDist([
    "server",
    "--port",
    "0",
    "--log-level",
    "debug",
    "--log-file",
    log,
  ]);
  try {
    await fill(disk!);
    const peer = await dial({ host: "127.0.0.1", port: server.port }, {
      role: "client",
      name: "q18",
    });
    try {
      // Each answered request is a debug line (roles/_request_log.ts), 300 lines of ~150 bytes:
      // more than what little room the filler left.
      for (let i = 0; i < 300; i++) assert.equal(await peer.call("add", { a: i, b: 1 }), i + 1);
      const full = server.stderr();
      assert.doesNotMatch(full, /\[FTL\]|Failed to emit|^\s+at /m);
      const said = full.match(/\[ERR\] .*Cannot write --log-file .*No space left on device.*/g);
      assert.equal(said?.length, 1, full.slice(-2000));
      // Room again: the next line is written, and stderr says how many were lost.
      await Deno.remove(`${disk}/filler`);
      assert.equal(await peer.call("add", { a: 1, b: 1 }), 2);
      const again = server.stderr().match(/written again: (\d+) line\(s\) were dropped/);
      assert.ok(again !== null, server.stderr().slice(-2000));
      assert.ok(Number(again[1]) > 0);
      assert.match(await Deno.readTextFile(log), /add \{"a":1,"b":1\} -> 2\n$/);
    } finally {
      await peer.close();
    }
  } finally {
    await server.stop();
    run("umount", "-l", disk!);
    await Deno.remove(disk!, { recursive: true });
  }
});
