//! Joining flows with the inventory: VNI to network, inner addresses to
//! services, outer addresses to nodes. What cannot be mapped is `unknown`,
//! never dropped.
use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::IpAddr,
};

use netobs_common::{Class, Direction, FlowKey};

use super::{flow::addr, Flow};
use crate::{
    api::Encryption,
    inventory::{Endpoint, Inventory, Network},
};

pub const UNKNOWN: &str = "unknown";
/// What labels fold into past the series limit: a flood of outer addresses
/// that are no node must not grow the metrics without bound.
pub const OTHER: &str = "other";

pub use crate::api::FlowLabels;

/// The other end of the outer header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer<'a> {
    Name(&'a str),
    Addr(IpAddr),
    Unknown,
}

impl fmt::Display for Peer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Name(n) => f.write_str(n),
            Peer::Addr(a) => write!(f, "{a}"),
            Peer::Unknown => f.write_str(UNKNOWN),
        }
    }
}

/// `FlowLabels` borrowed from the inventory: building them allocates
/// nothing, so the agent can label every flow of a million-entry table and
/// group them by label before it touches a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LabelRefs<'a> {
    pub network: &'a str,
    pub vni: Option<u32>,
    pub encrypted: Encryption,
    pub peer_node: Peer<'a>,
    pub src_service: &'a str,
    pub dst_service: &'a str,
    pub peer_known: bool,
}

impl LabelRefs<'_> {
    pub fn to_owned(&self) -> FlowLabels {
        FlowLabels {
            network: self.network.to_owned(),
            vni: self.vni.map(|v| v.to_string()).unwrap_or_default(),
            encrypted: self.encrypted,
            peer_node: self.peer_node.to_string(),
            src_service: self.src_service.to_owned(),
            dst_service: self.dst_service.to_owned(),
            peer_known: self.peer_known,
        }
    }
}

/// What labelling needs to know of a flow.
struct Ends {
    direction: Direction,
    vni: Option<u32>,
    outer_src: Option<IpAddr>,
    outer_dst: Option<IpAddr>,
    inner_src: Option<IpAddr>,
    inner_dst: Option<IpAddr>,
}

pub struct Labeler<'a> {
    inv: &'a Inventory,
    networks: HashMap<u32, &'a Network>,
    endpoints: HashMap<(&'a str, IpAddr), &'a Endpoint>,
    /// Any address → endpoint, for flows whose VNI is unknown.
    any_endpoint: HashMap<IpAddr, &'a Endpoint>,
    nodes: HashMap<IpAddr, &'a str>,
    /// Every address known to be a swarm node: hostnames' addresses,
    /// network peers, the nodes tasks run on.
    node_ips: HashSet<IpAddr>,
}

impl<'a> Labeler<'a> {
    pub fn new(inv: &'a Inventory) -> Labeler<'a> {
        let mut networks = HashMap::new();
        for n in &inv.networks {
            for v in &n.vnis {
                networks.entry(*v).or_insert(n);
            }
        }
        let mut endpoints = HashMap::new();
        let mut any_endpoint = HashMap::new();
        for e in &inv.endpoints {
            endpoints.insert((e.network_id.as_str(), e.ip), e);
            any_endpoint.entry(e.ip).or_insert(e);
        }
        let mut nodes = HashMap::new();
        for (a, h) in inv.node_names() {
            nodes.entry(a).or_insert(h);
        }
        let node_ips = inv.node_addresses().collect();
        Labeler {
            inv,
            networks,
            endpoints,
            any_endpoint,
            nodes,
            node_ips,
        }
    }

    fn peer(&self, ip: IpAddr) -> Peer<'a> {
        match self.nodes.get(&ip) {
            Some(h) => Peer::Name(h),
            None => Peer::Addr(ip),
        }
    }

    fn service(&self, network_id: Option<&str>, ip: Option<IpAddr>) -> &'a str {
        let Some(ip) = ip else { return UNKNOWN };
        let e = match network_id {
            Some(id) => self.endpoints.get(&(id, ip)),
            None => self.any_endpoint.get(&ip),
        };
        e.and_then(|e| e.label()).unwrap_or(UNKNOWN)
    }

    fn resolve(&self, f: Ends) -> LabelRefs<'a> {
        let peer = match f.direction {
            Direction::Ingress => f.outer_src,
            Direction::Egress => f.outer_dst,
        };
        let (peer_node, peer_known) = match peer {
            Some(ip) if self.inv.docker_up || !self.inv.nodes.is_empty() => {
                (self.peer(ip), self.node_ips.contains(&ip))
            }
            Some(ip) => (Peer::Addr(ip), false),
            None => (Peer::Unknown, false),
        };
        let Some(vni) = f.vni else {
            return LabelRefs {
                network: "",
                vni: None,
                encrypted: Encryption::Encrypted,
                peer_node,
                src_service: "",
                dst_service: "",
                peer_known,
            };
        };
        let net = self.networks.get(&vni).copied();
        let net_id = net.map(|n| n.id.as_str());
        LabelRefs {
            network: net.map_or(UNKNOWN, |n| n.name.as_str()),
            vni: Some(vni),
            encrypted: match net {
                Some(n) if n.encrypted => Encryption::Encrypted,
                Some(_) => Encryption::Plain,
                None => Encryption::Unknown,
            },
            peer_node,
            src_service: self.service(net_id, f.inner_src),
            dst_service: self.service(net_id, f.inner_dst),
            peer_known,
        }
    }

    pub fn label(&self, f: &Flow) -> FlowLabels {
        self.resolve(Ends {
            direction: f.direction,
            vni: f.vni,
            outer_src: f.outer_src,
            outer_dst: f.outer_dst,
            inner_src: f.inner_src,
            inner_dst: f.inner_dst,
        })
        .to_owned()
    }

    /// A node's name: its hostname where the engine tells it, else its
    /// address.
    pub fn node_name(&self, ip: IpAddr) -> String {
        self.peer(ip).to_string()
    }

    /// The network with VNI `vni` and the endpoint holding `ip` on it.
    pub fn endpoint(&self, vni: u32, ip: IpAddr) -> Option<(&'a Network, &'a Endpoint)> {
        let net = self.networks.get(&vni).copied()?;
        let e = self.endpoints.get(&(net.id.as_str(), ip)).copied()?;
        Some((net, e))
    }

    /// The labels of a raw flow-table key, without decoding the flow.
    pub fn label_key(&self, k: &FlowKey) -> LabelRefs<'a> {
        let vxlan = k.class == Class::Vxlan as u8;
        let inner = |raw| {
            if vxlan {
                addr(k.inner_family, raw)
            } else {
                None
            }
        };
        self.resolve(Ends {
            direction: Direction::from_u8(k.direction).unwrap_or(Direction::Ingress),
            vni: vxlan.then_some(k.vni_or_spi),
            outer_src: addr(k.outer_family, &k.outer_src),
            outer_dst: addr(k.outer_family, &k.outer_dst),
            inner_src: inner(&k.inner_src),
            inner_dst: inner(&k.inner_dst),
        })
    }
}
