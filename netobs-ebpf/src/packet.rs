//! One view of a packet for the parser, whichever hook it came from.
//!
//! Headers are read in place, field by field, after one bounds check per
//! header: copying a header out would make LLVM emit a byte-loop `memcpy`
//! that the verifier walks one byte at a time on every path.
use core::ptr::{read_unaligned, read_volatile};

use aya_ebpf::{
    bindings::{__sk_buff, xdp_md},
    helpers::{
        bpf_jiffies64, bpf_ktime_get_coarse_ns, bpf_skb_load_bytes, bpf_skb_pull_data,
        bpf_tail_call, bpf_xdp_load_bytes,
    },
    programs::{TcContext, XdpContext},
};
use netobs_common::{CONFIG_FLAG_REPLAY, REPLAY_CB_LEN, REPLAY_CB_TS_HI, REPLAY_CB_TS_LO};

use crate::maps::Cfg;

/// Below this many linear bytes even the outer headers are paged, and the
/// skb is pulled. Above it nothing is pulled: the stack and GRO keep headers
/// linear, and pulling every packet whose payload sits in page fragments
/// would copy payload on every packet (measured: 425 instead of ~110 ns per
/// packet on iperf3 traffic).
const LINEAR_WANTED: u32 = 64;

pub trait Packet {
    /// Length the headers may claim: the packet's length on the wire.
    fn len(&self) -> usize;
    /// Wire packets this buffer stands for (a GSO super-packet is several).
    fn segments(&self) -> u64;
    fn ifindex(&self) -> u32;
    /// Flow time: kernel ticks (jiffies) live, the capture's nanoseconds in
    /// replay.
    fn now(&self) -> u64;
    /// The `N` bytes at `off`, if the packet has them.
    fn at<const N: usize>(&self, off: usize) -> Option<Hdr>;
    /// Copies `n` (1..=`N`) bytes at `off` into `dst`.
    fn copy_into<const N: usize>(&self, off: usize, dst: &mut [u8; N], n: usize) -> bool;
    /// Jumps to this hook's rare-check program (`maps::RARE_TC`,
    /// `maps::RARE_XDP`); returns only if there is none.
    fn tail_call_rare(&self);
}

/// A header in the packet whose length has been checked; field reads are
/// single loads.
#[derive(Clone, Copy)]
pub struct Hdr(usize);

impl Hdr {
    #[inline(always)]
    pub fn u8(self, i: usize) -> u8 {
        // SAFETY: callers read within the checked length.
        unsafe { *((self.0 + i) as *const u8) }
    }

    #[inline(always)]
    pub fn be16(self, i: usize) -> u16 {
        // SAFETY: as above.
        u16::from_be(unsafe { read_unaligned((self.0 + i) as *const u16) })
    }

    #[inline(always)]
    pub fn be32(self, i: usize) -> u32 {
        // SAFETY: as above.
        u32::from_be(unsafe { read_unaligned((self.0 + i) as *const u32) })
    }

    /// The bytes at `i..i+4` as they are (wire order), in one `u32`.
    #[inline(always)]
    pub fn raw32(self, i: usize) -> u32 {
        // SAFETY: as above.
        unsafe { read_unaligned((self.0 + i) as *const u32) }
    }

    /// The bytes at `i..i+8` as they are (wire order), in one `u64`.
    #[inline(always)]
    pub fn raw64(self, i: usize) -> u64 {
        // SAFETY: as above.
        unsafe { read_unaligned((self.0 + i) as *const u64) }
    }

    /// Copies `W` 32-bit words at `i` into the start of `dst`, in wire order.
    #[inline(always)]
    pub fn copy_words<const W: usize>(self, i: usize, dst: &mut [u8; 16]) {
        let d = dst.as_mut_ptr() as *mut u32;
        for w in 0..W {
            // SAFETY: W <= 4 words fit dst; the source is within the header.
            unsafe {
                let v = read_unaligned((self.0 + i + 4 * w) as *const u32);
                core::ptr::write_unaligned(d.add(w), v);
            }
        }
    }
}

