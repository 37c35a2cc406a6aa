use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::Args;

use super::{render, DatapathArgs};
use crate::replay::replay as run_replay;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Capture to read (pcap or pcapng; Ethernet, Linux cooked or raw IP)
    file: PathBuf,
    /// Print one JSON object instead of tables
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    datapath: DatapathArgs,
}

pub fn replay(args: ReplayArgs) -> Result<ExitCode> {
    let report = run_replay(&args.file, args.datapath.options())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render::replay(&report));
    }
    // As tcpdump does with a truncated file: what it held, then the error.
    if let Some(why) = &report.damaged {
        eprintln!(
            "netobs: error: {why} (the counts above cover the {} packets before it)",
            report.packets
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
