//! Records shared by the netobs kernel programs and the agent.
//!
//! Every type here crosses the kernel/user boundary through a map or the ring
//! buffer, so each is `#[repr(C)]`, has explicit padding fields (the kernel
//! hashes keys byte by byte: stray padding would split one flow into many) and
//! a size assertion that fails the build on either side if a field moves.
#![no_std]

use core::mem::size_of;

/// Data-path (VXLAN) UDP ports a single load can watch.
pub const MAX_DATA_PATH_PORTS: usize = 4;
/// Docker's default data-path port.
pub const DEFAULT_DATA_PATH_PORT: u16 = 4789;
/// NAT-T: ESP-in-UDP and IKE share this port (RFC 3948).
pub const ESP_IN_UDP_PORT: u16 = 4500;

/// User patterns searched in unencrypted overlay payloads.
pub const MAX_PATTERNS: usize = 8;
pub const MAX_PATTERN_LEN: usize = 32;
/// Patterns and HTTP are looked for in this many bytes at the start of an
/// inner TCP/UDP payload; a bound keeps the per-packet cost fixed.
pub const PAYLOAD_SCAN_LEN: usize = 128;
/// 64-bit words the patterns are packed into (see `Matcher`): any two
/// patterns of at most 32 bytes share a word, so 8 need at most 4.
pub const MATCHER_WORDS: usize = 4;

/// Bytes of an HTTP request line carried in an event, cut before any query.
pub const SNIPPET_LEN: usize = 64;

/// Interfaces one agent can watch at once (counter slots); slot 0 collects
/// packets from interfaces that were never registered.
pub const MAX_IFACES: usize = 64;
/// Interface indexes the slot table covers directly.
pub const MAX_IFINDEX: u32 = 65_536;

/// Traffic class: every packet falls in exactly one. In the agent's API
/// (the `user` feature) it travels as its snake_case `name()`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(
    feature = "user",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum Class {
    /// Not overlay traffic (or not IP at all).
    Other = 0,
    /// Unencrypted VXLAN on a data-path port.
    Vxlan = 1,
    /// IPsec ESP: IP protocol 50 or ESP-in-UDP on 4500.
    Esp = 2,
    /// Claims to be IP/UDP/VXLAN/ESP but headers are truncated or inconsistent.
    Malformed = 3,
}

pub const CLASS_COUNT: usize = 4;

impl Class {
    pub const ALL: [Class; CLASS_COUNT] =
        [Class::Other, Class::Vxlan, Class::Esp, Class::Malformed];

    pub const fn name(self) -> &'static str {
        match self {
            Class::Other => "other",
            Class::Vxlan => "vxlan",
            Class::Esp => "esp",
            Class::Malformed => "malformed",
        }
    }

    pub const fn from_u8(v: u8) -> Option<Class> {
        match v {
            0 => Some(Class::Other),
            1 => Some(Class::Vxlan),
            2 => Some(Class::Esp),
            3 => Some(Class::Malformed),
            _ => None,
        }
    }
}

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(
    feature = "user",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum Direction {
    Ingress = 0,
    Egress = 1,
}

pub const DIRECTION_COUNT: usize = 2;

impl Direction {
    pub const ALL: [Direction; DIRECTION_COUNT] = [Direction::Ingress, Direction::Egress];

    pub const fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    pub const fn from_u8(v: u8) -> Option<Direction> {
        match v {
            0 => Some(Direction::Ingress),
            1 => Some(Direction::Egress),
            _ => None,
        }
    }
}

/// Index into the per-CPU `COUNTERS` array.
#[inline(always)]
pub const fn counter_index(slot: u32, direction: Direction, class: Class) -> u32 {
    (slot * DIRECTION_COUNT as u32 + direction as u32) * CLASS_COUNT as u32 + class as u32
}

pub const COUNTER_SLOTS: usize = MAX_IFACES * DIRECTION_COUNT * CLASS_COUNT;

/// Per-CPU packet and byte counter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// Health counters of the datapath itself, per CPU, indexed by this enum.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Flows inserted into the flow table when first seen by a CPU's cache.
    FlowsCreated = 0,
    /// Inserts the kernel refused (memory pressure).
    FlowInsertFailed = 1,
    /// Events written to the ring buffer.
    EventsSent = 2,
    /// Events not written because the rate limit was reached.
    EventsRateLimited = 3,
    /// Events not written because the ring buffer was full.
    EventsRingFull = 4,
    /// A packet met another flow in its cache slot (per CPU; incremented
    /// atomically, before the reading flag is looked at: see the agent's
    /// `datapath/read.rs`).
    CacheCollisionsBegun = 5,
    /// Collisions handled (flushed, or bypassed during a read).
    CacheCollisionsEnded = 6,
    /// Cache slots flushed into the shared table.
    CacheFlushes = 7,
    /// Packets counted straight into the shared table because the agent was
    /// reading and their slot held another flow.
    CacheBypassed = 8,
    /// Flows put back into the shared table by a flush after the table had
    /// evicted them (their slot lived on).
    FlowsReinserted = 9,
}

