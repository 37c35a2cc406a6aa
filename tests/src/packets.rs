//! Test packets built with etherparse: outer Ethernet (with VLAN tags) and
//! IPv4/IPv6, VXLAN with an inner frame, ESP, ESP-in-UDP. Tests, replay
//! captures and the benchmarks all build their traffic here.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{IpHeaders, IpNumber, PacketBuilder, PacketBuilderStep, VlanId};

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

/// Addressing of one IP layer (outer or inner).
#[derive(Debug, Clone, Copy)]
pub struct Net {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// 802.1Q tags in front of the IP header (0, 1 or 2).
    pub vlans: usize,
}

impl Net {
    pub fn v4(src: [u8; 4], dst: [u8; 4]) -> Net {
        Net {
            src: IpAddr::V4(Ipv4Addr::from(src)),
            dst: IpAddr::V4(Ipv4Addr::from(dst)),
            vlans: 0,
        }
    }

    pub fn v6(src: &str, dst: &str) -> Net {
        let parse = |s: &str| IpAddr::V6(s.parse::<Ipv6Addr>().expect("test address"));
        Net {
            src: parse(src),
            dst: parse(dst),
            vlans: 0,
        }
    }

    /// The usual underlay of the tests: two nodes.
    pub fn nodes() -> Net {
        Net::v4([192, 0, 2, 1], [192, 0, 2, 2])
    }

    /// The usual overlay of the tests: two containers.
    pub fn containers() -> Net {
        Net::v4([10, 0, 9, 2], [10, 0, 9, 3])
    }

    pub fn with_vlans(mut self, n: usize) -> Net {
        self.vlans = n;
        self
    }

    pub fn reversed(self) -> Net {
        Net {
            src: self.dst,
            dst: self.src,
            vlans: self.vlans,
        }
    }
}

fn vlan(id: u16) -> VlanId {
    VlanId::try_new(id).expect("VLAN id below 4096")
}

fn ip_step(net: &Net) -> PacketBuilderStep<IpHeaders> {
    let eth = PacketBuilder::ethernet2(MAC_A, MAC_B);
    match (net.src, net.dst, net.vlans) {
        (IpAddr::V4(s), IpAddr::V4(d), 0) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V4(s), IpAddr::V4(d), 1) => {
            eth.single_vlan(vlan(100)).ipv4(s.octets(), d.octets(), 64)
        }
        (IpAddr::V4(s), IpAddr::V4(d), _) => {
            eth.double_vlan(vlan(100), vlan(200))
                .ipv4(s.octets(), d.octets(), 64)
        }
        (IpAddr::V6(s), IpAddr::V6(d), 0) => eth.ipv6(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d), 1) => {
            eth.single_vlan(vlan(100)).ipv6(s.octets(), d.octets(), 64)
        }
        (IpAddr::V6(s), IpAddr::V6(d), _) => {
            eth.double_vlan(vlan(100), vlan(200))
                .ipv6(s.octets(), d.octets(), 64)
        }
        _ => panic!("source and destination of a Net must be the same family"),
    }
}

/// Ethernet / IP / UDP / payload.
pub fn udp(net: &Net, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = ip_step(net).udp(sport, dport);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).expect("writing a UDP packet");
    out
}

/// Ethernet / IP / TCP (PSH|ACK) / payload.
pub fn tcp(net: &Net, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = ip_step(net).tcp(sport, dport, 1000, 65535).psh().ack(1);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).expect("writing a TCP packet");
    out
}

/// Ethernet / IP / TCP SYN, no payload.
pub fn tcp_syn(net: &Net, sport: u16, dport: u16) -> Vec<u8> {
    let b = ip_step(net).tcp(sport, dport, 1000, 65535).syn();
    let mut out = Vec::with_capacity(b.size(0));
    b.write(&mut out, &[]).expect("writing a TCP packet");
    out
}

/// Ethernet / IP with protocol `proto` / payload.
pub fn ip_raw(net: &Net, proto: u8, payload: &[u8]) -> Vec<u8> {
    let b = ip_step(net);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, IpNumber(proto), payload)
        .expect("writing an IP packet");
    out
}

/// The 8-byte VXLAN header with the I flag (RFC 7348).
pub fn vxlan_header(vni: u32) -> [u8; 8] {
    let v = (vni << 8).to_be_bytes();
    [0x08, 0, 0, 0, v[0], v[1], v[2], 0]
}

/// An outer UDP packet to `port` carrying VXLAN `vni` and `inner`.
pub fn vxlan(outer: &Net, port: u16, vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut payload = vxlan_header(vni).to_vec();
    payload.extend_from_slice(inner);
    udp(outer, 54321, port, &payload)
}

/// An ESP header with `body` after it (what follows SPI and sequence number
/// is ciphertext; its content does not matter to classification).
pub fn esp_payload(spi: u32, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut p = spi.to_be_bytes().to_vec();
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(body);
    p
}

/// IP protocol 50.
pub fn esp(outer: &Net, spi: u32, seq: u32) -> Vec<u8> {
    ip_raw(outer, 50, &esp_payload(spi, seq, &[0x5a; 64]))
}

/// ESP-in-UDP on port 4500 (RFC 3948).
pub fn esp_in_udp(outer: &Net, spi: u32, seq: u32) -> Vec<u8> {
    udp(outer, 4500, 4500, &esp_payload(spi, seq, &[0x5a; 64]))
}

/// IKE on port 4500: the four-byte non-ESP marker, then an IKE header.
pub fn ike_on_4500(outer: &Net) -> Vec<u8> {
    let mut p = vec![0, 0, 0, 0];
    p.extend_from_slice(&[0x11; 28]);
    udp(outer, 4500, 4500, &p)
}
