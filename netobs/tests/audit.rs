//! `netobs audit`'s judgement on IPsec, against policies the test programs
//! into a namespace's kernel (this kernel has no ESP, so it takes policies
//! but no states: exactly the "policy without a state" failure).
use std::{collections::BTreeMap, net::IpAddr};

use netobs::{
    audit::{self, xfrm, Inputs, Severity},
    inventory::{Inventory, Network, Node, Peer, SwarmState},
};
use netobs_tests::{netns::Netns, require_root};
use serde_json::{json, Value};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn inventory() -> Inventory {
    // Network peers carry NetworkDB's random names; the audit names nodes
    // by hostname, as the manager's node list gives them.
    let peer = |name: &str, addr: &str| Peer {
        name: format!("5eb61e0971{name}"),
        ip: Some(ip(addr)),
    };
    let node = |name: &str, addr: &str| Node {
        id: format!("id-{name}"),
        hostname: name.into(),
        role: "worker".into(),
        addr: Some(ip(addr)),
    };
    let mut typo = BTreeMap::new();
    typo.insert("encryption".to_owned(), String::new());
    let network = |name: &str, vni: u32, encrypted: bool, options| Network {
        id: format!("id-{name}"),
        name: name.into(),
        vnis: vec![vni],
        encrypted,
        ingress: name == "ingress",
        options,
        subnets: vec![],
        peers: vec![
            peer("me", "10.220.0.1"),
            peer("n2", "10.220.0.2"),
            peer("n3", "10.220.0.3"),
            peer("n4", "10.220.0.4"),
        ],
    };
    Inventory {
        docker_up: true,
        swarm: Some(SwarmState {
            node_id: "me".into(),
            node_addr: Some(ip("10.220.0.1")),
            hostname: "me".into(),
            manager: true,
            data_path_port: Some(4789),
        }),
        networks: vec![
            network("vault", 4100, true, BTreeMap::new()),
            network("typo", 4101, false, typo),
            network("ingress", 4096, false, BTreeMap::new()),
        ],
        nodes: vec![
            node("n2", "10.220.0.2"),
            node("n3", "10.220.0.3"),
            node("n4", "10.220.0.4"),
        ],
        ..Inventory::default()
    }
}

#[test]
fn ipsec_policies_and_options_are_judged() {
    require_root!();
    let ns = Netns::new("audit").expect("namespace");
    // n2: the data-path port through ESP, but no state (dropped traffic);
    // n3: a policy for another port (VXLAN leaks); n4: nothing at all.
    for (peer, port) in [("10.220.0.2", "4789"), ("10.220.0.3", "4790")] {
        ns.ip(&[
            "xfrm",
            "policy",
            "add",
            "src",
            "10.220.0.1",
            "dst",
            peer,
            "proto",
            "udp",
            "dport",
            port,
            "dir",
            "out",
            "tmpl",
            "src",
            "10.220.0.1",
            "dst",
            peer,
            "proto",
            "esp",
            "reqid",
            "7",
            "mode",
            "transport",
        ])
        .expect("ip xfrm policy add");
    }
    let x = ns
        .run_in(xfrm::read)
        .expect("namespace")
        .expect("xfrm dump");
    assert_eq!(x.policies.len(), 2, "{x:?}");
    assert!(x
        .policies
        .iter()
        .any(|p| p.dst == ip("10.220.0.2") && p.dport == 4789 && p.proto == 17 && p.dir == 1));
    assert!(x.states.is_empty(), "no ESP on this kernel");

    let inv = inventory();
    let r = audit::audit(&inputs(&inv, &x, &[], &[]));
    let kinds = |peer: &str| -> Vec<&str> {
        r.findings
            .iter()
            .filter(|f| f.peer.as_deref() == Some(peer))
            .map(|f| f.kind)
            .collect()
    };
    assert_eq!(kinds("n2"), ["ipsec_no_state"], "{:#?}", r.findings);
    assert_eq!(kinds("n3"), ["ipsec_wrong_port"], "{:#?}", r.findings);
    assert_eq!(kinds("n4"), ["ipsec_missing"], "{:#?}", r.findings);
    assert!(kinds("me").is_empty(), "the node itself is no peer");
    let by_network = |net: &str| -> Vec<&str> {
        r.findings
            .iter()
            .filter(|f| f.network.as_deref() == Some(net) && f.peer.is_none())
            .map(|f| f.kind)
            .collect()
    };
    assert_eq!(by_network("typo"), ["mistyped_option", "not_encrypted"]);
    assert_eq!(by_network("ingress"), ["ingress_plaintext"]);
    let status: Vec<(&str, &str)> = r
        .networks
        .iter()
        .map(|n| (n.name.as_str(), n.status))
        .collect();
    assert_eq!(
        status,
        [
            ("ingress", "not_encrypted"),
            ("typo", "not_encrypted"),
            ("vault", "broken"),
        ]
    );
    assert!(
        r.findings[0].severity == Severity::Critical,
        "critical first"
    );
    assert_eq!(r.exit_code(), 1);
    assert_eq!((r.data_path_port, r.data_path_port_from), (4789, "swarm"));
}

