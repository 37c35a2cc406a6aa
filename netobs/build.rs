//! Points the agent at the kernel object `cargo xtask build` produces. The
//! eBPF crate needs nightly and bpf-linker, so a plain `cargo build` does not
//! build it: it stops here with what to run instead.
use std::{env, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=NETOBS_EBPF_OBJECT");
    let object = match env::var_os("NETOBS_EBPF_OBJECT") {
        Some(p) => PathBuf::from(p),
        None => {
            let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
            manifest.join("../target/ebpf/netobs.bpf.o")
        }
    };
    if !object.is_file() {
        eprintln!(
            "error: the netobs eBPF object is missing ({}).\n\
             Build with `cargo xtask build` (it builds the kernel programs first), \
             or set NETOBS_EBPF_OBJECT to a built object.",
            object.display()
        );
        std::process::exit(1);
    }
    println!("cargo:rerun-if-changed={}", object.display());
    println!("cargo:rustc-env=NETOBS_EBPF_OBJECT={}", object.display());
}
