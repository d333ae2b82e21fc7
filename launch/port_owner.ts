/**
 * Whether a process holds a listening TCP port, from Linux's /proc: the socket's inode in
 * /proc/net/tcp{,6} (state 0A, LISTEN) among the process's open files. `dist status` asks it of
 * an instance that accepts but does not answer, to tell "hung" from "another process has its
 * port" (hostile47 Q2).
 */

/** True or false where /proc tells; undefined where it cannot (not Linux, not ours to read). */
export function holdsPort(pid: number, port: number): boolean | undefined {
  const inodes = listeningInodes(port);
  if (inodes === undefined) return undefined;
  if (inodes.size === 0) return false;
  try {
    for (const fd of Deno.readDirSync(`/proc/${pid}/fd`)) {
      let target: string;
      try {
        target = Deno.readLinkSync(`/proc/${pid}/fd/${fd.name}`);
      } catch {
        continue; // Closed meanwhile.
      }
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
      if (inode !== undefined && inodes.has(inode)) return true;
    }
    return false;
  } catch {
    return undefined;
  }
}

/** Inodes of the sockets listening on `port` (IPv4 and IPv6), or undefined without /proc. */
function listeningInodes(port: number): Set<string> | undefined {
  const inodes = new Set<string>();
  let read = false;
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = Deno.readTextFileSync(table);
    } catch {
      continue;
    }
    read = true;
    for (const line of text.split("\n").slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10 || cols[3] !== "0A") continue;
      const local = cols[1];
      if (parseInt(local.slice(local.lastIndexOf(":") + 1), 16) === port) inodes.add(cols[9]);
    }
  }
  return read ? inodes : undefined;
}
