//! Flows as the terminal shows them, from the agent's API: one row model for
//! `netobs flows` and `netobs top`, rates from two successive reads.
use std::{collections::HashMap, time::Instant};

use serde_json::Value;

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
fn who(f: &Value, service: &str, addr: &str, port: &str) -> String {
    let name = match f["labels"][service].as_str() {
        Some(s) if !s.is_empty() && s != "unknown" => s,
        _ => f[addr].as_str().unwrap_or("-"),
    };
    match f[port].as_u64() {
        Some(p) => format!("{name}:{p}"),
        None => name.to_owned(),
    }
}

/// A flow's identity across reads.
fn key(f: &Value) -> String {
    [
        "ifindex",
        "direction",
        "class",
        "outer_src",
        "outer_dst",
        "vni",
        "spi",
        "inner_src",
        "inner_dst",
        "inner_sport",
        "inner_dport",
    ]
    .iter()
    .map(|k| f[*k].to_string())
    .collect::<Vec<_>>()
    .join("|")
}

/// Turns successive flow lists into rows with rates.
#[derive(Default)]
pub struct Rates {
    prev: HashMap<String, (u64, u64)>,
    at: Option<Instant>,
}

impl Rates {
    pub fn rows(&mut self, flows: &[Value]) -> Vec<Row> {
        let now = Instant::now();
        let dt = self.at.map_or(0.0, |t| now.duration_since(t).as_secs_f64());
        let mut next = HashMap::with_capacity(flows.len());
        let rows = flows
            .iter()
            .map(|f| {
                let (p, b) = (
                    f["packets"].as_u64().unwrap_or(0),
                    f["bytes"].as_u64().unwrap_or(0),
                );
                let k = key(f);
                let (pp, pb) = self.prev.get(&k).copied().unwrap_or((p, b));
                next.insert(k, (p, b));
                let rate = |now: u64, before: u64| {
                    if dt > 0.0 {
                        now.saturating_sub(before) as f64 / dt
                    } else {
                        0.0
                    }
                };
                let mark = match (f["class"].as_str(), f["labels"]["encrypted"].as_str()) {
                    (Some("esp"), _) => Mark::Esp,
                    (Some("vxlan"), Some("true")) => Mark::PlainOnEncrypted,
                    (Some("vxlan"), _) => Mark::Plain,
                    _ => Mark::Other,
                };
                Row {
                    network: f["labels"]["network"]
                        .as_str()
                        .filter(|n| !n.is_empty())
                        .unwrap_or("-")
                        .to_owned(),
                    id: f["vni"]
                        .as_u64()
                        .map(|v| v.to_string())
                        .or_else(|| f["spi"].as_u64().map(|s| format!("{s:#x}")))
                        .unwrap_or_else(|| "-".into()),
                    mark,
                    peer: f["labels"]["peer_node"].as_str().unwrap_or("-").to_owned(),
                    src: who(f, "src_service", "inner_src", "inner_sport"),
                    dst: who(f, "dst_service", "inner_dst", "inner_dport"),
                    pps: rate(p, pp),
                    bps: rate(b, pb),
                    packets: p,
                    bytes: b,
                    last_request: f["last_request"].as_str().unwrap_or("").to_owned(),
                }
            })
            .collect();
        self.prev = next;
        self.at = Some(now);
        rows
    }
}
