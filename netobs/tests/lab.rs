//! `netobs run` on a real interface: two namespaces, a veth underlay, kernel
//! VXLAN between them, real HTTP over the overlay and real ESP injected.
//! Counts must equal what crossed the interface, and nothing may be left
//! attached afterwards.
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    os::unix::process::ExitStatusExt,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use aya::programs::{tc::TcAttachType, SchedClassifier};
use netobs::api::{Class, RunReport};
use netobs_tests::{
    bpffs::BpfFs,
    esp::{EspInjector, EspSa, NEXT_HEADER_IPV4},
    lab::{self, LabConfig, Process, TwoHostLab},
    link,
    netns::Netns,
    packets::{self, Net},
    require_root,
    tmp::TempPath,
    tmux::Tmux,
    traffic::{http_get, http_request, udp_send, HttpServer},
};
use serde_json::Value;

const HTTP_PORT: u16 = 8080;
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "HEAD"];
const UDP_DATAGRAMS: usize = 20;
const ESP_PACKETS: u32 = 6;
const ESP_IN_UDP_PACKETS: u32 = 4;
const IKE_PACKETS: usize = 2;
const ETH_HLEN: u64 = 14;

/// netobs attached to host A's underlay, with its stdout lines collected.
struct Agent {
    proc: Process,
    lines: mpsc::Receiver<String>,
    /// Lines read while waiting for something else.
    backlog: std::cell::RefCell<Vec<String>>,
}

impl Agent {
    fn start(lab: &TwoHostLab, mode: &str) -> Agent {
        let (ns, dev) = lab.host_a();
        Agent::start_on(ns, dev, mode)
    }

    fn start_on(ns: &Netns, dev: &str, mode: &str) -> Agent {
        Agent::start_with(ns, dev, mode, &[])
    }

    fn start_with(ns: &Netns, dev: &str, mode: &str, extra: &[&str]) -> Agent {
        let mut cmd = ns.command(env!("CARGO_BIN_EXE_netobs"));
        cmd.args([
            "run",
            "--no-docker",
            "--iface",
            dev,
            "--mode",
            mode,
            "--json",
            "--interval",
            "1",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut proc = Process::spawn(cmd).expect("starting netobs");
        let child = proc.child_mut();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("netobs: {l}");
                let _ = tx2.send(format!("stderr: {l}"));
            }
        });
        let agent = Agent {
            proc,
            lines,
            backlog: Default::default(),
        };
        agent.wait_for(|l| l.contains("watching"), "netobs to attach");
        agent
    }

    /// The first line, already read or still to come, for which `pred`
    /// holds; fails after 60 s.
    fn wait_for(&self, pred: impl Fn(&str) -> bool, what: &str) -> String {
        let mut backlog = self.backlog.borrow_mut();
        if let Some(i) = backlog.iter().position(|l| pred(l)) {
            return backlog.remove(i);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if pred(&l) => return l,
                Ok(l) if l.starts_with("stderr:") && l.contains("error") => {
                    panic!("netobs failed: {l}")
                }
                Ok(l) => backlog.push(l),
                Err(e) => panic!("waiting for {what}: {e}"),
            }
        }
    }

    /// SIGINT, then the final JSON line.
    fn stop(self) -> RunReport {
        self.stop_with(libc::SIGINT)
    }

    /// `signal` (SIGINT or SIGTERM), then the final JSON line.
    fn stop_with(self, signal: i32) -> RunReport {
        let Agent { proc, lines, .. } = self;
        let out = proc.stop(signal).expect("stopping netobs");
        assert!(out.status.success(), "netobs exited with {}", out.status);
        // The reader threads may still be forwarding the last lines: read
        // until both pipes are closed (their senders dropped).
        let mut last = None;
        while let Ok(l) = lines.recv_timeout(Duration::from_secs(10)) {
            if l.starts_with('{') {
                last = Some(l);
            }
        }
        let last = last.expect("netobs printed no JSON");
        let v: RunReport = serde_json::from_str(&last).expect("final JSON line");
        assert!(v.last, "the last line is the final one");
        v
    }
}

