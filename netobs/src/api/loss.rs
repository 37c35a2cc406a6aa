//! Loss between nodes: what a node's agent tells its peers' agents about
//! the VXLAN it sent (`/api/v1/settled`), and what each agent finds
//! lost of what was sent to it (in `/api/v1/health`).
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::Direction;

/// One VXLAN flow that has gone quiet: no packet for `SETTLE_SECS`, so
/// none of it is still on the way and its count is final unless it
/// resumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettledFlow {
    pub direction: Direction,
    pub outer_src: IpAddr,
    pub outer_dst: IpAddr,
    pub vni: u32,
    pub inner_proto: u8,
    pub inner_src: IpAddr,
    pub inner_dst: IpAddr,
    pub inner_sport: u16,
    pub inner_dport: u16,
    pub packets: u64,
    /// Seconds since its first packet, on the node that counted it (no
    /// clock is compared across nodes).
    pub age_secs: f64,
    /// Seconds since its last packet, there.
    pub idle_secs: f64,
}

/// What identifies a flow at both ends: its outer ends, VNI and inner
/// five-tuple (not the interface or the direction, which differ).
pub type FlowId = (IpAddr, IpAddr, u32, u8, IpAddr, IpAddr, u16, u16);

impl SettledFlow {
    pub fn id(&self) -> FlowId {
        (
            self.outer_src,
            self.outer_dst,
            self.vni,
            self.inner_proto,
            self.inner_src,
            self.inner_dst,
            self.inner_sport,
            self.inner_dport,
        )
    }
}

/// `/api/v1/settled[?to=ADDR]`: the VXLAN this node sent (to ADDR) in
/// flows that went quiet within the last minute.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SettledFlows {
    /// Seconds the agent has been reading.
    pub uptime_secs: f64,
    /// Seconds since the kernel's flow table last evicted a flow, if it
    /// ever did: an evicted flow starts counting again from nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evicted_secs_ago: Option<f64>,
    /// Settled flows past the agent's limit, not listed.
    pub omitted: u64,
    pub flows: Vec<SettledFlow>,
}

/// VXLAN from one peer node: what its agent says it sent in flows that
/// settled, against what arrived here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossHealth {
    /// The sender: hostname where the engine tells it, else the address.
    pub peer: String,
    pub addr: IpAddr,
    /// Its agent's answer to the last check: `ok`, `down`, `slow`,
    /// `refused`, `incompatible` or `failed` (the cluster view's words).
    pub agent: String,
    /// Packets it sent in settled flows, and of those the ones that did not
    /// arrive: since this agent started...
    pub checked: u64,
    pub lost: u64,
    /// ... and over the last five minutes.
    pub recent_checked: u64,
    pub recent_lost: u64,
    /// Flows that could not be judged: one end's table evicted during the
    /// flow, or the flow began before this agent did.
    pub unverified_flows: u64,
}
