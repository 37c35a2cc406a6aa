//! `cargo xtask fuzz`: the fuzz tests of `netobs/tests/fuzz.rs` with a
//! long run (CI runs the same tests with 20,000 packets).
use anyhow::Result;
use clap::Args;

use crate::{build, cmd};

#[derive(Args)]
pub struct FuzzArgs {
    /// Mutated packets through each of the TC and XDP programs
    #[arg(long, default_value_t = 2_000_000)]
    packets: u64,
    /// Seed of the mutations (the default is the tests' fixed one)
    #[arg(long)]
    seed: Option<u64>,
}

pub fn run(a: &FuzzArgs) -> Result<()> {
    let object = build::ebpf(false)?;
    let mut c = build::userspace_cargo(&object);
    c.env("NETOBS_FUZZ_PACKETS", a.packets.to_string())
        .args(["test", "--release", "-p", "netobs", "--test", "fuzz"])
        .args(["--", "--nocapture"]);
    if let Some(seed) = a.seed {
        c.env("NETOBS_FUZZ_SEED", seed.to_string());
    }
    cmd::run(&mut c)
}
