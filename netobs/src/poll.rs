//! One read of the kernel's maps, once a second: the flow table is streamed
//! a batch at a time through growth tracking, labelling and the snapshot
//! builder, so the agent's memory does not scale with a copy of the table.
//!
//! Flows are grouped by their labels before any metric is touched: a
//! million flows between a handful of services make a handful of series
//! updates, not a million.
use std::{
    collections::{hash_map::Entry, BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
};

use anyhow::Result;
use netobs_common::{counter_index, Class, Direction, FlowKey, HttpMethod};
use serde_json::json;

use crate::{
    datapath::Datapath,
    export::{
        alerts::Alerts,
        http::{ApiState, LabelledFlow, Summary},
        metrics::{self, Metrics, OTHER},
    },
    flows::{
        aggregate::{Aggregator, Growth},
        label::{FlowLabels, LabelRefs, Labeler},
        unix_now, Clock, Snapshot, SnapshotBuilder, SortKey, STATUS_CLASS_NAMES,
    },
    inventory::Inventory,
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

/// Flows the API and the printed table show: the busiest since the last
/// read, then the largest. Metrics and totals cover every flow.
pub const SHOWN_FLOWS: usize = 1000;

/// An interface being watched: counter slot, name, index.
pub type Iface = (u32, String, u32);

/// Flows that share every label of every metric they feed.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct GroupKey<'a> {
    labels: LabelRefs<'a>,
    class: u8,
    direction: u8,
    /// For `netobs_vxlan_from_unknown_peer_packets_total{iface}`.
    ifindex: u32,
}

/// What the flows of one group add up to in one read.
pub struct Group {
    pub labels: FlowLabels,
    pub class: Class,
    pub direction: Direction,
    pub ifindex: u32,
    /// Packets in the table now (for the printed summary).
    pub packets: u64,
    pub growth: Growth,
}

/// The groups of one read, at most `limit` of them: past it (a flood of
/// outer addresses that are no node) every new group folds into one whose
/// labels are all `other`, as metric series fold.
struct Groups<'a> {
    index: HashMap<GroupKey<'a>, usize>,
    list: Vec<Group>,
    limit: usize,
    folded: Option<usize>,
}

impl<'a> Groups<'a> {
    fn slot(&mut self, key: GroupKey<'a>) -> usize {
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let class = Class::from_u8(key.class).unwrap_or(Class::Other);
        let direction = Direction::from_u8(key.direction).unwrap_or(Direction::Ingress);
        let new = |labels| Group {
            labels,
            class,
            direction,
            ifindex: key.ifindex,
            packets: 0,
            growth: Growth::default(),
        };
        if self.index.len() >= self.limit {
            if let Some(i) = self.folded {
                return i;
            }
            let other = FlowLabels {
                network: OTHER.into(),
                vni: OTHER.into(),
                encrypted: key.labels.encrypted,
                peer_node: OTHER.into(),
                src_service: OTHER.into(),
                dst_service: OTHER.into(),
                peer_known: true,
            };
            self.list.push(new(other));
            self.folded = Some(self.list.len() - 1);
            return self.list.len() - 1;
        }
        self.list.push(new(key.labels.to_owned()));
        let i = self.list.len() - 1;
        match self.index.entry(key) {
            Entry::Vacant(v) => {
                v.insert(i);
            }
            Entry::Occupied(_) => unreachable!("looked up above"),
        }
        i
    }
}

/// What one read produced.
pub struct Read {
    pub snapshot: Snapshot,
    pub groups: Vec<Group>,
    pub api: ApiState,
}

/// The agent's state between reads.
pub struct Poller {
    agg: Aggregator,
    pub metrics: Metrics,
    alerts: Alerts,
    last_evictions: u64,
    last_rate_limited: u64,
    last_ring_full: u64,
    grace: std::time::Duration,
    max_groups: usize,
    data_path: (Vec<u16>, &'static str),
}

impl Poller {
    pub fn new(metrics: Metrics, alerts: Alerts, grace: std::time::Duration) -> Poller {
        let max_groups = metrics.max_series();
        Poller {
            agg: Aggregator::default(),
            metrics,
            alerts,
            last_evictions: 0,
            last_rate_limited: 0,
            last_ring_full: 0,
            grace,
            max_groups,
            data_path: (Vec::new(), ""),
        }
    }

    /// The data-path ports in use and where they came from, for the API.
    pub fn with_data_path(mut self, ports: Vec<u16>, from: &'static str) -> Poller {
        self.data_path = (ports, from);
        self
    }