/// The kernel's IPsec view of a healthy node: for each remote peer a policy
/// for the data-path port and SAs both ways, installed `age` seconds ago.
fn healthy_xfrm(now: f64, age: f64) -> xfrm::Xfrm {
    let me = ip("10.220.0.1");
    let mut x = xfrm::Xfrm::default();
    for (n, peer) in ["10.220.0.2", "10.220.0.3", "10.220.0.4"]
        .iter()
        .enumerate()
    {
        let peer = ip(peer);
        x.policies.push(xfrm::Policy {
            src: me,
            dst: peer,
            proto: 17,
            dport: 4789,
            dir: 1,
        });
        for (src, dst, spi) in [(me, peer, 0x100 + n as u32), (peer, me, 0x200 + n as u32)] {
            x.states.push(xfrm::State {
                src,
                dst,
                spi,
                proto: 50,
                add_time: (now - age) as u64,
            });
        }
    }
    x
}

fn esp_flow(peer: &str, direction: &str, spi: u32, seq: u32, first: f64, last: f64) -> Value {
    json!({
        "class": "esp", "direction": direction, "spi": spi, "esp_seq": seq,
        "packets": 10, "first_seen": first, "last_seen": last,
        "labels": {"peer_node": peer},
    })
}

fn kinds(r: &audit::Report) -> Vec<(&str, Option<&str>)> {
    r.findings
        .iter()
        .map(|f| (f.kind, f.peer.as_deref().or(f.network.as_deref())))
        .collect()
}

const NOW: f64 = 2_000_000_000.0;

/// What the audit reads, sampled 2 s apart at `NOW`, with no port given.
fn inputs<'a>(
    inv: &'a Inventory,
    x: &'a xfrm::Xfrm,
    flows: &'a [Value],
    flows_before: &'a [Value],
) -> Inputs<'a> {
    Inputs {
        inv,
        flows,
        flows_before,
        alerts: &[],
        dt: 2.0,
        xfrm: Ok(x),
        data_path_port: None,
        agent_data_path: None,
        now: NOW,
    }
}

#[test]
fn a_healthy_encrypted_network_passes() {
    let mut inv = inventory();
    inv.networks.truncate(1);
    let x = healthy_xfrm(NOW, 3600.0);
    let flows = [
        esp_flow("n2", "egress", 0x100, 500, NOW - 600.0, NOW - 1.0),
        esp_flow("n2", "ingress", 0x200, 400, NOW - 600.0, NOW - 2.0),
    ];
    let r = audit::audit(&Inputs {
        // This command's flag wins over the agent's port.
        data_path_port: Some(4789),
        agent_data_path: Some((7789, "flag".into())),
        ..inputs(&inv, &x, &flows, &flows)
    });
    assert_eq!(kinds(&r), [], "{:#?}", r.findings);
    assert_eq!(r.networks[0].status, "protected");
    assert_eq!(r.exit_code(), 0);
    assert_eq!(r.networks[0].peers.len(), 3, "every remote peer checked");
    assert_eq!(r.networks[0].peers[0].newest_sa_age_secs, Some(3600.0));
    assert_eq!((r.data_path_port, r.data_path_port_from), (4789, "flag"));
}

