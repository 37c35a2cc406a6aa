//! What a classified packet leaves behind: a per-CPU counter always; for
//! overlay packets a flow-table entry; for rare moments an event.
use core::intrinsics::{atomic_xadd, AtomicOrdering};

use core::mem::MaybeUninit;

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::generated::bpf_probe_read_kernel};
use netobs_common::{
    counter_index, Class, Config, Direction, Event, FlowKey, FlowStats, Stat,
    CONFIG_FLAG_FULL_PATHS, CONFIG_FLAG_HTTP_EVENTS, CONFIG_FLAG_NEW_FLOW_EVENTS,
    EVENT_HTTP_REQUEST, EVENT_NEW_FLOW, HTTP_METHOD_SLOTS, HTTP_STATUS_CLASSES, MAX_IFACES,
    MAX_PATTERNS, PAYLOAD_SCAN_LEN, SNIPPET_LEN,
};

use crate::{
    http,
    maps::{CONFIG, COUNTERS, EVENTS, FLOWS, IFACE_SLOTS, RATE, SCRATCH, STATS},
    matcher, mem,
    packet::Packet,
    parse::{self, Meta},
    verifier::widen,
};

/// `-EEXIST` from a `BPF_NOEXIST` insert.
const EEXIST: i32 = -17;

#[inline(always)]
pub fn observe<P: Packet>(pkt: &P, direction: Direction) -> Class {
    let cfg = CONFIG.load();
    let mut key = MaybeUninit::<FlowKey>::uninit();
    let mut meta = Meta::default();
    let class = parse::classify(pkt, &cfg, &mut key, &mut meta);
    let packets = pkt.segments();
    let bytes = pkt.len() as u64;
    let ifindex = pkt.ifindex();
    count(ifindex, direction, class, packets, bytes);
    if class == Class::Vxlan || class == Class::Esp {
        // SAFETY: classify initialises the key for these two classes.
        let key = unsafe { key.assume_init_mut() };
        key.ifindex = ifindex;
        key.direction = direction as u8;
        flow(pkt, &cfg, key, &meta, packets, bytes);
    }
    class
}

