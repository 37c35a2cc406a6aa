//! `netobs replay` end to end: captures written here, replayed by the real
//! binary, counts checked against what was written and against tcpdump's own
//! decoding of the same file.
use std::{fs::File, path::Path, process::Command, time::Duration};

use netobs::{api::Class, replay::ReplayReport};
use netobs_tests::{
    packets::{self, Net},
    require_root,
    tmp::TempPath,
};
use pcap_file::{
    pcap::{PcapHeader, PcapPacket, PcapWriter},
    DataLink,
};

/// A capture file the test writes, removed when the test ends.
fn write_capture(name: &str, link: DataLink, frames: &[Vec<u8>]) -> TempPath {
    let cap = TempPath::new(&format!("test-{name}.pcap"));
    let file = File::create(cap.path()).expect("creating the capture");
    let header = PcapHeader {
        datalink: link,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(file, header).expect("pcap header");
    for (i, f) in frames.iter().enumerate() {
        let ts = Duration::from_micros(1_700_000_000_000_000 + i as u64);
        w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
            .expect("pcap record");
    }
    cap
}

fn netobs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_netobs"))
}

fn replay_json(path: &Path, extra: &[&str]) -> ReplayReport {
    let out = netobs()
        .arg("replay")
        .arg("--json")
        .args(extra)
        .arg(path)
        .output()
        .expect("running netobs");
    assert!(
        out.status.success(),
        "netobs replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("replay --json prints one JSON object")
}

/// Packets of each class, in `Class::ALL` order (other, vxlan, esp,
/// malformed).
fn packets_by_class(r: &ReplayReport) -> [u64; 4] {
    Class::ALL.map(|c| r.totals.classes.get(c).packets)
}

/// Lines of tcpdump's own decoding of `path` that contain `needle`.
fn tcpdump_count(path: &Path, needle: &str) -> u64 {
    let out = Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(path)
        .output()
        .expect("running tcpdump (apt-get install tcpdump)");
    assert!(
        out.status.success(),
        "tcpdump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(needle))
        .count() as u64
}

fn http(method: &str, vni: u32, outer: &Net) -> Vec<u8> {
    let req = format!("{method} /index.html HTTP/1.1\r\nHost: web\r\n\r\n");
    let inner = packets::tcp(&Net::containers(), 41000, 80, req.as_bytes());
    packets::vxlan(outer, 4789, vni, &inner)
}

/// Valid traffic only: every packet is something tcpdump decodes too.
fn clean_traffic() -> Vec<Vec<u8>> {
    let v6 = Net::v6("2001:db8::1", "2001:db8::2");
    let mut f = Vec::new();
    for i in 0..5 {
        f.push(http("GET", 4097, &Net::nodes()));
        f.push(packets::vxlan(
            &Net::nodes().reversed(),
            4789,
            4097,
            &packets::tcp(
                &Net::containers().reversed(),
                80,
                41000,
                b"HTTP/1.1 200 OK\r\n\r\n",
            ),
        ));
        f.push(packets::vxlan(
            &v6,
            4789,
            4098,
            &packets::udp(&Net::containers(), 5000, 53, &[i; 20]),
        ));
    }
    f.push(http("POST", 4099, &Net::nodes().with_vlans(1)));
    for seq in 1..=4 {
        f.push(packets::esp(&Net::nodes(), 0x1000_0001, seq));
        f.push(packets::esp_in_udp(&Net::nodes(), 0x1000_0002, seq));
    }
    f.push(packets::esp(&v6, 0x1000_0003, 1));
    for _ in 0..3 {
        f.push(packets::tcp(
            &Net::nodes(),
            2377,
            50000,
            b"swarm control plane",
        ));
        f.push(packets::ike_on_4500(&Net::nodes()));
    }
    f
}

#[test]
fn replay_counts_match_construction_and_tcpdump() {
    require_root!();
    let cap = write_capture("clean", DataLink::ETHERNET, &clean_traffic());
    let r = replay_json(cap.path(), &[]);
    assert_eq!(r.packets, 31);
    assert_eq!(packets_by_class(&r), [6, 16, 9, 0]);
    assert_eq!(
        r.totals.vnis,
        [(4097, 10), (4098, 5), (4099, 1)].into(),
        "packets per VNI"
    );
    let http = &r.totals.http;
    assert_eq!((http.requests, http.responses), (6, 5));
    assert_eq!(
        http.methods,
        [("GET".to_owned(), 5), ("POST".to_owned(), 1)].into()
    );
    let esp_flows: Vec<_> = r.flows.iter().filter(|f| f.class == Class::Esp).collect();
    assert_eq!(esp_flows.len(), 3, "one flow per SPI and address pair");
    assert!(esp_flows
        .iter()
        .any(|f| f.spi == Some(0x1000_0002) && f.esp_in_udp == Some(true) && f.esp_seq == Some(4)));
    // tcpdump decodes the same file on its own.
    assert_eq!(
        tcpdump_count(cap.path(), "VXLAN"),
        16,
        "tcpdump's VXLAN count"
    );
    assert_eq!(
        tcpdump_count(cap.path(), "ESP(spi="),
        9,
        "tcpdump's ESP count"
    );
}

#[test]
fn replay_counts_malformed_packets_and_other_link_types() {
    require_root!();
    let mut frames = clean_traffic();
    let mut bad = http("GET", 7, &Net::nodes());
    bad[14] = 0x4f; // IHL 15: the options would run into the UDP header
    frames.push(bad);
    let mut no_i = http("GET", 7, &Net::nodes());
    no_i[14 + 20 + 8] = 0;
    frames.push(no_i);
    frames.push(packets::udp(&Net::nodes(), 1, 4789, &[8, 0, 0]));
    frames.push(vec![0u8; 9]);
    let cap = write_capture("mixed", DataLink::ETHERNET, &frames);
    let r = replay_json(cap.path(), &[]);
    assert_eq!(r.packets, 35);
    assert_eq!(packets_by_class(&r), [6, 16, 9, 4]);

    // The same traffic as `tcpdump -i any` writes it (Linux cooked).
    let sll: Vec<Vec<u8>> = clean_traffic()
        .into_iter()
        .map(|f| {
            let mut rec = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 0x0a, 0, 0];
            rec.extend_from_slice(&f[12..14]);
            rec.extend_from_slice(&f[14..]);
            rec
        })
        .collect();
    let cap = write_capture("sll", DataLink::LINUX_SLL, &sll);
    let r = replay_json(cap.path(), &[]);
    assert_eq!(packets_by_class(&r), [6, 16, 9, 0]);

    // 802.11 frames are not guessed at: counted as skipped.
    let cap = write_capture(
        "wifi",
        DataLink::IEEE802_11,
        &[vec![0u8; 40], vec![0u8; 40]],
    );
    let r = replay_json(cap.path(), &[]);
    assert_eq!(r.packets, 0);
    assert_eq!(r.skipped.unsupported_link_type, 2);
}

#[test]
fn replay_honours_data_path_ports_and_patterns() {
    require_root!();
    let inner = packets::tcp(
        &Net::containers(),
        41000,
        8080,
        b"GET /login?user=x HTTP/1.1\r\n\r\n",
    );
    let frames = vec![
        packets::vxlan(&Net::nodes(), 7789, 11, &inner),
        packets::vxlan(&Net::nodes(), 4789, 12, &inner),
    ];
    let cap = write_capture("ports", DataLink::ETHERNET, &frames);
    let r = replay_json(
        cap.path(),
        &["--data-path-port", "7789", "--pattern", "login"],
    );
    assert_eq!(packets_by_class(&r), [1, 1, 0, 0]);
    assert_eq!(r.totals.vnis, [(11, 1)].into());
    assert_eq!(r.totals.patterns, [("login".to_owned(), 1)].into());
}

#[test]
fn bad_captures_get_one_line_errors() {
    // No privileges needed: the file is checked before anything is loaded.
    let dir = std::env::temp_dir();
    let run = |path: &Path| {
        let out = netobs()
            .arg("replay")
            .arg(path)
            .output()
            .expect("running netobs");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "must fail on {path:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(!err.contains("panicked"), "{err}");
        err
    };
    let missing = dir.join("netobs-test-does-not-exist.pcap");
    assert!(run(&missing).contains("cannot open"));

    let junk = TempPath::new("test-junk.pcap");
    std::fs::write(junk.path(), b"this is not a capture at all").expect("writing junk");
    let err = run(junk.path());
    assert!(err.contains("not a pcap or pcapng"), "{err}");
}

/// tcpdump killed while writing leaves a last record cut short: the records
/// before it are counted exactly, the damage is named in one line, and the
/// exit status says the file was not whole.
#[test]
fn a_capture_cut_short_gives_its_good_records_and_one_line() {
    require_root!();
    let mut frames = clean_traffic();
    let last = packets::udp(&Net::nodes(), 40000, 4789, &[0u8; 200]);
    frames.push(last.clone());
    let cap = write_capture("cut", DataLink::ETHERNET, &frames);
    let len = std::fs::metadata(cap.path()).expect("capture").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(cap.path())
        .expect("opening the capture");
    file.set_len(len - last.len() as u64 / 2)
        .expect("cutting the last record");
    let out = netobs()
        .args(["replay", "--json"])
        .arg(cap.path())
        .output()
        .expect("running netobs");
    assert_eq!(out.status.code(), Some(1), "a damaged file is an error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("is damaged after 31 records") && err.contains("31 packets before it"),
        "{err}"
    );
    let r: ReplayReport = serde_json::from_slice(&out.stdout).expect("the report still");
    assert_eq!(r.packets, 31);
    assert_eq!(
        packets_by_class(&r),
        [6, 16, 9, 0],
        "the clean part, exactly"
    );
    assert_eq!(r.totals.http.requests, 6);
    assert!(r
        .damaged
        .is_some_and(|d| d.contains("damaged after 31 records")));
}

/// A pcap record and a pcapng block that each claim about 2 GiB.
fn huge_length_captures() -> [(&'static str, Vec<u8>); 2] {
    let mut pcap = Vec::new();
    for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 0x7fff_ffff, 1] {
        pcap.extend_from_slice(&v.to_le_bytes());
    }
    for v in [1u32, 0, 0x7fff_fff0, 0x7fff_fff0] {
        pcap.extend_from_slice(&v.to_le_bytes());
    }
    pcap.extend_from_slice(&[0; 100]);
    let mut ng = Vec::new();
    // Section header block, then an enhanced packet block of ~2 GiB.
    for v in [0x0a0d_0d0au32, 28, 0x1a2b_3c4d, 0x0000_0001] {
        ng.extend_from_slice(&v.to_le_bytes());
    }
    ng.extend_from_slice(&(-1i64).to_le_bytes());
    ng.extend_from_slice(&28u32.to_le_bytes());
    for v in [6u32, 0x7fff_fff0] {
        ng.extend_from_slice(&v.to_le_bytes());
    }
    ng.extend_from_slice(&[0; 64]);
    [("pcap", pcap), ("pcapng", ng)]
}

#[test]
fn huge_lengths_in_a_capture_are_an_error_not_an_allocation() {
    for (kind, bytes) in huge_length_captures() {
        let tmp = TempPath::new(&format!("test-huge.{kind}"));
        let path = tmp.path();
        std::fs::write(path, &bytes).expect("writing the capture");
        // Reaped below with wait4, which also gives its peak memory.
        #[allow(clippy::zombie_processes)]
        let child = netobs()
            .arg("replay")
            .arg(path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("running netobs");
        let pid = child.id() as i32;
        let mut status = 0;
        // SAFETY: zeroed rusage is valid; pid is our unreaped child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        assert_eq!(reaped, pid);
        let mut err = String::new();
        use std::io::Read;
        if let Some(mut e) = child.stderr {
            let _ = e.read_to_string(&mut err);
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 1,
            "{kind}: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(err.contains("damaged after 0 records"), "{kind}: {err}");
        let peak_mib = usage.ru_maxrss / 1024;
        assert!(peak_mib < 100, "{kind}: {peak_mib} MiB for a 2 GiB claim");
    }
}

#[test]
fn truncated_capture_reports_damage_after_the_good_records() {
    require_root!();
    let cap = write_capture("truncated", DataLink::ETHERNET, &clean_traffic());
    let bytes = std::fs::read(cap.path()).expect("reading capture");
    std::fs::write(cap.path(), &bytes[..bytes.len() - 30]).expect("truncating capture");
    let out = netobs()
        .arg("replay")
        .arg(cap.path())
        .output()
        .expect("running netobs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("damaged after 30 records"), "{err}");
}