pub const STAT_COUNT: usize = 10;

/// HTTP request methods the datapath recognises; the discriminant indexes
/// `FlowStats::http_requests`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpMethod {
    Get = 1,
    Head = 2,
    Post = 3,
    Put = 4,
    Delete = 5,
    Connect = 6,
    Options = 7,
    Trace = 8,
    Patch = 9,
}

pub const HTTP_METHOD_SLOTS: usize = 10;

impl HttpMethod {
    pub const ALL: [HttpMethod; 9] = [
        HttpMethod::Get,
        HttpMethod::Head,
        HttpMethod::Post,
        HttpMethod::Put,
        HttpMethod::Delete,
        HttpMethod::Connect,
        HttpMethod::Options,
        HttpMethod::Trace,
        HttpMethod::Patch,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Connect => "CONNECT",
            HttpMethod::Options => "OPTIONS",
            HttpMethod::Trace => "TRACE",
            HttpMethod::Patch => "PATCH",
        }
    }

    pub const fn from_u8(v: u8) -> Option<HttpMethod> {
        let mut i = 0;
        while i < Self::ALL.len() {
            if Self::ALL[i] as u8 == v {
                return Some(Self::ALL[i]);
            }
            i += 1;
        }
        None
    }
}

/// Response status classes: index 0 counts responses whose status is not three
/// digits 100-599, 1..=5 count 1xx..5xx.
pub const HTTP_STATUS_CLASSES: usize = 6;

/// Load-time configuration, written into a read-only global before the
/// programs are loaded, so the verifier folds every branch that depends on it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// VXLAN UDP destination ports, host byte order; 0 = unused slot.
    pub data_path_ports: [u16; MAX_DATA_PATH_PORTS],
    /// Number of user patterns (0 disables the payload scan).
    pub pattern_count: u8,
    /// `CONFIG_FLAG_*` bits.
    pub flags: u8,
    pub _pad: [u8; 2],
    /// Ring-buffer events allowed per CPU per second (token bucket refill).
    pub events_per_sec: u32,
    /// Token bucket depth, in events.
    pub events_burst: u32,
    /// Slots in the per-CPU flow cache minus one (the count is a power of
    /// two).
    pub flow_cache_mask: u32,
}

/// Emit an event for the first packet of each new plaintext overlay flow.
pub const CONFIG_FLAG_NEW_FLOW_EVENTS: u8 = 1 << 0;
/// Emit an event for each HTTP request seen in plaintext overlay traffic.
pub const CONFIG_FLAG_HTTP_EVENTS: u8 = 1 << 1;
/// Replay mode: packets come from BPF_PROG_TEST_RUN with the capture's
/// original length in `cb[REPLAY_CB_LEN]` and its timestamp (ns) in
/// `cb[REPLAY_CB_TS_LO]`/`cb[REPLAY_CB_TS_HI]`.
pub const CONFIG_FLAG_REPLAY: u8 = 1 << 2;
/// HTTP events keep the query string (`--capture-paths full`); without it
/// the request line is cut at `?` or `#` in the kernel.
pub const CONFIG_FLAG_FULL_PATHS: u8 = 1 << 3;
/// Every packet through the general parser, none through the fixed-offset
/// one for the common layout: only to compare the two (tests, bench).
pub const CONFIG_FLAG_NO_FAST_PATH: u8 = 1 << 4;

