//! `netobs run`: attach, then once a second read the kernel's maps, label
//! what grew with the inventory, export it, raise alerts; until SIGINT or
//! SIGTERM, then detach. What is printed is the CLI's business: the agent
//! hands totals, alerts and events to a [`Sink`].
//!
//! Tasks: this one owns the datapath and the flow model; one follows the
//! Docker engine; one drains the event ring; one serves HTTP. The model goes
//! to the others as immutable snapshots.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use netobs_common::DEFAULT_DATA_PATH_PORT;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
    sync::watch,
};

use crate::{
    api::{Alert, DataPath, EventKind, FlowEvent, Policy, PortSource},
    datapath::{
        attach::Mode,
        events::{self, CapturePaths},
        watched::{Change, Watched},
        Datapath, Options,
    },
    export::{
        alerts::Alerts,
        exporter::{Exporter, LastRequests},
        http::{self, ApiState},
        metrics::Metrics,
    },
    flows::{label::Labeler, method_name, Clock, Flow},
    inventory::{self, Inventory},
    loss::{self, LossReport},
    poll::{Iface, Poller, Read},
};

pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9477";
const POLL: Duration = Duration::from_secs(1);

/// Which ports carry the data path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortChoice {
    /// `--data-path-port`, as given.
    Given(Vec<u16>),
    /// The swarm's own (a manager can read it), else Docker's default.
    AskSwarm,
}

