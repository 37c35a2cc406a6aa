//! What the kernel holds for an encrypted network: for each remote tunnel
//! endpoint, the outbound policy that sends the data path through ESP and
//! Docker's SAs both ways, and how old the newest one is.
use std::{collections::BTreeSet, net::IpAddr};

use serde::{Deserialize, Serialize};

use super::xfrm::Xfrm;
use crate::inventory::{Inventory, Network};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerCheck {
    pub peer: String,
    pub ip: IpAddr,
    /// An outbound IPsec policy for the data-path port to this peer.
    pub policy: bool,
    /// The port an outbound policy to this peer covers, when none covers
    /// the data-path port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_port: Option<u16>,
    pub state_out: bool,
    pub state_in: bool,
    /// Age of the newest outbound SA to this peer: below 12 hours while
    /// key rotation works.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_sa_age_secs: Option<f64>,
}

/// The remote ends of a network's tunnels. Docker keys its SAs on the
/// nodes' data-path addresses, which tasks show as their host IP; the
/// network's peers list gossip addresses, which differ with
/// `--data-path-addr`, so they count only when no task shows a host IP.
pub fn remote_endpoints(
    net: &Network,
    inv: &Inventory,
    local: &BTreeSet<IpAddr>,
) -> BTreeSet<IpAddr> {
    let remote = |ip: &IpAddr| !local.contains(&ip.to_canonical());
    let hosts: BTreeSet<IpAddr> = inv
        .endpoints
        .iter()
        .filter(|e| e.network_id == net.id)
        .filter_map(|e| e.node_ip)
        .map(|ip| ip.to_canonical())
        .collect();
    let own_gossip = inv.swarm.as_ref().and_then(|s| s.node_addr);
    let chosen = if hosts.is_empty() {
        net.peers
            .iter()
            .filter_map(|p| p.ip)
            .map(|ip| ip.to_canonical())
            .filter(|ip| Some(*ip) != own_gossip)
            .collect()
    } else {
        hosts
    };
    chosen.into_iter().filter(remote).collect()
}

/// The kernel's IPsec towards one remote endpoint.
pub fn check(inv: &Inventory, ip: IpAddr, x: &Xfrm, port: u16, now: f64) -> PeerCheck {
    let covering = x.policies.iter().any(|p| p.protects(ip, port));
    let dockers = || x.states.iter().filter(|s| s.is_dockers());
    PeerCheck {
        peer: inv.node_name(ip),
        ip,
        policy: covering,
        policy_port: (!covering)
            .then(|| {
                x.policies
                    .iter()
                    .find(|p| p.reaches(ip) && p.dport_mask != 0)
                    .map(|p| p.dport)
            })
            .flatten(),
        state_out: dockers().any(|s| s.dst.to_canonical() == ip),
        state_in: dockers().any(|s| s.src.to_canonical() == ip),
        newest_sa_age_secs: dockers()
            .filter(|s| s.dst.to_canonical() == ip)
            .map(|s| (now - s.add_time as f64).max(0.0))
            .reduce(f64::min),
    }
}
