//! The kernel side as the agent sees it: load the programs with their
//! configuration, attach and detach them, read their maps, feed them
//! captured packets. Nothing here knows about Docker.
pub mod attach;
mod batch;
mod btf;
pub mod clock;
pub mod drops;
pub mod events;
pub mod matcher;
mod pin;
pub mod read;
pub mod testrun;
pub mod watched;

use std::collections::BTreeMap;

use aya::{
    maps::Array,
    programs::{RawTracePoint, SchedClassifier, Xdp},
    Ebpf, EbpfLoader,
};
use netobs_common::{
    Config, CONFIG_FLAG_FULL_PATHS, CONFIG_FLAG_HTTP_EVENTS, CONFIG_FLAG_NEW_FLOW_EVENTS,
    CONFIG_FLAG_NO_FAST_PATH, CONFIG_FLAG_REPLAY, DEFAULT_DATA_PATH_PORT, DEFAULT_FLOW_CACHE_SLOTS,
    MAX_DATA_PATH_PORTS, MAX_IFACES, MAX_IFINDEX,
};

/// The kernel object, built by `cargo xtask build` (see build.rs).
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("NETOBS_EBPF_OBJECT"));

/// Program and map names in the object: one place for each.
pub mod names {
    pub const TC_INGRESS: &str = "netobs_tc_ingress";
    pub const TC_EGRESS: &str = "netobs_tc_egress";
    pub const XDP: &str = "netobs_xdp";
    /// Do-nothing programs on the same hooks, the benchmarks' baseline.
    pub const BENCH_TC_EMPTY: &str = "bench_tc_empty";
    pub const BENCH_XDP_EMPTY: &str = "bench_xdp_empty";
    /// XDP reading the packet's first two cache lines and nothing else.
    pub const BENCH_XDP_TOUCH: &str = "bench_xdp_touch";
    /// One per-CPU counter, nothing read from the packet.
    pub const BENCH_TC_COUNTER: &str = "bench_tc_counter";
    pub const BENCH_XDP_COUNTER: &str = "bench_xdp_counter";
    /// Issue #10's naive classifier: outer headers copied out, a counter
    /// per class, no flow table.
    pub const BENCH_TC_NAIVE: &str = "bench_tc_naive";
    pub const BENCH_XDP_NAIVE: &str = "bench_xdp_naive";
    /// Reads the tick count and the monotonic clock together (test runs only).
    pub const CLOCK_PROBE: &str = "clock_probe";
    /// On `skb:kfree_skb`, and that tracepoint's name.
    pub const KFREE_SKB: &str = "netobs_kfree_skb";
    /// The rare check, tail-called through `RARE_TC` / `RARE_XDP`.
    pub const TC_CHECKSUM: &str = "netobs_tc_checksum";
    pub const XDP_CHECKSUM: &str = "netobs_xdp_checksum";
    pub const RARE_TC: &str = "RARE_TC";
    pub const RARE_XDP: &str = "RARE_XDP";
    pub const KFREE_SKB_TRACEPOINT: &str = "kfree_skb";
    pub const DROP_CONFIG: &str = "DROP_CONFIG";
    pub const GOSSIP: &str = "GOSSIP";
    pub const DROPS: &str = "DROPS";
    pub const CHECKSUMS: &str = "CHECKSUMS";
    pub const CONFIG: &str = "CONFIG";
    pub const COUNTERS: &str = "COUNTERS";
    pub const STATS: &str = "STATS";
    /// The counter and naive baselines' counts, by class.
    pub const BENCH_COUNTS: &str = "BENCH_COUNTS";
    pub const IFACE_SLOTS: &str = "IFACE_SLOTS";
    pub const FLOWS: &str = "FLOWS";
    pub const FLOW_CACHE: &str = "FLOW_CACHE";
    pub const CACHE_CTL: &str = "CACHE_CTL";
    pub const EVENTS: &str = "EVENTS";
    /// The user patterns, in the read-only data.
    pub const PATTERNS: &str = "PATTERNS";
    pub const SCRATCH: &str = "SCRATCH";
    pub const RATE: &str = "RATE";
    pub const CLOCK: &str = "CLOCK";
    /// Every map of the object (the benchmarks add up their memory).
    pub const ALL_MAPS: [&str; 14] = [
        COUNTERS,
        GOSSIP,
        DROPS,
        CHECKSUMS,
        STATS,
        IFACE_SLOTS,
        FLOWS,
        FLOW_CACHE,
        CACHE_CTL,
        EVENTS,
        SCRATCH,
        RATE,
        CLOCK,
        ".rodata",
    ];
}