#[test]
fn esp_health_is_judged_per_peer() {
    let mut inv = inventory();
    inv.networks.truncate(1);
    let x = healthy_xfrm(NOW, 3600.0);
    let before = [
        // n2: 500 sequence numbers a second, 2 h from the wrap.
        esp_flow(
            "n2",
            "egress",
            0x100,
            u32::MAX - 3_601_000,
            NOW - 60.0,
            NOW - 2.0,
        ),
        esp_flow("n2", "ingress", 0x200, 9, NOW - 60.0, NOW - 2.0),
    ];
    let now = [
        esp_flow("n2", "egress", 0x100, u32::MAX - 3_600_000, NOW - 60.0, NOW),
        esp_flow("n2", "ingress", 0x200, 10, NOW - 60.0, NOW - 1.0),
        // n3: ESP out, none has come back for five minutes (a firewall
        // added later); n4: ESP out and never any back.
        esp_flow("n3", "egress", 0x101, 7_000, NOW - 900.0, NOW - 1.0),
        esp_flow("n3", "ingress", 0x201, 6_000, NOW - 900.0, NOW - 300.0),
        esp_flow("n4", "egress", 0x102, 30, NOW - 30.0, NOW - 1.0),
    ];
    let r = audit::audit(&inputs(&inv, &x, &now, &before));
    assert_eq!(
        kinds(&r),
        [
            ("esp_one_way", Some("n3")),
            ("esp_one_way", Some("n4")),
            ("esp_sequence_wrap", Some("n2")),
        ],
        "{:#?}",
        r.findings
    );
    let n2 = &r.esp[0];
    assert_eq!(
        (n2.peer.as_str(), n2.packets_out, n2.packets_in),
        ("n2", 10, 10)
    );
    let out = &n2.spis[0];
    assert_eq!((out.spi.as_str(), out.seq_per_sec), ("0x00000100", 500.0));
    assert_eq!(out.wraps_in_secs, Some(7200.0));
    assert_eq!(r.networks[0].status, "protected", "ESP health is per peer");
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn keys_that_stopped_rotating_are_found() {
    let mut inv = inventory();
    inv.networks.truncate(1);
    // Newest SAs 14 h old, and the wire has used one SPI each way for 14 h.
    let x = healthy_xfrm(NOW, 14.0 * 3600.0);
    let flows = [
        esp_flow("n2", "egress", 0x100, 10, NOW - 14.0 * 3600.0, NOW - 1.0),
        esp_flow("n2", "ingress", 0x200, 10, NOW - 14.0 * 3600.0, NOW - 1.0),
        // An old SPI no longer in use does not count; a fresh one does.
        esp_flow("n3", "egress", 0x101, 10, NOW - 20.0 * 3600.0, NOW - 3600.0),
        esp_flow("n3", "egress", 0x301, 10, NOW - 3600.0, NOW - 1.0),
        esp_flow("n3", "ingress", 0x201, 10, NOW - 3600.0, NOW - 1.0),
    ];
    let r = audit::audit(&inputs(&inv, &x, &flows, &flows));
    assert_eq!(
        kinds(&r),
        [
            ("ipsec_key_not_rotated", Some("n2")),
            ("ipsec_key_not_rotated", Some("n3")),
            ("ipsec_key_not_rotated", Some("n4")),
            ("esp_spi_not_rotated", Some("n2")),
            ("esp_spi_not_rotated", Some("n2")),
        ],
        "{:#?}",
        r.findings
    );
}

#[test]
fn plaintext_on_an_encrypted_network_breaks_it() {
    let mut inv = inventory();
    inv.networks.truncate(1);
    let x = healthy_xfrm(NOW, 60.0);
    // The swarm's data path moved to 7789 (the agent was told so); Docker's
    // policies still say 4789.
    let leak = json!({
        "class": "vxlan", "direction": "egress", "vni": 4100, "packets": 42,
        "first_seen": NOW - 5.0, "last_seen": NOW - 1.0,
        "labels": {"network": "vault", "src_service": "api", "dst_service": "db"},
    });
    let r = audit::audit(&Inputs {
        agent_data_path: Some((7789, "flag".into())),
        ..inputs(&inv, &x, std::slice::from_ref(&leak), &[])
    });
    let found = kinds(&r);
    assert_eq!(found[0], ("ipsec_wrong_port", Some("n2")), "{found:?}");
    assert!(
        found.contains(&("plaintext_on_encrypted", Some("vault"))),
        "{found:?}"
    );
    let n = &r.networks[0];
    assert_eq!((n.status, n.plaintext_packets), ("broken", 42));
    assert_eq!(n.plaintext_services, ["api -> db"]);
    assert_eq!((r.data_path_port, r.data_path_port_from), (7789, "agent"));
}

#[test]
fn encrypted_false_still_encrypts_and_is_only_noted() {
    let mut inv = inventory();
    inv.networks.truncate(1);
    inv.networks[0]
        .options
        .insert("encrypted".into(), "false".into());
    let x = healthy_xfrm(NOW, 60.0);
    let r = audit::audit(&Inputs {
        // An agent's default is a guess: the swarm's own port wins.
        agent_data_path: Some((4789, "default".into())),
        ..inputs(&inv, &x, &[], &[])
    });
    assert_eq!(kinds(&r), [("encrypted_false", Some("vault"))]);
    assert_eq!(r.exit_code(), 0, "information, not a finding to act on");
    assert_eq!(r.data_path_port_from, "swarm");
}

#[test]
fn a_small_leak_outside_the_busiest_flows_is_found_by_the_agents_alert() {
    let mut inv = inventory();
    inv.networks.truncate(1);
    let x = healthy_xfrm(NOW, 60.0);
    let alerts = [json!({
        "kind": "plaintext_on_encrypted_network", "severity": "critical",
        "network": "vault", "vni": "4100", "packets": 3, "bytes": 300,
        "services": ["api", "db"], "peer_nodes": ["n2"],
    })];
    let r = audit::audit(&Inputs {
        alerts: &alerts,
        ..inputs(&inv, &x, &[], &[])
    });
    assert_eq!(kinds(&r), [("plaintext_on_encrypted", Some("vault"))]);
    let n = &r.networks[0];
    assert_eq!((n.status, n.plaintext_packets), ("broken", 3));
    assert_eq!(n.plaintext_services, ["api", "db"]);
}

#[test]
fn without_the_kernels_view_an_encrypted_network_is_unchecked_not_protected() {
    let mut inv = inventory();
    inv.networks.truncate(1);
    let r = audit::audit(&Inputs {
        xfrm: Err("Operation not permitted".into()),
        ..inputs(&inv, &xfrm::Xfrm::default(), &[], &[])
    });
    assert_eq!(kinds(&r), [("ipsec_unreadable", None)]);
    assert_eq!(r.networks[0].status, "unchecked");
    assert_eq!(r.exit_code(), 1);
}
