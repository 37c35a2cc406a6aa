//! The IPsec states and policies the kernel holds, dumped over NETLINK_XFRM
//! (what `ip xfrm state` and `ip xfrm policy` show): for an encrypted overlay
//! network Docker must have programmed, for every peer node, a policy that
//! sends the data-path port through ESP and states (SAs) both ways.
use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use serde::Serialize;

use netlink_packet_core::{NetlinkDeserializable, NetlinkHeader, NetlinkSerializable};

use crate::netlink::{Netlink, NETLINK_XFRM, NLM_F_DUMP};

const XFRM_MSG_NEWSA: u16 = 0x10;
const XFRM_MSG_GETSA: u16 = 0x12;
const XFRM_MSG_NEWPOLICY: u16 = 0x13;
const XFRM_MSG_GETPOLICY: u16 = 0x15;

// Offsets in struct xfrm_usersa_info and xfrm_userpolicy_info
// (uapi/linux/xfrm.h); both start with struct xfrm_selector.
const SEL_DADDR: usize = 0;
const SEL_SADDR: usize = 16;
const SEL_DPORT: usize = 32;
const SEL_DPORT_MASK: usize = 34;
const SEL_FAMILY: usize = 40;
const SEL_PREFIXLEN_D: usize = 42;
const SEL_PROTO: usize = 44;
const SA_ID_DADDR: usize = 56;
const SA_ID_SPI: usize = 72;
const SA_ID_PROTO: usize = 76;
const SA_SADDR: usize = 80;
// struct xfrm_lifetime_cur follows the configured lifetimes: bytes,
// packets, add_time, use_time (u64 each).
const SA_CURLFT_ADD_TIME: usize = 176;
const SA_REQID: usize = 208;
const SA_FAMILY: usize = 212;
const SA_LEN: usize = 224;
const POLICY_DIR: usize = 160;
const POLICY_ACTION: usize = 161;
const POLICY_LEN: usize = 168;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// The reqid Docker's overlay driver gives its SAs (and the mark of its
/// policies): SAs of other IPsec setups on the node are not Docker's.
pub const DOCKER_REQID: u32 = 0xD0_C4E3;
pub const DIR_OUT: u8 = 1;
pub const ACTION_ALLOW: u8 = 0;

/// An IPsec security association.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct State {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub spi: u32,
    /// 50 for ESP.
    pub proto: u8,
    pub reqid: u32,
    /// When the kernel installed it (Unix seconds): Docker installs a new
    /// SA at every key rotation, so the newest one per peer shows whether
    /// rotation still happens.
    pub add_time: u64,
}

impl State {
    /// An SA Docker's overlay driver installed (not a larval ACQUIRE state,
    /// SPI 0, nor another IPsec setup's).
    pub fn is_dockers(&self) -> bool {
        self.reqid == DOCKER_REQID && self.spi != 0 && self.proto == 50
    }
}

/// An IPsec policy: traffic its selector matches goes through IPsec.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Policy {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Prefix length of the destination selector.
    pub dst_prefix: u8,
    /// Selector protocol (17: UDP; 0: any) and destination port (Docker's:
    /// the data-path port); a mask of 0 matches any port.
    pub proto: u8,
    pub dport: u16,
    pub dport_mask: u16,
    /// 0 in, 1 out, 2 forward.
    pub dir: u8,
    /// 0 allow (through IPsec), 1 block.
    pub action: u8,
}

impl Policy {
    /// Sends UDP to `ip`:`port` out through IPsec.
    pub fn protects(&self, ip: IpAddr, port: u16) -> bool {
        self.dir == DIR_OUT
            && self.action == ACTION_ALLOW
            && self.reaches(ip)
            && (self.proto == 0 || self.proto == 17)
            && (self.dport_mask == 0 || self.dport == port)
    }

    /// An outbound policy whose destination selector covers `ip`.
    pub fn reaches(&self, ip: IpAddr) -> bool {
        self.dir == DIR_OUT && in_prefix(ip, self.dst, self.dst_prefix)
    }
}