/// The first interface's counts of one direction (`ingress`, `egress`).
fn by_class(v: &RunReport, dir: &str) -> netobs::api::ClassCounts {
    let i = &v.totals.interfaces[0];
    match dir {
        "egress" => i.egress,
        "ingress" => i.ingress,
        _ => panic!("no direction {dir}"),
    }
}

fn counts(v: &RunReport, dir: &str, class: &str) -> (u64, u64) {
    let class = Class::ALL
        .into_iter()
        .find(|c| c.name() == class)
        .unwrap_or_else(|| panic!("no class {class}"));
    let c = by_class(v, dir).get(class);
    (c.packets, c.bytes)
}

fn total(v: &RunReport, dir: &str) -> (u64, u64) {
    let t = by_class(v, dir).total();
    (t.packets, t.bytes)
}

/// Names of the programs on host A's underlay: its TCX hooks (asked of
/// the kernel in the namespace: the bpftool of Debian 12 predates TCX) and
/// its XDP hook.
fn attached(lab: &TwoHostLab) -> Vec<String> {
    let (ns, dev) = lab.host_a();
    attached_on(ns, dev)
}

fn attached_on(ns: &Netns, dev: &str) -> Vec<String> {
    let name = dev.to_owned();
    let mut out = ns
        .run_in(move || {
            [TcAttachType::Ingress, TcAttachType::Egress]
                .into_iter()
                .flat_map(|at| {
                    let (_, progs) = SchedClassifier::query_tcx(&name, at).expect("TCX query");
                    progs
                        .iter()
                        .map(|p| p.name_as_str().unwrap_or("?").to_owned())
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        })
        .expect("querying in the namespace");
    let link = ns.ip(&["-d", "link", "show", dev]).expect("ip link");
    let text = String::from_utf8_lossy(&link.stdout).into_owned();
    if let Some(id) = text
        .split("prog/xdp id ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
    {
        let p = ns
            .exec(&["bpftool", "prog", "show", "id", id, "--json"])
            .expect("bpftool prog");
        let v: Value = serde_json::from_slice(&p.stdout).unwrap_or(Value::Null);
        out.push(v["name"].as_str().unwrap_or("xdp program").to_owned());
    }
    out
}

/// No program of ours left on the interface: no TCX/tc filter, no XDP, no
/// clsact qdisc.
fn assert_nothing_attached(lab: &TwoHostLab) {
    let (ns, dev) = lab.host_a();
    let left = attached_on(ns, dev);
    assert!(left.is_empty(), "programs left on {dev}: {left:?}");
    let link = ns.ip(&["-d", "link", "show", dev]).expect("ip link");
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "XDP left on {dev}"
    );
    let qdisc = ns
        .exec(&["tc", "qdisc", "show", "dev", dev])
        .expect("tc qdisc");
    assert!(
        !String::from_utf8_lossy(&qdisc.stdout).contains("clsact"),
        "clsact qdisc left on {dev}"
    );
    for hook in ["ingress", "egress"] {
        let f = ns
            .exec(&["tc", "filter", "show", "dev", dev, hook])
            .expect("tc filter");
        assert!(f.stdout.is_empty(), "tc filter left on {dev} {hook}");
    }
}

fn lab_counts_exactly(mode: &str, extra: &[&str]) {
    let lab = TwoHostLab::new(LabConfig::default()).expect("building the lab");
    let (a, dev_a) = lab.host_a();
    let server_addr: SocketAddr = format!("{}:{HTTP_PORT}", lab::OVERLAY_B)
        .parse()
        .expect("addr");
    let server = HttpServer::start(&lab.b, server_addr).expect("HTTP server");
    let injector = EspInjector::new(&lab.b).expect("ESP injector");

    let agent = Agent::start_with(a, dev_a, mode, extra);
    let link_before = link::stats(a, dev_a).expect("link stats");
    let vx_before = link::stats(a, lab::OVERLAY_DEV).expect("vxlan stats");

    for m in METHODS {
        let status =
            http_request(a, server_addr, m, "/index.html?user=alice").expect("HTTP request");
        assert_eq!(status, 200);
    }
    udp_send(
        a,
        format!("{}:9999", lab::OVERLAY_B).parse().expect("addr"),
        UDP_DATAGRAMS,
        200,
    )
    .expect("UDP");
    let sa = EspSa::new(0xd0c0_0001, [0x42; 16], [9, 9, 9, 9]);
    let inner = &packets::udp(&Net::containers(), 5000, 6000, b"secret payload")[14..];
    let node_a: Ipv4Addr = lab::UNDERLAY_A.parse().expect("addr");
    for seq in 1..=ESP_PACKETS {
        injector
            .send_esp(
                node_a,
                &sa.seal(seq, inner, NEXT_HEADER_IPV4).expect("seal"),
            )
            .expect("ESP");
    }
    let sa_udp = EspSa::new(0xd0c0_0002, [0x43; 16], [8, 8, 8, 8]);
    for seq in 1..=ESP_IN_UDP_PACKETS {
        injector
            .send_esp_in_udp(
                node_a,
                &sa_udp.seal(seq, inner, NEXT_HEADER_IPV4).expect("seal"),
            )
            .expect("ESP-in-UDP");
    }
    for _ in 0..IKE_PACKETS {
        injector.send_ike(node_a).expect("IKE");
    }
    // Let the last packets (FINs, ICMP errors) settle, then read the link.
    std::thread::sleep(Duration::from_millis(300));
    let link_after = link::stats(a, dev_a).expect("link stats");
    let vx_after = link::stats(a, lab::OVERLAY_DEV).expect("vxlan stats");
    let v = agent.stop();

    // Everything that crossed the interface, counted once, bytes as whole
    // Ethernet frames. With XDP attached, veth's receive path counts bytes
    // from the network header, 14 fewer per frame than went on the wire.
    let rx_packets = link_after.rx_packets - link_before.rx_packets;
    let rx_bytes = link_after.rx_bytes - link_before.rx_bytes;
    let rx_frame_bytes = if mode == "xdp" {
        rx_bytes + ETH_HLEN * rx_packets
    } else {
        rx_bytes
    };
    assert_eq!(
        total(&v, "ingress"),
        (rx_packets, rx_frame_bytes),
        "ingress totals vs link counters"
    );
    assert_eq!(
        total(&v, "egress"),
        (
            link_after.tx_packets - link_before.tx_packets,
            link_after.tx_bytes - link_before.tx_bytes
        ),
        "egress totals vs link counters"
    );
    // VXLAN: exactly what the kernel's VXLAN device sent and received.
    assert_eq!(
        counts(&v, "egress", "vxlan").0,
        vx_after.tx_packets - vx_before.tx_packets,
        "VXLAN out"
    );
    assert_eq!(
        counts(&v, "ingress", "vxlan").0,
        vx_after.rx_packets - vx_before.rx_packets,
        "VXLAN in"
    );
    assert!(counts(&v, "egress", "vxlan").0 >= (METHODS.len() * 3 + UDP_DATAGRAMS) as u64);
    // ESP: exactly the packets injected.
    assert_eq!(
        counts(&v, "ingress", "esp").0,
        (ESP_PACKETS + ESP_IN_UDP_PACKETS) as u64
    );
    assert_eq!(counts(&v, "egress", "esp").0, 0);
    assert_eq!(counts(&v, "ingress", "malformed").0, 0);
    assert_eq!(counts(&v, "egress", "malformed").0, 0);
    // HTTP: the requests the server answered, with their methods.
    let mut served = server.methods();
    served.sort();
    let mut sent: Vec<String> = METHODS.iter().map(|m| m.to_string()).collect();
    sent.sort();
    assert_eq!(served, sent);
    let http = &v.totals.http;
    assert_eq!(http.requests, METHODS.len() as u64);
    assert_eq!(http.responses, METHODS.len() as u64);
    assert_eq!(
        http.methods,
        METHODS.iter().map(|m| (m.to_string(), 1)).collect(),
        "one request of each method"
    );
    // Every VXLAN packet either way is on the lab's one VNI.
    assert_eq!(
        v.totals.vnis,
        [(
            4097,
            counts(&v, "egress", "vxlan").0 + counts(&v, "ingress", "vxlan").0
        )]
        .into()
    );
    assert_nothing_attached(&lab);
}

#[test]
fn tc_mode_counts_exactly_and_detaches() {
    require_root!();
    lab_counts_exactly("tc", &[]);
}

#[test]
fn xdp_mode_counts_exactly_and_detaches() {
    require_root!();
    lab_counts_exactly("xdp", &[]);
}

/// The tc filter API of kernels before 6.6, forced on this one.
#[test]
fn netlink_tc_counts_exactly_and_detaches() {
    require_root!();
    lab_counts_exactly("tc", &["--tc-api", "netlink"]);
}

#[test]
fn missing_interface_is_one_clear_line() {
    require_root!();
    let out = Command::new(env!("CARGO_BIN_EXE_netobs"))
        .args(["run", "--iface", "netobs-no-such-if0"])
        .output()
        .expect("running netobs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("netobs-no-such-if0") && lines[0].contains("does not exist"),
        "{err}"
    );
}

#[test]
fn missing_capabilities_are_named_in_one_line() {
    require_root!();
    // Root without CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN.
    let out = Command::new("capsh")
        .args(["--drop=cap_bpf,cap_perfmon,cap_sys_admin", "--"])
        .arg("-c")
        .arg(format!(
            "{} run --iface lo --no-docker",
            env!("CARGO_BIN_EXE_netobs")
        ))
        .output()
        .expect("running capsh (apt-get install libcap2-bin)");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("lacks CAP_BPF, CAP_PERFMON"), "{err}");
}

#[test]
fn the_cli_without_an_agent_says_how_to_start_one() {
    // Nothing listens on port 1 of loopback; no privileges needed. The
    // audit's "could not run" is its exit status 2.
    for (cmd, code) in [("flows", 1), ("services", 1), ("audit", 2)] {
        let out = Command::new(env!("CARGO_BIN_EXE_netobs"))
            .args([cmd, "--agent", "127.0.0.1:1"])
            .output()
            .expect("running netobs");
        assert_eq!(out.status.code(), Some(code), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.lines().filter(|l| !l.is_empty()).count(),
            1,
            "{cmd}: {err}"
        );
        assert!(
            err.contains("no netobs agent answers at 127.0.0.1:1") && err.contains("netobs run"),
            "{cmd}: {err}"
        );
    }
}

/// SIGKILL gives the agent no chance to clean up: its attachments are
/// kernel links that die with its file descriptors, so nothing may stay
/// behind, and the next agent attaches once and counts. SIGTERM then stops
/// it cleanly, with its final totals.
fn killed_agent_leaves_nothing(mode: &str) {
    let lab = TwoHostLab::new(LabConfig::default()).expect("building the lab");
    let (a, _) = lab.host_a();
    let to: SocketAddr = format!("{}:9999", lab::OVERLAY_B).parse().expect("addr");
    let first = Agent::start(&lab, mode);
    udp_send(a, to, 5, 100).expect("UDP");
    let out = first.proc.stop(libc::SIGKILL).expect("killing netobs");
    assert_eq!(out.status.signal(), Some(libc::SIGKILL));
    assert_nothing_attached(&lab);

    let second = Agent::start(&lab, mode);
    let mut on = attached(&lab);
    on.sort();
    // The kernel keeps the first 15 characters of a program's name.
    let ingress = if mode == "xdp" {
        "netobs_xdp"
    } else {
        "netobs_tc_ingre"
    };
    let mut want = vec![ingress.to_owned(), "netobs_tc_egres".to_owned()];
    want.sort();
    assert_eq!(on, want, "each hook holds one program of the new agent");
    udp_send(a, to, UDP_DATAGRAMS, 100).expect("UDP");
    let v = second.stop_with(libc::SIGTERM);
    let (vxlan_out, _) = counts(&v, "egress", "vxlan");
    assert_eq!(
        vxlan_out, UDP_DATAGRAMS as u64,
        "the new agent counts from zero what it saw"
    );
    assert_nothing_attached(&lab);
}

#[test]
fn sigkill_leaves_nothing_attached_and_sigterm_detaches_tc() {
    require_root!();
    killed_agent_leaves_nothing("tc");
}

#[test]
fn sigkill_leaves_nothing_attached_and_sigterm_detaches_xdp() {
    require_root!();
    killed_agent_leaves_nothing("xdp");
}

/// Capability sets of process `pid` from /proc, as masks.
fn capability_sets(pid: u32) -> Vec<(String, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let k = k.strip_prefix("Cap")?;
            Some((k.to_owned(), u64::from_str_radix(v.trim(), 16).ok()?))
        })
        .collect()
}

