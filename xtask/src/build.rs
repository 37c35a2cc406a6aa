//! The kernel programs build with nightly, `-Z build-std=core` and
//! bpf-linker into `target/ebpf`; the agent embeds that object.
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use crate::{cmd, root, setup};

#[derive(Args, Default)]
pub struct BuildArgs {
    /// Build the agent in release mode too
    #[arg(long)]
    pub release: bool,
    /// Compile kernel-side aya-log calls in (they cost on the hot path)
    #[arg(long)]
    pub debug_log: bool,
}

/// Where the agent's build embeds the object from.
pub fn ebpf_object_path(root: &Path) -> PathBuf {
    root.join("target/ebpf/netobs.bpf.o")
}

/// Copies what cargo produced to `ebpf_object_path` when its content
/// changed. Cargo re-links its output to an older artifact when features
/// flip back (say after `--debug-log`), keeping the old mtime, and the
/// agent's build would then not notice: a fresh copy has a fresh mtime.
fn publish(root: &Path) -> Result<PathBuf> {
    let built = root.join("target/ebpf/bpfel-unknown-none/release/netobs");
    let published = ebpf_object_path(root);
    let new = std::fs::read(&built)?;
    if std::fs::read(&published).ok().as_deref() != Some(new.as_slice()) {
        std::fs::write(&published, &new)?;
    }
    Ok(published)
}

/// `cargo +nightly SUBCOMMAND` on the kernel programs, for the BPF target,
/// into `target/ebpf`.
pub fn ebpf_cargo(subcommand: &str) -> std::process::Command {
    let root = root();
    let mut c = cmd::cargo(Some("nightly"));
    c.current_dir(root.join("netobs-ebpf"))
        .args([
            subcommand,
            "-Z",
            "build-std=core",
            "--target",
            "bpfel-unknown-none",
            "--release",
        ])
        .arg("--target-dir")
        .arg(root.join("target/ebpf"));
    c
}

/// Builds the eBPF object; returns its path.
pub fn ebpf(debug_log: bool) -> Result<PathBuf> {
    let root = root();
    setup::ensure(true)?;
    let mut c = ebpf_cargo("build");
    if debug_log {
        c.args(["--features", "debug-log"]);
    }
    cmd::run(&mut c)?;
    let object = publish(&root)?;
    if !debug_log {
        no_byte_loops(&object)?;
    }
    Ok(object)
}

/// The copies bpf-linker brings along: byte loops, called where LLVM does
/// not zero or copy a record in registers or words (see
/// `netobs-ebpf/src/mem.rs`). One such call cost the pattern row 10-15 ns.
const BYTE_LOOPS: [&str; 3] = ["memset", "memcpy", "memmove"];

/// Fails the build when a kernel program calls one of `BYTE_LOOPS`, naming
/// the caller. (aya-log's calls, in `--debug-log` builds only, may.)
fn no_byte_loops(path: &Path) -> Result<()> {
    use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget, SectionKind};
    let data = std::fs::read(path)?;
    let file = object::File::parse(&*data)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let mut calls = Vec::new();
    for section in file.sections().filter(|s| s.kind() == SectionKind::Text) {
        for (offset, reloc) in section.relocations() {
            let RelocationTarget::Symbol(i) = reloc.target() else {
                continue;
            };
            let callee = file.symbol_by_index(i).and_then(|s| s.name()).unwrap_or("");
            if !BYTE_LOOPS.contains(&callee) {
                continue;
            }
            let caller = file
                .symbols()
                .find(|s| {
                    s.section_index() == Some(section.index())
                        && s.kind() == object::SymbolKind::Text
                        && (s.address()..s.address() + s.size()).contains(&offset)
                })
                .and_then(|s| s.name().ok())
                .unwrap_or("?");
            if !BYTE_LOOPS.contains(&caller) {
                calls.push(format!("{caller} calls {callee}"));
            }
        }
    }
    calls.sort();
    calls.dedup();
    if !calls.is_empty() {
        anyhow::bail!(
            "the kernel programs call byte-loop copies ({}): zero or copy a word at a time instead (netobs-ebpf/src/mem.rs)",
            calls.join(", ")
        );
    }
    Ok(())
}

/// A cargo command for the userspace workspace, pointed at the object.
pub fn userspace_cargo(object: &Path) -> std::process::Command {
    let mut c = cmd::cargo(None);
    c.current_dir(root()).env("NETOBS_EBPF_OBJECT", object);
    c
}

pub fn run(args: &BuildArgs) -> Result<PathBuf> {
    let object = ebpf(args.debug_log)?;
    cmd::run(userspace_cargo(&object).args(["build", "--workspace", "--all-targets"]))?;
    if args.release {
        cmd::run(userspace_cargo(&object).args(["build", "--release", "-p", "netobs"]))?;
    }
    Ok(object)
}
