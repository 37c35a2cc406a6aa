//! The maps the agent reads. Sizes here are defaults: the agent resizes the
//! flow table and the matcher at load time.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
    Global,
};
use netobs_common::{
    CacheSlot, ChecksumKey, Config, Counter, DropKey, FlowKey, FlowStats, GossipKey, Matcher,
    RateLimit, CLASS_COUNT, COUNTER_SLOTS, DEFAULT_FLOW_CACHE_SLOTS, EVENTS_RING_BYTES,
    MAX_CHECKSUM_KEYS, MAX_DROP_KEYS, MAX_GOSSIP_PEERS, MAX_IFINDEX, PAYLOAD_SCAN_LEN, STAT_COUNT,
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

/// The shared flow table: every flow the cache has seen, with the counts
/// its slots flushed. Touched when a flow is new to a CPU's cache, never on
/// a cache hit.
#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowStats> = LruHashMap::with_max_entries(65_536, 0);

/// Per-CPU exact-match flow cache in front of `FLOWS` (Open vSwitch's
/// microflow cache): indexed by `FlowKey::cache_hash`, plain adds. One
/// slot more than the cache has: the bypass slot (see `record::take`). The
/// agent resizes it at load.
#[map]
pub static FLOW_CACHE: PerCpuArray<CacheSlot> =
    PerCpuArray::with_max_entries(DEFAULT_FLOW_CACHE_SLOTS + 1, 0);

/// `[0]`: `netobs_common::CACHE_CTL_READING` while the agent reads.
#[map]
pub static CACHE_CTL: Array<u32> = Array::with_max_entries(1, 0);

/// UDP gossip per peer and direction (see `gossip`).
#[map]
pub static GOSSIP: HashMap<GossipKey, Counter> = HashMap::with_max_entries(MAX_GOSSIP_PEERS, 0);

/// The rare check (inner SYN checksums), a program of its own reached by a
/// tail call once a packet is counted: its code and registers stay out of
/// the hot path. One array per program type (an array belongs to the
/// first type that uses it); filled by the agent.
#[map]
pub static RARE_TC: ProgramArray = ProgramArray::with_max_entries(1, 0);
#[map]
pub static RARE_XDP: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Inner TCP SYNs arriving in VXLAN by checksum verdict (see `checksum`).
#[map]
pub static CHECKSUMS: HashMap<ChecksumKey, u64> = HashMap::with_max_entries(MAX_CHECKSUM_KEYS, 0);

/// Overlay-path packets the kernel dropped, by reason (see `drops`).
#[map]
pub static DROPS: HashMap<DropKey, u64> = HashMap::with_max_entries(MAX_DROP_KEYS, 0);

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RING_BYTES, 0);

/// The user patterns (see `netobs_common::Matcher`), written by the agent
/// before load into the read-only data, like `CONFIG`: the verifier knows
/// how many words are in use and drops the code for the others.
#[unsafe(no_mangle)]
pub static PATTERNS: Global<Matcher> = Global::new(Matcher::new());

/// The matcher record; read its fields with `read_volatile` (the compiler
/// sees only the compile-time zeros).
#[inline(always)]
pub fn patterns() -> *const Matcher {
    &PATTERNS as *const Global<Matcher> as *const Matcher
}

#[repr(C)]
pub struct Scratch {
    pub payload: [u8; PAYLOAD_SCAN_LEN],
    /// See `verifier::widen`.
    pub offset: u32,
    /// See `verifier::forget`.
    pub index: u32,
    /// The packet's flow key, built by the parser.
    pub key: FlowKey,
}

/// Payload bytes copied out of the packet for the pattern scan, and the
/// flow key: too big for the 512-byte stack.
#[map]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// The benchmarks' counter and naive classifier (`bench`), by class.
#[map]
pub static BENCH_COUNTS: PerCpuArray<Counter> =
    PerCpuArray::with_max_entries(CLASS_COUNT as u32, 0);

#[map]
pub static RATE: PerCpuArray<RateLimit> = PerCpuArray::with_max_entries(1, 0);

/// `[CLOCK_MONOTONIC ns, jiffies]`, read at the same moment by
/// `clock_probe`.
#[map]
pub static CLOCK: Array<[u64; 2]> = Array::with_max_entries(1, 0);

#[inline(always)]
pub fn probe_clock() {
    if let Some(c) = CLOCK.get_ptr_mut(0) {
        // SAFETY: helpers without preconditions; c is the map's one value.
        unsafe {
            let ns = aya_ebpf::helpers::bpf_ktime_get_ns();
            let ticks = aya_ebpf::helpers::bpf_jiffies64();
            *c = [ns, ticks];
        }
    }
}

/// The flow key of the packet being handled, in this CPU's scratch space.
#[inline(always)]
pub fn scratch_key() -> Option<&'static mut core::mem::MaybeUninit<FlowKey>> {
    let s = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch value, used by one program run at a time;
    // MaybeUninit<FlowKey> has FlowKey's layout.
    Some(unsafe { &mut *(&raw mut (*s).key as *mut core::mem::MaybeUninit<FlowKey>) })
}

/// The load-time configuration, one field at a time where it is used.
/// `Global::load` copies the whole record (volatile) up front: a dozen loads
/// and as many registers spilled on every packet, for fields most packets
/// never look at. Here each use is one load from the read-only map, whose
/// value the verifier knows, so it also prunes the branches it decides.
#[derive(Clone, Copy)]
pub struct Cfg;

macro_rules! field {
    ($name:ident, $t:ty) => {
        #[inline(always)]
        pub fn $name(&self) -> $t {
            // SAFETY: Global<T> is a transparent MaybeUninit<T>, initialised
            // by the loader before the programs load; volatile so the loaded
            // value, not the compile-time default, is read.
            unsafe { core::ptr::read_volatile(&raw const (*Cfg::ptr()).$name) }
        }
    };
}

impl Cfg {
    #[inline(always)]
    fn ptr() -> *const Config {
        &CONFIG as *const Global<Config> as *const Config
    }

    field!(flags, u8);
    field!(pattern_count, u8);
    field!(events_per_sec, u32);
    field!(events_burst, u32);
    field!(flow_cache_mask, u32);

    /// Data-path port slot `i` (0 = unused).
    #[inline(always)]
    pub fn port(&self, i: usize) -> u16 {
        // SAFETY: as in `field!`; callers pass i < MAX_DATA_PATH_PORTS.
        unsafe { core::ptr::read_volatile(&raw const (*Cfg::ptr()).data_path_ports[i]) }
    }
}
