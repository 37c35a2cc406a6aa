//! The one parser: eth -> vlan* -> ip4|ip6 -> udp -> vxlan -> inner eth ->
//! inner ip -> tcp|udp, or ip -> esp. Each step returns the next offset, or
//! `Err(class)` when the answer is already known (`Other` for traffic that is
//! not overlay, `Malformed` for headers that are truncated or inconsistent).
//! The common layout is taken first by `fast_parse`, at fixed offsets.
use core::ptr::NonNull;

use netobs_common::{
    Class, Direction, FlowKey, CONFIG_FLAG_NO_FAST_PATH, ENCAP_FRAGMENT, ENCAP_UDP,
    ESP_IN_UDP_PORT, FAMILY_IPV4, FAMILY_IPV6, GOSSIP_PORT, MAX_DATA_PATH_PORTS,
};

use crate::{
    fast_parse, gossip,
    maps::{scratch_key, Cfg},
    mem,
    packet::{Hdr, Packet},
    verifier::widen,
};

type Step<T> = Result<T, Class>;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ESP: u8 = 50;
const VXLAN_HLEN: usize = 8;
const VXLAN_FLAG_I: u8 = 0x08;
/// Extension headers skipped before giving up on finding the transport.
const MAX_IPV6_EXT: usize = 4;

/// What the flow and payload steps need beyond the key.
#[derive(Default)]
pub struct Meta {
    /// Offset of the inner transport payload (VXLAN only).
    pub payload_off: usize,
    /// Bytes of inner transport payload; 0 when there is none to look at.
    pub payload_len: usize,
    pub inner_tcp: bool,
    /// Offset of the inner TCP header (inner TCP only).
    pub tcp_off: usize,
    pub tcp_flags: u8,
    pub esp_seq: u32,
    /// This CPU's scratch key, as the parser looked it up to write it
    /// (`Vxlan` and `Esp` only): the flow step uses it without a second
    /// lookup, whose chain of loads was on the VXLAN packet's critical path.
    pub key: Option<NonNull<FlowKey>>,
}

struct L3 {
    /// The IP header, for its addresses.
    hdr: Hdr,
    v6: bool,
    proto: u8,
    l4: usize,
    end: usize,
    /// Part of a fragmented datagram: the transport length cannot be checked.
    fragmented: bool,
    /// A later fragment: no transport header at all.
    tail: bool,
}

/// The `N`-byte header at `off`, which must end by `end` (what the enclosing
/// header claims) and be in the packet.
#[inline(always)]
fn need<P: Packet, const N: usize>(pkt: &P, off: usize, end: usize) -> Step<Hdr> {
    if off + N > end {
        return Err(Class::Malformed);
    }
    pkt.at::<N>(off).ok_or(Class::Malformed)
}

/// Returns the class; for `Vxlan` and `Esp` the key in `meta.key`
/// is initialised with interface, direction, addresses, VNI or SPI and
/// inner tuple (and left untouched otherwise). UDP gossip is counted on the
/// way (see `gossip`); `direction` is a constant of each program, folded
/// away.
#[inline(always)]
pub fn classify<P: Packet>(pkt: &P, cfg: &Cfg, direction: Direction, meta: &mut Meta) -> Class {
    if cfg.flags() & CONFIG_FLAG_NO_FAST_PATH == 0 {
        if let Some(class) = fast_parse::classify(pkt, cfg, direction, meta) {
            return class;
        }
    }
    let class = match outer(pkt, cfg, direction, meta) {
        Ok(class) | Err(class) => class,
    };
    if class == Class::Vxlan || class == Class::Esp {
        if let Some(mut key) = meta.key {
            // SAFETY: `outer` initialised the key for these two classes.
            unsafe { key.as_mut() }.set_head(pkt.ifindex(), direction as u8);
        }
    }
    class
}

