//! Hostile traffic: packets mutated from valid VXLAN, ESP and HTTP packets
//! (bit flips, truncations, corrupted length fields, garbage) through the
//! loaded TC and XDP programs, and mutated capture files and event records
//! through the userspace parsers.
//!
//! Invariants: every run passes the packet; every packet is counted in
//! exactly one class (the class counters add up to the packets sent, and
//! the TC and XDP programs, which share one parser, put each packet in the
//! same class); nothing in userspace panics.
//!
//! `NETOBS_FUZZ_PACKETS` (default 20,000, `cargo xtask fuzz` runs millions)
//! and `NETOBS_FUZZ_SEED` (default fixed; printed on failure) choose the
//! run.
use std::time::Duration;

use netobs::{
    capture::Capture,
    datapath::{
        events::{self, CapturePaths},
        testrun::RunPacket,
        Datapath, Options,
    },
};
use netobs_common::{counter_index, Class, Direction, Event, FlowKey, FlowStats};
use netobs_tests::{
    packets::{self, Net},
    require_root,
    tmp::TempPath,
};
use pcap_file::{
    pcap::{PcapHeader, PcapPacket, PcapWriter},
    pcapng::{
        blocks::{
            enhanced_packet::EnhancedPacketBlock, interface_description::InterfaceDescriptionBlock,
        },
        PcapNgWriter,
    },
    DataLink,
};

const TC_PASS: u32 = u32::MAX;
const XDP_PASS: u32 = 2;
const LO: u32 = 1;

/// splitmix64: a reproducible stream from one seed, no dependency needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Valid packets of every kind the parser knows, to mutate from.
fn seeds() -> Vec<Vec<u8>> {
    let c = Net::containers();
    let get = packets::tcp(
        &c,
        40000,
        80,
        b"GET /orders?id=7 HTTP/1.1\r\nHost: web\r\n\r\n",
    );
    let resp = packets::tcp(&c.reversed(), 80, 40000, b"HTTP/1.1 200 OK\r\n\r\n");
    let dns = packets::udp(&c, 5353, 53, b"query");
    let v6 = Net::v6("2001:db8::1", "2001:db8::2");
    vec![
        packets::tcp(&Net::nodes(), 22, 50000, b"ssh"),
        packets::udp(&Net::nodes(), 40000, 53, b"dns query"),
        packets::udp(&Net::nodes(), 7946, 7946, b"gossip"),
        packets::vxlan(&Net::nodes(), 4789, 4097, &get),
        packets::vxlan(&Net::nodes(), 4789, 4097, &resp),
        packets::vxlan(&Net::nodes(), 4789, 4098, &dns),
        packets::vxlan(&Net::nodes().with_vlans(2), 4789, 7, &get),
        packets::vxlan(&v6, 4789, 9, &get),
        packets::esp(&Net::nodes(), 0xc0ffee, 42),
        packets::esp(&v6, 0xc0ffee, 43),
        packets::esp_in_udp(&Net::nodes(), 0xbeef, 1),
        packets::ike_on_4500(&Net::nodes()),
    ]
}

