//! End to end on a real two-node swarm: netobs on the manager's and on the
//! worker's underlay, each asking its own engine; a client service on the
//! manager calls a web service on the worker over an overlay network. One
//! swarm, set up once, then named phases in order, each asserting what one
//! feature shows of the same traffic: exact request counts, labels, the
//! capture replayed, services and task states, the audit from both nodes,
//! the flow table, a real Prometheus with the shipped rules and dashboards,
//! and counting that goes on while the manager's engine restarts.
//!
//! The plaintext-on-encrypted alarm has its own swarm (another data-path
//! port): `encrypted_leak.rs`.
mod support;

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use netobs::{
    api::{Doc, FlowList, HealthKind, InventoryEndpoint, OverlayHealth},
    replay::ReplayReport,
};
use netobs_tests::{
    esp::{kernel_has_esp, EspInjector, EspSa, NEXT_HEADER_IPV4},
    lab::Process,
    netns::Netns,
    packets::{self, Net},
    prom::metric,
    require_root,
    swarm::{TwoNodeSwarm, MANAGER_ADDR, MANAGER_DEV, WORKER_ADDR, WORKER_DEV},
    tmp::TempPath,
    traffic::udp_send,
};
use support::*;

const REQUESTS: usize = 7;

/// The shared swarm, its agents, and what the phases pass on.
struct Scene {
    swarm: TwoNodeSwarm,
    /// backend's VNI.
    vni: String,
    agents: Vec<(Process, &'static str)>,
    capture: TempPath,
    /// VXLAN packets on backend in the capture (both ways).
    on_backend: u64,
}

fn client_requests(text: &str) -> f64 {
    requests(text, "backend", "client", "web")
}

#[test]
fn swarm_flows_are_labelled_exported_and_alerted() {
    require_root!();
    let mut s = setup();
    requests_are_counted_exactly_on_both_nodes(&s);
    the_capture_replays_as_tcpdump_reads_it(&mut s);
    services_show_each_task_with_its_state_and_traffic(&s);
    the_audit_on_the_manager_judges_each_network(&s);
    flows_name_services_and_mark_plaintext(&s);
    doctor_is_quiet_on_a_healthy_swarm(&s);
    tcp_failures_and_resets_are_counted_exactly(&s);
    a_one_way_data_path_is_named_and_clears(&s);
    blocked_udp_gossip_is_named_and_clears(&s);
    wrong_inner_checksums_are_named_with_the_driver(&s);
    a_rewritten_forwarding_entry_is_named(&s);
    fragmented_vxlan_names_the_mtu_and_the_fix(&s);
    prometheus_alerts_and_every_panel_has_data(&s);
    the_audit_on_a_worker_sees_one_way_esp_near_its_wrap(&s);
    counting_goes_on_while_the_engine_restarts(&mut s);
    for (agent, side) in s.agents.drain(..) {
        stop_agent(agent, side);
    }
}

/// Networks (plain, encrypted, mistyped), services, an agent per node, and
/// the manager's wire captured from before the client's first packet.
fn setup() -> Scene {
    let swarm = TwoNodeSwarm::new().expect("two-node swarm");
    let m = &swarm.manager;
    swarm.network("backend", false).expect("network");
    // Promised encryption this kernel cannot give (no ESP support): no
    // traffic on it, but its plaintext counter must read 0, not "no data".
    swarm.network("secure", true).expect("encrypted network");
    // A typo Docker accepts silently: this network is not encrypted.
    m.docker(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--opt",
        "encryption",
        "typo",
    ])
    .expect("mistyped network");
    // Tasks on `secure` on both nodes, so that each is the other's peer
    // there (and Docker should have set up IPsec between them).
    swarm
        .service("vault", &["secure"], "worker", &["sleep", "3600"])
        .expect("vault service");
    let vni = m
        .docker(&[
            "network",
            "inspect",
            "backend",
            "--format",
            "{{index .Options \"com.docker.network.driver.overlay.vxlanid_list\"}}",
        ])
        .expect("vni");
    swarm
        .service(
            "web",
            &["backend"],
            "worker",
            &["httpd", "-f", "-p", "80", "-h", "/www"],
        )
        .expect("web service");
    // A task whose health check has yet to pass (its first check is an
    // hour away): Swarm says `starting`, and so must `netobs services`.
    swarm
        .service_with(
            "slow",
            &["backend"],
            "worker",
            &[
                "--health-cmd",
                "true",
                "--health-interval",
                "1h",
                "--health-start-period",
                "1h",
            ],
            &["sleep", "3600"],
        )
        .expect("slow service");
    swarm.wait_running("web", 1).expect("web running");

    let policy = ["--require-encryption", "all", "--pattern", "GET /"];
    let agents = vec![
        (
            start_agent(&swarm.ns_manager, MANAGER_DEV, &m.host(), &policy),
            "manager",
        ),
        (
            start_agent(&swarm.ns_worker, WORKER_DEV, &swarm.worker.host(), &policy),
            "worker",
        ),
    ];
    wait_docker_up(&swarm.ns_manager, "manager");
    wait_docker_up(&swarm.ns_worker, "worker");

    // Real overlay traffic on the manager's wire, for `netobs replay` to
    // decode independently of the agents.
    let capture = TempPath::new("swarm.pcap");
    let tcpdump = start_capture(&swarm.ns_manager, MANAGER_DEV, capture.path());
    // The client waits until its own address is in the agents' inventory
    // (events plus a resync), then makes exactly REQUESTS requests.
    let script = format!(
        "sleep 8; for i in $(seq {REQUESTS}); do wget -q -O /dev/null http://web/index.html; \
         done; sleep 3600"
    );
    swarm
        .service(
            "client",
            &["backend", "secure"],
            "manager",
            &["sh", "-c", &script],
        )
        .expect("client service");
    for (ns, side) in [(&swarm.ns_manager, "manager"), (&swarm.ns_worker, "worker")] {
        wait_metrics(
            ns,
            &format!("{REQUESTS} requests seen from the {side}"),
            90,
            |t| client_requests(t) >= REQUESTS as f64,
        );
    }
    // The last responses and the connections' ends, then stop capturing:
    // nothing else crosses backend.
    std::thread::sleep(Duration::from_secs(2));
    let _ = tcpdump.stop(libc::SIGINT);
    let on_backend = capture_count(
        capture.path(),
        &format!("udp dst port 4789 and (udp[12:4] >> 8) = {vni}"),
    )
    .0;
    assert!(on_backend > 0, "the requests went over backend");
    Scene {
        swarm,
        vni,
        agents,
        capture,
        on_backend,
    }
}

