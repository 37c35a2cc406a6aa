//! This host as seen from the agent's network namespace.
use std::{collections::BTreeSet, net::IpAddr};

/// Every address of this host's interfaces (in the audit's own network
/// namespace, which is the agent's).
pub fn local_addrs() -> BTreeSet<IpAddr> {
    let mut out = BTreeSet::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr of the family it names.
            match i32::from(unsafe { (*ifa.ifa_addr).sa_family }) {
                libc::AF_INET => {
                    // SAFETY: an AF_INET address is a sockaddr_in.
                    let a = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    out.insert(IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes()));
                }
                libc::AF_INET6 => {
                    // SAFETY: an AF_INET6 address is a sockaddr_in6.
                    let a = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                    out.insert(IpAddr::from(a.sin6_addr.s6_addr));
                }
                _ => {}
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: the list getifaddrs allocated.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// An interface ioctl on a throwaway socket, asked in this network
/// namespace (/sys may show another namespace's interfaces); `ifr_data`
/// points at `data` when given.
fn ifreq_ioctl(
    iface: &str,
    request: libc::c_ulong,
    data: Option<*mut libc::c_void>,
) -> Option<libc::ifreq> {
    let bytes = iface.as_bytes();
    // SAFETY: a zeroed ifreq is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if bytes.len() >= req.ifr_name.len() {
        return None;
    }
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    if let Some(p) = data {
        req.ifr_ifru.ifru_data = p as *mut libc::c_char;
    }
    // SAFETY: plain socket(2); closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a valid socket and ifreq; `data` outlives the call.
    let rc = unsafe { libc::ioctl(fd, request, &mut req) };
    // SAFETY: the descriptor opened above.
    unsafe { libc::close(fd) };
    (rc == 0).then_some(req)
}

/// What the doctor says of a watched interface.
#[derive(Debug, Clone, Default)]
pub struct IfaceInfo {
    pub name: String,
    pub mtu: Option<u32>,
    pub driver: Option<String>,
    pub rx_checksum: Option<bool>,
    pub tx_checksum: Option<bool>,
}

pub fn iface_info(name: &str) -> IfaceInfo {
    let (rx_checksum, tx_checksum) = checksum_offload(name);
    IfaceInfo {
        name: name.to_owned(),
        mtu: mtu(name),
        driver: driver(name),
        rx_checksum,
        tx_checksum,
    }
}

/// The MTU of interface `iface` (SIOCGIFMTU).
pub fn mtu(iface: &str) -> Option<u32> {
    let req = ifreq_ioctl(iface, libc::SIOCGIFMTU, None)?;
    // SAFETY: SIOCGIFMTU filled the MTU member.
    Some(unsafe { req.ifr_ifru.ifru_mtu } as u32)
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GRXCSUM: u32 = 0x14;
const ETHTOOL_GTXCSUM: u32 = 0x16;

/// `struct ethtool_drvinfo` (linux/ethtool.h).
#[repr(C)]
struct DrvInfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    counts: [u32; 5],
}

/// The driver of interface `iface` (`ethtool -i`), e.g. `veth`, `vmxnet3`.
pub fn driver(iface: &str) -> Option<String> {
    // SAFETY: a zeroed drvinfo is valid.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    ifreq_ioctl(iface, SIOCETHTOOL, Some(&raw mut info as *mut libc::c_void))?;
    let end = info.driver.iter().position(|b| *b == 0).unwrap_or(32);
    Some(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// Whether receive and transmit checksum offload are on (`ethtool -k`'s
/// rx-checksumming and tx-checksumming), where the driver says.
pub fn checksum_offload(iface: &str) -> (Option<bool>, Option<bool>) {
    let get = |cmd: u32| {
        let mut v: [u32; 2] = [cmd, 0];
        ifreq_ioctl(
            iface,
            SIOCETHTOOL,
            Some(v.as_mut_ptr() as *mut libc::c_void),
        )?;
        Some(v[1] != 0)
    };
    (get(ETHTOOL_GRXCSUM), get(ETHTOOL_GTXCSUM))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loopback is in every namespace and has no driver to name (ethtool
    /// says "not supported"); the swarm test reads `veth` off a real one.
    #[test]
    fn loopback_answers() {
        assert_eq!(mtu("lo"), Some(65536));
        assert_eq!(driver("lo"), None);
        assert_eq!(mtu("no-such-interface-x"), None);
        assert_eq!(driver("no-such-interface-x"), None);
    }
}