/// One mutation of `p`: the kinds of damage a hostile peer or a broken
/// device produces.
fn mutate(rng: &mut Rng, p: &[u8]) -> Vec<u8> {
    let mut out = p.to_vec();
    for _ in 0..1 + rng.below(3) {
        match rng.below(6) {
            // Bit flips anywhere.
            0 => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(out.len());
                    out[i] ^= 1 << rng.below(8);
                }
            }
            // Truncation (the test run needs an Ethernet header).
            1 => {
                let keep = 14 + rng.below(out.len().saturating_sub(14) + 1);
                out.truncate(keep);
            }
            // A length or header-length field set to something else: IPv4
            // IHL and total length, the outer UDP length, IPv6 payload
            // length, the inner ethertype, IHL, total length and fragment
            // field, the inner TCP data offset, wherever the seed has them.
            2 => {
                let fields = [
                    14usize, 16, 17, 18, 19, 38, 39, 42, 43, 58, 59, 62, 64, 66, 67, 70, 96,
                ];
                let i = fields[rng.below(fields.len())];
                if i < out.len() {
                    out[i] = rng.next() as u8;
                }
            }
            // Random bytes over a random span.
            3 => {
                let start = rng.below(out.len());
                let n = 1 + rng.below(16);
                for b in out.iter_mut().skip(start).take(n) {
                    *b = rng.next() as u8;
                }
            }
            // Garbage appended.
            4 => {
                for _ in 0..rng.below(64) {
                    out.push(rng.next() as u8);
                }
            }
            // Entirely random after the Ethernet header, with a plausible
            // ethertype.
            _ => {
                let ethertypes = [[0x08, 0x00], [0x86, 0xdd], [0x81, 0x00], [0x88, 0xa8]];
                let t = ethertypes[rng.below(4)];
                out.truncate(14);
                out[12..14].copy_from_slice(&t);
                for _ in 0..rng.below(200) {
                    out.push(rng.next() as u8);
                }
            }
        }
    }
    if out.len() < 14 {
        out.resize(14, 0);
    }
    out
}

/// Packets and bytes per class and direction on the test-run interface.
fn counts(dp: &Datapath) -> Vec<(u64, u64)> {
    let c = dp.counters().expect("reading counters");
    Direction::ALL
        .iter()
        .flat_map(|d| Class::ALL.map(|class| counter_index(1, *d, class) as usize))
        .map(|i| (c[i].packets, c[i].bytes))
        .collect()
}

#[test]
fn mutated_packets_are_passed_and_counted_once_in_one_class() {
    require_root!();
    let seed = env_u64("NETOBS_FUZZ_SEED", 0x6e65_746f_6273);
    let total = env_u64("NETOBS_FUZZ_PACKETS", 20_000);
    let mut rng = Rng(seed);
    let opts = Options {
        patterns: vec![b"HTTP".to_vec(), b"passw".to_vec(), b"\x00\x00".to_vec()],
        flow_table_size: 4096,
        ..Options::default()
    };
    let mut dp = Datapath::load(&opts).expect("loading the datapath");
    dp.register_interface(LO).expect("registering lo");
    let _ring = dp.take_events().expect("event ring");
    let seeds = seeds();
    let (mut tc_runs, mut tc_bytes, mut xdp_runs) = (0u64, 0u64, 0u64);
    // Packets the kernel's test run refuses to make an skb of (an IP
    // ethertype with less than an IP header behind it): XDP only, their
    // class read from the counters one by one.
    let mut xdp_only = vec![(0u64, 0u64); Class::ALL.len()];
    for n in 0..total {
        let base = &seeds[rng.below(seeds.len())];
        let pkt = mutate(&mut rng, base);
        let why = || format!("packet {n} of seed {seed:#x}: {pkt:02x?}");
        // TC on egress, XDP on ingress: the same packet lands in the same
        // class on both sides of the counters if the programs agree.
        let before = match dp.run_tc(Direction::Egress, &RunPacket::new(&pkt), 1) {
            Ok(tc) => {
                assert_eq!(tc.return_value, TC_PASS, "tc must pass {}", why());
                tc_runs += 1;
                tc_bytes += pkt.len() as u64;
                None
            }
            Err(e) => {
                assert!(
                    pkt.len() < 14 + 40,
                    "tc run failed ({e}) on a packet the kernel should take: {}",
                    why()
                );
                Some(counts(&dp))
            }
        };
        let xdp = dp
            .run_xdp(&pkt, 1)
            .unwrap_or_else(|e| panic!("xdp run failed ({e}) on {}", why()));
        assert_eq!(xdp.return_value, XDP_PASS, "xdp must pass {}", why());
        xdp_runs += 1;
        if let Some(before) = before {
            let after = counts(&dp);
            let moved: Vec<usize> = (0..Class::ALL.len())
                .filter(|&i| after[i] != before[i])
                .collect();
            assert_eq!(moved.len(), 1, "one class for {}", why());
            xdp_only[moved[0]].0 += 1;
            xdp_only[moved[0]].1 += pkt.len() as u64;
        }
        // Per class, egress (TC) and ingress (XDP) must stay equal: checked
        // now and then, so that a disagreement names a packet near it.
        if n % 1000 == 999 || n + 1 == total {
            let c = counts(&dp);
            let (ingress, egress) = c.split_at(Class::ALL.len());
            for (i, class) in Class::ALL.iter().enumerate() {
                assert_eq!(
                    (egress[i].0 + xdp_only[i].0, egress[i].1 + xdp_only[i].1),
                    ingress[i],
                    "TC and XDP disagree on class {} within the 1000 packets before {}",
                    class.name(),
                    why()
                );
            }
            let packets: u64 = egress.iter().map(|c| c.0).sum();
            let bytes: u64 = egress.iter().map(|c| c.1).sum();
            assert_eq!(
                packets, tc_runs,
                "every packet counted once (seed {seed:#x})"
            );
            assert_eq!(bytes, tc_bytes, "every byte counted once (seed {seed:#x})");
        }
    }
    let c = counts(&dp);
    let ingress_packets: u64 = c[..Class::ALL.len()].iter().map(|c| c.0).sum();
    assert_eq!(ingress_packets, xdp_runs);
    // Every class was reached: the mutations exercise the whole parser.
    for (i, class) in Class::ALL.iter().enumerate() {
        assert!(c[i].0 > 0, "no packet classified {}", class.name());
    }
    // The flow table holds only overlay flows and stays readable.
    let flows = dp.flows().expect("reading flows");
    assert!(!flows.is_empty() && flows.len() <= 4096);
    for (k, _) in &flows {
        assert!(
            k.class == Class::Vxlan as u8 || k.class == Class::Esp as u8,
            "flow of class {}",
            k.class
        );
    }
    println!(
        "{total} mutated packets (seed {seed:#x}): {tc_runs} through tc, {xdp_runs} through xdp, \
         {} flows",
        flows.len()
    );
}

