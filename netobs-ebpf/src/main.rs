//! netobs kernel programs: classify overlay traffic (VXLAN, ESP) at TC and
//! XDP, count it, and track plaintext overlay flows. They only observe: every
//! program returns "pass" and never writes to the packet.
#![no_std]
#![no_main]
// BPF has no core::sync::atomic; flow counters use the raw intrinsic.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod bench;
mod checksum;
mod drops;
mod fast_parse;
mod gossip;
mod http;
mod maps;
mod matcher;
mod mem;
mod packet;
mod parse;
mod record;
mod tally;
mod verifier;

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_UNSPEC},
    macros::{classifier, raw_tracepoint, xdp},
    programs::{RawTracePointContext, TcContext, XdpContext},
};
use netobs_common::Direction;

use crate::packet::{Tc, Xdp};

// Each program's body is `inline(always)`: the attribute macros wrap it in
// an entry function, and once the body grew past LLVM's inlining threshold
// it became a BPF-to-BPF call, which cost every packet 8-25 ns (and forbids
// tail calls without BTF function info).
//
// TC_ACT_UNSPEC is "no verdict": the next filter (or TCX program) still runs
// and the packet goes on as if netobs were not there.
#[classifier]
#[inline(always)]
pub fn netobs_tc_ingress(ctx: TcContext) -> i32 {
    let _class = record::observe(&Tc::new(&ctx), Direction::Ingress);
    #[cfg(feature = "debug-log")]
    aya_log_ebpf::debug!(&ctx, "tc ingress: class {}", _class as u8);
    TC_ACT_UNSPEC
}

#[classifier]
#[inline(always)]
pub fn netobs_tc_egress(ctx: TcContext) -> i32 {
    let _class = record::observe(&Tc::new(&ctx), Direction::Egress);
    #[cfg(feature = "debug-log")]
    aya_log_ebpf::debug!(&ctx, "tc egress: class {}", _class as u8);
    TC_ACT_UNSPEC
}

#[xdp]
#[inline(always)]
pub fn netobs_xdp(ctx: XdpContext) -> u32 {
    let _class = record::observe(&Xdp::new(&ctx), Direction::Ingress);
    #[cfg(feature = "debug-log")]
    aya_log_ebpf::debug!(&ctx, "xdp: class {}", _class as u8);
    xdp_action::XDP_PASS
}

/// Tail-called by `netobs_tc_ingress` for an inner SYN (see `maps::RARE`).
#[classifier]
#[inline(always)]
pub fn netobs_tc_checksum(ctx: TcContext) -> i32 {
    record::checksum(&Tc::new(&ctx));
    TC_ACT_UNSPEC
}

/// Tail-called by `netobs_xdp` for an inner SYN.
#[xdp]
#[inline(always)]
pub fn netobs_xdp_checksum(ctx: XdpContext) -> u32 {
    record::checksum(&Xdp::new(&ctx));
    xdp_action::XDP_PASS
}

/// On `skb:kfree_skb`: overlay-path packets the kernel dropped, by reason.
#[raw_tracepoint(tracepoint = "kfree_skb")]
pub fn netobs_kfree_skb(ctx: RawTracePointContext) -> i32 {
    let _ = drops::observe(&ctx);
    0
}

/// Never attached: the agent runs it (BPF_PROG_TEST_RUN) to pair the
/// kernel's tick count with `CLOCK_MONOTONIC`, and so turn the ticks flows
/// are stamped with into time.
#[classifier]
pub fn clock_probe(_ctx: TcContext) -> i32 {
    maps::probe_clock();
    TC_ACT_UNSPEC
}

// The benchmarks' baselines (`bench`): never attached by the agent; the
// benchmarks run them through BPF_PROG_TEST_RUN or attach them beside
// netobs's programs.
#[classifier]
pub fn bench_tc_empty(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

#[xdp]
pub fn bench_xdp_empty(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[xdp]
pub fn bench_xdp_touch(ctx: XdpContext) -> u32 {
    bench::touch(&Xdp::new(&ctx));
    xdp_action::XDP_PASS
}

#[classifier]
pub fn bench_tc_counter(ctx: TcContext) -> i32 {
    bench::counter(ctx.len() as u64);
    TC_ACT_UNSPEC
}

#[xdp]
pub fn bench_xdp_counter(ctx: XdpContext) -> u32 {
    bench::counter((ctx.data_end() - ctx.data()) as u64);
    xdp_action::XDP_PASS
}

#[classifier]
pub fn bench_tc_naive(ctx: TcContext) -> i32 {
    bench::naive(&Tc::new(&ctx), ctx.len() as u64);
    TC_ACT_UNSPEC
}

#[xdp]
pub fn bench_xdp_naive(ctx: XdpContext) -> u32 {
    bench::naive(&Xdp::new(&ctx), (ctx.data_end() - ctx.data()) as u64);
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here; no code is emitted.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
