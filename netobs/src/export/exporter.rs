//! From one read to what leaves the agent: metric series, the alert state,
//! and the API's documents. Owns all three; `poll` only reads.
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use netobs_common::{counter_index, Class, Direction, HttpMethod};

use super::{
    alerts::{Alert, Alerts},
    http::ApiState,
    metrics::{self, Metrics},
};
use crate::{
    api::{
        AlertList, DataPath, Encryption, FlowList, HealthKind, LabelledFlow, OverlayHealth,
        SettledFlows, Summary,
    },
    doctor::Doctor,
    flows::{unix_now, SortKey, STATUS_CLASS_NAMES},
    inventory::Inventory,
    loss::LossReport,
    poll::{Group, Iface, Read},
};

/// The last HTTP request line seen per flow, filled from the event ring
/// and shown with the flow in the API (`netobs top`). Bounded: a flood of
/// new flows replaces entries, it does not grow the map.
#[derive(Clone, Default)]
pub struct LastRequests(Arc<Mutex<HashMap<SortKey, String>>>);

const LAST_REQUESTS: usize = 4096;

impl LastRequests {
    pub fn insert(&self, flow: SortKey, line: String) {
        let Ok(mut m) = self.0.lock() else { return };
        if m.len() >= LAST_REQUESTS && !m.contains_key(&flow) {
            if let Some(k) = m.keys().next().copied() {
                m.remove(&k);
            }
        }
        m.insert(flow, line);
    }

    pub fn get(&self, flow: &SortKey) -> Option<String> {
        self.0.lock().ok()?.get(flow).cloned()
    }
}

/// What one export produced.
pub struct Exported {
    /// The API's documents, replacing the previous ones as a whole.
    pub api: ApiState,
    /// Alerts raised (or due a reminder) by this read: the agent logs them.
    pub raised: Vec<Alert>,
}

pub struct Exporter {
    metrics: Metrics,
    alerts: Alerts,
    doctor: Doctor,
    last_evictions: u64,
    /// The evictions one read alone inferred.
    evictions_last_read: u64,
    last_rate_limited: u64,
    last_ring_full: u64,
    grace: Duration,
    data_path: DataPath,
    /// The previous read's flows and when it was made (monotonic seconds):
    /// the audit's rates.
    last_flows: Arc<FlowList>,
    last_at: f64,
    /// When the agent started and the flow table last evicted (monotonic
    /// seconds): peers measuring loss need both.
    started: f64,
    last_eviction_at: Option<f64>,
    /// Per peer, the loss checker's totals already added to the metrics:
    /// (checked, lost, unverified flows).
    loss_exported: HashMap<IpAddr, (u64, u64, u64)>,
}