#[test]
fn the_agent_drops_every_capability_it_does_not_need() {
    require_root!();
    let lab = TwoHostLab::new(LabConfig::default()).expect("building the lab");
    let (a, _) = lab.host_a();
    let agent = Agent::start(&lab, "tc");
    agent.wait_for(|l| l.contains("capabilities: kept"), "capabilities dropped");
    let pid = agent.proc.pid().expect("agent pid");
    const CAP_NET_ADMIN: u64 = 1 << 12;
    const CAP_PERFMON: u64 = 1 << 38;
    const CAP_BPF: u64 = 1 << 39;
    let want = CAP_NET_ADMIN | CAP_PERFMON | CAP_BPF;
    let sets = capability_sets(pid);
    for (set, mask) in &sets {
        let expect = match set.as_str() {
            "Eff" | "Prm" | "Bnd" => want,
            _ => 0,
        };
        assert_eq!(*mask, expect, "Cap{set} of the agent: {mask:#x}");
    }
    assert_eq!(
        sets.len(),
        5,
        "CapInh, CapPrm, CapEff, CapBnd, CapAmb: {sets:?}"
    );
    // Still counting, and still able to detach.
    let to: SocketAddr = format!("{}:9999", lab::OVERLAY_B).parse().expect("addr");
    udp_send(a, to, UDP_DATAGRAMS, 100).expect("UDP");
    let v = agent.stop();
    assert_eq!(counts(&v, "egress", "vxlan").0, UDP_DATAGRAMS as u64);
    assert_nothing_attached(&lab);
}

