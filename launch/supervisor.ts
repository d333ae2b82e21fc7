/**
 * Running a plan: each instance a child process (a copy of this
 * executable), started once what it waits for is ready, its output
 * multiplexed, restarted by its policy with backoff, and stopped in reverse
 * start order (dependents first) with SIGTERM, then SIGKILL after the grace
 * time. When a process is ready (its ready line, its `sys.ping`) is
 * readiness.ts's to tell.
 */
import { formatAddress, formatDuration, type Instance, toSnake } from "../config/mod.ts";
import type { RoleInfo } from "../config/mod.ts";
import type { Output } from "./output.ts";
import { childArgs, type Plan, type RemoteDependency } from "./plan.ts";
import { checksAny, childEnv, launcherCredentials } from "./secrets.ts";
import { launcherTls } from "./tls.ts";
import { busyPort } from "./ports.ts";
import { waitReady } from "./probe.ts";
import { pumpOutput, type ReadinessHooks, watchReady } from "./readiness.ts";
import { decideRestart, describeExit, type Exit, failed } from "./restart.ts";
import { LAUNCHER_ENV, type SelfCommand, selfCommand } from "./self.ts";
import type { StateWriter } from "./state.ts";
import { seconds, Unit, verdict } from "./unit.ts";
import { killAll, stopInOrder } from "./stopping.ts";

/** How long, after a child exits, its output may take to drain before the exit is handled (ms). */
const IO_DRAIN_MS = 1000;

/** How a {@link Supervisor} runs. */
export interface SupervisorOptions {
  /** The role table (option specs, for command lines). */
  roles: Record<string, RoleInfo>;
  /** Every instance of the topology by name (references may name any). */
  byName: Map<string, Instance>;
  output: Output;
  /** Time between SIGTERM and SIGKILL when stopping an instance (ms). */
  graceMs: number;
  /** How long an instance may take to become ready (ms). */
  readyTimeoutMs: number;
  /** Stop everything after this long (ms). */
  durationMs?: number;
  /** Aborted to stop (SIGINT/SIGTERM); its reason is shown. */
  signal: AbortSignal;
  /** Aborted to kill every child at once (a second Ctrl-C). */
  kill?: AbortSignal;
  state?: StateWriter;
  /** How to start a copy of this executable (default: {@link selfCommand}). */
  command?: SelfCommand;
  /** The dashboard's URL, said with the "All ready" line. */
  dashboard?: string;
  /** Where the launcher's failures go (default: stderr, as `dist: …`). */
  error?: (line: string) => void;
}

/** Runs a {@link Plan} until it is told to stop, its duration ends or every instance has ended. */
export class Supervisor {
  #plan: Plan;
  #options: SupervisorOptions;
  #units: Unit[];
  #byName: Map<string, Unit>;
  #command: SelfCommand;
  /** Ports that instances configured with port 0 actually got. */
  #ports = new Map<string, number>();
  #remote = new Map<string, Promise<void>>();
  #halt = new AbortController();
  #stop = Promise.withResolvers<string>();
  #stopping = false;
  #fatal?: string;
  #failures: string[] = [];
  /** Every instance was killed at once (a second Ctrl-C). */
  #killed = false;
  #t0 = performance.now();
  /** What readiness.ts tells this supervisor (a process is ready, a port-0 port). */
  #readiness: ReadinessHooks;
  /** Whether any instance of the topology checks credentials (secrets.ts childEnv). */
  #secured: boolean;

