//! The maps the agent reads. Sizes here are defaults: the agent resizes the
//! flow table and the matcher at load time.
use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
    Global,
};
use netobs_common::{
    Config, Counter, FlowKey, FlowStats, MatcherEntry, RateLimit, COUNTER_SLOTS, MAX_IFINDEX,
    PAYLOAD_SCAN_LEN, STAT_COUNT,
};

#[unsafe(no_mangle)]
pub static CONFIG: Global<Config> = Global::new(Config::new());

/// Packets and bytes per (interface slot, direction, class).
#[map]
pub static COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(COUNTER_SLOTS as u32, 0);

/// Datapath health, indexed by `netobs_common::Stat`.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT as u32, 0);

/// ifindex -> counter slot; an array lookup is inlined by the verifier, a
/// hash lookup would cost more than the whole non-overlay path.
#[map]
pub static IFACE_SLOTS: Array<u32> = Array::with_max_entries(MAX_IFINDEX, 0);

#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowStats> = LruHashMap::with_max_entries(65_536, 0);

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Pattern automaton, see `netobs_common::MatcherEntry`.
#[map]
pub static MATCHER: Array<MatcherEntry> = Array::with_max_entries(1, 0);

#[repr(C)]
pub struct Scratch {
    pub payload: [u8; PAYLOAD_SCAN_LEN],
    /// See `verifier::widen`.
    pub offset: u32,
}

/// Payload bytes copied out of the packet for the pattern scan; too big for
/// the 512-byte stack next to a flow key.
#[map]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static RATE: PerCpuArray<RateLimit> = PerCpuArray::with_max_entries(1, 0);
