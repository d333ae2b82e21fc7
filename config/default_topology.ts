/**
 * The topology `dist up` runs when no file is given. It is a module, not a
 * file next to the binary, because a compiled `dist` cannot read its sources.
 */

/** The file name used in messages about the embedded topology. */
export const DEFAULT_TOPOLOGY_FILE = "(default topology)";

/**
 * Every role on localhost, talking to each other, each showing what it does
 * once, in an output that is the same from run to run but for numbers,
 * times and pids (README's "Quick start" shows it, and a test holds the two
 * together): the producers publish one round once the consumer has
 * subscribed; the client starts once both workers have registered, and the
 * resolver once the three servers have.
 */
export const DEFAULT_TOPOLOGY: string = `# dist: the default topology (dist up with no file)
[defaults]
host = "127.0.0.1"
log_level = "info"

# A message broker (MQTT clients too, on 1884: 1883 is left to a mosquitto that
# may run here); a consumer prints everything published under /, and two
# producers publish one round each (they start once the consumer has subscribed).
[[broker]]
name = "broker"
port = 8000
mqtt_port = 1884

[[consumer]]
name = "consumer"
broker = "broker"
topic = "/"

[[producer]]
name = "telephony"    # prices per minute on /telephony/orange, /unite, /moldcell
broker = "broker"
type = "telephony"
interval = "1h"       # one round now, the next in an hour (the lab's is every second)

[[producer]]
name = "currency"     # a rate on /currency
broker = "broker"
type = "currency"
interval = "1h"

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

# Ten random operations through the balancer, once both workers have
# registered: round robin gives each server and each worker two.
[[client]]
name = "client"
connect = "balancer"
random = 10

# Six more, each to the instance of "compute" the binders hand out next (they
# take turns): two each.
[[client]]
name = "resolver"
service = "compute"
binders = ["binder"]
random = 6
`;
