//! Installs, only where missing, what building and testing netobs need:
//! Debian packages, the nightly toolchain with rust-src, the LLVM that
//! nightly uses and bpf-linker built against it.
use std::{
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicU8, Ordering},
};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::cmd;

/// Debian packages building needs (with the LLVM ones, by version).
const BUILD_PACKAGES: &[&str] = &["build-essential", "ca-certificates"];

/// Debian packages the tests, the demo and the benchmarks use: none of them
/// belongs on a production node (docker.io would fight a Docker CE
/// install), which is why building alone does not install them.
pub const PACKAGES: &[&str] = &[
    "iproute2",
    "ethtool",
    "tcpdump",
    "bpftool",
    "docker.io",
    "prometheus",
    "iperf3",
    "ngrep",
    "wrk",
    "tcpreplay",
    "tmux",
    "jq",
    "curl",
    "busybox-static",
    "libcap2-bin",
];

#[derive(Args, Default)]
pub struct SetupArgs {
    /// Only report what is missing; exit non-zero if anything is
    #[arg(long)]
    pub check: bool,
    /// Only what building needs (toolchain, LLVM, bpf-linker), not the
    /// test lab's packages: for a build machine or a node
    #[arg(long)]
    pub build_only: bool,
}

#[derive(Debug, PartialEq)]
enum Missing {
    Packages(Vec<String>),
    Nightly,
    RustSrc,
    BpfLinker,
    /// The dependency policy check of `cargo xtask test` (deny.toml).
    CargoDeny,
}

/// The LLVM major version nightly rustc uses ("LLVM version: 22.1.4").
pub fn llvm_major() -> Result<u32> {
    let v = cmd::stdout(Command::new("rustc").args(["+nightly", "-vV"]))
        .context("the nightly toolchain is needed: `rustup toolchain install nightly`")?;
    v.lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|s| s.split('.').next())
        .and_then(|s| s.trim().parse().ok())
        .context("`rustc +nightly -vV` printed no LLVM version")
}

fn installed(pkg: &str) -> bool {
    cmd::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn stamp() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    home.join("netobs-bpf-linker-llvm")
}

/// bpf-linker is usable if it runs and was built against LLVM `major`: our
/// stamp says so, or its dynamic LLVM library does.
fn bpf_linker_ok(major: u32) -> bool {
    let Ok(out) = cmd::output(Command::new("bpf-linker").arg("--version")) else {
        return false;
    };
    if !out.status.success() {
        return false;
    }
    if std::fs::read_to_string(stamp()).is_ok_and(|s| s.trim() == major.to_string()) {
        return true;
    }
    let Ok(path) = cmd::stdout(Command::new("sh").args(["-c", "command -v bpf-linker"])) else {
        return false;
    };
    let linked = cmd::stdout(Command::new("ldd").arg(path.trim())).unwrap_or_default();
    let ok = linked.contains(&format!("libLLVM.so.{major}"))
        || linked.contains(&format!("libLLVM-{major}"));
    if ok {
        let _ = std::fs::write(stamp(), major.to_string());
    }
    ok
}

fn missing(major: Option<u32>, build_only: bool) -> Vec<Missing> {
    let mut m = Vec::new();
    let mut pkgs: Vec<String> = BUILD_PACKAGES.iter().map(|s| s.to_string()).collect();
    if !build_only {
        pkgs.extend(PACKAGES.iter().map(|s| s.to_string()));
    }
    if let Some(n) = major {
        pkgs.extend([
            format!("llvm-{n}-dev"),
            format!("libpolly-{n}-dev"),
            "libzstd-dev".into(),
            "zlib1g-dev".into(),
        ]);
    }
    let absent: Vec<String> = pkgs.into_iter().filter(|p| !installed(p)).collect();
    if !absent.is_empty() {
        m.push(Missing::Packages(absent));
    }
    match major {
        None => m.push(Missing::Nightly),
        Some(n) => {
            let comps = cmd::stdout(Command::new("rustup").args([
                "component",
                "list",
                "--toolchain",
                "nightly",
                "--installed",
            ]))
            .unwrap_or_default();
            if !comps.lines().any(|l| l.starts_with("rust-src")) {
                m.push(Missing::RustSrc);
            }
            if !bpf_linker_ok(n) {
                m.push(Missing::BpfLinker);
            }
        }
    }
    // `cargo deny` without the plugin starts cargo fine and fails.
    if !build_only && cmd::stdout(Command::new("cargo").args(["deny", "--version"])).is_err() {
        m.push(Missing::CargoDeny);
    }
    m
}

