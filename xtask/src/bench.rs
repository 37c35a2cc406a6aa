//! `cargo xtask bench`: the datapath's per-packet cost against a do-nothing
//! program on the same hook (medians of alternated runs). Writes
//! `target/bench/datapath.json` and prints a Markdown table.
use anyhow::Result;

use crate::{build, cmd, root};

pub fn run() -> Result<()> {
    let object = build::ebpf(false)?;
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    cmd::run(
        build::userspace_cargo(&object)
            .env("NETOBS_BENCH_DIR", &dir)
            .args(["bench", "-p", "netobs", "--bench", "datapath"]),
    )?;
    eprintln!("results: {}", dir.join("datapath.json").display());
    Ok(())
}