pub const DEFAULT_FLOW_TABLE_SIZE: u32 = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error(
        "this netobs was built without its kernel programs (the eBPF object was missing): \
         build it with `cargo xtask build`"
    )]
    NoObject,
    #[error("too many data-path ports: at most {MAX_DATA_PATH_PORTS} can be watched")]
    TooManyPorts,
    #[error("data-path port 0 is not a port")]
    ZeroPort,
    #[error(transparent)]
    Pattern(#[from] matcher::PatternError),
    #[error("flow table size must be at least 1")]
    FlowTableSize,
    #[error("flow cache size must be a power of two up to 1048576")]
    FlowCacheSize,
    #[error(
        "cannot load the eBPF programs: {0}. netobs needs root or CAP_BPF, CAP_NET_ADMIN and \
         CAP_PERFMON, and a kernel with BTF (5.15 or later)"
    )]
    Load(#[source] aya::EbpfError),
    #[error("the eBPF object has no {kind} named {name}: rebuild with `cargo xtask build`")]
    Missing {
        kind: &'static str,
        name: &'static str,
    },
    #[error("loading program {name} failed: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("reading map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error(
        "cannot use the pinned maps in {dir}: {reason}. It must be on a bpf filesystem \
         (`mount -t bpf bpf /sys/fs/bpf`); maps pinned by another netobs version or with \
         another --flow-table-size or --flow-cache-size cannot be reused: remove the directory"
    )]
    Pin {
        dir: std::path::PathBuf,
        reason: String,
    },
    #[error(
        "cannot read the kernel's tick count against the clock (a test run of the clock probe \
         saw no tick in a second)"
    )]
    Clock,
    #[error("reading map {name} in batches: {source}")]
    Batch {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("more than {} interfaces at once", MAX_IFACES - 1)]
    TooManyInterfaces,
    #[error("interface index {0} is beyond {MAX_IFINDEX}, which netobs cannot count separately")]
    IfindexTooLarge(u32),
}

/// What the user asked the programs to look for.
#[derive(Debug, Clone)]
pub struct Options {
    pub data_path_ports: Vec<u16>,
    pub patterns: Vec<Vec<u8>>,
    pub flow_table_size: u32,
    /// Slots of the per-CPU flow cache (a power of two).
    pub flow_cache_slots: u32,
    pub new_flow_events: bool,
    pub http_events: bool,
    pub events_per_sec: u32,
    pub events_burst: u32,
    /// HTTP events keep the query string (`--capture-paths full`).
    pub full_paths: bool,
    /// Directory on bpffs where the counters, the flow table and the
    /// interface slots are pinned, so that they outlive the agent.
    pub pin: Option<std::path::PathBuf>,
    /// How TC programs are attached.
    pub tc_api: attach::TcApi,
    /// Load for `replay`: packets come from BPF_PROG_TEST_RUN.
    pub replay: bool,
    /// The fixed-offset parser for the common layout in front of the
    /// general one; off only to compare the two (tests, bench).
    pub fast_path: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            data_path_ports: vec![DEFAULT_DATA_PATH_PORT],
            patterns: Vec::new(),
            flow_table_size: DEFAULT_FLOW_TABLE_SIZE,
            flow_cache_slots: DEFAULT_FLOW_CACHE_SLOTS,
            new_flow_events: true,
            http_events: true,
            events_per_sec: 1000,
            events_burst: 200,
            full_paths: false,
            pin: None,
            tc_api: attach::TcApi::Auto,
            replay: false,
            fast_path: true,
        }
    }
}

impl Options {
    fn config(&self) -> Result<Config, DatapathError> {
        if self.data_path_ports.len() > MAX_DATA_PATH_PORTS {
            return Err(DatapathError::TooManyPorts);
        }
        if self.data_path_ports.contains(&0) {
            return Err(DatapathError::ZeroPort);
        }
        if self.flow_table_size == 0 {
            return Err(DatapathError::FlowTableSize);
        }
        if !self.flow_cache_slots.is_power_of_two() || self.flow_cache_slots > 1 << 20 {
            return Err(DatapathError::FlowCacheSize);
        }
        let mut cfg = Config::new();
        cfg.data_path_ports = [0; MAX_DATA_PATH_PORTS];
        for (slot, port) in cfg.data_path_ports.iter_mut().zip(&self.data_path_ports) {
            *slot = *port;
        }
        cfg.pattern_count = self.patterns.len() as u8;
        cfg.flags = 0;
        if self.new_flow_events {
            cfg.flags |= CONFIG_FLAG_NEW_FLOW_EVENTS;
        }
        if self.http_events {
            cfg.flags |= CONFIG_FLAG_HTTP_EVENTS;
        }
        if self.replay {
            cfg.flags |= CONFIG_FLAG_REPLAY;
        }
        if self.full_paths {
            cfg.flags |= CONFIG_FLAG_FULL_PATHS;
        }
        if !self.fast_path {
            cfg.flags |= CONFIG_FLAG_NO_FAST_PATH;
        }
        cfg.events_per_sec = self.events_per_sec;
        cfg.events_burst = self.events_burst;
        cfg.flow_cache_mask = self.flow_cache_slots - 1;
        Ok(cfg)
    }
}

