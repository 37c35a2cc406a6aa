//! The kernel programs on crafted packets, through BPF_PROG_TEST_RUN: every
//! class, every header variant the parser handles, and the malformed family.
//! Each packet goes through the TC program and the XDP program; both must
//! agree, return "pass", and count it exactly once.
use std::net::IpAddr;

use netobs::{
    datapath::{
        attach::BaselineProgram,
        events::{self, CapturePaths},
        testrun::{RunPacket, MAX_RUN_DATA},
        Datapath, Options,
    },
    flows::{Clock, Flow},
};
use netobs_common::{counter_index, Class, Direction, Stat, EVENT_HTTP_REQUEST, EVENT_NEW_FLOW};
use netobs_tests::{
    packets::{self, Net},
    require_root,
};

/// TC_ACT_UNSPEC: "no verdict", the packet goes on.
const TC_PASS: u32 = u32::MAX;
const XDP_PASS: u32 = 2;
/// BPF_PROG_TEST_RUN runs on the loopback device.
const LO: u32 = 1;

struct Harness {
    dp: Datapath,
    patterns: Vec<String>,
}

impl Harness {
    fn new(opts: Options) -> Harness {
        let patterns = opts
            .patterns
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        let mut dp = Datapath::load(&opts).expect("loading the datapath");
        dp.register_interface(LO).expect("registering lo");
        Harness { dp, patterns }
    }

    fn default() -> Harness {
        Harness::new(Options::default())
    }

    fn class_counts(&self) -> Vec<(u64, u64)> {
        let c = self.dp.counters().expect("reading counters");
        Class::ALL
            .iter()
            .flat_map(|class| {
                Direction::ALL
                    .iter()
                    .map(move |d| counter_index(1, *d, *class) as usize)
            })
            .map(|i| (c[i].packets, c[i].bytes))
            .collect()
    }

    /// Runs `pkt` through TC (ingress) and XDP; asserts both classify it the
    /// same, pass it, and count it once with its length. Returns the class.
    fn classify(&mut self, pkt: &[u8]) -> Class {
        self.classify_run(&RunPacket::new(pkt), 1)
    }

    fn classify_run(&mut self, pkt: &RunPacket<'_>, segments: u64) -> Class {
        let tc = self.one(
            |dp| {
                dp.run_tc(Direction::Ingress, pkt, 1)
                    .expect("tc run")
                    .return_value
            },
            TC_PASS,
            segments,
            pkt.wire_len as u64,
        );
        let data = pkt.data;
        // XDP has no replay mode and no GSO: compare where it sees the same packet.
        if data.len() >= 14
            && data.len() <= MAX_RUN_DATA
            && pkt.gso_segs == 0
            && pkt.wire_len as usize == data.len()
        {
            let xdp = self.one(
                |dp| dp.run_xdp(data, 1).expect("xdp run").return_value,
                XDP_PASS,
                1,
                data.len() as u64,
            );
            assert_eq!(tc, xdp, "TC and XDP disagree");
        }
        tc
    }

    fn one(
        &mut self,
        run: impl FnOnce(&mut Datapath) -> u32,
        pass: u32,
        packets: u64,
        bytes: u64,
    ) -> Class {
        let before = self.class_counts();
        assert_eq!(
            run(&mut self.dp),
            pass,
            "the program must pass every packet"
        );
        let after = self.class_counts();
        let changed: Vec<usize> = (0..before.len())
            .filter(|&i| before[i] != after[i])
            .collect();
        assert_eq!(
            changed.len(),
            1,
            "exactly one counter moves per packet: {changed:?}"
        );
        let i = changed[0];
        assert_eq!(after[i].0 - before[i].0, packets, "packets counted");
        assert_eq!(after[i].1 - before[i].1, bytes, "bytes counted");
        Class::ALL[i / Direction::ALL.len()]
    }

    fn flows(&self) -> Vec<Flow> {
        let raw = self.dp.flows().expect("reading flows");
        raw.iter()
            .map(|(k, v)| Flow::from_raw(k, v, &self.patterns, Clock::Unix))
            .collect()
    }

    fn only_flow(&self) -> Flow {
        let mut f = self.flows();
        assert_eq!(f.len(), 1, "one flow expected: {f:#?}");
        f.remove(0)
    }
}

fn http_in_vxlan(vni: u32, payload: &[u8]) -> Vec<u8> {
    let inner = packets::tcp(&Net::containers(), 40000, 80, payload);
    packets::vxlan(&Net::nodes(), 4789, vni, &inner)
}

