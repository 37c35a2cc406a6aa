//! The kernel's drops of overlay-path packets, with its reason
//! (`skb:kfree_skb`, 5.17+): VXLAN, ESP and gossip dropped by a firewall
//! rule, an XFRM policy, a full queue, a VXLAN device that lost its VNI.
//! Runs only when the kernel frees a packet as dropped, never per packet
//! forwarded. Kernel memory is read through offsets the agent resolved from
//! the running kernel's BTF (`DropConfig`).
use aya_ebpf::{
    helpers::{bpf_probe_read_kernel, bpf_probe_read_kernel_buf},
    programs::RawTracePointContext,
    Global,
};
use netobs_common::{
    DropConfig, DropKey, DROP_ESP, DROP_GOSSIP, DROP_VXLAN, ESP_IN_UDP_PORT, FAMILY_IPV4,
    FAMILY_IPV6, GOSSIP_PORT,
};

use crate::{
    maps::{Cfg, DROPS},
    mem, tally,
};

#[unsafe(no_mangle)]
pub static DROP_CONFIG: Global<DropConfig> = Global::new(DropConfig::new());

const IPPROTO_UDP: u8 = 17;
const IPPROTO_ESP: u8 = 50;
/// `skb->network_header` when no header was set.
const UNSET_HEADER: u16 = 0xffff;

#[inline(always)]
fn drop_cfg() -> DropConfig {
    // SAFETY: Global<T> is a transparent MaybeUninit<T> the loader
    // initialises; volatile so the loaded value is read, not the default.
    unsafe {
        core::ptr::read_volatile(&DROP_CONFIG as *const Global<DropConfig> as *const DropConfig)
    }
}

/// `T` at `base + off` in kernel memory.
#[inline(always)]
fn read<T>(base: u64, off: u16) -> Option<T> {
    // SAFETY: the helper checks the address; a bad one is an error, not a
    // fault.
    unsafe { bpf_probe_read_kernel((base + u64::from(off)) as *const T).ok() }
}

/// `kfree_skb(skb, location, reason, rx_sk)`.
#[inline(always)]
pub fn observe(ctx: &RawTracePointContext) -> Option<()> {
    let cfg = drop_cfg();
    if cfg.enabled == 0 {
        return None;
    }
    let skb: u64 = ctx.arg(0);
    let reason: u64 = ctx.arg(2);
    let reason = reason as u32;
    if reason < cfg.first_reason {
        return None;
    }
    // Whose drop: the socket's namespace when there is one (a tunnel's
    // transmit), else the device's (a receive).
    let sk: u64 = read(skb, cfg.skb_sk)?;
    let net: u64 = if sk != 0 {
        read(sk, cfg.sk_net)?
    } else {
        let dev: u64 = read(skb, cfg.skb_dev)?;
        if dev == 0 {
            return None;
        }
        read(dev, cfg.dev_net)?
    };
    if net == 0 {
        return None;
    }
    let inum: u32 = read(net, cfg.net_inum)?;
    if inum != cfg.netns_inum {
        return None;
    }
    let head: u64 = read(skb, cfg.skb_head)?;
    let nh: u16 = read(skb, cfg.skb_network_header)?;
    if head == 0 || nh == UNSET_HEADER {
        return None;
    }
    let ip = head + u64::from(nh);
    // Zeroed a word at a time: a plain zero-init became a call to a
    // byte-loop memset (as `mem` explains); so did the key's below.
    let mut h = [0u32; 10];
    // SAFETY: `h` is 40 bytes, 4-aligned; then as in `read`.
    unsafe {
        mem::zero(&raw mut h);
        bpf_probe_read_kernel_buf(
            ip as *const u8,
            core::slice::from_raw_parts_mut(h.as_mut_ptr() as *mut u8, 40),
        )
        .ok()?
    };
    let b0 = h[0] as u8;
    let mut key = core::mem::MaybeUninit::<DropKey>::uninit();
    // SAFETY: zeroed, a DropKey is valid (plain integers; 4-aligned, 40
    // bytes).
    let key = unsafe {
        mem::zero(key.as_mut_ptr());
        key.assume_init_mut()
    };
    let (proto, l4, whole) = match b0 >> 4 {
        4 => {
            let ihl = u64::from(b0 & 0x0f) * 4;
            if ihl < 20 {
                return None;
            }
            // Fragment offset: a later fragment has no transport header.
            let frag = u16::from_be(((h[1] >> 16) & 0xffff) as u16);
            words(&mut key.src, &h[3..4]);
            words(&mut key.dst, &h[4..5]);
            key.family = FAMILY_IPV4;
            ((h[2] >> 8) as u8, ip + ihl, frag & 0x1fff == 0)
        }
        6 => {
            words(&mut key.src, &h[2..6]);
            words(&mut key.dst, &h[6..10]);
            key.family = FAMILY_IPV6;
            // Next header; extension headers are not followed.
            ((h[1] >> 16) as u8, ip + 40, true)
        }
        _ => return None,
    };
    key.traffic = match proto {
        IPPROTO_ESP => DROP_ESP,
        IPPROTO_UDP if whole => {
            let ports: u32 = read(l4, 0)?;
            let sport = u16::from_be(ports as u16);
            let dport = u16::from_be((ports >> 16) as u16);
            if crate::parse::is_data_path_port(&Cfg, dport) {
                DROP_VXLAN
            } else if sport == ESP_IN_UDP_PORT || dport == ESP_IN_UDP_PORT {
                DROP_ESP
            } else if sport == GOSSIP_PORT || dport == GOSSIP_PORT {
                DROP_GOSSIP
            } else {
                return None;
            }
        }
        _ => return None,
    };
    key.reason = reason;
    tally::add(&DROPS, key, 1u64);
    Some(())
}

#[inline(always)]
fn words(dst: &mut [u8; 16], src: &[u32]) {
    let d = dst.as_mut_ptr() as *mut u32;
    for (i, w) in src.iter().enumerate() {
        // SAFETY: at most four words into 16 bytes; DropKey is 4-aligned.
        unsafe { d.add(i).write_unaligned(*w) };
    }
}
