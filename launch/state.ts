/**
 * What a running `dist up` tells `dist status`: one JSON file per launcher,
 * in a directory of this user's (`$DIST_STATE_DIR`, else
 * `$TMPDIR/dist-<uid>`), rewritten (atomically) as instances start, restart
 * and exit, and removed when the launcher ends. A file whose launcher is
 * gone is ignored (and cleaned up).
 */
import { resolve } from "node:path";
import { DEFAULT_TOPOLOGY_FILE, ownerProblem, UsageError } from "../config/mod.ts";
import { parseJson } from "../wire/mod.ts";

/** One instance as its launcher sees it. */
export interface InstanceState {
  role: string;
  pid?: number;
  /** waiting, starting, ready, running, backoff, exited, stopping, stopped. */
  state: string;
  restarts: number;
  /** When the current process started (ms since the epoch). */
  started_ms?: number;
  /** Where it listens, with the port it actually got. */
  address?: string;
  /** How the last process ended: "exit code 1", "signal SIGKILL". */
  last_exit?: string;
}

/** One launcher's state file. */
export interface LauncherState {
  version: 1;
  /** The topology file's absolute path, or the default topology's name. */
  file: string;
  on?: string;
  pid: number;
  started_ms: number;
  /** The launcher's start time in clock ticks since boot (/proc/PID/stat field 22), to tell it from a later holder of its pid. */
  start_ticks?: number;
  /** Where its dashboard is (`http://127.0.0.1:8090/`), when it serves one. */
  dashboard?: string;
  instances: Record<string, InstanceState>;
}

/** The directory of state files. */
export function stateDir(): string {
  const explicit = Deno.env.get("DIST_STATE_DIR");
  if (explicit) return explicit;
  const tmp = Deno.env.get("TMPDIR") ?? "/tmp";
  return `${tmp}/dist-${Deno.uid() ?? "user"}`;
}

/**
 * Why the state directory may not be trusted, or undefined when it may (or
 * does not exist yet: it is made 0700). It must be a directory, not a link,
 * of this user's, that nobody else may write: under a shared /tmp another
 * user can make `dist-<uid>` first, and then read or plant what dist keeps
 * there (state files a second `dist up` obeys, `data_dir = "auto"`'s
 * databases, `tls = "auto"`'s CA key) or link a file name of ours to one of
 * the victim's that it then overwrites.
 */
export function stateDirProblem(): string | undefined {
  return dirProblem(stateDir());
}

/**
 * Why folder `dir` may not hold what others must not read or plant
 * (databases, keys): a link, not a folder, another user's, or one that
 * others may write; undefined when it may (or does not exist yet).
 */
export function dirProblem(dir: string): string | undefined {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(dir);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    return `${dir} cannot be checked (${(err as Error).message})`;
  }
  if (info.isSymlink) return `${dir} is a symbolic link`;
  if (!info.isDirectory) return `${dir} is not a directory`;
  return ownerProblem(dir, info);
}

/**
 * The state directory, made if missing, for what must not be read or
 * planted by others (databases, TLS keys).
 * @throws {UsageError} when it may not be trusted ({@link stateDirProblem})
 */
export function ownStateDir(): string {
  const dir = stateDir();
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const problem = stateDirProblem();
  if (problem !== undefined) {
    throw new UsageError(
      `Cannot keep files in ${problem}: remove it, or set DIST_STATE_DIR to a directory of yours`,
    );
  }
  return dir;
}

/**
 * How a topology file is named in state files, `data_dir = "auto"` and `tls = "auto"`: its
 * absolute path as given, stable when a link on it is re-pointed (a deploy's `current`, a
 * ConfigMap: review r47 R4). The one-launcher lock also takes its real path (hostile47 Q5).
 */
export function topologyKey(file: string | undefined): string {
  return file === undefined ? DEFAULT_TOPOLOGY_FILE : resolve(file);
}

/** The real path of a topology file (symlinks followed), or its key where it cannot be had. */
export function realTopologyKey(file: string | undefined): string {
  if (file === undefined) return DEFAULT_TOPOLOGY_FILE;
  try {
    return Deno.realPathSync(file);
  } catch {
    return resolve(file);
  }
}

