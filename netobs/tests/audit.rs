//! `netobs audit`'s judgement: on IPsec policies the test programs into a
//! namespace's kernel (this kernel has no ESP, so it takes policies but no
//! states: exactly the "policy without a state" failure), and on kernel
//! views, flows and alerts built for each case.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::OnceLock,
};

use netobs::{
    api::{
        Alert, AlertKind, Class, DataPath, Direction, Encryption, Flow, FlowLabels, LabelledFlow,
        NetworkStatus, Policy, PortSource,
    },
    audit::{self, xfrm, AgentView, Inputs, Severity},
    inventory::{Endpoint, EndpointKind, Inventory, Network, Node, Peer, SwarmState},
};
use netobs_tests::{netns::Netns, require_root};

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
            .map(|f| f.kind.as_str())
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
            .map(|f| f.kind.as_str())
            .collect()
    };
    assert_eq!(by_network("typo"), ["mistyped_option", "not_encrypted"]);
    assert_eq!(by_network("ingress"), ["ingress_plaintext"]);
    let status: Vec<(&str, NetworkStatus)> = r
        .networks
        .iter()
        .map(|n| (n.name.as_str(), n.status))
        .collect();
    assert_eq!(
        status,
        [
            ("ingress", NetworkStatus::NotEncrypted),
            ("typo", NetworkStatus::NotEncrypted),
            ("vault", NetworkStatus::Broken),
        ]
    );
    assert!(
        r.findings[0].severity == Severity::Critical,
        "critical first"
    );
    assert_eq!(r.exit_code(), 1);
    assert_eq!(
        (r.data_path_port, r.data_path_port_from),
        (4789, PortSource::Swarm)
    );
}

/// The outbound policy Docker programs towards a peer: the data path
/// (UDP 4789) through ESP.
fn docker_policy(src: IpAddr, dst: IpAddr) -> xfrm::Policy {
    xfrm::Policy {
        src,
        dst,
        dst_prefix: 32,
        proto: 17,
        dport: 4789,
        dport_mask: 0xffff,
        dir: xfrm::DIR_OUT,
        action: xfrm::ACTION_ALLOW,
    }
}

fn docker_sa(src: IpAddr, dst: IpAddr, spi: u32, add_time: u64) -> xfrm::State {
    xfrm::State {
        src,
        dst,
        spi,
        proto: 50,
        reqid: xfrm::DOCKER_REQID,
        add_time,
    }
}

/// The kernel's IPsec view of a healthy node: for each remote peer a policy
/// for the data-path port and Docker's SAs both ways, installed `age`
/// seconds ago.
fn healthy_xfrm(now: f64, age: f64) -> xfrm::Xfrm {
    let me = ip(ME);
    let mut x = xfrm::Xfrm::default();
    for (n, peer) in PEERS.iter().enumerate() {
        let peer = ip(peer);
        x.policies.push(docker_policy(me, peer));
        for (src, dst, spi) in [(me, peer, 0x100 + n as u32), (peer, me, 0x200 + n as u32)] {
            x.states.push(docker_sa(src, dst, spi, (now - age) as u64));
        }
    }
    x
}

const ME: &str = "10.220.0.1";
const PEERS: [&str; 3] = ["10.220.0.2", "10.220.0.3", "10.220.0.4"];

/// A flow of `class` between this node and `far`, seen from `first` to
/// `last`, with nothing else known of it.
fn flow(class: Class, direction: &str, far: IpAddr, first: f64, last: f64) -> LabelledFlow {
    let egress = direction == "egress";
    let (src, dst) = if egress { (ip(ME), far) } else { (far, ip(ME)) };
    LabelledFlow {
        flow: Flow {
            ifindex: 2,
            direction: if egress {
                Direction::Egress
            } else {
                Direction::Ingress
            },
            class,
            outer_src: Some(src),
            outer_dst: Some(dst),
            vni: None,
            spi: None,
            esp_in_udp: None,
            esp_seq: None,
            inner_proto: None,
            inner_src: None,
            inner_dst: None,
            inner_sport: None,
            inner_dport: None,
            packets: 10,
            bytes: 1000,
            first_seen: first,
            last_seen: last,
            http_requests: BTreeMap::new(),
            http_responses: BTreeMap::new(),
            pattern_hits: BTreeMap::new(),
            tcp_flags: None,
            outer_fragments: 0,
        },
        labels: FlowLabels {
            network: String::new(),
            vni: String::new(),
            encrypted: Encryption::Encrypted,
            peer_node: String::new(),
            src_service: String::new(),
            dst_service: String::new(),
            peer_known: true,
        },
        last_request: None,
    }
}

