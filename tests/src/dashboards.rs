//! The PromQL the project ships: every target of every Grafana dashboard and
//! every alert rule, for the static checks and for evaluation against a real
//! Prometheus scraping a real agent.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

/// The repository's `dashboards/` directory.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

/// The Grafana dashboards, parsed: (file name, JSON).
pub fn grafana() -> Result<Vec<(String, Value)>> {
    let mut out = Vec::new();
    let grafana = dir().join("grafana");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&grafana)
        .with_context(|| format!("reading {}", grafana.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        let v: Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", f.display()))?;
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
        out.push((name.unwrap_or_default(), v));
    }
    Ok(out)
}

/// Every panel, rows' nested panels included.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// (where, expression) for every dashboard target and every rule.
pub fn expressions() -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (file, d) in grafana()? {
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((format!("{file}: {}", p["title"]), e.to_owned()));
                }
            }
        }
    }
    let rules = std::fs::read_to_string(dir().join("netobs.rules.yml"))?;
    let mut alert = String::new();
    for line in rules.lines() {
        let l = line.trim();
        if let Some(a) = l.strip_prefix("- alert:") {
            alert = a.trim().to_owned();
        } else if let Some(e) = l.strip_prefix("expr:") {
            out.push((format!("netobs.rules.yml: {alert}"), e.trim().to_owned()));
        }
    }
    Ok(out)
}

/// The metric names an expression reads.
pub fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("netobs_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// Grafana's variables replaced as "All" would (and a fixed rate window).
pub fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$node", ".+")
        .replace("$network", ".+")
        .replace("$service", ".+")
}

/// Percent-encoding for a query string value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
