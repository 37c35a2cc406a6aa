//! The common overlay packet, parsed at fixed offsets after one bounds
//! check: VXLAN over IPv4 without options or VLAN tags, carrying IPv4
//! without options and TCP or UDP; and ESP straight over such IPv4. The
//! common packet that is not overlay (TCP, UDP, ICMP over such IPv4) is
//! let go here too.
//!
//! The general parser (`parse`) checks every header against the packet on
//! its own, because a header's offset depends on the ones before it (IP
//! options, tags, IPv6 extension headers), and the verifier forgets a
//! checked range once an offset is variable. For the one layout almost all
//! overlay traffic has, every offset is a constant: one check covers all of
//! them and each field is a single load.
//!
//! This parser only takes packets for which the general one gives the same
//! answer: whatever it does not recognise completely (a fragment, a length
//! that is not exactly what the headers add up to, an option, a tag, an
//! inner protocol other than TCP and UDP, a header that does not fit the
//! first `VXLAN_LEN` linear bytes) goes to the general parser, which
//! decides. The fuzz test checks the two agree on mutated packets
//! (`fast_and_general_parsers_agree`).
use core::ptr::{write_volatile, NonNull};

use netobs_common::{
    Class, Direction, FlowKey, ENCAP_NONE, ESP_IN_UDP_PORT, FAMILY_IPV4, FAMILY_NONE,
    FLOW_KEY_QUADS, GOSSIP_PORT,
};

use crate::{
    maps::{scratch_key, Cfg},
    packet::{Hdr, Packet},
    parse::{is_data_path_port, Meta},
};

/// Outer Ethernet, IPv4, UDP, VXLAN; inner Ethernet, IPv4 and the 20 bytes
/// of a TCP header without options (a UDP header is in them too).
const VXLAN_LEN: usize = 14 + 20 + 8 + 8 + 14 + 20 + 20;
/// Outer Ethernet, IPv4, ESP's SPI and sequence number.
const ESP_LEN: usize = 14 + 20 + 8;

/// Ethertype IPv4.
const ETH_IP: u16 = 0x0800;
/// Version 4, header length 5 words.
const IPV4_NO_OPTIONS: u8 = 0x45;
/// More-fragments and the fragment offset: zero in a whole datagram.
const FRAGMENT_BITS: u16 = 0x3fff;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ESP: u8 = 50;

// Offsets in the frame.
const OUTER_IP: usize = 14;
const OUTER_UDP: usize = OUTER_IP + 20;
const VXLAN: usize = OUTER_UDP + 8;
const INNER_ETH: usize = VXLAN + 8;
const INNER_IP: usize = INNER_ETH + 14;
const INNER_L4: usize = INNER_IP + 20;

/// `Some(class)` when the packet has the common layout (the key in
/// `maps::scratch_key`, `meta` and `meta.key` then filled as the general
/// parser fills them); `None` leaves them untouched for the general parser.
#[inline(always)]
pub fn classify<P: Packet>(
    pkt: &P,
    cfg: &Cfg,
    direction: Direction,
    meta: &mut Meta,
) -> Option<Class> {
    let h = pkt.at::<ESP_LEN>(0)?;
    // Every case below is IPv4 without options or tags.
    if h.be16(12) != ETH_IP || h.u8(OUTER_IP) != IPV4_NO_OPTIONS {
        return None;
    }
    match h.u8(OUTER_IP + 9) {
        IPPROTO_UDP => {
            if let Some(v) = pkt.at::<VXLAN_LEN>(0) {
                let head = || head(pkt, direction, Class::Vxlan);
                if let Some(class) = vxlan(v, pkt.len(), cfg, head, meta) {
                    return Some(class);
                }
            }
            udp_not_overlay(h, pkt.len(), cfg)
        }
        IPPROTO_ESP => esp(h, pkt.len(), || head(pkt, direction, Class::Esp), meta),
        _ => not_overlay(h, pkt.len()),
    }
}

/// UDP that is none of what the general parser looks for in UDP (a
/// data-path port, ESP in UDP on 4500, gossip on 7946, each of which it
/// decides), over sound IPv4, not a fragment, with a sound UDP length: not
/// overlay.
#[inline(always)]
fn udp_not_overlay(h: Hdr, len: usize, cfg: &Cfg) -> Option<Class> {
    if h.be16(OUTER_IP + 6) & FRAGMENT_BITS != 0 {
        return None;
    }
    let total = h.be16(OUTER_IP + 2) as usize;
    let ulen = h.be16(OUTER_UDP + 4) as usize;
    let (sport, dport) = (h.be16(OUTER_UDP), h.be16(OUTER_UDP + 2));
    if total < 20 + 8
        || OUTER_IP + total > len
        || ulen < 8
        || 20 + ulen > total
        || is_data_path_port(cfg, dport)
        || sport == ESP_IN_UDP_PORT
        || dport == ESP_IN_UDP_PORT
        || sport == GOSSIP_PORT
        || dport == GOSSIP_PORT
    {
        return None;
    }
    Some(Class::Other)
}

/// Any other transport (TCP, ICMP...): not overlay, once the IPv4 header
/// is sound, which is what the general parser checks before it looks at
/// the protocol.
#[inline(always)]
fn not_overlay(h: Hdr, len: usize) -> Option<Class> {
    // 0 is BIG TCP or GSO: the packet's own length is the truth.
    let total = h.be16(OUTER_IP + 2) as usize;
    (total == 0 || (total >= 20 && OUTER_IP + total <= len)).then_some(Class::Other)
}