  constructor(plan: Plan, options: SupervisorOptions) {
    this.#plan = plan;
    this.#options = options;
    this.#readiness = {
      output: options.output,
      readyTimeoutMs: options.readyTimeoutMs,
      halt: this.#halt.signal,
      onReady: (unit) => this.#markReady(unit),
      onPort: (unit, port) => this.#ports.set(unit.name, port),
    };
    this.#units = plan.instances.map((p) => new Unit(p));
    this.#byName = new Map(this.#units.map((u) => [u.name, u]));
    this.#command = options.command ?? selfCommand();
    this.#secured = checksAny(options.byName.values());
  }

  /** Runs the plan; resolves with the exit code of `dist up`. */
  async run(): Promise<number> {
    const { output, signal, durationMs } = this.#options;
    const on = this.#plan.on === undefined ? "" : ` on ${this.#plan.on}`;
    const count = this.#units.length;
    output.say(`Starting ${count} instance${count === 1 ? "" : "s"} of ${this.#plan.file}${on}`);
    const onSignal = () => this.#requestStop(`${signal.reason ?? "stop requested"}`);
    if (signal.aborted) onSignal();
    signal.addEventListener("abort", onSignal, { once: true });
    const onKill = () => this.#killAll();
    this.#options.kill?.addEventListener("abort", onKill, { once: true });
    const duration = durationMs === undefined ? undefined : setTimeout(
      () => this.#requestStop(`--duration ${formatDuration(durationMs)} is over`),
      durationMs,
    );
    await this.#options.state?.flush();
    for (const unit of this.#units) this.#start(unit);
    Promise.all(this.#units.map((u) => u.ready.promise)).then(() => {
      if (!this.#stopping) {
        const took = seconds(performance.now() - this.#t0);
        const dashboard = this.#options.dashboard;
        output.say(
          `All ${count} ready in ${took}${dashboard ? `; dashboard at ${dashboard}` : ""}`,
        );
      }
    }, () => {});
    const reason = await this.#stop.promise;
    clearTimeout(duration);
    signal.removeEventListener("abort", onSignal);
    await this.#shutdown(reason);
    this.#options.kill?.removeEventListener("abort", onKill);
    return this.#report();
  }

  #requestStop(reason: string): void {
    this.#stop.resolve(reason);
  }

  /**
   * A failure that stops `dist up` (the first one is the one reported).
   *
   * @param reason the short form for "Stopping (…)", when the output said it already
   */
  #fail(message: string, reason: string = message): void {
    if (this.#stopping) return;
    this.#fatal ??= message;
    this.#requestStop(reason);
  }

  /** Starts `unit` once everything it waits for is ready. */
  async #start(unit: Unit): Promise<void> {
    try {
      await Promise.all([
        ...unit.plan.after.map((name) => this.#byName.get(name)!.ready.promise),
        ...unit.plan.remote.map((name) => this.#remoteReady(name)),
      ]);
    } catch {
      unit.ready.reject(new Error(`${unit.name} did not start`));
      return;
    }
    if (this.#stopping) return;
    unit.firstStart = performance.now();
    if (unit.plan.listens || unit.plan.readyLine) {
      unit.readyTimer = setTimeout(() => {
        if (unit.everReady) return;
        const last = unit.lastExit === undefined
          ? ""
          : ` (it exited ${unit.exits} time${unit.exits === 1 ? "" : "s"}; last: ${
            describeExit(unit.lastExit)
          })`;
        this.#fail(
          `${unit.name} was not ready within ${
            formatDuration(this.#options.readyTimeoutMs)
          }${last}`,
        );
      }, this.#options.readyTimeoutMs);
    }
    this.#spawn(unit);
  }

  /** Waits (once per instance) until an instance on another machine answers. */
  #remoteReady(name: string): Promise<void> {
    let waiting = this.#remote.get(name);
    if (waiting === undefined) {
      const dep = this.#plan.remote.find((r) => r.name === name)!;
      waiting = this.#waitRemote(dep);
      waiting.catch(() => {});
      this.#remote.set(name, waiting);
    }
    return waiting;
  }

  async #waitRemote(dep: RemoteDependency): Promise<void> {
    const { output, readyTimeoutMs } = this.#options;
    output.say(`Waiting for ${dep.name} at ${dep.address} (another host)`);
    const ready = await waitReady(() => dep.address, {
      name: dep.name,
      credentials: launcherCredentials(this.#options.byName.get(dep.name)),
      tls: launcherTls(this.#options.byName.get(dep.name)),
      deadline: performance.now() + readyTimeoutMs,
      signal: this.#halt.signal,
    });
    if (ready) {
      output.say(`${dep.name} answers at ${dep.address}`);
      return;
    }
    const within = formatDuration(readyTimeoutMs);
    this.#fail(`${dep.name} (another host) did not answer at ${dep.address} within ${within}`);
    throw new Error(`${dep.name} is not there`);
  }

  #spawn(unit: Unit): void {
    const { output, roles, byName, state } = this.#options;
    // Every port it binds (a TCP balancer's too, which answers no sys.ping).
    if (this.#portTaken(unit)) return;
    const args = childArgs(unit.plan.instance, { roles, byName, ports: this.#ports });
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(this.#command.exe, {
        args: [...this.#command.args, ...args],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        // Its own process group: a Ctrl-C in the terminal reaches only the
        // launcher, which stops children in order.
        detached: true,
        env: {
          [LAUNCHER_ENV]: String(Deno.pid),
          ...childEnv(unit.plan.instance, roles, this.#secured),
        },
      }).spawn();
    } catch (err) {
      this.#fail(`Cannot start ${unit.name}: ${(err as Error).message}`);
      return;
    }
    const restarted = unit.startedAt !== 0;
    unit.child = child;
    unit.startedAt = performance.now();
    const waits = unit.plan.listens || unit.plan.readyLine !== undefined;
    unit.state = waits ? "starting" : "running";
    unit.life = new AbortController();
    const again = restarted ? `restarted (restart ${unit.restarts})` : "started";
    output.say(`${unit.name} ${again}, pid ${child.pid}`);
    state?.update(unit.name, {
      pid: child.pid,
      state: unit.state,
      restarts: unit.restarts,
      started_ms: Date.now(),
    });
    const io = Promise.all([
      pumpOutput(unit, child.stdout, this.#readiness),
      pumpOutput(unit, child.stderr, this.#readiness),
    ]);
    unit.exited = child.status.then(async (status) => {
      // Its last lines first (bounded: a grandchild could hold the pipes open).
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([io, new Promise((r) => timer = setTimeout(r, IO_DRAIN_MS))]);
      clearTimeout(timer);
      this.#onExit(unit, {
        code: status.code,
        signal: status.signal,
        ranMs: performance.now() - unit.startedAt,
      });
    });
    unit.since = performance.now();
    // Ready once it answers sys.ping (if it listens) and has logged its ready line (if it has one).
    unit.pinged = !unit.plan.listens;
    unit.lineSeen = unit.plan.readyLine === undefined;
    if (unit.plan.listens) watchReady(unit, unit.life.signal, this.#readiness);
    else if (unit.plan.readyLine === undefined) this.#markReady(unit);
    // Else pumpOutput marks it ready on its ready line.
  }

  /**
   * Whether a port the instance listens on is held by another process: if
   * so it is said once and the instance is not started (starting it would
   * only fail, again and again). Before it was ever ready that stops `dist
   * up`; after, it counts as a failed start, restarted by its policy with
   * the crash loop's backoff.
   */
  #portTaken(unit: Unit): boolean {
    const busy = busyPort(unit.plan.instance, {
      roles: this.#options.roles,
      learned: this.#ports.get(unit.name),
    });
    if (busy === undefined) return false;
    const flag = busy.key === "port" ? "" : ` (its ${toSnake(busy.key)})`;
    const where = formatAddress({ host: busy.host, port: busy.port });
    const problem = `${unit.name} cannot listen on ${where}${flag}: ${busy.reason}`;
    if (unit.everReady) {
      // A failed start, restarted by its policy with the crash loop's backoff: a port held a
      // moment at a restart took a restart = "always" instance out for good (hostile45c K-C7).
      this.#options.output.say(`${problem}; not starting it now`);
      this.#onExit(unit, { code: 1, signal: null, ranMs: 0 });
      return true;
    }
    this.#options.output.say(`${problem}; not starting it`);
    unit.state = "exited";
    this.#options.state?.update(unit.name, {
      state: "exited",
      pid: undefined,
      last_exit: busy.reason,
    });
    this.#fail(problem, `${unit.name} cannot listen on ${where}`);
    return true;
  }

  /** The instance is ready: say so, and let what waits for it start (the first time). */
  #markReady(unit: Unit): void {
    unit.state = unit.plan.listens || unit.plan.readyLine ? "ready" : "running";
    this.#options.state?.update(unit.name, { state: unit.state, address: unit.address });
    if (unit.state === "ready") {
      const at = unit.address === undefined ? "" : ` at ${unit.address}`;
      const took = seconds(performance.now() - unit.since);
      this.#options.output.say(`${unit.name} ready${at} (${took})`);
    }
    if (!unit.everReady) {
      unit.everReady = true;
      clearTimeout(unit.readyTimer);
      unit.ready.resolve();
    }
  }

  #onExit(unit: Unit, exit: Exit): void {
    const { output, state } = this.#options;
    unit.child = undefined;
    unit.life?.abort();
    unit.lastExit = exit;
    unit.exits++;
    const how = describeExit(exit);
    if (this.#stopping || unit.state === "stopping") {
      unit.state = "stopped";
      state?.update(unit.name, { state: "stopped", pid: undefined, last_exit: how });
      output.say(`${unit.name} stopped${failed(exit) ? ` (${how})` : ""}`);
      return;
    }
    const policy = unit.plan.instance.restart;
    const decision = decideRestart(policy, exit, unit.streak);
    unit.streak = decision.streak;
    if (decision.restart) {
      unit.restarts++;
      const loop = decision.crashLoop
        ? `: crash loop (${decision.streak} quick exits in a row)`
        : "";
      if (decision.delayMs === 0) {
        output.say(`${unit.name} exited (${how}); restarting it`);
        // Watchers see it down (red on the dashboard) until the new process is ready.
        state?.update(unit.name, { state: "exited", pid: undefined, last_exit: how });
        this.#spawn(unit);
        return;
      }
      const delay = formatDuration(decision.delayMs);
      output.say(`${unit.name} exited (${how})${loop}; restarting it in ${delay}`);
      unit.state = "backoff";
      state?.update(unit.name, { state: "backoff", pid: undefined, last_exit: how });
      unit.backoff = setTimeout(() => {
        unit.backoff = undefined;
        if (!this.#stopping) this.#spawn(unit);
      }, decision.delayMs);
      return;
    }
    unit.state = "exited";
    state?.update(unit.name, { state: "exited", pid: undefined, last_exit: how });
    if (!unit.everReady) {
      output.say(`${unit.name} exited (${how}) before it was ready`);
      this.#fail(`${unit.name} exited before it was ready (${how})`);
    } else if (policy === "no" && failed(exit)) {
      output.say(`${unit.name} failed (${how}); the others keep running`);
      this.#failures.push(`${unit.name} (${how})`);
    } else {
      output.say(`${unit.name} exited (${how})`);
    }
    if (this.#units.every((u) => u.state === "exited")) {
      this.#requestStop("every instance has exited");
    }
  }

  /** Stops every instance: dependents first, one start step at a time (stopping.ts). */
  async #shutdown(reason: string): Promise<void> {
    this.#stopping = true;
    this.#halt.abort();
    const { output, state, graceMs } = this.#options;
    await stopInOrder(this.#units, reason, { output, graceMs, ...(state ? { state } : {}) });
    await state?.remove();
  }

  /** Kills every child now (a second Ctrl-C). */
  #killAll(): void {
    this.#stopping = true;
    this.#killed = true;
    killAll(this.#units, this.#options.output);
  }

  /** Prints what failed; the exit code of `dist up`. */
  #report(): number {
    const error = this.#options.error ?? ((line: string) => console.error(line));
    const { lines, code } = verdict({
      killed: this.#killed,
      fatal: this.#fatal,
      failures: this.#failures,
      neverReady: this.#units.filter((u) => !u.everReady).map((u) => u.name),
    });
    for (const line of lines) error(line);
    return code;
  }
}