/// The widest scope `ensure` has made complete in this process: 1 building,
/// 2 everything. A task builds several times (test: build, then lint);
/// the checks need not run again.
static ENSURED: AtomicU8 = AtomicU8::new(0);

/// Installs what is missing for building (`build_only`) or for everything
/// (tests, demo, benchmarks); cheap when nothing is.
pub fn ensure(build_only: bool) -> Result<()> {
    let scope = if build_only { 1 } else { 2 };
    if ENSURED.load(Ordering::Relaxed) >= scope {
        return Ok(());
    }
    if !llvm_major().is_ok_and(|n| missing(Some(n), build_only).is_empty()) {
        run(&SetupArgs {
            check: false,
            build_only,
        })?;
    }
    ENSURED.fetch_max(scope, Ordering::Relaxed);
    Ok(())
}

fn require_debian_root() -> Result<()> {
    if !PathBuf::from("/etc/debian_version").exists()
        || cmd::output(Command::new("apt-get").arg("--version")).is_err()
    {
        bail!(
            "setup installs with apt-get on Debian or Ubuntu; elsewhere install by hand: \
             nightly Rust with rust-src, LLVM dev packages matching `rustc +nightly -vV`, \
             bpf-linker, iproute2, tcpdump, bpftool, docker, prometheus"
        );
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("setup installs packages: run it as root (sudo -E cargo xtask setup)");
    }
    Ok(())
}

pub fn run(args: &SetupArgs) -> Result<()> {
    let major = llvm_major().ok();
    let todo = missing(major, args.build_only);
    if args.check {
        for m in &todo {
            eprintln!("missing: {m:?}");
        }
        if todo.is_empty() {
            eprintln!("setup: nothing missing");
            return Ok(());
        }
        bail!("{} things missing: run `cargo xtask setup`", todo.len());
    }
    if todo.is_empty() {
        eprintln!("setup: nothing missing");
        return Ok(());
    }
    require_debian_root()?;
    if todo.contains(&Missing::Nightly) {
        cmd::run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
        // The LLVM major is known only now: look again.
        return run(args);
    }
    for m in &todo {
        match m {
            Missing::Packages(pkgs) => {
                cmd::run(Command::new("apt-get").args(["update", "-q"]))?;
                cmd::run(
                    Command::new("apt-get")
                        .env("DEBIAN_FRONTEND", "noninteractive")
                        .args(["install", "-y", "-q", "--no-install-recommends"])
                        .args(pkgs),
                )?;
            }
            Missing::RustSrc => {
                cmd::run(Command::new("rustup").args([
                    "component",
                    "add",
                    "rust-src",
                    "--toolchain",
                    "nightly",
                ]))?;
            }
            Missing::CargoDeny => {
                cmd::run(cmd::cargo(None).args(["install", "--locked", "cargo-deny"]))?;
            }
            Missing::Nightly | Missing::BpfLinker => {}
        }
    }
    if todo.contains(&Missing::BpfLinker) {
        let n = major.context("no LLVM version")?;
        cmd::run(
            cmd::cargo(None)
                .env("LLVM_PREFIX", format!("/usr/lib/llvm-{n}"))
                .args([
                    "install",
                    "bpf-linker",
                    "--force",
                    "--no-default-features",
                    "--features",
                ])
                .arg(format!("llvm-{n}")),
        )?;
        std::fs::write(stamp(), n.to_string())
            .with_context(|| format!("writing {}", stamp().display()))?;
    }
    eprintln!("setup: done");
    Ok(())
}
