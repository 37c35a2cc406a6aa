//! Overlay health, as `/api/v1/health` serves it and `netobs doctor`
//! reads it: per peer node the data path each way, per service pair TCP
//! outcomes, and findings, each of one kind.
use std::net::IpAddr;

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
}

impl HealthKind {
    pub const ALL: [HealthKind; 5] = [
        HealthKind::DataPathOneWay,
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
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            HealthKind::DataPathOneWay | HealthKind::VxlanMisdirected => Severity::Critical,
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
    pub pairs: Vec<PairHealth>,
    pub findings: Vec<HealthFinding>,
    /// Checks this netobs cannot make (yet), said rather than skipped.
    pub not_checked: Vec<String>,
}
