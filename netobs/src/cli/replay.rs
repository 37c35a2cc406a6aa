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
    Ok(ExitCode::SUCCESS)
}
