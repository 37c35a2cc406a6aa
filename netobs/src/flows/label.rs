//! Joining flows with the inventory: VNI to network, inner addresses to
//! services, outer addresses to nodes. What cannot be mapped is `unknown`,
//! never dropped.
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use serde::Serialize;

use super::Flow;
use crate::inventory::{Endpoint, Inventory};

pub const UNKNOWN: &str = "unknown";

/// The labels of one overlay flow.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct FlowLabels {
    /// Network name; empty for ESP (its SPI belongs to a node pair, not to a
    /// network: every encrypted network between two nodes shares it).
    pub network: String,
    pub vni: String,
    /// "true", "false" or "unknown".
    pub encrypted: &'static str,
    /// The other node: hostname where the engine tells it, else its address.
    pub peer_node: String,
    pub src_service: String,
    pub dst_service: String,
    /// The peer is a node of this swarm (false also when nobody knows).
    #[serde(skip)]
    pub peer_known: bool,
}

pub struct Labeler<'a> {
    inv: &'a Inventory,
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
        let mut endpoints = HashMap::new();
        let mut any_endpoint = HashMap::new();
        for e in &inv.endpoints {
            endpoints.insert((e.network_id.as_str(), e.ip), e);
            any_endpoint.entry(e.ip).or_insert(e);
        }
        let mut nodes = HashMap::new();
        for n in &inv.nodes {
            if let Some(a) = n.addr {
                nodes.insert(a, n.hostname.as_str());
            }
        }
        if let Some(s) = &inv.swarm {
            if let Some(a) = s.node_addr {
                nodes.entry(a).or_insert(s.hostname.as_str());
            }
        }
        let node_ips = nodes
            .keys()
            .copied()
            .chain(
                inv.networks
                    .iter()
                    .flat_map(|n| n.peers.iter().filter_map(|p| p.ip)),
            )
            .chain(inv.endpoints.iter().filter_map(|e| e.node_ip))
            .collect();
        Labeler {
            inv,
            endpoints,
            any_endpoint,
            nodes,
            node_ips,
        }
    }

    /// Whether `ip` is one of the swarm's nodes, as far as this node knows.
    fn is_node(&self, ip: IpAddr) -> bool {
        self.node_ips.contains(&ip)
    }

    fn node_name(&self, ip: IpAddr) -> String {
        match self.nodes.get(&ip) {
            Some(h) if !h.is_empty() => (*h).to_owned(),
            _ => ip.to_string(),
        }
    }

    fn service(&self, network_id: Option<&str>, ip: Option<IpAddr>) -> String {
        let Some(ip) = ip else { return UNKNOWN.into() };
        let e = match network_id {
            Some(id) => self.endpoints.get(&(id, ip)),
            None => self.any_endpoint.get(&ip),
        };
        e.and_then(|e| e.label()).unwrap_or(UNKNOWN).to_owned()
    }

    pub fn label(&self, f: &Flow) -> FlowLabels {
        let peer = if f.direction == "ingress" {
            f.outer_src
        } else {
            f.outer_dst
        };
        let (peer_node, peer_known) = match peer {
            Some(ip) if self.inv.docker_up || !self.inv.nodes.is_empty() => {
                (self.node_name(ip), self.is_node(ip))
            }
            Some(ip) => (ip.to_string(), false),
            None => (UNKNOWN.into(), false),
        };
        if let Some(vni) = f.vni {
            let net = self.inv.network_by_vni(vni);
            let net_id = net.map(|n| n.id.as_str());
            FlowLabels {
                network: net.map_or(UNKNOWN, |n| n.name.as_str()).to_owned(),
                vni: vni.to_string(),
                encrypted: match net {
                    Some(n) if n.encrypted => "true",
                    Some(_) => "false",
                    None => UNKNOWN,
                },
                peer_node,
                src_service: self.service(net_id, f.inner_src),
                dst_service: self.service(net_id, f.inner_dst),
                peer_known,
            }
        } else {
            FlowLabels {
                network: String::new(),
                vni: String::new(),
                encrypted: "true",
                peer_node,
                src_service: String::new(),
                dst_service: String::new(),
                peer_known,
            }
        }
    }
}
