//! The headline alarm, end to end, on plaintext Docker itself puts on the
//! wire: a swarm initialised with `--data-path-port 7789` on Docker 20.10
//! has its IPsec policy written for UDP 4789 only (moby#45635), so the VXLAN
//! of a network created with `--opt encrypted` really leaves in clear on
//! 7789. No packet here is injected. The manager's agent reads the port from
//! the swarm; the worker's is told it (a worker cannot read it).
//!
//! The worker's side drops what arrives in clear for an encrypted network
//! (Docker's inbound rule), so the leak is one way: a client's pings and a
//! TFTP request naming a card number leave in clear and get no answer. Every
//! alarm must name that network with the exact traffic the wire carried
//! (tcpdump's capture of the manager's underlay): the metric's bytes on both
//! nodes, the agent's alert, the pattern matched in the payload, the shipped
//! Prometheus rule firing, `PLAIN!!` on exactly that network's rows of
//! `netobs flows` and `netobs top`, and the audit's findings; a plain
//! network beside it, with the same traffic, raises nothing.
mod support;

use std::time::Duration;

use netobs::api::{AlertKind, AlertsEndpoint, FlowsEndpoint, PortSource, SummaryEndpoint};
use netobs_tests::{
    lab::Process,
    prom::metric,
    require_root,
    swarm::{TwoNodeSwarm, MANAGER_DEV, WORKER_DEV},
    tmp::TempPath,
    tmux::Tmux,
};
use support::*;

const PORT: u16 = 7789;
const PINGS: u64 = 5;
/// In clear in the TFTP request's file name.
const SECRET: &str = "card=4111-1111-1111-1111";

fn vni(swarm: &TwoNodeSwarm, network: &str) -> String {
    swarm
        .manager
        .docker(&[
            "network",
            "inspect",
            network,
            "--format",
            "{{index .Options \"com.docker.network.driver.overlay.vxlanid_list\"}}",
        ])
        .expect("vni")
}

