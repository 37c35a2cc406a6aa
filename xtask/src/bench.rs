//! `cargo xtask bench`: the datapath's per-packet cost against a do-nothing
//! program on the same hook (medians of alternated runs), and the flow table
//! at 100k and 1M flows, and live VXLAN traffic with netobs, tcpdump and
//! ngrep side by side, and the series one agent exports for a 50-service
//! swarm. Writes `target/bench/{datapath,scale,live,series}.json` and prints
//! Markdown tables.
use anyhow::Result;

use crate::{build, cmd, root};

const BENCHES: [&str; 4] = ["datapath", "scale", "live", "series"];

pub fn run() -> Result<()> {
    let object = build::ebpf(false)?;
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    for bench in BENCHES {
        cmd::run(
            build::userspace_cargo(&object)
                .env("NETOBS_BENCH_DIR", &dir)
                .args(["bench", "-p", "netobs", "--bench", bench]),
        )?;
    }
    // One file for scripts: the parts side by side.
    let mut all = String::from("{");
    for (i, part) in BENCHES.iter().enumerate() {
        let text = std::fs::read_to_string(dir.join(format!("{part}.json")))?;
        all.push_str(&format!(
            "{}\"{part}\": {text}",
            if i > 0 { ", " } else { "" }
        ));
    }
    all.push('}');
    std::fs::write(dir.join("results.json"), all)?;
    crate::targets::print(&dir)?;
    eprintln!("results: {}", dir.join("results.json").display());
    Ok(())
}