#[inline(always)]
fn count(ifindex: u32, direction: Direction, class: Class, packets: u64, bytes: u64) {
    let slot = match IFACE_SLOTS.get(ifindex) {
        Some(&s) if (s as usize) < MAX_IFACES => s,
        _ => 0,
    };
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
fn add64(p: *mut u64, v: u64) {
    // SAFETY: p points into a flow-table value that other CPUs update too.
    // The BPF target has no core::sync::atomic; this is its `lock xadd`.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, v) };
}

#[inline(always)]
fn add32(p: *mut u32, v: u32) {
    // SAFETY: as above.
    unsafe { atomic_xadd::<u32, u32, { AtomicOrdering::Relaxed }>(p, v) };
}

#[inline(always)]
fn flow<P: Packet>(pkt: &P, cfg: &Config, key: &FlowKey, meta: &Meta, packets: u64, bytes: u64) {
    let now = pkt.now();
    let stats = match FLOWS.get_ptr_mut(key) {
        Some(s) => s,
        None => {
            let mut fresh = MaybeUninit::<FlowStats>::uninit();
            // SAFETY: zeroed FlowStats is valid; first_seen set after.
            let fresh = unsafe {
                mem::zero(fresh.as_mut_ptr());
                fresh.assume_init_mut()
            };
            fresh.first_seen_ns = now;
            match FLOWS.insert(key, fresh, BPF_NOEXIST as u64) {
                Ok(()) => {
                    stat(Stat::FlowsCreated);
                    if key.class == Class::Vxlan as u8
                        && cfg.flags & CONFIG_FLAG_NEW_FLOW_EVENTS != 0
                    {
                        new_flow_event(cfg, key, now);
                    }
                }
                // Another CPU inserted it first: fall through to the update.
                Err(EEXIST) => {}
                Err(_) => {
                    stat(Stat::FlowInsertFailed);
                    return;
                }
            }
            match FLOWS.get_ptr_mut(key) {
                Some(s) => s,
                None => {
                    stat(Stat::FlowInsertFailed);
                    return;
                }
            }
        }
    };
    // SAFETY: stats points at a live flow-table value; counters are updated
    // atomically, the rest are last-writer-wins hints.
    unsafe {
        add64(&raw mut (*stats).packets, packets);
        add64(&raw mut (*stats).bytes, bytes);
        (*stats).last_seen_ns = now;
        if meta.esp_seq != 0 {
            (*stats).esp_seq = meta.esp_seq;
        }
        if meta.tcp_flags & !(*stats).tcp_flags != 0 {
            (*stats).tcp_flags |= meta.tcp_flags;
        }
    }
    if key.class == Class::Vxlan as u8 && meta.payload_len > 0 {
        // Every parser path arrives here with its own offset bounds; the
        // payload work is long, so it runs once for all of them.
        if let Some(off) = widen(meta.payload_off) {
            payload(pkt, cfg, key, off, meta, stats, now);
        }
    }
}

/// HTTP and user patterns in an unencrypted inner payload.
#[inline(always)]
fn payload<P: Packet>(
    pkt: &P,
    cfg: &Config,
    key: &FlowKey,
    off: usize,
    meta: &Meta,
    stats: *mut FlowStats,
    now: u64,
) {
    let mut request = 0u8;
    if meta.inner_tcp && meta.payload_len >= 8 {
        if let Some((head, tail)) = payload_head(pkt, off, meta.payload_len) {
            if let Some(method) = http::request_method(&head) {
                // The verifier needs to see the bound itself; LLVM would drop
                // a check it can prove from the enum's range.
                let slot = core::hint::black_box(method as usize);
                if slot < HTTP_METHOD_SLOTS {
                    // SAFETY: slot < HTTP_METHOD_SLOTS.
                    add32(unsafe { &raw mut (*stats).http_requests[slot] }, 1);
                }
                request = method as u8;
            } else if http::is_response(&head) {
                let class = match tail {
                    Some(t) => http::status_class(&head, t),
                    None => 0,
                };
                let class = core::hint::black_box(class);
                if class < HTTP_STATUS_CLASSES {
                    // SAFETY: class < HTTP_STATUS_CLASSES.
                    add32(unsafe { &raw mut (*stats).http_responses[class] }, 1);
                }
            }
        }
    }
    let want_event = request != 0 && cfg.flags & CONFIG_FLAG_HTTP_EVENTS != 0;
    if !want_event && cfg.pattern_count == 0 {
        return;
    }
    // One copy of the payload head serves the pattern scan and the event.
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let n = if meta.payload_len < PAYLOAD_SCAN_LEN {
        meta.payload_len
    } else {
        PAYLOAD_SCAN_LEN
    };
    // SAFETY: per-CPU scratch buffer, PAYLOAD_SCAN_LEN bytes.
    let buf = unsafe { &mut (*scratch).payload };
    if !pkt.copy_into(off, buf, n) {
        return;
    }
    if want_event {
        http_event(cfg, key, buf, n, meta.payload_len, request, now);
    }
    if cfg.pattern_count == 0 {
        return;
    }
    let found = matcher::scan(buf, n);
    if found == 0 {
        return;
    }
    for i in 0..MAX_PATTERNS {
        if found & (1 << i) != 0 {
            // SAFETY: i < MAX_PATTERNS.
            add32(unsafe { &raw mut (*stats).pattern_hits[i] }, 1);
        }
    }
}

/// The first 8 payload bytes, and the next 4 when there are 12: straight
/// from the packet when they are linear, else copied out (a payload in page
/// fragments, as TCP sends it).
#[inline(always)]
fn payload_head<P: Packet>(pkt: &P, off: usize, len: usize) -> Option<([u8; 8], Option<[u8; 4]>)> {
    if len >= 12 {
        if let Some(h) = pkt.at::<12>(off) {
            return Some((h.bytes8(0), Some(h.be32(8).to_be_bytes())));
        }
    } else if let Some(h) = pkt.at::<8>(off) {
        return Some((h.bytes8(0), None));
    }
    let mut buf = [0u8; 12];
    let n = if len >= 12 { 12 } else { 8 };
    if !pkt.copy_into(off, &mut buf, n) {
        return None;
    }
    let head = [
        buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7],
    ];
    let tail = (n == 12).then_some([buf[8], buf[9], buf[10], buf[11]]);
    Some((head, tail))
}

/// Token bucket per CPU: bursts pass, floods are cut and counted.
#[inline(always)]
fn take_token(cfg: &Config, now: u64) -> bool {
    let Some(rl) = RATE.get_ptr_mut(0) else {
        return false;
    };
    let burst = cfg.events_burst as u64;
    // SAFETY: per-CPU value.
    unsafe {
        let elapsed = now.wrapping_sub((*rl).last_refill_ns);
        if elapsed >= 1_000_000_000 {
            (*rl).tokens = burst;
            (*rl).last_refill_ns = now;
        } else {
            let add = elapsed * cfg.events_per_sec as u64 / 1_000_000_000;
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
    cfg: &Config,
    kind: u8,
    key: &FlowKey,
    now: u64,
) -> Option<aya_ebpf::maps::ring_buf::RingBufEntry<Event>> {
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
fn new_flow_event(cfg: &Config, key: &FlowKey, now: u64) {
    if let Some(mut entry) = reserve(cfg, EVENT_NEW_FLOW, key, now) {
        // SAFETY: reserved Event.
        unsafe { mem::zero(&raw mut (*entry.as_mut_ptr()).snippet) };
        entry.submit(0);
        stat(Stat::EventsSent);
    }
}

/// `head` holds the first `n` payload bytes; only the redacted prefix of
/// the request line is copied into the event.
#[inline(always)]
fn http_event(
    cfg: &Config,
    key: &FlowKey,
    head: &[u8; PAYLOAD_SCAN_LEN],
    n: usize,
    payload_len: usize,
    method: u8,
    now: u64,
) {
    let Some(mut entry) = reserve(cfg, EVENT_HTTP_REQUEST, key, now) else {
        return;
    };
    let e = entry.as_mut_ptr();
    let (keep, cut) = http::redacted_len(
        head,
        if n < SNIPPET_LEN { n } else { SNIPPET_LEN },
        cfg.flags & CONFIG_FLAG_FULL_PATHS != 0,
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
    entry.submit(0);
    stat(Stat::EventsSent);
}