#[test]
fn plain_traffic_is_other() {
    require_root!();
    let mut h = Harness::default();
    assert_eq!(
        h.classify(&packets::tcp(
            &Net::nodes(),
            1234,
            80,
            b"GET / HTTP/1.1\r\n\r\n"
        )),
        Class::Other
    );
    assert_eq!(
        h.classify(&packets::udp(&Net::nodes(), 1234, 53, &[0; 30])),
        Class::Other
    );
    assert_eq!(
        h.classify(&packets::udp(&Net::nodes(), 4789, 4790, &[0; 30])),
        Class::Other,
        "VXLAN is matched on the destination port"
    );
    assert_eq!(
        h.classify(&packets::ip_raw(
            &Net::nodes(),
            1,
            &[8, 0, 0, 0, 0, 0, 0, 0]
        )),
        Class::Other
    );
    let mut arp = vec![0xffu8; 6];
    arp.extend_from_slice(&packets::MAC_A);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    assert_eq!(h.classify(&arp), Class::Other);
    assert!(
        h.flows().is_empty(),
        "non-overlay traffic takes no flow-table entry"
    );
}

#[test]
fn vxlan_reads_vni_and_inner_tuple() {
    require_root!();
    let mut h = Harness::default();
    let pkt = http_in_vxlan(4097, b"hello");
    assert_eq!(h.classify(&pkt), Class::Vxlan);
    let f = h.only_flow();
    assert_eq!(f.class, Class::Vxlan);
    assert_eq!(f.vni, Some(4097));
    assert_eq!(f.outer_src, Some(IpAddr::from([192, 0, 2, 1])));
    assert_eq!(f.outer_dst, Some(IpAddr::from([192, 0, 2, 2])));
    assert_eq!(f.inner_proto, Some(6));
    assert_eq!(f.inner_src, Some(IpAddr::from([10, 0, 9, 2])));
    assert_eq!(f.inner_dst, Some(IpAddr::from([10, 0, 9, 3])));
    assert_eq!((f.inner_sport, f.inner_dport), (Some(40000), Some(80)));
    // TC and XDP each counted it once.
    assert_eq!(f.packets, 2);
    assert_eq!(f.bytes, 2 * pkt.len() as u64);
    assert!(f.http_requests.is_empty(), "\"hello\" is not HTTP");
}

/// VXLAN whose outer datagram is the first of its fragments (the underlay's
/// MTU below the overlay's + 50) is VXLAN, counted as a fragment on a flow
/// of its outer ends and VNI (its inner frame is cut: a real one overruns
/// the fragment, so it is not parsed); the later fragments (no UDP header)
/// are other traffic.
#[test]
fn fragmented_vxlan_is_counted_on_its_flow() {
    require_root!();
    let mut h = Harness::default();
    let whole = http_in_vxlan(4097, b"hello");
    assert_eq!(h.classify(&whole), Class::Vxlan);
    let mut first = whole.clone();
    // Outer IPv4 flags: more fragments, offset 0.
    first[14 + 6] = 0x20;
    assert_eq!(h.classify(&first), Class::Vxlan);
    let mut later = whole.clone();
    // Offset 185 (1480 bytes): no UDP header in this one.
    later[14 + 6] = 0x00;
    later[14 + 7] = 185;
    assert_eq!(h.classify(&later), Class::Other);
    // A real first fragment: the inner IPv4 says 1450 bytes, the fragment
    // holds fewer.
    let mut cut = first.clone();
    let inner_total = 14 + 20 + 8 + 8 + 14 + 2;
    cut[inner_total..inner_total + 2].copy_from_slice(&1450u16.to_be_bytes());
    assert_eq!(h.classify(&cut), Class::Vxlan);
    let flows = h.flows();
    assert_eq!(flows.len(), 2, "{flows:#?}");
    let whole = flows.iter().find(|f| f.inner_src.is_some()).expect("whole");
    let frag = flows
        .iter()
        .find(|f| f.inner_src.is_none())
        .expect("fragments");
    // TC and XDP each: one whole datagram; two first fragments.
    assert_eq!((whole.packets, whole.outer_fragments), (2, 0));
    assert_eq!((frag.packets, frag.outer_fragments), (4, 4));
    assert_eq!(frag.vni, Some(4097));
}

#[test]
fn vxlan_under_vlan_tags_and_ipv6() {
    require_root!();
    let mut h = Harness::default();
    let inner = packets::udp(&Net::containers(), 5000, 6000, b"data");
    for outer in [
        Net::nodes().with_vlans(1),
        Net::nodes().with_vlans(2),
        Net::v6("2001:db8::1", "2001:db8::2"),
        Net::v6("2001:db8::1", "2001:db8::2").with_vlans(2),
    ] {
        assert_eq!(
            h.classify(&packets::vxlan(&outer, 4789, 77, &inner)),
            Class::Vxlan,
            "{outer:?}"
        );
    }
    let inner6 = packets::udp(&Net::v6("fd00::2", "fd00::3"), 5000, 6000, b"data");
    assert_eq!(
        h.classify(&packets::vxlan(&Net::nodes(), 4789, 78, &inner6)),
        Class::Vxlan
    );
    let flows = h.flows();
    let f6 = flows
        .iter()
        .find(|f| f.vni == Some(78))
        .expect("inner IPv6 flow");
    assert_eq!(f6.inner_src, Some("fd00::2".parse().expect("addr")));
    assert_eq!(f6.inner_dport, Some(6000));
    assert!(flows
        .iter()
        .any(|f| f.outer_src == Some("2001:db8::1".parse().expect("addr"))));
}

