//! Reading the maps: per-CPU values are summed here, so nothing above this
//! module knows how many CPUs there are.
use std::{
    collections::HashMap as StdHashMap,
    os::fd::{AsFd, AsRawFd},
};

use aya::maps::{HashMap, PerCpuArray};
use netobs_common::{
    CacheSlot, ChecksumKey, Counter, DropKey, FlowKey, FlowStats, GossipKey, Stat,
    CACHE_CTL_READING, COUNTER_SLOTS, STAT_COUNT,
};

use super::{batch, map_ref, names, Datapath, DatapathError};

/// Summed counters, indexed by `netobs_common::counter_index`.
pub type Counters = Vec<Counter>;

impl Datapath {
    pub fn counters(&self) -> Result<Counters, DatapathError> {
        self.summed_counters(names::COUNTERS, COUNTER_SLOTS)
    }

    /// The `n` first entries of the per-CPU counter array `name`, each
    /// summed over the CPUs.
    pub(crate) fn summed_counters(
        &self,
        name: &'static str,
        n: usize,
    ) -> Result<Vec<Counter>, DatapathError> {
        let map: PerCpuArray<_, Counter> = map_ref(self.ebpf(), name)?;
        let mut out = vec![Counter::default(); n];
        for (i, slot) in out.iter_mut().enumerate() {
            let per_cpu = map
                .get(&(i as u32), 0)
                .map_err(|source| DatapathError::Map { name, source })?;
            for c in per_cpu.iter() {
                slot.packets += c.packets;
                slot.bytes += c.bytes;
            }
        }
        Ok(out)
    }

    /// UDP gossip per peer and direction since load; the all-zero key holds
    /// the datagrams that found the map full. Empty for an object without
    /// the map.
    pub fn gossip(&self) -> Result<Vec<(GossipKey, Counter)>, DatapathError> {
        self.hash_entries(names::GOSSIP)
    }

    /// Overlay-path packets the kernel dropped, since load; the all-zero key
    /// holds the drops that found the map full.
    pub fn drops(&self) -> Result<Vec<(DropKey, u64)>, DatapathError> {
        self.hash_entries(names::DROPS)
    }

    /// Inner TCP SYNs that arrived in VXLAN, by sender, interface and
    /// checksum verdict, since load; the all-zero key: map full.
    pub fn checksums(&self) -> Result<Vec<(ChecksumKey, u64)>, DatapathError> {
        self.hash_entries(names::CHECKSUMS)
    }

