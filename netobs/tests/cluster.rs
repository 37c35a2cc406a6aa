//! The cluster view on a real two-node swarm: an agent on each node,
//! serving on its node's address with a token (the worker's inside its
//! namespace), and `--cluster` asked from the manager: every node's flows,
//! services, health and encryption audit with the node that saw them; a killed agent named
//! as down within the timeout, an agent with another token named as
//! refusing, the exit status saying the view is partial.
mod support;

use std::time::{Duration, Instant};

use std::net::{Ipv4Addr, SocketAddr};

use netobs::{
    api::{Answer, ClusterView, FlowList, HealthEndpoint, HealthKind, LossHealth, OverlayHealth},
    audit::Report,
    client::{self, Agent},
    token::Token,
};
use netobs_tests::{
    lab::Process,
    netns::Netns,
    packets::{self, Net},
    prom::metric,
    require_root,
    swarm::{TwoNodeSwarm, MANAGER_ADDR, MANAGER_DEV, WORKER_ADDR, WORKER_DEV},
    tmp::TempPath,
    tmux::Tmux,
};
use support::*;

const REQUESTS: u64 = 5;
const TOKEN: &str = "cluster-test-token-0123456789abcdef";

fn agent_addr(node: &str) -> String {
    format!("{node}:9477")
}

/// `netobs CMD --cluster ... --json`, from the manager's namespace.
fn cluster<T: serde::de::DeserializeOwned>(
    ns: &Netns,
    cmd: &str,
    token: &str,
    extra: &[&str],
) -> (Option<i32>, ClusterView<T>, Duration) {
    let start = Instant::now();
    let out = ns
        .command(env!("CARGO_BIN_EXE_netobs"))
        .args([cmd, "--cluster", "--json", "--timeout", "3", "--agent"])
        .arg(agent_addr(MANAGER_ADDR))
        .args(["--api-token-file", token])
        .args(extra)
        .output()
        .expect("netobs --cluster");
    let took = start.elapsed();
    let view = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{cmd} --cluster JSON: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), view, took)
}

/// The text view, its exit status and output.
fn cluster_text(ns: &Netns, cmd: &str, token: &str) -> (Option<i32>, String) {
    let out = ns
        .command(env!("CARGO_BIN_EXE_netobs"))
        .args([cmd, "--cluster", "--timeout", "3", "--agent"])
        .arg(agent_addr(MANAGER_ADDR))
        .args(["--api-token-file", token])
        .output()
        .expect("netobs --cluster");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// GET requests from client to web on backend in one node's flows.
fn client_requests(flows: &FlowList) -> u64 {
    flows
        .flows
        .iter()
        .filter(|f| {
            f.labels.network == "backend"
                && f.labels.src_service == "client"
                && f.labels.dst_service == "web"
        })
        .filter_map(|f| f.flow.http_requests.get("GET"))
        .sum()
}

fn answer<'a, T>(view: &'a ClusterView<T>, addr: &str) -> &'a Answer<T> {
    let n = view
        .nodes
        .iter()
        .find(|n| n.agent == agent_addr(addr))
        .unwrap_or_else(|| panic!("no node asked at {addr}"));
    // Both nodes share the host's hostname: told apart by address.
    assert!(n.node.ends_with(&format!("@{addr}")), "{}", n.node);
    &n.answer
}

/// An agent on `dev` serving on `addr` with `token`, once it answers and
/// its engine has told it about web.
fn start(ns: &Netns, dev: &str, host: &str, addr: &str, token: &str) -> Process {
    let p = start_agent_at(
        ns,
        dev,
        host,
        &agent_addr(addr),
        &["--api-token-file", token],
    );
    wait_for(&format!("the agent at {addr}"), 60, || {
        let out = ns
            .command(env!("CARGO_BIN_EXE_netobs"))
            .args(["services", "--json", "--agent"])
            .arg(agent_addr(addr))
            .args(["--api-token-file", token])
            .output()
            .ok()?;
        (out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"web\""))
            .then_some(())
    });
    p
}