#[test]
fn ipv6_extension_headers_are_skipped() {
    require_root!();
    let mut h = Harness::default();
    let vx = packets::vxlan_header(5);
    let inner = packets::udp(&Net::containers(), 1, 2, b"x");
    // Hop-by-hop (8 bytes) then destination options (16 bytes) before UDP.
    let mut udp_payload = vx.to_vec();
    udp_payload.extend_from_slice(&inner);
    let udp = {
        let full = packets::udp(
            &Net::v6("2001:db8::1", "2001:db8::2"),
            49152,
            4789,
            &udp_payload,
        );
        full[14 + 40..].to_vec()
    };
    let mut ext = vec![60u8, 0, 1, 4, 0, 0, 0, 0]; // HBH -> dest opts, PadN
    ext.extend_from_slice(&[17u8, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // -> UDP
    ext.extend_from_slice(&udp);
    // etherparse cannot write a bare extension chain: build with an
    // experimental protocol number, then point the header at the chain.
    let mut pkt = packets::ip_raw(&Net::v6("2001:db8::1", "2001:db8::2"), 253, &ext);
    pkt[14 + 6] = 0;
    assert_eq!(h.classify(&pkt), Class::Vxlan);
    assert_eq!(h.only_flow().vni, Some(5));
}

#[test]
fn custom_data_path_ports() {
    require_root!();
    let mut h = Harness::new(Options {
        data_path_ports: vec![7777, 4789],
        ..Options::default()
    });
    let inner = packets::udp(&Net::containers(), 1, 2, b"x");
    assert_eq!(
        h.classify(&packets::vxlan(&Net::nodes(), 7777, 1, &inner)),
        Class::Vxlan
    );
    assert_eq!(
        h.classify(&packets::vxlan(&Net::nodes(), 4789, 1, &inner)),
        Class::Vxlan
    );
    assert_eq!(
        h.classify(&packets::vxlan(&Net::nodes(), 8472, 1, &inner)),
        Class::Other
    );

    let mut only = Harness::new(Options {
        data_path_ports: vec![7777],
        ..Options::default()
    });
    assert_eq!(
        only.classify(&packets::vxlan(&Net::nodes(), 4789, 1, &inner)),
        Class::Other,
        "4789 is not watched when another port is configured"
    );
}

#[test]
fn esp_and_esp_in_udp_and_ike() {
    require_root!();
    let mut h = Harness::default();
    assert_eq!(
        h.classify(&packets::esp(&Net::nodes(), 0xc0ffee01, 7)),
        Class::Esp
    );
    assert_eq!(
        h.classify(&packets::esp(
            &Net::v6("2001:db8::1", "2001:db8::2"),
            0xc0ffee02,
            1
        )),
        Class::Esp
    );
    assert_eq!(
        h.classify(&packets::esp_in_udp(&Net::nodes(), 0xc0ffee03, 9)),
        Class::Esp
    );
    assert_eq!(
        h.classify(&packets::ike_on_4500(&Net::nodes())),
        Class::Other,
        "IKE carries the non-ESP marker"
    );
    assert_eq!(
        h.classify(&packets::udp(&Net::nodes(), 4500, 4500, &[0xff])),
        Class::Other,
        "NAT-T keepalive"
    );
    assert_eq!(
        h.classify(&packets::udp(&Net::nodes(), 500, 500, &[1; 40])),
        Class::Other,
        "IKE on 500"
    );
    let flows = h.flows();
    assert_eq!(flows.len(), 3);
    let f = flows
        .iter()
        .find(|f| f.spi == Some(0xc0ffee01))
        .expect("ESP flow");
    assert_eq!(
        (f.class, f.esp_seq, f.esp_in_udp),
        (Class::Esp, Some(7), Some(false))
    );
    assert_eq!(f.inner_src, None, "ESP hides the inner packet");
    let f = flows
        .iter()
        .find(|f| f.spi == Some(0xc0ffee03))
        .expect("ESP-in-UDP flow");
    assert_eq!((f.esp_seq, f.esp_in_udp), (Some(9), Some(true)));
}

#[test]
fn http_requests_and_responses() {
    require_root!();
    let mut h = Harness::default();
    let methods = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    for m in methods {
        let req = format!("{m} /x HTTP/1.1\r\nHost: web\r\n\r\n");
        assert_eq!(
            h.classify(&http_in_vxlan(100, req.as_bytes())),
            Class::Vxlan
        );
    }
    let resp = |status: &str| {
        let inner = packets::tcp(
            &Net::containers().reversed(),
            80,
            40000,
            format!("HTTP/1.1 {status}\r\n\r\n").as_bytes(),
        );
        packets::vxlan(&Net::nodes().reversed(), 4789, 100, &inner)
    };
    for s in [
        "200 OK",
        "201 Created",
        "301 Moved",
        "404 Not Found",
        "503 Busy",
        "99 odd",
    ] {
        assert_eq!(h.classify(&resp(s)), Class::Vxlan);
    }
    // Not HTTP: no space after the method, lower case, a TLS ClientHello on
    // port 80, a method in the middle of the payload.
    for p in [
        &b"GETX / HTTP/1.1\r\n"[..],
        b"get / HTTP/1.1\r\n",
        &[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ][..],
        b"xx GET / HTTP/1.1",
    ] {
        assert_eq!(h.classify(&http_in_vxlan(100, p)), Class::Vxlan);
    }
    let flows = h.flows();
    let client = flows
        .iter()
        .find(|f| f.inner_dport == Some(80))
        .expect("client flow");
    for m in methods {
        assert_eq!(
            client.http_requests.get(m),
            Some(&2),
            "{m}: TC and XDP each count it"
        );
    }
    assert_eq!(client.http_requests.values().sum::<u64>(), 18);
    let server = flows
        .iter()
        .find(|f| f.inner_sport == Some(80))
        .expect("server flow");
    assert_eq!(server.http_responses.get("2xx"), Some(&4));
    assert_eq!(server.http_responses.get("3xx"), Some(&2));
    assert_eq!(server.http_responses.get("4xx"), Some(&2));
    assert_eq!(server.http_responses.get("5xx"), Some(&2));
    assert_eq!(server.http_responses.get("other"), Some(&2));
    assert!(server.http_requests.is_empty());
}

#[test]
fn patterns_are_found_in_plaintext_payloads() {
    require_root!();
    let mut h = Harness::new(Options {
        patterns: vec![b"password".to_vec(), b"HTTP".to_vec(), b"zzz".to_vec()],
        ..Options::default()
    });
    let body = b"POST /login HTTP/1.1\r\n\r\nuser=a&password=b";
    assert_eq!(h.classify(&http_in_vxlan(9, body)), Class::Vxlan);
    // Beyond the first 128 payload bytes: not searched.
    let mut late = vec![b'.'; 130];
    late.extend_from_slice(b"zzz");
    assert_eq!(h.classify(&http_in_vxlan(9, &late)), Class::Vxlan);
    // In ESP nothing is searched (it is ciphertext).
    assert_eq!(h.classify(&packets::esp(&Net::nodes(), 1, 1)), Class::Esp);
    let f = h
        .flows()
        .into_iter()
        .find(|f| f.vni == Some(9))
        .expect("vxlan flow");
    assert_eq!(f.pattern_hits.get("password"), Some(&2));
    assert_eq!(f.pattern_hits.get("HTTP"), Some(&2));
    assert_eq!(f.pattern_hits.get("zzz"), None);
}

/// The fullest set the agent takes (eight patterns of up to 32 bytes: four
/// words in the kernel's matcher), each pattern counted exactly: alone,
/// four in one payload, cut one byte short, and cut by the 128-byte limit.
/// The kernel copies such payloads out before it scans them.
#[test]
fn the_fullest_pattern_set_is_counted_exactly() {
    require_root!();
    pattern_set_is_counted_exactly(&[32, 32, 31, 30, 29, 28, 27, 26]);
}

/// The same with eight patterns that fit one word (64 bits), the set the
/// kernel scans where it lies in the packet, 8 bytes a load: every pattern
/// in every position of a block, and across the 128-byte limit.
#[test]
fn a_one_word_pattern_set_is_counted_exactly_in_place() {
    require_root!();
    pattern_set_is_counted_exactly(&[8; 8]);
}

fn pattern_set_is_counted_exactly(lens: &[usize]) {
    let patterns: Vec<Vec<u8>> = lens
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let mut p = format!("secret-{i}-").into_bytes();
            p.resize(len, b'a' + i as u8);
            p
        })
        .collect();
    let mut h = Harness::new(Options {
        patterns: patterns.clone(),
        ..Options::default()
    });
    // Each alone.
    for p in &patterns {
        h.classify(&http_in_vxlan(9, p));
    }
    // The first four back to back.
    h.classify(&http_in_vxlan(9, &patterns[..4].concat()));
    // Each one byte short: nothing.
    for p in &patterns {
        h.classify(&http_in_vxlan(9, &p[..p.len() - 1]));
    }
    // The last one across the 128th byte: not searched there.
    let last = &patterns[patterns.len() - 1];
    let mut late = vec![b'.'; 128 - last.len() / 2];
    late.extend_from_slice(last);
    h.classify(&http_in_vxlan(9, &late));
    // The first one at every offset of an 8-byte block, and ending on the
    // 128th byte.
    for at in (1..8).chain([128 - patterns[0].len()]) {
        let mut shifted = vec![b'.'; at];
        shifted.extend_from_slice(&patterns[0]);
        h.classify(&http_in_vxlan(9, &shifted));
    }
    // (The programs are loaded by now.) The heaviest configurations to verify: each program loads with 15%
    // of the verifier's million instructions to spare, so that a change
    // which walks the scan more often fails here, not on a user's kernel.
    let verified = h.dp.verified_instructions();
    assert_eq!(verified.len(), 3, "{verified:?}");
    for (name, count) in verified {
        assert!(count <= 850_000, "{name}: {count} instructions verified");
    }
    let f = h
        .flows()
        .into_iter()
        .find(|f| f.vni == Some(9))
        .expect("vxlan flow");
    for (i, p) in patterns.iter().enumerate() {
        let name = String::from_utf8_lossy(p).into_owned();
        // Each packet runs through TC and through XDP.
        let want = match i {
            0 => 2 * (2 + 8),
            1..4 => 4,
            _ => 2,
        };
        assert_eq!(f.pattern_hits.get(&name), Some(&want), "{name}");
    }
}

