//! Netlink, as netobs speaks it: NETLINK_ROUTE to remove the clsact qdisc
//! it added (which aya cannot), NETLINK_XFRM for the audit's IPsec view. No
//! dependency on iproute2 at run time, so the image needs none.
//!
//! The rust-netlink crates do the protocol: `netlink-sys` the socket,
//! `netlink-packet-core` the framing (headers, acknowledgements, errors, the
//! end of a dump and its errno), `netlink-packet-route` the qdisc request.
//! What they leave to their user stays here: reading one request's answer
//! to its end, refusing an interrupted dump (the caller asks again), and a
//! receive timeout. XFRM bodies are decoded by hand in `audit/xfrm.rs`:
//! `netlink-packet-xfrm` has had no release since 2023 and is built on
//! `netlink-packet-core` 0.7 and the deprecated `netlink-packet-utils`.
use std::{fmt, io, os::fd::AsRawFd};

use netlink_packet_core::{
    NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
    NLM_F_ACK, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_route::{
    tc::{TcAttribute, TcHandle, TcMessage},
    RouteNetlinkMessage,
};
use netlink_sys::{Socket, SocketAddr};

pub use netlink_packet_core::NLM_F_DUMP;
pub use netlink_sys::protocols::{NETLINK_ROUTE, NETLINK_XFRM};

/// One netlink socket, connected to the kernel.
pub struct Netlink {
    sock: Socket,
    seq: u32,
}

fn invalid(what: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl Netlink {
    pub fn open(protocol: isize) -> io::Result<Netlink> {
        let mut sock = Socket::new(protocol)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        // The kernel answers at once; never hang on it.
        let timeout = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: a valid socket and option of the stated size.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Netlink { sock, seq: 0 })
    }

    /// Sends `request` with `flags`, and returns every message of the
    /// answer until the dump ends or the kernel acknowledges (ask for that
    /// with `NLM_F_ACK`). A kernel error, at once or at the end of a dump,
    /// is returned as one; a dump the kernel's tables changed under is
    /// `Interrupted`.
    pub fn request<I>(&mut self, request: I, flags: u16) -> io::Result<Vec<I>>
    where
        I: NetlinkSerializable + NetlinkDeserializable + fmt::Debug,
    {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(request));
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        self.sock.send(&buf, 0)?;
        let mut out = Vec::new();
        loop {
            // Whole datagrams, however long (MSG_PEEK | MSG_TRUNC first).
            let (data, _) = self.sock.recv_from_full()?;
            if data.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "netlink socket closed",
                ));
            }
            let mut at = 0;
            while at < data.len() {
                let msg = NetlinkMessage::<I>::deserialize(&data[at..]).map_err(invalid)?;
                let len = msg.header.length as usize;
                if len == 0 {
                    return Err(invalid("a netlink message of length 0"));
                }
                if msg.header.flags & NLM_F_DUMP_INTR != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::Interrupted,
                        "the kernel's table changed during the dump: ask again",
                    ));
                }
                match msg.payload {
                    // The errno of a dump that failed part way.
                    NetlinkPayload::Done(d) if d.code < 0 => {
                        return Err(io::Error::from_raw_os_error(-d.code))
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                            // An acknowledgement.
                            None => Ok(out),
                        };
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(invalid("the kernel's answer overran the socket"))
                    }
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    _ => {}
                }
                at += len.next_multiple_of(4);
            }
        }
    }
}

/// Removes the clsact qdisc of interface `ifindex` (what `tc qdisc del dev
/// IF clsact` does). The kind is named in the request, so the kernel
/// refuses if that slot holds a plain `ingress` qdisc instead.
pub fn delete_clsact(ifindex: u32) -> io::Result<()> {
    let mut tc = TcMessage::with_index(ifindex as i32);
    // `ffff:`, the handle tc gives the clsact qdisc, under TC_H_CLSACT.
    tc.header.handle = TcHandle::from(0xffff_0000);
    tc.header.parent = TcHandle::CLSACT;
    tc.attributes.push(TcAttribute::Kind("clsact".into()));
    Netlink::open(NETLINK_ROUTE)?
        .request(RouteNetlinkMessage::DelQueueDiscipline(tc), NLM_F_ACK)
        .map(drop)
}