/// `top --cluster` in a terminal while a caller makes one short HTTP
/// connection after another to web: on each node one row for the pair,
/// with its connections (most of them finished) and a request rate; Enter
/// opens the pair into its connections, `g` shows every connection.
fn top_shows_every_node_by_service_pair(swarm: &TwoNodeSwarm, token: &str) {
    swarm
        .service(
            "caller",
            &["backend"],
            "manager",
            &[
                "sh",
                "-c",
                "while true; do wget -q -O /dev/null http://web/index.html; sleep 0.2; done",
            ],
        )
        .expect("caller service");
    swarm.wait_running("caller", 1).expect("caller running");
    let tmux = Tmux::start(&format!(
        "nsenter --net={} -- {} top --cluster --timeout 3 --agent {} --api-token-file {token}",
        swarm.ns_manager.path().display(),
        env!("CARGO_BIN_EXE_netobs"),
        agent_addr(MANAGER_ADDR),
    ));
    // node, +, network, class, client, server, conns, finished, pkt/s,
    // B/s, req/s, ...
    let pair = |screen: &str, addr: &str| -> Option<(u64, u64, f64)> {
        screen.lines().find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() > 10
                && w[0].ends_with(&format!("@{addr}"))
                && w[2] == "backend"
                && w[4] == "caller"
                && w[5] == "web:80")
                .then(|| Some((w[6].parse().ok()?, w[7].parse().ok()?, w[10].parse().ok()?)))
                .flatten()
        })
    };
    let busy = |screen: &str, addr: &str| {
        pair(screen, addr)
            .is_some_and(|(conns, finished, rps)| conns >= 3 && finished >= 2 && rps > 0.0)
    };
    let screen = tmux.wait_for(
        |s| s.contains("nodes 2 of 2 answered") && busy(s, MANAGER_ADDR) && busy(s, WORKER_ADDR),
        "caller -> web:80 on both nodes, many connections, requests flowing",
    );
    // Pairs, not connections: one row per node for caller -> web:80.
    for a in [MANAGER_ADDR, WORKER_ADDR] {
        let rows = screen
            .lines()
            .filter(|l| {
                l.contains(&format!("@{a} ")) && l.contains(" caller ") && l.contains("web:80")
            })
            .count();
        assert_eq!(rows, 1, "{screen}");
    }
    // The busiest pair is selected: Enter opens it into its connections,
    // finished ones said so.
    tmux.keys("Enter");
    tmux.wait_for(
        |s| {
            s.lines()
                .any(|l| l.contains("  caller:") && l.contains(" finished "))
        },
        "the pair's finished connections",
    );
    tmux.keys("g");
    tmux.wait_for(
        |s| s.contains("g view: connections") && s.contains("destination"),
        "every connection",
    );
    tmux.keys("q");
    drop(tmux);
    swarm
        .manager
        .docker(&["service", "rm", "caller"])
        .expect("removing caller");
}

/// The agent serving at `addr`, with the token (asked from inside its
/// node's namespace).
fn agent_at(addr: &str, token: &str) -> Agent {
    let token = Token::from_file(std::path::Path::new(token)).expect("token");
    Agent {
        addr: agent_addr(addr).parse().expect("address"),
        token: Some(token),
        timeout: Some(Duration::from_secs(5)),
    }
}

fn health(ns: &Netns, addr: &str, token: &str) -> OverlayHealth {
    let agent = agent_at(addr, token);
    ns.run_in(move || client::fetch::<HealthEndpoint>(&agent))
        .expect("in the namespace")
        .expect("the agent's health")
}

fn metrics_of(ns: &Netns, addr: &str, token: &str) -> String {
    let agent = agent_at(addr, token);
    ns.run_in(move || client::get(&agent, "/metrics"))
        .expect("in the namespace")
        .expect("the agent's metrics")
}

/// What one node's agent found lost of what `from` sent it.
fn loss_from(ns: &Netns, addr: &str, from: &str, token: &str) -> Option<LossHealth> {
    health(ns, addr, token)
        .loss
        .into_iter()
        .find(|l| l.addr.to_string() == from && l.agent == "ok")
}

