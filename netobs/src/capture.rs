//! Reading pcap and pcapng captures into Ethernet frames for `replay`.
//!
//! Captures taken with `tcpdump -i any` (Linux cooked, SLL and SLL2) and raw
//! IP captures are common on nodes; their records get a synthetic Ethernet
//! header so the one parser in the kernel reads them all. Other link types are
//! counted as skipped, never guessed at.
use std::{
    fs::File,
    io::{BufReader, Read},
    panic::{catch_unwind, AssertUnwindSafe},
    path::{Path, PathBuf},
};

use pcap_file::{
    pcap::PcapReader,
    pcapng::{
        blocks::{
            enhanced_packet::EnhancedPacketOption,
            interface_description::InterfaceDescriptionOption,
        },
        Block, PcapNgReader,
    },
    DataLink,
};

const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
];
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
const ETH_HLEN: usize = 14;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a pcap or pcapng capture (unknown magic number)", path.display())]
    NotACapture { path: PathBuf },
    #[error("{} is damaged after {records} records: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        records: u64,
        reason: String,
    },
}

/// Whether the capture says which way the packet went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    Unknown,
    Inbound,
    Outbound,
}

/// One record, as an Ethernet frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub timestamp_ns: u64,
    /// Length on the wire, adjusted for a synthesized Ethernet header.
    pub wire_len: u32,
    pub data: Vec<u8>,
    pub way: Way,
}

/// Records read so far that could not be replayed, and why.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Skipped {
    /// Link types netobs does not parse (e.g. 802.11, USB).
    pub unsupported_link_type: u64,
    /// Records shorter than their link-layer header.
    pub short_record: u64,
}

enum Reader {
    Pcap {
        reader: PcapReader<BufReader<File>>,
        link: DataLink,
    },
    PcapNg {
        reader: PcapNgReader<BufReader<File>>,
        /// Link type and timestamp resolution of each interface of the
        /// current section, by interface id.
        interfaces: Vec<(DataLink, Option<u8>)>,
    },
}

pub struct Capture {
    path: PathBuf,
    reader: Reader,
    records: u64,
    pub skipped: Skipped,
    failed: bool,
}

impl Capture {
    pub fn open(path: &Path) -> Result<Capture, CaptureError> {
        let open_err = |source| CaptureError::Open {
            path: path.to_owned(),
            source,
        };
        let mut file = File::open(path).map_err(open_err)?;
        let mut magic = [0u8; 4];
        file.read_exact(&mut magic)
            .map_err(|_| CaptureError::NotACapture {
                path: path.to_owned(),
            })?;
        let file = File::open(path).map_err(open_err)?;
        let corrupt = |e: pcap_file::PcapError| CaptureError::Corrupt {
            path: path.to_owned(),
            records: 0,
            reason: e.to_string(),
        };
        let reader = if PCAP_MAGICS.contains(&magic) {
            let reader = PcapReader::new(BufReader::new(file)).map_err(corrupt)?;
            let link = reader.header().datalink;
            Reader::Pcap { reader, link }
        } else if magic == PCAPNG_MAGIC {
            Reader::PcapNg {
                reader: PcapNgReader::new(BufReader::new(file)).map_err(corrupt)?,
                interfaces: Vec::new(),
            }
        } else {
            return Err(CaptureError::NotACapture {
                path: path.to_owned(),
            });
        };
        Ok(Capture {
            path: path.to_owned(),
            reader,
            records: 0,
            skipped: Skipped::default(),
            failed: false,
        })
    }

    /// The next frame; `None` at the end. A damaged file ends with one error.
    pub fn next_frame(&mut self) -> Option<Result<Frame, CaptureError>> {
        if self.failed {
            return None;
        }
        loop {
            // The pcap parser trusts some length fields; a panic on a hostile
            // file must become an error, not take the agent down.
            let step = catch_unwind(AssertUnwindSafe(|| self.read_record()));
            let record = match step {
                Ok(r) => r,
                Err(_) => Some(Err("the capture parser failed on this record".to_owned())),
            };
            match record? {
                Ok(Some(frame)) => {
                    self.records += 1;
                    return Some(Ok(frame));
                }
                Ok(None) => {
                    self.records += 1;
                    continue;
                }
                Err(reason) => {
                    self.failed = true;
                    return Some(Err(CaptureError::Corrupt {
                        path: self.path.clone(),
                        records: self.records,
                        reason,
                    }));
                }
            }
        }
    }

