//! What a classified packet leaves behind: a per-CPU counter always; for
//! overlay packets a count in this CPU's flow-cache slot (the shared flow
//! table is touched only when a flow is new to the slot); for rare moments
//! an event.
use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    bindings::{BPF_NOEXIST, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::generated::bpf_probe_read_kernel,
};
use netobs_common::{
    counter_index, CacheSlot, Class, Direction, Event, FlowKey, FlowStats, Stat, CACHE_CTL_READING,
    CONFIG_FLAG_FULL_PATHS, CONFIG_FLAG_HTTP_EVENTS, CONFIG_FLAG_NEW_FLOW_EVENTS,
    EVENTS_WAKEUP_BYTES, EVENT_HTTP_REQUEST, EVENT_NEW_FLOW, HTTP_METHOD_SLOTS,
    HTTP_STATUS_CLASSES, MAX_IFACES, MAX_PATTERNS, PAYLOAD_SCAN_LEN, SNIPPET_LEN,
};

use crate::{
    checksum, http,
    maps::{
        Cfg, CACHE_CTL, COUNTERS, EVENTS, FLOWS, FLOW_CACHE, IFACE_SLOTS, RATE, SCRATCH, STATS,
    },
    matcher, mem,
    packet::{coarse_now, Packet},
    parse::{self, Meta},
    verifier::{forget, widen},
};

/// `-EEXIST` from a `BPF_NOEXIST` insert.
const EEXIST: i32 = -17;
const TCP_SYN: u8 = 0x02;

#[inline(always)]
pub fn observe<P: Packet>(pkt: &P, direction: Direction) -> Class {
    let cfg = Cfg;
    // The interface's counter slot before the parser: its loads (the
    // device, its index, the slot) need nothing the parser finds, and run
    // beside it instead of after it.
    let slot = iface_slot(pkt.ifindex());
    let mut meta = Meta::default();
    let class = parse::classify(pkt, &cfg, direction, &mut meta);
    let packets = pkt.segments();
    let bytes = pkt.len() as u64;
    count(slot, direction, class, packets, bytes);
    if class == Class::Vxlan || class == Class::Esp {
        // The key is built in per-CPU scratch, not on the 512-byte stack.
        let Some(key) = meta.key else {
            return class;
        };
        // SAFETY: classify initialises the key for these two classes.
        let key = unsafe { key.as_ref() };
        flow(pkt, &cfg, key, &meta, packets, bytes);
        // Last, once everything is counted: an inner SYN arriving has its
        // checksum judged in a program of its own (`maps::RARE_TC`).
        if direction == Direction::Ingress && meta.tcp_flags & TCP_SYN != 0 {
            pkt.tail_call_rare();
        }
    }
    class
}

/// The rare-check program for inner SYN checksums: the packet parsed
/// again (only SYNs arriving get here), then judged.
#[inline(always)]
pub fn checksum<P: Packet>(pkt: &P) {
    let cfg = Cfg;
    let mut meta = Meta::default();
    if parse::classify(pkt, &cfg, Direction::Ingress, &mut meta) != Class::Vxlan || !meta.inner_tcp
    {
        return;
    }
    let Some(key) = meta.key else {
        return;
    };
    // SAFETY: classify initialised the key for VXLAN.
    let key = unsafe { key.as_ref() };
    checksum::check(pkt, key, &meta);
}

/// The interface's slot in the counters (0: not registered).
#[inline(always)]
fn iface_slot(ifindex: u32) -> u32 {
    match IFACE_SLOTS.get(ifindex) {
        Some(&s) if (s as usize) < MAX_IFACES => s,
        _ => 0,
    }
}

#[inline(always)]
fn count(slot: u32, direction: Direction, class: Class, packets: u64, bytes: u64) {
    if let Some(c) = COUNTERS.get_ptr_mut(counter_index(slot, direction, class)) {
        // SAFETY: per-CPU value, only this CPU writes it.
        unsafe {
            (*c).packets += packets;
            (*c).bytes += bytes;
        }
    }
}

