//! Text for people: totals, flow tables, events.
use std::fmt::Write as _;

use crate::{
    api::{Class, ClassCounts, EventKind, Flow, FlowEvent, Totals},
    flows::{label::UNKNOWN, FlowKeyView},
    replay::ReplayReport,
};

fn class_line(cc: &ClassCounts) -> String {
    Class::ALL
        .iter()
        .map(|c| {
            let n = cc.get(*c);
            format!("{} {}/{}", c.name(), n.packets, human_bytes(n.bytes))
        })
        .collect::<Vec<_>>()
        .join("  ")
}

pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

pub fn totals(s: &Totals, last: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        if last {
            "== final totals (packets/bytes) =="
        } else {
            "-- totals (packets/bytes) --"
        }
    );
    for i in &s.interfaces {
        let _ = writeln!(out, "{:<12} ingress  {}", i.iface, class_line(&i.ingress));
        let _ = writeln!(out, "{:<12} egress   {}", "", class_line(&i.egress));
    }
    let vnis: Vec<String> = s.vnis.iter().map(|(v, n)| format!("{v}:{n}")).collect();
    let _ = writeln!(
        out,
        "flows {}  vnis [{}]  http requests {} responses {}  evicted {}  events dropped {}",
        s.flow_count,
        vnis.join(" "),
        s.http.requests,
        s.http.responses,
        s.health.flow_evictions,
        s.health.events_dropped(),
    );
    out
}

pub fn flow_table(flows: &[Flow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<6} {:<9} {:<10} {:<33} {:<45} {:>8} {:>10}  http",
        "dir", "class", "vni/spi", "outer", "inner", "packets", "bytes"
    );
    for f in flows {
        let v = FlowKeyView(f);
        let http: Vec<String> = f
            .http_requests
            .iter()
            .map(|(m, n)| format!("{m}:{n}"))
            .chain(f.http_responses.iter().map(|(c, n)| format!("{c}:{n}")))
            .collect();
        let _ = writeln!(
            out,
            "{:<6} {:<9} {:<10} {:<33} {:<45} {:>8} {:>10}  {}",
            f.direction,
            f.class,
            v.id(),
            v.outer(),
            v.inner(),
            f.packets,
            human_bytes(f.bytes),
            http.join(" ")
        );
    }
    out
}

pub fn replay(r: &ReplayReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: {} packets replayed", r.file, r.packets);
    let skipped = r.skipped.unsupported_link_type + r.skipped.short_record;
    if skipped > 0 {
        let _ = writeln!(
            out,
            "skipped {} records ({} of unsupported link types, {} too short)",
            skipped, r.skipped.unsupported_link_type, r.skipped.short_record
        );
    }
    for class in Class::ALL {
        let n = r.totals.classes.get(class);
        let _ = writeln!(
            out,
            "  {:<10} {:>10} packets {:>12}",
            class.name(),
            n.packets,
            human_bytes(n.bytes)
        );
    }
    let vnis: Vec<String> = r
        .totals
        .vnis
        .iter()
        .map(|(v, n)| format!("{v}:{n}"))
        .collect();
    let _ = writeln!(
        out,
        "VNIs: {}",
        if vnis.is_empty() {
            "none".into()
        } else {
            vnis.join(" ")
        }
    );
    let http = &r.totals.http;
    let methods: Vec<String> = http
        .methods
        .iter()
        .map(|(m, n)| format!("{m}:{n}"))
        .collect();
    let _ = writeln!(
        out,
        "HTTP in clear: {} requests [{}], {} responses",
        http.requests,
        methods.join(" "),
        http.responses
    );
    for (p, n) in &r.totals.patterns {
        let _ = writeln!(out, "pattern {p:?}: {n} packets");
    }
    let _ = writeln!(out, "\n{} flows", r.flows.len());
    out.push_str(&flow_table(&r.flows));
    out
}

/// One event, for `run --events`.
pub fn event(e: &FlowEvent) -> String {
    let (f, l) = (&e.flow, &e.labels);
    let v = FlowKeyView(f);
    let who = |s: &str, ip: String| if s == UNKNOWN { ip } else { s.to_owned() };
    let src = who(&l.src_service, v.inner());
    let dst = who(&l.dst_service, String::new());
    let net = if l.network == UNKNOWN {
        format!("vni {}", v.id())
    } else {
        l.network.clone()
    };
    match e.event {
        EventKind::HttpRequest => format!(
            "http  {net} {src} -> {dst} {:?}{}",
            e.request.as_deref().unwrap_or_default(),
            if e.truncated { " (query cut)" } else { "" }
        ),
        EventKind::NewPlaintextFlow => format!(
            "flow  {net} {src} -> {dst} (new plaintext flow, peer {})",
            l.peer_node
        ),
    }
}