/// Both agents: exactly the requests and responses sent, the overlay
/// packets exactly as the capture holds them, labelled with network, VNI
/// and encryption; the policy alert raised.
fn requests_are_counted_exactly_on_both_nodes(s: &Scene) {
    let swarm = &s.swarm;
    for (ns, side) in [(&swarm.ns_manager, "manager"), (&swarm.ns_worker, "worker")] {
        let text = scrape(ns);
        assert_eq!(
            client_requests(&text),
            REQUESTS as f64,
            "{side}: exactly the requests sent"
        );
        let overlay = metric(
            &text,
            "netobs_overlay_packets_total",
            &[
                ("network", "backend"),
                ("vni", &s.vni),
                ("encrypted", "false"),
                ("class", "vxlan"),
            ],
        );
        assert_eq!(
            overlay,
            Some(s.on_backend as f64),
            "{side}: backend's packets both ways, as tcpdump counts them on the wire"
        );
        assert_eq!(
            metric(
                &text,
                "netobs_network_info",
                &[
                    ("network", "backend"),
                    ("vni", &s.vni),
                    ("encrypted", "false")
                ]
            ),
            Some(1.0),
            "{side}"
        );
        assert_eq!(
            metric(
                &text,
                "netobs_alert_active",
                &[("kind", "unencrypted_overlay"), ("network", "backend")]
            ),
            Some(1.0),
            "{side}: policy violation raised"
        );
        let responses = metric(
            &text,
            "netobs_http_responses_total",
            &[
                ("network", "backend"),
                ("src_service", "client"),
                ("dst_service", "web"),
                ("code_class", "2xx"),
            ],
        );
        assert_eq!(
            responses,
            Some(REQUESTS as f64),
            "{side}: responses labelled from the asking side"
        );
    }
}

/// The capture of the manager's wire, replayed through the same programs:
/// what tcpdump reads in it, and the requests the client made.
fn the_capture_replays_as_tcpdump_reads_it(s: &mut Scene) {
    let capture = s.capture.path();
    let replay = std::process::Command::new(env!("CARGO_BIN_EXE_netobs"))
        .args(["replay", "--json"])
        .arg(capture)
        .output()
        .expect("netobs replay");
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let (all, _) = capture_count(capture, "");
    let (vxlan, _) = capture_count(capture, "udp dst port 4789");
    let r: ReplayReport = serde_json::from_slice(&replay.stdout).expect("replay JSON");
    eprintln!("replayed the manager's capture: {all} packets, {vxlan} VXLAN");
    let t = &r.totals;
    assert_eq!(r.packets, all, "{t:?}");
    assert_eq!(t.classes.vxlan.packets, vxlan, "as tcpdump reads it: {t:?}");
    assert_eq!(t.classes.malformed.packets, 0, "{t:?}");
    assert_eq!(t.http.requests, REQUESTS as u64, "{t:?}");
    let vni: u32 = s.vni.parse().expect("a VNI");
    assert_eq!(t.vnis.get(&vni), Some(&s.on_backend), "{t:?}");
}

