//! Points the agent at the kernel object `cargo xtask build` produces. The
//! eBPF crate needs nightly and bpf-linker, so a plain `cargo build` does not
//! build it. Without the object an empty stub takes its place (as aya's own
//! integration tests do), so that `cargo check`, clippy and rust-analyzer
//! work on a fresh clone; such a binary refuses to load, saying what to run.
use std::{env, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=NETOBS_EBPF_OBJECT");
    let Some(manifest) = env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from) else {
        panic!("CARGO_MANIFEST_DIR is set by cargo");
    };
    let object = match env::var_os("NETOBS_EBPF_OBJECT") {
        Some(p) => PathBuf::from(p),
        None => manifest.join("../target/ebpf/netobs.bpf.o"),
    };
    // Watch the object even while it is missing: building it later must
    // replace the stub.
    println!("cargo:rerun-if-changed={}", object.display());
    if object.is_file() {
        println!("cargo:rustc-env=NETOBS_EBPF_OBJECT={}", object.display());
        return;
    }
    let Some(out) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        panic!("OUT_DIR is set by cargo");
    };
    let stub = out.join("netobs.bpf.o.stub");
    if let Err(e) = std::fs::write(&stub, b"") {
        panic!("writing {}: {e}", stub.display());
    }
    println!(
        "cargo:warning=the netobs eBPF object is missing ({}): building with an empty stub, \
         which cannot load; `cargo xtask build` builds the kernel programs first",
        object.display()
    );
    println!("cargo:rustc-env=NETOBS_EBPF_OBJECT={}", stub.display());
}
