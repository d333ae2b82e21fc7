/**
 * h48 P17: a TOML key holding controls through `\u` escapes reaches an
 * error message escaped (it cleared the terminal or reordered the line),
 * and at its own line (it was put at its table's header).
 */
import assert from "node:assert/strict";
import { parseTopology } from "../config/mod.ts";
import { ROLES } from "../roles/mod.ts";

function problems(text: string): string {
  try {
    parseTopology(text, { file: "esc.toml", roles: ROLES });
  } catch (err) {
    return (err as Error).message;
  }
  assert.fail("the topology was taken");
}

Deno.test("a topology's escaped key names are shown escaped, at their line (h48 P17)", () => {
  const message = problems(
    '"\\u001bq" = 1\n[[server]]\nname = "s"\n"\\u001b[2Jx\\u202e" = 1\n' +
      '[defaults]\n"x\\u2028" = 2\n[security]\n"\\u0085" = 1\n"\\U0001F600\\e" = 1\n',
  );
  // deno-lint-ignore no-control-regex
  assert.doesNotMatch(message, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u202e]/);
  assert.match(message, /line 1: "\\u001bq": unknown key/);
  assert.match(message, /line 4: server\."\\u001b\[2Jx\\u202e": unknown key/);
  assert.match(message, /line 6: defaults\."x\\u2028": unknown key/);
  assert.match(message, /line 8: security\."\\u0085": unknown key/);
  assert.match(message, /line 9: security\."😀\\u001b": unknown key/);
  // A plain misspelt key is as before.
  assert.match(problems('[[server]]\nname = "s"\nprot = 1\n'), /line 3: server\.prot: unknown key/);
});
