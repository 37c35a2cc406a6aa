//! The one list of metric names, and the registry they live in.
//!
//! Every series netobs exports is declared in `METRICS`: name, type, labels,
//! help. The README's metric reference is generated from this table and a
//! test keeps the two equal.
use std::{
    collections::{HashMap, HashSet},
    time::Instant,
};

use prometheus::{core::Collector, IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

macro_rules! metric {
    ($id:ident, $name:literal, $kind:ident, [$($l:literal),*], $help:literal) => {
        pub const $id: MetricDef = MetricDef { name: $name, kind: Kind::$kind, labels: &[$($l),*], help: $help };
    };
}

metric!(
    PACKETS,
    "netobs_packets_total",
    Counter,
    ["iface", "direction", "class"],
    "Packets seen on a watched interface, by class (vxlan, esp, other, malformed)."
);
metric!(
    BYTES,
    "netobs_bytes_total",
    Counter,
    ["iface", "direction", "class"],
    "Bytes (whole Ethernet frames) seen on a watched interface, by class."
);
metric!(OVERLAY_PACKETS, "netobs_overlay_packets_total", Counter, ["network", "vni", "encrypted", "class", "direction", "peer_node"], "Overlay packets by network and peer node; ESP has an empty network (its SPI belongs to a node pair).");
metric!(
    OVERLAY_BYTES,
    "netobs_overlay_bytes_total",
    Counter,
    [
        "network",
        "vni",
        "encrypted",
        "class",
        "direction",
        "peer_node"
    ],
    "Overlay bytes by network and peer node."
);
metric!(
    HTTP_REQUESTS,
    "netobs_http_requests_total",
    Counter,
    ["network", "src_service", "dst_service", "method"],
    "HTTP requests seen in clear on the overlay."
);
metric!(
    HTTP_RESPONSES,
    "netobs_http_responses_total",
    Counter,
    ["network", "src_service", "dst_service", "code_class"],
    "HTTP responses seen in clear on the overlay; src_service is the client that asked."
);
metric!(
    PATTERN_MATCHES,
    "netobs_pattern_matches_total",
    Counter,
    ["network", "pattern"],
    "Packets of unencrypted overlay traffic in which a --pattern matched."
);
metric!(PLAINTEXT_ON_ENCRYPTED, "netobs_plaintext_on_encrypted_network_bytes_total", Counter, ["network"], "Unencrypted VXLAN bytes on a network created with --opt encrypted: encryption promised, not delivered.");
metric!(
    UNKNOWN_PEER,
    "netobs_vxlan_from_unknown_peer_packets_total",
    Counter,
    ["iface"],
    "VXLAN packets to or from an address that is not a node of this swarm: an exposed data-path port."
);
metric!(
    FLOWS_ACTIVE,
    "netobs_flows_active",
    Gauge,
    [],
    "Flows in the kernel flow table."
);
metric!(
    FLOW_EVICTIONS,
    "netobs_flow_evictions_total",
    Counter,
    [],
    "Flows the kernel table evicted to make room (their last increments may be lost)."
);
metric!(
    EVENTS_DROPPED,
    "netobs_events_dropped_total",
    Counter,
    ["reason"],
    "Events the kernel did not deliver: rate_limited or ring_full."
);
metric!(
    DOCKER_UP,
    "netobs_docker_up",
    Gauge,
    [],
    "1 if the Docker engine answered the last sync."
);
metric!(
    NETWORK_INFO,
    "netobs_network_info",
    Gauge,
    ["network", "vni", "encrypted"],
    "One series per overlay network the engine reports; value 1."
);
metric!(
    BUILD_INFO,
    "netobs_build_info",
    Gauge,
    ["version"],
    "netobs's version; value 1."
);
metric!(
    SERIES_FOLDED,
    "netobs_series_folded_total",
    Counter,
    ["metric"],
    "Increments folded into the `other` series because a metric reached --max-series."
);
metric!(
    ALERT_ACTIVE,
    "netobs_alert_active",
    Gauge,
    ["kind", "network"],
    "1 for each encryption alert the agent raised: kind plaintext_on_encrypted_network or unencrypted_overlay."
);
metric!(
    TCP_CONNECT_FAILURES,
    "netobs_tcp_connect_failures_total",
    Counter,
    ["network", "src_service", "dst_service"],
    "Inner TCP connections whose SYN got no answer for 5 s (or only a reset), by client and server."
);
metric!(
    TCP_RESETS,
    "netobs_tcp_resets_total",
    Counter,
    ["network", "src_service", "dst_service"],
    "Inner TCP connections on which a reset was seen; src_service sent it."
);
metric!(
    DATA_PATH_ONE_WAY,
    "netobs_data_path_one_way",
    Gauge,
    ["peer_node"],
    "1 while VXLAN leaves for a peer node, TCP to it gets no answer and nothing comes back from it (30 s); 0 for the other peers seen."
);
metric!(
    OVERLAY_FRAGMENTS,
    "netobs_overlay_fragmented_packets_total",
    Counter,
    ["network", "peer_node", "direction"],
    "VXLAN packets that crossed as the first fragment of an outer IP datagram: the underlay's MTU is below the overlay's + 50."
);
metric!(
    VXLAN_MISDIRECTED,
    "netobs_vxlan_misdirected_packets_total",
    Counter,
    ["network", "peer_node"],
    "VXLAN sent to peer_node for a task another node runs: a stale forwarding entry."
);

metric!(
    GOSSIP_UDP_PACKETS,
    "netobs_gossip_udp_packets_total",
    Counter,
    ["peer_node", "direction"],
    "UDP gossip datagrams (port 7946) to and from a peer node."
);
metric!(
    GOSSIP_UDP_ONE_WAY,
    "netobs_gossip_udp_one_way",
    Gauge,
    ["peer_node"],
    "1 while UDP gossip leaves for a peer node and none comes back from it (30 s); 0 for the other peers seen."
);
metric!(
    KERNEL_DROPS,
    "netobs_kernel_drops_total",
    Counter,
    ["peer_node", "direction", "traffic", "reason"],
    "Overlay-path packets (traffic vxlan, esp or gossip) this node's kernel dropped, by its drop reason (skb:kfree_skb; Linux 5.17+)."
);
metric!(
    INNER_CHECKSUMS,
    "netobs_inner_checksums_total",
    Counter,
    ["peer_node", "iface", "verdict"],
    "Inner TCP SYNs that arrived in VXLAN, by the checksum they carried: ok, partial (never filled in, normal from the same host) or bad."
);
metric!(
    CHECKSUM_OFFLOAD_BROKEN,
    "netobs_checksum_offload_broken",
    Gauge,
    ["peer_node"],
    "1 while inner SYNs from a peer node arrive with wrong checksums, or never filled in over a wire (30 s); 0 for the other peers seen."
);
metric!(
    UNDERLAY_UNTRACKED,
    "netobs_underlay_untracked_packets_total",
    Counter,
    [],
    "Gossip datagrams, kernel drops and checksummed SYNs counted without their peer because the kernel's maps of them were full."
);
metric!(
    OVERLAY_LOSS_CHECKED,
    "netobs_overlay_loss_checked_packets_total",
    Counter,
    ["src_node", "dst_node"],
    "VXLAN packets src_node's agent counted leaving for dst_node (this node) in flows compared once they went quiet: what loss is measured against."
);
metric!(
    OVERLAY_LOST,
    "netobs_overlay_lost_packets_total",
    Counter,
    ["src_node", "dst_node"],
    "Of those, the packets that never reached dst_node (this node): lost between the sender's hook and this one. Measured by the receiving node's agent only, so never counted twice."
);
metric!(
    OVERLAY_LOSS_UNVERIFIED,
    "netobs_overlay_loss_unverified_flows_total",
    Counter,
    ["src_node", "dst_node"],
    "Flows from src_node whose loss could not be judged: older than either agent, or evicted from either kernel table while they ran."
);
metric!(
    PEER_AGENT_UP,
    "netobs_peer_agent_up",
    Gauge,
    ["peer_node"],
    "1 if the peer node's agent answered this node's last loss check (every 10 s); 0 if it did not, and loss from it is not measured."
);

pub const METRICS: &[MetricDef] = &[
    PACKETS,
    BYTES,
    OVERLAY_PACKETS,
    OVERLAY_BYTES,
    HTTP_REQUESTS,
    HTTP_RESPONSES,
    PATTERN_MATCHES,
    PLAINTEXT_ON_ENCRYPTED,
    UNKNOWN_PEER,
    FLOWS_ACTIVE,
    FLOW_EVICTIONS,
    EVENTS_DROPPED,
    DOCKER_UP,
    NETWORK_INFO,
    BUILD_INFO,
    SERIES_FOLDED,
    ALERT_ACTIVE,
    TCP_CONNECT_FAILURES,
    TCP_RESETS,
    DATA_PATH_ONE_WAY,
    VXLAN_MISDIRECTED,
    OVERLAY_FRAGMENTS,
    GOSSIP_UDP_PACKETS,
    GOSSIP_UDP_ONE_WAY,
    KERNEL_DROPS,
    INNER_CHECKSUMS,
    CHECKSUM_OFFLOAD_BROKEN,
    UNDERLAY_UNTRACKED,
    OVERLAY_LOSS_CHECKED,
    OVERLAY_LOST,
    OVERLAY_LOSS_UNVERIFIED,
    PEER_AGENT_UP,
];

/// Label value that stands in for everything past the series cap.
pub use crate::flows::label::OTHER;

enum Family {
    Counter(IntCounterVec),
    Gauge(IntGaugeVec),
}

/// The registry, with a cap on series per family and an expiry for series
/// that stop moving.
pub struct Metrics {
    registry: Registry,
    families: HashMap<&'static str, Family>,
    max_series: usize,
    /// Label sets per family, with when each last moved.
    seen: HashMap<&'static str, HashMap<Vec<String>, Instant>>,
    folded: IntCounterVec,
}

impl Metrics {
    pub fn new(max_series: usize) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let mut families = HashMap::new();
        for d in METRICS {
            let opts = Opts::new(d.name, d.help);
            let fam = match d.kind {
                Kind::Counter => Family::Counter(IntCounterVec::new(opts, d.labels)?),
                Kind::Gauge => Family::Gauge(IntGaugeVec::new(opts, d.labels)?),
            };
            let c: Box<dyn Collector> = match &fam {
                Family::Counter(c) => Box::new(c.clone()),
                Family::Gauge(g) => Box::new(g.clone()),
            };
            registry.register(c)?;
            families.insert(d.name, fam);
        }
        let folded = match families.get(SERIES_FOLDED.name) {
            Some(Family::Counter(c)) => c.clone(),
            _ => unreachable!("SERIES_FOLDED is declared as a counter"),
        };
        let m = Metrics {
            registry,
            families,
            max_series,
            seen: HashMap::new(),
            folded,
        };
        m.gauge_set(&BUILD_INFO, &[env!("CARGO_PKG_VERSION")], 1);
        Ok(m)
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Series one family may hold before new ones fold into `other`.
    pub fn max_series(&self) -> usize {
        self.max_series
    }

    /// The label values to use: `values`, or `other` for every label once the
    /// family holds `max_series` series.
    fn admit(&mut self, def: &MetricDef, values: &[&str]) -> Vec<String> {
        let owned: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let seen = self.seen.entry(def.name).or_default();
        let now = Instant::now();
        if let Some(t) = seen.get_mut(&owned) {
            *t = now;
            return owned;
        }
        if seen.len() < self.max_series {
            seen.insert(owned.clone(), now);
            return owned;
        }
        self.folded.with_label_values(&[def.name]).inc();
        let other = vec![OTHER.to_owned(); values.len()];
        seen.insert(other.clone(), now);
        other
    }

    pub fn inc(&mut self, def: &MetricDef, values: &[&str], by: u64) {
        if by == 0 {
            return;
        }
        debug_assert_eq!(def.kind, Kind::Counter);
        let labels = self.admit(def, values);
        if let Some(Family::Counter(c)) = self.families.get(def.name) {
            let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
            c.with_label_values(&refs).inc_by(by);
        }
    }

    /// Creates a counter series at zero: losses and alarms should read 0,
    /// not "no data", so that dashboards and `increase()` see them.
    pub fn touch(&mut self, def: &MetricDef, values: &[&str]) {
        debug_assert_eq!(def.kind, Kind::Counter);
        let labels = self.admit(def, values);
        if let Some(Family::Counter(c)) = self.families.get(def.name) {
            let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
            c.with_label_values(&refs);
        }
    }

    pub fn gauge_set(&self, def: &MetricDef, values: &[&str], v: i64) {
        if let Some(Family::Gauge(g)) = self.families.get(def.name) {
            g.with_label_values(values).set(v);
        }
    }

    /// Replaces every series of a gauge family with `series`.
    pub fn gauge_replace(&self, def: &MetricDef, series: &[(Vec<String>, i64)]) {
        if let Some(Family::Gauge(g)) = self.families.get(def.name) {
            g.reset();
            for (labels, v) in series {
                let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
                g.with_label_values(&refs).set(*v);
            }
        }
    }

    /// Removes counter series that have not moved for `grace` and name a
    /// network or service the inventory no longer has, so series of removed
    /// things do not live forever. Series of live things are never removed:
    /// their counters must stay monotonic.
    pub fn expire(&mut self, grace: std::time::Duration, live: &HashSet<String>) {
        let now = Instant::now();
        for def in METRICS {
            let Some(Family::Counter(c)) = self.families.get(def.name) else {
                continue;
            };
            let Some(seen) = self.seen.get_mut(def.name) else {
                continue;
            };
            let named: Vec<usize> = def
                .labels
                .iter()
                .enumerate()
                .filter(|(_, l)| matches!(**l, "network" | "src_service" | "dst_service"))
                .map(|(i, _)| i)
                .collect();
            if named.is_empty() {
                continue;
            }
            seen.retain(|labels, t| {
                let gone = named.iter().any(|&i| {
                    let v = labels[i].as_str();
                    !v.is_empty()
                        && v != OTHER
                        && v != crate::flows::label::UNKNOWN
                        && !live.contains(v)
                });
                if gone && now.duration_since(*t) > grace {
                    let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
                    let _ = c.remove_label_values(&refs);
                    false
                } else {
                    true
                }
            });
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let enc = prometheus::TextEncoder::new();
        enc.encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

/// The README's metric reference, as a Markdown table.
pub fn reference_table() -> String {
    let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for d in METRICS {
        let kind = match d.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        out.push_str(&format!(
            "| `{}` | {kind} | {} | {} |\n",
            d.name,
            d.labels.join(", "),
            d.help
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut seen = HashSet::new();
        for d in METRICS {
            assert!(seen.insert(d.name), "{} declared twice", d.name);
            assert!(d.name.starts_with("netobs_"));
            assert!(
                d.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{}",
                d.name
            );
            assert_eq!(
                d.kind == Kind::Counter,
                d.name.ends_with("_total"),
                "{}",
                d.name
            );
        }
    }

    #[test]
    fn the_series_cap_folds_into_other() {
        let mut m = Metrics::new(2).expect("registry");
        for net in ["a", "b", "c", "d"] {
            m.inc(&PATTERN_MATCHES, &[net, "p"], 1);
        }
        let text = m.render();
        assert!(text.contains("netobs_pattern_matches_total{network=\"a\",pattern=\"p\"} 1"));
        assert!(
            text.contains("netobs_pattern_matches_total{network=\"other\",pattern=\"other\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("netobs_series_folded_total{metric=\"netobs_pattern_matches_total\"} 2")
        );
    }

    #[test]
    fn series_of_removed_networks_expire_and_live_ones_stay() {
        let mut m = Metrics::new(100).expect("registry");
        m.inc(&PATTERN_MATCHES, &["gone", "p"], 3);
        m.inc(&PATTERN_MATCHES, &["here", "p"], 4);
        let live: HashSet<String> = ["here".to_owned()].into();
        m.expire(std::time::Duration::from_secs(3600), &live);
        assert!(
            m.render().contains("network=\"gone\""),
            "still within the grace period"
        );
        m.expire(std::time::Duration::ZERO, &live);
        let text = m.render();
        assert!(!text.contains("network=\"gone\""), "{text}");
        assert!(text.contains("network=\"here\",pattern=\"p\"} 4"));
    }
}
