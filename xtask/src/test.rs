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
    cmd::run(build::ebpf_cargo("clippy").args(["--", "-D", "warnings"]))?;
    Ok(())
}

/// Checks the shipped Prometheus rules and scrape configuration and runs
/// the rules' unit tests.
fn run_promtool_checks() -> Result<()> {
    let dir = root().join("dashboards");
    let files = |d: &std::path::Path, suffix: &str| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(suffix))
            .collect();
        v.sort();
        v
    };
    for rules in files(&dir, ".rules.yml") {
        cmd::run(
            Command::new("promtool")
                .args(["check", "rules"])
                .arg(&rules),
        )?;
    }
    // The example configurations (dockerswarm_sd; remote_write to a
    // long-term store): their syntax (the token file they name is a Docker
    // secret, there only in the stack; the rules are checked above).
    for config in files(&dir, ".yml").into_iter().filter(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("prometheus"))
    }) {
        cmd::run(
            Command::new("promtool")
                .args(["check", "config", "--syntax-only"])
                .arg(&config),
        )?;
    }
    for t in files(&dir.join("tests"), ".test.yml") {
        cmd::run(
            Command::new("promtool")
                .args(["test", "rules"])
                .arg(&t)
                .current_dir(dir.join("tests")),
        )?;
    }
    Ok(())
}

/// The dependency policy (deny.toml) on both workspaces: licenses, bans,
/// sources. Advisories need the RustSec database from GitHub, which these
/// machines cannot reach (see deny.toml).
pub fn deny() -> Result<()> {
    let root = root();
    for manifest in ["Cargo.toml", "netobs-ebpf/Cargo.toml"] {
        cmd::run(
            Command::new("cargo")
                .arg("deny")
                .arg("--manifest-path")
                .arg(root.join(manifest))
                .arg("--config")
                .arg(root.join("deny.toml"))
                .args(["check", "bans", "licenses", "sources"]),
        )?;
    }
    Ok(())
}

pub fn run(args: &TestArgs) -> Result<()> {
    netobs_tests::netns::cleanup_stale();
    netobs_tests::swarm::cleanup_stale();
    let object = build::run(&build::BuildArgs::default())?;
    if !args.no_lint {
        lint()?;
        deny()?;
    }
    run_promtool_checks()?;
    let result = cargo_test(
        build::userspace_cargo(&object)
            .args(["test", "--workspace"])
            .args(&args.cargo_args),
    );
    netobs_tests::netns::cleanup_stale();
    netobs_tests::swarm::cleanup_stale();
    result
}

/// Runs `cargo test`, echoing its output, and ends with one total line over
/// every test binary (cargo prints a line per binary, doc tests last).
fn cargo_test(cmd: &mut Command) -> Result<()> {
    use std::io::{BufRead, BufReader};
    eprintln!("+ cargo test");
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn()?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                let num = |what: &str| {
                    rest.split(';')
                        .find_map(|part| part.trim().strip_suffix(what))
                        .and_then(|n| {
                            n.trim()
                                .rsplit(' ')
                                .next()
                                .and_then(|v| v.parse::<u64>().ok())
                        })
                        .unwrap_or(0)
                };
                passed += num(" passed");
                failed += num(" failed");
                ignored += num(" ignored");
            }
        }
    }
    let status = child.wait()?;
    println!("{passed} passed, {failed} failed, {ignored} skipped");
    if !status.success() {
        anyhow::bail!("cargo test failed ({status})");
    }
    Ok(())
}