/// Packets through `dev` both ways.
fn link_packets(ns: &Netns, dev: &str) -> u64 {
    let s = link::stats(ns, dev).expect("link stats");
    s.rx_packets + s.tx_packets
}

#[test]
fn an_interface_set_down_up_deleted_and_recreated_keeps_being_counted() {
    require_root!();
    let a = Netns::new("reattach-a").expect("namespace");
    let b = Netns::new("reattach-b").expect("namespace");
    for ns in [&a, &b] {
        // Quiet links: no IPv6 router or neighbour chatter.
        for key in ["all", "default"] {
            ns.exec(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
            ])
            .expect("sysctl");
        }
    }
    let build = || {
        link::veth_pair(&a, "nr-a", &b, "nr-b").expect("veth");
        link::add_addr(&a, "nr-a", "10.210.0.1/24").expect("address");
        link::add_addr(&b, "nr-b", "10.210.0.2/24").expect("address");
        link::set_up(&a, "nr-a").expect("up");
        link::set_up(&b, "nr-b").expect("up");
    };
    let to: SocketAddr = "10.210.0.2:9999".parse().expect("addr");
    build();
    let agent = Agent::start_on(&a, "nr-a", "tc");
    let before = link_packets(&a, "nr-a");
    udp_send(&a, to, 5, 100).expect("UDP");

    // Down and up: the device and its programs stay.
    a.ip(&["link", "set", "nr-a", "down"]).expect("down");
    a.ip(&["link", "set", "nr-a", "up"]).expect("up");
    let mut on = attached_on(&a, "nr-a");
    on.sort();
    assert_eq!(on, ["netobs_tc_egres", "netobs_tc_ingre"], "still attached");
    let first = link_packets(&a, "nr-a") - before;

    a.ip(&["link", "del", "nr-a"]).expect("deleting the link");
    agent.wait_for(|l| l.contains("nr-a vanished"), "netobs to notice");
    build();
    agent.wait_for(|l| l.contains("nr-a is back"), "netobs to reattach");
    let mut on = attached_on(&a, "nr-a");
    on.sort();
    assert_eq!(
        on,
        ["netobs_tc_egres", "netobs_tc_ingre"],
        "reattached once"
    );
    let before = link_packets(&a, "nr-a");
    udp_send(&a, to, 7, 100).expect("UDP");
    let second = link_packets(&a, "nr-a") - before;

    let v = agent.stop();
    let seen = total(&v, "ingress").0 + total(&v, "egress").0;
    assert_eq!(
        seen,
        first + second,
        "what crossed the old link ({first}) and the new one ({second})"
    );
    assert!(second >= 7 && first >= 5);
    assert!(attached_on(&a, "nr-a").is_empty(), "nothing left attached");
}

