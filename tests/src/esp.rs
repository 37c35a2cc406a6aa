//! Real ESP (RFC 4303) with AES-GCM (RFC 4106), the transform Docker's
//! encrypted overlay uses, and ways to put it on the wire from a namespace.
//! The kernel here has no xfrm crypto, so the tests encrypt themselves.
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};

use aes_gcm::{
    aead::{AeadInPlace, KeyInit},
    Aes128Gcm, Nonce,
};
use anyhow::{anyhow, bail, Context, Result};

use crate::netns::Netns;

/// IP protocol number of the payload, for the ESP trailer.
pub const NEXT_HEADER_IPV4: u8 = 4;
const ICV_LEN: usize = 16;
const IV_LEN: usize = 8;

/// One security association: SPI, 128-bit key, 4-byte salt.
#[derive(Clone)]
pub struct EspSa {
    pub spi: u32,
    key: [u8; 16],
    salt: [u8; 4],
}

impl EspSa {
    pub fn new(spi: u32, key: [u8; 16], salt: [u8; 4]) -> EspSa {
        EspSa { spi, key, salt }
    }

    fn cipher(&self) -> Aes128Gcm {
        Aes128Gcm::new(&self.key.into())
    }

    /// SPI | seq | IV | ciphertext(payload | padding | pad len | next header) | ICV.
    pub fn seal(&self, seq: u32, payload: &[u8], next_header: u8) -> Result<Vec<u8>> {
        // Padding brings payload + 2 trailer bytes to a multiple of 4, with
        // the 1, 2, 3... pattern of RFC 4303 §2.4.
        let pad = (4 - (payload.len() + 2) % 4) % 4;
        let mut body = payload.to_vec();
        body.extend((1..=pad as u8).collect::<Vec<u8>>());
        body.push(pad as u8);
        body.push(next_header);
        let iv = (seq as u64).to_be_bytes();
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&self.salt);
        nonce[4..].copy_from_slice(&iv);
        let mut aad = self.spi.to_be_bytes().to_vec();
        aad.extend_from_slice(&seq.to_be_bytes());
        let tag = self
            .cipher()
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut body)
            .map_err(|_| anyhow!("AES-GCM encryption failed"))?;
        let mut out = aad;
        out.extend_from_slice(&iv);
        out.extend_from_slice(&body);
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Verifies and decrypts what `seal` made: (seq, payload, next header).
    pub fn open(&self, packet: &[u8]) -> Result<(u32, Vec<u8>, u8)> {
        if packet.len() < 8 + IV_LEN + 2 + ICV_LEN {
            bail!("ESP packet too short");
        }
        let spi = u32::from_be_bytes([packet[0], packet[1], packet[2], packet[3]]);
        if spi != self.spi {
            bail!("SPI {spi:#x} is not this SA's");
        }
        let seq = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&self.salt);
        nonce[4..].copy_from_slice(&packet[8..8 + IV_LEN]);
        let (body, tag) = packet[8 + IV_LEN..].split_at(packet.len() - 8 - IV_LEN - ICV_LEN);
        let mut body = body.to_vec();
        self.cipher()
            .decrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                &packet[..8],
                &mut body,
                tag.into(),
            )
            .map_err(|_| anyhow!("ICV check failed"))?;
        let next = body.pop().context("no trailer")?;
        let pad = body.pop().context("no trailer")? as usize;
        body.truncate(body.len().saturating_sub(pad));
        Ok((seq, body, next))
    }
}

/// Sends ESP from inside a namespace: as IP protocol 50 (raw socket) or in
/// UDP to port 4500 (NAT-T), plus IKE with the non-ESP marker.
pub struct EspInjector {
    raw: i32,
    udp: UdpSocket,
}

impl EspInjector {
    pub fn new(ns: &Netns) -> Result<EspInjector> {
        let (raw, udp) = ns.run_in(|| -> Result<(i32, UdpSocket)> {
            // SAFETY: plain socket(2) call.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ESP) };
            if fd < 0 {
                bail!("raw ESP socket: {}", std::io::Error::last_os_error());
            }
            let udp = UdpSocket::bind("0.0.0.0:4500").context("binding UDP 4500")?;
            Ok((fd, udp))
        })??;
        Ok(EspInjector { raw, udp })
    }

    /// One ESP packet (protocol 50) to `dst`.
    pub fn send_esp(&self, dst: Ipv4Addr, esp: &[u8]) -> Result<()> {
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(dst.octets()),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: valid fd, buffer and address of the stated sizes.
        let n = unsafe {
            libc::sendto(
                self.raw,
                esp.as_ptr() as *const _,
                esp.len(),
                0,
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        if n < 0 {
            bail!("sending ESP: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// One ESP-in-UDP packet to `dst`:4500.
    pub fn send_esp_in_udp(&self, dst: Ipv4Addr, esp: &[u8]) -> Result<()> {
        self.udp
            .send_to(esp, SocketAddr::V4(SocketAddrV4::new(dst, 4500)))
            .context("sending ESP-in-UDP")?;
        Ok(())
    }

    /// An IKE message on 4500: zero marker, then an IKE header.
    pub fn send_ike(&self, dst: Ipv4Addr) -> Result<()> {
        let mut p = vec![0u8; 4];
        p.extend_from_slice(&[0x22; 28]);
        self.send_esp_in_udp(dst, &p)
    }
}

/// Whether this kernel can hold an AES-GCM ESP state, as Docker's
/// encrypted overlay needs (the machines these tests were written on
/// cannot): asked of a throw-away namespace's kernel.
pub fn kernel_has_esp() -> bool {
    let Ok(ns) = Netns::new("esp-probe") else {
        return false;
    };
    ns.ip(&[
        "xfrm",
        "state",
        "add",
        "src",
        "10.0.0.1",
        "dst",
        "10.0.0.2",
        "proto",
        "esp",
        "spi",
        "0x100",
        "mode",
        "transport",
        "aead",
        "rfc4106(gcm(aes))",
        "0x0102030405060708090a0b0c0d0e0f1011121314",
        "128",
    ])
    .is_ok()
}

impl Drop for EspInjector {
    fn drop(&mut self) {
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(self.raw) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips() {
        let sa = EspSa::new(0x1234_5678, [7; 16], [1, 2, 3, 4]);
        for len in [0usize, 1, 2, 3, 20, 1400] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let pkt = sa.seal(42, &payload, NEXT_HEADER_IPV4).expect("seal");
            assert_eq!(&pkt[..4], &0x1234_5678u32.to_be_bytes());
            assert_eq!(
                (pkt.len() - 8 - IV_LEN - ICV_LEN) % 4,
                0,
                "RFC 4303 alignment"
            );
            let (seq, back, next) = sa.open(&pkt).expect("open");
            assert_eq!((seq, back, next), (42, payload, NEXT_HEADER_IPV4));
        }
    }

    #[test]
    fn tampering_is_detected() {
        let sa = EspSa::new(1, [9; 16], [0; 4]);
        let mut pkt = sa.seal(1, b"secret", NEXT_HEADER_IPV4).expect("seal");
        let last = pkt.len() - 1;
        pkt[last] ^= 1;
        assert!(sa.open(&pkt).is_err());
    }
}
