//! A scripted POP3 server for what a real one will not do: duplicate or missing UIDLs, no TOP,
//! a stripped STLS capability, stalls and endless lines. Plain TCP on 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// How the fake server misbehaves.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// UIDL per message (None: the message has no UIDL); `uidl = false` disables the command.
    pub uidls: Vec<Option<String>>,
    /// Whether UIDL is supported at all.
    pub uidl: bool,
    /// Whether TOP is supported.
    pub top: bool,
    /// Advertise STLS (it is never actually offered: a stripping attacker's view).
    pub stls: bool,
    /// Accept the connection and never say anything.
    pub stall: bool,
    /// Send a greeting line that never ends.
    pub endless_greeting: bool,
    /// SASL mechanisms offered (PLAIN, XOAUTH2, OAUTHBEARER are understood).
    pub sasl: Vec<String>,
    /// The password (PLAIN) or bearer token (OAuth) that logs in.
    pub secret: String,
    /// OAuth tokens log in once each (as if each expired after use); `secret` is their prefix.
    pub single_use_tokens: bool,
    /// Answer QUIT +OK but keep the messages marked for deletion (a lying server).
    pub ignore_deletes: bool,
    /// Keep the messages' line ends as given (CRLF lines, a bare LF inside one is data) and
    /// stuff only after CRLF, as a server that frames by CRLF does.
    pub raw_line_ends: bool,
    /// UIDLs whose RETR is refused, every time (a message the server cannot read).
    pub refuse_retr: Vec<String>,
    /// Advertise UTF8 (RFC 6856) and accept the command.
    pub utf8: bool,
    /// Advertise UTF8 but refuse the command.
    pub refuse_utf8: bool,
}

/// The messages on the server: (UIDL, body with CRLF line ends).
pub type Mailbox = Vec<(Option<String>, Vec<u8>)>;

/// Shared mailbox and what the server saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Commands received, in order (passwords included: tests check they were never sent).
    pub commands: Vec<String>,
    /// OAuth bearer tokens presented, in order.
    pub tokens: Vec<String>,
}

/// A running fake server.
pub struct FakePop3 {
    /// Its port.
    pub port: u16,
    /// The messages still on the server (CRLF line ends).
    pub mailbox: Arc<Mutex<Mailbox>>,
    /// What it saw.
    pub seen: Arc<Mutex<Seen>>,
}

impl FakePop3 {
    /// Starts serving `messages` (LF line ends) with `script`.
    pub fn start(script: Script, messages: &[Vec<u8>]) -> FakePop3 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mailbox: Mailbox = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let crlf = match script.raw_line_ends {
                    true => m.clone(),
                    false => String::from_utf8_lossy(m)
                        .replace('\n', "\r\n")
                        .into_bytes(),
                };
                (script.uidls.get(i).cloned().flatten(), crlf)
            })
            .collect();
        let mailbox = Arc::new(Mutex::new(mailbox));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (mb, sn) = (mailbox.clone(), seen.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (script, mb, sn) = (script.clone(), mb.clone(), sn.clone());
                thread::spawn(move || {
                    let _ = session(stream, &script, &mb, &sn);
                });
            }
        });
        FakePop3 {
            port,
            mailbox,
            seen,
        }
    }
}