#[inline(always)]
fn stat(which: Stat) {
    if let Some(v) = STATS.get_ptr_mut(which as u32) {
        // SAFETY: per-CPU value.
        unsafe { *v += 1 };
    }
}

#[inline(always)]
pub(crate) fn add64(p: *mut u64, v: u64) {
    // SAFETY: p points into a flow-table value that other CPUs update too.
    // The BPF target has no core::sync::atomic; this is its `lock xadd`.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, v) };
}

#[inline(always)]
fn add32(p: *mut u32, v: u32) {
    // SAFETY: as above.
    unsafe { atomic_xadd::<u32, u32, { AtomicOrdering::Relaxed }>(p, v) };
}

/// Counts the packet in this CPU's cache slot for the flow: plain adds, no
/// shared cache line, no hashing of the long key into the shared table.
#[inline(always)]
fn flow<P: Packet>(pkt: &P, cfg: &Cfg, key: &FlowKey, meta: &Meta, packets: u64, bytes: u64) {
    let now = pkt.now();
    let index = key.cache_hash() & cfg.flow_cache_mask();
    let Some(cached) = FLOW_CACHE.get_ptr_mut(index) else {
        return;
    };
    // SAFETY: per-CPU value: only this CPU writes it, and programs do not
    // nest on a CPU (all run with bottom halves disabled).
    let hit = unsafe { (*cached).used != 0 && mem::same_key(&raw const (*cached).key, key) };
    let (slot, index) = if hit {
        (cached, index)
    } else {
        let Some(i) = take(cached, index, cfg, key, now) else {
            return;
        };
        // Claim, flush and bypass leave different verifier states; looking
        // the slot up again by a forgotten index gives the long payload code
        // below one state to walk for all of them (and the hit another).
        let i = forget(i);
        let Some(slot) = FLOW_CACHE.get_ptr_mut(i) else {
            return;
        };
        (slot, i)
    };
    // SAFETY: slot is this CPU's slot holding `key`.
    let stats = unsafe { &raw mut (*slot).stats };
    unsafe {
        (*stats).packets += packets;
        (*stats).bytes += bytes;
        // Written only when it changes: the tick count moves once a tick.
        if (*stats).last_seen_ns != now {
            (*stats).last_seen_ns = now;
        }
        if meta.esp_seq != 0 {
            (*stats).esp_seq = meta.esp_seq;
        }
        if meta.tcp_flags & !(*stats).tcp_flags != 0 {
            (*stats).tcp_flags |= meta.tcp_flags;
        }
    }
    if key.class == Class::Vxlan as u8 && meta.payload_len > 0 {
        // HTTP only where it can be: a TCP payload of 8 bytes or more whose
        // first byte opens a method or a status line.
        let head = if meta.inner_tcp && meta.payload_len >= 8 {
            http_head(pkt, meta.payload_off, meta.payload_len)
        } else {
            None
        };
        // Every parser path arrives here with its own offset bounds; the
        // payload work is long, so it runs once for all of them.
        if head.is_some() || cfg.pattern_count() > 0 {
            if let Some(off) = widen(meta.payload_off) {
                payload(pkt, cfg, key, off, meta, head, stats);
            }
        }
    }
    if index == bypass_index(cfg) {
        flush(slot);
    }
}

/// The slot after the cache's last: where a packet is counted when its own
/// slot cannot be flushed (the agent is reading), to be flushed at once.
#[inline(always)]
fn bypass_index(cfg: &Cfg) -> u32 {
    cfg.flow_cache_mask() + 1
}

