//! The cluster view on a real two-node swarm: an agent on each node,
//! serving on its node's address with a token (the worker's inside its
//! namespace), and `--cluster` asked from the manager: every node's flows,
//! services, health and encryption audit with the node that saw them; a killed agent named
//! as down within the timeout, an agent with another token named as
//! refusing, the exit status saying the view is partial.
mod support;

use std::time::{Duration, Instant};

use netobs::{
    api::{Answer, ClusterView, FlowList, OverlayHealth},
    audit::Report,
};
use netobs_tests::{
    lab::Process,
    netns::Netns,
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
