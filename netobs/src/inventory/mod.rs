//! What the local Docker engine says about the swarm: overlay networks (VNI,
//! encryption), the endpoints on them (task, VIP and container IPs) and the
//! nodes. Nothing here knows about packets; `flows` joins the two.
//!
//! A worker's engine refuses the manager-only calls (services, nodes, swarm),
//! but a verbose network inspect shows every task of every service on the
//! networks this node takes part in, with the IP of the node running it. That
//! is enough to label every flow this node can see, so it is the backbone;
//! the manager-only calls only add node hostnames, VIPs of networks with no
//! local task, and the data-path port.
mod build;
pub mod services;
mod source;
mod watch;

pub use build::{Raw, RawNetwork};
pub use source::{connect, fetch, DockerError};
pub use watch::{spawn_watcher, InventoryRx};

use std::{collections::BTreeMap, net::IpAddr};

use serde::{Deserialize, Serialize};

/// Docker's option for a network's VNI(s): "4097" or "4097,4098".
pub const VXLAN_ID_OPTION: &str = "com.docker.network.driver.overlay.vxlanid_list";
/// The option that sets an overlay network's MTU.
pub const MTU_OPTION: &str = "com.docker.network.driver.mtu";
/// The option that asks for IPsec on a network.
pub const ENCRYPTED_OPTION: &str = "encrypted";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Inventory {
    /// The engine answered the last sync.
    pub docker_up: bool,
    pub swarm: Option<SwarmState>,
    pub networks: Vec<Network>,
    pub endpoints: Vec<Endpoint>,
    pub nodes: Vec<Node>,
    /// Manager only: every task meant to run, with its state, addressed or
    /// not (a task whose health check has yet to pass is in no network's
    /// view: Docker adds it to service discovery once it is healthy).
    #[serde(default)]
    pub tasks: Vec<Task>,
    /// Unix seconds of the last successful sync.
    pub synced_at: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwarmState {
    pub node_id: String,
    pub node_addr: Option<IpAddr>,
    pub hostname: String,
    pub manager: bool,
    /// From the swarm's configuration; only a manager can read it.
    pub data_path_port: Option<u16>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub vnis: Vec<u32>,
    /// `--opt encrypted` was given (any value but "false", as Docker reads it).
    pub encrypted: bool,
    pub ingress: bool,
    pub options: BTreeMap<String, String>,
    pub subnets: Vec<String>,
    /// Nodes this node exchanges the network's traffic with.
    pub peers: Vec<Peer>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Peer {
    pub name: String,
    pub ip: Option<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    /// A service task's address.
    Task,
    /// A service's virtual IP.
    Vip,
    /// A container that is not a task (an attachable network).
    Container,
    /// The network's load balancer on some node.
    LoadBalancer,
}

/// An address on an overlay network and who holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endpoint {
    pub network_id: String,
    pub ip: IpAddr,
    pub kind: EndpointKind,
    pub service: Option<String>,
    pub task: Option<String>,
    pub container: Option<String>,
    /// The node running it (tasks only).
    pub node_ip: Option<IpAddr>,
    /// Tasks only: the swarm's task state (`running`, `starting`, ...) on a
    /// manager; on a worker, the container's state for local tasks and
    /// none for the others (only managers list tasks).
    #[serde(default)]
    pub state: Option<String>,
}

impl Endpoint {
    /// The name a flow is labelled with: service, else container.
    pub fn label(&self) -> Option<&str> {
        self.service.as_deref().or(self.container.as_deref())
    }
}

/// A task from the manager's task list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    /// As its container is named: `service.slot.id` (`service.node.id` for
    /// a global service).
    pub name: String,
    pub service: String,
    /// The node's hostname, else its id.
    pub node: String,
    /// `new` ... `starting`, `running`, or where it failed.
    pub state: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub hostname: String,
    pub role: String,
    pub addr: Option<IpAddr>,
}

impl Inventory {
    pub fn network_by_vni(&self, vni: u32) -> Option<&Network> {
        self.networks.iter().find(|n| n.vnis.contains(&vni))
    }

    pub fn network_by_name(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    /// Swarm nodes' addresses with their hostnames, as far as this node
    /// knows them (a worker knows only its own): the name an operator reads
    /// for a node everywhere netobs shows one. Network peers' names are
    /// NetworkDB's random ids, so they are not used.
    pub fn node_names(&self) -> impl Iterator<Item = (IpAddr, &str)> {
        let others = self
            .nodes
            .iter()
            .filter_map(|n| Some((n.addr?, n.hostname.as_str())));
        let me = self
            .swarm
            .iter()
            .filter_map(|s| Some((s.node_addr?, s.hostname.as_str())));
        others.chain(me).filter(|(_, h)| !h.is_empty())
    }

    /// Every address a swarm node is known by here: the node list's, this
    /// node's, network peers' (gossip) and tasks' hosts (data path).
    pub fn node_addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.nodes
            .iter()
            .filter_map(|n| n.addr)
            .chain(self.swarm.as_ref().and_then(|s| s.node_addr))
            .chain(
                self.networks
                    .iter()
                    .flat_map(|n| n.peers.iter().filter_map(|p| p.ip)),
            )
            .chain(self.endpoints.iter().filter_map(|e| e.node_ip))
            .map(|ip| ip.to_canonical())
    }

    /// A node's hostname, or its address when that is all this node knows.
    pub fn node_name(&self, ip: IpAddr) -> String {
        self.node_names()
            .find(|(a, _)| *a == ip)
            .map_or_else(|| ip.to_string(), |(_, h)| h.to_owned())
    }
}

/// Parses an address that may carry a prefix length ("10.0.1.4/24").
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    s.split('/').next()?.trim().parse().ok()
}