pub const REPLAY_CB_LEN: usize = 0;
pub const REPLAY_CB_TS_LO: usize = 1;
pub const REPLAY_CB_TS_HI: usize = 2;

impl Config {
    pub const fn new() -> Config {
        Config {
            data_path_ports: [DEFAULT_DATA_PATH_PORT, 0, 0, 0],
            pattern_count: 0,
            flags: CONFIG_FLAG_NEW_FLOW_EVENTS | CONFIG_FLAG_HTTP_EVENTS,
            _pad: [0; 2],
            events_per_sec: 1000,
            events_burst: 200,
            flow_cache_mask: DEFAULT_FLOW_CACHE_SLOTS - 1,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

/// The user patterns as the kernel searches them: Shift-And (Baeza-Yates
/// and Gonnet's bit-parallel matcher) over the patterns packed into 64-bit
/// words, a bit per pattern byte, no pattern across two words. For each
/// payload byte `c` and word `w`: `d = ((d << 1) | starts) & masks[c]`,
/// and a pattern ends where `d` has its last bit (`pattern_end`). Unlike an automaton's
/// next state, `masks[c]` does not depend on the bytes before, so the only
/// chain from one byte to the next is a shift, an or and an and. Built by
/// the agent (`datapath/matcher.rs`), written into the kernel's read-only
/// data at load.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matcher {
    /// Bit `j` of `masks[c][w]`: the pattern byte at bit `j` of word `w`
    /// is `c`.
    pub masks: [[u64; MATCHER_WORDS]; 256],
    /// Each pattern's first bit, by word.
    pub starts: [u64; MATCHER_WORDS],
    /// Each pattern's last bit, by word: whether any pattern occurred is
    /// one test a word, and most payloads hold none.
    pub ends: [u64; MATCHER_WORDS],
    /// Pattern `i`'s last bit in its word (0: no such pattern).
    pub pattern_end: [u64; MAX_PATTERNS],
    /// Pattern `i`'s word.
    pub pattern_word: [u32; MAX_PATTERNS],
    /// Words in use (0 without patterns).
    pub words: u32,
    pub _pad: u32,
}

impl Matcher {
    pub const fn new() -> Matcher {
        Matcher {
            masks: [[0; MATCHER_WORDS]; 256],
            starts: [0; MATCHER_WORDS],
            ends: [0; MATCHER_WORDS],
            pattern_end: [0; MAX_PATTERNS],
            pattern_word: [0; MAX_PATTERNS],
            words: 0,
            _pad: 0,
        }
    }
}

impl Default for Matcher {
    fn default() -> Self {
        Self::new()
    }
}

/// Address family values used in keys.
pub const FAMILY_NONE: u8 = 0;
pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

/// ESP carried directly in IP (protocol 50) or in UDP on port 4500.
pub const ENCAP_NONE: u8 = 0;
pub const ENCAP_UDP: u8 = 1;
/// VXLAN: the first fragment of an outer datagram the underlay split (the
/// underlay's MTU is below the overlay's + 50). Its inner frame is cut, so
/// the flow is keyed by the outer ends and VNI only, apart from the whole
/// datagrams of the same ends: its packets are the fragments.
pub const ENCAP_FRAGMENT: u8 = 2;

/// Flow table key. Addresses are 16 bytes; IPv4 uses the first 4 bytes and
/// zeroes the rest (the family fields say which). 8-aligned, so that the
/// per-packet key compare goes a 64-bit word at a time.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub ifindex: u32,
    pub direction: u8,
    pub class: u8,
    pub outer_family: u8,
    pub inner_family: u8,
    pub outer_src: [u8; 16],
    pub outer_dst: [u8; 16],
    /// VXLAN: the VNI. ESP: the SPI.
    pub vni_or_spi: u32,
    pub inner_proto: u8,
    /// ESP: `ENCAP_NONE` or `ENCAP_UDP`; VXLAN: `ENCAP_NONE` or
    /// `ENCAP_FRAGMENT`.
    pub encap: u8,
    pub _pad: [u8; 2],
    pub inner_src: [u8; 16],
    pub inner_dst: [u8; 16],
    /// Host byte order.
    pub inner_sport: u16,
    pub inner_dport: u16,
    pub _tail: [u8; 4],
}

pub const FLOW_KEY_WORDS: usize = size_of::<FlowKey>() / 4;
pub const FLOW_KEY_QUADS: usize = FLOW_KEY_WORDS / 2;

// Words made of smaller fields, by arithmetic rather than through byte
// arrays (which LLVM's BPF backend took apart byte by byte): the field at
// the lower address is the low half on a little-endian machine.

/// The 64-bit word whose lower-addressed half is `lo`.
#[inline(always)]
const fn quad(lo: u32, hi: u32) -> u64 {
    if cfg!(target_endian = "little") {
        lo as u64 | (hi as u64) << 32
    } else {
        (lo as u64) << 32 | hi as u64
    }
}

/// The 32-bit word whose lower-addressed half is `lo`.
#[inline(always)]
const fn pair(lo: u16, hi: u16) -> u32 {
    if cfg!(target_endian = "little") {
        lo as u32 | (hi as u32) << 16
    } else {
        (lo as u32) << 16 | hi as u32
    }
}

/// The 16-bit word whose lower-addressed byte is `lo`.
#[inline(always)]
const fn bytes2(lo: u8, hi: u8) -> u16 {
    u16::from_ne_bytes([lo, hi])
}

impl FlowKey {
    /// The key as the 32-bit words it is made of (no padding).
    #[inline(always)]
    pub fn words(&self) -> &[u32; FLOW_KEY_WORDS] {
        // SAFETY: FlowKey is repr(C), 8-aligned, FLOW_KEY_WORDS * 4 bytes
        // long with explicit padding; every bit pattern is a valid u32.
        unsafe { &*(self as *const FlowKey as *const [u32; FLOW_KEY_WORDS]) }
    }

