//! Turning the kernel's cumulative per-flow counters into increments.
//!
//! Exported counters must only grow, across relabelling (a flow first seen
//! as `unknown` and later as `backend`) and across flow-table evictions (a
//! flow's entry vanishing). So the agent never exports the table's totals:
//! it adds each flow's growth since the last read to the series the flow
//! has *now*.
//!
//! What is kept between reads is sized for a million flows: a 64-bit hash
//! of the key instead of the 88-byte key, packets and bytes, and the HTTP
//! and pattern counters only for the flows that have any.
use std::{
    collections::HashMap,
    hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState},
    ops::AddAssign,
};

use crate::api::tcp::{ACK as TCP_ACK, RST as TCP_RST, SYN as TCP_SYN};
use netobs_common::{
    Class, Counter, FlowKey, FlowStats, ENCAP_FRAGMENT, FLOW_KEY_WORDS, HTTP_METHOD_SLOTS,
    HTTP_STATUS_CLASSES, MAX_PATTERNS,
};

const IPPROTO_TCP: u8 = 6;

/// One flow's (or a group of flows') growth since the previous read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Growth {
    pub packets: u64,
    pub bytes: u64,
    pub http_requests: [u64; HTTP_METHOD_SLOTS],
    pub http_responses: [u64; HTTP_STATUS_CLASSES],
    pub pattern_hits: [u64; MAX_PATTERNS],
    /// Inner TCP connections judged failed in this read: a SYN and, for
    /// `CONNECT_TIMEOUT_NS`, no ACK on the flow (each counted once).
    pub tcp_connect_failures: u64,
    /// Inner TCP flows on which a reset was first seen in this read.
    pub tcp_resets: u64,
    /// VXLAN packets that left or came as the first fragment of an outer
    /// IP datagram.
    pub outer_fragments: u64,
}

/// A connection whose SYN has had no answer for this long has failed: the
/// kernel's own connect retries SYNs at 1, 3 and 7 s, and no healthy
/// overlay takes seconds to answer one.
pub const CONNECT_TIMEOUT_NS: u64 = 5_000_000_000;

/// `Seen::tcp` bits: what was already counted of the flow.
const COUNTED_FAILURE: u8 = 1;
const COUNTED_RESET: u8 = 2;

impl Growth {
    pub fn is_zero(&self) -> bool {
        *self == Growth::default()
    }
}

impl AddAssign<&Growth> for Growth {
    fn add_assign(&mut self, o: &Growth) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.tcp_connect_failures += o.tcp_connect_failures;
        self.tcp_resets += o.tcp_resets;
        self.outer_fragments += o.outer_fragments;
        for (a, b) in self.http_requests.iter_mut().zip(o.http_requests) {
            *a += b;
        }
        for (a, b) in self.http_responses.iter_mut().zip(o.http_responses) {
            *a += b;
        }
        for (a, b) in self.pattern_hits.iter_mut().zip(o.pattern_hits) {
            *a += b;
        }
    }
}

const EXTRA: usize = HTTP_METHOD_SLOTS + HTTP_STATUS_CLASSES + MAX_PATTERNS;

/// The HTTP and pattern counters of a flow, side by side.
fn extra(v: &FlowStats) -> [u32; EXTRA] {
    let mut e = [0u32; EXTRA];
    let (req, rest) = e.split_at_mut(HTTP_METHOD_SLOTS);
    let (resp, pat) = rest.split_at_mut(HTTP_STATUS_CLASSES);
    req.copy_from_slice(&v.http_requests);
    resp.copy_from_slice(&v.http_responses);
    pat.copy_from_slice(&v.pattern_hits);
    e
}

/// A flow as last read.
struct Seen {
    packets: u64,
    bytes: u64,
    /// Its last packet then (kernel clock).
    last_seen_ns: u64,
    /// `None` while every HTTP and pattern counter is zero (most flows).
    extra: Option<Box<[u32; EXTRA]>>,
    /// The read that last saw it; older entries are gone from the table.
    pass: u32,
    /// `COUNTED_*` bits.
    tcp: u8,
}

