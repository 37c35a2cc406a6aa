//! Real traffic without outside tools: an HTTP server and client and a UDP
//! sender, each on sockets created inside a namespace.
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{bail, Context, Result};

use crate::netns::Netns;

/// A tiny HTTP/1.1 server: answers every request `200 OK` and closes.
pub struct HttpServer {
    stop: Arc<AtomicBool>,
    methods: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    pub fn start(ns: &Netns, addr: SocketAddr) -> Result<HttpServer> {
        let listener = ns.run_in(move || TcpListener::bind(addr))??;
        listener
            .set_nonblocking(true)
            .context("non-blocking listener")?;
        let stop = Arc::new(AtomicBool::new(false));
        let methods = Arc::new(Mutex::new(Vec::new()));
        let (s, m) = (stop.clone(), methods.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        if let Some(method) = serve(conn) {
                            if let Ok(mut v) = m.lock() {
                                v.push(method);
                            }
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(HttpServer {
            stop,
            methods,
            thread: Some(thread),
        })
    }

    /// Methods of the requests served so far, in order.
    pub fn methods(&self) -> Vec<String> {
        self.methods.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

fn serve(mut conn: TcpStream) -> Option<String> {
    conn.set_nonblocking(false).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let method = String::from_utf8_lossy(&buf).split(' ').next()?.to_owned();
    let body: &[u8] = if method == "HEAD" { b"" } else { b"ok" };
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n";
    conn.write_all(head).ok()?;
    conn.write_all(body).ok()?;
    Some(method)
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends `request` on a fresh connection from inside `ns` and reads the
/// whole answer (the server closes).
fn exchange(ns: &Netns, to: SocketAddr, request: String) -> Result<String> {
    ns.run_in(move || exchange_here(to, request))?
}

/// `exchange` from the calling thread's namespace.
fn exchange_here(to: SocketAddr, request: String) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).context("connecting")?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// One request on a fresh connection from inside `ns`; returns the status.
pub fn http_request(ns: &Netns, to: SocketAddr, method: &str, path: &str) -> Result<u16> {
    let (method, path) = (method.to_owned(), path.to_owned());
    ns.run_in(move || http_request_here(to, &method, &path))?
}

/// `http_request` from the calling thread's namespace (for a caller that
/// makes many, in a thread it moved there once).
pub fn http_request_here(to: SocketAddr, method: &str, path: &str) -> Result<u16> {
    let text = exchange_here(
        to,
        format!("{method} {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\r\n"),
    )?;
    match text.split(' ').nth(1).and_then(|s| s.parse().ok()) {
        Some(s) => Ok(s),
        None => bail!("no HTTP status in the answer: {text:?}"),
    }
}

/// Sends exactly `count` datagrams of `size` bytes from inside `ns`.
pub fn udp_send(ns: &Netns, to: SocketAddr, count: usize, size: usize) -> Result<()> {
    ns.run_in(move || -> Result<()> {
        let sock = UdpSocket::bind("0.0.0.0:0").context("binding UDP")?;
        let payload = vec![0x61u8; size];
        for _ in 0..count {
            sock.send_to(&payload, to).context("sending UDP")?;
        }
        Ok(())
    })?
}

/// GET `path` from `to` inside `ns`; the body of a 200 answer.
pub fn http_get(ns: &Netns, to: SocketAddr, path: &str) -> Result<String> {
    let text = exchange(
        ns,
        to,
        format!("GET {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\r\n"),
    )?;
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("no HTTP answer from {to}{path}");
    };
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("{to}{path}: {}", head.lines().next().unwrap_or_default());
    }
    // hyper sends small bodies whole; a chunked one is joined here.
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(dechunk(body));
    }
    Ok(body.to_owned())
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
