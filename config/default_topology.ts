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

# A message broker; two producers publish to it, a consumer prints everything.
[[broker]]
name = "broker"
port = 8000

[[producer]]
name = "telephony"    # prices per minute on /telephony/orange, /unite, /moldcell
broker = "broker"
type = "telephony"

[[producer]]
name = "currency"     # a rate on /currency, every second here
broker = "broker"
type = "currency"
interval = "1s"

[[consumer]]
name = "consumer"
broker = "broker"
topic = "/"

# Two binders (7000, 7001), replicating with each other.
[[binder]]
name = "binder"
replicas = 2
port = 7000
peers = ["binder"]

# Three servers of service "compute" (server-1..3 on 5557..5559), registered
# with the binders.
[[server]]
name = "server"
replicas = 3
port = 5557
service = "compute"
binders = ["binder"]

# A balancer over the servers, and over the workers that dial in on 8889.
[[balancer]]
name = "balancer"
port = 5556
backends = ["server"]
worker_port = 8889

[[worker]]
name = "worker"
replicas = 2
balancer = "balancer"

# Twenty random operations through the balancer, then done.
[[client]]
name = "client"
connect = "balancer"
random = 20

# Ten more, to an instance of "compute" found through the binders.
[[client]]
name = "resolver"
service = "compute"
binders = ["binder"]
random = 10
`;
