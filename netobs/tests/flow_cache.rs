//! The per-CPU flow cache in front of the shared flow table: counts stay
//! exact when flows take each other's slots, when one flow runs on two
//! CPUs, and when slots are flushed while the agent reads. Real programs,
//! run by BPF_PROG_TEST_RUN on CPUs the test picks (the kernel runs a test
//! on the calling thread's CPU).
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
};

use netobs::datapath::{read::FlowRead, testrun::RunPacket, Datapath, Options};
use netobs_common::{Direction, FlowStats, HttpMethod, Stat};
use netobs_tests::{
    bpffs::BpfFs,
    packets::{self, Net},
    require_root,
};

/// BPF_PROG_TEST_RUN runs on the loopback device.
const LO: u32 = 1;

/// An HTTP request in VXLAN from inner source port `sport`: one flow per
/// port.
fn request(sport: u16) -> Vec<u8> {
    let inner = packets::tcp(&Net::containers(), sport, 80, b"GET /x HTTP/1.1\r\n\r\n");
    packets::vxlan(&Net::nodes(), 4789, 4097, &inner)
}

fn load(opts: Options) -> Datapath {
    let mut dp = Datapath::load(&Options {
        new_flow_events: false,
        http_events: false,
        ..opts
    })
    .expect("loading the datapath");
    dp.register_interface(LO).expect("registering lo");
    dp
}

/// Flows by inner source port, with how the read went.
fn read(dp: &Datapath) -> (BTreeMap<u16, FlowStats>, FlowRead) {
    let mut flows = BTreeMap::new();
    let r = dp
        .for_each_flow(|k, v| {
            assert!(
                flows.insert(k.inner_sport, *v).is_none(),
                "a flow is visited once per read"
            );
        })
        .expect("reading flows");
    (flows, r)
}

fn gets(v: &FlowStats) -> u32 {
    v.http_requests[HttpMethod::Get as usize]
}

/// Moves this thread to `cpu`, where its test runs then execute.
fn run_on_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET stays within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(
            rc,
            0,
            "moving the test to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn cpus() -> usize {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(n >= 2, "this test needs two CPUs, the machine has {n}");
    n
}

#[test]
fn flows_that_share_a_slot_are_counted_exactly_after_every_read() {
    require_root!();
    cpus();
    run_on_cpu(0);
    // One slot: every change of flow flushes the slot into the table.
    let mut dp = load(Options {
        flow_cache_slots: 1,
        ..Options::default()
    });
    let pkts: Vec<Vec<u8>> = (0..3).map(|i| request(40000 + i)).collect();
    // (flow, repeat, through XDP rather than TC)
    let steps = [
        (0, 3, false),
        (1, 5, false),
        (0, 2, true),
        (2, 1, false),
        (1, 1, true),
        (2, 4, false),
        (2, 2, true),
        (0, 1, false),
    ];
    let mut sent = [0u64; 3];
    let mut flushes = 0;
    let mut last = None;
    for (f, n, xdp) in steps {
        if xdp {
            dp.run_xdp(&pkts[f], n).expect("xdp run");
        } else {
            dp.run_tc(Direction::Ingress, &RunPacket::new(&pkts[f]), n)
                .expect("tc run");
        }
        sent[f] += n as u64;
        if last.is_some_and(|l| l != f) {
            flushes += 1;
        }
        last = Some(f);
        let (flows, r) = read(&dp);
        assert!(r.exact);
        assert_eq!(r.cache_slots, 1, "the flow last seen holds the slot");
        for (i, want) in sent.iter().enumerate().filter(|(_, s)| **s > 0) {
            let v = &flows[&(40000 + i as u16)];
            assert_eq!(v.packets, *want, "flow {i} after {sent:?}");
            assert_eq!(gets(v) as u64, *want, "requests of flow {i}");
            assert_eq!(v.bytes, *want * pkts[i].len() as u64);
        }
        assert_eq!(flows.len(), sent.iter().filter(|s| **s > 0).count());
        let stats = dp.stats().expect("stats");
        assert_eq!(stats[Stat::CacheFlushes as usize], flushes);
        assert_eq!(stats[Stat::FlowsCreated as usize], flows.len() as u64);
        assert_eq!(
            stats[Stat::CacheBypassed as usize],
            0,
            "nobody read during a packet"
        );
    }
}

#[test]
fn one_flow_on_two_cpus_adds_up() {
    require_root!();
    cpus();
    let mut dp = load(Options::default());
    let pkt = request(41000);
    run_on_cpu(0);
    dp.run_tc(Direction::Ingress, &RunPacket::new(&pkt), 3)
        .expect("tc run");
    run_on_cpu(1);
    dp.run_tc(Direction::Ingress, &RunPacket::new(&pkt), 4)
        .expect("tc run");
    let (flows, r) = read(&dp);
    assert_eq!(r.cache_slots, 2, "one slot on each CPU");
    assert_eq!(r.table_entries, 1, "one entry in the shared table");
    assert_eq!(flows.len(), 1);
    let v = &flows[&41000];
    assert_eq!((v.packets, gets(v)), (7, 7));
    let stats = dp.stats().expect("stats");
    assert_eq!(
        stats[Stat::FlowsCreated as usize],
        1,
        "created once, not per CPU"
    );
}