#[inline(always)]
fn outer<P: Packet>(pkt: &P, cfg: &Cfg, direction: Direction, meta: &mut Meta) -> Step<Class> {
    let len = pkt.len();
    let (ethertype, l3) = ethernet(pkt, 0, len, 2)?;
    let ip = match ethertype {
        ETH_P_IP => ipv4(pkt, l3, len)?,
        ETH_P_IPV6 => ipv6(pkt, l3, len)?,
        _ => return Err(Class::Other),
    };
    if ip.tail || (ip.proto != IPPROTO_ESP && ip.proto != IPPROTO_UDP) {
        return Err(Class::Other);
    }
    // Only overlay candidates get a key: the common, non-overlay packet
    // never pays for looking up the scratch space or zeroing 88 bytes.
    let key = scratch_key().ok_or(Class::Other)?;
    // SAFETY: zeroed, a FlowKey is valid (plain integers).
    let key = unsafe {
        mem::zero64(key.as_mut_ptr());
        key.assume_init_mut()
    };
    meta.key = Some(NonNull::from(&mut *key));
    key.outer_family = if ip.v6 { FAMILY_IPV6 } else { FAMILY_IPV4 };
    addresses(&ip, &mut key.outer_src, &mut key.outer_dst);
    if ip.proto == IPPROTO_ESP {
        let h = need::<_, 8>(pkt, ip.l4, ip.end)?;
        return esp(h, key, meta);
    }
    udp(pkt, cfg, direction, &ip, key, meta)
}

#[inline(always)]
fn addresses(ip: &L3, src: &mut [u8; 16], dst: &mut [u8; 16]) {
    if ip.v6 {
        ip.hdr.copy_words::<4>(8, src);
        ip.hdr.copy_words::<4>(24, dst);
    } else {
        ip.hdr.copy_words::<1>(12, src);
        ip.hdr.copy_words::<1>(16, dst);
    }
}

/// Ethernet and up to `max_tags` 802.1Q/802.1ad tags: (ethertype, L3 offset).
#[inline(always)]
fn ethernet<P: Packet>(pkt: &P, off: usize, end: usize, max_tags: usize) -> Step<(u16, usize)> {
    let h = need::<_, ETH_HLEN>(pkt, off, end)?;
    let mut ethertype = h.be16(12);
    let mut l3 = off + ETH_HLEN;
    for _ in 0..max_tags {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        let tag = need::<_, 4>(pkt, l3, end)?;
        ethertype = tag.be16(2);
        l3 += 4;
    }
    Ok((ethertype, l3))
}

#[inline(always)]
fn ipv4<P: Packet>(pkt: &P, off: usize, limit: usize) -> Step<L3> {
    let h = need::<_, 20>(pkt, off, limit)?;
    if h.u8(0) >> 4 != 4 {
        return Err(Class::Malformed);
    }
    let hlen = ((h.u8(0) & 0x0f) as usize) * 4;
    let total = h.be16(2) as usize;
    if hlen < 20 || off + hlen > limit {
        return Err(Class::Malformed);
    }
    // Total length 0 is BIG TCP / GSO: the packet's own length is the truth.
    let end = if total == 0 {
        limit
    } else {
        if total < hlen || off + total > limit {
            return Err(Class::Malformed);
        }
        off + total
    };
    let frag = h.be16(6);
    Ok(L3 {
        hdr: h,
        v6: false,
        proto: h.u8(9),
        l4: off + hlen,
        end,
        fragmented: frag & 0x3fff != 0,
        tail: frag & 0x1fff != 0,
    })
}

