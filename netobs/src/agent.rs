//! `netobs run`: attach, then once a second read the kernel's maps, label
//! what grew with the inventory, export it, raise alerts; until SIGINT or
//! SIGTERM, then detach.
//!
//! Tasks: this one owns the datapath and the flow model; one follows the
//! Docker engine; one drains the event ring; one serves HTTP. The model goes
//! to the others as immutable snapshots.
use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use netobs_common::{counter_index, Class, Direction, HttpMethod, DEFAULT_DATA_PATH_PORT};
use serde_json::json;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
    sync::watch,
};

use crate::{
    datapath::{
        attach::{Attachment, Mode},
        events, Datapath, Options,
    },
    export::{
        alerts::{Alerts, Policy},
        http::{self, ApiState, LabelledFlow},
        metrics::{self, Metrics},
    },
    flows::{
        aggregate::Aggregator,
        label::{Labeler, UNKNOWN},
        method_name, Clock, Flow, FlowKeyView, Snapshot,
    },
    inventory::{self, Inventory, InventoryRx},
};

pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9477";
const POLL: Duration = Duration::from_secs(1);
const STATUS_CLASS_NAMES: [&str; 6] = ["other", "1xx", "2xx", "3xx", "4xx", "5xx"];

pub struct AgentConfig {
    pub ifaces: Vec<String>,
    pub mode: Mode,
    /// Options for the datapath; `data_path_ports` empty means "ask the swarm".
    pub datapath: Options,
    pub print_every: Duration,
    pub json: bool,
    pub events: bool,
    pub metrics_addr: SocketAddr,
    pub docker_host: Option<String>,
    pub docker: bool,
    pub require_encryption: Policy,
    pub max_series: usize,
    pub series_grace: Duration,
    pub resync: Duration,
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The data-path port(s): the flag, else the swarm's (a manager can read
/// it), else Docker's default; says which.
async fn data_path_ports(cfg: &AgentConfig) -> Vec<u16> {
    if !cfg.datapath.data_path_ports.is_empty() {
        log::info!(
            "data-path port {:?} (from --data-path-port)",
            cfg.datapath.data_path_ports
        );
        return cfg.datapath.data_path_ports.clone();
    }
    if cfg.docker {
        let probe = async {
            let d = inventory::connect(cfg.docker_host.as_deref()).await.ok()?;
            let raw = inventory::fetch(&d).await.ok()?;
            Inventory::from_raw(&raw, 0.0).swarm?.data_path_port
        };
        if let Ok(Some(p)) = tokio::time::timeout(Duration::from_secs(5), probe).await {
            log::info!("data-path port {p} (from the swarm)");
            return vec![p];
        }
    }
    log::info!(
        "data-path port {DEFAULT_DATA_PATH_PORT} (Docker's default: the swarm's own could not be \
         read here, which takes a manager; set --data-path-port if the swarm uses another)"
    );
    vec![DEFAULT_DATA_PATH_PORT]
}

/// Everything one read of the maps produced, for printing and the API.
struct Poller {
    agg: Aggregator,
    metrics: Metrics,
    alerts: Alerts,
    last_evictions: u64,
    last_rate_limited: u64,
    last_ring_full: u64,
    grace: Duration,
}

impl Poller {
    fn poll(
        &mut self,
        dp: &Datapath,
        atts: &[Attachment],
        inv: &Arc<Inventory>,
    ) -> Result<(Snapshot, ApiState)> {
        let counters = dp.counters()?;
        let raw = dp.flows()?;
        let stats = dp.stats()?;
        let clock = Clock::monotonic_now();
        let ifaces: Vec<(u32, String, u32)> = atts
            .iter()
            .filter_map(|a| {
                Some((
                    *dp.slots().get(&a.ifindex())?,
                    a.iface().to_owned(),
                    a.ifindex(),
                ))
            })
            .collect();
        let iface_name = |ifindex: u32| {
            ifaces
                .iter()
                .find(|i| i.2 == ifindex)
                .map_or("?", |i| i.1.as_str())
                .to_owned()
        };
        let m = &mut self.metrics;

        let grown = self.agg.counters(&counters);
        for (slot, name, _) in &ifaces {
            for d in Direction::ALL {
                for c in Class::ALL {
                    if let Some(g) = grown.get(counter_index(*slot, d, c) as usize) {
                        let l = [name.as_str(), d.name(), c.name()];
                        m.inc(&metrics::PACKETS, &l, g.packets);
                        m.inc(&metrics::BYTES, &l, g.bytes);
                    }
                }
            }
        }

        let labeler = Labeler::new(inv);
        let patterns = dp.patterns();
        let now = unix_now();
        for (k, v, g) in self.agg.flows(&raw) {
            let f = Flow::from_raw(k, v, patterns, clock);
            let l = labeler.label(&f);
            let ol = [
                l.network.as_str(),
                &l.vni,
                l.encrypted,
                f.class,
                f.direction,
                &l.peer_node,
            ];
            m.inc(&metrics::OVERLAY_PACKETS, &ol, g.packets);
            m.inc(&metrics::OVERLAY_BYTES, &ol, g.bytes);
            if f.class != Class::Vxlan.name() {
                continue;
            }
            for meth in HttpMethod::ALL {
                let n = g.http_requests[meth as usize];
                m.inc(
                    &metrics::HTTP_REQUESTS,
                    &[&l.network, &l.src_service, &l.dst_service, meth.name()],
                    n,
                );
            }
            for (i, class) in STATUS_CLASS_NAMES.iter().enumerate() {
                // A response travels server -> client: label it from the
                // asking side, like its request.
                m.inc(
                    &metrics::HTTP_RESPONSES,
                    &[&l.network, &l.dst_service, &l.src_service, class],
                    g.http_responses[i],
                );
            }
            for (i, p) in patterns.iter().enumerate() {
                m.inc(
                    &metrics::PATTERN_MATCHES,
                    &[&l.network, p],
                    g.pattern_hits[i],
                );
            }
            if l.encrypted == "true" {
                m.inc(&metrics::PLAINTEXT_ON_ENCRYPTED, &[&l.network], g.bytes);
            }
            // To or from: either way, the data-path port talks to a host
            // that is not a node.
            if inv.docker_up && inv.swarm.is_some() && !l.peer_known {
                m.inc(&metrics::UNKNOWN_PEER, &[&iface_name(k.ifindex)], g.packets);
            }
            for alert in self.alerts.observe(&l, &g, now) {
                // The structured line operators grep for; on stderr with
                // the rest of the log.
                eprintln!("{}", json!({ "alert": alert }));
            }
        }

        let snap = Snapshot::build(&counters, &ifaces, raw, &stats, patterns, clock);
        let h = snap.health;
        m.inc(
            &metrics::FLOW_EVICTIONS,
            &[],
            h.flow_evictions.saturating_sub(self.last_evictions),
        );
        m.inc(
            &metrics::EVENTS_DROPPED,
            &["rate_limited"],
            h.events_rate_limited.saturating_sub(self.last_rate_limited),
        );
        m.inc(
            &metrics::EVENTS_DROPPED,
            &["ring_full"],
            h.events_ring_full.saturating_sub(self.last_ring_full),
        );
        self.last_evictions = self.last_evictions.max(h.flow_evictions);
        self.last_rate_limited = h.events_rate_limited;
        self.last_ring_full = h.events_ring_full;
        m.gauge_set(&metrics::FLOWS_ACTIVE, &[], snap.flows.len() as i64);
        m.gauge_set(&metrics::DOCKER_UP, &[], inv.docker_up as i64);
        let nets: Vec<(Vec<String>, i64)> = inv
            .networks
            .iter()
            .flat_map(|n| {
                n.vnis.iter().map(move |v| {
                    (
                        vec![n.name.clone(), v.to_string(), n.encrypted.to_string()],
                        1,
                    )
                })
            })
            .collect();
        m.gauge_replace(&metrics::NETWORK_INFO, &nets);
        let alerts: Vec<(Vec<String>, i64)> = self
            .alerts
            .list()
            .into_iter()
            .map(|a| (vec![a.kind.to_owned(), a.network], 1))
            .collect();
        m.gauge_replace(&metrics::ALERT_ACTIVE, &alerts);
        let live: HashSet<String> = inv
            .networks
            .iter()
            .map(|n| n.name.clone())
            .chain(
                inv.endpoints
                    .iter()
                    .filter_map(|e| e.label().map(str::to_owned)),
            )
            .collect();
        if inv.docker_up {
            m.expire(self.grace, &live);
        }

        let flows = snap
            .flows
            .iter()
            .map(|f| LabelledFlow {
                labels: labeler.label(f),
                flow: f.clone(),
            })
            .collect();
        let api = ApiState {
            flows,
            inventory: inv.clone(),
            alerts: self.alerts.list(),
        };
        Ok((snap, api))
    }
}

pub async fn run(mut cfg: AgentConfig) -> Result<()> {
    // A mistyped interface is the likeliest error: report it before anything.
    for iface in &cfg.ifaces {
        crate::datapath::attach::ifindex(iface)?;
    }
    crate::privileges::check()?;
    cfg.datapath.data_path_ports = data_path_ports(&cfg).await;
    let mut dp = Datapath::load(&cfg.datapath)?;
    let mut atts = Vec::new();
    for iface in &cfg.ifaces {
        let att = dp.attach(iface, cfg.mode)?;
        log::info!(
            "watching {iface}: ingress by {}, egress by tc",
            att.ingress()
        );
        atts.push(att);
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let (inv_rx, watcher) = if cfg.docker {
        let (rx, t) =
            inventory::spawn_watcher(cfg.docker_host.clone(), cfg.resync, stop_rx.clone());
        (rx, Some(t))
    } else {
        (watch::channel(Arc::new(Inventory::default())).1, None)
    };

    let metrics = Metrics::new(cfg.max_series).context("setting up the metrics registry")?;
    let (api_tx, api_rx) = watch::channel(Arc::new(ApiState::default()));
    let server = http::serve(cfg.metrics_addr, metrics.registry().clone(), api_rx)
        .await
        .with_context(|| {
            format!(
                "cannot serve metrics on {} (in use? set --metrics-addr)",
                cfg.metrics_addr
            )
        })?;
    if cfg.metrics_addr.ip().is_loopback() {
        log::info!("metrics and API on http://{}/metrics", cfg.metrics_addr);
    } else {
        log::warn!(
            "metrics and API on http://{}/metrics: reachable from other hosts",
            cfg.metrics_addr
        );
    }

    let ring = dp.take_events()?;
    let events = tokio::spawn(drain_events(ring, cfg.events, cfg.json, inv_rx.clone()));
    let kernel_log = dp
        .take_kernel_log()
        .map(|l| tokio::spawn(forward_kernel_log(l)));

    let mut poller = Poller {
        agg: Aggregator::default(),
        metrics,
        alerts: Alerts::new(cfg.require_encryption.clone()),
        last_evictions: 0,
        last_rate_limited: 0,
        last_ring_full: 0,
        grace: cfg.series_grace,
    };
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut tick = tokio::time::interval(POLL);
    let polls_per_print = (cfg.print_every.as_millis() / POLL.as_millis()).max(1) as u64;
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let inv = inv_rx.borrow().clone();
                let (snap, api) = poller.poll(&dp, &atts, &inv)?;
                let _ = api_tx.send(Arc::new(api));
                n += 1;
                if n.is_multiple_of(polls_per_print) {
                    print(cfg.json, &snap, &inv, false);
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    // One last read with the programs still attached, then detach: every
    // packet counted is in the final numbers.
    let inv = inv_rx.borrow().clone();
    let (last, _) = poller.poll(&dp, &atts, &inv)?;
    drop(atts);
    let _ = stop_tx.send(true);
    events.abort();
    server.abort();
    if let Some(t) = kernel_log {
        t.abort();
    }
    if let Some(w) = watcher {
        let _ = tokio::time::timeout(Duration::from_secs(1), w).await;
    }
    print(cfg.json, &last, &inv, true);
    log::info!("detached");
    Ok(())
}

fn print(as_json: bool, snap: &Snapshot, inv: &Inventory, last: bool) {
    if as_json {
        let v = json!({
            "final": last,
            "interfaces": snap.interfaces,
            "classes": snap.classes(),
            "vnis": snap.vnis(),
            "http": {
                "requests": snap.http_requests(),
                "responses": snap.http_responses(),
                "methods": snap.http_by_method(),
            },
            "patterns": snap.pattern_hits(),
            "flows": snap.flows.len(),
            "health": snap.health,
            "docker_up": inv.docker_up,
        });
        println!("{v}");
    } else {
        print!("{}", crate::cli::render::totals(snap, last));
        if !inv.networks.is_empty() {
            let labeler = Labeler::new(inv);
            let mut by: BTreeMap<(String, String, String, &'static str), u64> = BTreeMap::new();
            for f in &snap.flows {
                let l = labeler.label(f);
                let key = if f.class == Class::Esp.name() {
                    // ESP belongs to a node pair, not to a network.
                    (
                        "-".to_owned(),
                        f.direction.to_owned(),
                        format!("peer {}", l.peer_node),
                        f.class,
                    )
                } else {
                    (l.network, l.src_service, l.dst_service, f.class)
                };
                *by.entry(key).or_insert(0) += f.packets;
            }
            for ((net, src, dst, class), pkts) in by {
                println!("  {net:<14} {class:<6} {src} -> {dst}: {pkts} packets");
            }
        }
    }
}

async fn drain_events(
    ring: RingBuf<MapData>,
    show: bool,
    as_json: bool,
    inv: InventoryRx,
) -> Result<()> {
    // SAFETY: the RingBuf owns its descriptor and moves into the AsyncFd,
    // which deregisters it before dropping it.
    let mut fd = unsafe { AsyncFd::register(ring) }
        .map_err(|e| anyhow::anyhow!("watching the event ring buffer: {e}"))?;
    let clock = Clock::monotonic_now();
    loop {
        let mut guard = fd.readable_mut().await.context("waiting for events")?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            let Some(e) = events::decode(&item) else {
                continue;
            };
            if show {
                let inv = inv.borrow().clone();
                println!("{}", event_line(&e, &clock, as_json, &inv));
            }
        }
        guard.clear_ready();
    }
}

fn event_line(e: &netobs_common::Event, clock: &Clock, as_json: bool, inv: &Inventory) -> String {
    let f = Flow::from_raw(&e.key, &Default::default(), &[], *clock);
    let l = Labeler::new(inv).label(&f);
    let v = FlowKeyView(&f);
    let http = e.kind == netobs_common::EVENT_HTTP_REQUEST;
    if as_json {
        let mut j = json!({
            "event": if http { "http_request" } else { "new_plaintext_flow" },
            "time": clock.unix_seconds(e.timestamp_ns),
            "network": l.network, "vni": f.vni, "encrypted": l.encrypted,
            "src_service": l.src_service, "dst_service": l.dst_service, "peer_node": l.peer_node,
            "outer": v.outer(), "inner": v.inner(),
        });
        if http {
            j["method"] = json!(method_name(e.http_method));
            j["request"] = json!(events::snippet(e));
            j["truncated"] = json!(e.snippet_truncated != 0);
        }
        return j.to_string();
    }
    let who = |s: &str, ip: String| if s == UNKNOWN { ip } else { s.to_owned() };
    let src = who(&l.src_service, v.inner());
    let dst = who(&l.dst_service, String::new());
    let net = if l.network == UNKNOWN {
        format!("vni {}", v.id())
    } else {
        l.network.clone()
    };
    if http {
        format!(
            "http  {net} {src} -> {dst} {:?}{}",
            events::snippet(e),
            if e.snippet_truncated != 0 {
                " (query cut)"
            } else {
                ""
            }
        )
    } else {
        format!(
            "flow  {net} {src} -> {dst} (new plaintext flow, peer {})",
            l.peer_node
        )
    }
}

/// Kernel-side aya-log records (debug builds of the object only) into our log.
async fn forward_kernel_log(logger: aya_log::EbpfLogger<&'static dyn log::Log>) -> Result<()> {
    // SAFETY: the logger owns its descriptor and moves into the AsyncFd.
    let mut fd = unsafe { AsyncFd::register(logger) }
        .map_err(|e| anyhow::anyhow!("watching the kernel log: {e}"))?;
    loop {
        let mut guard = fd.readable_mut().await.context("waiting for kernel log")?;
        guard.get_inner_mut().flush();
        guard.clear_ready();
    }
}