/// Each seed with one field the fast path decides on set to each of its
/// values: the 16-bit lengths (outer IPv4 total, UDP length, inner IPv4
/// total) to every value up to the packet's length and a little past it;
/// the UDP ports to the ones either parser decides on and a few others;
/// the bytes (outer and inner version/IHL, protocols, fragment fields,
/// inner ethertype, VXLAN flags, TCP data offset) to all 256.
fn sweep(seeds: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    // The seeds the fast path takes: IPv4 without options or tags.
    let common = seeds.iter().filter(|p| p[12..15] == [0x08, 0x00, 0x45]);
    for seed in common {
        let mut set16 = |at: usize, v: u16| {
            if at + 2 <= seed.len() {
                let mut p = seed.clone();
                p[at..at + 2].copy_from_slice(&v.to_be_bytes());
                out.push(p);
            }
        };
        for at in [16usize, 38, 66] {
            for v in 0..=seed.len() as u16 + 4 {
                set16(at, v);
            }
        }
        // The outer UDP ports: the ones the parsers decide on, and others.
        for at in [34usize, 36] {
            for v in [0u16, 53, 4500, 4789, 4790, 7946, 8472, 65535] {
                set16(at, v);
            }
        }
        for at in [12usize, 14, 20, 21, 23, 42, 62, 63, 64, 70, 71, 73, 96] {
            for v in 0..=255u8 {
                if at < seed.len() {
                    let mut p = seed.clone();
                    p[at] = v;
                    out.push(p);
                }
            }
        }
    }
    out
}

/// A map's entries in one order (their keys have no `Ord`).
fn by_key<K: std::fmt::Debug, V>(mut v: Vec<(K, V)>) -> Vec<(K, V)> {
    v.sort_by_key(|(k, _)| format!("{k:?}"));
    v
}

/// What a datapath made of the packets: counters per class, and every
/// flow with its counts (times left out: two loads never share a clock
/// reading), in key order.
type Outcome = (Vec<(u64, u64)>, Vec<(FlowKey, FlowStats)>);