/// The loaded programs and their maps. Dropping it unloads everything; links
/// live in `attach::Attachment`, which must be dropped first.
pub struct Datapath {
    ebpf: Ebpf,
    patterns: Vec<String>,
    /// ifindex -> counter slot (1..MAX_IFACES); slot 0 is "unregistered".
    slots: BTreeMap<u32, u32>,
    /// Loaded for `replay`: see `testrun`.
    replay: bool,
    tc_api: attach::TcApi,
    /// Kernel-side log records, when the object was built with them
    /// (`cargo xtask build --debug-log`).
    kernel_log: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// Slots of the flow cache (its map has one more: the bypass slot).
    flow_cache_slots: u32,
    /// See `Datapath::inexact_reads`.
    inexact_reads: std::sync::atomic::AtomicU64,
    /// Live: how the flows' tick stamps become nanoseconds.
    tick_clock: Option<clock::TickClock>,
    /// Live: the drop tracer's reason names, or why it is not running.
    drop_view: Result<drops::Reasons, String>,
}

impl Datapath {
    pub fn load(opts: &Options) -> Result<Datapath, DatapathError> {
        Datapath::load_object(opts, OBJECT)
    }

    /// `load`, from another build of the kernel programs with the same
    /// records (`object`: the ELF file, 8-aligned): what the benchmarks
    /// compare a change with, side by side in one run.
    pub fn load_object(opts: &Options, object: &[u8]) -> Result<Datapath, DatapathError> {
        if object.is_empty() {
            return Err(DatapathError::NoObject);
        }
        let cfg = opts.config()?;
        let patterns = matcher::compile(&opts.patterns)?;
        // Replay has no kernel drops to trace.
        let drop_layout = if opts.replay {
            Err("not traced in replay".to_owned())
        } else {
            drops::resolve()
        };
        let drop_cfg = match &drop_layout {
            Ok((c, _)) => *c,
            Err(_) => netobs_common::DropConfig::new(),
        };
        let mut loader = EbpfLoader::new();
        loader
            .override_global(names::CONFIG, &cfg, true)
            // Not required: the benchmarks load builds that had an automaton
            // in a map instead (they then find no pattern).
            .override_global(names::PATTERNS, &patterns, false)
            // Not required: the benchmarks load older objects without it.
            .override_global(names::DROP_CONFIG, &drop_cfg, false)
            .map_max_entries(names::FLOWS, opts.flow_table_size)
            .map_max_entries(names::FLOW_CACHE, opts.flow_cache_slots + 1);
        let pins = match &opts.pin {
            Some(dir) => pin::paths(dir)?,
            None => Vec::new(),
        };
        for (name, path) in &pins {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(object).map_err(|e| match &opts.pin {
            // A pinned map from another version or table size.
            Some(dir) => DatapathError::Pin {
                dir: dir.clone(),
                reason: e.to_string(),
            },
            None => DatapathError::Load(e),
        })?;
        // Before the programs load: they reference the log map.
        let kernel_log = aya_log::EbpfLogger::init(&mut ebpf).ok();
        let mut dp = Datapath {
            ebpf,
            patterns: opts
                .patterns
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect(),
            slots: BTreeMap::new(),
            replay: opts.replay,
            tc_api: opts.tc_api,
            kernel_log,
            flow_cache_slots: opts.flow_cache_slots,
            inexact_reads: std::sync::atomic::AtomicU64::new(0),
            tick_clock: None,
            drop_view: Err(String::new()),
        };
        dp.seed_overflow_keys()?;
        if opts.pin.is_some() {
            // Interfaces keep the slots (and so the counters) they had.
            dp.slots = pin::slots(&dp.ebpf)?;
            // An agent killed while reading left the flag set.
            dp.set_reading(false)?;
        }
        for name in [names::TC_INGRESS, names::TC_EGRESS] {
            dp.classifier(name)?
                .load()
                .map_err(|source| DatapathError::Program { name, source })?;
        }
        dp.fill_rare(names::TC_CHECKSUM, names::RARE_TC)?;
        if !opts.replay {
            dp.tick_clock = Some(dp.calibrate_clock()?);
        }
        dp.drop_view = match drop_layout {
            Ok((_, reasons)) => dp.attach_drop_tracer().map(|()| reasons),
            Err(why) => Err(why),
        };
        // XDP loads on first use: it needs bpf_xdp_load_bytes (5.18), and
        // TC mode must keep working on older kernels.
        Ok(dp)
    }

    /// The tracer of the kernel's drops, on `skb:kfree_skb` for as long as
    /// the programs are loaded (its link goes with them). A kernel that
    /// refuses it leaves the rest working and the view unavailable.
    fn attach_drop_tracer(&mut self) -> Result<(), String> {
        let prog: &mut RawTracePoint = self
            .ebpf
            .program_mut(names::KFREE_SKB)
            .ok_or_else(|| "the kernel programs have no drop tracer".to_owned())?
            .try_into()
            .map_err(|e| format!("the drop tracer: {e}"))?;
        prog.load()
            .map_err(|e| format!("loading the drop tracer: {e}"))?;
        prog.attach(names::KFREE_SKB_TRACEPOINT)
            .map_err(|e| format!("attaching to skb:kfree_skb: {e}"))?;
        Ok(())
    }

    /// The drop reasons' names, or why drops are not traced.
    pub fn drop_view(&self) -> Result<&drops::Reasons, &str> {
        self.drop_view.as_ref().map_err(String::as_str)
    }

    /// The all-zero key of the gossip, drop and checksum maps counts what found them
    /// full: it must exist before the programs run. An older object
    /// without the maps (a benchmark's baseline) has nothing to seed.
    fn seed_overflow_keys(&mut self) -> Result<(), DatapathError> {
        use netobs_common::{ChecksumKey, Counter, DropKey, GossipKey};
        if self.ebpf.map(names::GOSSIP).is_some() {
            let mut m: aya::maps::HashMap<_, GossipKey, Counter> =
                map_mut(&mut self.ebpf, names::GOSSIP)?;
            m.insert(GossipKey::default(), Counter::default(), 0)
                .map_err(|source| DatapathError::Map {
                    name: names::GOSSIP,
                    source,
                })?;
        }
        if self.ebpf.map(names::DROPS).is_some() {
            let mut m: aya::maps::HashMap<_, DropKey, u64> = map_mut(&mut self.ebpf, names::DROPS)?;
            m.insert(DropKey::default(), 0, 0)
                .map_err(|source| DatapathError::Map {
                    name: names::DROPS,
                    source,
                })?;
        }
        if self.ebpf.map(names::CHECKSUMS).is_some() {
            let mut m: aya::maps::HashMap<_, ChecksumKey, u64> =
                map_mut(&mut self.ebpf, names::CHECKSUMS)?;
            m.insert(ChecksumKey::default(), 0, 0)
                .map_err(|source| DatapathError::Map {
                    name: names::CHECKSUMS,
                    source,
                })?;
        }
        Ok(())
    }

    /// The kernel log reader, if the object logs; whoever takes it must
    /// call `flush` when its descriptor is readable.
    pub fn take_kernel_log(&mut self) -> Option<aya_log::EbpfLogger<&'static dyn log::Log>> {
        self.kernel_log.take()
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// The instructions the verifier walked for each packet program (its
    /// limit is a million per program): what a configuration costs to
    /// load, and how far it is from failing to.
    pub fn verified_instructions(&self) -> Vec<(&'static str, u32)> {
        [names::TC_INGRESS, names::TC_EGRESS, names::XDP]
            .into_iter()
            .filter_map(|name| {
                let info = self.ebpf.program(name)?.info().ok()?;
                Some((name, info.verified_instruction_count()?))
            })
            .collect()
    }

    pub(crate) fn classifier(
        &mut self,
        name: &'static str,
    ) -> Result<&mut SchedClassifier, DatapathError> {
        self.ebpf
            .program_mut(name)
            .and_then(|p| p.try_into().ok())
            .ok_or(DatapathError::Missing {
                kind: "TC program",
                name,
            })
    }

    /// An XDP program of the object by name, loaded on first use.
    pub(crate) fn xdp_named(&mut self, name: &'static str) -> Result<&mut Xdp, DatapathError> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .and_then(|p| p.try_into().ok())
            .ok_or(DatapathError::Missing {
                kind: "XDP program",
                name,
            })?;
        if prog.fd().is_err() {
            prog.load()
                .map_err(|source| DatapathError::Program { name, source })?;
            if name == names::XDP {
                self.fill_rare(names::XDP_CHECKSUM, names::RARE_XDP)?;
            }
        }
        self.ebpf
            .program_mut(name)
            .and_then(|p| p.try_into().ok())
            .ok_or(DatapathError::Missing {
                kind: "XDP program",
                name,
            })
    }

    /// Loads the rare-check program `name` and puts it in the program array
    /// `array`, where the hot programs tail-call it. An older object without
    /// them (a benchmark's baseline) has nothing to fill.
    fn fill_rare(&mut self, name: &'static str, array: &'static str) -> Result<(), DatapathError> {
        let Some(prog) = self.ebpf.program_mut(name) else {
            return Ok(());
        };
        let fd = match prog {
            aya::programs::Program::SchedClassifier(p) => {
                p.load()
                    .map_err(|source| DatapathError::Program { name, source })?;
                p.fd()
            }
            aya::programs::Program::Xdp(p) => {
                p.load()
                    .map_err(|source| DatapathError::Program { name, source })?;
                p.fd()
            }
            _ => {
                return Err(DatapathError::Missing {
                    kind: "rare-check program",
                    name,
                })
            }
        }
        .map_err(|source| DatapathError::Program { name, source })?
        .try_clone()
        .map_err(|e| DatapathError::Program {
            name,
            source: aya::programs::ProgramError::IOError(e),
        })?;
        let mut rare: aya::maps::ProgramArray<_> = map_mut(&mut self.ebpf, array)?;
        rare.set(0, &fd, 0).map_err(|source| DatapathError::Map {
            name: array,
            source,
        })
    }

    /// A TC program of the object by name, loaded on first use.
    pub(crate) fn classifier_loaded(
        &mut self,
        name: &'static str,
    ) -> Result<&mut SchedClassifier, DatapathError> {
        let prog = self.classifier(name)?;
        if prog.fd().is_err() {
            prog.load()
                .map_err(|source| DatapathError::Program { name, source })?;
        }
        Ok(prog)
    }

    /// Gives `ifindex` its own counter slot (idempotent).
    pub fn register_interface(&mut self, ifindex: u32) -> Result<u32, DatapathError> {
        if let Some(&slot) = self.slots.get(&ifindex) {
            return Ok(slot);
        }
        if ifindex >= MAX_IFINDEX {
            return Err(DatapathError::IfindexTooLarge(ifindex));
        }
        let slot = (1..MAX_IFACES as u32)
            .find(|s| !self.slots.values().any(|v| v == s))
            .ok_or(DatapathError::TooManyInterfaces)?;
        let mut map: Array<_, u32> = map_mut(&mut self.ebpf, names::IFACE_SLOTS)?;
        map.set(ifindex, slot, 0)
            .map_err(|source| DatapathError::Map {
                name: names::IFACE_SLOTS,
                source,
            })?;
        self.slots.insert(ifindex, slot);
        Ok(slot)
    }

    /// Gives interface index `new` the counter slot of `old` (an interface
    /// that was deleted and created again), so its counters continue.
    pub fn move_slot(&mut self, old: u32, new: u32) -> Result<u32, DatapathError> {
        let Some(slot) = self.slots.remove(&old) else {
            return self.register_interface(new);
        };
        if new >= MAX_IFINDEX {
            return Err(DatapathError::IfindexTooLarge(new));
        }
        let mut map: Array<_, u32> = map_mut(&mut self.ebpf, names::IFACE_SLOTS)?;
        let err = |source| DatapathError::Map {
            name: names::IFACE_SLOTS,
            source,
        };
        // The old index may be handed to another interface one day: it
        // counts in the unregistered slot until then.
        map.set(old, 0, 0).map_err(err)?;
        map.set(new, slot, 0).map_err(err)?;
        self.slots.insert(new, slot);
        Ok(slot)
    }

    pub fn slots(&self) -> &BTreeMap<u32, u32> {
        &self.slots
    }

    pub(crate) fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }

    pub(crate) fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}

fn map_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<T, DatapathError>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .map_mut(name)
        .ok_or(DatapathError::Missing { kind: "map", name })?;
    T::try_from(map).map_err(|source| DatapathError::Map { name, source })
}

pub(crate) fn map_ref<'a, T>(ebpf: &'a Ebpf, name: &'static str) -> Result<T, DatapathError>
where
    T: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .map(name)
        .ok_or(DatapathError::Missing { kind: "map", name })?;
    T::try_from(map).map_err(|source| DatapathError::Map { name, source })
}
