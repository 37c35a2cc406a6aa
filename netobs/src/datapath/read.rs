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

    /// Every flow in the table.
    pub fn flows(&self) -> Result<Vec<(FlowKey, FlowStats)>, DatapathError> {
        let mut all = Vec::new();
        self.for_each_flow(|k, v| all.push((*k, *v)))?;
        Ok(all)
    }

    /// Visits every flow in the table without copying it: in batches of
    /// thousands per system call where the kernel has BPF_MAP_LOOKUP_BATCH
    /// (5.6+), else one by one.
    pub fn for_each_flow(
        &self,
        mut visit: impl FnMut(&FlowKey, &FlowStats),
    ) -> Result<(), DatapathError> {
        let batched = self.flows_batched(|keys, values| {
            for (k, v) in keys.iter().zip(values) {
                visit(k, v);
            }
        })?;
        if !batched {
            for (k, v) in self.flows_one_by_one()? {
                visit(&k, &v);
            }
        }
        Ok(())
    }

    /// Visits the table a batch at a time; `false` when the kernel has no
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