impl Exporter {
    pub fn new(metrics: Metrics, alerts: Alerts, grace: Duration, data_path: DataPath) -> Exporter {
        Exporter {
            metrics,
            alerts,
            doctor: Doctor::new(data_path.ports.clone(), crate::time::monotonic_secs()),
            last_evictions: 0,
            evictions_last_read: 0,
            last_rate_limited: 0,
            last_ring_full: 0,
            grace,
            data_path,
            last_flows: Arc::new(FlowList::default()),
            last_at: crate::time::monotonic_secs(),
            started: crate::time::monotonic_secs(),
            last_eviction_at: None,
            loss_exported: HashMap::new(),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn export(
        &mut self,
        read: &mut Read,
        ifaces: &[Iface],
        inv: &Arc<Inventory>,
        last_requests: &LastRequests,
        loss: &Arc<LossReport>,
    ) -> Exported {
        let patterns = read.snapshot.patterns();
        self.export_counters(read, ifaces);
        let raised = self.export_groups(&read.groups, ifaces, patterns, inv);
        self.export_health(read, ifaces, inv);
        let iface = |ifindex: u32| {
            let name = &ifaces.iter().find(|i| i.2 == ifindex)?.1;
            Some(crate::host::iface_info(name))
        };
        let health = self
            .doctor
            .observe(read, loss, crate::time::monotonic_secs(), &iface, inv);
        self.export_overlay_health(read, ifaces, &health);
        self.export_loss(&health, inv);
        let snapshot = &read.snapshot;
        let flows = snapshot
            .flows
            .iter()
            .zip(&read.labels)
            .map(|(f, labels)| LabelledFlow {
                labels: labels.clone(),
                last_request: last_requests.get(&f.sort_key()),
                flow: f.clone(),
            })
            .collect();
        let alerts = self.alerts.list();
        let flows = Arc::new(FlowList { flows });
        let now = crate::time::monotonic_secs();
        let flows_before = std::mem::replace(&mut self.last_flows, flows.clone());
        let dt = now - std::mem::replace(&mut self.last_at, now);
        let settled = Arc::new(SettledFlows {
            uptime_secs: now - self.started,
            evicted_secs_ago: self.last_eviction_at.map(|t| now - t),
            omitted: read.settled.omitted,
            // Handed on, not copied: up to MAX_SETTLED of them each second.
            flows: std::mem::take(&mut read.settled.flows),
        });
        let api = ApiState {
            settled,
            flows,
            flows_before,
            dt,
            inventory: inv.clone(),
            summary: Summary {
                totals: snapshot.totals(),
                alerts: alerts.len(),
                docker_up: inv.docker_up,
                data_path: self.data_path.clone(),
                require_encryption: self.alerts.policy().clone(),
            },
            alerts: AlertList { alerts },
            health,
        };
        Exported { api, raised }
    }

    fn export_counters(&mut self, read: &Read, ifaces: &[Iface]) {
        let m = &mut self.metrics;
        for (slot, name, _) in ifaces {
            for d in Direction::ALL {
                for c in Class::ALL {
                    if let Some(g) = read.counter_growth.get(counter_index(*slot, d, c) as usize) {
                        let l = [name.as_str(), d.name(), c.name()];
                        m.inc(&metrics::PACKETS, &l, g.packets);
                        m.inc(&metrics::BYTES, &l, g.bytes);
                    }
                }
            }
        }
    }

    fn export_groups(
        &mut self,
        groups: &[Group],
        ifaces: &[Iface],
        patterns: &[String],
        inv: &Inventory,
    ) -> Vec<Alert> {
        let m = &mut self.metrics;
        let now = unix_now();
        let swarm_known = inv.docker_up && inv.swarm.is_some();
        let mut raised = Vec::new();
        for grp in groups.iter().filter(|g| !g.growth.is_zero()) {
            let (l, g) = (&grp.labels, &grp.growth);
            let ol = [
                l.network.as_str(),
                &l.vni,
                l.encrypted.label(),
                grp.class.name(),
                grp.direction.name(),
                &l.peer_node,
            ];
            m.inc(&metrics::OVERLAY_PACKETS, &ol, g.packets);
            m.inc(&metrics::OVERLAY_BYTES, &ol, g.bytes);
            if grp.class != Class::Vxlan {
                continue;
            }
            for meth in HttpMethod::ALL {
                m.inc(
                    &metrics::HTTP_REQUESTS,
                    &[&l.network, &l.src_service, &l.dst_service, meth.name()],
                    g.http_requests[meth as usize],
                );
            }
            for (i, class) in STATUS_CLASS_NAMES.iter().enumerate() {
                // A response travels server -> client: label it from the
                // asking side, like its request.
                m.inc(
                    &metrics::HTTP_RESPONSES,
                    &[&l.network, &l.dst_service, &l.src_service, class],
                    g.http_responses[i],
                );
            }
            for (i, p) in patterns.iter().enumerate() {
                m.inc(
                    &metrics::PATTERN_MATCHES,
                    &[&l.network, p],
                    g.pattern_hits[i],
                );
            }
            m.inc(
                &metrics::OVERLAY_FRAGMENTS,
                &[&l.network, &l.peer_node, grp.direction.name()],
                g.outer_fragments,
            );
            let pair = [l.network.as_str(), &l.src_service, &l.dst_service];
            m.inc(
                &metrics::TCP_CONNECT_FAILURES,
                &pair,
                g.tcp_connect_failures,
            );
            m.inc(&metrics::TCP_RESETS, &pair, g.tcp_resets);
            if l.encrypted == Encryption::Encrypted {
                m.inc(&metrics::PLAINTEXT_ON_ENCRYPTED, &[&l.network], g.bytes);
            }
            // To or from: either way, the data-path port talks to a host
            // that is not a node.
            if swarm_known && !l.peer_known {
                let iface = ifaces
                    .iter()
                    .find(|i| i.2 == grp.ifindex)
                    .map_or("?", |i| i.1.as_str());
                m.inc(&metrics::UNKNOWN_PEER, &[iface], g.packets);
            }
            raised.extend(self.alerts.observe(l, g, now));
        }
        raised
    }

    /// The doctor's view: per-peer findings as gauges (0 for the other
    /// peers it saw), the underlay's counts, misdirected packets by network
    /// and the node they went to.
    fn export_overlay_health(&mut self, read: &Read, ifaces: &[Iface], health: &OverlayHealth) {
        let m = &mut self.metrics;
        let gauges = [
            (
                &metrics::DATA_PATH_ONE_WAY,
                HealthKind::DataPathOneWay,
                health
                    .peers
                    .iter()
                    .map(|p| p.peer.as_str())
                    .collect::<Vec<_>>(),
            ),
            (
                &metrics::GOSSIP_UDP_ONE_WAY,
                HealthKind::GossipUdpOneWay,
                health.gossip.iter().map(|g| g.peer.as_str()).collect(),
            ),
            (
                &metrics::CHECKSUM_OFFLOAD_BROKEN,
                HealthKind::ChecksumOffload,
                health.checksums.iter().map(|c| c.peer.as_str()).collect(),
            ),
        ];
        for (def, kind, peers) in gauges {
            m.gauge_replace(def, &finding_gauge(health, kind, &peers));
        }
        let u = &read.underlay;
        for ((_, ifindex), c) in &u.checksums {
            let name = ifaces
                .iter()
                .find(|i| i.2 == *ifindex)
                .map_or("unknown", |i| i.1.as_str());
            for (verdict, n) in [("ok", c.ok), ("partial", c.partial), ("bad", c.bad)] {
                m.inc(&metrics::INNER_CHECKSUMS, &[&c.name, name, verdict], n);
            }
        }
        m.inc(&metrics::UNDERLAY_UNTRACKED, &[], u.untracked);
        for g in u.gossip.values() {
            m.inc(
                &metrics::GOSSIP_UDP_PACKETS,
                &[&g.name, Direction::Egress.name()],
                g.packets_out,
            );
            m.inc(
                &metrics::GOSSIP_UDP_PACKETS,
                &[&g.name, Direction::Ingress.name()],
                g.packets_in,
            );
        }
        for d in &u.drops {
            m.inc(
                &metrics::KERNEL_DROPS,
                &[&d.name, d.direction.name(), d.traffic.name(), &d.reason],
                d.packets,
            );
        }
        for x in &read.misdirected {
            m.inc(
                &metrics::VXLAN_MISDIRECTED,
                &[&x.network, &x.sent_to_name],
                x.packets,
            );
        }
    }

    /// Loss between nodes: what the checker found of each peer's VXLAN on
    /// the way here, added to the counters once, and whether its agent
    /// answered.
    fn export_loss(&mut self, health: &OverlayHealth, inv: &Inventory) {
        let me = this_node(inv);
        let m = &mut self.metrics;
        for l in &health.loss {
            let done = self.loss_exported.entry(l.addr).or_default();
            let labels = [l.peer.as_str(), me.as_str()];
            // Zero until something is lost, rather than absent.
            for def in [
                &metrics::OVERLAY_LOSS_CHECKED,
                &metrics::OVERLAY_LOST,
                &metrics::OVERLAY_LOSS_UNVERIFIED,
            ] {
                m.touch(def, &labels);
            }
            m.inc(
                &metrics::OVERLAY_LOSS_CHECKED,
                &labels,
                l.checked.saturating_sub(done.0),
            );
            m.inc(
                &metrics::OVERLAY_LOST,
                &labels,
                l.lost.saturating_sub(done.1),
            );
            m.inc(
                &metrics::OVERLAY_LOSS_UNVERIFIED,
                &labels,
                l.unverified_flows.saturating_sub(done.2),
            );
            *done = (l.checked, l.lost, l.unverified_flows);
        }
        let up: Vec<(Vec<String>, i64)> = health
            .loss
            .iter()
            .map(|l| (vec![l.peer.clone()], i64::from(l.agent == "ok")))
            .collect();
        m.gauge_replace(&metrics::PEER_AGENT_UP, &up);
    }

    fn export_health(&mut self, read: &Read, ifaces: &[Iface], inv: &Inventory) {
        let snap = &read.snapshot;
        let m = &mut self.metrics;
        // Zero until something happens, rather than absent.
        m.touch(&metrics::FLOW_EVICTIONS, &[]);
        m.touch(&metrics::EVENTS_DROPPED, &["rate_limited"]);
        m.touch(&metrics::EVENTS_DROPPED, &["ring_full"]);
        for (_, name, _) in ifaces {
            m.touch(&metrics::UNKNOWN_PEER, &[name]);
        }
        for n in inv.networks.iter().filter(|n| n.encrypted) {
            m.touch(&metrics::PLAINTEXT_ON_ENCRYPTED, &[&n.name]);
        }
        let h = snap.health;
        // One read alone takes a flow inserted between its walk of the
        // table and its read of the counters for an eviction; the next read
        // finds it in the table. Evictions are what two reads agree on.
        let evictions = h.flow_evictions.min(self.evictions_last_read);
        self.evictions_last_read = h.flow_evictions;
        m.inc(
            &metrics::FLOW_EVICTIONS,
            &[],
            evictions.saturating_sub(self.last_evictions),
        );
        m.inc(
            &metrics::EVENTS_DROPPED,
            &["rate_limited"],
            h.events_rate_limited.saturating_sub(self.last_rate_limited),
        );
        m.inc(
            &metrics::EVENTS_DROPPED,
            &["ring_full"],
            h.events_ring_full.saturating_sub(self.last_ring_full),
        );
        if evictions > self.last_evictions {
            self.last_eviction_at = Some(crate::time::monotonic_secs());
        }
        self.last_evictions = self.last_evictions.max(evictions);
        self.last_rate_limited = h.events_rate_limited;
        self.last_ring_full = h.events_ring_full;
        m.gauge_set(&metrics::FLOWS_ACTIVE, &[], snap.totals.flows as i64);
        m.gauge_set(&metrics::DOCKER_UP, &[], inv.docker_up as i64);
        let nets: Vec<(Vec<String>, i64)> = inv
            .networks
            .iter()
            .flat_map(|n| {
                n.vnis.iter().map(move |v| {
                    (
                        vec![n.name.clone(), v.to_string(), n.encrypted.to_string()],
                        1,
                    )
                })
            })
            .collect();
        m.gauge_replace(&metrics::NETWORK_INFO, &nets);
        let alerts: Vec<(Vec<String>, i64)> = self
            .alerts
            .list()
            .into_iter()
            .map(|a| (vec![a.kind.name().to_owned(), a.network], 1))
            .collect();
        m.gauge_replace(&metrics::ALERT_ACTIVE, &alerts);
        let live: HashSet<String> = inv
            .networks
            .iter()
            .map(|n| n.name.clone())
            .chain(
                inv.endpoints
                    .iter()
                    .filter_map(|e| e.label().map(str::to_owned)),
            )
            .collect();
        if inv.docker_up {
            m.expire(self.grace, &live);
        }
    }
}

/// This node as its peers' findings and the loss metrics name it.
fn this_node(inv: &Inventory) -> String {
    match &inv.swarm {
        Some(s) if !s.hostname.is_empty() => s.hostname.clone(),
        Some(s) => s
            .node_addr
            .map_or_else(|| "local".into(), |a| a.to_string()),
        None => "local".into(),
    }
}

/// 1 for each of `peers` a finding of `kind` names, 0 for the others.
fn finding_gauge(
    health: &OverlayHealth,
    kind: HealthKind,
    peers: &[&str],
) -> Vec<(Vec<String>, i64)> {
    peers
        .iter()
        .map(|p| {
            let bad = health
                .findings
                .iter()
                .any(|f| f.kind == kind && f.peer.as_deref() == Some(*p));
            (vec![(*p).to_owned()], i64::from(bad))
        })
        .collect()
}
