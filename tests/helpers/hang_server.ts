/**
 * Child-process fixture: a dist listener on 127.0.0.1 port 0 that prints its
 * port on stdout, answers `echo` with its params and never answers `hang`.
 * It runs until killed.
 */
import { listen } from "../../wire/mod.ts";

const listener = listen({
  port: 0,
  role: "server",
  name: "hang",
  onRequest: (method, params) => {
    if (method === "hang") return new Promise(() => {});
    return params;
  },
});
console.log(listener.addr.port);
