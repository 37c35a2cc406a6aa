//! BPF_MAP_LOOKUP_BATCH, which aya 0.14 does not wrap: reading a flow table
//! of a million entries one key at a time takes two million system calls, in
//! batches it takes a few hundred.
use std::{io, mem::size_of, sync::mpsc};

pub enum Error {
    /// The kernel has no batch lookups for this map.
    Unsupported,
    Io(io::Error),
}

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// The kernel-internal "operation not supported" that `bpf()` leaks.
const ENOTSUPP: i32 = 524;
/// Entries asked for per call; a hash bucket never holds more. (Hash maps use
/// a bucket index as the batch token, arrays the next index.)
const CHUNK: usize = 4096;

/// Batches filled or being visited at once. With two, the kernel's side
/// and the visitor's waited for each other whenever one batch took either
/// longer than usual; with four a first read of a million flows took about
/// 0.1 s less (`cargo bench -p netobs --bench scale`, alternated runs).
/// Each batch is `CHUNK` keys and values: under 1 MiB for the flow table.
const IN_FLIGHT: usize = 4;

/// `union bpf_attr` as the batch commands read it (uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every entry of the hash map `fd`, whose keys are `K` and values `V` (plain
/// old data of exactly the map's key and value sizes), handed to `visit` a
/// batch at a time: memory stays at one batch whatever the map's size.
pub fn for_each<K: Copy + Default + Send, V: Copy + Default + Send>(
    fd: i32,
    visit: impl FnMut(&[K], &[V]),
) -> Result<(), Error> {
    for_each_per_key(fd, 1, visit)
}

/// As `for_each`, for maps with `per_key` values of `V` under each key (a
/// per-CPU map: one per possible CPU, `V` a multiple of 8 bytes long): the
/// values of `keys[i]` are `values[i * per_key..(i + 1) * per_key]`.
///
/// The kernel fills the next batch on a thread of its own while `visit`
/// works through this one: a million flows take the kernel about half a
/// second to copy out and the agent as long to count, and done one after
/// the other the read took 1.4 s (`cargo bench -p netobs --bench scale`).
/// `IN_FLIGHT` batches at most.
pub fn for_each_per_key<K: Copy + Default + Send, V: Copy + Default + Send>(
    fd: i32,
    per_key: usize,
    mut visit: impl FnMut(&[K], &[V]),
) -> Result<(), Error> {
    let per_key = per_key.max(1);
    let (full_tx, full) = mpsc::sync_channel::<Batch<K, V>>(IN_FLIGHT - 1);
    let (empty_tx, empty) = mpsc::channel::<Batch<K, V>>();
    for _ in 0..IN_FLIGHT {
        // Cannot fail: `empty` is alive.
        let _ = empty_tx.send(Batch {
            keys: vec![K::default(); CHUNK],
            values: vec![V::default(); CHUNK * per_key],
            n: 0,
        });
    }
    std::thread::scope(|s| {
        // A thread the system refuses (limits) fails this read, as a failed
        // lookup would; the next read tries again.
        let reader = std::thread::Builder::new()
            .name("netobs-read".into())
            .spawn_scoped(s, move || read_all(fd, &empty, &full_tx))
            .map_err(Error::Io)?;
        for b in full.iter() {
            visit(&b.keys[..b.n], &b.values[..b.n * per_key]);
            // The reader may be done and gone: then the batch is dropped.
            let _ = empty_tx.send(b);
        }
        reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// One batch's buffers, and how many entries the kernel put in them.
struct Batch<K, V> {
    keys: Vec<K>,
    values: Vec<V>,
    n: usize,
}

/// The reader's side of `for_each_per_key`: fills the batches it is given
/// back, in the map's order, until the map ends.
fn read_all<K: Copy, V: Copy>(
    fd: i32,
    empty: &mpsc::Receiver<Batch<K, V>>,
    full: &mpsc::SyncSender<Batch<K, V>>,
) -> Result<(), Error> {
    // Hash maps use a u32 bucket index as the batch token.
    let mut token_in: u64 = 0;
    let mut token_out: u64 = 0;
    let mut first = true;
    loop {
        // The visiting side hands every batch back until it stops.
        let Ok(mut b) = empty.recv() else {
            return Ok(());
        };
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                &mut token_in as *mut u64 as u64
            },
            out_batch: &mut token_out as *mut u64 as u64,
            keys: b.keys.as_mut_ptr() as u64,
            values: b.values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: fd as u32,
            ..BatchAttr::default()
        };
        // SAFETY: attr points at buffers of CHUNK keys and CHUNK * per_key
        // values (as `for_each_per_key` made them) of the map's sizes, and
        // at two u64 tokens, all alive across the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                size_of::<BatchAttr>() as u32,
            )
        };
        let err = (rc < 0).then(io::Error::last_os_error);
        b.n = (attr.count as usize).min(CHUNK);
        match err {
            None => {
                if full.send(b).is_err() {
                    return Ok(());
                }
            }
            // ENOENT: the end of the map, with its last entries.
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let _ = full.send(b);
                return Ok(());
            }
            // Kernels before 5.6, or without batch ops for this map type,
            // refuse the first call.
            Some(e)
                if first
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP)
                    ) =>
            {
                return Err(Error::Unsupported)
            }
            Some(e) => return Err(Error::Io(e)),
        }
        token_in = token_out;
        first = false;
    }
}

const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;

/// `union bpf_attr` as BPF_MAP_UPDATE_ELEM reads it.
#[repr(C)]
struct UpdateAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// Sets entry `index` of the array map `fd` to `value`. aya writes maps only
/// through a mutable borrow of the whole object; the flow reader, which
/// holds a shared one, needs to flip one flag.
pub fn set_u32(fd: i32, index: u32, value: u32) -> io::Result<()> {
    let attr = UpdateAttr {
        map_fd: fd as u32,
        _pad: 0,
        key: &index as *const u32 as u64,
        value: &value as *const u32 as u64,
        flags: 0,
    };
    // SAFETY: attr points at a u32 key and value alive across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_ELEM,
            &attr as *const UpdateAttr,
            size_of::<UpdateAttr>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
