//! The one model: raw kernel records turned into flows and totals that the
//! CLI prints and (later) the exporter serves. Inventory labels join here.
pub mod aggregate;
mod flow;
pub mod label;

pub(crate) use flow::addr;
pub use flow::{unix_now, Clock, Flow, FlowKeyView, SortKey, STATUS_CLASS_NAMES};

use std::collections::{BTreeMap, BinaryHeap};

use netobs_common::{
    counter_index, Class, Counter, Direction, FlowKey, FlowStats, HttpMethod, Stat,
    HTTP_METHOD_SLOTS, HTTP_STATUS_CLASSES, MAX_PATTERNS, STAT_COUNT,
};

use crate::api::{HttpTotals, Totals};

pub use crate::api::{ClassCounts, Count, Health, InterfaceCounts};

impl From<Counter> for Count {
    fn from(c: Counter) -> Count {
        Count {
            packets: c.packets,
            bytes: c.bytes,
        }
    }
}

impl Health {
    /// `table_entries` entries are in the shared table now; entries
    /// inserted (new flows, and flows a flush put back) and not there were
    /// evicted: the agent never deletes entries itself.
    pub fn from_stats(stats: &[u64; STAT_COUNT], table_entries: usize) -> Health {
        let created = stats[Stat::FlowsCreated as usize];
        let inserted = created + stats[Stat::FlowsReinserted as usize];
        Health {
            flows_created: created,
            flow_insert_failed: stats[Stat::FlowInsertFailed as usize],
            flow_evictions: inserted.saturating_sub(table_entries as u64),
            cache_flushes: stats[Stat::CacheFlushes as usize],
            cache_bypassed: stats[Stat::CacheBypassed as usize],
            events_sent: stats[Stat::EventsSent as usize],
            events_rate_limited: stats[Stat::EventsRateLimited as usize],
            events_ring_full: stats[Stat::EventsRingFull as usize],
        }
    }
}

/// What every flow of one read adds up to: the snapshot keeps only the
/// busiest flows themselves, but its totals cover the whole table.
#[derive(Debug, Clone, Default)]
pub struct FlowTotals {
    /// Flows in the table.
    pub flows: usize,
    /// Packets per VNI, from VXLAN flows.
    pub vnis: BTreeMap<u32, u64>,
    pub http_requests: [u64; HTTP_METHOD_SLOTS],
    pub http_responses: [u64; HTTP_STATUS_CLASSES],
    pub pattern_hits: [u64; MAX_PATTERNS],
}

impl FlowTotals {
    fn add(&mut self, k: &FlowKey, v: &FlowStats) {
        self.flows += 1;
        if k.class == Class::Vxlan as u8 {
            *self.vnis.entry(k.vni_or_spi).or_insert(0) += v.packets;
        }
        for (a, b) in self.http_requests.iter_mut().zip(v.http_requests) {
            *a += b as u64;
        }
        for (a, b) in self.http_responses.iter_mut().zip(v.http_responses) {
            *a += b as u64;
        }
        for (a, b) in self.pattern_hits.iter_mut().zip(v.pattern_hits) {
            *a += b as u64;
        }
    }
}

/// A flow competing for a place in the snapshot: the busiest since the
/// last read first, then the largest.
struct Ranked {
    rank: (u64, u64),
    key: FlowKey,
    stats: FlowStats,
}

impl PartialEq for Ranked {
    fn eq(&self, o: &Self) -> bool {
        self.rank == o.rank
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ranked {
    /// Reversed, so that the heap's top is the flow to drop first.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.rank.cmp(&self.rank)
    }
}

/// Builds a snapshot from a stream of flow-table entries, in memory bounded
/// by `limit` flows whatever the table's size.
pub struct SnapshotBuilder<'p> {
    totals: FlowTotals,
    top: BinaryHeap<Ranked>,
    limit: usize,
    patterns: &'p [String],
    clock: Clock,
}