    /// Outer `None`: end of file. `Ok(None)`: a record that was skipped.
    #[allow(clippy::type_complexity)]
    fn read_record(&mut self) -> Option<Result<Option<Frame>, String>> {
        match &mut self.reader {
            Reader::Pcap { reader, link } => {
                let link = *link;
                let pkt = match reader.next_packet()? {
                    Ok(p) => p,
                    Err(e) => return Some(Err(e.to_string())),
                };
                let ts = pkt.timestamp.as_nanos() as u64;
                Some(Ok(to_frame(
                    link,
                    &pkt.data,
                    pkt.orig_len,
                    ts,
                    Way::Unknown,
                    &mut self.skipped,
                )))
            }
            Reader::PcapNg { reader, interfaces } => loop {
                let block = match reader.next_block()? {
                    Ok(b) => b,
                    Err(e) => return Some(Err(e.to_string())),
                };
                let (iface_id, data, orig_len, raw_ts, way) = match block {
                    // Interface ids restart with every section.
                    Block::SectionHeader(_) => {
                        interfaces.clear();
                        continue;
                    }
                    Block::InterfaceDescription(idb) => {
                        let resol = idb.options.iter().find_map(|o| match o {
                            InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                            _ => None,
                        });
                        interfaces.push((idb.linktype, resol));
                        continue;
                    }
                    Block::EnhancedPacket(epb) => {
                        let way = epb
                            .options
                            .iter()
                            .find_map(|o| match o {
                                EnhancedPacketOption::Flags(f) => Some(match f & 0b11 {
                                    1 => Way::Inbound,
                                    2 => Way::Outbound,
                                    _ => Way::Unknown,
                                }),
                                _ => None,
                            })
                            .unwrap_or(Way::Unknown);
                        // pcap-file hands the raw timestamp units over as
                        // nanoseconds; the interface says what they really are.
                        let raw = epb.timestamp.as_nanos() as u64;
                        let id = epb.interface_id as usize;
                        (id, epb.data.into_owned(), epb.original_len, raw, way)
                    }
                    Block::SimplePacket(spb) => {
                        let len = spb.original_len;
                        (0, spb.data.into_owned(), len, 0, Way::Unknown)
                    }
                    _ => continue,
                };
                let Some(&(link, resol)) = interfaces.get(iface_id) else {
                    return Some(Err(format!(
                        "a packet names interface {iface_id}, which was never described"
                    )));
                };
                let ts = scale_timestamp(raw_ts, resol);
                return Some(Ok(to_frame(
                    link,
                    &data,
                    orig_len,
                    ts,
                    way,
                    &mut self.skipped,
                )));
            },
        }
    }
}

/// pcapng `if_tsresol`: high bit clear, a power of 10; set, a power of 2.
/// Default: microseconds.
fn scale_timestamp(raw: u64, resol: Option<u8>) -> u64 {
    let r = resol.unwrap_or(6);
    if r & 0x80 == 0 {
        let exp = (r & 0x7f) as u32;
        if exp <= 9 {
            raw.saturating_mul(10u64.pow(9 - exp))
        } else {
            raw / 10u64.saturating_pow(exp - 9)
        }
    } else {
        let exp = (r & 0x7f) as u32;
        ((raw as u128 * 1_000_000_000) >> exp.min(127)) as u64
    }
}

fn eth_header(ethertype: u16) -> [u8; ETH_HLEN] {
    let mut h = [0u8; ETH_HLEN];
    h[12..].copy_from_slice(&ethertype.to_be_bytes());
    h
}

