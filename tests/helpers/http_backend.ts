/**
 * A real HTTP server (Deno.serve) in a process of its own, as a backend a
 * test can SIGKILL: `GET` answers its name, `POST` echoes the body.
 *
 * Run as a script: `deno run -A tests/helpers/http_backend.ts NAME PORT`
 * (port 0 picks one); it logs `Listening on 127.0.0.1:PORT` to stderr.
 */
import { fileURLToPath } from "node:url";

if (import.meta.main) {
  const [name, port] = Deno.args;
  Deno.serve({
    hostname: "127.0.0.1",
    port: Number(port ?? 0),
    onListen: (a) => console.error(`Listening on 127.0.0.1:${a.port}`),
  }, async (req) => {
    if (req.method === "POST") return new Response(await req.arrayBuffer());
    return new Response(name);
  });
}

/** An HTTP backend process (see the module's note). */
export interface HttpBackend {
  name: string;
  port: number;
  address: string;
  /** Sends `signal` (default SIGTERM) and waits for the exit. */
  stop(signal?: Deno.Signal): Promise<void>;
}

const SCRIPT = fileURLToPath(import.meta.url);

/** Starts a backend named `name` on `port` (0: a free one) and waits until it listens. */
export async function startHttpBackend(name: string, port = 0): Promise<HttpBackend> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SCRIPT, name, String(port)],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`HTTP backend ${name} exited before listening: ${text}`);
      text += value;
      const m = /Listening on 127\.0\.0\.1:(\d+)/.exec(text);
      if (m) {
        // Keep draining stderr so the child never blocks on a full pipe.
        (async () => {
          try {
            while (!(await reader.read()).done) { /* drained */ }
          } catch { /* killed */ }
        })();
        const bound = Number(m[1]);
        let stopped: Promise<void> | undefined;
        return {
          name,
          port: bound,
          address: `127.0.0.1:${bound}`,
          stop: (signal: Deno.Signal = "SIGTERM") =>
            stopped ??= (async () => {
              try {
                child.kill(signal);
              } catch {
                // Exited already.
              }
              await child.status;
            })(),
        };
      }
    }
  } finally {
    clearTimeout(timer);
  }
}