#[test]
fn the_api_stays_up_under_load_and_slow_clients() {
    require_root!();
    let lab = TwoHostLab::new(LabConfig::default()).expect("building the lab");
    let (a, _) = lab.host_a();
    let agent = Agent::start(&lab, "tc");
    let addr: SocketAddr = "127.0.0.1:9477".parse().expect("addr");

    let out = a
        .command("wrk")
        .args(["-t2", "-c64", "-d3s", &format!("http://{addr}/metrics")])
        .output()
        .expect("running wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk: {text}");
    assert!(!text.contains("Non-2xx"), "errors under load:\n{text}");
    assert!(
        !text.contains("Socket errors"),
        "errors under load:\n{text}"
    );
    let served: u64 = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in"))
        .and_then(|(n, _)| n.trim().parse().ok())
        .expect("wrk's request count");
    assert!(served > 0, "{text}");

    // 500 clients that never finish their headers: more than the server
    // serves at once (the rest are closed at once), and the ones it takes
    // are cut off by the header timeout. Every connection must end.
    let open = a
        .run_in(move || {
            let mut open = 0;
            let mut held = Vec::new();
            for _ in 0..500 {
                if let Ok(mut s) = TcpStream::connect(addr) {
                    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: slow\r\n");
                    held.push(s);
                }
            }
            for mut s in held {
                s.set_read_timeout(Some(Duration::from_secs(30)))
                    .expect("timeout");
                let mut buf = [0u8; 512];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(_) => continue,
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                        Err(_) => {
                            open += 1;
                            break;
                        }
                    }
                }
            }
            open
        })
        .expect("slow clients");
    assert_eq!(open, 0, "connections the server never closed");
    let body = http_get(a, addr, "/metrics").expect("a scrape after the flood");
    assert!(body.contains("netobs_build_info"), "{body}");
    let pid = agent.proc.pid().expect("pid");
    let rss_kib: u64 = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    assert!(
        rss_kib < 100 * 1024,
        "agent RSS {rss_kib} KiB after the flood"
    );
    agent.stop();
}

