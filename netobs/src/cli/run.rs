use std::{process::ExitCode, time::Duration};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use clap::Args;
use serde_json::json;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
};

use super::{render, DatapathArgs};
use crate::{
    datapath::{
        attach::{Attachment, Mode},
        events, Datapath,
    },
    flows::{Clock, Snapshot},
};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Interface to watch (repeat for several)
    #[arg(long = "iface", value_name = "IF", required = true)]
    ifaces: Vec<String>,
    /// tc: TC on ingress and egress; xdp: XDP on ingress (native, else
    /// generic) and TC on egress; auto: native XDP where the driver has it,
    /// else TC
    #[arg(long, value_enum, default_value_t = Mode::Tc)]
    mode: Mode,
    /// Seconds between two printed totals
    #[arg(long, value_name = "SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    interval: u64,
    /// Print JSON lines instead of text (one per interval, one at exit)
    #[arg(long)]
    json: bool,
    /// Also print each new plaintext flow and HTTP request as it is seen
    #[arg(long)]
    events: bool,
    #[command(flatten)]
    datapath: DatapathArgs,
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(agent(args))
}

fn snapshot(dp: &Datapath, atts: &[Attachment]) -> Result<Snapshot> {
    let ifaces: Vec<(u32, String, u32)> = atts
        .iter()
        .filter_map(|a| {
            let slot = *dp.slots().get(&a.ifindex())?;
            Some((slot, a.iface().to_owned(), a.ifindex()))
        })
        .collect();
    Ok(Snapshot::build(
        &dp.counters()?,
        &ifaces,
        dp.flows()?,
        &dp.stats()?,
        dp.patterns(),
        Clock::monotonic_now(),
    ))
}

fn print(args: &RunArgs, snap: &Snapshot, last: bool) {
    if args.json {
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
        });
        println!("{v}");
    } else {
        print!("{}", render::totals(snap, last));
    }
}

async fn agent(args: RunArgs) -> Result<ExitCode> {
    let mut dp = Datapath::load(&args.datapath.options())?;
    let mut atts = Vec::new();
    for iface in &args.ifaces {
        let att = dp.attach(iface, args.mode)?;
        log::info!(
            "watching {iface}: ingress by {}, egress by tc",
            att.ingress()
        );
        atts.push(att);
    }
    let ring = dp.take_events()?;
    let events = tokio::spawn(drain_events(ring, args.events, args.json));
    let kernel_log = dp
        .take_kernel_log()
        .map(|l| tokio::spawn(forward_kernel_log(l)));
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut tick = tokio::time::interval(Duration::from_secs(args.interval));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => print(&args, &snapshot(&dp, &atts)?, false),
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    // Read once more with the programs still attached, then detach: every
    // packet counted is in the final numbers.
    let last = snapshot(&dp, &atts)?;
    drop(atts);
    events.abort();
    if let Some(t) = kernel_log {
        t.abort();
    }
    print(&args, &last, true);
    log::info!("detached");
    Ok(ExitCode::SUCCESS)
}

async fn drain_events(ring: RingBuf<MapData>, show: bool, json: bool) -> Result<()> {
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
                println!("{}", render::event(&e, &clock, json));
            }
        }
        guard.clear_ready();
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
