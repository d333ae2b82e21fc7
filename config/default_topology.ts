/**
 * The topology `dist up` runs when no file is given. It is a module, not a
 * file next to the binary, because a compiled `dist` cannot read its sources.
 */

/** The file name used in messages about the embedded topology. */
export const DEFAULT_TOPOLOGY_FILE = "(default topology)";

/**
 * Every role on localhost, talking to each other. It grows as the roles land
 * on main (the loader checks every key against the role's options): see
 * README's "Quick start" for what is still to come.
 */
export const DEFAULT_TOPOLOGY: string = `# dist: the default topology (dist up with no file)
[defaults]
host = "127.0.0.1"
log_level = "info"

# Three servers: server-1..3 on 5557..5559.
[[server]]
name = "server"
replicas = 3
port = 5557

# Twenty random operations, then done (a client is not restarted).
[[client]]
name = "client"
connect = "server-1"
random = 20
`;