#[inline(always)]
fn ipv6<P: Packet>(pkt: &P, off: usize, limit: usize) -> Step<L3> {
    let h = need::<_, 40>(pkt, off, limit)?;
    if h.u8(0) >> 4 != 6 {
        return Err(Class::Malformed);
    }
    let payload = h.be16(4) as usize;
    // Payload length 0 is a jumbogram or BIG TCP: trust the packet length.
    let end = if payload == 0 {
        limit
    } else {
        if off + 40 + payload > limit {
            return Err(Class::Malformed);
        }
        off + 40 + payload
    };
    let mut next = h.u8(6);
    let mut l4 = off + 40;
    let mut fragmented = false;
    let mut tail = false;
    for _ in 0..MAX_IPV6_EXT {
        let ext_len = match next {
            // Hop-by-hop, routing, destination options: (len + 1) * 8.
            0 | 43 | 60 => {
                let e = need::<_, 2>(pkt, l4, end)?;
                next = e.u8(0);
                (e.u8(1) as usize + 1) * 8
            }
            // Fragment header: fixed 8 bytes.
            44 => {
                let e = need::<_, 4>(pkt, l4, end)?;
                next = e.u8(0);
                // Offset or more-fragments: an atomic fragment (offset 0,
                // M clear) is a whole datagram.
                let off_m = e.be16(2);
                fragmented = off_m & 0xfff9 != 0;
                tail = off_m >> 3 != 0;
                8
            }
            // Authentication header: (len + 2) * 4.
            51 => {
                let e = need::<_, 2>(pkt, l4, end)?;
                next = e.u8(0);
                (e.u8(1) as usize + 2) * 4
            }
            _ => break,
        };
        if l4 + ext_len > end {
            return Err(Class::Malformed);
        }
        l4 += ext_len;
    }
    if l4 != off + 40 {
        // Each chain of extension headers is its own verifier path.
        l4 = widen(l4).ok_or(Class::Malformed)?;
    }
    Ok(L3 {
        hdr: h,
        v6: true,
        proto: next,
        l4,
        end,
        fragmented,
        tail,
    })
}

#[inline(always)]
fn esp(h: Hdr, key: &mut FlowKey, meta: &mut Meta) -> Step<Class> {
    let spi = h.be32(0);
    // SPI 0 is reserved and never on the wire (RFC 4303 §2.1).
    if spi == 0 {
        return Err(Class::Malformed);
    }
    key.class = Class::Esp as u8;
    key.vni_or_spi = spi;
    meta.esp_seq = h.be32(4);
    Ok(Class::Esp)
}

#[inline(always)]
pub fn is_data_path_port(cfg: &Cfg, port: u16) -> bool {
    let mut i = 0;
    while i < MAX_DATA_PATH_PORTS {
        let p = cfg.port(i);
        if p != 0 && p == port {
            return true;
        }
        i += 1;
    }
    false
}

#[inline(always)]
fn udp<P: Packet>(
    pkt: &P,
    cfg: &Cfg,
    direction: Direction,
    ip: &L3,
    key: &mut FlowKey,
    meta: &mut Meta,
) -> Step<Class> {
    let h = need::<_, 8>(pkt, ip.l4, ip.end)?;
    let sport = h.be16(0);
    let dport = h.be16(2);
    let ulen = h.be16(4) as usize;
    // A first fragment's UDP length covers the whole datagram; length 0 is a
    // jumbogram: in both cases the IP end is the only bound.
    let end = if ulen == 0 || ip.fragmented {
        ip.end
    } else {
        if ulen < 8 || ip.l4 + ulen > ip.end {
            return Err(Class::Malformed);
        }
        ip.l4 + ulen
    };
    let payload = ip.l4 + 8;
    if is_data_path_port(cfg, dport) {
        if ip.fragmented {
            return vxlan_fragment(pkt, payload, end, key);
        }
        return vxlan(pkt, payload, end, key, meta);
    }
    if dport == ESP_IN_UDP_PORT || sport == ESP_IN_UDP_PORT {
        return esp_in_udp(pkt, payload, end, key, meta);
    }
    // Gossip is not overlay traffic (it stays `Other`), but whether it
    // flows both ways is the doctor's question: the decision is made here,
    // where the ports are already in registers; TCP never gets this far.
    if sport == GOSSIP_PORT || dport == GOSSIP_PORT {
        gossip::count(key, direction, pkt.segments(), pkt.len() as u64);
    }
    Err(Class::Other)
}