/// What the agent hands out; the CLI renders it.
pub enum Output<'a> {
    /// Every `print_every`, and once after detaching (`last`).
    Totals {
        read: &'a Read,
        docker_up: bool,
        /// The inventory names networks: the groups mean something.
        networks_known: bool,
        last: bool,
    },
    /// An alert raised, or due its reminder.
    Alert(&'a Alert),
    /// A new plaintext flow or an HTTP request (with `events`).
    Event(&'a FlowEvent),
}

/// Where the agent's output goes.
pub type Sink = Arc<dyn Fn(Output<'_>) + Send + Sync>;

pub struct AgentConfig {
    pub ifaces: Vec<String>,
    pub mode: Mode,
    pub ports: PortChoice,
    /// Options for the datapath; its ports are set from `ports`.
    pub datapath: Options,
    pub print_every: Duration,
    /// Hand every event to the sink, not only keep the last requests.
    pub events: bool,
    pub capture_paths: CapturePaths,
    pub metrics_addr: SocketAddr,
    /// Required of every request but /healthz when set.
    pub api_token: Option<crate::token::Token>,
    pub docker_host: Option<String>,
    pub docker: bool,
    pub require_encryption: Policy,
    pub max_series: usize,
    pub series_grace: Duration,
    pub resync: Duration,
}

/// The data-path port(s): the flag, else the swarm's (a manager can read
/// it), else Docker's default; says which, in the log and in the API.
async fn data_path_ports(cfg: &AgentConfig) -> DataPath {
    if let PortChoice::Given(ports) = &cfg.ports {
        log::info!("data-path port {ports:?} (from --data-path-port)");
        return DataPath {
            ports: ports.clone(),
            from: PortSource::Flag,
        };
    }
    if cfg.docker {
        let probe = async {
            let d = inventory::connect(cfg.docker_host.as_deref()).await.ok()?;
            let raw = inventory::fetch(&d).await.ok()?;
            Inventory::from_raw(&raw, 0.0).swarm?.data_path_port
        };
        if let Ok(Some(p)) = tokio::time::timeout(Duration::from_secs(5), probe).await {
            log::info!("data-path port {p} (from the swarm)");
            return DataPath {
                ports: vec![p],
                from: PortSource::Swarm,
            };
        }
    }
    log::info!(
        "data-path port {DEFAULT_DATA_PATH_PORT} (Docker's default: the swarm's own could not be \
         read here, which takes a manager; set --data-path-port if the swarm uses another)"
    );
    DataPath {
        ports: vec![DEFAULT_DATA_PATH_PORT],
        from: PortSource::Default,
    }
}

pub async fn run(mut cfg: AgentConfig, sink: Sink) -> Result<()> {
    // First: a stop asked for while attaching must still detach cleanly.
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    // A mistyped interface is the likeliest error: report it before anything.
    for iface in &cfg.ifaces {
        crate::datapath::attach::ifindex(iface)?;
    }
    crate::privileges::check()?;
    let data_path = data_path_ports(&cfg).await;
    cfg.datapath.data_path_ports = data_path.ports.clone();
    let mut dp = Datapath::load(&cfg.datapath)?;
    let mut watched = Vec::new();
    for iface in &cfg.ifaces {
        let w = dp.watch(iface, cfg.mode)?;
        if let Some(att) = w.attachment() {
            log::info!(
                "watching {iface}: ingress by {}, egress by tc",
                att.ingress()
            );
        }
        watched.push(w);
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
    let server = http::serve(
        cfg.metrics_addr,
        metrics.registry().clone(),
        api_rx,
        cfg.api_token.clone(),
    )
    .await
    .with_context(|| {
        format!(
            "cannot serve metrics on {} (in use? set --metrics-addr)",
            cfg.metrics_addr
        )
    })?;
    match (cfg.metrics_addr.ip().is_loopback(), &cfg.api_token) {
        (true, None) => log::info!("metrics and API on http://{}/metrics", cfg.metrics_addr),
        (_, Some(_)) => log::info!(
            "metrics and API on http://{}/metrics, bearer token required",
            cfg.metrics_addr
        ),
        (false, None) => log::warn!(
            "metrics and API on http://{}/metrics: reachable from other hosts, without a token",
            cfg.metrics_addr
        ),
    }
    // Everything that needs privileges is done: programs attached, port
    // bound.
    match crate::privileges::drop_extra() {
        Ok(kept) => log::info!("capabilities: kept {}, dropped the rest", kept.join(", ")),
        Err(e) => log::warn!("could not drop capabilities ({e}); running with all of them"),
    }

    let ring = dp.take_events()?;
    let last_requests = LastRequests::default();
    let events = tokio::spawn(drain_events(
        ring,
        EventSink {
            out: cfg.events.then(|| sink.clone()),
            paths: cfg.capture_paths,
            last_requests: last_requests.clone(),
        },
        inv_rx.clone(),
    ));
    let kernel_log = dp
        .take_kernel_log()
        .map(|l| tokio::spawn(forward_kernel_log(l)));

    // Loss between nodes: peers' agents are asked at this agent's port,
    // which they can reach only if it serves beyond loopback.
    let loss_rx = if cfg.metrics_addr.ip().is_loopback() {
        watch::channel(Arc::new(LossReport {
            off: Some(format!(
                "this agent serves on {} only, so the agents of other nodes cannot be asked \
                 what they sent here (nor ask it): serve on the node's address with \
                 --api-token-file, on the same port on every node",
                cfg.metrics_addr
            )),
            peers: Vec::new(),
        }))
        .1
    } else {
        loss::spawn_checker(
            loss::CheckerConfig {
                port: cfg.metrics_addr.port(),
                token: cfg.api_token.clone(),
            },
            api_tx.subscribe(),
            stop_rx.clone(),
        )
    };
    let mut poller = Poller::new(metrics.max_series());
    let mut exporter = Exporter::new(
        metrics,
        Alerts::new(cfg.require_encryption.clone()),
        cfg.series_grace,
        data_path,
    );
    let mut ifaces = interfaces(&dp, &watched);
    let mut tick = tokio::time::interval(POLL);
    // A read of a huge table may take longer than a tick: start the next one
    // a tick after it ends rather than catching up in a burst.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let polls_per_print = (cfg.print_every.as_millis() / POLL.as_millis()).max(1) as u64;
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if recheck(&mut dp, &mut watched) {
                    ifaces = interfaces(&dp, &watched);
                }
                let inv = inv_rx.borrow().clone();
                let mut read = poller.poll(&dp, &ifaces, &inv)?;
                let loss = loss_rx.borrow().clone();
                let exported = exporter.export(&mut read, &ifaces, &inv, &last_requests, &loss);
                for a in &exported.raised {
                    sink(Output::Alert(a));
                }
                n += 1;
                if n.is_multiple_of(polls_per_print) {
                    sink(Output::Totals {
                        read: &read,
                        docker_up: inv.docker_up,
                        networks_known: !inv.networks.is_empty(),
                        last: false,
                    });
                }
                let _ = api_tx.send(Arc::new(exported.api));
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    // One last read with the programs still attached, then detach: every
    // packet counted is in the final numbers.
    let inv = inv_rx.borrow().clone();
    let last = poller.poll(&dp, &ifaces, &inv)?;
    drop(watched);
    let _ = stop_tx.send(true);
    events.abort();
    server.abort();
    if let Some(t) = kernel_log {
        t.abort();
    }
    if let Some(w) = watcher {
        let _ = tokio::time::timeout(Duration::from_secs(1), w).await;
    }
    sink(Output::Totals {
        read: &last,
        docker_up: inv.docker_up,
        networks_known: !inv.networks.is_empty(),
        last: true,
    });
    log::info!("detached");
    Ok(())
}

/// Counter slot, name and index of each watched interface.
fn interfaces(dp: &Datapath, watched: &[Watched]) -> Vec<Iface> {
    watched
        .iter()
        .filter_map(|w| {
            Some((
                *dp.slots().get(&w.ifindex())?,
                w.name().to_owned(),
                w.ifindex(),
            ))
        })
        .collect()
}

/// Reattaches to interfaces that came back; says what changed, once.
/// True when an interface index changed.
fn recheck(dp: &mut Datapath, watched: &mut [Watched]) -> bool {
    let mut moved = false;
    for w in watched.iter_mut() {
        match dp.recheck(w) {
            None => {}
            Some(Change::Vanished) => log::warn!(
                "{} vanished: nothing is counted on it until it is back (netobs reattaches \
                 by itself)",
                w.name()
            ),
            Some(Change::Reattached { ifindex, ingress }) => {
                moved = true;
                log::warn!(
                    "{} is back (index {ifindex}): reattached, ingress by {ingress}, egress by tc; \
                     its counters go on",
                    w.name()
                );
            }
            Some(Change::Failed(e)) => {
                log::error!(
                    "{} is back but reattaching failed: {e}; trying again",
                    w.name()
                )
            }
        }
    }
    moved
}

/// Where events go: to the sink with `--events`, and the last request of
/// each flow kept for the API.
struct EventSink {
    out: Option<Sink>,
    paths: CapturePaths,
    last_requests: LastRequests,
}

/// How often the event ring is drained without being woken: the kernel
/// wakes the agent only once a quarter of the ring is unread
/// (`netobs_common::EVENTS_WAKEUP_BYTES`), so an event waits at most this
/// long to be seen.
pub const EVENTS_DRAIN_INTERVAL: Duration = Duration::from_millis(100);

async fn drain_events(
    ring: RingBuf<MapData>,
    sink: EventSink,
    inv: inventory::InventoryRx,
) -> Result<()> {
    // SAFETY: the RingBuf owns its descriptor and moves into the AsyncFd,
    // which deregisters it before dropping it.
    let mut fd = unsafe { AsyncFd::register(ring) }
        .map_err(|e| anyhow::anyhow!("watching the event ring buffer: {e}"))?;
    let clock = Clock::monotonic_now();
    loop {
        match tokio::time::timeout(EVENTS_DRAIN_INTERVAL, fd.readable_mut()).await {
            Ok(guard) => {
                let mut guard = guard.context("waiting for events")?;
                drain_ring(guard.get_inner_mut(), &sink, &inv, clock);
                guard.clear_ready();
            }
            Err(_) => drain_ring(fd.get_mut(), &sink, &inv, clock),
        }
    }
}

/// Hands every event in the ring on.
fn drain_ring(
    ring: &mut RingBuf<MapData>,
    sink: &EventSink,
    inv: &inventory::InventoryRx,
    clock: Clock,
) {
    while let Some(item) = ring.next() {
        let Some(e) = events::decode(&item) else {
            continue;
        };
        let http = e.kind == netobs_common::EVENT_HTTP_REQUEST;
        let flow = Flow::from_raw(&e.key, &Default::default(), &[], clock);
        if http {
            sink.last_requests
                .insert(flow.sort_key(), events::snippet(&e, sink.paths));
        }
        if let Some(out) = &sink.out {
            let inv = inv.borrow().clone();
            let event = FlowEvent {
                event: if http {
                    EventKind::HttpRequest
                } else {
                    EventKind::NewPlaintextFlow
                },
                time: clock.unix_seconds(e.timestamp_ns),
                labels: Labeler::new(&inv).label(&flow),
                method: http.then(|| method_name(e.http_method).to_owned()),
                request: http.then(|| events::snippet(&e, sink.paths)),
                truncated: http && e.snippet_truncated != 0,
                flow,
            };
            out(Output::Event(&event));
        }
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
