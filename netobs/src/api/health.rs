//! Overlay health, as `/api/v1/health` serves it and `netobs doctor`
//! reads it: per peer node the data path each way, per service pair TCP
//! outcomes, and findings, each of one kind.
use std::net::IpAddr;

use netobs_common::Direction;
use serde::{Deserialize, Serialize};

use super::Severity;

/// The kinds of overlay-health finding: the one list (the README's table
/// is generated from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthKind {
    DataPathOneWay,
    MtuFragmentation,
    VxlanMisdirected,
    TcpConnectFailures,
    TcpResets,
    GossipUdpOneWay,
    KernelDrops,
    ChecksumOffload,
    OverlayLoss,
}

impl HealthKind {
    pub const ALL: [HealthKind; 9] = [
        HealthKind::DataPathOneWay,
        HealthKind::OverlayLoss,
        HealthKind::GossipUdpOneWay,
        HealthKind::KernelDrops,
        HealthKind::ChecksumOffload,
        HealthKind::MtuFragmentation,
        HealthKind::VxlanMisdirected,
        HealthKind::TcpConnectFailures,
        HealthKind::TcpResets,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HealthKind::DataPathOneWay => "data_path_one_way",
            HealthKind::MtuFragmentation => "mtu_fragmentation",
            HealthKind::VxlanMisdirected => "vxlan_misdirected",
            HealthKind::TcpConnectFailures => "tcp_connect_failures",
            HealthKind::TcpResets => "tcp_resets",
            HealthKind::GossipUdpOneWay => "gossip_udp_one_way",
            HealthKind::KernelDrops => "kernel_drops",
            HealthKind::ChecksumOffload => "checksum_offload",
            HealthKind::OverlayLoss => "overlay_loss",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            HealthKind::DataPathOneWay
            | HealthKind::VxlanMisdirected
            | HealthKind::GossipUdpOneWay => Severity::Critical,
            HealthKind::KernelDrops | HealthKind::OverlayLoss => Severity::Warning,
            HealthKind::ChecksumOffload => Severity::Critical,
            HealthKind::MtuFragmentation => Severity::Warning,
            HealthKind::TcpConnectFailures => Severity::Warning,
            HealthKind::TcpResets => Severity::Info,
        }
    }

    /// What it means, what it looks like on the wire, and what to do.
    pub fn meaning(self) -> &'static str {
        match self {
            HealthKind::DataPathOneWay => {
                "VXLAN leaves for a peer node, inner TCP connections to it get no answer, and \
                 nothing has come back from it for the last 30 s: the data-path port (UDP 4789 \
                 or the swarm's) is dropped on the way or at the peer (firewall, security \
                 group). Open the port both ways between all nodes"
            }
            HealthKind::MtuFragmentation => {
                "VXLAN between two nodes travels as IP fragments: the underlay's MTU is below \
                 the overlay network's MTU + 50 bytes of encapsulation. Fragments cost, and \
                 clouds and firewalls that drop them make a black hole where small packets \
                 pass and full-size ones vanish. Create the network with `--opt \
                 com.docker.network.driver.mtu=` the underlay's MTU - 50 (or raise the \
                 underlay's)"
            }
            HealthKind::VxlanMisdirected => {
                "VXLAN for a task is sent to another node than the one running it, for over \
                 10 s: a stale forwarding entry in the overlay (moby#52661). Restart the task, \
                 or remove and re-add the node's network attachment; `bridge fdb show` in the \
                 overlay's namespace shows the entry"
            }
            HealthKind::TcpConnectFailures => {
                "connections between two services whose SYN got no answer for 5 s (or only a \
                 reset): the server is down, full, or filtered"
            }
            HealthKind::GossipUdpOneWay => {
                "UDP gossip (7946) leaves for a peer node and none has come back from it for the \
                 last 30 s: UDP 7946 is dropped between the two nodes (often in one direction \
                 only). Swarm falls back to TCP for its health probes, so the node stays \
                 `Ready`, but the overlay's state (which task is where) travels by UDP gossip: \
                 forwarding entries go stale and tasks cannot reach each other. Open UDP 7946 \
                 both ways between all nodes"
            }
            HealthKind::KernelDrops => {
                "this node's kernel dropped overlay-path packets (VXLAN, ESP or gossip) to or \
                 from a peer node in the last 30 s, and says why (`skb:kfree_skb`'s drop \
                 reason, Linux 5.17+): NETFILTER_DROP is a firewall rule here, XFRM_* an IPsec \
                 policy or state, NO_SOCKET nothing listening on the port, VXLAN_* the VXLAN \
                 device, PKT_TOO_BIG the MTU, *QDISC*/*BACKLOG* an overloaded node. Drops \
                 after decapsulation (in a container's namespace) are not counted here"
            }
            HealthKind::ChecksumOffload => {
                "inner TCP SYNs arriving in VXLAN from a peer node carry a wrong checksum, or \
                 one never filled in on an interface only a wire feeds (not veth, virtio and \
                 the like, where the sender shares the host and that is normal): the receiving \
                 task drops them, connections hang while ping works. Broken checksum offload on \
                 the sender or a device between (moby#41775): on the sending node, `ethtool -K \
                 IF tx-checksum-ip-generic off` on the underlay interface. The finding names \
                 this node's interface, driver and rx-checksumming"
            }
            HealthKind::OverlayLoss => {
                "VXLAN a peer node's agent counted leaving that node never reached this one: \
                 at least 10 packets and 1% of those sent in flows that went quiet in the last \
                 5 min. Measured, not guessed: both agents count each flow, and a flow is \
                 compared once no packet of it can still be on the way. The loss is between the \
                 two hooks: the sender's queues and NIC, the underlay, this node's NIC. Look \
                 at both interfaces' error and drop counters (`ip -s link`, `ethtool -S`), \
                 rate limits and the links between"
            }
            HealthKind::TcpResets => {
                "connections between two services ended by a reset (counted by the side that \
                 sent it); information: some servers close that way"
            }
        }
    }
}

