//! Flows as the API serves them.
use std::{collections::BTreeMap, net::IpAddr};

use serde::{Deserialize, Serialize};

use super::{Class, Direction, Encryption};

/// One flow-table entry, decoded: the outer header's ends, the VNI (VXLAN)
/// or SPI (ESP), and for VXLAN the inner flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    pub ifindex: u32,
    pub direction: Direction,
    pub class: Class,
    pub outer_src: Option<IpAddr>,
    pub outer_dst: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spi: Option<u32>,
    /// ESP only: carried in UDP (NAT-T) rather than directly in IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub esp_in_udp: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub esp_seq: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_proto: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_src: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_dst: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_sport: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_dport: Option<u16>,
    pub packets: u64,
    pub bytes: u64,
    /// Unix seconds.
    pub first_seen: f64,
    pub last_seen: f64,
    /// Requests by method (`GET`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub http_requests: BTreeMap<String, u64>,
    /// Responses by status class (`2xx`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub http_responses: BTreeMap<String, u64>,
    /// Matches by `--pattern`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pattern_hits: BTreeMap<String, u64>,
    /// VXLAN packets that were the first fragment of an outer datagram (a
    /// flow of fragments: its outer ends and VNI only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub outer_fragments: u64,
    /// Inner TCP only: every flag seen, OR-ed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<u8>,
}

/// TCP flag bits as `Flow::tcp_flags` carries them (RFC 9293).
pub mod tcp {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

impl Flow {
    /// Inner TCP whose connection ended: a FIN or a reset was seen on it.
    pub fn tcp_ended(&self) -> bool {
        self.tcp_flags
            .is_some_and(|f| f & (tcp::FIN | tcp::RST) != 0)
    }

    /// What identifies it at both ends of the underlay (VXLAN with an inner
    /// flow only): the same as `SettledFlow::id`.
    pub fn wire_id(&self) -> Option<super::FlowId> {
        if self.class != super::Class::Vxlan {
            return None;
        }
        Some((
            self.outer_src?,
            self.outer_dst?,
            self.vni?,
            self.inner_proto?,
            self.inner_src?,
            self.inner_dst?,
            self.inner_sport.unwrap_or(0),
            self.inner_dport.unwrap_or(0),
        ))
    }

    /// HTTP requests seen on it, every method.
    pub fn requests(&self) -> u64 {
        self.http_requests.values().sum()
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The labels of one overlay flow.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FlowLabels {
    /// Network name; empty for ESP (its SPI belongs to a node pair, not to a
    /// network: every encrypted network between two nodes shares it).
    pub network: String,
    pub vni: String,
    pub encrypted: Encryption,
    /// The other node: hostname where the engine tells it, else its address.
    pub peer_node: String,
    pub src_service: String,
    pub dst_service: String,
    /// The peer is a node of this swarm (false also when nobody knows).
    #[serde(skip)]
    pub peer_known: bool,
}

/// A flow with its labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelledFlow {
    #[serde(flatten)]
    pub flow: Flow,
    pub labels: FlowLabels,
    /// The last HTTP request line seen on it (redacted per
    /// `--capture-paths`), from the event ring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request: Option<String>,
}

/// `/api/v1/flows`: the busiest flows, at most `SHOWN_FLOWS` of them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FlowList {
    pub flows: Vec<LabelledFlow>,
}