    /// The key as 64-bit words.
    #[inline(always)]
    pub fn quads(&self) -> &[u64; FLOW_KEY_QUADS] {
        // SAFETY: as above, 8-aligned and a whole number of u64.
        unsafe { &*(self as *const FlowKey as *const [u64; FLOW_KEY_QUADS]) }
    }

    /// The first 64-bit word of a key: interface, direction, class and the
    /// address families.
    #[inline(always)]
    pub fn head_quad(
        ifindex: u32,
        direction: u8,
        class: u8,
        outer_family: u8,
        inner_family: u8,
    ) -> u64 {
        quad(
            ifindex,
            pair(bytes2(direction, class), bytes2(outer_family, inner_family)),
        )
    }

    /// Writes interface and direction as the whole first word, with the
    /// class and families already there.
    #[inline(always)]
    pub fn set_head(&mut self, ifindex: u32, direction: u8) {
        let q = Self::head_quad(
            ifindex,
            direction,
            self.class,
            self.outer_family,
            self.inner_family,
        );
        // SAFETY: as in `quads`; the first word is ifindex and the four bytes.
        unsafe { *(self as *mut FlowKey as *mut u64) = q };
    }

    /// A key whose outer and (when there is one) inner addresses are IPv4,
    /// as the words it is made of, for a writer that stores each word
    /// whole. Addresses are the 4 bytes in wire order read as one `u32`;
    /// `inner` is zero for ESP.
    ///
    /// Why whole words: the hash and the compare read the key a word at a
    /// time, and a word written in parts (zeroed, then a byte, then a
    /// half) cannot be forwarded from the CPU's store buffer to such a
    /// read, which then waits for the stores to reach the cache.
    #[inline(always)]
    pub fn ipv4_quads(
        head: u64,
        outer: [u32; 2],
        mid: u64,
        inner: [u32; 2],
        ports: u64,
    ) -> [u64; FLOW_KEY_QUADS] {
        [
            head,
            quad(outer[0], 0),
            0,
            quad(outer[1], 0),
            0,
            mid,
            quad(inner[0], 0),
            0,
            quad(inner[1], 0),
            0,
            ports,
        ]
    }