impl Seen {
    /// This flow's growth from what was seen of it to `now`, which it then
    /// remembers. `baseline`: the agent's first read.
    fn grow(
        &mut self,
        k: &FlowKey,
        now: &FlowStats,
        now_ns: u64,
        pass: u32,
        baseline: bool,
    ) -> Growth {
        let now_extra = extra(now);
        let has_extra = now_extra.iter().any(|&n| n != 0);
        // Reads are exact (datapath/read.rs), so counters that went down
        // mean the table evicted the flow's entry. If everything read now
        // began after the last packet of the last read, the flow was
        // evicted whole and came back: all of it is new. Otherwise a cache
        // slot read before lives on without the evicted part: what it holds
        // was counted already, so nothing is added (the evicted part's
        // recent growth is lost, and counted as an eviction).
        let went_down = self.packets > now.packets || self.bytes > now.bytes;
        let mut g = Growth::default();
        if went_down {
            let all_new = now.first_seen_ns > self.last_seen_ns;
            self.extra = None;
            if all_new {
                self.packets = 0;
                self.bytes = 0;
                self.tcp = 0;
            } else {
                self.packets = now.packets;
                self.bytes = now.bytes;
                self.extra = Some(Box::new(now_extra));
            }
        }
        g.packets = now.packets - self.packets;
        g.bytes = now.bytes - self.bytes;
        self.packets = now.packets;
        self.bytes = now.bytes;
        self.last_seen_ns = now.last_seen_ns;
        self.pass = pass;
        if k.class == Class::Vxlan as u8 && k.encap == ENCAP_FRAGMENT {
            g.outer_fragments = g.packets;
        }
        if k.class == Class::Vxlan as u8 && k.inner_proto == IPPROTO_TCP {
            let flags = now.tcp_flags;
            if flags & TCP_RST != 0 && self.tcp & COUNTED_RESET == 0 {
                self.tcp |= COUNTED_RESET;
                g.tcp_resets = u64::from(!baseline);
            }
            let unanswered = flags & (TCP_SYN | TCP_ACK) == TCP_SYN
                && now_ns.saturating_sub(now.first_seen_ns) >= CONNECT_TIMEOUT_NS;
            if unanswered && self.tcp & COUNTED_FAILURE == 0 {
                self.tcp |= COUNTED_FAILURE;
                g.tcp_connect_failures = u64::from(!baseline);
            }
        }
        if has_extra || self.extra.is_some() {
            let before = self.extra.as_deref().copied().unwrap_or([0; EXTRA]);
            let grew = |i: usize| now_extra[i].wrapping_sub(before[i]) as u64;
            for i in 0..HTTP_METHOD_SLOTS {
                g.http_requests[i] = grew(i);
            }
            for i in 0..HTTP_STATUS_CLASSES {
                g.http_responses[i] = grew(HTTP_METHOD_SLOTS + i);
            }
            for i in 0..MAX_PATTERNS {
                g.pattern_hits[i] = grew(HTTP_METHOD_SLOTS + HTTP_STATUS_CLASSES + i);
            }
            match &mut self.extra {
                Some(e) => **e = now_extra,
                None => self.extra = Some(Box::new(now_extra)),
            }
        }
        g
    }
}

/// The keys of `Aggregator::flows` are already hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ *b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// `k`'s 88 bytes through the keyed hash in one write. The derived `Hash`
/// feeds it field by field (a length before each address), which took four
/// times as long (`cargo bench -p netobs --bench scale`, 1M flows: 0.19 s of
/// a read).
fn key_hash(hash: &RandomState, k: &FlowKey) -> u64 {
    let mut bytes = [0u8; FLOW_KEY_WORDS * 4];
    for (b, w) in bytes.chunks_exact_mut(4).zip(k.words()) {
        b.copy_from_slice(&w.to_ne_bytes());
    }
    let mut h = hash.build_hasher();
    h.write(&bytes);
    h.finish()
}