/// An ESP flow with node `peer` ("n2" is 10.220.0.2).
fn esp_flow(
    peer: &str,
    direction: &str,
    spi: u32,
    seq: u32,
    first: f64,
    last: f64,
) -> LabelledFlow {
    let far = ip(&format!("10.220.0.{}", &peer[1..]));
    let mut f = flow(Class::Esp, direction, far, first, last);
    f.flow.spi = Some(spi);
    f.flow.esp_seq = Some(seq);
    f.flow.esp_in_udp = Some(false);
    f.labels.peer_node = peer.to_owned();
    f
}

/// Plaintext VXLAN from `src` to `dst` on the vault network (VNI 4100).
fn leak(src: &str, dst: &str, packets: u64, first: f64, last: f64) -> LabelledFlow {
    let mut f = flow(Class::Vxlan, "egress", ip(PEERS[0]), first, last);
    f.flow.vni = Some(4100);
    f.flow.packets = packets;
    f.labels.network = "vault".into();
    f.labels.vni = "4100".into();
    f.labels.src_service = src.into();
    f.labels.dst_service = dst.into();
    f.labels.peer_node = "n2".into();
    f
}

fn kinds(r: &audit::Report) -> Vec<(&str, Option<&str>)> {
    r.findings
        .iter()
        .map(|f| (f.kind.as_str(), f.peer.as_deref().or(f.network.as_deref())))
        .collect()
}

const NOW: f64 = 2_000_000_000.0;

fn local() -> &'static BTreeSet<IpAddr> {
    static LOCAL: OnceLock<BTreeSet<IpAddr>> = OnceLock::new();
    LOCAL.get_or_init(|| [ip(ME), ip("127.0.0.1")].into())
}

static NO_AGENT: OnceLock<AgentView> = OnceLock::new();

/// What the audit reads, sampled 2 s apart at `NOW`, with no port or
/// requirement given and an agent that says nothing of itself.
fn inputs<'a>(
    inv: &'a Inventory,
    x: &'a xfrm::Xfrm,
    flows: &'a [LabelledFlow],
    flows_before: &'a [LabelledFlow],
) -> Inputs<'a> {
    Inputs {
        inv,
        flows,
        flows_before,
        alerts: &[],
        dt: 2.0,
        xfrm: Ok(x),
        local_addrs: local(),
        agent: NO_AGENT.get_or_init(AgentView::default),
        data_path_port: None,
        require_encryption: None,
        now: NOW,
    }
}

/// An agent classifying `ports` as VXLAN, from `from`.
fn agent_on(ports: &[u16], from: PortSource) -> AgentView {
    AgentView {
        data_path: DataPath {
            ports: ports.to_vec(),
            from,
        },
        require_encryption: Policy::None,
    }
}

fn vault_only() -> Inventory {
    let mut inv = inventory();
    inv.networks.truncate(1);
    inv
}

#[test]
fn a_healthy_encrypted_network_passes() {
    let inv = vault_only();
    let x = healthy_xfrm(NOW, 3600.0);
    let flows = [
        esp_flow("n2", "egress", 0x100, 500, NOW - 600.0, NOW - 1.0),
        esp_flow("n2", "ingress", 0x200, 400, NOW - 600.0, NOW - 2.0),
    ];
    let agent = agent_on(&[7789, 4789], PortSource::Flag);
    let r = audit::audit(&Inputs {
        // This command's flag wins over the agent's port.
        data_path_port: Some(4789),
        agent: &agent,
        ..inputs(&inv, &x, &flows, &flows)
    });
    assert_eq!(kinds(&r), [], "{:#?}", r.findings);
    assert_eq!(r.networks[0].status, NetworkStatus::Protected);
    assert_eq!(r.exit_code(), 0);
    assert_eq!(r.networks[0].peers.len(), 3, "every remote peer checked");
    assert_eq!(r.networks[0].peers[0].newest_sa_age_secs, Some(3600.0));
    assert_eq!(
        (r.data_path_port, r.data_path_port_from),
        (4789, PortSource::Flag)
    );
}