    /// Flows whose growth is tracked between reads.
    pub fn tracked_flows(&self) -> usize {
        self.agg.len()
    }

    pub fn poll(
        &mut self,
        dp: &Datapath,
        ifaces: &[Iface],
        inv: &Arc<Inventory>,
        last_requests: &LastRequests,
    ) -> Result<Read> {
        let counters = dp.counters()?;
        let clock = Clock::monotonic_now();
        let patterns = dp.patterns();
        let labeler = Labeler::new(inv);
        let mut builder = SnapshotBuilder::new(SHOWN_FLOWS, patterns, clock);
        let mut groups = Groups {
            index: HashMap::new(),
            list: Vec::new(),
            limit: self.max_groups,
            folded: None,
        };
        let agg = &mut self.agg;
        let read = dp.for_each_flow(|k: &FlowKey, v| {
            let g = agg.growth(k, v);
            builder.add(k, v, g.bytes);
            let i = groups.slot(GroupKey {
                labels: labeler.label_key(k),
                class: k.class,
                direction: k.direction,
                ifindex: k.ifindex,
            });
            let group = &mut groups.list[i];
            group.packets += v.packets;
            if !g.is_zero() {
                group.growth += &g;
            }
        })?;
        agg.end_read();
        // Read after the table, so that every flow created before the walk
        // is counted as created and a flow inserted during it cannot look
        // evicted.
        let stats = dp.stats()?;
        let snapshot = builder.finish(&counters, ifaces, &stats, read.table_entries);

        self.export_counters(&counters, ifaces);
        self.export_groups(&groups.list, ifaces, patterns, inv);
        self.export_health(&snapshot, ifaces, inv);

        let flows = snapshot
            .flows
            .iter()
            .map(|f| LabelledFlow {
                labels: labeler.label(f),
                last_request: last_requests.get(&f.sort_key()),
                flow: f.clone(),
            })
            .collect();
        let alerts = self.alerts.list();
        let api = ApiState {
            flows,
            inventory: inv.clone(),
            summary: Summary {
                classes: snapshot.classes(),
                flows: snapshot.totals.flows,
                alerts: alerts.len(),
                docker_up: inv.docker_up,
                data_path_ports: self.data_path.0.clone(),
                data_path_port_from: self.data_path.1,
                require_encryption: self.alerts.policy().to_string(),
            },
            alerts,
        };
        Ok(Read {
            snapshot,
            groups: groups.list,
            api,
        })
    }

    fn export_counters(&mut self, counters: &[netobs_common::Counter], ifaces: &[Iface]) {
        let grown = self.agg.counters(counters);
        let m = &mut self.metrics;
        for (slot, name, _) in ifaces {
            for d in Direction::ALL {
                for c in Class::ALL {
                    if let Some(g) = grown.get(counter_index(*slot, d, c) as usize) {
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
    ) {
        let m = &mut self.metrics;
        let now = unix_now();
        let swarm_known = inv.docker_up && inv.swarm.is_some();
        for grp in groups.iter().filter(|g| !g.growth.is_zero()) {
            let (l, g) = (&grp.labels, &grp.growth);
            let ol = [
                l.network.as_str(),
                &l.vni,
                l.encrypted,
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
            if l.encrypted == "true" {
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
            for alert in self.alerts.observe(l, g, now) {
                // The structured line operators grep for; on stderr with
                // the rest of the log.
                eprintln!("{}", json!({ "alert": alert }));
            }
        }
    }
}

impl Poller {
    fn export_health(&mut self, snap: &Snapshot, ifaces: &[Iface], inv: &Inventory) {
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
        m.inc(
            &metrics::FLOW_EVICTIONS,
            &[],
            h.flow_evictions.saturating_sub(self.last_evictions),
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
        self.last_evictions = self.last_evictions.max(h.flow_evictions);
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
            .map(|a| (vec![a.kind.to_owned(), a.network], 1))
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

/// Table packets per (network, source, destination, class): the agent's
/// printed summary. ESP belongs to a node pair, not to a network.
pub fn summary(groups: &[Group]) -> BTreeMap<(String, String, String, &'static str), u64> {
    let mut by = BTreeMap::new();
    for g in groups {
        let l = &g.labels;
        let key = if g.class == Class::Esp {
            (
                "-".to_owned(),
                g.direction.name().to_owned(),
                format!("peer {}", l.peer_node),
                g.class.name(),
            )
        } else {
            (
                l.network.clone(),
                l.src_service.clone(),
                l.dst_service.clone(),
                g.class.name(),
            )
        };
        *by.entry(key).or_insert(0) += g.packets;
    }
    by
}