impl std::fmt::Display for HealthKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthFinding {
    pub kind: HealthKind,
    pub severity: Severity,
    /// The peer node it is about (name, else address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// `client -> server`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<String>,
    /// What is wrong, the evidence, and what to do, in one line.
    pub message: String,
}

/// The data path with one peer node over the last window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerHealth {
    /// Hostname where the engine tells it, else the address.
    pub peer: String,
    pub addr: IpAddr,
    /// VXLAN packets each way, and inner TCP connections that failed.
    pub packets_out: u64,
    pub packets_in: u64,
    pub connect_failures: u64,
    /// Unix seconds of the last VXLAN each way, if any since the agent
    /// started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_out: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_in: Option<f64>,
}

/// UDP gossip with one peer node over the last window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GossipHealth {
    /// Hostname where the engine tells it, else the address.
    pub peer: String,
    pub addr: IpAddr,
    /// UDP 7946 datagrams each way.
    pub packets_out: u64,
    pub packets_in: u64,
    /// Unix seconds of the last datagram from the peer, if any since the
    /// agent started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_in: Option<f64>,
}

/// What a dropped overlay-path packet was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropTraffic {
    Vxlan,
    Esp,
    Gossip,
}

impl DropTraffic {
    pub fn name(self) -> &'static str {
        match self {
            DropTraffic::Vxlan => "vxlan",
            DropTraffic::Esp => "esp",
            DropTraffic::Gossip => "gossip",
        }
    }

    pub fn from_u8(v: u8) -> Option<DropTraffic> {
        match v {
            netobs_common::DROP_VXLAN => Some(DropTraffic::Vxlan),
            netobs_common::DROP_ESP => Some(DropTraffic::Esp),
            netobs_common::DROP_GOSSIP => Some(DropTraffic::Gossip),
            _ => None,
        }
    }
}

impl std::fmt::Display for DropTraffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Overlay-path packets this node's kernel dropped, for one peer, way,
/// kind of traffic and reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropHealth {
    pub peer: String,
    pub addr: IpAddr,
    /// Ingress: the packet came from the peer; egress: it was going to it.
    pub direction: Direction,
    pub traffic: DropTraffic,
    /// The kernel's `skb_drop_reason` without its prefix (`NETFILTER_DROP`).
    pub reason: String,
    /// In the last window, and since the agent started.
    pub recent: u64,
    pub total: u64,
}

/// Inner TCP SYNs that arrived in VXLAN from one peer on one interface
/// over the window, by checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecksumHealth {
    pub peer: String,
    pub addr: IpAddr,
    pub iface: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    pub ok: u64,
    /// Never filled in (left for a NIC): normal from the same host.
    pub partial: u64,
    pub bad: u64,
}

/// TCP between two services: since the agent started, and over the last
/// five minutes (what the findings look at).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairHealth {
    pub network: String,
    /// The client for connection failures; the side that sent the reset
    /// for resets.
    pub src_service: String,
    pub dst_service: String,
    pub connect_failures: u64,
    pub resets: u64,
    pub recent_connect_failures: u64,
    pub recent_resets: u64,
}

/// `/api/v1/health`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OverlayHealth {
    /// The window, in seconds, of the per-peer figures.
    pub window_secs: u64,
    pub peers: Vec<PeerHealth>,
    /// UDP gossip per peer node over the window.
    #[serde(default)]
    pub gossip: Vec<GossipHealth>,
    /// The kernel's drops of overlay-path packets.
    #[serde(default)]
    pub drops: Vec<DropHealth>,
    /// Inner SYN checksums per peer and interface over the window.
    #[serde(default)]
    pub checksums: Vec<ChecksumHealth>,
    pub pairs: Vec<PairHealth>,
    /// VXLAN lost on the way from each peer node, measured against what
    /// its agent says it sent.
    #[serde(default)]
    pub loss: Vec<super::LossHealth>,
    pub findings: Vec<HealthFinding>,
    /// Checks this netobs cannot make (yet), said rather than skipped.
    pub not_checked: Vec<String>,
}