/// Loss between the nodes, measured by each receiving agent against what
/// the sender's agent counted: none on a clean link (with HTTP between
/// them); then VXLAN dropped on the manager's wire after its agent's hook
/// (an HTB class with a two-packet queue for one UDP source port, behind
/// the TCX programs): the worker's agent reports exactly the packets the
/// kernel's queue dropped, once, in its health, its metric and a finding
/// naming the manager; the manager's agent still reports none.
fn loss_between_the_nodes_is_measured_exactly(swarm: &TwoNodeSwarm, token: &str) {
    const SENT: usize = 200;
    let (mgr, wkr) = (&swarm.ns_manager, &swarm.ns_worker);
    // A real Prometheus on the worker, scraping its agent with the token.
    let prom_tmp = TempPath::new("prometheus");
    std::fs::create_dir_all(prom_tmp.path()).expect("prometheus dir");
    let prom = start_prometheus_for(wkr, prom_tmp.path(), &agent_addr(WORKER_ADDR), Some(token));
    let (to_worker, to_manager) = wait_for("loss checked both ways", 90, || {
        let w = loss_from(wkr, WORKER_ADDR, MANAGER_ADDR, token)?;
        let m = loss_from(mgr, MANAGER_ADDR, WORKER_ADDR, token)?;
        (w.checked > 0 && m.checked > 0).then_some((w, m))
    });
    // Every flow began after both agents: each one judged.
    assert_eq!(
        (
            to_worker.lost,
            to_manager.lost,
            to_worker.unverified_flows,
            to_manager.unverified_flows
        ),
        (0, 0, 0, 0),
        "{to_worker:?} {to_manager:?}"
    );
    for (ns, addr) in [(mgr, MANAGER_ADDR), (wkr, WORKER_ADDR)] {
        let text = metrics_of(ns, addr, token);
        assert_eq!(
            metric(&text, "netobs_overlay_lost_packets_total", &[]),
            Some(0.0)
        );
        assert!(metric(&text, "netobs_overlay_loss_checked_packets_total", &[]) > Some(0.0));
        assert_eq!(metric(&text, "netobs_peer_agent_up", &[]), Some(1.0));
    }

    // Drops after the manager's hook: VXLAN from UDP source port 4242
    // (outside the kernel's VXLAN source ports) queues behind 100 kbit/s
    // with room for two packets.
    let tc = |args: &str| {
        let args: Vec<&str> = args.split_whitespace().collect();
        mgr.exec(&[&["tc"], &args[..]].concat()).expect("tc");
    };
    tc(&format!(
        "qdisc add dev {MANAGER_DEV} root handle 1: htb default 1"
    ));
    tc(&format!(
        "class add dev {MANAGER_DEV} parent 1: classid 1:1 htb rate 10gbit"
    ));
    tc(&format!(
        "class add dev {MANAGER_DEV} parent 1: classid 1:2 htb rate 100kbit"
    ));
    tc(&format!(
        "qdisc add dev {MANAGER_DEV} parent 1:2 handle 20: pfifo limit 2"
    ));
    tc(&format!(
        "filter add dev {MANAGER_DEV} parent 1: protocol ip u32 match ip sport 4242 0xffff \
         match ip dport 4789 0xffff flowid 1:2"
    ));
    let frame = {
        let inner = packets::udp(
            &Net::v4([10, 0, 9, 250], [10, 0, 9, 251]),
            5000,
            6000,
            b"lossy",
        );
        let mut f = packets::vxlan_header(4242).to_vec();
        f.extend_from_slice(&inner);
        f
    };
    let to = SocketAddr::from((WORKER_ADDR.parse::<Ipv4Addr>().expect("addr"), 4789));
    mgr.run_in(move || {
        let sock = std::net::UdpSocket::bind("0.0.0.0:4242").expect("UDP socket");
        for _ in 0..SENT {
            sock.send_to(&frame, to).expect("sending VXLAN");
        }
    })
    .expect("in the manager's namespace");
    // The queue drains at 100 kbit/s: a second or two.
    std::thread::sleep(Duration::from_secs(3));
    let out = mgr
        .exec(&["tc", "-s", "qdisc", "show", "dev", MANAGER_DEV])
        .expect("tc -s qdisc");
    let stats = String::from_utf8_lossy(&out.stdout).into_owned();
    let dropped: u64 = stats
        .split("qdisc pfifo 20:")
        .nth(1)
        .and_then(|s| s.split("dropped ").nth(1))
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the queue's drops: {stats}"));
    tc(&format!("qdisc del dev {MANAGER_DEV} root"));
    assert!(dropped > 0 && dropped < SENT as u64, "{stats}");
    eprintln!("the manager's queue dropped {dropped} of {SENT}");

    let l = wait_for("the worker's agent to find the loss", 60, || {
        loss_from(wkr, WORKER_ADDR, MANAGER_ADDR, token).filter(|l| l.lost > 0)
    });
    assert_eq!(l.lost, dropped, "{l:?}");
    assert_eq!(l.recent_lost, dropped, "{l:?}");
    // Compared once: a later check adds nothing.
    std::thread::sleep(Duration::from_secs(12));
    let h = health(wkr, WORKER_ADDR, token);
    let l = h
        .loss
        .iter()
        .find(|l| l.addr.to_string() == MANAGER_ADDR)
        .expect("loss");
    assert_eq!((l.lost, l.unverified_flows), (dropped, 0), "{l:?}");
    let text = metrics_of(wkr, WORKER_ADDR, token);
    assert_eq!(
        metric(&text, "netobs_overlay_lost_packets_total", &[]),
        Some(dropped as f64)
    );
    let f = h
        .findings
        .iter()
        .find(|f| f.kind == HealthKind::OverlayLoss)
        .unwrap_or_else(|| panic!("{h:#?}"));
    assert!(
        f.message.starts_with(&format!("{dropped} of "))
            && f.message.contains(&format!("({MANAGER_ADDR})'s agent")),
        "{f:#?}"
    );
    // The shipped rule fires for that pair, and every shipped expression
    // of loss between nodes returns data.
    let firing = wait_firing(wkr, "NetobsOverlayLoss", 60);
    assert_eq!(firing.len(), 1, "{firing:?}");
    let prom_addr: SocketAddr = PROMETHEUS.parse().expect("address");
    let checked = every_shipped_expression_returns_data(wkr, prom_addr, |m| {
        m.iter().any(|m| BETWEEN_NODES.contains(&m.as_str()))
    });
    assert_eq!(
        checked, 3,
        "the rules NetobsOverlayLoss, NetobsPeerAgentUnreachable and a panel"
    );
    drop(prom);
    let m = loss_from(mgr, MANAGER_ADDR, WORKER_ADDR, token).expect("loss from the worker");
    assert_eq!(m.lost, 0, "{m:?}");
    // The cluster view shows each node's measure.
    let (_, text) = cluster_text(mgr, "doctor", token);
    assert!(
        text.lines().any(
            |l| l.contains(&format!("({MANAGER_ADDR}): VXLAN it sent here"))
                && l.contains(&format!(", {dropped} of "))
        ),
        "{text}"
    );
}