/// Dot-stuffing: a dot at the start of a line (after CRLF) is doubled.
fn stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut line_start = true;
    for (i, &b) in body.iter().enumerate() {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n' && i > 0 && body[i - 1] == b'\r';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

fn session(
    stream: TcpStream,
    script: &Script,
    mailbox: &Mutex<Mailbox>,
    seen: &Mutex<Seen>,
) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    if script.stall {
        std::thread::sleep(std::time::Duration::from_secs(30));
        return Ok(());
    }
    if script.endless_greeting {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..64 {
            out.write_all(&chunk)?;
        }
        return Ok(());
    }
    out.write_all(b"+OK fake POP3 ready\r\n")?;
    let mut reader = BufReader::new(stream);
    let mut deleted: Vec<usize> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        seen.lock().unwrap().commands.push(cmd.clone());
        let mut words = cmd.split(' ');
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        let arg: Option<usize> = words.next().and_then(|w| w.parse().ok());
        let msgs = mailbox.lock().unwrap().clone();
        let get =
            |n: Option<usize>| n.filter(|&n| n >= 1 && n <= msgs.len() && !deleted.contains(&n));
        let reply: Vec<u8> = match verb.as_str() {
            "CAPA" => {
                let mut caps = String::from("+OK\r\nUSER\r\nPIPELINING\r\n");
                if script.uidl {
                    caps.push_str("UIDL\r\n");
                }
                if script.top {
                    caps.push_str("TOP\r\n");
                }
                if script.stls {
                    caps.push_str("STLS\r\n");
                }
                if !script.sasl.is_empty() {
                    caps.push_str(&format!("SASL {}\r\n", script.sasl.join(" ")));
                }
                if script.utf8 || script.refuse_utf8 {
                    caps.push_str("UTF8 USER\r\n");
                }
                caps.push_str(".\r\n");
                caps.into_bytes()
            }
            "USER" | "PASS" | "NOOP" | "RSET" => b"+OK\r\n".to_vec(),
            "UTF8" if script.utf8 => b"+OK UTF8 enabled\r\n".to_vec(),
            "UTF8" => b"-ERR not here\r\n".to_vec(),
            "STLS" => b"-ERR not today\r\n".to_vec(),
            "AUTH" => {
                let mech = cmd.split(' ').nth(1).unwrap_or("").to_ascii_uppercase();
                let ir = cmd.split(' ').nth(2).unwrap_or("");
                let decoded = B64.decode(ir).unwrap_or_default();
                let text = String::from_utf8_lossy(&decoded).into_owned();
                let bearer = |head: &str| {
                    let token = text
                        .strip_prefix(head)
                        .and_then(|t| t.strip_suffix("\x01\x01"))
                        .and_then(|t| t.strip_prefix("auth=Bearer "))?
                        .to_string();
                    let mut seen = seen.lock().unwrap();
                    let fresh = !seen.tokens.contains(&token);
                    seen.tokens.push(token.clone());
                    Some(if script.single_use_tokens {
                        fresh && token.starts_with(&script.secret)
                    } else {
                        token == script.secret
                    })
                };
                let good = match mech.as_str() {
                    "PLAIN" => text == format!("\0u\0{}", script.secret),
                    "XOAUTH2" => bearer("user=u\x01").unwrap_or(false),
                    "OAUTHBEARER" => bearer("n,a=u,\x01").unwrap_or(false),
                    _ => false,
                };
                if good && script.sasl.contains(&mech) {
                    b"+OK logged in\r\n".to_vec()
                } else if mech.contains("OAUTH") {
                    // RFC 7628: an error challenge, which the client must answer before -ERR.
                    let challenge = B64.encode(r#"{"status":"invalid_token"}"#);
                    out.write_all(format!("+ {challenge}\r\n").as_bytes())?;
                    line.clear();
                    reader.read_line(&mut line)?;
                    seen.lock()
                        .unwrap()
                        .commands
                        .push(format!("(answer) {}", line.trim_end()));
                    b"-ERR [AUTH] invalid token\r\n".to_vec()
                } else {
                    b"-ERR [AUTH] bad credentials\r\n".to_vec()
                }
            }
            "STAT" => format!("+OK {} 0\r\n", msgs.len()).into_bytes(),
            "LIST" => {
                let mut r = String::from("+OK\r\n");
                for (i, (_, m)) in msgs.iter().enumerate() {
                    if !deleted.contains(&(i + 1)) {
                        r.push_str(&format!("{} {}\r\n", i + 1, m.len()));
                    }
                }
                r.push_str(".\r\n");
                r.into_bytes()
            }
            "UIDL" if script.uidl => {
                let mut r = String::from("+OK\r\n");
                for (i, (u, _)) in msgs.iter().enumerate() {
                    if let Some(u) = u
                        && !deleted.contains(&(i + 1))
                    {
                        r.push_str(&format!("{} {u}\r\n", i + 1));
                    }
                }
                r.push_str(".\r\n");
                r.into_bytes()
            }
            "TOP" if script.top => match get(arg) {
                Some(n) => {
                    let m = &msgs[n - 1].1;
                    let end = m
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map_or(m.len(), |p| p + 4);
                    let mut r = b"+OK\r\n".to_vec();
                    r.extend(stuff(&m[..end]));
                    r
                }
                None => b"-ERR no such message\r\n".to_vec(),
            },
            "RETR" => match get(arg) {
                Some(n)
                    if msgs[n - 1]
                        .0
                        .as_ref()
                        .is_some_and(|id| script.refuse_retr.contains(id)) =>
                {
                    b"-ERR [SYS/PERM] message is corrupt\r\n".to_vec()
                }
                Some(n) => {
                    let mut r = b"+OK\r\n".to_vec();
                    r.extend(stuff(&msgs[n - 1].1));
                    r
                }
                None => b"-ERR no such message\r\n".to_vec(),
            },
            "DELE" => match get(arg) {
                Some(n) => {
                    deleted.push(n);
                    b"+OK\r\n".to_vec()
                }
                None => b"-ERR no such message\r\n".to_vec(),
            },
            "QUIT" if script.ignore_deletes => {
                out.write_all(b"+OK bye\r\n")?;
                return Ok(());
            }
            "QUIT" => {
                let mut mb = mailbox.lock().unwrap();
                let mut i = 0;
                mb.retain(|_| {
                    i += 1;
                    !deleted.contains(&i)
                });
                out.write_all(b"+OK bye\r\n")?;
                return Ok(());
            }
            _ => b"-ERR unknown command\r\n".to_vec(),
        };
        out.write_all(&reply)?;
    }
}
