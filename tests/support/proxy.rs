//! A TCP proxy between mailferry and the server that injects faults into what the server
//! sends: a cut after N bytes (a dropped connection), a stall (the server goes silent with the
//! connection open), a reset (RST), a slow trickle; or rewrites the server's lines (a real
//! server without one of its extensions).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What happens to the server's bytes on connections opened from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Passed on untouched.
    None,
    /// Cut (both directions closed) after this many bytes.
    Cut(usize),
    /// After this many bytes nothing more is passed on; the connection stays open.
    Stall(usize),
    /// Reset (RST) after this many bytes.
    Reset(usize),
    /// Passed on this many bytes at a time, with a pause of this many milliseconds.
    Trickle(usize, u64),
}

/// A running proxy; it serves until the test process ends.
pub struct Proxy {
    /// The port to connect to instead of the server's.
    pub port: u16,
    fault: Arc<Mutex<Fault>>,
}

impl Proxy {
    /// Forwards 127.0.0.1:`port` (returned) to 127.0.0.1:`upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let fault = Arc::new(Mutex::new(Fault::None));
        let current = fault.clone();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let f = *current.lock().unwrap();
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                thread::spawn(move || pump(c2, s2, Fault::None, false));
                thread::spawn(move || pump(server, client, f, true));
            }
        });
        Proxy { port, fault }
    }

    /// Forwards 127.0.0.1:`port` (returned) to 127.0.0.1:`upstream`, passing every line the
    /// server sends through `rewrite`.
    pub fn rewriting(upstream: u16, rewrite: fn(&str) -> String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                thread::spawn(move || pump(c2, s2, Fault::None, false));
                thread::spawn(move || pump_lines(server, client, rewrite));
            }
        });
        Proxy {
            port,
            fault: Arc::new(Mutex::new(Fault::None)),
        }
    }

    /// Connections opened from now on are cut after the server sent `bytes` (None: never).
    pub fn cut_after(&self, bytes: Option<usize>) {
        self.inject(bytes.map_or(Fault::None, Fault::Cut));
    }

    /// Connections opened from now on suffer `fault`.
    pub fn inject(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }
}

/// Passes bytes on; at the end closes `to` and, if `close_from`, `from` (the client-to-server
/// direction leaves the client socket to the other direction, so that a reset can be a reset).
fn pump(mut from: TcpStream, mut to: TcpStream, fault: Fault, close_from: bool) {
    let limit = match fault {
        Fault::Cut(n) | Fault::Stall(n) | Fault::Reset(n) => n,
        Fault::None | Fault::Trickle(..) => usize::MAX,
    };
    let mut sent = 0usize;
    let mut buf = [0u8; 8192];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let n = n.min(limit - sent);
        let ok = match fault {
            Fault::Trickle(chunk, pause) => buf[..n].chunks(chunk.max(1)).all(|piece| {
                thread::sleep(Duration::from_millis(pause));
                to.write_all(piece).is_ok()
            }),
            _ => to.write_all(&buf[..n]).is_ok(),
        };
        if !ok {
            break;
        }
        sent += n;
        if sent >= limit {
            break;
        }
    }
    match fault {
        Fault::Stall(_) if sent >= limit => {
            // Silent, but open: only the reader's timeout ends this.
            thread::sleep(Duration::from_secs(60));
        }
        Fault::Reset(_) if sent >= limit => {
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: a valid socket and a correctly sized option value.
            unsafe {
                libc::setsockopt(
                    to.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
            // Let the other direction let go of its copy of the socket; closing the last one
            // with a zero linger sends the RST.
            let _ = to.shutdown(Shutdown::Read);
            let _ = from.shutdown(Shutdown::Both);
            thread::sleep(Duration::from_millis(100));
            drop(to);
            return;
        }
        _ => {}
    }
    let _ = to.shutdown(Shutdown::Both);
    if close_from {
        let _ = from.shutdown(Shutdown::Both);
    }
}

fn pump_lines(from: TcpStream, mut to: TcpStream, rewrite: fn(&str) -> String) {
    let mut reader = BufReader::new(from.try_clone().unwrap());
    let mut line = Vec::new();
    while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
        let out = rewrite(&String::from_utf8_lossy(&line));
        if to.write_all(out.as_bytes()).is_err() {
            break;
        }
        line.clear();
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