/// The outer IPv4 header of an overlay packet: not a fragment, its total
/// length exactly the frame; `Some(total length)`.
#[inline(always)]
fn outer_ipv4(h: Hdr, len: usize) -> Option<usize> {
    if h.be16(OUTER_IP + 6) & FRAGMENT_BITS != 0 {
        return None;
    }
    // Exactly the frame: no Ethernet padding or trailer, no BIG TCP's 0.
    let total = h.be16(OUTER_IP + 2) as usize;
    (OUTER_IP + total == len).then_some(total)
}

/// The key's first word for `class`: interface, direction, class and
/// families (the inner one IPv4 for VXLAN, none for ESP).
#[inline(always)]
fn head<P: Packet>(pkt: &P, direction: Direction, class: Class) -> u64 {
    let inner = if class == Class::Vxlan {
        FAMILY_IPV4
    } else {
        FAMILY_NONE
    };
    FlowKey::head_quad(
        pkt.ifindex(),
        direction as u8,
        class as u8,
        FAMILY_IPV4,
        inner,
    )
}

#[inline(always)]
fn vxlan(h: Hdr, len: usize, cfg: &Cfg, head: impl Fn() -> u64, meta: &mut Meta) -> Option<Class> {
    let total = outer_ipv4(h, len)?;
    if !is_data_path_port(cfg, h.be16(OUTER_UDP + 2))
        || h.be16(OUTER_UDP + 4) as usize != total - 20
        || h.u8(VXLAN) & 0x08 == 0
        || h.be16(INNER_ETH + 12) != ETH_IP
        || h.u8(INNER_IP) != IPV4_NO_OPTIONS
        || h.be16(INNER_IP + 6) & FRAGMENT_BITS != 0
    {
        return None;
    }
    let inner_total = h.be16(INNER_IP + 2) as usize;
    let proto = h.u8(INNER_IP + 9);
    // The transport header must lie within the inner datagram, which must
    // lie within the frame (padding after it is allowed, as in general).
    let inner_end = INNER_IP + inner_total;
    if inner_end > len {
        return None;
    }
    let (payload_off, tcp) = match proto {
        IPPROTO_TCP => {
            let doff = ((h.u8(INNER_L4 + 12) >> 4) as usize) * 4;
            if inner_end < INNER_L4 + 20 || doff < 20 || INNER_L4 + doff > inner_end {
                return None;
            }
            (INNER_L4 + doff, true)
        }
        IPPROTO_UDP => {
            if inner_end < INNER_L4 + 8 {
                return None;
            }
            (INNER_L4 + 8, false)
        }
        _ => return None,
    };
    // The scratch space first: the loads below then need not be kept
    // across the lookup.
    let key = scratch_key()?.as_mut_ptr();
    meta.key = NonNull::new(key);
    write_key(
        key,
        FlowKey::ipv4_quads(
            head(),
            outer_addresses(h),
            FlowKey::mid_quad(h.be32(VXLAN + 4) >> 8, proto, ENCAP_NONE),
            [h.raw32(INNER_IP + 12), h.raw32(INNER_IP + 16)],
            FlowKey::ports_quad(h.be16(INNER_L4), h.be16(INNER_L4 + 2)),
        ),
    );
    if tcp {
        meta.inner_tcp = true;
        meta.tcp_off = INNER_L4;
        meta.tcp_flags = h.u8(INNER_L4 + 13);
    }
    meta.payload_off = payload_off;
    meta.payload_len = inner_end - payload_off;
    Some(Class::Vxlan)
}

#[inline(always)]
fn esp(h: Hdr, len: usize, head: impl Fn() -> u64, meta: &mut Meta) -> Option<Class> {
    outer_ipv4(h, len)?;
    let spi = h.be32(OUTER_UDP);
    // SPI 0 is malformed: the general parser says so.
    if spi == 0 {
        return None;
    }
    let key = scratch_key()?.as_mut_ptr();
    meta.key = NonNull::new(key);
    write_key(
        key,
        FlowKey::ipv4_quads(
            head(),
            outer_addresses(h),
            FlowKey::mid_quad(spi, 0, ENCAP_NONE),
            [0, 0],
            0,
        ),
    );
    meta.esp_seq = h.be32(OUTER_UDP + 4);
    Some(Class::Esp)
}

#[inline(always)]
fn outer_addresses(h: Hdr) -> [u32; 2] {
    [h.raw32(OUTER_IP + 12), h.raw32(OUTER_IP + 16)]
}

/// Writes the scratch key a whole 64-bit word at a time (see
/// `FlowKey::ipv4_quads`): a key zeroed and then written field by field
/// kept the hash's first read waiting for the stores to reach the cache,
/// the hottest load of the VXLAN test run by `perf`.
#[inline(always)]
fn write_key(key: *mut FlowKey, quads: [u64; FLOW_KEY_QUADS]) {
    let key = key as *mut u64;
    for (i, q) in quads.into_iter().enumerate() {
        // SAFETY: within the scratch key (FLOW_KEY_QUADS words, 8-aligned);
        // volatile keeps each a single 64-bit store.
        unsafe { write_volatile(key.add(i), q) };
    }
}