    fn hash_entries<K: aya::Pod, V: aya::Pod>(
        &self,
        name: &'static str,
    ) -> Result<Vec<(K, V)>, DatapathError> {
        if self.ebpf().map(name).is_none() {
            return Ok(Vec::new());
        }
        let map: HashMap<_, K, V> = map_ref(self.ebpf(), name)?;
        map.iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| DatapathError::Map { name, source })
    }

    /// Datapath health counters, indexed by `netobs_common::Stat`.
    pub fn stats(&self) -> Result<[u64; STAT_COUNT], DatapathError> {
        let mut out = [0u64; STAT_COUNT];
        for (i, v) in out.iter_mut().enumerate() {
            *v = self.per_cpu_stat_at(i as u32)?.iter().sum();
        }
        Ok(out)
    }

    /// Every flow: the shared table's entries with the flow cache's live
    /// slots added.
    pub fn flows(&self) -> Result<Vec<(FlowKey, FlowStats)>, DatapathError> {
        let mut all = Vec::new();
        self.for_each_flow(|k, v| all.push((*k, *v)))?;
        Ok(all)
    }

    /// Visits every flow once, with its exact counts: the shared table's
    /// value plus what each CPU's cache slot for the flow holds. A flow at
    /// a time over `for_each_flow_batch`.
    pub fn for_each_flow(
        &self,
        mut visit: impl FnMut(&FlowKey, &FlowStats),
    ) -> Result<FlowRead, DatapathError> {
        self.for_each_flow_batch(|keys, values| {
            for (k, v) in keys.iter().zip(values) {
                visit(k, v);
            }
        })
    }

    /// Visits every flow once, with its exact counts, a batch at a time
    /// (`keys[i]` has `values[i]`): the shared table's value plus what each
    /// CPU's cache slot for the flow holds, times in nanoseconds. Batches
    /// let the visitor look its own state up for many flows at once, whose
    /// cache misses then overlap (`flows::aggregate`).
    ///
    /// Exact because nothing moves between cache and table while we read:
    /// the reading flag makes a CPU that would flush a slot count its packet
    /// straight into the table instead, and the read starts only once every
    /// collision begun before the flag was seen has ended. (Reading the
    /// table first and the cache second without the flag would miss a slot
    /// flushed in between; the other way round would count it twice.)
    /// Table entries are streamed in batches, so memory stays at a few
    /// batches plus the cache's slots.
    pub fn for_each_flow_batch(
        &self,
        mut visit: impl FnMut(&[FlowKey], &[FlowStats]),
    ) -> Result<FlowRead, DatapathError> {
        let reading = Reading::start(self)?;
        let flushes = self.per_cpu_stat(Stat::CacheFlushes)?;
        let mut cached = self.cache()?;
        let cache_slots = cached.values().map(|(_, n)| *n).sum();
        let mut table_entries = 0;
        let clock = self.tick_clock();
        // Ticks to nanoseconds, live; replay's times are the capture's.
        let in_ns = |v: &mut FlowStats| {
            if let Some(c) = clock {
                v.first_seen_ns = c.ns(v.first_seen_ns);
                v.last_seen_ns = c.ns(v.last_seen_ns);
            }
        };
        // Most table entries have no live slot: a bit per cache hash rules
        // them out before the map is asked, sparing them a SipHash of their
        // 88-byte key (a million of them at the largest tables).
        let mut in_cache = vec![0u64; CACHE_FILTER_BITS / 64];
        for k in cached.keys() {
            let b = k.cache_hash() as usize % CACHE_FILTER_BITS;
            in_cache[b / 64] |= 1 << (b % 64);
        }
        let mut merged: Vec<FlowStats> = Vec::new();
        let mut with_cache = |keys: &[FlowKey], values: &[FlowStats]| {
            table_entries += keys.len();
            merged.clear();
            merged.extend(keys.iter().zip(values).map(|(k, v)| {
                let mut m = *v;
                let b = k.cache_hash() as usize % CACHE_FILTER_BITS;
                if in_cache[b / 64] & (1 << (b % 64)) != 0 {
                    if let Some((c, _)) = cached.remove(k) {
                        merge(&mut m, &c);
                    }
                }
                in_ns(&mut m);
                m
            }));
            visit(keys, &merged);
        };
        let batched = self.flows_batched(&mut with_cache)?;
        if !batched {
            let (keys, values): (Vec<_>, Vec<_>) = self.flows_one_by_one()?.into_iter().unzip();
            with_cache(&keys, &values);
        }
        // Flows whose table entry was evicted while their slot lives on.
        let cache_only = cached.len();
        let (keys, mut values): (Vec<_>, Vec<_>) =
            cached.into_iter().map(|(k, (c, _))| (k, c)).unzip();
        values.iter_mut().for_each(&in_ns);
        visit(&keys, &values);
        let after = self.per_cpu_stat(Stat::CacheFlushes)?;
        let moved = after != flushes;
        let exact = reading.waited && !moved;
        drop(reading);
        if !exact {
            // Cannot happen by the protocol above; counted, never silent.
            self.inexact_reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            log::warn!("a flow-cache slot was flushed during a read: one read may be off");
        }
        Ok(FlowRead {
            table_entries,
            cache_slots,
            cache_only,
            exact,
        })
    }

    /// Reads that could not be proved exact (see `for_each_flow`); 0 unless
    /// something is wrong.
    pub fn inexact_reads(&self) -> u64 {
        self.inexact_reads
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The live slots of every CPU's flow cache, summed per flow, with how
    /// many slots hold each.
    fn cache(&self) -> Result<StdHashMap<FlowKey, (FlowStats, usize)>, DatapathError> {
        let mut out: StdHashMap<FlowKey, (FlowStats, usize)> = StdHashMap::new();
        let mut add = |slot: &CacheSlot| {
            if slot.used == 0 {
                return;
            }
            let e = out
                .entry(slot.key)
                .or_insert_with(|| (FlowStats::default(), 0));
            merge(&mut e.0, &slot.stats);
            e.1 += 1;
        };
        let Some(aya::maps::Map::PerCpuArray(data)) = self.ebpf().map(names::FLOW_CACHE) else {
            return Err(DatapathError::Missing {
                kind: "map",
                name: names::FLOW_CACHE,
            });
        };
        let fd = data.fd().as_fd().as_raw_fd();
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| DatapathError::Batch {
            name: names::FLOW_CACHE,
            source: e,
        })?;
        // The last index is the bypass slot, whose counts are already in
        // the table.
        let bypass = self.flow_cache_slots;
        match batch::for_each_per_key::<u32, CacheSlot>(fd, cpus, |indexes, slots| {
            for (i, per_cpu) in indexes.iter().zip(slots.chunks(cpus)) {
                if *i != bypass {
                    per_cpu.iter().for_each(&mut add);
                }
            }
        }) {
            Ok(()) => {}
            Err(batch::Error::Unsupported) => {
                let map: PerCpuArray<_, CacheSlot> = map_ref(self.ebpf(), names::FLOW_CACHE)?;
                for i in 0..bypass {
                    let per_cpu = map.get(&i, 0).map_err(|source| DatapathError::Map {
                        name: names::FLOW_CACHE,
                        source,
                    })?;
                    per_cpu.iter().for_each(&mut add);
                }
            }
            Err(batch::Error::Io(source)) => {
                return Err(DatapathError::Batch {
                    name: names::FLOW_CACHE,
                    source,
                })
            }
        }
        Ok(out)
    }

    /// One datapath health counter, per CPU.
    fn per_cpu_stat(&self, which: Stat) -> Result<Vec<u64>, DatapathError> {
        self.per_cpu_stat_at(which as u32)
    }

    fn per_cpu_stat_at(&self, index: u32) -> Result<Vec<u64>, DatapathError> {
        let map: PerCpuArray<_, u64> = map_ref(self.ebpf(), names::STATS)?;
        let v = map.get(&index, 0).map_err(|source| DatapathError::Map {
            name: names::STATS,
            source,
        })?;
        Ok(v.iter().copied().collect())
    }

    pub(crate) fn set_reading(&self, on: bool) -> Result<(), DatapathError> {
        let Some(aya::maps::Map::Array(data)) = self.ebpf().map(names::CACHE_CTL) else {
            return Err(DatapathError::Missing {
                kind: "map",
                name: names::CACHE_CTL,
            });
        };
        let value = if on { CACHE_CTL_READING } else { 0 };
        batch::set_u32(data.fd().as_fd().as_raw_fd(), 0, value).map_err(|source| {
            DatapathError::Batch {
                name: names::CACHE_CTL,
                source,
            }
        })
    }

    /// Visits the shared table alone (no cache slots) a batch at a time; `false` when the kernel has no
    /// batch lookups for this map (nothing was visited then).
    pub fn flows_batched(
        &self,
        visit: impl FnMut(&[FlowKey], &[FlowStats]),
    ) -> Result<bool, DatapathError> {
        let Some(aya::maps::Map::LruHashMap(data)) = self.ebpf().map(names::FLOWS) else {
            return Err(DatapathError::Missing {
                kind: "map",
                name: names::FLOWS,
            });
        };
        let fd = data.fd().as_fd().as_raw_fd();
        match batch::for_each::<FlowKey, FlowStats>(fd, visit) {
            Ok(()) => Ok(true),
            Err(batch::Error::Unsupported) => Ok(false),
            Err(batch::Error::Io(source)) => Err(DatapathError::Batch {
                name: names::FLOWS,
                source,
            }),
        }
    }

    /// The shared table alone, one entry at a time.
    /// The kernel keeps updating while we walk, and an entry evicted under
    /// our feet makes the walk restart, so keys are deduplicated.
    pub fn flows_one_by_one(&self) -> Result<Vec<(FlowKey, FlowStats)>, DatapathError> {
        let map: HashMap<_, FlowKey, FlowStats> = map_ref(self.ebpf(), names::FLOWS)?;
        let mut out = StdHashMap::new();
        for item in map.iter() {
            match item {
                Ok((k, v)) => {
                    out.insert(k, v);
                }
                // Evicted between listing the key and reading it.
                Err(aya::maps::MapError::KeyNotFound) => continue,
                Err(source) => {
                    return Err(DatapathError::Map {
                        name: names::FLOWS,
                        source,
                    })
                }
            }
        }
        Ok(out.into_iter().collect())
    }
}