#[test]
fn pinned_counters_survive_an_agent_restart() {
    require_root!();
    let lab = TwoHostLab::new(LabConfig::default()).expect("building the lab");
    let (a, dev) = lab.host_a();
    let fs = BpfFs::mount();
    let pin = fs.path().join("netobs");
    let pin_arg = pin.to_str().expect("utf-8 path").to_owned();
    let to: SocketAddr = format!("{}:9999", lab::OVERLAY_B).parse().expect("addr");

    let first = Agent::start_with(a, dev, "tc", &["--pin", &pin_arg]);
    udp_send(a, to, 5, 100).expect("UDP");
    let v1 = first.stop();
    assert_eq!(counts(&v1, "egress", "vxlan").0, 5);
    for map in [
        "COUNTERS",
        "FLOWS",
        "FLOW_CACHE",
        "CACHE_CTL",
        "IFACE_SLOTS",
        "STATS",
    ] {
        assert!(pin.join(map).exists(), "{map} pinned");
    }

    let second = Agent::start_with(a, dev, "tc", &["--pin", &pin_arg]);
    udp_send(a, to, 7, 100).expect("UDP");
    let v2 = second.stop();
    assert_eq!(
        counts(&v2, "egress", "vxlan").0,
        12,
        "the second agent goes on from the first one's counters"
    );
    assert!(
        total(&v2, "egress").0 >= total(&v1, "egress").0 + 7,
        "every class goes on"
    );
    // The flows go on too, the counts still in the flow cache included.
    let vxlan = |v: &RunReport, dir| counts(v, dir, "vxlan").0;
    let by_vni: u64 = v2.totals.vnis.values().sum();
    assert_eq!(by_vni, vxlan(&v2, "egress") + vxlan(&v2, "ingress"));
    assert_nothing_attached(&lab);

    // Without --pin a new agent starts from zero.
    let third = Agent::start(&lab, "tc");
    udp_send(a, to, 3, 100).expect("UDP");
    assert_eq!(counts(&third.stop(), "egress", "vxlan").0, 3);
}

