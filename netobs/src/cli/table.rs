//! Flows as the terminal shows them, from the agent's API: one row model for
//! `netobs flows` and `netobs top`, rates from two successive reads.
use std::{collections::HashMap, net::IpAddr, time::Instant};

use crate::{
    api::{Class, Encryption, LabelledFlow},
    flows::{label::UNKNOWN, SortKey},
};

/// How a flow's protection looks on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// VXLAN on a network that does not promise encryption.
    Plain,
    /// VXLAN on a network marked encrypted: the promise is broken.
    PlainOnEncrypted,
    Esp,
    Other,
}

impl Mark {
    pub fn label(self) -> &'static str {
        match self {
            Mark::Plain => "PLAIN",
            Mark::PlainOnEncrypted => "PLAIN!!",
            Mark::Esp => "ESP",
            Mark::Other => "other",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Row {
    pub network: String,
    /// VNI, or SPI in hex for ESP.
    pub id: String,
    pub mark: Mark,
    pub peer: String,
    pub src: String,
    pub dst: String,
    pub pps: f64,
    pub bps: f64,
    pub packets: u64,
    pub bytes: u64,
    pub last_request: String,
}

/// Who: the service, else the address; with the port, which tells one
/// connection between two services from the next.
fn who(service: &str, addr: Option<IpAddr>, port: Option<u16>) -> String {
    let name = match service {
        "" | UNKNOWN => addr.map_or_else(|| "-".to_owned(), |a| a.to_string()),
        s => s.to_owned(),
    };
    match port {
        Some(p) => format!("{name}:{p}"),
        None => name,
    }
}

impl Mark {
    pub fn of(f: &LabelledFlow) -> Mark {
        match (f.flow.class, f.labels.encrypted) {
            (Class::Esp, _) => Mark::Esp,
            (Class::Vxlan, Encryption::Encrypted) => Mark::PlainOnEncrypted,
            (Class::Vxlan, _) => Mark::Plain,
            _ => Mark::Other,
        }
    }
}

/// A flow's identity across reads.
type Identity = (u32, Option<IpAddr>, Option<IpAddr>, SortKey);

/// Turns successive flow lists into rows with rates.
#[derive(Default)]
pub struct Rates {
    prev: HashMap<Identity, (u64, u64)>,
    at: Option<Instant>,
}

impl Rates {
    pub fn rows(&mut self, flows: &[LabelledFlow]) -> Vec<Row> {
        let now = Instant::now();
        let dt = self.at.map_or(0.0, |t| now.duration_since(t).as_secs_f64());
        let mut next = HashMap::with_capacity(flows.len());
        let rows = flows
            .iter()
            .map(|lf| {
                let (f, l) = (&lf.flow, &lf.labels);
                let (p, b) = (f.packets, f.bytes);
                // The interface and outer ends tell apart the same inner
                // flow seen twice.
                let k = (f.ifindex, f.outer_src, f.outer_dst, f.sort_key());
                let (pp, pb) = self.prev.get(&k).copied().unwrap_or((p, b));
                next.insert(k, (p, b));
                let rate = |now: u64, before: u64| {
                    if dt > 0.0 {
                        now.saturating_sub(before) as f64 / dt
                    } else {
                        0.0
                    }
                };
                Row {
                    network: if l.network.is_empty() {
                        "-".to_owned()
                    } else {
                        l.network.clone()
                    },
                    id: f
                        .vni
                        .map(|v| v.to_string())
                        .or_else(|| f.spi.map(|s| format!("{s:#x}")))
                        .unwrap_or_else(|| "-".into()),
                    mark: Mark::of(lf),
                    peer: l.peer_node.clone(),
                    src: who(&l.src_service, f.inner_src, f.inner_sport),
                    dst: who(&l.dst_service, f.inner_dst, f.inner_dport),
                    pps: rate(p, pp),
                    bps: rate(b, pb),
                    packets: p,
                    bytes: b,
                    last_request: lf.last_request.clone().unwrap_or_default(),
                }
            })
            .collect();
        self.prev = next;
        self.at = Some(now);
        rows
    }
}
