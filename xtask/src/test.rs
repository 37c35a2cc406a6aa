//! What CI runs: setup, build, lint, then every test, privileged ones
//! included. Lab leftovers are cleaned before and after.
use std::process::Command;

use anyhow::Result;
use clap::Args;

use crate::{build, cmd, root};

#[derive(Args)]
pub struct TestArgs {
    /// Skip rustfmt and clippy
    #[arg(long)]
    pub no_lint: bool,
    /// Passed on to `cargo test` (e.g. a test name filter)
    #[arg(last = true)]
    pub cargo_args: Vec<String>,
}

pub fn lint() -> Result<()> {
    let object = build::ebpf(false)?;
    cmd::run(build::userspace_cargo(&object).args(["fmt", "--all", "--", "--check"]))?;
    cmd::run(build::userspace_cargo(&object).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    let ebpf_dir = root().join("netobs-ebpf");
    cmd::run(
        cmd::cargo(Some("nightly"))
            .current_dir(&ebpf_dir)
            .args(["fmt", "--all", "--", "--check"]),
    )?;
    cmd::run(
        cmd::cargo(Some("nightly"))
            .current_dir(&ebpf_dir)
            .args([
                "clippy",
                "-Z",
                "build-std=core",
                "--target",
                "bpfel-unknown-none",
                "--release",
            ])
            .arg("--target-dir")
            .arg(root().join("target/ebpf"))
            .args(["--", "-D", "warnings"]),
    )?;
    Ok(())
}

/// Checks the shipped Prometheus rules, once there are any.
fn run_promtool_checks() -> Result<()> {
    let dir = root().join("dashboards");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.to_string_lossy().ends_with(".rules.yml") {
            cmd::run(Command::new("promtool").arg("check").arg("rules").arg(&p))?;
        }
    }
    Ok(())
}

pub fn run(args: &TestArgs) -> Result<()> {
    netobs_tests::netns::cleanup_stale();
    let object = build::run(&build::BuildArgs::default())?;
    if !args.no_lint {
        lint()?;
    }
    run_promtool_checks()?;
    let result = cmd::run(
        build::userspace_cargo(&object)
            .args(["test", "--workspace"])
            .args(&args.cargo_args),
    );
    netobs_tests::netns::cleanup_stale();
    result
}