#[test]
fn pinning_outside_a_bpf_filesystem_is_one_clear_line() {
    require_root!();
    let tmp = TempPath::new("not-bpffs");
    let dir = tmp.path();
    let out = Command::new(env!("CARGO_BIN_EXE_netobs"))
        .args(["run", "--iface", "lo", "--no-docker", "--pin"])
        .arg(dir)
        .output()
        .expect("running netobs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("[INFO"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("not a bpf filesystem") && lines[0].contains("mount -t bpf"),
        "{err}"
    );
}

#[test]
fn top_shows_live_flows_and_q_restores_the_terminal() {
    require_root!();
    let lab = TwoHostLab::new(LabConfig::default()).expect("building the lab");
    let (a, _) = lab.host_a();
    let server_addr: SocketAddr = format!("{}:{HTTP_PORT}", lab::OVERLAY_B)
        .parse()
        .expect("addr");
    let _server = HttpServer::start(&lab.b, server_addr).expect("HTTP server");
    let injector = EspInjector::new(&lab.b).expect("ESP injector");
    let agent = Agent::start(&lab, "tc");
    for _ in 0..3 {
        let status = http_request(a, server_addr, "GET", "/orders/token/abc?x=1").expect("HTTP");
        assert_eq!(status, 200);
    }
    // Two ESP flows towards A: one in IP, one in UDP 4500.
    let inner = &packets::udp(&Net::containers(), 5000, 6000, b"sealed")[14..];
    let node_a: Ipv4Addr = lab::UNDERLAY_A.parse().expect("addr");
    let (sa, sa_udp) = (
        EspSa::new(0x70b0_0001, [0x42; 16], [9, 9, 9, 9]),
        EspSa::new(0x70b0_0002, [0x43; 16], [8, 8, 8, 8]),
    );
    for seq in 1..=3 {
        let seal = |sa: &EspSa| sa.seal(seq, inner, NEXT_HEADER_IPV4).expect("seal");
        injector.send_esp(node_a, &seal(&sa)).expect("ESP");
        injector
            .send_esp_in_udp(node_a, &seal(&sa_udp))
            .expect("ESP-in-UDP");
    }
    let tmux = Tmux::start(&format!(
        "nsenter --net={} {} top; echo top-exited-$?; sleep 60",
        a.path().display(),
        env!("CARGO_BIN_EXE_netobs")
    ));
    let screen = tmux.wait_for(
        |s| s.contains("PLAIN") && s.contains("GET /orders/token/<redacted>"),
        "the flow with its last request",
    );
    assert!(screen.contains(lab::OVERLAY_B), "{screen}");
    assert!(screen.contains("q quit"), "{screen}");
    assert!(screen.contains("vxlan"), "{screen}");
    // Rows by their class mark (the header's class names are lower case).
    let rows = |s: &str, mark: &str| {
        s.lines()
            .filter(|l| l.split_whitespace().any(|w| w == mark))
            .count()
    };
    let screen = tmux.wait_for(|s| rows(s, "ESP") == 2, "the two ESP flows");
    let plain = rows(&screen, "PLAIN");
    assert!(plain > 0, "{screen}");
    // The class filter: plaintext only, then ESP only.
    tmux.keys("c");
    tmux.wait_for(
        |s| s.contains("c class: plaintext") && rows(s, "ESP") == 0 && rows(s, "PLAIN") == plain,
        "plaintext only",
    );
    tmux.keys("c");
    tmux.wait_for(
        |s| s.contains("c class: esp") && rows(s, "PLAIN") == 0 && rows(s, "ESP") == 2,
        "ESP only",
    );
    tmux.keys("q");
    let after = tmux.wait_for(|s| s.contains("top-exited-0"), "top to quit");
    assert!(
        !after.contains("q quit"),
        "the terminal is back to the shell:\n{after}"
    );
    agent.stop();
}

/// Netobs tc filters on one hook of host A's underlay, by name.
fn tc_filters(lab: &TwoHostLab, hook: &str) -> Vec<String> {
    let (ns, dev) = lab.host_a();
    let out = ns
        .exec(&["tc", "filter", "show", "dev", dev, hook])
        .expect("tc filter");
    // One line per filter: its name, then (from `name`) the program's,
    // cut to 15 characters.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("netobs_")))
        .map(str::to_owned)
        .collect()
}

/// Netlink tc filters outlive a killed agent; the next one must remove them
/// rather than run beside them, and leave nothing when it stops.
#[test]
fn a_killed_agents_tc_filters_are_removed_by_the_next_one() {
    require_root!();
    let lab = TwoHostLab::new(LabConfig::default()).expect("building the lab");
    let (a, dev) = lab.host_a();
    let netlink = ["--tc-api", "netlink"];
    let to: SocketAddr = format!("{}:9999", lab::OVERLAY_B).parse().expect("addr");
    let first = Agent::start_with(a, dev, "tc", &netlink);
    assert_eq!(tc_filters(&lab, "ingress"), ["netobs_tc_ingress"]);
    first.proc.stop(libc::SIGKILL).expect("killing netobs");
    assert_eq!(
        tc_filters(&lab, "egress"),
        ["netobs_tc_egress"],
        "a killed agent's filter stays"
    );

    let second = Agent::start_with(a, dev, "tc", &netlink);
    second.wait_for(
        |l| l.contains("removed the tc filters a previous netobs left behind"),
        "the leftovers to be removed",
    );
    assert_eq!(
        tc_filters(&lab, "ingress"),
        ["netobs_tc_ingress"],
        "one, not two"
    );
    assert_eq!(
        tc_filters(&lab, "egress"),
        ["netobs_tc_egress"],
        "one, not two"
    );
    udp_send(a, to, UDP_DATAGRAMS, 100).expect("UDP");
    let v = second.stop();
    assert_eq!(
        counts(&v, "egress", "vxlan").0,
        UDP_DATAGRAMS as u64,
        "each packet counted once"
    );
    assert_nothing_attached(&lab);
}