#[test]
fn esp_health_is_judged_per_peer() {
    let inv = vault_only();
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
    let mut in_udp = esp_flow("n4", "egress", 0x102, 30, NOW - 30.0, NOW - 1.0);
    in_udp.flow.esp_in_udp = Some(true);
    let mut vpn = esp_flow("n9", "egress", 0x999, 30, NOW - 30.0, NOW - 1.0);
    vpn.labels.peer_node = "203.0.113.9".into();
    vpn.flow.outer_dst = Some(ip("203.0.113.9"));
    let now = [
        esp_flow("n2", "egress", 0x100, u32::MAX - 3_600_000, NOW - 60.0, NOW),
        esp_flow("n2", "ingress", 0x200, 10, NOW - 60.0, NOW - 1.0),
        // n3: ESP out, none has come back for five minutes (a firewall
        // added later); n4: ESP-in-UDP out and never any back.
        esp_flow("n3", "egress", 0x101, 7_000, NOW - 900.0, NOW - 1.0),
        esp_flow("n3", "ingress", 0x201, 6_000, NOW - 900.0, NOW - 300.0),
        in_udp,
        // A site VPN from this host: not the swarm's, not judged.
        vpn,
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
    assert!(r.findings[0].message.contains("IP protocol 50"));
    assert!(r.findings[1].message.contains("UDP port 4500"));
    assert_eq!(r.esp.len(), 3, "the VPN is left out: {:?}", r.esp);
    let n2 = &r.esp[0];
    assert_eq!(
        (n2.peer.as_str(), n2.packets_out, n2.packets_in),
        ("n2", 10, 10)
    );
    let out = &n2.spis[0];
    assert_eq!((out.spi.as_str(), out.seq_per_sec), ("0x00000100", 500.0));
    assert_eq!(out.wraps_in_secs, Some(7200.0));
    assert_eq!(
        r.networks[0].status,
        NetworkStatus::Protected,
        "ESP health is per peer"
    );
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn a_wrap_after_the_next_rotation_is_no_finding() {
    let inv = vault_only();
    let x = healthy_xfrm(NOW, 3600.0);
    // 2 h from the wrap, but the SPI is 11 h old: rotated within the hour.
    let first = NOW - 11.0 * 3600.0;
    let before = [esp_flow(
        "n2",
        "egress",
        0x100,
        u32::MAX - 3_601_000,
        first,
        NOW - 2.0,
    )];
    let now = [
        esp_flow("n2", "egress", 0x100, u32::MAX - 3_600_000, first, NOW),
        esp_flow("n2", "ingress", 0x200, 10, first, NOW - 1.0),
    ];
    let r = audit::audit(&inputs(&inv, &x, &now, &before));
    assert_eq!(kinds(&r), [], "{:#?}", r.findings);
}

#[test]
fn keys_that_stopped_rotating_are_found() {
    let inv = vault_only();
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

/// Docker's SAs towards a peer but no policy sending the data path through
/// them (a policy flushed by hand, or by a firewall tool): the traffic
/// leaves in clear although the SAs look healthy.
#[test]
fn states_without_a_policy_protect_nothing() {
    let inv = vault_only();
    let mut x = healthy_xfrm(NOW, 60.0);
    x.policies.retain(|p| p.dst != ip("10.220.0.3"));
    let r = audit::audit(&inputs(&inv, &x, &[], &[]));
    assert_eq!(
        kinds(&r),
        [("ipsec_no_policy", Some("n3"))],
        "{:#?}",
        r.findings
    );
    assert_eq!(r.networks[0].status, NetworkStatus::Broken);
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn states_that_are_not_dockers_do_not_count() {
    let inv = vault_only();
    let mut x = healthy_xfrm(NOW, 60.0);
    // Towards n2: only an IKE daemon's larval state and a VPN's SA.
    x.states
        .retain(|s| s.dst != ip("10.220.0.2") && s.src != ip("10.220.0.2"));
    for (spi, reqid) in [(0, xfrm::DOCKER_REQID), (0x77, 1)] {
        x.states.push(xfrm::State {
            src: ip(ME),
            dst: ip("10.220.0.2"),
            spi,
            proto: 50,
            reqid,
            add_time: NOW as u64,
        });
    }
    let r = audit::audit(&inputs(&inv, &x, &[], &[]));
    assert_eq!(kinds(&r), [("ipsec_no_state", Some("n2"))]);
}

#[test]
fn plaintext_on_an_encrypted_network_breaks_it() {
    let inv = vault_only();
    let x = healthy_xfrm(NOW, 60.0);
    // The swarm's data path moved to 7789 (the agent was told so); Docker's
    // policies still say 4789.
    let now = leak("api", "db", 42, NOW - 5.0, NOW - 1.0);
    // A leak fixed ten minutes ago no longer counts.
    let old = leak("old", "db", 1000, NOW - 900.0, NOW - 600.0);
    let agent = agent_on(&[7789], PortSource::Flag);
    let flows = [now, old];
    let r = audit::audit(&Inputs {
        agent: &agent,
        ..inputs(&inv, &x, &flows, &[])
    });
    let found = kinds(&r);
    assert_eq!(found[0], ("ipsec_wrong_port", Some("n2")), "{found:?}");
    assert!(
        found.contains(&("plaintext_on_encrypted", Some("vault"))),
        "{found:?}"
    );
    let n = &r.networks[0];
    assert_eq!((n.status, n.plaintext_packets), (NetworkStatus::Broken, 42));
    assert_eq!(n.plaintext_pairs, ["api -> db"]);
    assert_eq!(n.plaintext_services, ["api", "db"]);
    assert_eq!(
        (r.data_path_port, r.data_path_port_from),
        (7789, PortSource::Agent)
    );
}

#[test]
fn a_worker_that_cannot_know_the_port_says_so_instead_of_guessing() {
    let mut inv = vault_only();
    // A worker: no swarm port; Docker's policies cover 7789.
    if let Some(s) = inv.swarm.as_mut() {
        s.data_path_port = None;
    }
    let mut x = healthy_xfrm(NOW, 60.0);
    for p in &mut x.policies {
        p.dport = 7789;
    }
    let r = audit::audit(&inputs(&inv, &x, &[], &[]));
    assert_eq!(
        kinds(&r),
        [
            ("data_path_port_unknown", Some("n2")),
            ("data_path_port_unknown", Some("n3")),
            ("data_path_port_unknown", Some("n4")),
        ]
    );
    assert_eq!(r.networks[0].status, NetworkStatus::Protected);
    assert_eq!(
        (r.data_path_port, r.data_path_port_from),
        (4789, PortSource::Default)
    );
    // Told the port, it judges.
    let r = audit::audit(&Inputs {
        data_path_port: Some(7789),
        ..inputs(&inv, &x, &[], &[])
    });
    assert_eq!(kinds(&r), []);
}

#[test]
fn an_agent_blind_to_the_data_path_port_is_a_finding() {
    let inv = vault_only();
    let x = healthy_xfrm(NOW, 60.0);
    let agent = agent_on(&[4789], PortSource::Default);
    let r = audit::audit(&Inputs {
        agent: &agent,
        data_path_port: Some(7789),
        ..inputs(&inv, &x, &[], &[])
    });
    assert!(
        kinds(&r).contains(&("agent_port_mismatch", None)),
        "{:#?}",
        r.findings
    );
}

#[test]
fn tunnel_endpoints_are_the_tasks_host_addresses() {
    // Nodes started with --data-path-addr: gossip on 10.220.0.x, tunnels
    // on 10.221.0.x, which is what tasks show as their host IP and what
    // Docker's SAs use.
    let mut inv = vault_only();
    for (n, host) in [("10.9.0.2", "10.221.0.1"), ("10.9.0.3", "10.221.0.2")] {
        inv.endpoints.push(Endpoint {
            network_id: "id-vault".into(),
            ip: ip(n),
            kind: EndpointKind::Task,
            service: Some("api".into()),
            task: Some("api.1".into()),
            container: None,
            node_ip: Some(ip(host)),
            state: Some("running".into()),
        });
    }
    let mut x = xfrm::Xfrm::default();
    let (me, peer) = (ip("10.221.0.1"), ip("10.221.0.2"));
    x.policies.push(docker_policy(me, peer));
    for (src, dst) in [(me, peer), (peer, me)] {
        x.states.push(docker_sa(src, dst, 0x42, NOW as u64));
    }
    let local: BTreeSet<IpAddr> = [ip(ME), me].into();
    let r = audit::audit(&Inputs {
        local_addrs: &local,
        ..inputs(&inv, &x, &[], &[])
    });
    assert_eq!(kinds(&r), [], "{:#?}", r.findings);
    let peers: Vec<IpAddr> = r.networks[0].peers.iter().map(|p| p.ip).collect();
    assert_eq!(peers, [peer], "the local endpoint is no peer");
}

#[test]
fn unencrypted_networks_outside_the_requirement_are_only_reported() {
    let inv = inventory();
    let x = healthy_xfrm(NOW, 60.0);
    let policy: Policy = "vault".parse().expect("policy");
    let r = audit::audit(&Inputs {
        require_encryption: Some(&policy),
        ..inputs(&inv, &x, &[], &[])
    });
    let severities: Vec<(&str, Severity)> = r
        .findings
        .iter()
        .map(|f| (f.kind.as_str(), f.severity))
        .collect();
    assert_eq!(
        severities,
        [
            ("mistyped_option", Severity::Warning),
            ("not_encrypted", Severity::Info),
            ("ingress_plaintext", Severity::Info),
        ]
    );
    assert_eq!(r.require_encryption, "vault");
    // The mistyped option still needs fixing.
    assert_eq!(r.exit_code(), 1);
    // The agent's requirement applies when the command gives none.
    let agent = AgentView {
        require_encryption: "vault,typo".parse().expect("policy"),
        ..AgentView::default()
    };
    let r = audit::audit(&Inputs {
        agent: &agent,
        ..inputs(&inv, &x, &[], &[])
    });
    assert_eq!(r.require_encryption, "typo,vault");
    assert!(r
        .findings
        .iter()
        .any(|f| f.kind == "ingress_plaintext" && f.severity == Severity::Info));
}

#[test]
fn encrypted_false_still_encrypts_and_is_only_noted() {
    let mut inv = vault_only();
    inv.networks[0]
        .options
        .insert("encrypted".into(), "false".into());
    let x = healthy_xfrm(NOW, 60.0);
    // An agent's default is a guess: the swarm's own port wins.
    let agent = agent_on(&[4789], PortSource::Default);
    let r = audit::audit(&Inputs {
        agent: &agent,
        ..inputs(&inv, &x, &[], &[])
    });
    assert_eq!(kinds(&r), [("encrypted_false", Some("vault"))]);
    assert_eq!(r.exit_code(), 0, "information, not a finding to act on");
    assert_eq!(r.data_path_port_from, PortSource::Swarm);
}

#[test]
fn a_small_leak_outside_the_busiest_flows_is_found_by_the_agents_alert() {
    let inv = vault_only();
    let x = healthy_xfrm(NOW, 60.0);
    let alerts = [Alert {
        kind: AlertKind::PlaintextOnEncryptedNetwork,
        severity: Severity::Critical,
        network: "vault".into(),
        vni: "4100".into(),
        packets: 3,
        bytes: 300,
        services: ["api".to_owned(), "db".to_owned()].into(),
        peer_nodes: ["n2".to_owned()].into(),
        first_seen: NOW - 100.0,
        last_seen: NOW - 10.0,
    }];
    let r = audit::audit(&Inputs {
        alerts: &alerts,
        ..inputs(&inv, &x, &[], &[])
    });
    assert_eq!(kinds(&r), [("plaintext_on_encrypted", Some("vault"))]);
    let n = &r.networks[0];
    assert_eq!((n.status, n.plaintext_packets), (NetworkStatus::Broken, 3));
    assert_eq!(n.plaintext_services, ["api", "db"]);
    assert!(n.plaintext_pairs.is_empty());
}

#[test]
fn without_the_kernels_view_an_encrypted_network_is_unchecked_not_protected() {
    let inv = vault_only();
    let denied = std::io::Error::from_raw_os_error(libc::EPERM);
    let r = audit::audit(&Inputs {
        xfrm: Err(&denied),
        ..inputs(&inv, &xfrm::Xfrm::default(), &[], &[])
    });
    assert_eq!(kinds(&r), [("ipsec_unreadable", None)]);
    assert!(r.findings[0].message.ends_with("run as root"));
    assert_eq!(r.networks[0].status, NetworkStatus::Unchecked);
    assert_eq!(r.exit_code(), 1);
    // No xfrm in the kernel at all: Docker cannot have encrypted anything.
    let absent = std::io::Error::from_raw_os_error(libc::EPROTONOSUPPORT);
    let r = audit::audit(&Inputs {
        xfrm: Err(&absent),
        ..inputs(&inv, &xfrm::Xfrm::default(), &[], &[])
    });
    assert_eq!(kinds(&r), [("ipsec_unsupported", None)]);
    assert_eq!(r.networks[0].status, NetworkStatus::Broken);
}
