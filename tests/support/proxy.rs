//! A TCP proxy between mailferry and the server that can cut a connection after the server
//! has sent N bytes (a dropped connection mid-response), or rewrite the server's lines (a real
//! server without one of its extensions).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

/// A running proxy; it serves until the test process ends.
pub struct Proxy {
    /// The port to connect to instead of the server's.
    pub port: u16,
    cut_after: Arc<AtomicUsize>,
}

impl Proxy {
    /// Forwards 127.0.0.1:`port` (returned) to 127.0.0.1:`upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let cut_after = Arc::new(AtomicUsize::new(usize::MAX));
        let cut = cut_after.clone();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let limit = cut.load(Ordering::SeqCst);
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                thread::spawn(move || pump(c2, s2, usize::MAX));
                thread::spawn(move || pump(server, client, limit));
            }
        });
        Proxy { port, cut_after }
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
                thread::spawn(move || pump(c2, s2, usize::MAX));
                thread::spawn(move || pump_lines(server, client, rewrite));
            }
        });
        Proxy {
            port,
            cut_after: Arc::new(AtomicUsize::new(usize::MAX)),
        }
    }

    /// Connections opened from now on are cut after the server sent `bytes` (None: never).
    pub fn cut_after(&self, bytes: Option<usize>) {
        self.cut_after
            .store(bytes.unwrap_or(usize::MAX), Ordering::SeqCst);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, limit: usize) {
    let mut sent = 0usize;
    let mut buf = [0u8; 8192];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let n = n.min(limit - sent);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n;
        if sent >= limit {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
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
