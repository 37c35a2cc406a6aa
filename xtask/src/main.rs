//! `cargo xtask`: everything that is more than one cargo command.
mod bench;
mod build;
mod cmd;
mod demo;
mod fixtures;
mod fuzz;
mod setup;
mod targets;
mod test;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, set up, test and demo netobs")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (Debian; idempotent)
    Setup(setup::SetupArgs),
    /// Build the kernel programs, then the agent that embeds them
    Build(build::BuildArgs),
    /// rustfmt and clippy on both workspaces
    Lint,
    /// Everything CI runs: setup, build, lint, every test
    Test(test::TestArgs),
    /// A self-contained lab with overlay traffic, watched live by netobs
    Demo(demo::DemoArgs),
    /// Per-packet cost, live cost next to tcpdump and ngrep, flow-table scale
    Bench,
    /// Millions of mutated packets through the kernel programs
    Fuzz(fuzz::FuzzArgs),
    /// Re-capture the Docker API fixtures of the inventory tests from a real swarm
    Fixtures,
}

/// The repository root (xtask lives one level below it).
pub fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Building installs only what building needs; the lab's tools (docker,
    // prometheus, tcpdump...) come with the tasks that use them.
    let lab = |f: &dyn Fn() -> Result<()>| setup::ensure(false).and_then(|()| f());
    let result: Result<()> = match cli.task {
        Task::Setup(a) => setup::run(&a),
        Task::Build(a) => build::run(&a).map(drop),
        Task::Lint => test::lint(),
        Task::Test(a) => lab(&|| test::run(&a)),
        Task::Demo(a) => lab(&|| demo::run(&a)),
        Task::Fixtures => lab(&fixtures::run),
        Task::Bench => lab(&bench::run),
        Task::Fuzz(a) => lab(&|| fuzz::run(&a)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
