//! The drop tracer's view of this kernel: where `struct sk_buff` and the
//! structures behind it keep what the tracer reads, and the names of the
//! drop reasons, both from the running kernel's BTF (`btf.rs`). Rust eBPF has no CO-RE
//! relocations, so the offsets are resolved here and handed to the program
//! in its read-only `DROP_CONFIG`. Without BTF or without drop reasons
//! (before 5.17) the view is unavailable, and says why.
use std::{collections::BTreeMap, os::unix::fs::MetadataExt};

use netobs_common::DropConfig;

use super::btf::Btf;

const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
const REASON_ENUM: &str = "skb_drop_reason";
const REASON_PREFIX: &str = "SKB_DROP_REASON_";
/// The first reason that is a drop; the ones below it are "not dropped
/// yet" and "consumed".
const FIRST_REASON: &str = "SKB_DROP_REASON_NOT_SPECIFIED";

/// The kernel's drop reasons by value, without their common prefix.
#[derive(Debug, Clone, Default)]
pub struct Reasons(BTreeMap<u32, String>);

impl Reasons {
    /// The reason's name (`NETFILTER_DROP`), or its number on a kernel
    /// newer than its BTF.
    pub fn name(&self, reason: u32) -> String {
        self.0
            .get(&reason)
            .cloned()
            .unwrap_or_else(|| reason.to_string())
    }
}

/// The tracer's configuration and the reasons' names, or why this kernel
/// cannot give them.
pub fn resolve() -> Result<(DropConfig, Reasons), String> {
    let data = std::fs::read(VMLINUX_BTF)
        .map_err(|e| format!("this kernel has no readable BTF ({VMLINUX_BTF}: {e})"))?;
    let btf = Btf::parse(data).map_err(|e| format!("{VMLINUX_BTF}: {e}"))?;
    let reasons = btf.enum_values(REASON_ENUM).ok_or_else(|| {
        format!(
            "this kernel has no drop reasons (enum {REASON_ENUM}: Linux 5.17 or later gives \
             them)"
        )
    })?;
    let first_reason = reasons
        .iter()
        .find(|(_, n)| n.as_str() == FIRST_REASON)
        .map(|(v, _)| *v)
        .ok_or_else(|| format!("enum {REASON_ENUM} has no {FIRST_REASON}"))?;
    let off = |ty: &str, path: &[&str]| offset(&btf, ty, path);
    let netns_inum = std::fs::metadata("/proc/self/ns/net")
        .map_err(|e| format!("cannot read this process's network namespace: {e}"))?
        .ino() as u32;
    let cfg = DropConfig {
        netns_inum,
        first_reason,
        skb_head: off("sk_buff", &["head"])?,
        skb_network_header: off("sk_buff", &["network_header"])?,
        skb_dev: off("sk_buff", &["dev"])?,
        skb_sk: off("sk_buff", &["sk"])?,
        dev_net: off("net_device", &["nd_net", "net"])?,
        sk_net: off("sock", &["__sk_common", "skc_net", "net"])?,
        net_inum: off("net", &["ns", "inum"])?,
        enabled: 1,
    };
    let names = reasons
        .into_iter()
        .map(|(v, n)| (v, n.strip_prefix(REASON_PREFIX).unwrap_or(&n).to_owned()))
        .collect();
    Ok((cfg, Reasons(names)))
}

/// Byte offset of `path` (members, each inside the previous one's type)
/// in `struct ty`.
fn offset(btf: &Btf, ty: &str, path: &[&str]) -> Result<u16, String> {
    let missing = || format!("struct {ty} has no {} in this kernel's BTF", path.join("."));
    let mut id = btf.struct_id(ty).ok_or_else(missing)?;
    let mut bits = 0u32;
    for (i, name) in path.iter().enumerate() {
        let m = btf.member(id, name).ok_or_else(missing)?;
        bits += m.bits;
        if i + 1 < path.len() {
            id = btf.strip(m.type_id).ok_or_else(missing)?;
        }
    }
    if !bits.is_multiple_of(8) {
        return Err(missing());
    }
    u16::try_from(bits / 8).map_err(|_| missing())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This kernel (6.18, BTF) resolves; the offsets themselves are proved
    /// by the swarm test, whose drops are only counted if every one is
    /// right.
    #[test]
    fn this_kernel_resolves() {
        let Ok((cfg, reasons)) = resolve() else {
            panic!("this kernel has BTF and drop reasons; resolve() failed");
        };
        assert_eq!(reasons.name(cfg.first_reason), "NOT_SPECIFIED");
        assert_ne!(cfg.skb_head, cfg.skb_network_header);
        assert!(reasons.0.values().any(|n| n == "NETFILTER_DROP"));
    }
}
