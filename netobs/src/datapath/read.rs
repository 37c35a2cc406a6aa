//! Reading the maps: per-CPU values are summed here, so nothing above this
//! module knows how many CPUs there are.
use std::{
    collections::HashMap as StdHashMap,
    os::fd::{AsFd, AsRawFd},
};

use aya::maps::{HashMap, PerCpuArray};
use netobs_common::{Counter, FlowKey, FlowStats, COUNTER_SLOTS, STAT_COUNT};

use super::{batch, map_ref, names, Datapath, DatapathError};

/// Summed counters, indexed by `netobs_common::counter_index`.
pub type Counters = Vec<Counter>;

impl Datapath {
    pub fn counters(&self) -> Result<Counters, DatapathError> {
        let map: PerCpuArray<_, Counter> = map_ref(self.ebpf(), names::COUNTERS)?;
        let mut out = vec![Counter::default(); COUNTER_SLOTS];
        for (i, slot) in out.iter_mut().enumerate() {
            let per_cpu = map
                .get(&(i as u32), 0)
                .map_err(|source| DatapathError::Map {
                    name: names::COUNTERS,
                    source,
                })?;
            for c in per_cpu.iter() {
                slot.packets += c.packets;
                slot.bytes += c.bytes;
            }
        }
        Ok(out)
    }

    /// Datapath health counters, indexed by `netobs_common::Stat`.
    pub fn stats(&self) -> Result<[u64; STAT_COUNT], DatapathError> {
        let map: PerCpuArray<_, u64> = map_ref(self.ebpf(), names::STATS)?;
        let mut out = [0u64; STAT_COUNT];
        for (i, v) in out.iter_mut().enumerate() {
            let per_cpu = map
                .get(&(i as u32), 0)
                .map_err(|source| DatapathError::Map {
                    name: names::STATS,
                    source,
                })?;
            *v = per_cpu.iter().sum();
        }
        Ok(out)
    }

    /// Every flow in the table: in batches of thousands per system call
    /// where the kernel has BPF_MAP_LOOKUP_BATCH (5.6+), else one by one.
    pub fn flows(&self) -> Result<Vec<(FlowKey, FlowStats)>, DatapathError> {
        if let Some(all) = self.flows_batched() {
            return Ok(all);
        }
        self.flows_one_by_one()
    }

    /// `None` when the kernel refuses batch lookups on this map.
    pub fn flows_batched(&self) -> Option<Vec<(FlowKey, FlowStats)>> {
        let aya::maps::Map::LruHashMap(data) = self.ebpf().map(names::FLOWS)? else {
            return None;
        };
        let fd = data.fd().as_fd().as_raw_fd();
        batch::lookup_all::<FlowKey, FlowStats>(fd).ok()
    }

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