fn in_prefix(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip.to_canonical(), net.to_canonical()) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let len = u32::from(len.min(32));
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let len = u32::from(len.min(128));
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Xfrm {
    pub states: Vec<State>,
    pub policies: Vec<Policy>,
}

fn addr(family: u16, b: &[u8]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        AF_INET6 => {
            let a: [u8; 16] = b.get(..16)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(a)))
        }
        _ => None,
    }
}

fn u16_ne(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u16_be(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn u32_ne(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The fixed part of an XFRM_MSG_NEWSA message.
fn state(body: &[u8]) -> Option<State> {
    if body.len() < SA_LEN {
        return None;
    }
    let family = u16_ne(body, SA_FAMILY);
    let mut t = [0u8; 8];
    t.copy_from_slice(&body[SA_CURLFT_ADD_TIME..SA_CURLFT_ADD_TIME + 8]);
    Some(State {
        src: addr(family, &body[SA_SADDR..SA_SADDR + 16])?,
        dst: addr(family, &body[SA_ID_DADDR..SA_ID_DADDR + 16])?,
        spi: u32::from_be_bytes([
            body[SA_ID_SPI],
            body[SA_ID_SPI + 1],
            body[SA_ID_SPI + 2],
            body[SA_ID_SPI + 3],
        ]),
        proto: body[SA_ID_PROTO],
        reqid: u32_ne(body, SA_REQID),
        add_time: u64::from_ne_bytes(t),
    })
}

/// The fixed part of an XFRM_MSG_NEWPOLICY message.
fn policy(body: &[u8]) -> Option<Policy> {
    if body.len() < POLICY_LEN {
        return None;
    }
    let family = u16_ne(body, SEL_FAMILY);
    Some(Policy {
        src: addr(family, &body[SEL_SADDR..SEL_SADDR + 16])?,
        dst: addr(family, &body[SEL_DADDR..SEL_DADDR + 16])?,
        dst_prefix: body[SEL_PREFIXLEN_D],
        proto: body[SEL_PROTO],
        dport: u16_be(body, SEL_DPORT),
        dport_mask: u16_be(body, SEL_DPORT_MASK),
        dir: body[POLICY_DIR],
        action: body[POLICY_ACTION],
    })
}

/// The kernel's IPsec states and policies. Needs CAP_NET_ADMIN.
pub fn read() -> io::Result<Xfrm> {
    // A dump the kernel's tables changed under is asked for again.
    let mut tries = 0;
    loop {
        match read_once() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted && tries < 3 => tries += 1,
            r => return r,
        }
    }
}

/// An XFRM message as netlink carries it: its type and its body, which
/// `state` and `policy` decode.
#[derive(Debug)]
struct Raw {
    kind: u16,
    body: Vec<u8>,
}

impl NetlinkSerializable for Raw {
    fn message_type(&self) -> u16 {
        self.kind
    }

    fn buffer_len(&self) -> usize {
        self.body.len()
    }

    fn serialize(&self, buffer: &mut [u8]) {
        buffer.copy_from_slice(&self.body);
    }
}

impl NetlinkDeserializable for Raw {
    type Error = std::convert::Infallible;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Raw, Self::Error> {
        Ok(Raw {
            kind: header.message_type,
            body: payload.to_vec(),
        })
    }
}

/// The bodies of every message of type `want` a dump request `kind` gives.
fn dump(nl: &mut Netlink, kind: u16, want: u16) -> io::Result<Vec<Vec<u8>>> {
    let request = Raw {
        kind,
        body: Vec::new(),
    };
    Ok(nl
        .request(request, NLM_F_DUMP)?
        .into_iter()
        .filter(|m| m.kind == want)
        .map(|m| m.body)
        .collect())
}

fn read_once() -> io::Result<Xfrm> {
    let mut nl = Netlink::open(NETLINK_XFRM)?;
    let states = dump(&mut nl, XFRM_MSG_GETSA, XFRM_MSG_NEWSA)?
        .iter()
        .filter_map(|b| state(b))
        .collect();
    let policies = dump(&mut nl, XFRM_MSG_GETPOLICY, XFRM_MSG_NEWPOLICY)?
        .iter()
        .filter_map(|b| policy(b))
        .collect();
    Ok(Xfrm { states, policies })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An xfrm_usersa_info as the kernel sends it, laid out field by field
    /// from uapi/linux/xfrm.h (not from the offsets above).
    fn usersa_info() -> Vec<u8> {
        let mut b = Vec::new();
        // struct xfrm_selector (56 bytes): daddr, saddr, dport, dport_mask,
        // sport, sport_mask, family, prefixlen_d, prefixlen_s, proto, pad,
        // ifindex, user.
        b.extend([10, 0, 0, 2]);
        b.extend([0; 12]);
        b.extend([10, 0, 0, 1]);
        b.extend([0; 12]);
        b.extend([0u8; 8]);
        b.extend(2u16.to_ne_bytes());
        b.extend([32, 32, 17, 0, 0, 0]);
        b.extend([0u8; 8]);
        assert_eq!(b.len(), 56);
        // struct xfrm_id: daddr, spi (network order), proto, pad.
        b.extend([10, 0, 0, 2]);
        b.extend([0; 12]);
        b.extend(0x1234_5678u32.to_be_bytes());
        b.extend([50, 0, 0, 0]);
        // saddr
        b.extend([10, 0, 0, 1]);
        b.extend([0; 12]);
        // struct xfrm_lifetime_cfg: 8 u64.
        b.extend([0u8; 64]);
        // struct xfrm_lifetime_cur: bytes, packets, add_time, use_time.
        b.extend(1000u64.to_ne_bytes());
        b.extend(10u64.to_ne_bytes());
        b.extend(1_700_000_000u64.to_ne_bytes());
        b.extend(0u64.to_ne_bytes());
        // struct xfrm_stats: replay_window, replay, integrity_failed.
        b.extend([0u8; 12]);
        // seq, reqid, family, mode, replay_window, flags, pad.
        b.extend(0u32.to_ne_bytes());
        b.extend(DOCKER_REQID.to_ne_bytes());
        b.extend(2u16.to_ne_bytes());
        b.extend([0, 32, 0]);
        b.extend([0u8; 7]);
        assert_eq!(b.len(), 224);
        b
    }

    #[test]
    fn an_sa_is_read_field_by_field() {
        let s = state(&usersa_info()).expect("state");
        assert_eq!(s.src, IpAddr::from([10, 0, 0, 1]));
        assert_eq!(s.dst, IpAddr::from([10, 0, 0, 2]));
        assert_eq!((s.spi, s.proto, s.reqid), (0x1234_5678, 50, DOCKER_REQID));
        assert_eq!(s.add_time, 1_700_000_000);
        assert!(s.is_dockers());
        assert!(state(&usersa_info()[..223]).is_none(), "short: ignored");
    }

    #[test]
    fn a_policy_protects_what_its_selector_covers() {
        let mut p = Policy {
            src: IpAddr::from([10, 0, 0, 1]),
            dst: IpAddr::from([10, 0, 0, 2]),
            dst_prefix: 32,
            proto: 17,
            dport: 4789,
            dport_mask: 0xffff,
            dir: DIR_OUT,
            action: ACTION_ALLOW,
        };
        let peer = IpAddr::from([10, 0, 0, 2]);
        assert!(p.protects(peer, 4789));
        assert!(!p.protects(peer, 7789));
        assert!(!p.protects(IpAddr::from([10, 0, 0, 3]), 4789));
        p.dport_mask = 0;
        assert!(p.protects(peer, 7789), "any port");
        p.dst = IpAddr::from([10, 0, 0, 0]);
        p.dst_prefix = 24;
        assert!(p.protects(IpAddr::from([10, 0, 0, 3]), 4789), "a subnet");
        p.action = 1;
        assert!(!p.protects(peer, 4789), "a block policy protects nothing");
    }
}