/// The slot index for a flow that missed in the cache slot `cached` (at
/// `index`): that slot, after the previous flow there was flushed into the
/// shared table; or, while the agent is reading, the bypass slot.
#[inline(always)]
fn take(cached: *mut CacheSlot, index: u32, cfg: &Cfg, key: &FlowKey, now: u64) -> Option<u32> {
    // SAFETY: per-CPU cache slot.
    if unsafe { (*cached).used } == 0 {
        claim(cached, cfg, key, now);
        return Some(index);
    }
    // The atomic add is a full barrier: the agent, which sets the reading
    // flag and then waits for begun == ended on every CPU, either sees this
    // collision as begun or this CPU sees the flag (datapath/read.rs).
    if let Some(begun) = STATS.get_ptr_mut(Stat::CacheCollisionsBegun as u32) {
        // SeqCst: the flag's load below must not move above the add.
        // SAFETY: per-CPU STATS value.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(begun, 1) };
    }
    let reading = matches!(CACHE_CTL.get(0), Some(&CACHE_CTL_READING));
    let out = if reading {
        // (The bypass slot is always there: the agent sizes the map.)
        FLOW_CACHE.get_ptr_mut(bypass_index(cfg)).map(|b| {
            stat(Stat::CacheBypassed);
            claim(b, cfg, key, now);
            bypass_index(cfg)
        })
    } else {
        flush(cached);
        stat(Stat::CacheFlushes);
        claim(cached, cfg, key, now);
        Some(index)
    };
    // Whatever happened: a begun collision that never ends would keep the
    // agent's reads waiting.
    stat(Stat::CacheCollisionsEnded);
    out
}

/// Makes `slot` hold `key` with zero counts, and makes sure the shared
/// table knows the flow (a new flow is created there and announced).
// By reference on purpose: by value, key and value would be copied onto the
// 512-byte stack and the map handed the copies.
#[allow(clippy::needless_borrows_for_generic_args)]
#[inline(always)]
fn claim(slot: *mut CacheSlot, cfg: &Cfg, key: &FlowKey, now: u64) {
    // SAFETY: per-CPU slot; `used` goes to 0 first and to 1 last, so a
    // reader copying the slot never takes half a key for a flow.
    unsafe {
        core::ptr::write_volatile(&raw mut (*slot).used, 0);
        mem::copy(&raw mut (*slot).key, key);
        mem::zero(&raw mut (*slot).stats);
        (*slot).stats.first_seen_ns = now;
        core::ptr::write_volatile(&raw mut (*slot).used, 1);
    }
    // The zeroed counts double as the new table entry's value.
    // SAFETY: slot is a live map value.
    match unsafe { FLOWS.insert(&(*slot).key, &(*slot).stats, BPF_NOEXIST as u64) } {
        Ok(()) => {
            stat(Stat::FlowsCreated);
            if key.class == Class::Vxlan as u8 && cfg.flags() & CONFIG_FLAG_NEW_FLOW_EVENTS != 0 {
                new_flow_event(cfg, key);
            }
        }
        Err(EEXIST) => {}
        // Counted; the slot keeps counting and the flush tries again.
        Err(_) => stat(Stat::FlowInsertFailed),
    }
}

