//! The shipped dashboards and rules, checked without a server: Grafana's
//! structure (schema version, unique panel ids, the datasource chosen by a
//! variable, a unit on every panel) and every metric they read being one
//! that netobs exports. `swarm.rs` evaluates the same expressions against a
//! real Prometheus scraping a real agent.
use std::collections::HashSet;

use netobs::export::metrics::METRICS;
use netobs_tests::dashboards;

#[test]
fn dashboards_are_well_formed() {
    let boards = dashboards::grafana().expect("reading the dashboards");
    assert!(boards.len() >= 2, "an overview and a drill-down");
    let mut uids = HashSet::new();
    for (file, d) in &boards {
        assert!(
            d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
            "{file}: schemaVersion"
        );
        assert!(
            uids.insert(d["uid"].as_str().expect("uid").to_owned()),
            "{file}: uid"
        );
        let vars = d["templating"]["list"].as_array().expect("variables");
        assert!(
            vars.iter()
                .any(|v| v["type"] == "datasource" && v["name"] == "datasource"),
            "{file}: a datasource variable"
        );
        for want in ["node", "network"] {
            assert!(
                vars.iter().any(|v| v["name"] == want),
                "{file}: variable {want}"
            );
        }
        for v in vars.iter().filter(|v| v["type"] == "query") {
            assert_eq!(
                v["datasource"]["uid"], "${datasource}",
                "{file}: {}",
                v["name"]
            );
        }
        let mut ids = HashSet::new();
        for p in dashboards::panels(d) {
            let title = &p["title"];
            assert!(
                ids.insert(p["id"].as_u64().expect("panel id")),
                "{file}: duplicate panel id in {title}"
            );
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{file}: {title}");
            assert!(
                p["fieldConfig"]["defaults"]["unit"]
                    .as_str()
                    .is_some_and(|u| !u.is_empty()),
                "{file}: {title} has no unit"
            );
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{file}: {title} has no query");
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{file}: {title}");
            }
        }
    }
}

#[test]
fn every_metric_the_dashboards_and_rules_read_is_exported() {
    let exported: HashSet<&str> = METRICS.iter().map(|m| m.name).collect();
    let exprs = dashboards::expressions().expect("reading the expressions");
    assert!(exprs.len() > 20, "{} expressions", exprs.len());
    for (at, e) in &exprs {
        for name in dashboards::metric_names(e) {
            assert!(
                exported.contains(name.as_str()),
                "{at}: {name} is not a netobs metric"
            );
        }
    }
}

/// The two example Prometheus configurations scrape the same way.
#[test]
fn the_remote_write_example_scrapes_as_the_plain_one() {
    let scrape = |file: &str| {
        let text = std::fs::read_to_string(dashboards::dir().join(file)).expect(file);
        let at = text
            .find("\nscrape_configs:")
            .expect("a scrape_configs section");
        text[at..].to_owned()
    };
    assert_eq!(
        scrape("prometheus.yml"),
        scrape("prometheus-remote-write.yml")
    );
}

/// The shipped remote_write example for real: a Prometheus with its
/// global, rule and remote_write sections (the store's address swapped for
/// a second Prometheus that takes remote writes) scraping a real agent; the
/// store holds netobs's series with the swarm's label, and nothing else.
#[test]
fn the_remote_write_example_delivers_netobs_series_to_a_store() {
    netobs_tests::require_root!();
    use netobs_tests::{lab::Process, netns::Netns, tmp::TempPath, traffic::http_get};
    use std::{net::SocketAddr, process::Stdio, time::Duration};

    const SHIPPED_URL: &str = "http://mimir.example.internal:9009/api/v1/push";
    const STORE: &str = "127.0.0.1:9091";
    let ns = Netns::new("remote-write").expect("namespace");
    let tmp = TempPath::new("remote-write");
    let dir = tmp.path();
    std::fs::create_dir_all(dir).expect("temp dir");
    let prometheus = |name: &str, config: &str, listen: &str, extra: &[&str]| {
        let file = dir.join(format!("{name}.yml"));
        std::fs::write(&file, config).expect("config");
        let mut cmd = ns.command("prometheus");
        cmd.arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join(name).display()))
            .arg(format!("--web.listen-address={listen}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Process::spawn(cmd).expect("prometheus")
    };

    let mut agent = ns.command(env!("CARGO_BIN_EXE_netobs"));
    agent
        .args(["run", "--iface", "lo", "--no-docker", "--interval", "1"])
        .args(["--metrics-addr", "127.0.0.1:9477"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let agent = Process::spawn(agent).expect("netobs run");
    let store = prometheus(
        "store",
        "global: {}\n",
        STORE,
        &["--web.enable-remote-write-receiver"],
    );

    let shipped = std::fs::read_to_string(dashboards::dir().join("prometheus-remote-write.yml"))
        .expect("the example");
    assert!(shipped.contains(SHIPPED_URL), "the example's store address");
    let head = &shipped[..shipped.find("\nscrape_configs:").expect("scrape_configs")];
    let rules = dashboards::dir().join("netobs.rules.yml");
    let config = format!(
        "{}\nscrape_configs:\n  - job_name: netobs\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['127.0.0.1:9477']\n",
        head.replace(SHIPPED_URL, &format!("http://{STORE}/api/v1/write"))
            .replace("  - netobs.rules.yml", &format!("  - {}", rules.display()))
    );
    let sender = prometheus("sender", &config, "127.0.0.1:9090", &[]);

    let store_addr: SocketAddr = STORE.parse().expect("address");
    let query = |q: &str| -> Vec<serde_json::Value> {
        let body =
            http_get(&ns, store_addr, &format!("/api/v1/query?query={q}")).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    };
    let mut found = Vec::new();
    for _ in 0..120 {
        found = query("netobs_build_info");
        if !found.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(found.len(), 1, "netobs_build_info in the store: {found:?}");
    let labels = &found[0]["metric"];
    assert_eq!(labels["swarm"], "prod-eu-1", "{labels}");
    assert_eq!(labels["job"], "netobs", "{labels}");
    assert!(!query("netobs_packets_total").is_empty());
    // Prometheus's own series about the scrape stay home.
    assert_eq!(query("up"), Vec::<serde_json::Value>::new());
    assert_eq!(
        query("scrape_duration_seconds"),
        Vec::<serde_json::Value>::new()
    );
    drop(sender);
    drop(store);
    drop(agent);
}