/// `netobs services` from both sides: what `drill tasks.web` would say, the
/// requests that reached the task, and each task's own state.
fn services_show_each_task_with_its_state_and_traffic(s: &Scene) {
    let swarm = &s.swarm;
    // Packets to web's task: VXLAN on backend whose inner destination is
    // its address (inner IPv4 destination: 8 + 8 + 14 + 16 bytes into UDP).
    let web_ip = api::<InventoryEndpoint>(&swarm.ns_manager)
        .endpoints
        .iter()
        .find(|e| e.service.as_deref() == Some("web"))
        .map(|e| e.ip)
        .expect("web's task in the inventory");
    let std::net::IpAddr::V4(v4) = web_ip else {
        panic!("an IPv4 overlay")
    };
    let to_web = capture_count(
        s.capture.path(),
        &format!(
            "udp dst port 4789 and (udp[12:4] >> 8) = {} and udp[46:4] = {:#x}",
            s.vni,
            u32::from(v4)
        ),
    )
    .0;
    for (ns, side) in [(&swarm.ns_manager, "manager"), (&swarm.ns_worker, "worker")] {
        let out = ask_agent(ns, &["services", "--json"]);
        assert!(
            out.status.success(),
            "{side}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("services JSON");
        let service = |name: &str| {
            v.as_array()
                .and_then(|l| l.iter().find(|s| s["name"] == name))
                .cloned()
                .unwrap_or_else(|| panic!("{side}: no {name} in {v}"))
        };
        let web = service("web");
        assert_eq!(web["endpoint_mode"], "dnsrr", "{side}: {v}");
        assert_eq!(web["networks"][0]["name"], "backend", "{side}: {v}");
        let tasks = web["tasks"].as_array().expect("tasks");
        assert_eq!(tasks.len(), 1, "{side}: {v}");
        assert_eq!(tasks[0]["state"], "running", "{side}: {v}");
        assert_eq!(
            tasks[0]["received"]["packets"], to_web,
            "{side}: every packet to the task, as the capture holds them: {v}"
        );
        // Not in service discovery until healthy, so in no network's view:
        // the manager lists it from the task list, without an address; the
        // worker runs it and knows its container. Both say `starting`.
        let slow = service("slow");
        let tasks = slow["tasks"].as_array().expect("tasks");
        assert_eq!(tasks.len(), 1, "{side}: {v}");
        assert_eq!(tasks[0]["state"], "starting", "{side}: {v}");
        assert_eq!(tasks[0]["ip"].is_null(), side == "manager", "{side}: {v}");
        // The client runs on the manager: the worker cannot list tasks.
        let client = service("client");
        let expected = if side == "manager" {
            "running"
        } else {
            "unknown"
        };
        assert_eq!(client["tasks"][0]["state"], expected, "{side}: {v}");
    }
}

/// `netobs audit` on the manager: what Docker says, what the kernel holds
/// and what the wire shows, per network. `secure` is protected where the
/// kernel has ESP; here it has none, so Docker's policy has no states.
fn the_audit_on_the_manager_judges_each_network(s: &Scene) {
    let swarm = &s.swarm;
    let esp = kernel_has_esp();
    let secure_expected = if esp { "protected" } else { "broken" };
    let deadline = Instant::now() + Duration::from_secs(90);
    let audit = loop {
        let out = ask_agent(&swarm.ns_manager, &["audit", "--json"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "findings exit 1: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("audit JSON");
        let no_state = v["findings"].as_array().is_some_and(|f| {
            f.iter()
                .any(|f| f["network"] == "secure" && f["kind"] == "ipsec_no_state")
        });
        let secure = v["networks"]
            .as_array()
            .and_then(|n| n.iter().find(|n| n["name"] == "secure"))
            .map(|n| n["status"] == secure_expected);
        if secure == Some(true) && no_state != esp {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the audit never found secure {secure_expected}: {v}"
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    let has = |network: &str, kind: &str| {
        audit["findings"].as_array().is_some_and(|f| {
            f.iter()
                .any(|f| f["network"] == network && f["kind"] == kind)
        })
    };
    assert!(has("backend", "not_encrypted"), "{audit}");
    assert!(has("typo", "mistyped_option"), "{audit}");
    assert!(has("typo", "not_encrypted"), "{audit}");
    assert!(has("ingress", "ingress_plaintext"), "{audit}");
    let status = |name: &str| {
        audit["networks"]
            .as_array()
            .and_then(|n| n.iter().find(|n| n["name"] == name))
            .map(|n| n["status"].clone())
    };
    assert_eq!(status("secure"), Some(secure_expected.into()), "{audit}");
    assert_eq!(status("backend"), Some("not_encrypted".into()), "{audit}");
    assert_eq!(audit["data_path_port"], 4789);
    // The text report: one line per network first, readable at a glance.
    let out = ask_agent(
        &swarm.ns_manager,
        &["audit", "--require-encryption", "backend,secure"],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line("secure").contains(if esp { "protected" } else { "BROKEN" }),
        "{text}"
    );
    assert!(line("backend").contains("NOT ENCRYPTED"), "{text}");
    assert!(line("backend").contains("client -> web"), "{text}");
    assert!(
        line("ingress").contains("not encrypted (not required)"),
        "{text}"
    );
    assert!(
        text.contains("\n  peer ") && text.contains("policy yes"),
        "Docker's policy towards the worker: {text}"
    );
    println!("{text}");
}

/// `netobs flows` against the running agent: services by name, plaintext
/// marked, each connection with its ports.
fn flows_name_services_and_mark_plaintext(s: &Scene) {
    let swarm = &s.swarm;
    let out = ask_agent(&swarm.ns_manager, &["flows", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flows: Doc<FlowList> = serde_json::from_slice(&out.stdout).expect("flows JSON");
    assert_eq!(flows.api_version, netobs::api::VERSION);
    let to_web: Vec<_> = flows
        .data
        .flows
        .iter()
        .filter(|f| {
            f.labels.network == "backend"
                && f.labels.src_service == "client"
                && f.labels.dst_service == "web"
        })
        .collect();
    // One connection per request, each with its own client port.
    assert_eq!(to_web.len(), REQUESTS, "{to_web:#?}");
    let out = ask_agent(&swarm.ns_manager, &["flows"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| {
            // Source before destination: the requests' direction.
            let at = |s: &str| l.find(s);
            l.contains("backend") && at("client:").is_some() && at("client:") < at("web:80")
        })
        .collect();
    assert_eq!(
        rows.len(),
        REQUESTS,
        "each connection with its ports: {text}"
    );
    assert!(
        rows.iter().all(|l| l.contains(" PLAIN ")),
        "plain, on a network that promises nothing: {text}"
    );
}

/// `netobs doctor` on a node, its exit status and its answer.
fn doctor(ns: &Netns) -> (Option<i32>, OverlayHealth) {
    let out = ask_agent(ns, &["doctor", "--json"]);
    let h = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor JSON: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), h)
}

/// A new service on the manager, on backend, making `count` rounds of
/// connections to each of `targets` (`host` or `host:port`), `every`
/// seconds apart: each a background wget killed after a second (busybox
/// wget's own timeout crashes). It waits first until the agents know its
/// address.
fn probe(swarm: &TwoNodeSwarm, name: &str, targets: &[&str], count: usize, every: u64) {
    let round: String = targets
        .iter()
        .map(|t| format!("wget -q -O /dev/null http://{t}/ & "))
        .collect();
    let script = format!(
        "sleep 8; for i in $(seq {count}); do {round} sleep 1; kill $(jobs -p) 2>/dev/null; \
         sleep {every}; done; sleep 3600"
    );
    swarm
        .service(name, &["backend"], "manager", &["sh", "-c", &script])
        .expect("probe service");
}

fn remove_service(swarm: &TwoNodeSwarm, name: &str) {
    swarm
        .manager
        .docker(&["service", "rm", name])
        .expect("removing a service");
}

/// `iptables` in the network namespace of `service`'s task on the worker.
fn task_iptables(swarm: &TwoNodeSwarm, service: &str, args: &[&str]) {
    let id = swarm
        .worker
        .docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={service}"),
        ])
        .expect("docker ps");
    let pid = swarm
        .worker
        .docker(&["inspect", "-f", "{{.State.Pid}}", id.trim()])
        .expect("docker inspect");
    let out = std::process::Command::new("nsenter")
        .args(["-t", pid.trim(), "-n", "iptables"])
        .args(args)
        .output()
        .expect("nsenter iptables");
    assert!(
        out.status.success(),
        "iptables {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tcp_metric(text: &str, name: &str, src: &str, dst: &str) -> f64 {
    metric(
        text,
        name,
        &[
            ("network", "backend"),
            ("src_service", src),
            ("dst_service", dst),
        ],
    )
    .unwrap_or(0.0)
}

/// A healthy swarm under load for two minutes (a client making some 20
/// requests a second): `netobs doctor` finds nothing on either node, every
/// connection answered, the data-path gauge at 0.
fn doctor_is_quiet_on_a_healthy_swarm(s: &Scene) {
    let swarm = &s.swarm;
    swarm
        .service(
            "loader",
            &["backend"],
            "manager",
            &[
                "sh",
                "-c",
                "sleep 8; end=$(( $(date +%s) + 120 )); while [ $(date +%s) -lt $end ]; do \
                 wget -q -O /dev/null http://web/index.html; usleep 50000; done; sleep 3600",
            ],
        )
        .expect("loader service");
    let loaded = |t: &str| requests(t, "backend", "loader", "web");
    wait_metrics(&swarm.ns_manager, "the load to start", 60, |t| {
        loaded(t) > 0.0
    });
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_secs(30));
        for (ns, side) in [(&swarm.ns_manager, "manager"), (&swarm.ns_worker, "worker")] {
            let (code, h) = doctor(ns);
            assert_eq!(code, Some(0), "{side}: {h:#?}");
            assert!(h.findings.is_empty(), "{side}: {h:#?}");
            // What it cannot check, said: ICMP too-big from beyond the
            // node, and loss between nodes (these agents serve on loopback,
            // out of their peers' reach).
            assert_eq!(h.not_checked.len(), 2, "{side}: {h:#?}");
            assert!(
                h.not_checked[0].starts_with("path MTU beyond this node")
                    && h.not_checked[1].starts_with(
                        "loss between nodes: this agent serves on 127.0.0.1:9477 only"
                    ),
                "{side}: {h:#?}"
            );
            assert!(h.loss.is_empty(), "{side}: {h:#?}");
            assert!(h.drops.is_empty(), "{side}: no drops: {h:#?}");
            let g = h.gossip.first().unwrap_or_else(|| panic!("{side}: {h:#?}"));
            assert!(g.packets_out > 0 && g.packets_in > 0, "{side}: {h:#?}");
            // Between namespaces the SYNs' checksums are left for a NIC
            // (partial): normal on veth, and never wrong.
            assert!(
                h.checksums
                    .iter()
                    .all(|c| c.bad == 0 && c.driver.as_deref() == Some("veth")),
                "{side}: {h:#?}"
            );
            let p = h.peers.first().unwrap_or_else(|| panic!("{side}: {h:#?}"));
            assert!(
                p.packets_out > 0 && p.packets_in > 0 && p.connect_failures == 0,
                "{side}: {h:#?}"
            );
            let text = scrape(ns);
            assert_eq!(
                metric(&text, "netobs_data_path_one_way", &[]),
                Some(0.0),
                "{side}"
            );
            assert_eq!(
                metric(&text, "netobs_gossip_udp_one_way", &[]),
                Some(0.0),
                "{side}"
            );
        }
    }
    eprintln!(
        "two minutes of load: {} requests",
        loaded(&scrape(&swarm.ns_manager))
    );
    remove_service(swarm, "loader");
}

/// web's container drops SYNs to port 80 (its port 81 is closed and
/// answers with a reset), then rejects port 80 with resets: every
/// connection attempt is counted once, on both nodes; the node itself
/// answers, so the data path is not blamed.
fn tcp_failures_and_resets_are_counted_exactly(s: &Scene) {
    const ROUNDS: usize = 3;
    let swarm = &s.swarm;
    let rounds = ROUNDS as f64;
    task_iptables(
        swarm,
        "web",
        &["-I", "INPUT", "-p", "tcp", "--dport", "80", "-j", "DROP"],
    );
    probe(swarm, "probe-drop", &["web", "web:81"], ROUNDS, 1);
    for (ns, side) in [(&swarm.ns_manager, "manager"), (&swarm.ns_worker, "worker")] {
        // 80 dropped and 81 refused: both failed; 81's resets from web.
        wait_metrics(
            ns,
            &format!("{side}: the dropped and refused connections"),
            90,
            |t| {
                tcp_metric(t, "netobs_tcp_connect_failures_total", "probe-drop", "web")
                    >= 2.0 * rounds
            },
        );
    }
    // Past the last attempt's 5 s: nothing more may be counted.
    std::thread::sleep(Duration::from_secs(8));
    for (ns, side) in [(&swarm.ns_manager, "manager"), (&swarm.ns_worker, "worker")] {
        let t = scrape(ns);
        assert_eq!(
            tcp_metric(&t, "netobs_tcp_connect_failures_total", "probe-drop", "web"),
            2.0 * rounds,
            "{side}"
        );
        assert_eq!(
            tcp_metric(&t, "netobs_tcp_resets_total", "web", "probe-drop"),
            rounds,
            "{side}: port 81's resets, sent by web"
        );
    }
    let (code, h) = doctor(&swarm.ns_manager);
    assert_eq!(code, Some(1), "{h:#?}");
    let failed: Vec<_> = h
        .findings
        .iter()
        .filter(|f| f.kind == HealthKind::TcpConnectFailures)
        .collect();
    assert_eq!(failed.len(), 1, "{h:#?}");
    assert_eq!(failed[0].services.as_deref(), Some("probe-drop -> web"));
    assert!(failed[0].message.starts_with("6 TCP connections"), "{h:#?}");
    assert!(
        h.findings
            .iter()
            .all(|f| f.kind != HealthKind::DataPathOneWay),
        "the worker answered (port 81's resets): no data-path finding: {h:#?}"
    );
    remove_service(swarm, "probe-drop");

    // Rejected with a reset: a failure and a reset per attempt.
    task_iptables(
        swarm,
        "web",
        &[
            "-R",
            "INPUT",
            "1",
            "-p",
            "tcp",
            "--dport",
            "80",
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ],
    );
    probe(swarm, "probe-reset", &["web"], ROUNDS, 1);
    wait_metrics(&swarm.ns_manager, "the refused connections", 90, |t| {
        tcp_metric(t, "netobs_tcp_connect_failures_total", "probe-reset", "web") >= rounds
    });
    std::thread::sleep(Duration::from_secs(8));
    let t = scrape(&swarm.ns_manager);
    assert_eq!(
        tcp_metric(
            &t,
            "netobs_tcp_connect_failures_total",
            "probe-reset",
            "web"
        ),
        rounds
    );
    assert_eq!(
        tcp_metric(&t, "netobs_tcp_resets_total", "web", "probe-reset"),
        rounds
    );
    task_iptables(swarm, "web", &["-D", "INPUT", "1"]);
    remove_service(swarm, "probe-reset");
}

/// UDP 4789 dropped at the worker's INPUT (after the hook, as a host
/// firewall does): the manager's doctor names the worker, its address and
/// the port within a minute, and the finding clears once the rule is gone.
/// The worker's kernel drops are counted with their reason, from the
/// manager, exactly as many as the rule matched.
fn a_one_way_data_path_is_named_and_clears(s: &Scene) {
    let swarm = &s.swarm;
    let rule = ["-p", "udp", "--dport", "4789", "-j"];
    let with = |verdict: &'static str| {
        let mut r = rule.to_vec();
        r.push(verdict);
        r
    };
    iptables(
        &swarm.ns_worker,
        &[&["-I", "INPUT", "1"], &with("DROP")[..]].concat(),
    );
    probe(swarm, "probe-oneway", &["web"], 60, 1);
    let one_way = |h: &OverlayHealth| {
        h.findings
            .iter()
            .find(|f| f.kind == HealthKind::DataPathOneWay)
            .cloned()
    };
    let f = wait_for("the one-way finding", 90, || {
        one_way(&doctor(&swarm.ns_manager).1)
    });
    assert!(
        f.message.contains(&format!("({WORKER_ADDR}) on UDP 4789")),
        "{f:#?}"
    );
    let text = scrape(&swarm.ns_manager);
    assert_eq!(
        metric(&text, "netobs_data_path_one_way", &[]),
        Some(1.0),
        "one peer, one way"
    );
    // The worker sees VXLAN arrive (its hook is before the firewall) and
    // sends none back: it cannot tell the data path is one way, but its
    // kernel says what it dropped, and why.
    let (code, h) = doctor(&swarm.ns_worker);
    assert!(one_way(&h).is_none(), "{h:#?}");
    assert_eq!(code, Some(1), "{h:#?}");
    let f = h
        .findings
        .iter()
        .find(|f| f.kind == HealthKind::KernelDrops)
        .unwrap_or_else(|| panic!("worker: {h:#?}"));
    assert!(
        f.message.contains("VXLAN (UDP 4789) packets from")
            && f.message.contains(&format!("({MANAGER_ADDR})"))
            && f.message.contains("reason NETFILTER_DROP: a firewall rule"),
        "{f:#?}"
    );
    // An ACCEPT above the DROP ends the drops at once, and leaves the
    // DROP's counter still: what the rule dropped, to compare exactly.
    iptables(
        &swarm.ns_worker,
        &[&["-I", "INPUT", "1"], &with("ACCEPT")[..]].concat(),
    );
    let dropped = rule_packets(&swarm.ns_worker, "INPUT", 2);
    assert!(dropped > 0, "the rule dropped the probe's VXLAN");
    let drops = |ns: &Netns| {
        metric(
            &scrape(ns),
            "netobs_kernel_drops_total",
            &[
                ("direction", "ingress"),
                ("traffic", "vxlan"),
                ("reason", "NETFILTER_DROP"),
            ],
        )
    };
    wait_for("the worker's drops to equal the rule's count", 10, || {
        (drops(&swarm.ns_worker) == Some(dropped as f64)).then_some(())
    });
    let h = doctor(&swarm.ns_worker).1;
    let d: Vec<_> = h
        .drops
        .iter()
        .filter(|d| d.reason == "NETFILTER_DROP")
        .collect();
    assert_eq!(d.len(), 1, "{h:#?}");
    assert_eq!(
        (d[0].addr.to_string().as_str(), d[0].total),
        (MANAGER_ADDR, dropped),
        "{h:#?}"
    );
    assert_eq!(drops(&swarm.ns_manager), None, "the manager dropped none");
    eprintln!("one-way: the worker's kernel dropped {dropped} VXLAN packets, all counted");
    iptables(
        &swarm.ns_worker,
        &[&["-D", "INPUT"], &with("ACCEPT")[..]].concat(),
    );
    iptables(
        &swarm.ns_worker,
        &[&["-D", "INPUT"], &with("DROP")[..]].concat(),
    );
    wait_for("the one-way finding to clear", 60, || {
        one_way(&doctor(&swarm.ns_manager).1)
            .is_none()
            .then_some(())
    });
    remove_service(swarm, "probe-oneway");
}

/// UDP gossip from the manager to the worker dropped on its way out of the
/// manager (before either hook sees it, as on the wire): the worker's
/// doctor names the manager within a minute while the swarm still works
/// over TCP; the manager's kernel counts exactly the datagrams its rule
/// dropped, as gossip, to the worker. Removed, the finding clears.
fn blocked_udp_gossip_is_named_and_clears(s: &Scene) {
    let swarm = &s.swarm;
    let rule = |verdict: &'static str| {
        vec![
            "-p",
            "udp",
            "-d",
            WORKER_ADDR,
            "--dport",
            "7946",
            "-j",
            verdict,
        ]
    };
    let gossip = |h: &OverlayHealth| {
        h.findings
            .iter()
            .find(|f| f.kind == HealthKind::GossipUdpOneWay)
            .cloned()
    };
    // Healthy first: gossip flows both ways between the two nodes.
    for (ns, side) in [(&swarm.ns_manager, "manager"), (&swarm.ns_worker, "worker")] {
        let h = doctor(ns).1;
        let g = h.gossip.first().unwrap_or_else(|| panic!("{side}: {h:#?}"));
        assert!(g.packets_out > 0 && g.packets_in > 0, "{side}: {h:#?}");
        assert!(gossip(&h).is_none(), "{side}: {h:#?}");
    }
    iptables(
        &swarm.ns_manager,
        &[&["-I", "OUTPUT", "1"], &rule("DROP")[..]].concat(),
    );
    let f = wait_for("the gossip finding on the worker", 90, || {
        gossip(&doctor(&swarm.ns_worker).1)
    });
    assert!(
        f.message
            .contains(&format!("({MANAGER_ADDR}) on port 7946")),
        "{f:#?}"
    );
    assert_eq!(
        metric(&scrape(&swarm.ns_worker), "netobs_gossip_udp_one_way", &[]),
        Some(1.0)
    );
    // The manager still hears the worker: no finding there, but its kernel
    // names the drops.
    let h = doctor(&swarm.ns_manager).1;
    assert!(gossip(&h).is_none(), "{h:#?}");
    assert!(
        h.findings.iter().any(|f| f.kind == HealthKind::KernelDrops
            && f.message.contains("gossip (UDP 7946) packets to")
            && f.message.contains(&format!("({WORKER_ADDR})"))),
        "{h:#?}"
    );
    // The node stays Ready: Swarm's own view hides the fault.
    let ready = swarm
        .manager
        .docker(&["node", "ls", "--format", "{{.Status}}"])
        .expect("node ls");
    assert_eq!(ready.trim(), "Ready\nReady", "both nodes still Ready");
    iptables(
        &swarm.ns_manager,
        &[&["-I", "OUTPUT", "1"], &rule("ACCEPT")[..]].concat(),
    );
    let dropped = rule_packets(&swarm.ns_manager, "OUTPUT", 2);
    let drops = || {
        metric(
            &scrape(&swarm.ns_manager),
            "netobs_kernel_drops_total",
            &[
                ("direction", "egress"),
                ("traffic", "gossip"),
                ("reason", "NETFILTER_DROP"),
            ],
        )
    };
    wait_for("the manager's drops to equal the rule's count", 10, || {
        (drops() == Some(dropped as f64)).then_some(())
    });
    eprintln!("gossip: the manager's kernel dropped {dropped} datagrams, all counted");
    iptables(
        &swarm.ns_manager,
        &[&["-D", "OUTPUT"], &rule("ACCEPT")[..]].concat(),
    );
    iptables(
        &swarm.ns_manager,
        &[&["-D", "OUTPUT"], &rule("DROP")[..]].concat(),
    );
    wait_for("the gossip finding to clear", 60, || {
        gossip(&doctor(&swarm.ns_worker).1).is_none().then_some(())
    });
}

/// VXLAN whose inner SYNs (12 connection attempts) carry a wrong checksum
/// (what a NIC with broken offload, or a device that corrupts them,
/// delivers) arriving at the
/// worker from the manager: the worker's doctor names the manager, the
/// exact count, its interface and driver, and the fix; the checksum
/// counter says exactly as many.
fn wrong_inner_checksums_are_named_with_the_driver(s: &Scene) {
    const SYNS: usize = 12;
    let swarm = &s.swarm;
    let vni: u32 = s.vni.trim().parse().expect("backend's VNI");
    // One connection attempt each (the check sums a SYN new to its flow).
    let frames: Vec<Vec<u8>> = (0..SYNS as u16)
        .map(|i| {
            let mut inner =
                packets::tcp_syn(&Net::v4([10, 0, 9, 250], [10, 0, 9, 251]), 40100 + i, 80);
            // Ethernet 14 + IPv4 20, then the TCP checksum at 16.
            inner[50] ^= 0x5a;
            let mut payload = packets::vxlan_header(vni).to_vec();
            payload.extend_from_slice(&inner);
            payload
        })
        .collect();
    let to = SocketAddr::from((WORKER_ADDR.parse::<Ipv4Addr>().expect("addr"), 4789));
    swarm
        .ns_manager
        .run_in(move || {
            let sock = std::net::UdpSocket::bind("0.0.0.0:0").expect("UDP socket");
            for f in &frames {
                sock.send_to(f, to).expect("sending VXLAN");
            }
        })
        .expect("in the manager's namespace");
    let broken = |h: &OverlayHealth| {
        h.findings
            .iter()
            .find(|f| f.kind == HealthKind::ChecksumOffload)
            .cloned()
    };
    let f = wait_for("the checksum finding on the worker", 10, || {
        broken(&doctor(&swarm.ns_worker).1)
    });
    assert!(
        f.message
            .contains(&format!("({MANAGER_ADDR}) on {WORKER_DEV}"))
            && f.message.contains(&format!("{SYNS} wrong"))
            && f.message.contains("(driver veth, rx-checksumming")
            && f.message.contains("tx-checksum-ip-generic off"),
        "{f:#?}"
    );
    let h = doctor(&swarm.ns_worker).1;
    let c: Vec<_> = h.checksums.iter().filter(|c| c.bad > 0).collect();
    assert_eq!(c.len(), 1, "{h:#?}");
    assert_eq!(
        (c[0].addr.to_string().as_str(), c[0].bad),
        (MANAGER_ADDR, SYNS as u64)
    );
    assert_eq!(
        metric(
            &scrape(&swarm.ns_worker),
            "netobs_inner_checksums_total",
            &[("verdict", "bad")]
        ),
        Some(SYNS as f64)
    );
    assert!(broken(&doctor(&swarm.ns_manager).1).is_none());
}

/// `iptables ARGS` in `ns`; it must succeed.
fn iptables(ns: &Netns, args: &[&str]) {
    let out = ns
        .command("iptables")
        .args(args)
        .output()
        .expect("iptables");
    assert!(
        out.status.success(),
        "iptables {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Packets the rule at `pos` of the filter table's `chain` matched.
fn rule_packets(ns: &Netns, chain: &str, pos: usize) -> u64 {
    let out = ns
        .command("iptables")
        .args(["-L", chain, &pos.to_string(), "-v", "-x", "-n"])
        .output()
        .expect("iptables -L");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("rule {pos} of {chain}: {text:?}"))
}

/// The forwarding entry of web's MAC in the manager's overlay namespace
/// rewritten to another address (as moby#52661's reporters found it): the
/// doctor names the network, the task and both nodes; the misdirected
/// packets are exactly the overlay packets sent there.
fn a_rewritten_forwarding_entry_is_named(s: &Scene) {
    let swarm = &s.swarm;
    let m = &swarm.manager;
    let wrong = "10.210.0.77";
    // A live address on the worker, so the packets really leave.
    swarm
        .ns_worker
        .ip(&["addr", "add", &format!("{wrong}/32"), "dev", WORKER_DEV])
        .expect("a second address");
    let id = m
        .docker(&["network", "inspect", "backend", "--format", "{{.Id}}"])
        .expect("network id");
    let ns = m
        .exec_root()
        .join("netns")
        .join(format!("1-{}", &id.trim()[..10]));
    let in_overlay = |args: &[&str]| -> String {
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .arg("--")
            .args(args)
            .output()
            .expect("nsenter");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let web_ip = api::<InventoryEndpoint>(&swarm.ns_manager)
        .endpoints
        .iter()
        .find(|e| e.service.as_deref() == Some("web"))
        .map(|e| e.ip.to_string())
        .expect("web's address");
    let neigh: serde_json::Value =
        serde_json::from_str(&in_overlay(&["ip", "-j", "neigh", "show", &web_ip]))
            .expect("ip -j neigh");
    let mac = neigh[0]["lladdr"].as_str().expect("web's MAC").to_owned();
    let links: serde_json::Value =
        serde_json::from_str(&in_overlay(&["ip", "-j", "link", "show", "type", "vxlan"]))
            .expect("ip -j link");
    let vx = links[0]["ifname"]
        .as_str()
        .expect("the VXLAN device")
        .to_owned();
    let fdb = |dst: &str| {
        in_overlay(&[
            "bridge",
            "fdb",
            "replace",
            &mac,
            "dev",
            &vx,
            "dst",
            dst,
            "self",
            "permanent",
        ])
    };
    fdb(wrong);
    probe(swarm, "probe-fdb", &["web"], 30, 1);
    let f = wait_for("the misdirection finding", 90, || {
        doctor(&swarm.ns_manager)
            .1
            .findings
            .into_iter()
            .find(|f| f.kind == HealthKind::VxlanMisdirected)
    });
    assert_eq!(f.network.as_deref(), Some("backend"));
    assert!(
        f.message.contains("web.1.")
            && f.message.contains(&format!("({wrong})"))
            && f.message.contains(&format!("({WORKER_ADDR})")),
        "{f:#?}"
    );
    fdb(WORKER_ADDR);
    remove_service(swarm, "probe-fdb");
    // Settled: every backend packet sent to the wrong address was for web.
    std::thread::sleep(Duration::from_secs(3));
    let text = scrape(&swarm.ns_manager);
    let misdirected = metric(
        &text,
        "netobs_vxlan_misdirected_packets_total",
        &[("network", "backend"), ("peer_node", wrong)],
    );
    let sent_there = metric(
        &text,
        "netobs_overlay_packets_total",
        &[
            ("network", "backend"),
            ("peer_node", wrong),
            ("direction", "egress"),
        ],
    );
    assert!(misdirected.is_some_and(|n| n > 0.0), "{misdirected:?}");
    assert_eq!(misdirected, sent_there);
    swarm
        .ns_worker
        .ip(&["addr", "del", &format!("{wrong}/32"), "dev", WORKER_DEV])
        .expect("removing the second address");
}

/// The underlay's MTU lowered to 1400 on both nodes (the overlay keeps its
/// 1450): full-size pings and their answers cross as IP fragments (TCP
/// would lower its segments instead, told by the tunnel's own ICMP). Both
/// doctors name the network, the peer, the interface's MTU and the network
/// option that fixes it; the fragments counted on each node are exactly
/// the first fragments tcpdump sees on the wire.
fn fragmented_vxlan_names_the_mtu_and_the_fix(s: &Scene) {
    const PINGS: u64 = 5;
    let swarm = &s.swarm;
    let mtu = |mtu: &str| {
        for (ns, dev) in [
            (&swarm.ns_manager, MANAGER_DEV),
            (&swarm.ns_worker, WORKER_DEV),
        ] {
            ns.ip(&["link", "set", dev, "mtu", mtu])
                .expect("setting the MTU");
        }
    };
    mtu("1400");
    let capture = TempPath::new("mtu.pcap");
    let tcpdump = start_capture(&swarm.ns_manager, MANAGER_DEV, capture.path());
    swarm
        .service(
            "probe-mtu",
            &["backend"],
            "manager",
            &[
                "sh",
                "-c",
                &format!("sleep 8; ping -c {PINGS} -s 1420 web; sleep 3600"),
            ],
        )
        .expect("probe service");
    let fragmentation = |ns: &Netns| {
        doctor(ns)
            .1
            .findings
            .into_iter()
            .find(|f| f.kind == HealthKind::MtuFragmentation)
    };
    let on_manager = wait_for("the manager's MTU finding", 90, || {
        fragmentation(&swarm.ns_manager)
    });
    let on_worker = wait_for("the worker's MTU finding", 30, || {
        fragmentation(&swarm.ns_worker)
    });
    for (f, dev) in [(&on_manager, MANAGER_DEV), (&on_worker, WORKER_DEV)] {
        assert_eq!(f.network.as_deref(), Some("backend"), "{f:#?}");
        assert!(
            f.message.contains(&format!("({dev}: 1400)"))
                && f.message.contains("(1450)")
                && f.message.contains("com.docker.network.driver.mtu=1350"),
            "{f:#?}"
        );
    }
    // The pings are done 8 + 5 s after the probe starts; then nothing
    // more crosses backend.
    std::thread::sleep(Duration::from_secs(12));
    let fragments = |t: &str| metric(t, "netobs_overlay_fragmented_packets_total", &[]);
    let _ = tcpdump.stop(libc::SIGINT);
    mtu("1500");
    remove_service(swarm, "probe-mtu");
    // First fragments: the UDP header is in them (tcpdump matches ports
    // only at offset 0), and more follow.
    let (firsts, _) = capture_count(capture.path(), "udp dst port 4789 and ip[6] & 0x20 != 0");
    // Which of the pings and answers fragment is the kernels' business (a
    // sender that sets DF is told the tunnel's MTU and fragments inside
    // instead): at least some do, and every one is counted.
    assert!(
        (1..=2 * PINGS).contains(&firsts),
        "{firsts} fragmented of {PINGS} pings and their answers"
    );
    for (ns, side) in [(&swarm.ns_manager, "manager"), (&swarm.ns_worker, "worker")] {
        assert_eq!(fragments(&scrape(ns)), Some(firsts as f64), "{side}");
    }
}

/// A real Prometheus, the shipped rules, the agent on the manager: the
/// policy alert fires, and every rule and panel returns data (ESP
/// included, injected from the worker).
fn prometheus_alerts_and_every_panel_has_data(s: &Scene) {
    let swarm = &s.swarm;
    let prom_tmp = TempPath::new("prometheus");
    let prom_dir = prom_tmp.path();
    std::fs::create_dir_all(prom_dir).expect("prometheus dir");
    let prom = start_prometheus(&swarm.ns_manager, prom_dir);
    let firing = wait_firing(&swarm.ns_manager, "NetobsUnencryptedOverlay", 60);
    vxlan_from_a_host_that_is_no_node_is_counted_and_fires(s);
    assert!(
        firing.iter().any(|l| l["network"] == "backend"),
        "{firing:?}"
    );
    // Real ESP (AES-GCM, RFC 4106) from the worker: the ESP panels need it.
    let injector = EspInjector::new(&swarm.ns_worker).expect("ESP injector");
    let sa = EspSa::new(0x5eed_0001, [0x24; 16], [1, 2, 3, 4]);
    let inner = &packets::udp(&Net::containers(), 5000, 6000, b"sealed")[14..];
    let manager_ip: Ipv4Addr = MANAGER_ADDR.parse().expect("address");
    for seq in 1..=20 {
        injector
            .send_esp(
                manager_ip,
                &sa.seal(seq, inner, NEXT_HEADER_IPV4).expect("seal"),
            )
            .expect("ESP");
    }
    let prom_addr: SocketAddr = PROMETHEUS.parse().expect("address");
    // All but loss between nodes: these agents serve on loopback, out of
    // each other's reach (cluster.rs runs those).
    every_shipped_expression_returns_data(&swarm.ns_manager, prom_addr, |m| {
        !m.iter().any(|m| BETWEEN_NODES.contains(&m.as_str()))
    });
    drop(prom);
}

/// VXLAN to the manager's data-path port from an address on the underlay
/// that is no node of the swarm (what an exposed port lets anyone do):
/// counted exactly, and the shipped rule fires for the manager. Called with
/// Prometheus scraping, so that it sees the counter grow.
fn vxlan_from_a_host_that_is_no_node_is_counted_and_fires(s: &Scene) {
    const INJECTED: usize = 9;
    let swarm = &s.swarm;
    let stranger = "10.210.0.99";
    swarm
        .ns_worker
        .ip(&["addr", "add", &format!("{stranger}/32"), "dev", WORKER_DEV])
        .expect("a second address");
    let unknown = |t: &str| {
        metric(
            t,
            "netobs_vxlan_from_unknown_peer_packets_total",
            &[("iface", MANAGER_DEV)],
        )
        .unwrap_or(0.0)
    };
    let before = unknown(&scrape(&swarm.ns_manager));
    let vni: u32 = s.vni.parse().expect("a VNI");
    let inner = packets::udp(&Net::containers(), 5000, 80, b"GET / HTTP/1.1\r\n\r\n");
    let mut datagram = packets::vxlan_header(vni).to_vec();
    datagram.extend_from_slice(&inner);
    let to: SocketAddr = format!("{MANAGER_ADDR}:4789").parse().expect("addr");
    let from: SocketAddr = format!("{stranger}:40000").parse().expect("addr");
    swarm
        .ns_worker
        .run_in(move || {
            let sock = std::net::UdpSocket::bind(from).expect("binding the stranger");
            for _ in 0..INJECTED {
                sock.send_to(&datagram, to).expect("sending");
            }
        })
        .expect("in the worker's namespace");
    let text = wait_metrics(&swarm.ns_manager, "the stranger's VXLAN", 30, |t| {
        unknown(t) >= before + INJECTED as f64
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        unknown(&scrape(&swarm.ns_manager)),
        before + INJECTED as f64,
        "{}",
        unknown(&text)
    );
    let firing = wait_firing(&swarm.ns_manager, "NetobsVxlanFromUnknownPeer", 60);
    assert_eq!(firing.len(), 1, "{firing:?}");
    swarm
        .ns_worker
        .ip(&["addr", "del", &format!("{stranger}/32"), "dev", WORKER_DEV])
        .expect("removing the second address");
}

/// `netobs audit` on the worker, which cannot read the swarm's settings,
/// while ESP leaves it for the manager and none comes back (what a firewall
/// dropping protocol 50 looks like), on an SA 2 h from its sequence-number
/// wrap.
fn the_audit_on_a_worker_sees_one_way_esp_near_its_wrap(s: &Scene) {
    let swarm = &s.swarm;
    let esp = kernel_has_esp();
    let injector = EspInjector::new(&swarm.ns_worker).expect("ESP injector");
    let inner = &packets::udp(&Net::containers(), 5000, 6000, b"sealed")[14..];
    let manager_ip: Ipv4Addr = MANAGER_ADDR.parse().expect("address");
    let busy = EspSa::new(0x5eed_0002, [0x42; 16], [5, 6, 7, 8]);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let worker_audit = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut seq = u32::MAX - 2_000_000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(p) = busy.seal(seq, inner, NEXT_HEADER_IPV4) {
                    let _ = injector.send_esp(manager_ip, &p);
                }
                seq = seq.wrapping_add(1);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        std::thread::sleep(Duration::from_secs(2));
        let out = ask_agent(&swarm.ns_worker, &["audit", "--json"]);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        out
    });
    assert_eq!(
        worker_audit.status.code(),
        Some(1),
        "findings exit 1: {}",
        String::from_utf8_lossy(&worker_audit.stderr)
    );
    let audit: serde_json::Value =
        serde_json::from_slice(&worker_audit.stdout).expect("audit JSON");
    let found = |kind: &str| {
        audit["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["kind"] == kind)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(audit["data_path_port_from"], "default", "{audit}");
    assert_eq!(
        found("ipsec_no_state")
            .iter()
            .any(|f| f["network"] == "secure"),
        !esp,
        "the worker sees secure's IPsec states as the manager does: {audit}"
    );
    assert_eq!(found("esp_one_way").len(), 1, "{audit}");
    assert_eq!(found("esp_sequence_wrap").len(), 1, "{audit}");
    let spi = audit["esp"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["spis"].as_array().into_iter().flatten())
        .find(|s| s["spi"] == "0x5eed0002" && s["direction"] == "egress")
        .cloned()
        .unwrap_or_default();
    let rate = spi["seq_per_sec"].as_f64().unwrap_or(0.0);
    assert!(rate > 10.0 && rate <= 250.0, "about 200/s at most: {spi}");
    assert!(
        spi["wraps_in_secs"]
            .as_f64()
            .is_some_and(|w| w < netobs::audit::KEY_ROTATION_SECS),
        "{spi}"
    );
}

/// The manager's engine goes away: counting goes on, docker_up says so; it
/// comes back: labels return, and a new client task's requests are counted
/// exactly again.
fn counting_goes_on_while_the_engine_restarts(s: &mut Scene) {
    let swarm = &mut s.swarm;
    let before = scrape(&swarm.ns_manager);
    let other = |t: &str| metric(t, "netobs_packets_total", &[("class", "other")]).unwrap_or(0.0);
    swarm
        .manager
        .stop_daemon()
        .expect("stopping the manager's engine");
    wait_metrics(&swarm.ns_manager, "docker_up 0", 60, |t| {
        metric(t, "netobs_docker_up", &[]) == Some(0.0)
    });
    udp_send(
        &swarm.ns_manager,
        format!("{WORKER_ADDR}:9").parse().expect("addr"),
        25,
        100,
    )
    .expect("UDP");
    wait_metrics(
        &swarm.ns_manager,
        "counting while the engine is down",
        30,
        |t| other(t) >= other(&before) + 25.0,
    );
    swarm
        .manager
        .start_daemon()
        .expect("restarting the manager's engine");
    wait_metrics(&swarm.ns_manager, "docker_up 1", 90, |t| {
        metric(t, "netobs_docker_up", &[]) == Some(1.0)
    });
    // Right after a restart the engine's view of remote tasks is still
    // converging (its requests may be counted `unknown`, as they should).
    // Once the inventory knows both services again, a new client task's
    // requests are labelled again.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let inv = api::<InventoryEndpoint>(&swarm.ns_manager);
        let knows = |name: &str| {
            inv.endpoints
                .iter()
                .any(|e| e.service.as_deref() == Some(name))
        };
        if knows("web") && knows("client") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the inventory never knew web and client again: {inv:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The engine's restart restarted the client too, which makes its
    // requests again (labelled or not, as the inventory converges): wait
    // until no request has been counted for longer than its script takes.
    let all_requests = |t: &str| metric(t, "netobs_http_requests_total", &[]).unwrap_or(0.0);
    let mut last = (all_requests(&scrape(&swarm.ns_manager)), Instant::now());
    while last.1.elapsed() < Duration::from_secs(15) {
        assert!(
            Instant::now() < deadline + Duration::from_secs(60),
            "requests never stopped"
        );
        std::thread::sleep(Duration::from_secs(1));
        let now = all_requests(&scrape(&swarm.ns_manager));
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    let before = client_requests(&scrape(&swarm.ns_manager));
    swarm
        .manager
        .docker(&["service", "update", "--detach", "--force", "client"])
        .expect("restarting the client");
    let text = wait_metrics(
        &swarm.ns_manager,
        "labelled requests after the restart",
        120,
        |t| client_requests(t) >= before + REQUESTS as f64,
    );
    // Settled: a few more reads, and not one request more than were made.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        client_requests(&scrape(&swarm.ns_manager)),
        before + REQUESTS as f64,
        "exactly the new task's requests: {}",
        client_requests(&text)
    );
}