/// Adds a slot's counts to the shared table (atomically: other CPUs flush
/// the same flow). The caller reclaims or forgets the slot.
#[allow(clippy::needless_borrows_for_generic_args)] // see `claim`
#[inline(always)]
fn flush(slot: *mut CacheSlot) {
    // SAFETY: slot is a live per-CPU map value holding a flow.
    unsafe {
        let s = &raw const (*slot).stats;
        let table = match FLOWS.get_ptr_mut(&(*slot).key) {
            Some(t) => t,
            // Evicted from the table since the claim: the slot's counts
            // become the entry.
            None => match FLOWS.insert(&(*slot).key, &*s, BPF_NOEXIST as u64) {
                Ok(()) => {
                    stat(Stat::FlowsReinserted);
                    return;
                }
                Err(EEXIST) => match FLOWS.get_ptr_mut(&(*slot).key) {
                    Some(t) => t,
                    None => {
                        stat(Stat::FlowInsertFailed);
                        return;
                    }
                },
                Err(_) => {
                    stat(Stat::FlowInsertFailed);
                    return;
                }
            },
        };
        add64(&raw mut (*table).packets, (*s).packets);
        add64(&raw mut (*table).bytes, (*s).bytes);
        if (*table).last_seen_ns < (*s).last_seen_ns {
            (*table).last_seen_ns = (*s).last_seen_ns;
        }
        if (*s).esp_seq != 0 {
            (*table).esp_seq = (*s).esp_seq;
        }
        if (*s).tcp_flags & !(*table).tcp_flags != 0 {
            (*table).tcp_flags |= (*s).tcp_flags;
        }
        for i in 0..HTTP_METHOD_SLOTS {
            let v = (*s).http_requests[i];
            if v != 0 {
                add32(&raw mut (*table).http_requests[i], v);
            }
        }
        for i in 0..HTTP_STATUS_CLASSES {
            let v = (*s).http_responses[i];
            if v != 0 {
                add32(&raw mut (*table).http_responses[i], v);
            }
        }
        for i in 0..MAX_PATTERNS {
            let v = (*s).pattern_hits[i];
            if v != 0 {
                add32(&raw mut (*table).pattern_hits[i], v);
            }
        }
    }
}

/// The payload's head (`payload_head`) when its first byte may open HTTP.
/// Where the payload is linear the first byte is tested in place and only
/// then is the head read. Where it is paged (TCP sends its payload in page
/// fragments, so nearly every TCP segment leaving a host is), the head is
/// copied out once and tested there: the copy, not its length, is what
/// costs (a helper call and the fragment's first cache line, about 110 ns
/// a data segment on the live TCP row), and one copy then serves HTTP too.
#[inline(always)]
fn http_head<P: Packet>(pkt: &P, off: usize, len: usize) -> Option<Head> {
    if let Some(h) = pkt.at::<1>(off) {
        if !http::may_open_http(h.u8(0)) {
            return None;
        }
        return payload_head(pkt, off, len);
    }
    let head = payload_head(pkt, off, len)?;
    http::may_open_http(head.0.to_ne_bytes()[0]).then_some(head)
}

/// HTTP (when there is a `head`: the first byte may open it) and user
/// patterns in an unencrypted inner payload.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn payload<P: Packet>(
    pkt: &P,
    cfg: &Cfg,
    key: &FlowKey,
    off: usize,
    meta: &Meta,
    head: Option<Head>,
    stats: *mut FlowStats,
) {
    let mut request = 0u8;
    if let Some((head, tail)) = head {
        if let Some(method) = http::request_method(head) {
            // The verifier needs to see the bound itself; LLVM would drop
            // a check it can prove from the enum's range.
            let slot = core::hint::black_box(method as usize);
            if slot < HTTP_METHOD_SLOTS {
                // SAFETY: slot < HTTP_METHOD_SLOTS; per-CPU slot.
                unsafe { (*stats).http_requests[slot] += 1 };
            }
            request = method as u8;
        } else if http::is_response(head) {
            let class = match tail {
                Some(t) => http::status_class(head, t),
                None => 0,
            };
            let class = core::hint::black_box(class);
            if class < HTTP_STATUS_CLASSES {
                // SAFETY: class < HTTP_STATUS_CLASSES; per-CPU slot.
                unsafe { (*stats).http_responses[class] += 1 };
            }
        }
    }
    let want_event = request != 0 && cfg.flags() & CONFIG_FLAG_HTTP_EVENTS != 0;
    if !want_event && cfg.pattern_count() == 0 {
        return;
    }
    let n = if meta.payload_len < PAYLOAD_SCAN_LEN {
        meta.payload_len
    } else {
        PAYLOAD_SCAN_LEN
    };
    if !want_event && matcher::words() == 1 && n > 0 && pkt.at::<1>(off + n - 1).is_some() {
        // Linear (XDP's always is), and the patterns fit one word: scanned
        // where it lies, without the helper's copy (14-23 ns less on the
        // 8-pattern row). With more words, this scan verified beside the
        // copied one took the verifier past its million instructions (the
        // fullest set did), so those are copied first, as events are.
        count_patterns(matcher::scan(&matcher::InPacket { pkt, off }, n), stats);
        return;
    }
    // One copy of the payload head serves the pattern scan and the event.
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU scratch buffer, PAYLOAD_SCAN_LEN bytes.
    let buf = unsafe { &mut (*scratch).payload };
    if !pkt.copy_into(off, buf, n) {
        return;
    }
    if want_event {
        http_event(cfg, key, buf, n, meta.payload_len, request);
    }
    if cfg.pattern_count() == 0 {
        return;
    }
    count_patterns(matcher::scan(buf, n), stats);
}

