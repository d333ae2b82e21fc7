/**
 * The topology `dist up` runs when no file is given. It is a module, not a
 * file next to the binary, because a compiled `dist` cannot read its sources.
 */

/** The file name used in messages about the embedded topology. */
export const DEFAULT_TOPOLOGY_FILE = "(default topology)";

/** Every role on localhost, talking to each other. */
export const DEFAULT_TOPOLOGY: string = `# dist: the default topology (dist up with no file)
[defaults]
host = "127.0.0.1"
log_level = "info"

[[server]]
name = "server"
replicas = 2          # server-1 on 5557, server-2 on 5558
port = 5557

[[client]]
name = "client"
connect = "server-1"
random = 20
restart = "no"
`;
