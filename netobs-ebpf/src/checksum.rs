//! Inner TCP checksums of SYNs arriving in VXLAN: broken checksum offload
//! (moby#41775) sends encapsulated segments whose inner checksum the NIC
//! never filled in, and the receiver drops them after decapsulation, where
//! nothing says why. Only SYNs without payload are summed (20-60 bytes;
//! each attempt and each retry), in a program of their own that the hot
//! programs tail-call once the packet is counted (`maps::RARE_TC`, `maps::RARE_XDP`): no other
//! packet carries this code. Only on ingress: egress checksums are
//! legitimately left for the NIC.
use aya_ebpf::helpers::generated::bpf_csum_diff;
use netobs_common::{
    ChecksumKey, FlowKey, CSUM_BAD, CSUM_OK, CSUM_PARTIAL, FAMILY_IPV4, IPPROTO_TCP_U8,
};

use crate::{
    maps::{CHECKSUMS, SCRATCH},
    packet::Packet,
    parse::Meta,
    tally,
    verifier::forget,
};
/// Where the TCP header and the pseudo-header are copied in the scratch
/// payload buffer (a SYN without payload never has its payload scanned).
const PSEUDO_AT: usize = 64;

#[inline(always)]
fn fold(sum: u64) -> u16 {
    let s = (sum & 0xffff_ffff) + (sum >> 32);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    ((s & 0xffff) + (s >> 16)) as u16
}

#[inline(always)]
pub fn check<P: Packet>(pkt: &P, key: &FlowKey, meta: &Meta) {
    if meta.payload_len != 0 {
        return;
    }
    let doff = meta.payload_off.wrapping_sub(meta.tcp_off);
    if !(20..=60).contains(&doff) {
        return;
    }
    let Some(s) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU scratch, one program run at a time on this CPU.
    let buf = unsafe { &mut (*s).payload };
    // The length as the verifier can bound it: LLVM folds `20..=60` into
    // one subtraction whose bounds the verifier does not carry back, so the
    // length is masked into 1..=64 behind a value LLVM cannot see through
    // (it is `doff` itself: 20..=60 was checked above).
    let doff = (forget(doff as u32 - 1) & 63) as usize + 1;
    let hdr = buf.as_mut_ptr() as *mut [u8; 64];
    // SAFETY: the buffer is 128 bytes.
    if !pkt.copy_into::<64>(meta.tcp_off, unsafe { &mut *hdr }, doff) {
        return;
    }
    // The pseudo-header (RFC 793 / RFC 8200 §8.1), built in the buffer.
    let p = unsafe { buf.as_mut_ptr().add(PSEUDO_AT) } as *mut u32;
    let src = key.inner_src.as_ptr() as *const u32;
    let dst = key.inner_dst.as_ptr() as *const u32;
    let len = doff as u32;
    // SAFETY: the addresses are 8-aligned in FlowKey; p has 64 bytes left.
    let pseudo_len = unsafe {
        if key.inner_family == FAMILY_IPV4 {
            *p = *src;
            *p.add(1) = *dst;
            *p.add(2) = (u32::from(IPPROTO_TCP_U8) << 16 | len).to_be();
            12
        } else {
            for i in 0..4 {
                *p.add(i) = *src.add(i);
                *p.add(4 + i) = *dst.add(i);
            }
            *p.add(8) = len.to_be();
            *p.add(9) = u32::from(IPPROTO_TCP_U8).to_be();
            40
        }
    };
    // SAFETY: both ranges are in the scratch buffer, sizes multiples of 4.
    let (h, ps) = unsafe {
        (
            bpf_csum_diff(core::ptr::null_mut(), 0, hdr as *mut u32, len, 0),
            bpf_csum_diff(core::ptr::null_mut(), 0, p, pseudo_len, 0),
        )
    };
    if h < 0 || ps < 0 {
        return;
    }
    let verdict = if fold(h as u64 + ps as u64) == 0xffff {
        CSUM_OK
    } else {
        // A checksum nobody filled in holds the pseudo-header's sum: what
        // the stack leaves for the NIC (normal between namespaces and VMs
        // on one host, broken offload on a wire).
        // SAFETY: bytes 16..18 of the copied header.
        let field = unsafe { (buf.as_ptr().add(16) as *const u16).read_unaligned() };
        if field == fold(ps as u64) {
            CSUM_PARTIAL
        } else {
            CSUM_BAD
        }
    };
    count(key, pkt.ifindex(), verdict);
}

#[inline(always)]
fn count(flow: &FlowKey, ifindex: u32, verdict: u8) {
    let src = flow.outer_src.as_ptr() as *const u32;
    // SAFETY: 8-aligned addresses in FlowKey; ChecksumKey is these six
    // words (asserted in common).
    let words: [u32; 6] = unsafe {
        [
            *src,
            *src.add(1),
            *src.add(2),
            *src.add(3),
            ifindex,
            u32::from(flow.outer_family) | u32::from(verdict) << 8,
        ]
    };
    // SAFETY: as above.
    let k = unsafe { &*(words.as_ptr() as *const ChecksumKey) };
    tally::add(&CHECKSUMS, k, 1u64);
}