/// Counts each pattern whose bit `found` has.
#[inline(always)]
fn count_patterns(found: u32, stats: *mut FlowStats) {
    if found == 0 {
        return;
    }
    for i in 0..MAX_PATTERNS {
        if found & (1 << i) != 0 {
            // SAFETY: i < MAX_PATTERNS; per-CPU slot.
            unsafe { (*stats).pattern_hits[i] += 1 };
        }
    }
}

/// The first 8 payload bytes (one word, memory order), and the next 4 when
/// there are 12.
type Head = (u64, Option<[u8; 4]>);

/// The payload's `Head`: straight from the packet when it is linear, else
/// copied out (a payload in page fragments, as TCP sends it).
#[inline(always)]
fn payload_head<P: Packet>(pkt: &P, off: usize, len: usize) -> Option<Head> {
    if len >= 12 {
        if let Some(h) = pkt.at::<12>(off) {
            return Some((h.raw64(0), Some(h.be32(8).to_be_bytes())));
        }
    } else if let Some(h) = pkt.at::<8>(off) {
        return Some((h.raw64(0), None));
    }
    // Word-aligned and zeroed a word at a time: `[0u8; 12]` became a call
    // to a byte-loop memset (as `mem` explains).
    let mut words = [0u32; 3];
    // SAFETY: `words` is 12 bytes; a byte array may alias it.
    unsafe { mem::zero(&raw mut words) };
    let buf = unsafe { &mut *(words.as_mut_ptr() as *mut [u8; 12]) };
    let n = if len >= 12 { 12 } else { 8 };
    if !pkt.copy_into(off, buf, n) {
        return None;
    }
    let head = u64::from_ne_bytes([
        buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7],
    ]);
    let tail = (n == 12).then_some([buf[8], buf[9], buf[10], buf[11]]);
    Some((head, tail))
}

/// Token bucket per CPU: bursts pass, floods are cut and counted.
#[inline(always)]
fn take_token(cfg: &Cfg, now: u64) -> bool {
    let Some(rl) = RATE.get_ptr_mut(0) else {
        return false;
    };
    let burst = cfg.events_burst() as u64;
    // SAFETY: per-CPU value.
    unsafe {
        let elapsed = now.wrapping_sub((*rl).last_refill_ns);
        if elapsed >= 1_000_000_000 {
            (*rl).tokens = burst;
            (*rl).last_refill_ns = now;
        } else {
            let add = elapsed * cfg.events_per_sec() as u64 / 1_000_000_000;
            if add > 0 {
                let t = (*rl).tokens + add;
                (*rl).tokens = if t > burst { burst } else { t };
                (*rl).last_refill_ns = now;
            }
        }
        if (*rl).tokens == 0 {
            stat(Stat::EventsRateLimited);
            return false;
        }
        (*rl).tokens -= 1;
    }
    true
}