    /// The sixth word: VNI or SPI, inner protocol, encapsulation.
    #[inline(always)]
    pub fn mid_quad(vni_or_spi: u32, inner_proto: u8, encap: u8) -> u64 {
        quad(vni_or_spi, pair(bytes2(inner_proto, encap), 0))
    }

    /// The last word: inner ports (host order).
    #[inline(always)]
    pub fn ports_quad(sport: u16, dport: u16) -> u64 {
        quad(pair(sport, dport), 0)
    }

    /// Where this flow sits in a per-CPU flow cache (before masking).
    ///
    /// A handful of words that tell flows apart (interface, direction and
    /// class, the first and last word of each address, VNI or SPI,
    /// protocol, ports), mixed with a multiply: cheap on every packet. Two
    /// flows that share a slot are still told apart by a full key compare;
    /// a poor spread only costs flushes, never exactness.
    #[inline(always)]
    pub fn cache_hash(&self) -> u32 {
        let w = self.words();
        // Word indices: 0 ifindex, 1 direction/class/families, 2 and 5
        // outer_src, 6 and 9 outer_dst, 10 VNI/SPI, 11 proto/encap, 12 and
        // 15 inner_src, 16 and 19 inner_dst, 20 ports.
        let a = w[0] ^ w[1].rotate_left(5) ^ w[2] ^ w[5].rotate_left(11);
        let b = w[6].rotate_left(3) ^ w[9].rotate_left(17) ^ w[10] ^ w[11].rotate_left(23);
        let c = w[12].rotate_left(7) ^ w[15].rotate_left(13) ^ w[16].rotate_left(19) ^ w[19];
        let h = (a ^ b.rotate_left(9) ^ c.rotate_left(21) ^ w[20]).wrapping_mul(0x9e37_79b1);
        h ^ (h >> 15)
    }
}

/// Per-CPU flow cache: slots a CPU's packets count into with plain adds;
/// the default count (a power of two; `--flow-cache-size` changes it).
pub const DEFAULT_FLOW_CACHE_SLOTS: u32 = 4096;

/// One slot of the per-CPU flow cache: a flow's counts since the slot was
/// claimed. When a packet of another flow needs the slot, these counts are
/// added to the shared table ("flushed") and the slot is claimed anew. The
/// agent adds live slots to the table's values when it reads.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheSlot {
    /// 0: empty; 1: holds `key`. Written last when a slot is claimed and
    /// first in the record, so a reader that copies the slot in address
    /// order while a CPU claims it sees either 0 or a whole key.
    pub used: u32,
    pub _pad: u32,
    pub key: FlowKey,
    pub stats: FlowStats,
}

/// `CACHE_CTL[0]`: set by the agent while it reads table and cache; a CPU
/// that would flush a slot then counts the packet straight into the shared
/// table instead, so that no count moves from cache to table under the
/// reader's feet (it would be read twice, or not at all).
pub const CACHE_CTL_READING: u32 = 1;

/// Flow table value. The shared table is updated with atomic adds from
/// every CPU; a cache slot's copy with plain adds by its own CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Packets on the wire (a GSO super-packet counts as its segments).
    pub packets: u64,
    pub bytes: u64,
    /// In the kernel's maps: kernel ticks (jiffies), or the capture's
    /// nanoseconds in replay; as the agent's reader hands them on:
    /// `CLOCK_MONOTONIC` nanoseconds (capture time in replay).
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// Indexed by `HttpMethod`.
    pub http_requests: [u32; HTTP_METHOD_SLOTS],
    /// Indexed by status class, see `HTTP_STATUS_CLASSES`.
    pub http_responses: [u32; HTTP_STATUS_CLASSES],
    /// Packets in which pattern i matched.
    pub pattern_hits: [u32; MAX_PATTERNS],
    /// ESP: highest sequence number seen.
    pub esp_seq: u32,
    /// OR of the inner TCP flags seen.
    pub tcp_flags: u8,
    pub _pad: [u8; 3],
}