#[test]
fn gso_super_packets_count_their_segments() {
    require_root!();
    let mut h = Harness::default();
    let pkt = http_in_vxlan(3, &[b'a'; 1000]);
    let run = RunPacket {
        data: &pkt,
        wire_len: pkt.len() as u32,
        timestamp_ns: 0,
        gso_segs: 7,
    };
    assert_eq!(h.classify_run(&run, 7), Class::Vxlan);
    assert_eq!(h.only_flow().packets, 7);
}

#[test]
fn big_tcp_and_jumbo_lengths_are_valid() {
    require_root!();
    let mut h = Harness::default();
    // IPv4 total length 0 (BIG TCP), outer and inner.
    let mut pkt = http_in_vxlan(4, b"GET / HTTP/1.1\r\n\r\n");
    pkt[16] = 0;
    pkt[17] = 0;
    assert_eq!(h.classify(&pkt), Class::Vxlan);
    let inner_ip = 14 + 20 + 8 + 8 + 14;
    pkt[inner_ip + 2] = 0;
    pkt[inner_ip + 3] = 0;
    assert_eq!(h.classify(&pkt), Class::Vxlan);
    // IPv6 payload length 0.
    let inner = packets::udp(&Net::containers(), 1, 2, b"x");
    let mut pkt6 = packets::vxlan(&Net::v6("2001:db8::1", "2001:db8::2"), 4789, 4, &inner);
    pkt6[18] = 0;
    pkt6[19] = 0;
    assert_eq!(h.classify(&pkt6), Class::Vxlan);
    assert_eq!(
        h.flows()
            .iter()
            .map(|f| f.http_requests.values().sum::<u64>())
            .sum::<u64>(),
        4
    );
}

