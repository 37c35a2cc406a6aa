//! Inventory building and flow labelling on Docker API answers captured from
//! a real two-node swarm (tests/fixtures/docker: a manager's and a worker's
//! view of the same swarm), no engine needed.
use std::{net::IpAddr, path::Path};

use netobs::{
    api::Encryption,
    flows::{label::Labeler, Clock, Flow},
    inventory::{services::services, EndpointKind, Inventory, Raw},
};
use netobs_common::{Class, Direction, FlowKey, FlowStats, FAMILY_IPV4};

fn read<T: serde::de::DeserializeOwned>(dir: &Path, file: &str) -> Option<T> {
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}")))
}

fn load(view: &str) -> Inventory {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/docker")
        .join(view);
    let mut networks = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for n in names {
        let n = n.to_string_lossy().into_owned();
        if n.starts_with("network-") {
            networks.push(read(&dir, &n).expect("network"));
        }
    }
    let raw = Raw {
        info: read(&dir, "info.json").expect("info.json"),
        networks,
        containers: read(&dir, "containers.json").expect("containers.json"),
        services: read(&dir, "services.json"),
        nodes: read(&dir, "nodes.json"),
        swarm: read(&dir, "swarm.json"),
        tasks: read(&dir, "tasks.json"),
    };
    Inventory::from_raw(&raw, 1.0)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn v4(a: IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    if let IpAddr::V4(a) = a {
        out[..4].copy_from_slice(&a.octets());
    }
    out
}

/// A VXLAN flow key as the kernel writes it.
fn vxlan_flow(dir: Direction, outer: (&str, &str), vni: u32, inner: (&str, &str)) -> Flow {
    let key = FlowKey {
        direction: dir as u8,
        class: Class::Vxlan as u8,
        outer_family: FAMILY_IPV4,
        inner_family: FAMILY_IPV4,
        outer_src: v4(ip(outer.0)),
        outer_dst: v4(ip(outer.1)),
        vni_or_spi: vni,
        inner_proto: 6,
        inner_src: v4(ip(inner.0)),
        inner_dst: v4(ip(inner.1)),
        inner_sport: 40000,
        inner_dport: 80,
        ..FlowKey::default()
    };
    Flow::from_raw(&key, &FlowStats::default(), &[], Clock::Unix)
}

#[test]
fn manager_view() {
    let inv = load("manager");
    let swarm = inv.swarm.as_ref().expect("swarm mode");
    assert!(swarm.manager);
    assert_eq!(swarm.data_path_port, Some(4789));
    let backend = inv.network_by_name("backend").expect("backend");
    assert_eq!(backend.vnis, vec![4097]);
    assert!(!backend.encrypted);
    let secure = inv.network_by_name("secure").expect("secure");
    assert!(
        secure.encrypted,
        "--opt encrypted sets the option with an empty value"
    );
    assert!(inv.network_by_name("ingress").expect("ingress").ingress);
    assert_eq!(inv.nodes.len(), 2);
    let web = inv
        .endpoints
        .iter()
        .find(|e| e.service.as_deref() == Some("web"))
        .expect("web task");
    assert_eq!(
        (web.kind, web.node_ip),
        (EndpointKind::Task, Some(ip("10.210.0.2")))
    );
}

#[test]
fn worker_view_has_no_manager_details_but_labels_as_well() {
    let inv = load("worker");
    let swarm = inv.swarm.as_ref().expect("swarm mode");
    assert!(!swarm.manager);
    assert_eq!(
        swarm.data_path_port, None,
        "a worker cannot read the swarm's port"
    );
    assert!(inv.nodes.is_empty());
    for view in ["manager", "worker"] {
        let inv = load(view);
        let l = Labeler::new(&inv);
        // client (on the manager) asks web (on the worker), seen from each side.
        let (dir, outer) = if view == "manager" {
            (Direction::Egress, ("10.210.0.1", "10.210.0.2"))
        } else {
            (Direction::Ingress, ("10.210.0.1", "10.210.0.2"))
        };
        let labels = l.label(&vxlan_flow(dir, outer, 4097, ("10.0.1.4", "10.0.1.2")));
        assert_eq!(labels.network, "backend", "{view}");
        assert_eq!(labels.vni, "4097");
        assert_eq!(labels.encrypted, Encryption::Plain);
        assert_eq!(
            (labels.src_service.as_str(), labels.dst_service.as_str()),
            ("client", "web"),
            "{view}"
        );
        assert!(labels.peer_known, "{view}: the peer is a swarm node");
    }
}

#[test]
fn what_cannot_be_mapped_is_unknown() {
    let inv = load("worker");
    let l = Labeler::new(&inv);
    let labels = l.label(&vxlan_flow(
        Direction::Ingress,
        ("203.0.113.9", "10.210.0.2"),
        999_999,
        ("192.168.7.1", "10.0.1.2"),
    ));
    assert_eq!(labels.network, "unknown");
    assert_eq!(labels.encrypted, Encryption::Unknown);
    assert_eq!(labels.src_service, "unknown");
    assert!(!labels.peer_known, "203.0.113.9 is no node of this swarm");
    let none = Inventory::default();
    let labels = Labeler::new(&none).label(&vxlan_flow(
        Direction::Egress,
        ("10.210.0.1", "10.210.0.2"),
        4097,
        ("10.0.1.4", "10.0.1.2"),
    ));
    assert_eq!(
        (labels.network.as_str(), labels.src_service.as_str()),
        ("unknown", "unknown")
    );
}

#[test]
fn the_service_view_answers_what_drill_would() {
    for view in ["manager", "worker"] {
        let inv = load(view);
        let all = services(&inv, None);
        let web = services(&inv, Some("web"));
        assert_eq!(web.len(), 1, "{view}: {all:#?}");
        let web = &web[0];
        assert_eq!(
            web.endpoint_mode, "dnsrr",
            "{view}: the lab's services are dnsrr"
        );
        assert_eq!(
            web.networks
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>(),
            ["backend"],
            "{view}"
        );
        assert!(web.networks[0].vip.is_none() && !web.networks[0].encrypted);
        assert_eq!(web.tasks.len(), 1, "{view}: {web:#?}");
        let t = &web.tasks[0];
        assert!(t.task.starts_with("web.1."), "{view}: {t:?}");
        // The manager reads it from the task list, the worker from the
        // container running it there.
        assert_eq!(
            (t.network.as_str(), t.state.as_str()),
            ("backend", "running")
        );
        // web runs on the worker: the manager knows every node's hostname,
        // the worker its own.
        assert!(
            !t.node.is_empty() && t.node != "10.210.0.2",
            "{view}: {t:?}"
        );
        if view == "worker" {
            assert_eq!(
                Some(t.node.as_str()),
                inv.swarm.as_ref().map(|s| s.hostname.as_str()),
                "{t:?}"
            );
        }
        assert!(
            inv.endpoints
                .iter()
                .any(|e| Some(e.ip) == t.ip && e.service.as_deref() == Some("web")),
            "{view}: the task's address is web's"
        );
        assert!(services(&inv, Some("no-such-service")).is_empty());
    }
}