#[test]
fn slots_flushed_while_the_agent_reads_are_counted_once() {
    require_root!();
    cpus();
    // Two loads on the same pinned maps: one sends, one reads, as the
    // kernel and the agent do.
    let fs = BpfFs::mount_named("flow-cache");
    let opts = Options {
        flow_cache_slots: 1,
        pin: Some(fs.path().join("netobs")),
        ..Options::default()
    };
    let reader = load(opts.clone());
    let mut writer = load(opts);
    const ROUNDS: u64 = 50_000;
    // Packets handed to the kernel, and packets it has finished with: a
    // read must see at least the second and at most the first.
    let started = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let sent = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let done = Arc::new(AtomicBool::new(false));
    let sending = {
        let (started, sent, done) = (started.clone(), sent.clone(), done.clone());
        std::thread::spawn(move || {
            run_on_cpu(1);
            let pkts = [request(42000), request(42001)];
            for _ in 0..ROUNDS {
                // Alternating flows in one slot: every packet flushes.
                for (i, p) in pkts.iter().enumerate() {
                    started[i].fetch_add(1, Ordering::SeqCst);
                    writer
                        .run_tc(Direction::Ingress, &RunPacket::new(p), 1)
                        .expect("tc run");
                    sent[i].fetch_add(1, Ordering::SeqCst);
                }
            }
            done.store(true, Ordering::SeqCst);
            writer
        })
    };
    run_on_cpu(0);
    let mut reads = 0;
    let mut previous = [0u64; 2];
    while !done.load(Ordering::SeqCst) {
        let before = [0, 1].map(|i| sent[i].load(Ordering::SeqCst));
        let (flows, r) = read(&reader);
        let after = [0, 1].map(|i| started[i].load(Ordering::SeqCst));
        assert!(r.exact, "read {reads}");
        for i in 0..2 {
            let got = flows.get(&(42000 + i as u16)).map_or(0, |v| v.packets);
            assert!(
                before[i] <= got && got <= after[i],
                "read {reads}, flow {i}: {got} packets while {}..={} were sent",
                before[i],
                after[i]
            );
            assert!(got >= previous[i], "counts never go back");
            previous[i] = got;
        }
        reads += 1;
    }
    let _writer = sending.join().expect("sender");
    let (flows, r) = read(&reader);
    assert!(r.exact);
    for i in 0..2u16 {
        let v = &flows[&(42000 + i)];
        assert_eq!((v.packets, gets(v) as u64), (ROUNDS, ROUNDS));
    }
    let stats = reader.stats().expect("stats");
    assert!(reads > 10, "only {reads} reads while sending");
    // The race happened: packets met the reading flag, and went around
    // the cache instead of flushing it.
    assert!(
        stats[Stat::CacheBypassed as usize] > 0,
        "no read met a flush"
    );
    let begun = stats[Stat::CacheCollisionsBegun as usize];
    assert_eq!(stats[Stat::CacheCollisionsEnded as usize], begun);
    assert_eq!(
        stats[Stat::CacheFlushes as usize] + stats[Stat::CacheBypassed as usize],
        begun,
        "every collision flushed the slot or went around it"
    );
    assert_eq!(reader.inexact_reads(), 0);
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[test]
fn flow_times_are_the_monotonic_clock_to_a_tick() {
    require_root!();
    let mut dp = load(Options::default());
    let clock = dp.tick_clock().expect("live loads have a tick clock");
    let tick = clock.tick_ns() as u64;
    // A stamp is the start of the tick the packet came in, placed by the
    // calibration never late and at most its error early.
    let early = tick + clock.error_ns();
    assert!(
        clock.error_ns() < 1_000_000,
        "calibrated to {} ns",
        clock.error_ns()
    );
    assert!(
        (1_000_000..=10_000_000).contains(&tick),
        "a tick of {tick} ns is not a kernel's (100 to 1000 Hz)"
    );
    let pkt = request(43000);
    let t0 = monotonic_ns();
    dp.run_tc(Direction::Ingress, &RunPacket::new(&pkt), 1)
        .expect("tc run");
    let t1 = monotonic_ns();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let t2 = monotonic_ns();
    dp.run_tc(Direction::Ingress, &RunPacket::new(&pkt), 1)
        .expect("tc run");
    let t3 = monotonic_ns();
    let (flows, _) = read(&dp);
    let v = &flows[&43000];
    assert!(
        v.first_seen_ns + early >= t0 && v.first_seen_ns <= t1,
        "first seen {} outside {t0}..={t1} (tick {tick}, {early} early at most)",
        v.first_seen_ns
    );
    assert!(
        v.last_seen_ns + early >= t2 && v.last_seen_ns <= t3,
        "last seen {} outside {t2}..={t3} (tick {tick}, {early} early at most)",
        v.last_seen_ns
    );
}

#[test]
fn keys_that_differ_in_one_field_are_never_merged() {
    require_root!();
    // One slot, and groups of flows that differ from their group's first
    // flow in one field only, in each word of the key the compare looks at:
    // IPv4 and IPv6 addresses (the last bytes of IPv6 ones too), VNI, SPI,
    // ports, protocol. (The groups' first flows differ in address family.)
    let mut dp = load(Options {
        flow_cache_slots: 1,
        ..Options::default()
    });
    let tcp = |net: &Net, sport, dport| packets::tcp(net, sport, dport, b"x");
    let c = Net::containers();
    let v4 = Net::v4;
    let v6 = |a: &str, b: &str| Net::v6(a, b);
    let vx = |outer: &Net, vni, inner: &[u8]| packets::vxlan(outer, 4789, vni, inner);
    let o6 = v6("2001:db8::1", "2001:db8::2");
    let i6 = v6("fd00::2", "fd00::3");
    let groups: Vec<(Vec<u8>, Vec<Vec<u8>>)> = vec![
        (
            vx(&Net::nodes(), 7, &tcp(&c, 1000, 80)),
            vec![
                vx(&v4([192, 0, 2, 9], [192, 0, 2, 2]), 7, &tcp(&c, 1000, 80)),
                vx(&v4([192, 0, 2, 1], [192, 0, 2, 9]), 7, &tcp(&c, 1000, 80)),
                vx(&Net::nodes(), 8, &tcp(&c, 1000, 80)),
                vx(
                    &Net::nodes(),
                    7,
                    &tcp(&v4([10, 0, 9, 9], [10, 0, 9, 3]), 1000, 80),
                ),
                vx(
                    &Net::nodes(),
                    7,
                    &tcp(&v4([10, 0, 9, 2], [10, 0, 9, 9]), 1000, 80),
                ),
                vx(&Net::nodes(), 7, &tcp(&c, 1001, 80)),
                vx(&Net::nodes(), 7, &tcp(&c, 1000, 81)),
                vx(&Net::nodes(), 7, &packets::udp(&c, 1000, 80, b"x")),
            ],
        ),
        (
            vx(&o6, 7, &tcp(&c, 1000, 80)),
            vec![
                vx(&v6("2001:db8::3", "2001:db8::2"), 7, &tcp(&c, 1000, 80)),
                vx(&v6("2001:db8::1", "2001:db8::3"), 7, &tcp(&c, 1000, 80)),
                vx(&v6("2001:db9::1", "2001:db8::2"), 7, &tcp(&c, 1000, 80)),
            ],
        ),
        (
            vx(&Net::nodes(), 7, &tcp(&i6, 1000, 80)),
            vec![
                vx(&Net::nodes(), 7, &tcp(&v6("fd00::4", "fd00::3"), 1000, 80)),
                vx(&Net::nodes(), 7, &tcp(&v6("fd00::2", "fd00::4"), 1000, 80)),
                vx(&Net::nodes(), 7, &tcp(&v6("fd01::2", "fd00::3"), 1000, 80)),
            ],
        ),
        (
            packets::esp(&Net::nodes(), 0x100, 1),
            vec![
                packets::esp(&Net::nodes(), 0x101, 1),
                packets::esp(&v4([192, 0, 2, 1], [192, 0, 2, 9]), 0x100, 1),
            ],
        ),
        (
            packets::esp(&o6, 0x100, 1),
            vec![
                packets::esp(&v6("2001:db8::1", "2001:db8::4"), 0x100, 1),
                packets::esp(&v6("2001:db8::5", "2001:db8::2"), 0x100, 1),
            ],
        ),
    ];
    let run = |dp: &mut Datapath, p: &[u8], n: u32| {
        dp.run_tc(Direction::Ingress, &RunPacket::new(p), n)
            .expect("tc run");
    };
    // Each group's first flow takes the slot before each of its others, so
    // that they are compared with it and it with them. Firsts get 1000 and
    // up, the others 1, 2, 3...: a merge shows as a count out of place.
    let mut want = Vec::new();
    let mut next = 1;
    for (g, (first, others)) in groups.iter().enumerate() {
        let base = 1000 * (g as u32 + 1);
        run(&mut dp, first, base);
        for p in others {
            run(&mut dp, first, 1);
            run(&mut dp, p, next);
            want.push(next as u64);
            next += 1;
        }
        want.push((base + others.len() as u32) as u64);
    }
    let mut counts = Vec::new();
    let r = dp
        .for_each_flow(|_, v| counts.push(v.packets))
        .expect("reading flows");
    assert!(r.exact);
    counts.sort_unstable();
    want.sort_unstable();
    assert_eq!(counts, want, "one flow per key, each with its own count");
}