/// Bits of the filter that spares table entries without a live slot the
/// map lookup: 128 KiB, under 1% false hits with the default cache on 2
/// CPUs.
const CACHE_FILTER_BITS: usize = 1 << 20;

/// What one read of the flows found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowRead {
    /// Entries of the shared table.
    pub table_entries: usize,
    /// Live cache slots (a flow busy on two CPUs holds two).
    pub cache_slots: usize,
    /// Flows found only in the cache: their table entry was evicted.
    pub cache_only: usize,
    /// No count moved from cache to table during the read.
    pub exact: bool,
}

/// The reading flag, set for as long as this lives.
struct Reading<'a> {
    dp: &'a Datapath,
    /// Every collision begun before the flag was set had ended.
    waited: bool,
}

/// How long to wait for collisions in flight: each takes well under a
/// microsecond, so this is only reached if a CPU stalls.
const COLLISION_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

impl<'a> Reading<'a> {
    fn start(dp: &'a Datapath) -> Result<Reading<'a>, DatapathError> {
        dp.set_reading(true)?;
        let mut reading = Reading { dp, waited: false };
        // Pairs with the kernel's atomic add before it looks at the flag.
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        let begun = dp.per_cpu_stat(Stat::CacheCollisionsBegun)?;
        let deadline = std::time::Instant::now() + COLLISION_WAIT;
        loop {
            let ended = dp.per_cpu_stat(Stat::CacheCollisionsEnded)?;
            if ended.iter().zip(&begun).all(|(e, b)| e >= b) {
                // (Not `Reading { waited: true, ..reading }`: that would drop
                // `reading`, and with it the flag.)
                reading.waited = true;
                return Ok(reading);
            }
            if std::time::Instant::now() > deadline {
                return Ok(reading);
            }
            std::thread::yield_now();
        }
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.dp.set_reading(false) {
            log::warn!("clearing the flow cache's reading flag: {e}");
        }
    }
}

/// Adds `s` (a cache slot's counts, or another CPU's) to `into`.
pub fn merge(into: &mut FlowStats, s: &FlowStats) {
    if s.esp_seq != 0 && s.last_seen_ns >= into.last_seen_ns {
        into.esp_seq = s.esp_seq;
    }
    into.packets += s.packets;
    into.bytes += s.bytes;
    if into.first_seen_ns == 0 || (s.first_seen_ns != 0 && s.first_seen_ns < into.first_seen_ns) {
        into.first_seen_ns = s.first_seen_ns;
    }
    into.last_seen_ns = into.last_seen_ns.max(s.last_seen_ns);
    for (a, b) in into.http_requests.iter_mut().zip(s.http_requests) {
        *a = a.wrapping_add(b);
    }
    for (a, b) in into.http_responses.iter_mut().zip(s.http_responses) {
        *a = a.wrapping_add(b);
    }
    for (a, b) in into.pattern_hits.iter_mut().zip(s.pattern_hits) {
        *a = a.wrapping_add(b);
    }
    into.tcp_flags |= s.tcp_flags;
}

#[cfg(test)]
mod tests {
    use netobs_common::{Class, FlowKey, ENCAP_NONE, FAMILY_IPV4};