#[test]
fn plaintext_on_an_encrypted_network_raises_every_alarm_with_exact_counts() {
    require_root!();
    let swarm = TwoNodeSwarm::with_data_path_port(Some(PORT)).expect("two-node swarm");
    swarm.network("vault", true).expect("encrypted network");
    swarm.network("open", false).expect("plain network");
    let vault_vni = vni(&swarm, "vault");
    let idle = ["sleep", "3600"];
    swarm
        .service("api", &["vault"], "worker", &idle)
        .expect("api service");
    swarm
        .service("www", &["open"], "worker", &idle)
        .expect("www service");
    swarm.wait_running("api", 1).expect("api running");
    swarm.wait_running("www", 1).expect("www running");

    let port = PORT.to_string();
    let agents: Vec<(Process, &str)> = vec![
        (
            start_agent(
                &swarm.ns_manager,
                MANAGER_DEV,
                &swarm.manager.host(),
                &["--pattern", "card="],
            ),
            "manager",
        ),
        (
            start_agent(
                &swarm.ns_worker,
                WORKER_DEV,
                &swarm.worker.host(),
                &["--data-path-port", &port, "--pattern", "card="],
            ),
            "worker",
        ),
    ];
    wait_docker_up(&swarm.ns_manager, "manager");
    wait_docker_up(&swarm.ns_worker, "worker");
    for (ns, from) in [
        (&swarm.ns_manager, PortSource::Swarm),
        (&swarm.ns_worker, PortSource::Flag),
    ] {
        let s = api::<SummaryEndpoint>(ns);
        assert_eq!((s.data_path.ports, s.data_path.from), (vec![PORT], from));
    }
    // Prometheus scrapes before the leak starts: the rule fires on the
    // counter's increase.
    let prom_tmp = TempPath::new("prometheus-leak");
    std::fs::create_dir_all(prom_tmp.path()).expect("prometheus dir");
    let prom = start_prometheus(&swarm.ns_manager, prom_tmp.path());

    let capture = TempPath::new("leak.pcap");
    let tcpdump = start_capture(&swarm.ns_manager, MANAGER_DEV, capture.path());
    // The same on each network: PINGS pings, then a TFTP request for 3 s
    // (busybox retransmits it). On vault none is answered.
    let script = format!(
        "sleep 8; for to in api www; do ping -q -c {PINGS} -i 0.2 -W 1 $to; \
         timeout 3 tftp -g -r {SECRET} -l /tmp/x $to; done; sleep 3600"
    );
    swarm
        .service(
            "client",
            &["vault", "open"],
            "manager",
            &["sh", "-c", &script],
        )
        .expect("client service");
    let matched = |t: &str, network: &str| {
        metric(
            t,
            "netobs_pattern_matches_total",
            &[("network", network), ("pattern", "card=")],
        )
        .unwrap_or(0.0)
    };
    // The last TFTP request is on `open`: once it is seen, 3 s more and
    // the client is done.
    wait_metrics(&swarm.ns_manager, "the client's traffic", 90, |t| {
        matched(t, "open") > 0.0
    });
    std::thread::sleep(Duration::from_secs(5));
    let _ = tcpdump.stop(libc::SIGINT);
    let on_vault = format!("udp dst port {PORT} and (udp[12:4] >> 8) = {vault_vni}");
    let (packets, bytes) = capture_count(capture.path(), &on_vault);
    eprintln!("vault's VXLAN in clear on the wire: {packets} packets, {bytes} bytes");
    // Inner IPv4 (no options) behind 8 + 8 + 14 bytes of UDP, VXLAN and
    // Ethernet: its protocol at udp[39], the inner UDP port at udp[52].
    let (pings, _) = capture_count(capture.path(), &format!("{on_vault} and udp[39] = 1"));
    assert_eq!(
        pings, PINGS,
        "every ping left, in clear, and none came back"
    );
    let (tftp, _) = capture_count(
        capture.path(),
        &format!("{on_vault} and udp[39] = 17 and udp[52:2] = 69"),
    );
    assert!(tftp > 0, "the TFTP request left in clear");
    assert_eq!(packets, pings + tftp, "nothing else crossed on vault");
    // Nothing crossed on the port Docker's policy covers.
    assert_eq!(capture_count(capture.path(), "udp port 4789").0, 0);

    // The metric, on both nodes: exactly the bytes the wire carried; none
    // for the plain network, which promised nothing.
    for (ns, side) in [(&swarm.ns_manager, "manager"), (&swarm.ns_worker, "worker")] {
        let text = scrape(ns);
        assert_eq!(
            metric(
                &text,
                "netobs_plaintext_on_encrypted_network_bytes_total",
                &[("network", "vault")]
            ),
            Some(bytes as f64),
            "{side}"
        );
        assert_eq!(
            metric(
                &text,
                "netobs_plaintext_on_encrypted_network_bytes_total",
                &[("network", "open")]
            ),
            None,
            "{side}"
        );
        // The card number, in every TFTP request on vault.
        assert_eq!(matched(&text, "vault"), tftp as f64, "{side}");

        // The agent's own alert: that network, those services, those
        // packets and bytes; nothing about the plain one.
        let alerts = api::<AlertsEndpoint>(ns).alerts;
        assert_eq!(alerts.len(), 1, "{side}: {alerts:#?}");
        let a = &alerts[0];
        assert_eq!(
            (a.kind, a.network.as_str(), a.vni.as_str()),
            (
                AlertKind::PlaintextOnEncryptedNetwork,
                "vault",
                vault_vni.as_str()
            ),
            "{side}"
        );
        assert_eq!((a.packets, a.bytes), (packets, bytes), "{side}");
        assert_eq!(
            a.services.iter().map(String::as_str).collect::<Vec<_>>(),
            ["api", "client"],
            "{side}"
        );
    }

    // The shipped rule, in a real Prometheus: firing for vault only.
    let firing = wait_firing(&swarm.ns_manager, "NetobsPlaintextOnEncryptedNetwork", 60);
    let networks: Vec<&str> = firing
        .iter()
        .filter_map(|l| l["network"].as_str())
        .collect();
    assert_eq!(networks, ["vault"], "{firing:?}");
    drop(prom);

    // `netobs flows`: PLAIN!! on exactly vault's rows, PLAIN on open's.
    let vault_flows = api::<FlowsEndpoint>(&swarm.ns_manager)
        .flows
        .iter()
        .filter(|f| f.labels.network == "vault")
        .count();
    assert_eq!(vault_flows, 2, "the pings' flow and the TFTP request's");
    let out = ask_agent(&swarm.ns_manager, &["flows"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let rows = |pred: &dyn Fn(&str) -> bool| text.lines().filter(|l| pred(l)).count();
    assert_eq!(rows(&|l| l.contains("PLAIN!!")), vault_flows, "{text}");
    assert_eq!(
        rows(&|l| l.starts_with("vault ") && l.contains(" PLAIN!! ")),
        vault_flows,
        "{text}"
    );
    assert!(
        rows(&|l| l.starts_with("open ")) > 0
            && rows(&|l| l.starts_with("open ") && l.contains(" PLAIN "))
                == rows(&|l| l.starts_with("open ")),
        "{text}"
    );

    // `netobs top`, in a terminal: vault's service pairs marked, then (g)
    // the same connections as `flows`, and the header's count of them.
    let tmux = Tmux::start(&format!(
        "nsenter --net={} -- {} top --agent {METRICS}",
        swarm.ns_manager.path().display(),
        env!("CARGO_BIN_EXE_netobs")
    ));
    let screen = tmux.wait_for(
        |s| s.contains("plaintext flows on encrypted networks") && s.contains("PLAIN!!"),
        "top's header and vault's pairs",
    );
    let marked: Vec<&str> = screen.lines().filter(|l| l.contains("PLAIN!!")).collect();
    assert!(marked.iter().all(|l| l.starts_with("+ vault ")), "{screen}");
    tmux.keys("g");
    let screen = tmux.wait_for(|s| s.contains("g view: connections"), "the connections");
    let marked: Vec<&str> = screen.lines().filter(|l| l.contains("PLAIN!!")).collect();
    assert_eq!(marked.len(), vault_flows, "{screen}");
    assert!(marked.iter().all(|l| l.starts_with("vault ")), "{screen}");
    assert!(
        screen.contains(&format!(
            "plaintext flows on encrypted networks {vault_flows}"
        )),
        "{screen}"
    );
    tmux.keys("q");
    drop(tmux);

    // The audit, on both nodes: vault broken by plaintext, with exactly the
    // packets seen, and the policy that covers the wrong port named.
    for (ns, side, from) in [
        (&swarm.ns_manager, "manager", "swarm"),
        (&swarm.ns_worker, "worker", "agent"),
    ] {
        let out = ask_agent(ns, &["audit", "--json"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{side}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("audit JSON");
        assert_eq!(v["data_path_port"], PORT, "{side}: {v}");
        assert_eq!(v["data_path_port_from"], from, "{side}: {v}");
        let vault = v["networks"]
            .as_array()
            .and_then(|n| n.iter().find(|n| n["name"] == "vault"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(vault["status"], "broken", "{side}: {v}");
        assert_eq!(vault["plaintext_packets"], packets, "{side}: {v}");
        assert_eq!(
            vault["plaintext_pairs"],
            serde_json::json!(["client -> api"]),
            "{side}: {v}"
        );
        let kinds: Vec<&str> = v["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["network"] == "vault")
            .filter_map(|f| f["kind"].as_str())
            .collect();
        assert!(
            kinds.contains(&"plaintext_on_encrypted") && kinds.contains(&"ipsec_wrong_port"),
            "{side}: {kinds:?}"
        );
    }

    for (agent, side) in agents {
        stop_agent(agent, side);
    }
}