/// The event ring buffer's size.
pub const EVENTS_RING_BYTES: u32 = 256 * 1024;
/// Unread bytes in the ring whose crossing wakes the agent. Other events
/// are submitted without a wakeup and the agent finds them when it drains
/// the ring on its timer (`agent::EVENTS_DRAIN_INTERVAL`): a wakeup is an
/// interrupt the submitting CPU raises on itself (irq_work), which cost
/// more than everything else in the program together (see `record.rs`).
pub const EVENTS_WAKEUP_BYTES: u64 = EVENTS_RING_BYTES as u64 / 4;

pub const EVENT_NEW_FLOW: u8 = 1;
pub const EVENT_HTTP_REQUEST: u8 = 2;

/// Ring-buffer record: rare events only (new plaintext flow, HTTP request).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub timestamp_ns: u64,
    pub key: FlowKey,
    pub kind: u8,
    /// `HttpMethod` for HTTP events, else 0.
    pub http_method: u8,
    /// Valid bytes in `snippet`.
    pub snippet_len: u8,
    /// 1 if the request line went on past the snippet (or into a query that
    /// was cut off).
    pub snippet_truncated: u8,
    pub _pad: [u8; 4],
    /// Start of the request line, cut at the first `?`, space after the
    /// target, CR or LF: never a query string.
    pub snippet: [u8; SNIPPET_LEN],
}

/// Per-CPU token bucket for event rate limiting.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RateLimit {
    pub last_refill_ns: u64,
    pub tokens: u64,
}

/// Swarm's gossip (memberlist, NetworkDB) port: UDP for probes and
/// broadcasts, TCP for fallback probes and state sync. Docker has no option
/// to move it.
pub const GOSSIP_PORT: u16 = 7946;

/// UDP gossip datagrams with one peer address in one direction. The
/// all-zero key is the agent's: it counts the datagrams that found the map
/// full (losses are counted, never silent).
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GossipKey {
    /// IPv4 in the first 4 bytes.
    pub peer: [u8; 16],
    /// `FAMILY_IPV4` or `FAMILY_IPV6`; 0 only in the overflow key.
    pub family: u8,
    /// `Direction` as u8.
    pub direction: u8,
    pub _pad: [u8; 2],
}

/// Inner TCP checksum of a SYN arriving in VXLAN: right, never filled in
/// (the pseudo-header's sum, left for a NIC), or wrong.
pub const CSUM_OK: u8 = 1;
pub const CSUM_PARTIAL: u8 = 2;
pub const CSUM_BAD: u8 = 3;
pub const IPPROTO_TCP_U8: u8 = 6;

/// Inner SYNs checked per sending peer (the outer source), interface and
/// verdict. The all-zero key counts those that found the map full.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ChecksumKey {
    pub peer: [u8; 16],
    pub ifindex: u32,
    pub family: u8,
    /// `CSUM_OK`, `CSUM_PARTIAL` or `CSUM_BAD`.
    pub verdict: u8,
    pub _pad: [u8; 2],
}

pub const MAX_CHECKSUM_KEYS: u32 = 1024;

/// Gossip peers tracked at once; beyond it, datagrams count in the
/// overflow key.
pub const MAX_GOSSIP_PEERS: u32 = 1024;

/// What a dropped overlay-path packet was.
pub const DROP_VXLAN: u8 = 1;
pub const DROP_ESP: u8 = 2;
pub const DROP_GOSSIP: u8 = 3;

/// Overlay-path packets the kernel dropped (`skb:kfree_skb`), by addresses,
/// what they were and the kernel's drop reason (`enum skb_drop_reason`).
/// The all-zero key counts drops that found the map full.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DropKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub reason: u32,
    pub family: u8,
    /// `DROP_VXLAN`, `DROP_ESP` or `DROP_GOSSIP`.
    pub traffic: u8,
    pub _pad: [u8; 2],
}

