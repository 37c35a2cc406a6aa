//! Command line: parse arguments, call the library, render. Every failure is
//! one line on stderr that says what to do.
mod audit;
pub mod client;
pub mod cluster;
mod doctor;
mod flows;
pub(crate) mod render;
mod replay;
mod run;
mod services;
mod table;
mod top;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::{
    agent::PortChoice,
    datapath::{Options, DEFAULT_FLOW_TABLE_SIZE},
};
use netobs_common::{DEFAULT_DATA_PATH_PORT, DEFAULT_FLOW_CACHE_SLOTS, MAX_PATTERN_LEN};

#[derive(Debug, Parser)]
#[command(
    name = "netobs",
    version,
    about = "See Docker Swarm overlay traffic: VXLAN or ESP, and HTTP in clear"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Attach to interfaces and count overlay traffic until interrupted.
    Run(run::RunArgs),
    /// Run a pcap/pcapng capture through the datapath and report what it holds.
    Replay(replay::ReplayArgs),
    /// Print the running agent's flows with their services (once, or --watch)
    Flows(flows::FlowsArgs),
    /// The running agent's flows, live: sort, filter, plaintext marked
    Top(top::TopArgs),
    /// Services with their networks, VIPs, tasks and each task's traffic
    Services(services::ServicesArgs),
    /// Is each overlay network really protected? Exit 0 yes, 1 findings, 2 could not run
    Audit(audit::AuditArgs),
    /// Is the overlay healthy: the data path with each peer node, misdirected
    /// VXLAN, TCP between services? Exit 0 yes, 1 findings, 2 could not run
    Doctor(doctor::DoctorArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `netobs man > /usr/share/man/man1/netobs.1`
    Man,
}

/// What the datapath looks for; shared by `run` and `replay`.
#[derive(Debug, Clone, Args)]
pub struct DatapathArgs {
    /// VXLAN data-path UDP port (repeat for several, up to 4) [default:
    /// the swarm's, read from the engine on a manager, else 4789]
    #[arg(long = "data-path-port", value_name = "PORT",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) data_path_ports: Vec<u16>,
    /// Byte string to look for in unencrypted overlay payloads, like ngrep
    /// (repeat for several, up to 8, each up to 32 bytes)
    #[arg(long = "pattern", value_name = "STR", value_parser = parse_pattern)]
    patterns: Vec<String>,
    /// Flows the kernel table holds before evicting the least recently seen
    #[arg(long, value_name = "N", default_value_t = DEFAULT_FLOW_TABLE_SIZE)]
    flow_table_size: u32,
    /// Slots of the per-CPU flow cache in front of the table (a power of
    /// two, 64 to 65536): more slots, fewer flushes when many flows are
    /// busy at once, and 232 bytes of kernel memory per slot and CPU
    #[arg(long, value_name = "N", default_value_t = DEFAULT_FLOW_CACHE_SLOTS,
          value_parser = parse_cache_slots)]
    flow_cache_size: u32,
}

fn parse_cache_slots(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if !(64..=65_536).contains(&n) || !n.is_power_of_two() {
        return Err(format!("{n} is not a power of two from 64 to 65536"));
    }
    Ok(n)
}

/// A `--pattern`: not empty, and short enough to be searched whole. (How
/// many are given is checked with the datapath's options, which clap cannot
/// count per value.)
fn parse_pattern(s: &str) -> Result<String, String> {
    match s.len() {
        0 => Err("a pattern cannot be empty".into()),
        n if n > MAX_PATTERN_LEN => Err(format!(
            "{n} bytes long; at most {MAX_PATTERN_LEN} are searched"
        )),
        _ => Ok(s.to_owned()),
    }
}

/// A count that must be at least one.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

impl DatapathArgs {
    /// The ports given, or none: then `run` asks the swarm.
    fn ports(&self) -> PortChoice {
        if self.data_path_ports.is_empty() {
            PortChoice::AskSwarm
        } else {
            PortChoice::Given(self.data_path_ports.clone())
        }
    }

    /// The datapath's options; with no port given, Docker's default (what
    /// `replay` uses; `run` sets the port it settled on).
    fn options(&self) -> Options {
        Options {
            data_path_ports: match self.ports() {
                PortChoice::Given(p) => p,
                PortChoice::AskSwarm => vec![DEFAULT_DATA_PATH_PORT],
            },
            patterns: self
                .patterns
                .iter()
                .map(|p| p.as_bytes().to_vec())
                .collect(),
            flow_table_size: self.flow_table_size,
            flow_cache_slots: self.flow_cache_size,
            ..Options::default()
        }
    }
}

/// The page for `netobs` and a section per subcommand, in one roff file.
fn man() -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let cmd = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("netobs-{}", sub.get_name());
        let sub = sub.clone().display_name(name);
        clap_mangen::Man::new(sub).render(&mut out)?;
    }
    std::io::stdout().write_all(&out)?;
    Ok(ExitCode::SUCCESS)
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp(None)
        .format_target(false)
        .init();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Replay(args) => replay::replay(args),
        Command::Flows(args) => flows::flows(args),
        Command::Top(args) => top::top(args),
        Command::Services(args) => services::services(args),
        Command::Audit(args) => audit::audit(args),
        Command::Doctor(args) => doctor::doctor(args),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "netobs", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => man(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netobs: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn run_args(extra: &[&str]) -> Result<Cli, clap::Error> {
        let mut args = vec!["netobs", "run", "--iface", "eth0"];
        args.extend(extra);
        Cli::try_parse_from(args)
    }

    /// Every check of a value happens while parsing, with one line naming
    /// the flag.
    #[test]
    fn bad_values_are_refused_by_the_parser() {
        for (flag, value) in [
            ("--max-series", "0"),
            ("--pattern", ""),
            ("--pattern", &"x".repeat(MAX_PATTERN_LEN + 1)),
            ("--require-encryption", ","),
            ("--data-path-port", "0"),
            ("--flow-cache-size", "100"),
            ("--interval", "0"),
        ] {
            let e = run_args(&[flag, value]).err().unwrap_or_else(|| {
                panic!("{flag} {value:?} was accepted");
            });
            let text = e.to_string();
            assert!(text.contains(flag), "{flag}: {text}");
        }
    }

    #[test]
    fn the_port_choice_is_an_enum() {
        let ports = |extra: &[&str]| match run_args(extra) {
            Ok(Cli {
                command: Command::Run(r),
            }) => r.datapath_ports(),
            other => panic!("{other:?}"),
        };
        assert_eq!(ports(&[]), PortChoice::AskSwarm);
        assert_eq!(
            ports(&["--data-path-port", "7789", "--data-path-port", "4789"]),
            PortChoice::Given(vec![7789, 4789])
        );
    }
}