#[inline(always)]
fn reserve(
    cfg: &Cfg,
    kind: u8,
    key: &FlowKey,
) -> Option<aya_ebpf::maps::ring_buf::RingBufEntry<Event>> {
    // Events are rare: they read the clock themselves, in nanoseconds,
    // where flows keep the cheaper tick count.
    let now = coarse_now();
    if !take_token(cfg, now) {
        return None;
    }
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        stat(Stat::EventsRingFull);
        return None;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: e points at a reserved, writable Event.
    unsafe {
        (*e).timestamp_ns = now;
        mem::copy(&raw mut (*e).key, key);
        // kind, http_method, snippet_len, snippet_truncated and the padding
        // are one word each side: two stores instead of a memset call.
        let w = &raw mut (*e).kind as *mut u32;
        core::ptr::write_volatile(w, kind as u32);
        core::ptr::write_volatile(w.add(1), 0);
    }
    Some(entry)
}

#[inline(always)]
fn new_flow_event(cfg: &Cfg, key: &FlowKey) {
    if let Some(mut entry) = reserve(cfg, EVENT_NEW_FLOW, key) {
        // SAFETY: reserved Event.
        unsafe { mem::zero(&raw mut (*entry.as_mut_ptr()).snippet) };
        submit(entry);
    }
}

/// `head` holds the first `n` payload bytes; only the redacted prefix of
/// the request line is copied into the event.
#[inline(always)]
fn http_event(
    cfg: &Cfg,
    key: &FlowKey,
    head: &[u8; PAYLOAD_SCAN_LEN],
    n: usize,
    payload_len: usize,
    method: u8,
) {
    let Some(mut entry) = reserve(cfg, EVENT_HTTP_REQUEST, key) else {
        return;
    };
    let e = entry.as_mut_ptr();
    let (keep, cut) = http::redacted_len(
        head,
        if n < SNIPPET_LEN { n } else { SNIPPET_LEN },
        cfg.flags() & CONFIG_FLAG_FULL_PATHS != 0,
    );
    // SAFETY: reserved Event; keep <= SNIPPET_LEN bytes are copied from the
    // scratch buffer into the zeroed snippet, so nothing past the cut leaves
    // the kernel.
    unsafe {
        (*e).http_method = method;
        mem::zero(&raw mut (*e).snippet);
        let keep = core::hint::black_box(keep);
        if keep > 0 && keep <= SNIPPET_LEN {
            bpf_probe_read_kernel(
                (*e).snippet.as_mut_ptr() as *mut _,
                keep as u32,
                head.as_ptr() as *const _,
            );
        }
        (*e).snippet_len = keep as u8;
        (*e).snippet_truncated = (cut || keep == SNIPPET_LEN && payload_len > SNIPPET_LEN) as u8;
    }
    submit(entry);
}

/// Hands an event to the agent, waking it once each time the unread data
/// crosses a quarter of the ring. By default the kernel wakes the reader
/// on every event it submits while the reader has caught up, which it
/// nearly always has: an interrupt this CPU raises on itself (irq_work), in
/// a VM an exit to the hypervisor. Under keep-alive HTTP on this VM that
/// was 92% of the egress program's time (`perf`, 2026-12-03). A wakeup on
/// every event past the quarter came back whenever the agent was slow to
/// drain (HTTP on a connection each: three events a request); one at the
/// crossing is enough, and the agent drains the ring on a timer as well.
#[inline(always)]
fn submit(entry: aya_ebpf::maps::ring_buf::RingBufEntry<Event>) {
    // The ring counts this record (reserved, with its 8-byte header, its
    // length rounded up to 8) as unread already.
    const RECORD: u64 = (size_of::<Event>() as u64).div_ceil(8) * 8 + 8;
    let unread = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let flags = if (EVENTS_WAKEUP_BYTES..EVENTS_WAKEUP_BYTES + RECORD).contains(&unread) {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(flags as u64);
    stat(Stat::EventsSent);
}