#[test]
fn malformed_packets_are_counted_not_parsed() {
    require_root!();
    let mut h = Harness::default();
    let good = http_in_vxlan(10, b"GET / HTTP/1.1\r\n\r\n");
    let ip = 14;
    let udp = ip + 20;
    let vx = udp + 8;
    let inner_ip = vx + 8 + 14;
    let inner_tcp = inner_ip + 20;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("IHL beyond the packet", {
            let mut p = good[..14 + 24].to_vec();
            p[ip] = 0x4f;
            p
        }),
        ("IHL below 5", {
            let mut p = good.clone();
            p[ip] = 0x44;
            p
        }),
        ("IPv4 version mismatch", {
            let mut p = good.clone();
            p[ip] = 0x65;
            p
        }),
        ("total length beyond the packet", {
            let mut p = good.clone();
            p[ip + 2] = 0xff;
            p
        }),
        ("total length below the header", {
            let mut p = good.clone();
            p[ip + 2] = 0;
            p[ip + 3] = 10;
            p
        }),
        ("UDP length below 8", {
            let mut p = good.clone();
            p[udp + 4] = 0;
            p[udp + 5] = 4;
            p
        }),
        ("UDP length beyond IP", {
            let mut p = good.clone();
            p[udp + 4] = 0x7f;
            p
        }),
        (
            "VXLAN shorter than its header",
            packets::udp(&Net::nodes(), 49152, 4789, &[0x08, 0, 0, 0]),
        ),
        ("VXLAN without the I flag", {
            let mut p = good.clone();
            p[vx] = 0;
            p
        }),
        (
            "inner frame truncated",
            packets::udp(
                &Net::nodes(),
                49152,
                4789,
                &[0x08, 0, 0, 0, 0, 0, 1, 0, 1, 2, 3],
            ),
        ),
        ("inner IPv4 IHL below 5", {
            let mut p = good.clone();
            p[inner_ip] = 0x41;
            p
        }),
        ("inner TCP data offset below 5", {
            let mut p = good.clone();
            p[inner_tcp + 12] = 0x20;
            p
        }),
        (
            "ESP shorter than SPI and sequence",
            packets::ip_raw(&Net::nodes(), 50, &[1, 2, 3, 4]),
        ),
        ("ESP with SPI 0", packets::esp(&Net::nodes(), 0, 5)),
        (
            "ESP-in-UDP shorter than SPI and sequence",
            packets::udp(&Net::nodes(), 4500, 4500, &[1, 2, 3, 4, 5]),
        ),
        ("IPv6 payload length beyond the packet", {
            let inner = packets::udp(&Net::containers(), 1, 2, b"x");
            let mut p = packets::vxlan(&Net::v6("2001:db8::1", "2001:db8::2"), 4789, 4, &inner);
            p[18] = 0xff;
            p
        }),
    ];
    for (what, pkt) in &cases {
        eprintln!("case: {what}");
        assert_eq!(h.classify(pkt), Class::Malformed, "{what}");
    }
    assert!(h.flows().is_empty(), "malformed packets make no flows");
}