/// Flows whose entries `growth_batch` looks up ahead of working on them.
/// Their entries must still be in the CPU's caches, and their pages in its
/// TLB, when their turn comes: at a million flows a steady read's walk took
/// about 1.0 s with none looked up ahead, 0.5 s with 128, 0.6 s with 512 and
/// 0.8 s with 4,096 (alternated runs of `cargo bench -p netobs --bench
/// scale`).
const LOOKAHEAD: usize = 128;

/// Room for new flows that `end_read` keeps between reads.
const NEW_FLOWS_KEPT: usize = 4096;

pub struct Aggregator {
    /// Randomly keyed, so nobody shaping traffic can make two flows share a
    /// slot; by chance two of a million flows do once in ~10^7 reads, which
    /// at worst misattributes one read's growth of those two.
    hash: RandomState,
    flows: HashMap<u64, Seen, BuildHasherDefault<PassThrough>>,
    /// `growth_batch`'s hashes of the flows in hand.
    hashes: Vec<u64>,
    /// Flows first seen in this read, entered into `flows` by `end_read`.
    /// Entered as they came, each new entry's memory (not in the CPU's
    /// cache) was waited for among the rest of the read's work; in one
    /// loop of inserts alone those waits overlap: the walk of a first read
    /// of a million flows took 0.25 s less (`cargo bench -p netobs --bench
    /// scale`).
    new_flows: Vec<(u64, Seen)>,
    pass: u32,
    counters: Vec<Counter>,
    /// The first read: TCP verdicts found in it are history (flows a
    /// pinned table kept across a restart), noted but not counted.
    baseline: bool,
}

impl Default for Aggregator {
    fn default() -> Self {
        Aggregator {
            hash: RandomState::new(),
            flows: HashMap::default(),
            hashes: Vec::new(),
            new_flows: Vec::new(),
            pass: 0,
            counters: Vec::new(),
            baseline: true,
        }
    }
}

impl Aggregator {
    /// Flows whose growth is being tracked.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// The growth of one flow of the current read, `now_ns` being the
    /// monotonic clock at the read. Call `end_read` once every flow of the
    /// read went through here.
    pub fn growth(&mut self, k: &FlowKey, now: &FlowStats, now_ns: u64) -> Growth {
        self.growth_hashed(key_hash(&self.hash, k), k, now, now_ns)
    }

    /// `growth` of each flow of a batch (`keys[i]` has `values[i]`), handed
    /// to `each` in order.
    ///
    /// At a million flows what is kept per flow is far larger than the
    /// CPU's caches, so nearly every flow's entry is a cache miss or two.
    /// One flow at a time, among the rest of a read's work per flow, those
    /// misses wait one after another. So the entries of `LOOKAHEAD` flows
    /// are looked up first in a loop that does nothing else, where the
    /// misses overlap, and their growth is worked out with them in cache.
    pub fn growth_batch(
        &mut self,
        keys: &[FlowKey],
        values: &[FlowStats],
        now_ns: u64,
        mut each: impl FnMut(&FlowKey, &FlowStats, Growth),
    ) {
        let mut hashes = std::mem::take(&mut self.hashes);
        for (keys, values) in keys.chunks(LOOKAHEAD).zip(values.chunks(LOOKAHEAD)) {
            hashes.clear();
            hashes.extend(keys.iter().map(|k| key_hash(&self.hash, k)));
            let found = hashes.iter().filter(|h| self.flows.contains_key(h));
            std::hint::black_box(found.count());
            for ((h, k), v) in hashes.iter().zip(keys).zip(values) {
                let g = self.growth_hashed(*h, k, v, now_ns);
                each(k, v, g);
            }
        }
        self.hashes = hashes;
    }

    fn growth_hashed(&mut self, h: u64, k: &FlowKey, now: &FlowStats, now_ns: u64) -> Growth {
        let (pass, baseline) = (self.pass, self.baseline);
        if let Some(seen) = self.flows.get_mut(&h) {
            return seen.grow(k, now, now_ns, pass, baseline);
        }
        let mut seen = Seen {
            packets: 0,
            bytes: 0,
            last_seen_ns: 0,
            extra: None,
            pass,
            tcp: 0,
        };
        let g = seen.grow(k, now, now_ns, pass, baseline);
        self.new_flows.push((h, seen));
        g
    }