/// Distinct drop keys tracked at once.
pub const MAX_DROP_KEYS: u32 = 1024;

/// Where the drop tracer finds what it reads in kernel memory, resolved from
/// the running kernel's BTF by the agent at load (byte offsets): the kernel's
/// structures move between versions, and Rust eBPF has no CO-RE.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DropConfig {
    /// The agent's network namespace (its inode): drops elsewhere (another
    /// node's namespace on the same host, a container's) are not its own.
    pub netns_inum: u32,
    /// The lowest `skb_drop_reason` that is a drop (`NOT_SPECIFIED`): below
    /// it are "not dropped yet" and "consumed".
    pub first_reason: u32,
    pub skb_head: u16,
    pub skb_network_header: u16,
    pub skb_dev: u16,
    pub skb_sk: u16,
    /// `net_device.nd_net`, `sock.__sk_common.skc_net`: a `struct net *`.
    pub dev_net: u16,
    pub sk_net: u16,
    /// `net.ns.inum`.
    pub net_inum: u16,
    /// 0 until the offsets are known: the tracer counts nothing.
    pub enabled: u16,
}

impl DropConfig {
    pub const fn new() -> DropConfig {
        DropConfig {
            netns_inum: 0,
            first_reason: 0,
            skb_head: 0,
            skb_network_header: 0,
            skb_dev: 0,
            skb_sk: 0,
            dev_net: 0,
            sk_net: 0,
            net_inum: 0,
            enabled: 0,
        }
    }
}

// The layouts are a contract with the kernel: pin them.
const _: () = assert!(size_of::<Counter>() == 16);
const _: () = assert!(size_of::<Config>() == 24);
const _: () = assert!(size_of::<GossipKey>() == 20);
const _: () = assert!(size_of::<ChecksumKey>() == 24);
const _: () = assert!(size_of::<DropKey>() == 40);
const _: () = assert!(size_of::<DropConfig>() == 24);
const _: () = assert!(size_of::<FlowKey>() == 88);
// The kernel's key compare goes by 64-bit word: addresses start on one.
const _: () = assert!(
    core::mem::offset_of!(FlowKey, outer_src) == 8
        && core::mem::offset_of!(FlowKey, outer_dst) == 24
        && core::mem::offset_of!(FlowKey, vni_or_spi) == 40
        && core::mem::offset_of!(FlowKey, inner_src) == 48
        && core::mem::offset_of!(FlowKey, inner_dst) == 64
        && core::mem::offset_of!(FlowKey, inner_sport) == 80
);
const _: () = assert!(size_of::<FlowStats>() == 136);
const _: () = assert!(size_of::<Event>() == 8 + 88 + 8 + SNIPPET_LEN);
const _: () = assert!(size_of::<CacheSlot>() == 8 + 88 + 136);
const _: () = assert!(core::mem::offset_of!(CacheSlot, stats) % 8 == 0);
const _: () = assert!(DEFAULT_FLOW_CACHE_SLOTS.is_power_of_two());
const _: () = assert!(MAX_PATTERN_LEN <= 32 && MAX_PATTERNS <= 2 * MATCHER_WORDS);
const _: () = assert!(MAX_PATTERNS <= 16);

#[cfg(feature = "user")]
mod user {
    use super::*;

    impl core::fmt::Display for Class {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str(self.name())
        }
    }

    impl core::fmt::Display for Direction {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str(self.name())
        }
    }

    // SAFETY: plain-old-data records, every bit pattern is valid, no padding
    // the compiler could fill (explicit `_pad` fields).
    unsafe impl aya::Pod for Counter {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for Matcher {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowStats {}
    unsafe impl aya::Pod for Event {}
    unsafe impl aya::Pod for RateLimit {}
    unsafe impl aya::Pod for CacheSlot {}
    unsafe impl aya::Pod for GossipKey {}
    unsafe impl aya::Pod for ChecksumKey {}
    unsafe impl aya::Pod for DropKey {}
    unsafe impl aya::Pod for DropConfig {}
}
