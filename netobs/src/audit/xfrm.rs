//! The IPsec states and policies the kernel holds, dumped over NETLINK_XFRM
//! (what `ip xfrm state` and `ip xfrm policy` show): for an encrypted overlay
//! network Docker must have programmed, for every peer node, a policy that
//! sends the data-path port through ESP and states (SAs) both ways.
use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use serde::Serialize;

use crate::netlink::{Socket, NETLINK_XFRM, NLM_F_DUMP};

const XFRM_MSG_NEWSA: u16 = 0x10;
const XFRM_MSG_GETSA: u16 = 0x12;
const XFRM_MSG_NEWPOLICY: u16 = 0x13;
const XFRM_MSG_GETPOLICY: u16 = 0x15;

// Offsets in struct xfrm_usersa_info and xfrm_userpolicy_info
// (uapi/linux/xfrm.h); both start with struct xfrm_selector.
const SEL_DADDR: usize = 0;
const SEL_SADDR: usize = 16;
const SEL_DPORT: usize = 32;
const SEL_FAMILY: usize = 40;
const SEL_PROTO: usize = 44;
const SA_ID_DADDR: usize = 56;
const SA_ID_SPI: usize = 72;
const SA_ID_PROTO: usize = 76;
const SA_SADDR: usize = 80;
// struct xfrm_lifetime_cur follows the configured lifetimes: bytes,
// packets, add_time, use_time (u64 each).
const SA_CURLFT_ADD_TIME: usize = 176;
const SA_FAMILY: usize = 212;
const SA_LEN: usize = 224;
const POLICY_DIR: usize = 160;
const POLICY_LEN: usize = 168;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// An IPsec security association.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct State {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub spi: u32,
    /// 50 for ESP.
    pub proto: u8,
    /// When the kernel installed it (Unix seconds): Docker installs a new
    /// SA at every key rotation, so the newest one per peer shows whether
    /// rotation still happens.
    pub add_time: u64,
}

/// An IPsec policy: traffic its selector matches goes through IPsec.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Policy {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Selector protocol (17: UDP) and destination port (Docker's: the
    /// data-path port), 0 for any.
    pub proto: u8,
    pub dport: u16,
    /// 0 in, 1 out, 2 forward.
    pub dir: u8,
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

fn state(body: &[u8]) -> Option<State> {
    if body.len() < SA_LEN {
        return None;
    }
    let family = u16_ne(body, SA_FAMILY);
    Some(State {
        src: addr(family, &body[SA_SADDR..SA_SADDR + 16])?,
        dst: addr(family, &body[SA_ID_DADDR..SA_ID_DADDR + 16])?,
        spi: u32::from_be_bytes(body[SA_ID_SPI..SA_ID_SPI + 4].try_into().ok()?),
        proto: body[SA_ID_PROTO],
        add_time: u64::from_ne_bytes(
            body[SA_CURLFT_ADD_TIME..SA_CURLFT_ADD_TIME + 8]
                .try_into()
                .ok()?,
        ),
    })
}

fn policy(body: &[u8]) -> Option<Policy> {
    if body.len() < POLICY_LEN {
        return None;
    }
    let family = u16_ne(body, SEL_FAMILY);
    Some(Policy {
        src: addr(family, &body[SEL_SADDR..SEL_SADDR + 16])?,
        dst: addr(family, &body[SEL_DADDR..SEL_DADDR + 16])?,
        proto: body[SEL_PROTO],
        dport: u16::from_be_bytes([body[SEL_DPORT], body[SEL_DPORT + 1]]),
        dir: body[POLICY_DIR],
    })
}

/// The kernel's IPsec states and policies. Needs CAP_NET_ADMIN.
pub fn read() -> io::Result<Xfrm> {
    let sock = Socket::open(NETLINK_XFRM)?;
    let states = sock
        .request(XFRM_MSG_GETSA, NLM_F_DUMP, &[], XFRM_MSG_NEWSA)?
        .iter()
        .filter_map(|b| state(b))
        .collect();
    let policies = sock
        .request(XFRM_MSG_GETPOLICY, NLM_F_DUMP, &[], XFRM_MSG_NEWPOLICY)?
        .iter()
        .filter_map(|b| policy(b))
        .collect();
    Ok(Xfrm { states, policies })
}
