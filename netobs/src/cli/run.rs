use std::{net::SocketAddr, process::ExitCode, time::Duration};

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use super::{at_least_one, render, DatapathArgs};
use crate::{
    agent::{self, AgentConfig, Output, Sink, DEFAULT_METRICS_ADDR},
    api::{AlertRaised, Policy, RunReport},
    datapath::{
        attach::{Mode, TcApi},
        events::CapturePaths,
    },
    poll,
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
    /// How TC programs attach: tcx links (6.6+, vanish with the agent),
    /// netlink tc filters (the only way before 6.6; a restarted agent
    /// removes the ones a killed agent left), or auto
    #[arg(long, value_enum, value_name = "API", default_value_t = TcApi::Auto)]
    tc_api: TcApi,
    /// Seconds between two printed totals
    #[arg(long, value_name = "SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    interval: u64,
    /// Print JSON lines instead of text (one per interval, one at exit)
    #[arg(long)]
    json: bool,
    /// Also print each new plaintext flow and HTTP request as it is seen
    #[arg(long)]
    events: bool,
    /// How much of an HTTP request's target is shown: `redacted` (no query
    /// string, credential-like path segments replaced) or `full`
    #[arg(long, value_enum, value_name = "WHAT", default_value_t = CapturePaths::Redacted)]
    capture_paths: CapturePaths,
    /// Where to serve /metrics and the API; beyond loopback it needs
    /// --api-token-file (or --api-no-token)
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_METRICS_ADDR)]
    metrics_addr: SocketAddr,
    /// A file holding the bearer token every request but /healthz must
    /// carry (a Docker secret; at least 16 characters)
    #[arg(long, value_name = "FILE")]
    api_token_file: Option<std::path::PathBuf>,
    /// Serve beyond loopback without a token: anyone who reaches the port
    /// reads the flows and the inventory
    #[arg(long, conflicts_with = "api_token_file")]
    api_no_token: bool,
    /// Docker engine to ask (unix:///path or tcp://host:port) [default:
    /// DOCKER_HOST, else /var/run/docker.sock]
    #[arg(long, value_name = "HOST")]
    docker_host: Option<String>,
    /// Do not talk to Docker: counts only, every label `unknown`
    #[arg(long)]
    no_docker: bool,
    /// Alert on unencrypted overlay traffic: `all`, or networks NET[,NET...]
    #[arg(long, value_name = "POLICY", default_value = "")]
    require_encryption: Policy,
    /// Series per metric before the excess folds into `other`
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = at_least_one)]
    max_series: usize,
    /// Seconds a series of a removed network or service lingers
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    series_grace: u64,
    /// Seconds between full re-reads of the engine (events keep it current)
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    resync: u64,
    /// Pin the counters and the flow table under DIR on bpffs (e.g.
    /// /sys/fs/bpf/netobs): a restarted agent goes on counting from them
    #[arg(long, value_name = "DIR")]
    pin: Option<std::path::PathBuf>,
    #[command(flatten)]
    datapath: DatapathArgs,
}

impl RunArgs {
    /// The data-path ports given, or none (then the agent asks the swarm).
    #[cfg(test)]
    pub(super) fn datapath_ports(&self) -> crate::agent::PortChoice {
        self.datapath.ports()
    }
}

/// What the agent hands out, printed: text or JSON lines on stdout,
/// alerts as JSON lines on stderr with the log.
fn printer(json: bool) -> Sink {
    Arc::new(move |out: Output<'_>| match out {
        Output::Totals {
            read,
            docker_up,
            networks_known,
            last,
        } => {
            let totals = read.snapshot.totals();
            if json {
                let line = RunReport {
                    last,
                    docker_up,
                    totals,
                };
                if let Ok(text) = serde_json::to_string(&line) {
                    println!("{text}");
                }
            } else {
                print!("{}", render::totals(&totals, last));
                if networks_known {
                    for ((net, src, dst, class), pkts) in poll::summary(&read.groups) {
                        println!("  {net:<14} {class:<6} {src} -> {dst}: {pkts} packets");
                    }
                }
            }
        }
        // The structured line operators grep for.
        Output::Alert(alert) => {
            let line = AlertRaised {
                alert: alert.clone(),
            };
            if let Ok(text) = serde_json::to_string(&line) {
                eprintln!("{text}");
            }
        }
        Output::Event(e) => {
            if json {
                if let Ok(text) = serde_json::to_string(e) {
                    println!("{text}");
                }
            } else {
                println!("{}", render::event(e));
            }
        }
    })
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let api_token = args
        .api_token_file
        .as_deref()
        .map(crate::token::Token::from_file)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if api_token.is_none() && !args.api_no_token && !args.metrics_addr.ip().is_loopback() {
        anyhow::bail!(
            "--metrics-addr {} is reachable from other hosts: give --api-token-file (the \
             cluster view sends the same token), or --api-no-token to serve flows and \
             inventory to anyone who reaches the port",
            args.metrics_addr
        );
    }
    let mut datapath = args.datapath.options();
    datapath.full_paths = args.capture_paths == CapturePaths::Full;
    datapath.pin = args.pin;
    datapath.tc_api = args.tc_api;
    let cfg = AgentConfig {
        ifaces: args.ifaces,
        mode: args.mode,
        ports: args.datapath.ports(),
        datapath,
        print_every: Duration::from_secs(args.interval),
        events: args.events,
        capture_paths: args.capture_paths,
        metrics_addr: args.metrics_addr,
        api_token,
        docker_host: args.docker_host,
        docker: !args.no_docker,
        require_encryption: args.require_encryption,
        max_series: args.max_series,
        series_grace: Duration::from_secs(args.series_grace),
        resync: Duration::from_secs(args.resync),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Capabilities are per thread: a blocking-pool thread (a DNS lookup
        // for a tcp:// Docker host) must be gone before they are dropped,
        // or it keeps them all.
        .thread_keep_alive(crate::privileges::THREAD_KEEP_ALIVE)
        .build()
        .context("starting the async runtime")?;
    rt.block_on(agent::run(cfg, printer(args.json)))?;
    Ok(ExitCode::SUCCESS)
}