#[test]
fn the_cluster_view_shows_every_node_and_names_the_missing() {
    require_root!();
    let swarm = TwoNodeSwarm::new().expect("two-node swarm");
    let tmp = TempPath::new("cluster");
    std::fs::create_dir_all(tmp.path()).expect("temp dir");
    let token = tmp.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
    let token = token.to_string_lossy().into_owned();
    let other = tmp.path().join("other");
    std::fs::write(&other, "another-token-0123456789abcdef\n").expect("token");
    let other = other.to_string_lossy().into_owned();

    swarm.network("backend", false).expect("network");
    swarm
        .service(
            "web",
            &["backend"],
            "worker",
            &["httpd", "-f", "-p", "80", "-h", "/www"],
        )
        .expect("web service");
    swarm.wait_running("web", 1).expect("web running");
    let manager = start(
        &swarm.ns_manager,
        MANAGER_DEV,
        &swarm.manager.host(),
        MANAGER_ADDR,
        &token,
    );
    let mut worker = start(
        &swarm.ns_worker,
        WORKER_DEV,
        &swarm.worker.host(),
        WORKER_ADDR,
        &token,
    );
    let script = format!(
        "sleep 8; for i in $(seq {REQUESTS}); do wget -q -O /dev/null http://web/index.html; \
         done; sleep 3600"
    );
    swarm
        .service("client", &["backend"], "manager", &["sh", "-c", &script])
        .expect("client service");

    // Every node's flows, each with its node, the requests exactly.
    let ns = &swarm.ns_manager;
    let view = wait_for("the requests on both nodes", 120, || {
        let (code, view, _) = cluster::<FlowList>(ns, "flows", &token, &[]);
        let done = [MANAGER_ADDR, WORKER_ADDR].iter().all(|a| {
            matches!(answer(&view, a), Answer::Ok { data } if client_requests(data) >= REQUESTS)
        });
        (code == Some(0) && done).then_some(view)
    });
    assert_eq!(view.nodes.len(), 2);
    for a in [MANAGER_ADDR, WORKER_ADDR] {
        let Answer::Ok { data } = answer(&view, a) else {
            unreachable!("checked above")
        };
        assert_eq!(client_requests(data), REQUESTS, "requests seen at {a}");
    }
    let (code, text) = cluster_text(ns, "flows", &token);
    assert_eq!(code, Some(0), "{text}");
    for a in [MANAGER_ADDR, WORKER_ADDR] {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("@{a} ")) && l.contains("client")),
            "a row from {a}: {text}"
        );
    }
    // Each connection's two flows joined across the nodes: the requests
    // leave the manager and arrive at the worker, the answers the other
    // way; all done, so what left arrived.
    let joined: Vec<Vec<&str>> = text
        .lines()
        .skip_while(|l| !l.starts_with("flows seen at both ends"))
        .skip(2)
        .map(|l| l.split_whitespace().collect())
        .filter(|w: &Vec<&str>| w.len() == 7)
        .collect();
    let way = |from: &str, to: &str, src: &str| {
        joined
            .iter()
            .filter(|w| {
                w[0].ends_with(&format!("@{from}"))
                    && w[1].ends_with(&format!("@{to}"))
                    && w[2] == "backend"
                    && w[3].starts_with(src)
            })
            .map(|w| {
                (
                    w[5].parse::<u64>().expect("sent"),
                    w[6].parse::<u64>().expect("received"),
                )
            })
            .collect::<Vec<_>>()
    };
    for (from, to, src) in [
        (MANAGER_ADDR, WORKER_ADDR, "client:"),
        (WORKER_ADDR, MANAGER_ADDR, "web:80"),
    ] {
        let rows = way(from, to, src);
        assert_eq!(rows.len(), REQUESTS as usize, "{text}");
        assert!(rows.iter().all(|(s, r)| s == r && *s > 0), "{text}");
    }

    // Health and services from both.
    let (code, view, _) = cluster::<OverlayHealth>(ns, "doctor", &token, &[]);
    assert_eq!(code, Some(0), "{view:#?}");
    for a in [MANAGER_ADDR, WORKER_ADDR] {
        assert!(matches!(answer(&view, a), Answer::Ok { .. }), "{view:#?}");
    }
    // The audit: each agent judges its own node (backend is not encrypted:
    // a warning on both, exit 1).
    let (code, view, _) = cluster::<Report>(ns, "audit", &token, &[]);
    assert_eq!(code, Some(1), "{view:#?}");
    for a in [MANAGER_ADDR, WORKER_ADDR] {
        let Answer::Ok { data } = answer(&view, a) else {
            panic!("{a}: {view:#?}")
        };
        assert!(
            data.findings
                .iter()
                .any(|f| f.kind == "not_encrypted" && f.network.as_deref() == Some("backend")),
            "{a}: {data:#?}"
        );
    }
    let (code, text) = cluster_text(ns, "services", &token);
    assert_eq!(code, Some(0), "{text}");
    for a in [MANAGER_ADDR, WORKER_ADDR] {
        assert!(text.contains(&format!("@{a} ({a}:9477) ==")), "{text}");
    }

    top_shows_every_node_by_service_pair(&swarm, &token);
    loss_between_the_nodes_is_measured_exactly(&swarm, &token);

    // The worker's agent killed: named down within the timeout, the
    // manager's flows still there, the view partial.
    drop(worker.stop(libc::SIGKILL));
    let (code, view, took) = cluster::<FlowList>(ns, "flows", &token, &[]);
    assert_eq!(code, Some(3), "partial");
    assert!(took < Duration::from_secs(8), "answered in {took:?}");
    assert!(
        matches!(answer(&view, WORKER_ADDR), Answer::Down { .. }),
        "{:?}",
        answer(&view, WORKER_ADDR).status()
    );
    assert!(
        matches!(answer(&view, MANAGER_ADDR), Answer::Ok { data } if client_requests(data) == REQUESTS)
    );
    let (code, text) = cluster_text(ns, "doctor", &token);
    assert_eq!(code, Some(3), "{text}");
    assert!(
        text.contains(&format!("@{WORKER_ADDR}: down: "))
            && text.contains("partial view: 1 of 2 nodes did not answer"),
        "{text}"
    );

    // An agent with another token: named as refusing, never missing.
    worker = start(
        &swarm.ns_worker,
        WORKER_DEV,
        &swarm.worker.host(),
        WORKER_ADDR,
        &other,
    );
    let view = wait_for("the worker's agent back", 60, || {
        let (code, view, _) = cluster::<FlowList>(ns, "flows", &token, &[]);
        (code == Some(3) && matches!(answer(&view, WORKER_ADDR), Answer::Refused { .. }))
            .then_some(view)
    });
    let Answer::Refused { error } = answer(&view, WORKER_ADDR) else {
        unreachable!("checked above")
    };
    assert!(error.contains("wrong API token"), "{error}");
    stop_agent(worker, "worker");
    stop_agent(manager, "manager");
}
