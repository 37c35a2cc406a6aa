//! The little of netlink that netobs speaks itself: a request, its answer
//! (a dump, or an acknowledgement), over NETLINK_ROUTE (removing the clsact
//! qdisc it added, which aya cannot) and NETLINK_XFRM (the audit's IPsec
//! view). No dependency on iproute2 at run time, so the image needs none.
use std::{
    cell::Cell,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

pub const NETLINK_ROUTE: i32 = 0;
pub const NETLINK_XFRM: i32 = 6;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 1;
pub const NLM_F_ACK: u16 = 4;
pub const NLM_F_DUMP: u16 = 0x300;
/// The dump was interrupted by a change: its content is inconsistent.
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLMSG_HDRLEN: usize = 16;

pub struct Socket {
    fd: OwnedFd,
    seq: Cell<u32>,
}

/// Appends a netlink attribute (type, value) padded to 4 bytes.
fn push_attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len() + (len.next_multiple_of(4) - len), 0);
}

impl Socket {
    pub fn open(protocol: i32) -> io::Result<Socket> {
        // SAFETY: plain socket(2).
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor we just opened and own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // The kernel answers at once; never hang on it.
        let timeout = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: a valid socket and option of the stated size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Socket {
            fd,
            seq: Cell::new(0),
        })
    }

    /// Sends message `kind` with `body`, and returns the bodies of every
    /// answer of type `want` until the dump ends or the kernel acknowledges
    /// (ask for that with `NLM_F_ACK`); a kernel error is returned as one.
    pub fn request(
        &self,
        kind: u16,
        flags: u16,
        body: &[u8],
        want: u16,
    ) -> io::Result<Vec<Vec<u8>>> {
        let seq = self.seq.get().wrapping_add(1);
        self.seq.set(seq);
        let mut req = Vec::with_capacity(NLMSG_HDRLEN + body.len());
        req.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        req.extend_from_slice(&kind.to_ne_bytes());
        req.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        req.extend_from_slice(&seq.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        req.extend_from_slice(body);
        // SAFETY: a valid socket and buffer.
        if unsafe { libc::send(self.fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // MSG_TRUNC: the datagram's real length, to notice one that
            // did not fit.
            // SAFETY: a valid socket and buffer.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_TRUNC,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "netlink socket closed",
                ));
            }
            if n as usize > buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "netlink answer larger than the buffer",
                ));
            }
            let mut msgs = &buf[..n as usize];
            while msgs.len() >= NLMSG_HDRLEN {
                let len = u32::from_ne_bytes([msgs[0], msgs[1], msgs[2], msgs[3]]) as usize;
                let kind = u16::from_ne_bytes([msgs[4], msgs[5]]);
                let flags = u16::from_ne_bytes([msgs[6], msgs[7]]);
                if len < NLMSG_HDRLEN || len > msgs.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "bad netlink message",
                    ));
                }
                if flags & NLM_F_DUMP_INTR != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::Interrupted,
                        "the kernel's table changed during the dump: ask again",
                    ));
                }
                match kind {
                    // Both carry an errno after the header: 0 for success
                    // (an acknowledgement, a complete dump), negative when
                    // the request or the dump failed part way.
                    NLMSG_DONE | NLMSG_ERROR => {
                        let code = msgs
                            .get(NLMSG_HDRLEN..NLMSG_HDRLEN + 4)
                            .and_then(|b| b.try_into().ok())
                            .map_or(0, i32::from_ne_bytes);
                        if code < 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                        return Ok(out);
                    }
                    k if k == want => out.push(msgs[NLMSG_HDRLEN..len].to_vec()),
                    _ => {}
                }
                msgs = msgs.get(len.next_multiple_of(4)..).unwrap_or_default();
            }
        }
    }
}

const RTM_DELQDISC: u16 = 37;
const TCA_KIND: u16 = 1;
/// `TC_H_CLSACT` (the same value as `TC_H_INGRESS`), and the handle tc
/// gives the clsact qdisc, `ffff:`.
const TC_H_CLSACT: u32 = 0xffff_fff1;
const CLSACT_HANDLE: u32 = 0xffff_0000;

/// Removes the clsact qdisc of interface `ifindex` (what `tc qdisc del dev
/// IF clsact` does). The kind is named in the request, so the kernel
/// refuses if that slot holds a plain `ingress` qdisc instead.
pub fn delete_clsact(ifindex: u32) -> io::Result<()> {
    let mut body = Vec::with_capacity(32);
    body.extend_from_slice(&[0u8; 4]); // family AF_UNSPEC, padding
    body.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    body.extend_from_slice(&CLSACT_HANDLE.to_ne_bytes());
    body.extend_from_slice(&TC_H_CLSACT.to_ne_bytes());
    body.extend_from_slice(&0u32.to_ne_bytes()); // tcm_info
    push_attr(&mut body, TCA_KIND, b"clsact\0");
    Socket::open(NETLINK_ROUTE)?
        .request(RTM_DELQDISC, NLM_F_ACK, &body, 0)
        .map(drop)
}
