//! BPF_MAP_LOOKUP_BATCH, which aya 0.14 does not wrap: reading a flow table
//! of a million entries one key at a time takes two million system calls, in
//! batches it takes a few hundred.
use std::{io, mem::size_of};

pub enum Error {
    /// The kernel has no batch lookups for this map.
    Unsupported,
    Io(io::Error),
}

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// The kernel-internal "operation not supported" that `bpf()` leaks.
const ENOTSUPP: i32 = 524;
/// Entries asked for per call; a hash bucket never holds more.
const CHUNK: usize = 4096;

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
pub fn for_each<K: Copy + Default, V: Copy + Default>(
    fd: i32,
    mut visit: impl FnMut(&[K], &[V]),
) -> Result<(), Error> {
    let mut keys = vec![K::default(); CHUNK];
    let mut values = vec![V::default(); CHUNK];
    // Hash maps use a u32 bucket index as the batch token.
    let mut token_in: u64 = 0;
    let mut token_out: u64 = 0;
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                &mut token_in as *mut u64 as u64
            },
            out_batch: &mut token_out as *mut u64 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: fd as u32,
            ..BatchAttr::default()
        };
        // SAFETY: attr points at buffers of CHUNK keys and values of the
        // map's sizes, and at two u64 tokens, all alive across the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                size_of::<BatchAttr>() as u32,
            )
        };
        let err = (rc < 0).then(io::Error::last_os_error);
        let n = (attr.count as usize).min(CHUNK);
        match err {
            // ENOENT: the end of the map, with its last entries.
            None => visit(&keys[..n], &values[..n]),
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                visit(&keys[..n], &values[..n]);
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