fn outcome(dp: &Datapath) -> Outcome {
    let mut flows: Vec<(FlowKey, FlowStats)> = dp
        .flows()
        .expect("reading flows")
        .into_iter()
        .map(|(k, mut s)| {
            s.first_seen_ns = 0;
            s.last_seen_ns = 0;
            (k, s)
        })
        .collect();
    flows.sort_by(|a, b| a.0.words().cmp(b.0.words()));
    (counts(dp), flows)
}

/// The fixed-offset parser for the common layout (`fast_parse` in the
/// kernel) must give every packet the class, key and payload verdicts the
/// general parser gives: the same mutated packets through a datapath with
/// it and one without, the classes compared every 64 packets, the flows
/// (keys, packet, byte, HTTP, pattern, flag and ESP counts), the inner SYN
/// checksum verdicts and the gossip counts at the end.
#[test]
fn fast_and_general_parsers_agree() {
    require_root!();
    let seed = env_u64("NETOBS_FUZZ_SEED", 0x6661_7374);
    let total = env_u64("NETOBS_FUZZ_PACKETS", 20_000);
    let mut rng = Rng(seed);
    let opts = Options {
        patterns: vec![b"HTTP".to_vec(), b"passw".to_vec(), b"\x00\x00".to_vec()],
        flow_table_size: 65_536,
        new_flow_events: false,
        http_events: false,
        ..Options::default()
    };
    let mut fast = Datapath::load(&opts).expect("loading the datapath");
    let mut general = Datapath::load(&Options {
        fast_path: false,
        ..opts
    })
    .expect("loading the datapath without the fast path");
    fast.register_interface(LO).expect("registering lo");
    general.register_interface(LO).expect("registering lo");
    let mut seeds = seeds();
    // An inner SYN: the checksum program parses it again.
    seeds.push(packets::vxlan(
        &Net::nodes(),
        4789,
        4097,
        &packets::tcp_syn(&Net::containers(), 40000, 80),
    ));
    // Every value of each field the fast path decides on, in every seed,
    // then random mutations.
    let swept = sweep(&seeds);
    let mut fast_runs = 0u64;
    for n in 0..swept.len() as u64 + total {
        let pkt = match swept.get(n as usize) {
            Some(p) => p.clone(),
            None => {
                let base = &seeds[rng.below(seeds.len())];
                mutate(&mut rng, base)
            }
        };
        let why = || format!("packet {n} of seed {seed:#x}: {pkt:02x?}");
        let run = RunPacket::new(&pkt);
        for dp in [&mut fast, &mut general] {
            // Refused by the kernel's test run for both alike (see above).
            let _ = dp.run_tc(Direction::Ingress, &run, 1);
            dp.run_xdp(&pkt, 1)
                .unwrap_or_else(|e| panic!("xdp run failed ({e}) on {}", why()));
        }
        fast_runs += 1;
        // Checked now and then (a read costs more than four runs): a
        // disagreement names the last packet of the window it is in.
        if n % 64 == 63 {
            assert_eq!(
                counts(&fast),
                counts(&general),
                "class of one of the 64 packets up to {}",
                why()
            );
        }
    }
    let (f, g) = (outcome(&fast), outcome(&general));
    assert_eq!(f.0, g.0, "counters (seed {seed:#x})");
    assert_eq!(f.1.len(), g.1.len(), "number of flows (seed {seed:#x})");
    for (a, b) in f.1.iter().zip(&g.1) {
        assert_eq!(a, b, "flow (seed {seed:#x})");
    }
    let fc = by_key(fast.checksums().expect("checksums"));
    let gc = by_key(general.checksums().expect("checksums"));
    assert_eq!(fc, gc, "inner SYN checksum verdicts (seed {seed:#x})");
    let fg = by_key(fast.gossip().expect("gossip"));
    let gg = by_key(general.gossip().expect("gossip"));
    assert_eq!(fg, gg, "gossip per peer (seed {seed:#x})");
    // The comparison saw overlay flows of both kinds and SYN verdicts.
    let vxlan =
        f.1.iter()
            .filter(|(k, _)| k.class == Class::Vxlan as u8)
            .count();
    let esp =
        f.1.iter()
            .filter(|(k, _)| k.class == Class::Esp as u8)
            .count();
    assert!(vxlan > 0 && esp > 0 && !fc.is_empty() && !fg.is_empty());
    println!(
        "{fast_runs} mutated packets (seed {seed:#x}) agree: {vxlan} VXLAN and {esp} ESP flows, \
         {} checksum verdicts",
        fc.len()
    );
}