/// Rewrites one record as an Ethernet frame, or counts it as skipped.
fn to_frame(
    link: DataLink,
    data: &[u8],
    orig_len: u32,
    ts: u64,
    way: Way,
    skipped: &mut Skipped,
) -> Option<Frame> {
    let orig_len = orig_len.max(data.len() as u32);
    let synth = |hdr: usize, ethertype: u16, way: Way| -> Frame {
        let mut out = Vec::with_capacity(ETH_HLEN + data.len() - hdr);
        out.extend_from_slice(&eth_header(ethertype));
        out.extend_from_slice(&data[hdr..]);
        Frame {
            timestamp_ns: ts,
            wire_len: (orig_len - hdr as u32) + ETH_HLEN as u32,
            data: out,
            way,
        }
    };
    let ip_ethertype = |b: Option<&u8>| match b.map(|v| v >> 4) {
        Some(6) => 0x86dd,
        _ => 0x0800,
    };
    match link {
        DataLink::ETHERNET => Some(Frame {
            timestamp_ns: ts,
            wire_len: orig_len,
            data: data.to_vec(),
            way,
        }),
        // struct sll_header: pkttype(2) hatype(2) halen(2) addr(8) protocol(2).
        DataLink::LINUX_SLL => {
            if data.len() < 16 {
                skipped.short_record += 1;
                return None;
            }
            let proto = u16::from_be_bytes([data[14], data[15]]);
            Some(synth(
                16,
                proto,
                sll_way(u16::from_be_bytes([data[0], data[1]]), way),
            ))
        }
        // struct sll2_header: protocol(2) reserved(2) ifindex(4) hatype(2)
        // pkttype(1) halen(1) addr(8).
        DataLink::LINUX_SLL2 => {
            if data.len() < 20 {
                skipped.short_record += 1;
                return None;
            }
            let proto = u16::from_be_bytes([data[0], data[1]]);
            Some(synth(20, proto, sll_way(data[10] as u16, way)))
        }
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => {
            Some(synth(0, ip_ethertype(data.first()), way))
        }
        _ => {
            skipped.unsupported_link_type += 1;
            None
        }
    }
}

/// SLL packet type 4 is PACKET_OUTGOING.
fn sll_way(pkttype: u16, fallback: Way) -> Way {
    match pkttype {
        4 => Way::Outbound,
        0..=3 => Way::Inbound,
        _ => fallback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcapng_resolutions() {
        assert_eq!(scale_timestamp(5, None), 5_000);
        assert_eq!(scale_timestamp(5, Some(9)), 5);
        assert_eq!(scale_timestamp(5, Some(3)), 5_000_000);
        assert_eq!(scale_timestamp(1 << 10, Some(0x80 | 10)), 1_000_000_000);
    }

    #[test]
    fn sll_becomes_ethernet() {
        let mut rec = vec![0u8; 16];
        rec[0..2].copy_from_slice(&4u16.to_be_bytes());
        rec[14..16].copy_from_slice(&0x0800u16.to_be_bytes());
        rec.extend_from_slice(&[0x45, 0, 0, 20]);
        let mut sk = Skipped::default();
        let f = to_frame(
            DataLink::LINUX_SLL,
            &rec,
            rec.len() as u32,
            1,
            Way::Unknown,
            &mut sk,
        )
        .expect("frame");
        assert_eq!(&f.data[12..14], &[0x08, 0x00]);
        assert_eq!(&f.data[14..], &[0x45, 0, 0, 20]);
        assert_eq!(f.wire_len, 18);
        assert_eq!(f.way, Way::Outbound);
    }

    #[test]
    fn unsupported_links_are_counted() {
        let mut sk = Skipped::default();
        assert!(to_frame(DataLink::IEEE802_11, &[0; 40], 40, 0, Way::Unknown, &mut sk).is_none());
        assert!(to_frame(DataLink::LINUX_SLL, &[0; 10], 10, 0, Way::Unknown, &mut sk).is_none());
        assert_eq!(sk.unsupported_link_type, 1);
        assert_eq!(sk.short_record, 1);
    }
}
