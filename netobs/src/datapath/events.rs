//! Ring-buffer records from the kernel: new plaintext flows and HTTP
//! requests. The kernel rate-limits them and counts what it drops.
use std::mem::size_of;

use aya::maps::{MapData, RingBuf};
use netobs_common::{Event, SNIPPET_LEN};

use super::{names, Datapath, DatapathError};

impl Datapath {
    /// Takes the ring buffer out of the datapath so one task can drain it.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, DatapathError> {
        let map = self
            .ebpf_mut()
            .take_map(names::EVENTS)
            .ok_or(DatapathError::Missing {
                kind: "map",
                name: names::EVENTS,
            })?;
        RingBuf::try_from(map).map_err(|source| DatapathError::Map {
            name: names::EVENTS,
            source,
        })
    }
}

/// Decodes one ring-buffer record; `None` for a record of the wrong size
/// (an object built from other sources).
pub fn decode(bytes: &[u8]) -> Option<Event> {
    if bytes.len() < size_of::<Event>() {
        return None;
    }
    // SAFETY: length checked; Event is plain old data, any bytes are valid.
    let event = unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const Event) };
    Some(event)
}

/// The exported part of the request line, as text.
pub fn snippet(event: &Event) -> String {
    let n = (event.snippet_len as usize).min(SNIPPET_LEN);
    String::from_utf8_lossy(&event.snippet[..n]).into_owned()
}