#[test]
fn truncated_ip_headers_in_a_capture_are_malformed() {
    require_root!();
    // The kernel's test run refuses such an skb; replay pads it and the
    // program still judges it by its original 44 bytes.
    let mut h = Harness::new(Options {
        replay: true,
        ..Options::default()
    });
    let v6 = packets::udp(&Net::v6("2001:db8::1", "2001:db8::2"), 1, 2, b"x");
    let v4 = packets::udp(&Net::nodes(), 1, 2, b"x");
    for cut in [&v6[..14 + 30], &v4[..14 + 10]] {
        let run = RunPacket {
            data: cut,
            wire_len: cut.len() as u32,
            timestamp_ns: 1,
            gso_segs: 0,
        };
        assert_eq!(h.classify_run(&run, 1), Class::Malformed);
    }
}

#[test]
fn replay_mode_judges_packets_by_their_original_length() {
    require_root!();
    let mut h = Harness::new(Options {
        replay: true,
        ..Options::default()
    });
    // A 9-byte frame: truncated Ethernet.
    let tiny = [0u8; 9];
    let run = RunPacket {
        data: &tiny,
        wire_len: 9,
        timestamp_ns: 1,
        gso_segs: 0,
    };
    assert_eq!(h.classify_run(&run, 1), Class::Malformed);
    // A big packet handed over as its first 2048 bytes: still VXLAN, counted
    // with its original length and its capture time.
    let pkt = http_in_vxlan(11, &vec![b'a'; 9000]);
    let run = RunPacket {
        data: &pkt,
        wire_len: pkt.len() as u32,
        timestamp_ns: 1_700_000_000_123_456_789,
        gso_segs: 0,
    };
    assert_eq!(h.classify_run(&run, 1), Class::Vxlan);
    let f = h.only_flow();
    assert_eq!(f.bytes, pkt.len() as u64);
    // f64 holds the capture time to about a microsecond.
    assert!((f.first_seen - 1_700_000_000.123_457).abs() < 1e-5);
}

#[test]
fn events_carry_a_redacted_request_line() {
    require_root!();
    let mut h = Harness::default();
    let mut ring = h.dp.take_events().expect("ring buffer");
    let req = b"GET /api/users?token=s3cr3t HTTP/1.1\r\nAuthorization: Bearer x\r\n\r\n";
    h.classify(&http_in_vxlan(12, req));
    let mut got = Vec::new();
    while let Some(item) = ring.next() {
        got.push(events::decode(&item).expect("event record"));
    }
    // TC and XDP each saw the packet: a new flow and a request per run, the
    // flow is new only the first time.
    let kinds: Vec<u8> = got.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![EVENT_NEW_FLOW, EVENT_HTTP_REQUEST, EVENT_HTTP_REQUEST]
    );
    let e = &got[1];
    assert_eq!(events::snippet(e, CapturePaths::Redacted), "GET /api/users");
    assert_eq!(e.snippet_truncated, 1, "the query was cut off");
    assert_eq!(e.key.vni_or_spi, 12);
    assert!(
        e.snippet[e.snippet_len as usize..].iter().all(|b| *b == 0),
        "nothing past the cut leaves the kernel"
    );
}

#[test]
fn full_capture_paths_keep_the_query_but_never_the_headers() {
    require_root!();
    let mut h = Harness::new(Options {
        new_flow_events: false,
        full_paths: true,
        ..Options::default()
    });
    let mut ring = h.dp.take_events().expect("ring buffer");
    let req = b"GET /api/key/k3y?user=alice HTTP/1.1\r\nAuthorization: Bearer x\r\n\r\n";
    h.classify(&http_in_vxlan(12, req));
    let e = events::decode(&ring.next().expect("an event")).expect("event record");
    assert_eq!(
        events::snippet(&e, CapturePaths::Full),
        "GET /api/key/k3y?user=alice"
    );
    assert_eq!(e.snippet_truncated, 0, "the line ended at the version");
    assert_eq!(
        events::snippet(&e, CapturePaths::Redacted),
        "GET /api/key/<redacted>",
        "redacting what a full capture holds drops the query too"
    );
}