#[inline(always)]
fn esp_in_udp<P: Packet>(
    pkt: &P,
    off: usize,
    end: usize,
    key: &mut FlowKey,
    meta: &mut Meta,
) -> Step<Class> {
    let len = end - off;
    // NAT keepalive (RFC 3948 §2.3): a single 0xff byte.
    if len == 1 {
        let b = need::<_, 1>(pkt, off, end)?;
        return Err(if b.u8(0) == 0xff {
            Class::Other
        } else {
            Class::Malformed
        });
    }
    if len >= 4 {
        // A zero first word is the non-ESP marker: IKE, not data.
        let marker = need::<_, 4>(pkt, off, end)?;
        if marker.be32(0) == 0 {
            return Err(Class::Other);
        }
    }
    let h = need::<_, 8>(pkt, off, end)?;
    key.encap = ENCAP_UDP;
    esp(h, key, meta)
}

#[inline(always)]
fn vxlan<P: Packet>(
    pkt: &P,
    off: usize,
    end: usize,
    key: &mut FlowKey,
    meta: &mut Meta,
) -> Step<Class> {
    let h = need::<_, VXLAN_HLEN>(pkt, off, end)?;
    if h.u8(0) & VXLAN_FLAG_I == 0 {
        return Err(Class::Malformed);
    }
    key.class = Class::Vxlan as u8;
    key.vni_or_spi = h.be32(4) >> 8;
    inner(pkt, off + VXLAN_HLEN, end, key, meta)?;
    Ok(Class::Vxlan)
}

/// The first fragment of a VXLAN datagram the underlay split: its inner
/// frame is cut (its lengths overrun the fragment), so it is VXLAN keyed by
/// the outer ends and VNI only, marked as a fragment.
#[inline(always)]
fn vxlan_fragment<P: Packet>(pkt: &P, off: usize, end: usize, key: &mut FlowKey) -> Step<Class> {
    let h = need::<_, VXLAN_HLEN>(pkt, off, end)?;
    if h.u8(0) & VXLAN_FLAG_I == 0 {
        return Err(Class::Malformed);
    }
    key.class = Class::Vxlan as u8;
    key.vni_or_spi = h.be32(4) >> 8;
    key.encap = ENCAP_FRAGMENT;
    Ok(Class::Vxlan)
}

/// The encapsulated frame. ARP and other non-IP frames are still VXLAN; only
/// a frame whose own headers are broken makes the packet malformed.
#[inline(always)]
fn inner<P: Packet>(
    pkt: &P,
    off: usize,
    end: usize,
    key: &mut FlowKey,
    meta: &mut Meta,
) -> Step<()> {
    let (ethertype, l3) = ethernet(pkt, off, end, 1)?;
    let ip = match ethertype {
        ETH_P_IP => ipv4(pkt, l3, end)?,
        ETH_P_IPV6 => ipv6(pkt, l3, end)?,
        _ => return Ok(()),
    };
    key.inner_family = if ip.v6 { FAMILY_IPV6 } else { FAMILY_IPV4 };
    addresses(&ip, &mut key.inner_src, &mut key.inner_dst);
    key.inner_proto = ip.proto;
    if ip.tail {
        return Ok(());
    }
    match ip.proto {
        IPPROTO_TCP => {
            let h = need::<_, 20>(pkt, ip.l4, ip.end)?;
            let doff = ((h.u8(12) >> 4) as usize) * 4;
            if doff < 20 || ip.l4 + doff > ip.end {
                return Err(Class::Malformed);
            }
            key.inner_sport = h.be16(0);
            key.inner_dport = h.be16(2);
            meta.inner_tcp = true;
            meta.tcp_off = ip.l4;
            meta.tcp_flags = h.u8(13);
            meta.payload_off = ip.l4 + doff;
            meta.payload_len = ip.end - meta.payload_off;
        }
        IPPROTO_UDP => {
            let h = need::<_, 8>(pkt, ip.l4, ip.end)?;
            key.inner_sport = h.be16(0);
            key.inner_dport = h.be16(2);
            meta.payload_off = ip.l4 + 8;
            meta.payload_len = ip.end - meta.payload_off;
        }
        _ => {}
    }
    Ok(())
}