#[test]
fn event_records_of_any_shape_decode_or_are_refused() {
    let mut rng = Rng(env_u64("NETOBS_FUZZ_SEED", 7));
    for _ in 0..20_000 {
        let len = rng.below(2 * size_of::<Event>());
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        match events::decode(&bytes) {
            Some(e) => {
                assert!(len >= size_of::<Event>());
                // Rendering a hostile record is bounded and never panics.
                for paths in [CapturePaths::Redacted, CapturePaths::Full] {
                    let text = events::snippet(&e, paths);
                    assert!(text.len() <= 16 * netobs_common::SNIPPET_LEN);
                }
            }
            None => assert!(len < size_of::<Event>()),
        }
    }
}

fn valid_captures() -> (Vec<u8>, Vec<u8>) {
    let frames = seeds();
    let mut pcap = Vec::new();
    let mut w = PcapWriter::with_header(
        &mut pcap,
        PcapHeader {
            datalink: DataLink::ETHERNET,
            ..PcapHeader::default()
        },
    )
    .expect("pcap header");
    for (i, f) in frames.iter().enumerate() {
        w.write_packet(&PcapPacket::new(
            Duration::from_micros(i as u64),
            f.len() as u32,
            f,
        ))
        .expect("pcap record");
    }
    let mut ng = Vec::new();
    let mut w = PcapNgWriter::new(&mut ng).expect("pcapng header");
    for link in [DataLink::ETHERNET, DataLink::LINUX_SLL] {
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: link,
            snaplen: 0xffff,
            options: vec![],
        })
        .expect("pcapng interface");
    }
    for (i, f) in frames.iter().enumerate() {
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: (i % 2) as u32,
            timestamp: Duration::from_micros(i as u64),
            original_len: f.len() as u32,
            data: f.as_slice().into(),
            options: vec![],
        })
        .expect("pcapng packet");
    }
    (pcap, ng)
}

#[test]
fn mutated_capture_files_give_frames_or_one_error() {
    let mut rng = Rng(env_u64("NETOBS_FUZZ_SEED", 11));
    let (pcap, ng) = valid_captures();
    let tmp = TempPath::new("fuzz.cap");
    let path = tmp.path();
    for n in 0..2000 {
        let base = if n % 2 == 0 { &pcap } else { &ng };
        let mut bytes = base.clone();
        match rng.below(4) {
            0 => bytes.truncate(rng.below(bytes.len())),
            1 => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(bytes.len());
                    bytes[i] ^= 1 << rng.below(8);
                }
            }
            // A length field (record or block) made huge.
            2 => {
                let i = rng.below(bytes.len().saturating_sub(4));
                bytes[i..i + 4].copy_from_slice(&(rng.next() as u32 | 0x0100_0000).to_le_bytes());
            }
            _ => {
                let i = rng.below(bytes.len());
                bytes[i] = rng.next() as u8;
            }
        }
        std::fs::write(path, &bytes).expect("writing the capture");
        let Ok(mut cap) = Capture::open(path) else {
            continue;
        };
        let (mut frames, mut errors) = (0u64, 0u64);
        while let Some(f) = cap.next_frame() {
            match f {
                Ok(_) => frames += 1,
                Err(e) => {
                    errors += 1;
                    assert!(!e.to_string().contains('\n'), "one-line error: {e}");
                }
            }
        }
        assert!(errors <= 1, "a damaged file ends with one error");
        // A record takes at least a 16-byte header: no frames out of nowhere.
        assert!(frames <= bytes.len() as u64 / 16, "{frames} frames");
    }
}