/// Nanoseconds, `CLOCK_MONOTONIC` at tick resolution: for events, which
/// are rare. (A fraction of the precise clock's cost under a hypervisor,
/// still about 10 ns a call here.)
#[inline(always)]
pub fn coarse_now() -> u64 {
    // SAFETY: helper without preconditions (5.11+).
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// Flow time: the kernel's tick count. It reads one variable where the
/// coarse clock walks the timekeeper (measured: about 10 ns a packet
/// less); the agent turns ticks into nanoseconds when it reads
/// (`datapath/clock.rs`).
#[inline(always)]
fn ticks() -> u64 {
    // SAFETY: helper without preconditions (5.5+).
    unsafe { bpf_jiffies64() }
}

#[inline(always)]
fn replay() -> bool {
    Cfg.flags() & CONFIG_FLAG_REPLAY != 0
}

/// `ptr + n > data_end`, kept in that shape: for n = 1 LLVM would rewrite it
/// as `ptr >= data_end`, from which the verifier derives no readable range;
/// and in XDP, where the packet's length is `data_end - data`, LLVM would
/// drop it as implied by the parser's own length check, leaving the
/// verifier no pointer compare to learn the range from (tried: rejected).
#[inline(always)]
fn beyond<const N: usize>(ptr: usize, data_end: usize) -> bool {
    ptr + core::hint::black_box(N) > data_end
}

#[inline(always)]
fn direct<const N: usize>(data: usize, data_end: usize, off: usize) -> Option<Hdr> {
    let start = data + off;
    if beyond::<N>(start, data_end) {
        return None;
    }
    Some(Hdr(start))
}

pub struct Tc {
    skb: *mut __sk_buff,
    data: usize,
    data_end: usize,
    /// Read once: `ifindex` in the context is two loads (the device, its
    /// index), and the counter slot, the key and the checksum tally each
    /// want it.
    ifindex: u32,
}

impl Tc {
    #[inline(always)]
    pub fn new(ctx: &TcContext) -> Tc {
        let skb = ctx.skb.skb;
        let mut data = ctx.data();
        let mut data_end = ctx.data_end();
        // SAFETY: the context pointer is valid for the whole program run.
        let len = unsafe { (*skb).len };
        let want = if len < LINEAR_WANTED {
            len
        } else {
            LINEAR_WANTED
        };
        if ((data_end - data) as u32) < want {
            // Headers in a paged fragment (rare: most drivers and GRO put
            // them in the head): make them linear, content unchanged.
            // SAFETY: helper on our own skb; packet pointers are re-read.
            unsafe { bpf_skb_pull_data(skb as *mut _, want) };
            data = ctx.data();
            data_end = ctx.data_end();
        }
        Tc {
            skb,
            data,
            data_end,
            // SAFETY: as above.
            ifindex: unsafe { (*skb).ifindex },
        }
    }
}

impl Packet for Tc {
    #[inline(always)]
    fn len(&self) -> usize {
        // Both fields are loaded, then one is picked: loading "one of two
        // fields" becomes context-pointer arithmetic, which the verifier
        // rejects. Replay feeds a capture's first bytes (BPF_PROG_TEST_RUN
        // takes a page at most); cb carries the original length.
        let skb = self.skb;
        // SAFETY: as above.
        let (len, original) = unsafe {
            (
                read_volatile(&raw const (*skb).len),
                read_volatile(&raw const (*skb).cb[REPLAY_CB_LEN]),
            )
        };
        if replay() {
            original as usize
        } else {
            len as usize
        }
    }

    #[inline(always)]
    fn segments(&self) -> u64 {
        // SAFETY: as above.
        let segs = unsafe { (*self.skb).gso_segs };
        if segs > 1 {
            segs as u64
        } else {
            1
        }
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        self.ifindex
    }

    #[inline(always)]
    fn now(&self) -> u64 {
        if replay() {
            // SAFETY: as above.
            let skb = self.skb;
            let (hi, lo) = unsafe {
                (
                    read_volatile(&raw const (*skb).cb[REPLAY_CB_TS_HI]),
                    read_volatile(&raw const (*skb).cb[REPLAY_CB_TS_LO]),
                )
            };
            return (hi as u64) << 32 | lo as u64;
        }
        ticks()
    }

    #[inline(always)]
    fn at<const N: usize>(&self, off: usize) -> Option<Hdr> {
        direct::<N>(self.data, self.data_end, off)
    }

    #[inline(always)]
    fn copy_into<const N: usize>(&self, off: usize, dst: &mut [u8; N], n: usize) -> bool {
        if n == 0 || n > N {
            return false;
        }
        // SAFETY: dst holds N >= n bytes; the helper checks the skb bounds
        // and reads paged data too.
        let ret = unsafe {
            bpf_skb_load_bytes(
                self.skb as *const _,
                off as u32,
                dst.as_mut_ptr() as *mut _,
                n as u32,
            )
        };
        ret == 0
    }

    #[inline(always)]
    fn tail_call_rare(&self) {
        // SAFETY: the program's own context and a program array.
        unsafe {
            bpf_tail_call(
                self.skb as *mut _,
                &raw const crate::maps::RARE_TC as *mut _,
                0,
            )
        };
    }
}

pub struct Xdp {
    ctx: *mut xdp_md,
    data: usize,
    data_end: usize,
    ifindex: u32,
}

impl Xdp {
    #[inline(always)]
    pub fn new(ctx: &XdpContext) -> Xdp {
        Xdp {
            ctx: ctx.ctx,
            data: ctx.data(),
            data_end: ctx.data_end(),
            ifindex: ctx.ingress_ifindex() as u32,
        }
    }
}

impl Packet for Xdp {
    #[inline(always)]
    fn len(&self) -> usize {
        self.data_end - self.data
    }

    #[inline(always)]
    fn segments(&self) -> u64 {
        1
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        self.ifindex
    }

    #[inline(always)]
    fn now(&self) -> u64 {
        ticks()
    }

    #[inline(always)]
    fn at<const N: usize>(&self, off: usize) -> Option<Hdr> {
        direct::<N>(self.data, self.data_end, off)
    }

    #[inline(always)]
    fn copy_into<const N: usize>(&self, off: usize, dst: &mut [u8; N], n: usize) -> bool {
        if n == 0 || n > N {
            return false;
        }
        // SAFETY: dst holds N >= n bytes; the helper checks the packet bounds.
        let ret = unsafe {
            bpf_xdp_load_bytes(self.ctx, off as u32, dst.as_mut_ptr() as *mut _, n as u32)
        };
        ret == 0
    }

    #[inline(always)]
    fn tail_call_rare(&self) {
        // SAFETY: the program's own context and a program array.
        unsafe {
            bpf_tail_call(
                self.ctx as *mut _,
                &raw const crate::maps::RARE_XDP as *mut _,
                0,
            )
        };
    }
}