/** The first 8 bytes of the SHA-256 of `value` as JSON, in hex: names of state and lock files. */
export async function shortHash(value: unknown): Promise<string> {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...digest.slice(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function fileName(state: Pick<LauncherState, "file" | "on">): Promise<string> {
  return `${stateDir()}/up-${await shortHash([state.file, state.on ?? ""])}.json`;
}

/** The `data_dir` value that asks `dist up` for a directory of its own per instance. */
export const AUTO_DATA_DIR = "auto";

/**
 * Where `data_dir = "auto"` puts instance `name` of a topology (named by topologyKey), the same
 * at every run of the same file, so a restarted cluster finds its state again:
 * `$STATE_DIRECTORY/NAME` under systemd (a unit's `StateDirectory=`; the exports set it in
 * containers too), else `STATE/data/<topology hash>/NAME` in the state directory. One rule for
 * `dist up` ({@link placeDataDirs}) and for `dist --config FILE --name NAME` ({@link autoDataDir};
 * review R12: `dist up` run as a service put its data under `$TMPDIR`, which `PrivateTmp=yes`
 * wipes at every restart).
 */
async function autoDir(topology: string, name: string): Promise<string> {
  // One directory an instance inside it: a unit or a volume may be shared (review r47 R9).
  const service = Deno.env.get("STATE_DIRECTORY")?.split(":")[0]?.replace(/\/+$/, "");
  if (service) return await keptDir(topology, `${service}/${name}`, name);
  return `${ownStateDir()}/data/${await shortHash([topology])}/${name}`;
}

/** The earlier places said (and kept) in this process, said once each. */
const keptSaid = new Set<string>();

/**
 * Review r48 R3: before R12 `data_dir = "auto"` was `STATE/data/<hash>/NAME` under systemd too,
 * and a unit that kept its data set DIST_STATE_DIR to a persistent folder. Where that directory
 * exists (in a state directory that may be trusted) and `fresh` does not, the instance keeps it,
 * and how to move it is said once; it is not moved (its instance may still run there).
 */
async function keptDir(topology: string, fresh: string, name: string): Promise<string> {
  if (exists(fresh) || stateDirProblem() !== undefined) return fresh;
  const old = `${stateDir()}/data/${await shortHash([topology])}/${name}`;
  if (!exists(old) || dirProblem(old) !== undefined) return fresh;
  if (!keptSaid.has(old)) {
    keptSaid.add(old);
    console.error(
      `dist: ${name}: data_dir = "auto" stays at ${old}, where it was before $STATE_DIRECTORY was ` +
        `read; to move it, stop dist and: mv ${old} ${fresh}`,
    );
  }
  return old;
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Gives each instance whose `data_dir` is `"auto"` its autoDir. */
export async function placeDataDirs(
  instances: readonly { name: string; options: Record<string, unknown> }[],
  topology: string,
): Promise<void> {
  for (const instance of instances) {
    if (instance.options.dataDir === AUTO_DATA_DIR) {
      instance.options.dataDir = await autoDir(topology, instance.name);
    }
  }
}

/**
 * Where `data_dir = "auto"` is for one instance run by `dist --config FILE --name NAME` (what
 * every export runs): what `dist up` of that file gives it ({@link placeDataDirs}; hostile47 Q7:
 * it was a directory named `auto` in the working directory, shared by every instance there).
 */
export async function autoDataDir(file: string, name: string): Promise<string> {
  return await autoDir(topologyKey(file), name);
}

/**
 * Refuses an explicit `data_dir` that others could read or plant in (F7):
 * a link, not a folder, another user's, or one others may write (the
 * checks of the state directory, dirProblem). One that does not exist yet
 * is made by its instance.
 * @throws {UsageError} naming the instance and the folder
 */
export function checkDataDirs(
  instances: readonly { name: string; options: Record<string, unknown> }[],
): void {
  for (const instance of instances) {
    const dir = instance.options.dataDir;
    const problem = typeof dir === "string" ? dirProblem(dir) : undefined;
    if (problem === undefined) continue;
    throw new UsageError(
      `${instance.name}: data_dir ${problem}: others could read or plant its data; ` +
        `give it a folder of yours that nobody else may write`,
    );
  }
}

/** Process `pid`'s /proc stat fields after its name (field 3 first), or undefined when it is gone. */
function procStat(pid: number | "self"): string[] | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The name (field 2) may hold spaces and parentheses: it ends at the last ")".
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/** Whether process `pid` is alive (Linux: /proc; elsewhere assumed alive). */
function isAlive(pid: number): boolean {
  if (Deno.build.os !== "linux") return true;
  const fields = procStat(pid);
  // A zombie has exited; only its parent's wait is missing.
  return fields !== undefined && fields[0] !== "Z";
}

/** Process `pid`'s start time in clock ticks since boot (Linux), or undefined. */
function startTicks(pid: number | "self"): number | undefined {
  const ticks = Number(procStat(pid)?.[19]); // field 22
  return Number.isSafeInteger(ticks) ? ticks : undefined;
}

/** Linux's USER_HZ, the unit of /proc's start times: 100 on every architecture dist runs on. */
const TICKS_PER_SECOND = 100;

/** The boot time (ms since the epoch), from /proc/stat's btime (whole seconds). */
function bootMs(): number | undefined {
  try {
    const btime = /^btime (\d+)$/m.exec(Deno.readTextFileSync("/proc/stat"))?.[1];
    return btime === undefined ? undefined : Number(btime) * 1000;
  } catch {
    return undefined;
  }
}

/**
 * Whether the launcher that wrote `state` still runs: its pid is alive and is
 * that launcher, not a later process given the same pid (a launcher killed
 * outright leaves its file; pids wrap, and a reboot may keep $TMPDIR). The
 * file's `start_ticks` must be the process's start time; a file without it
 * is stale when the process started after the file's `started_ms` (a
 * launcher writes that once running; 2 s for btime's whole seconds and clock
 * granularity).
 */
export function launcherAlive(
  state: Pick<LauncherState, "pid" | "started_ms" | "start_ticks">,
): boolean {
  if (!isAlive(state.pid)) return false;
  if (Deno.build.os !== "linux") return true;
  const ticks = startTicks(state.pid);
  if (ticks === undefined) return true; // Cannot tell: as before.
  if (typeof state.start_ticks === "number") return ticks === state.start_ticks;
  const boot = bootMs();
  if (boot === undefined || typeof state.started_ms !== "number") return true;
  return boot + (ticks * 1000) / TICKS_PER_SECOND <= state.started_ms + 2_000;
}

/** Keeps one launcher's state file up to date; writes are coalesced. */
export class StateWriter {
  readonly state: LauncherState;
  #path?: Promise<string>;
  #dirty = false;
  #writing?: Promise<void>;
  #closed = false;
  #listeners = new Set<(name: string, state: InstanceState) => void>();

  #failing = false;
  #warn?: (text: string) => void;

  /** @param warn told once a spell when the state cannot be written */
  constructor(
    state: Omit<LauncherState, "version" | "pid" | "started_ms">,
    warn?: (text: string) => void,
  ) {
    this.#warn = warn;
    this.state = {
      version: 1,
      pid: Deno.pid,
      started_ms: Date.now(),
      start_ticks: Deno.build.os === "linux" ? startTicks("self") : undefined,
      ...state,
    };
  }

  /** Changes an instance's entry and schedules a write; listeners hear of it now. */
  update(name: string, change: Partial<InstanceState>): void {
    const entry = this.state.instances[name];
    if (entry === undefined) return;
    Object.assign(entry, change);
    for (const key of Object.keys(change) as (keyof InstanceState)[]) {
      if (change[key] === undefined) delete entry[key];
    }
    for (const listener of this.#listeners) listener(name, entry);
    this.#schedule();
  }

  /** Calls `listener` on every change of an instance (the dashboard's live view). */
  onUpdate(listener: (name: string, state: InstanceState) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Sets a launcher-wide member (the dashboard's URL) and schedules a write. */
  set(change: Pick<Partial<LauncherState>, "dashboard">): void {
    Object.assign(this.state, change);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#dirty = true;
    this.#writing ??= (async () => {
      // Everything changed in this turn of the event loop goes in one write.
      await Promise.resolve();
      while (this.#dirty && !this.#closed) {
        this.#dirty = false;
        await this.#write();
      }
      this.#writing = undefined;
    })();
  }

  async #write(): Promise<void> {
    let temp: string | undefined;
    try {
      const path = await (this.#path ??= fileName(this.state));
      await Deno.mkdir(stateDir(), { recursive: true, mode: 0o700 });
      // Not in a directory someone else controls (dist up says so once).
      if (stateDirProblem() !== undefined) return;
      temp = `${path}.${Deno.pid}.tmp`;
      await Deno.writeTextFile(temp, JSON.stringify(this.state));
      await Deno.rename(temp, path);
      this.#failing = false;
    } catch (err) {
      // dist status loses its view of restarts; the cluster runs on regardless, and says so once
      // a spell (hostile47 Q4: a full disk kept no state, silently, and left .tmp files).
      if (temp !== undefined) await Deno.remove(temp).catch(() => {});
      if (!this.#failing) {
        this.#failing = true;
        this.#warn?.(
          `cannot write the launcher's state in ${stateDir()} (${(err as Error).message}): ` +
            `dist status will not see this launcher's instances`,
        );
      }
    }
  }

  /** Writes the state now (e.g. first thing, before any instance starts). */
  async flush(): Promise<void> {
    this.#schedule();
    await this.#writing;
  }

  /** Removes the file; no write happens after. */
  async remove(): Promise<void> {
    await this.#writing;
    this.#closed = true;
    if (stateDirProblem() !== undefined) return; // Nothing of ours is there.
    try {
      await Deno.remove(await (this.#path ??= fileName(this.state)));
    } catch {
      // Never written, or already gone.
    }
  }
}

/** The state of every live launcher of `file` on this machine. */
export async function readStates(file: string): Promise<LauncherState[]> {
  const states: LauncherState[] = [];
  // Files in a directory another user controls tell nothing about ours.
  if (stateDirProblem() !== undefined) return states;
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(stateDir())];
  } catch {
    return states;
  }
  for (const entry of entries) {
    if (!entry.isFile || !/^up-[0-9a-f]+\.json$/.test(entry.name)) continue;
    const path = `${stateDir()}/${entry.name}`;
    let state: LauncherState;
    try {
      state = parseJson(await Deno.readTextFile(path)) as LauncherState;
    } catch {
      continue; // Being replaced, or not ours to read.
    }
    if (state.version !== 1 || typeof state.pid !== "number") continue;
    if (!launcherAlive(state)) {
      await Deno.remove(path).catch(() => {});
      continue;
    }
    if (state.file === file) states.push(state);
  }
  return states;
}
