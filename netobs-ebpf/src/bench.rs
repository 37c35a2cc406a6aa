//! The benchmarks' baselines: programs never attached by the agent, against
//! which `cargo xtask bench` measures netobs's own on the same hook and
//! packets. Each answers one question about what netobs's cost is made of.
//!
//! - empty: what the hook costs doing nothing (the `bpf_stats` accounting
//!   and the call itself).
//! - touch: reading the packet's first two cache lines, where netobs reads
//!   its headers; on a real interface the first reader pays for bringing
//!   the packet into cache, whatever it does with it.
//! - counter: one per-CPU counter of packets and bytes, nothing read from
//!   the packet: "the cost of a counter".
//! - naive: the classifier issue #10 compares netobs with: the outer
//!   headers copied out with the load-bytes helper, VXLAN (UDP to 4789) /
//!   ESP / other, and a per-CPU counter per class; no flow table, no
//!   inner headers, no payload.
use netobs_common::{Class, Counter, DEFAULT_DATA_PATH_PORT};

use crate::{maps::BENCH_COUNTS, mem, packet::Packet};

const ETH_P_IP: u16 = 0x0800;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ESP: u8 = 50;
/// Ethernet, IPv4 without options, UDP.
const OUTER: usize = 42;

#[inline(always)]
pub fn touch<P: Packet>(pkt: &P) {
    if let Some(h) = pkt.at::<65>(0) {
        core::hint::black_box(h.u8(0) ^ h.u8(64));
    } else if let Some(h) = pkt.at::<1>(0) {
        core::hint::black_box(h.u8(0));
    }
}

#[inline(always)]
pub fn counter(len: u64) {
    add(0, len);
}

#[inline(always)]
pub fn naive<P: Packet>(pkt: &P, len: u64) {
    // Zeroed a word at a time (a byte array's zeroing is a memset call).
    let mut words = [0u64; 6];
    // SAFETY: `words` is 48 bytes, 8-aligned.
    unsafe { mem::zero(&raw mut words) };
    // SAFETY: a byte array may alias it.
    let buf = unsafe { &mut *(words.as_mut_ptr() as *mut [u8; 48]) };
    let ipv4 = pkt.copy_into(0, buf, OUTER) && u16::from_be_bytes([buf[12], buf[13]]) == ETH_P_IP;
    let class = match buf[23] {
        IPPROTO_ESP if ipv4 => Class::Esp,
        IPPROTO_UDP if ipv4 && u16::from_be_bytes([buf[36], buf[37]]) == DEFAULT_DATA_PATH_PORT => {
            Class::Vxlan
        }
        _ => Class::Other,
    };
    add(class as u32, len);
}

#[inline(always)]
fn add(index: u32, bytes: u64) {
    if let Some(c) = BENCH_COUNTS.get_ptr_mut(index) {
        let c: *mut Counter = c;
        // SAFETY: per-CPU value, only this CPU writes it.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
}