    /// Forgets the flows the last read did not see (gone from the table).
    pub fn end_read(&mut self) {
        let pass = self.pass;
        self.flows.retain(|_, s| s.pass == pass);
        self.flows.reserve(self.new_flows.len());
        self.flows.extend(self.new_flows.drain(..));
        // A first read of a million flows leaves room for a million here.
        self.new_flows.shrink_to(NEW_FLOWS_KEPT);
        // Give memory back after a flood, not after every small dip.
        if self.flows.capacity() > 4 * self.flows.len().max(1024) {
            self.flows.shrink_to_fit();
        }
        self.pass = self.pass.wrapping_add(1);
        self.baseline = false;
    }

    /// Growth of each interface counter slot.
    pub fn counters(&mut self, now: &[Counter]) -> Vec<Counter> {
        let out = now
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let b = self.counters.get(i).copied().unwrap_or_default();
                Counter {
                    packets: c.packets.saturating_sub(b.packets),
                    bytes: c.bytes.saturating_sub(b.bytes),
                }
            })
            .collect();
        self.counters = now.to_vec();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(packets: u64, gets: u32) -> FlowStats {
        let mut s = FlowStats {
            packets,
            bytes: packets * 100,
            ..FlowStats::default()
        };
        s.http_requests[1] = gets;
        s
    }

    /// `stats` with the flow's first and last packet times.
    fn timed(packets: u64, gets: u32, first: u64, last: u64) -> FlowStats {
        FlowStats {
            first_seen_ns: first,
            last_seen_ns: last,
            ..stats(packets, gets)
        }
    }

    /// One read of `table`: the growth of each flow in it.
    fn read(a: &mut Aggregator, table: &[(FlowKey, FlowStats)]) -> Vec<Growth> {
        let g = table.iter().map(|(k, v)| a.growth(k, v, 0)).collect();
        a.end_read();
        g
    }

    /// One read of `table` a batch at a time, as the agent reads.
    fn read_batched(a: &mut Aggregator, table: &[(FlowKey, FlowStats)]) -> Vec<Growth> {
        let (keys, values): (Vec<_>, Vec<_>) = table.iter().copied().unzip();
        let mut g = Vec::new();
        a.growth_batch(&keys, &values, 0, |k, v, growth| {
            assert_eq!((k, v), (&keys[g.len()], &values[g.len()]), "in order");
            g.push(growth);
        });
        a.end_read();
        g
    }

    #[test]
    fn batches_grow_as_flows_one_at_a_time() {
        // More flows than are looked up ahead, read four times: all new,
        // some grown, some gone and some new, a gone one back.
        let key = |i: u32| FlowKey {
            ifindex: i,
            ..FlowKey::default()
        };
        let reads: Vec<Vec<(FlowKey, FlowStats)>> = vec![
            (0..300)
                .map(|i| (key(i), stats(u64::from(i) + 1, 0)))
                .collect(),
            (0..300)
                .map(|i| (key(i), stats(u64::from(i) + 1 + u64::from(i % 3), i % 2)))
                .collect(),
            (100..450)
                .map(|i| (key(i), stats(u64::from(i) + 5, i % 2)))
                .collect(),
            (0..50)
                .chain(200..260)
                .map(|i| (key(i), stats(u64::from(i) + 9, 1)))
                .collect(),
        ];
        let (mut one, mut batched) = (Aggregator::default(), Aggregator::default());
        for table in &reads {
            let expected = read(&mut one, table);
            assert_eq!(read_batched(&mut batched, table), expected);
            assert_eq!(batched.len(), one.len());
            assert!(expected.iter().any(|g| !g.is_zero()));
        }
        assert_eq!(batched.len(), 110);
    }

    #[test]
    fn growth_is_counted_once() {
        let mut a = Aggregator::default();
        let k = FlowKey::default();
        let g = read(&mut a, &[(k, stats(3, 1))]);
        assert_eq!(g[0].packets, 3);
        assert_eq!(g[0].http_requests[1], 1);
        assert!(read(&mut a, &[(k, stats(3, 1))])[0].is_zero(), "no growth");
        let g = read(&mut a, &[(k, stats(5, 2))]);
        assert_eq!((g[0].packets, g[0].http_requests[1]), (2, 1));
    }

    #[test]
    fn an_evicted_and_recreated_flow_counts_from_zero() {
        let mut a = Aggregator::default();
        let k = FlowKey::default();
        read(&mut a, &[(k, stats(10, 5))]);
        read(&mut a, &[]);
        assert!(a.is_empty(), "a flow gone from the table is forgotten");
        let g = read(&mut a, &[(k, stats(4, 1))]);
        assert_eq!((g[0].packets, g[0].http_requests[1]), (4, 1));
        read(&mut a, &[(k, timed(9, 3, 10, 100))]);
        let g = read(&mut a, &[(k, timed(2, 1, 200, 250))]);
        assert_eq!(
            (g[0].packets, g[0].http_requests[1]),
            (2, 1),
            "counters went down, all of it began after the last read: re-created"
        );
    }

    #[test]
    fn a_cache_slot_outliving_its_evicted_table_entry_is_not_counted_again() {
        let mut a = Aggregator::default();
        let k = FlowKey::default();
        // Table part 100 packets, a live cache slot claimed at 50 with 30.
        read(&mut a, &[(k, timed(130, 4, 10, 100))]);
        // The table evicted its part; the slot (claimed before the last
        // read) now holds 35.
        let g = read(&mut a, &[(k, timed(35, 1, 50, 120))]);
        assert!(g[0].is_zero(), "the slot's 30 were counted already");
        let g = read(&mut a, &[(k, timed(40, 2, 50, 130))]);
        assert_eq!((g[0].packets, g[0].http_requests[1]), (5, 1));
    }

    #[test]
    fn unanswered_syns_and_resets_are_counted_once_per_connection() {
        let mut a = Aggregator::default();
        let tcp = |sport| FlowKey {
            class: Class::Vxlan as u8,
            inner_proto: IPPROTO_TCP,
            inner_sport: sport,
            ..FlowKey::default()
        };
        let flags = |tcp_flags, packets| FlowStats {
            packets,
            first_seen_ns: 1_000,
            last_seen_ns: 1_000,
            tcp_flags,
            ..FlowStats::default()
        };
        let sec = 1_000_000_000;
        let mut at = |ns, table: &[(FlowKey, FlowStats)]| {
            let g: Vec<Growth> = table.iter().map(|(k, v)| a.growth(k, v, ns)).collect();
            a.end_read();
            g.iter()
                .map(|g| (g.tcp_connect_failures, g.tcp_resets))
                .collect::<Vec<_>>()
        };
        let (syn, answered, refused) = (
            (tcp(1), flags(TCP_SYN, 3)),
            (tcp(2), flags(TCP_SYN | TCP_ACK, 5)),
            (tcp(3), flags(TCP_RST | TCP_ACK, 1)),
        );
        let table = [syn, answered, refused];
        // The first read is history: an old reset is not counted.
        let old = (tcp(4), flags(TCP_RST, 1));
        assert_eq!(at(sec, &[old]), [(0, 0)]);
        // Within the timeout a lone SYN is still waiting; the reset counts.
        assert_eq!(at(2 * sec, &table), [(0, 0), (0, 0), (0, 1)]);
        // Past it, the lone SYN failed, once; nothing is counted twice.
        assert_eq!(at(6 * sec, &table), [(1, 0), (0, 0), (0, 0)]);
        assert_eq!(at(9 * sec, &table), [(0, 0), (0, 0), (0, 0)]);
    }

    #[test]
    fn distinct_flows_are_tracked_apart() {
        let mut a = Aggregator::default();
        let k1 = FlowKey::default();
        let k2 = FlowKey {
            inner_sport: 1,
            ..FlowKey::default()
        };
        read(&mut a, &[(k1, stats(1, 0)), (k2, stats(7, 0))]);
        let g = read(&mut a, &[(k1, stats(2, 0)), (k2, stats(8, 0))]);
        assert_eq!((g[0].packets, g[1].packets), (1, 1));
        assert_eq!(a.len(), 2);
    }
}
