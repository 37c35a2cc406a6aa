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