#[test]
fn an_http_flood_is_cut_by_the_rate_limit_and_counted() {
    require_root!();
    let mut h = Harness::new(Options {
        new_flow_events: false,
        events_per_sec: 1,
        events_burst: 10,
        ..Options::default()
    });
    let mut ring = h.dp.take_events().expect("ring buffer");
    let pkt = http_in_vxlan(5, b"GET /flood HTTP/1.1\r\n\r\n");
    // One CPU runs all 1000 repetitions within a millisecond: one bucket,
    // no refill.
    h.dp.run_tc(Direction::Ingress, &RunPacket::new(&pkt), 1000)
        .expect("tc run");
    let mut events = 0;
    while ring.next().is_some() {
        events += 1;
    }
    let stats = h.dp.stats().expect("stats");
    assert_eq!(events, 10, "a burst passes");
    assert_eq!(stats[Stat::EventsSent as usize], 10);
    assert_eq!(
        stats[Stat::EventsRateLimited as usize],
        990,
        "the rest is cut and counted"
    );
    assert_eq!(stats[Stat::EventsRingFull as usize], 0);
    assert_eq!(
        h.only_flow().http_requests["GET"],
        1000,
        "but every request counts"
    );
}

#[test]
fn a_flow_table_flood_evicts_and_counts_every_eviction() {
    require_root!();
    const TABLE: u32 = 1024;
    const CACHE: u32 = 64;
    const FLOWS: u16 = 5000;
    let mut h = Harness::new(Options {
        flow_table_size: TABLE,
        flow_cache_slots: CACHE,
        new_flow_events: false,
        http_events: false,
        ..Options::default()
    });
    for port in 0..FLOWS {
        let inner = packets::udp(&Net::containers(), 20000 + port, 53, b"q");
        let pkt = packets::vxlan(&Net::nodes(), 4789, 7, &inner);
        h.dp.run_tc(Direction::Ingress, &RunPacket::new(&pkt), 1)
            .expect("tc run");
    }
    let mut seen = Vec::new();
    let read =
        h.dp.for_each_flow(|_, v| seen.push(v.packets))
            .expect("reading flows");
    let stats = h.dp.stats().expect("stats");
    let health = netobs::flows::Health::from_stats(&stats, read.table_entries);
    assert!(read.exact);
    assert!(
        read.table_entries <= TABLE as usize,
        "{} flows in a table of {TABLE}",
        read.table_entries
    );
    assert!(read.cache_slots <= CACHE as usize);
    assert_eq!(seen.len(), read.table_entries + read.cache_only);
    assert_eq!(
        health.flows_created, FLOWS as u64,
        "every flow was created once"
    );
    assert_eq!(health.flow_insert_failed, 0);
    // Every insert (new flows, and evicted flows a flush put back) is in the
    // table or counted as an eviction.
    assert_eq!(
        health.flow_evictions,
        FLOWS as u64 + stats[Stat::FlowsReinserted as usize] - read.table_entries as u64
    );
    // A flow missing from the read lost its packet to an eviction, and
    // every such flow is among the evictions counted.
    assert!(seen.iter().all(|&p| p == 1), "no flow is counted twice");
    assert!(health.flow_evictions >= FLOWS as u64 - seen.len() as u64);
    // 64 slots in front of 5000 flows: a flow that found its slot empty
    // claimed it (slots are never emptied), every other one flushed a slot.
    assert_eq!(health.cache_flushes, FLOWS as u64 - read.cache_slots as u64);
    // The interface counters never lose a packet to the flood.
    let c = h.class_counts();
    let vxlan_in = c[Class::Vxlan as usize * Direction::ALL.len()].0;
    assert_eq!(vxlan_in, FLOWS as u64);
}

#[test]
fn the_flow_table_reads_in_batches_and_one_by_one_alike() {
    require_root!();
    let mut h = Harness::new(Options {
        new_flow_events: false,
        http_events: false,
        ..Options::default()
    });
    // More flows than one batch holds.
    for port in 0..5000u16 {
        let inner = packets::udp(&Net::containers(), 10000 + port, 53, b"q");
        let pkt = packets::vxlan(&Net::nodes(), 4789, 7, &inner);
        h.dp.run_tc(Direction::Ingress, &RunPacket::new(&pkt), 1)
            .expect("tc run");
    }
    let mut batched = Vec::new();
    let answered =
        h.dp.flows_batched(|keys, values| {
            batched.extend(keys.iter().copied().zip(values.iter().copied()))
        })
        .expect("reading in batches");
    assert!(answered, "the kernel answers batch lookups");
    let mut single = h.dp.flows_one_by_one().expect("reading one by one");
    assert_eq!(batched.len(), 5000);
    let order = |v: &mut Vec<(netobs_common::FlowKey, netobs_common::FlowStats)>| {
        v.sort_by_key(|(k, _)| k.inner_sport)
    };
    order(&mut batched);
    order(&mut single);
    assert_eq!(batched, single);
}