    /// The kernel's fixed-offset parser writes the key as whole 64-bit words
    /// (`FlowKey::ipv4_quads`); the agent reads it field by field. (The fuzz
    /// test compares the two parsers' keys too; this one names the field
    /// that moved.)
    #[test]
    fn key_words_are_the_key_fields() {
        let key = FlowKey {
            ifindex: 0x0102_0304,
            direction: 1,
            class: Class::Vxlan as u8,
            outer_family: FAMILY_IPV4,
            inner_family: FAMILY_IPV4,
            outer_src: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            outer_dst: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            vni_or_spi: 4097,
            inner_proto: 6,
            encap: ENCAP_NONE,
            inner_src: [192, 168, 7, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            inner_dst: [192, 168, 7, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            inner_sport: 40_000,
            inner_dport: 80,
            ..FlowKey::default()
        };
        let raw = |a: &[u8; 16]| u32::from_ne_bytes([a[0], a[1], a[2], a[3]]);
        let quads = FlowKey::ipv4_quads(
            FlowKey::head_quad(0x0102_0304, 1, Class::Vxlan as u8, FAMILY_IPV4, FAMILY_IPV4),
            [raw(&key.outer_src), raw(&key.outer_dst)],
            FlowKey::mid_quad(4097, 6, ENCAP_NONE),
            [raw(&key.inner_src), raw(&key.inner_dst)],
            FlowKey::ports_quad(40_000, 80),
        );
        assert_eq!(&quads, key.quads());
        let mut headless = FlowKey {
            ifindex: 0,
            direction: 0,
            ..key
        };
        headless.set_head(0x0102_0304, 1);
        assert_eq!(headless, key);
    }
}