impl<'p> SnapshotBuilder<'p> {
    pub fn new(limit: usize, patterns: &'p [String], clock: Clock) -> SnapshotBuilder<'p> {
        SnapshotBuilder {
            totals: FlowTotals::default(),
            top: BinaryHeap::new(),
            limit,
            patterns,
            clock,
        }
    }

    /// One entry of the table; `recent_bytes` is its growth since the last
    /// read (0 when unknown).
    pub fn add(&mut self, k: &FlowKey, v: &FlowStats, recent_bytes: u64) {
        self.totals.add(k, v);
        let rank = (recent_bytes, v.bytes);
        if self.top.len() >= self.limit {
            match self.top.peek() {
                Some(least) if least.rank < rank => {
                    self.top.pop();
                }
                _ => return,
            }
        }
        self.top.push(Ranked {
            rank,
            key: *k,
            stats: *v,
        });
    }

    /// `ifaces` maps counter slots to interface names and indexes;
    /// `table_entries` is what the read found in the shared table.
    pub fn finish(
        self,
        counters: &[Counter],
        ifaces: &[(u32, String, u32)],
        stats: &[u64; STAT_COUNT],
        table_entries: usize,
    ) -> Snapshot {
        let class_counts = |slot: u32, dir: Direction| {
            let mut cc = ClassCounts::default();
            for class in Class::ALL {
                if let Some(c) = counters.get(counter_index(slot, dir, class) as usize) {
                    *cc.get_mut(class) = (*c).into();
                }
            }
            cc
        };
        let interfaces = ifaces
            .iter()
            .map(|(slot, name, ifindex)| InterfaceCounts {
                iface: name.clone(),
                ifindex: *ifindex,
                ingress: class_counts(*slot, Direction::Ingress),
                egress: class_counts(*slot, Direction::Egress),
            })
            .collect();
        let (patterns, clock) = (self.patterns, self.clock);
        let mut flows: Vec<Flow> = self
            .top
            .into_iter()
            .map(|r| Flow::from_raw(&r.key, &r.stats, patterns, clock))
            .collect();
        flows.sort_by(|a, b| {
            b.bytes
                .cmp(&a.bytes)
                .then_with(|| a.sort_key().cmp(&b.sort_key()))
        });
        Snapshot {
            interfaces,
            flows,
            health: Health::from_stats(stats, table_entries),
            totals: self.totals,
            patterns: patterns.to_vec(),
        }
    }
}

/// Everything the datapath knows at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub interfaces: Vec<InterfaceCounts>,
    /// The busiest flows (all of them in replay); `totals` covers every one.
    pub flows: Vec<Flow>,
    pub totals: FlowTotals,
    pub health: Health,
    patterns: Vec<String>,
}

impl Snapshot {
    /// A snapshot of every flow in `raw_flows` (`table_entries` of them
    /// found in the shared table).
    pub fn build(
        counters: &[Counter],
        ifaces: &[(u32, String, u32)],
        raw_flows: Vec<(FlowKey, FlowStats)>,
        table_entries: usize,
        stats: &[u64; STAT_COUNT],
        patterns: &[String],
        clock: Clock,
    ) -> Snapshot {
        let mut b = SnapshotBuilder::new(usize::MAX, patterns, clock);
        for (k, v) in &raw_flows {
            b.add(k, v, 0);
        }
        b.finish(counters, ifaces, stats, table_entries)
    }

    /// The pattern of each pattern slot.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Per-class counts over every interface and both directions.
    pub fn classes(&self) -> ClassCounts {
        let mut t = ClassCounts::default();
        for i in &self.interfaces {
            t += i.ingress;
            t += i.egress;
        }
        t
    }

    /// Packets per VNI, from VXLAN flows.
    pub fn vnis(&self) -> BTreeMap<u32, u64> {
        self.totals.vnis.clone()
    }

    pub fn http_requests(&self) -> u64 {
        self.totals.http_requests.iter().sum()
    }

    pub fn http_responses(&self) -> u64 {
        self.totals.http_responses.iter().sum()
    }

    pub fn http_by_method(&self) -> BTreeMap<String, u64> {
        HttpMethod::ALL
            .iter()
            .map(|m| (m.name().to_owned(), self.totals.http_requests[*m as usize]))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The totals in the API's one shape.
    pub fn totals(&self) -> Totals {
        Totals {
            interfaces: self.interfaces.clone(),
            classes: self.classes(),
            vnis: self.vnis(),
            http: HttpTotals {
                requests: self.http_requests(),
                responses: self.http_responses(),
                methods: self.http_by_method(),
            },
            patterns: self.pattern_hits(),
            flow_count: self.totals.flows,
            health: self.health,
        }
    }

    pub fn pattern_hits(&self) -> BTreeMap<String, u64> {
        self.patterns
            .iter()
            .zip(self.totals.pattern_hits)
            .filter(|(_, n)| *n > 0)
            .map(|(p, n)| (p.clone(), n))
            .collect()
    }
}

/// Method name for an event or a flow slot.
pub fn method_name(v: u8) -> &'static str {
    HttpMethod::from_u8(v).map_or("?", HttpMethod::name)
}