/// Ones' complement sum of `bytes` as 16-bit big-endian words, folded.
fn ones_sum(bytes: &[u8]) -> u16 {
    let mut s: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The inner SYNs' checksums, summed for every SYN arriving (in the
/// tail-called check program; never on egress, where checksums are left
/// for the NIC): right, never filled in (the pseudo-header's sum, what a
/// stack leaves for the NIC) and wrong, for IPv4 and IPv6 inner headers; a
/// segment that is no SYN and a SYN leaving are not summed.
#[test]
fn inner_syn_checksums_are_judged_on_ingress() {
    use netobs_common::{CSUM_BAD, CSUM_OK, CSUM_PARTIAL};
    require_root!();
    let mut h = Harness::default();
    // Ethernet 14 + IPv4 20: the TCP header, its checksum at 16.
    let v4 = |sport: u16, check: Option<u16>| {
        let mut inner = packets::tcp_syn(&Net::containers(), sport, 80);
        if let Some(c) = check {
            inner[34 + 16..34 + 18].copy_from_slice(&c.to_be_bytes());
        }
        packets::vxlan(&Net::nodes(), 4789, 7, &inner)
    };
    let good = v4(40001, None);
    // Source, destination, protocol 6, TCP length 20.
    let pseudo = [10, 0, 9, 2, 10, 0, 9, 3, 0, 6, 0, 20];
    let partial = v4(40003, Some(ones_sum(&pseudo)));
    let wrong = v4(40004, Some(0x1234));
    let v6_inner = packets::tcp_syn(&Net::v6("fd00::2", "fd00::3"), 40002, 80);
    let v6 = packets::vxlan(&Net::nodes(), 4789, 7, &v6_inner);
    // Not summed: a segment that is no SYN, a SYN leaving.
    let data = http_in_vxlan(7, b"GET / HTTP/1.1\r\n\r\n");
    for pkt in [&good, &partial, &wrong, &v6, &data] {
        assert_eq!(h.classify(pkt), Class::Vxlan);
    }
    let leaving = v4(40005, Some(0x1234));
    let run = RunPacket::new(&leaving);
    h.dp.run_tc(Direction::Egress, &run, 1).expect("tc egress");
    let mut seen: Vec<(u8, u64)> =
        h.dp.checksums()
            .expect("checksums")
            .into_iter()
            .filter(|(k, _)| k.family != 0)
            .map(|(k, n)| {
                assert_eq!(k.peer[..4], [192, 0, 2, 1], "keyed by the sender");
                assert_eq!(k.ifindex, LO);
                (k.verdict, n)
            })
            .collect();
    seen.sort();
    // Each packet ran through TC ingress and XDP: twice.
    assert_eq!(
        seen,
        vec![(CSUM_OK, 4), (CSUM_PARTIAL, 2), (CSUM_BAD, 2)],
        "IPv4 right and IPv6 right, never filled in, wrong"
    );
}

/// The benchmarks' baselines load on both hooks, pass every packet, and the
/// counter and the naive classifier count exactly what they were given: a
/// live comparison with them is a comparison with programs that work.
#[test]
fn benchmark_baselines_pass_and_count_exactly() {
    require_root!();
    let mut h = Harness::default();
    let vxlan = http_in_vxlan(42, b"GET / HTTP/1.1\r\n\r\n");
    let esp = packets::esp(&Net::nodes(), 0x1234, 7);
    let plain = packets::udp(&Net::nodes(), 1234, 53, &[0; 30]);
    let packets = [(&vxlan, 3u64), (&esp, 5), (&plain, 7)];
    let mut bytes = 0;
    for (p, n) in packets {
        bytes += p.len() as u64 * n;
    }
    let mut expected = [(0u64, 0u64); 4];
    for (hook, counter, naive, empty, pass) in [
        (
            "tc",
            BaselineProgram::TcCounter,
            BaselineProgram::TcNaive,
            BaselineProgram::Tc,
            TC_PASS,
        ),
        (
            "xdp",
            BaselineProgram::XdpCounter,
            BaselineProgram::XdpNaive,
            BaselineProgram::Xdp,
            XDP_PASS,
        ),
    ] {
        for (p, n) in packets {
            let run = RunPacket::new(p);
            for b in [counter, naive, empty, BaselineProgram::XdpTouch] {
                if b == BaselineProgram::XdpTouch && hook == "tc" {
                    continue;
                }
                let r = h.dp.run_baseline(b, &run, n as u32).expect("baseline run");
                assert_eq!(r.return_value, pass, "{b:?} on {hook}");
            }
        }
        // The counter counts everything as one; the naive classifier by class.
        expected[Class::Other as usize].0 += 15 + 7;
        expected[Class::Other as usize].1 += bytes + plain.len() as u64 * 7;
        expected[Class::Vxlan as usize].0 += 3;
        expected[Class::Vxlan as usize].1 += vxlan.len() as u64 * 3;
        expected[Class::Esp as usize].0 += 5;
        expected[Class::Esp as usize].1 += esp.len() as u64 * 5;
        let got: Vec<(u64, u64)> =
            h.dp.baseline_counts()
                .expect("reading the baselines' counts")
                .iter()
                .map(|c| (c.packets, c.bytes))
                .collect();
        assert_eq!(got, expected, "after the {hook} runs");
    }
    assert_eq!(
        h.class_counts().iter().map(|c| c.0).sum::<u64>(),
        0,
        "the baselines do not touch netobs's counters"
    );
}
