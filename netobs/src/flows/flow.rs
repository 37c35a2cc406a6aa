use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{SystemTime, UNIX_EPOCH},
};

use netobs_common::{
    Class, Direction, FlowKey, FlowStats, HttpMethod, ENCAP_FRAGMENT, ENCAP_UDP, FAMILY_IPV4,
    FAMILY_IPV6,
};

pub use crate::api::Flow;

/// How to read the kernel's timestamps.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// Live traffic: `CLOCK_MONOTONIC`; `offset_ns` turns it into Unix time.
    Monotonic { offset_ns: i128 },
    /// Replay: already Unix time (the capture's).
    Unix,
}

pub use crate::time::unix_now;

impl Clock {
    pub fn monotonic_now() -> Clock {
        let mono = i128::from(crate::time::monotonic_ns());
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        Clock::Monotonic {
            offset_ns: unix - mono,
        }
    }

    /// Unix time in seconds (fractional).
    pub fn unix_seconds(&self, ns: u64) -> f64 {
        let unix = match self {
            Clock::Monotonic { offset_ns } => ns as i128 + offset_ns,
            Clock::Unix => ns as i128,
        };
        unix as f64 / 1e9
    }
}

/// Identity, direction, class, source, destination and ports of a flow.
pub type SortKey = (
    u32,
    Direction,
    Class,
    Option<IpAddr>,
    Option<IpAddr>,
    Option<u16>,
    Option<u16>,
);

/// `netobs_http_responses_total{code_class}`, indexed like
/// `FlowStats::http_responses`.
pub const STATUS_CLASS_NAMES: [&str; 6] = ["other", "1xx", "2xx", "3xx", "4xx", "5xx"];

pub(crate) fn addr(family: u8, raw: &[u8; 16]) -> Option<IpAddr> {
    match family {
        FAMILY_IPV4 => Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
        FAMILY_IPV6 => Some(IpAddr::V6(Ipv6Addr::from(*raw))),
        _ => None,
    }
}

impl Flow {
    /// Decodes a flow-table entry; `patterns` name the pattern slots.
    pub fn from_raw(k: &FlowKey, v: &FlowStats, patterns: &[String], clock: Clock) -> Flow {
        let class = Class::from_u8(k.class).unwrap_or(Class::Other);
        let vxlan = class == Class::Vxlan;
        let esp = class == Class::Esp;
        let has_inner = vxlan && k.inner_family != 0;
        let has_ports = has_inner && (k.inner_proto == 6 || k.inner_proto == 17);
        let mut http_requests = BTreeMap::new();
        for m in HttpMethod::ALL {
            let n = v.http_requests[m as usize];
            if n > 0 {
                http_requests.insert(m.name().to_owned(), n as u64);
            }
        }
        let mut http_responses = BTreeMap::new();
        for (i, name) in STATUS_CLASS_NAMES.iter().enumerate() {
            let n = v.http_responses[i];
            if n > 0 {
                http_responses.insert((*name).to_owned(), n as u64);
            }
        }
        let mut pattern_hits = BTreeMap::new();
        for (i, p) in patterns.iter().enumerate() {
            let n = v.pattern_hits.get(i).copied().unwrap_or(0);
            if n > 0 {
                pattern_hits.insert(p.clone(), n as u64);
            }
        }
        Flow {
            ifindex: k.ifindex,
            direction: Direction::from_u8(k.direction).unwrap_or(Direction::Ingress),
            class,
            outer_src: addr(k.outer_family, &k.outer_src),
            outer_dst: addr(k.outer_family, &k.outer_dst),
            vni: vxlan.then_some(k.vni_or_spi),
            spi: esp.then_some(k.vni_or_spi),
            esp_in_udp: esp.then_some(k.encap == ENCAP_UDP),
            esp_seq: esp.then_some(v.esp_seq),
            inner_proto: has_inner.then_some(k.inner_proto),
            inner_src: if has_inner {
                addr(k.inner_family, &k.inner_src)
            } else {
                None
            },
            inner_dst: if has_inner {
                addr(k.inner_family, &k.inner_dst)
            } else {
                None
            },
            inner_sport: has_ports.then_some(k.inner_sport),
            inner_dport: has_ports.then_some(k.inner_dport),
            packets: v.packets,
            bytes: v.bytes,
            first_seen: clock.unix_seconds(v.first_seen_ns),
            last_seen: clock.unix_seconds(v.last_seen_ns),
            http_requests,
            http_responses,
            pattern_hits,
            tcp_flags: (has_inner && k.inner_proto == 6).then_some(v.tcp_flags),
            outer_fragments: if vxlan && k.encap == ENCAP_FRAGMENT {
                v.packets
            } else {
                0
            },
        }
    }

    /// A stable order for flows of equal size.
    pub fn sort_key(&self) -> SortKey {
        (
            self.vni.or(self.spi).unwrap_or(0),
            self.direction,
            self.class,
            self.inner_src.or(self.outer_src),
            self.inner_dst.or(self.outer_dst),
            self.inner_sport,
            self.inner_dport,
        )
    }
}

/// Display helpers for one flow's addresses.
pub struct FlowKeyView<'a>(pub &'a Flow);

impl FlowKeyView<'_> {
    pub fn id(&self) -> String {
        match (self.0.vni, self.0.spi) {
            (Some(v), _) => v.to_string(),
            (_, Some(s)) => format!("{s:#010x}"),
            _ => "-".into(),
        }
    }

    pub fn outer(&self) -> String {
        match (self.0.outer_src, self.0.outer_dst) {
            (Some(s), Some(d)) => format!("{s} > {d}"),
            _ => "-".into(),
        }
    }

    pub fn inner(&self) -> String {
        let f = self.0;
        let ep = |a: Option<IpAddr>, p: Option<u16>| match (a, p) {
            (Some(IpAddr::V6(a)), Some(p)) => format!("[{a}]:{p}"),
            (Some(a), Some(p)) => format!("{a}:{p}"),
            (Some(a), None) => a.to_string(),
            _ => "-".into(),
        };
        match f.inner_src {
            Some(_) => format!(
                "{} > {}",
                ep(f.inner_src, f.inner_sport),
                ep(f.inner_dst, f.inner_dport)
            ),
            None => "-".into(),
        }
    }
}
