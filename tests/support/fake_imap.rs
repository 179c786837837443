//! A scripted IMAP server for what a real one will not do: folder names that try to leave the
//! Maildir, answers for UIDs nobody asked for, literals that never end, replies to tags never
//! sent, lines megabytes long, capabilities that lie. Plain TCP on 127.0.0.1; every folder
//! holds the same messages.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

/// How the fake server misbehaves.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// CAPABILITY list (default "IMAP4rev1 UIDPLUS").
    pub caps: Option<String>,
    /// LIST answers, each the text after `* LIST ` (attributes, delimiter, name as sent).
    pub folders: Vec<String>,
    /// Messages (UID, body with CRLF line ends) in every folder.
    pub messages: Vec<(u32, Vec<u8>)>,
    /// A message sent with every body fetch although its UID was not asked for.
    pub unasked: Option<(u32, Vec<u8>)>,
    /// A body fetch announces a literal, sends part of it and then nothing.
    pub stall_in_literal: bool,
    /// A body fetch begins with an untagged line of this many bytes.
    pub long_line: Option<usize>,
    /// LOGIN is answered with a tag that was never sent.
    pub wrong_tag: bool,
    /// An `[ALERT]` sent with every LOGIN and SELECT/EXAMINE completion.
    pub alert: Option<String>,
    /// UIDs whose body is never sent: a body fetch that asks for one completes with NO (as
    /// Gmail does for a message it cannot read).
    pub refuse_fetch: Vec<u32>,
    /// The hierarchy delimiter (default '/').
    pub delimiter: Option<char>,
    /// The NAMESPACE reply after `* NAMESPACE ` (advertise NAMESPACE in `caps` too).
    pub namespace: Option<String>,
}

/// A running fake server.
pub struct FakeImap {
    /// Its port.
    pub port: u16,
    /// Commands received, in order.
    pub commands: Arc<Mutex<Vec<String>>>,
}

impl FakeImap {
    /// Starts serving with `script`.
    pub fn start(script: Script) -> FakeImap {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let commands = Arc::new(Mutex::new(Vec::new()));
        let seen = commands.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (script, seen) = (script.clone(), seen.clone());
                thread::spawn(move || {
                    let _ = session(stream, &script, &seen);
                });
            }
        });
        FakeImap { port, commands }
    }
}

/// The UIDs of a UID set (`1:*`, `3,5:7`) among those that exist.
fn uid_set(set: &str, existing: &[u32]) -> Vec<u32> {
    let max = existing.iter().copied().max().unwrap_or(0);
    let bound = |s: &str| {
        if s == "*" {
            max
        } else {
            s.parse().unwrap_or(0)
        }
    };
    let mut out = Vec::new();
    for part in set.split(',') {
        let (a, b) = match part.split_once(':') {
            Some((a, b)) => (bound(a), bound(b)),
            None => (bound(part), bound(part)),
        };
        let (lo, hi) = (a.min(b), a.max(b));
        out.extend(existing.iter().copied().filter(|u| (lo..=hi).contains(u)));
    }
    out
}

fn fetch_body(out: &mut TcpStream, seq: usize, uid: u32, body: &[u8]) -> std::io::Result<()> {
    out.write_all(
        format!(
            "* {seq} FETCH (UID {uid} FLAGS (\\Seen) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" \
             RFC822.SIZE {} BODY[] {{{}}}\r\n",
            body.len(),
            body.len()
        )
        .as_bytes(),
    )?;
    out.write_all(body)?;
    out.write_all(b")\r\n")
}

fn session(stream: TcpStream, script: &Script, seen: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let caps = script
        .caps
        .clone()
        .unwrap_or_else(|| "IMAP4rev1 UIDPLUS".to_string());
    out.write_all(b"* OK fake IMAP ready\r\n")?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let uids: Vec<u32> = script.messages.iter().map(|(u, _)| *u).collect();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        seen.lock().unwrap().push(cmd.clone());
        let mut words = cmd.splitn(3, ' ');
        let tag = words.next().unwrap_or("").to_string();
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        let args = words.next().unwrap_or("").to_string();
        let reply = match verb.as_str() {
            "CAPABILITY" => format!("* CAPABILITY {caps}\r\n{tag} OK done\r\n"),
            "LOGIN" if script.wrong_tag => "zz99 OK logged in\r\n".to_string(),
            "LOGIN" => match &script.alert {
                Some(text) => format!("* OK [ALERT] {text}\r\n{tag} OK logged in\r\n"),
                None => format!("{tag} OK logged in\r\n"),
            },
            "LIST" if args.ends_with("\"\"") => {
                let d = script.delimiter.unwrap_or('/');
                format!("* LIST (\\Noselect) \"{d}\" \"\"\r\n{tag} OK done\r\n")
            }
            "NAMESPACE" => match &script.namespace {
                Some(n) => format!("* NAMESPACE {n}\r\n{tag} OK done\r\n"),
                None => format!("{tag} BAD not offered\r\n"),
            },
            "LIST" => {
                let mut r: String = script
                    .folders
                    .iter()
                    .map(|f| format!("* LIST {f}\r\n"))
                    .collect();
                r.push_str(&format!("{tag} OK done\r\n"));
                r
            }
            "SELECT" | "EXAMINE" => format!(
                "* {} EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT {}] ok\r\n{}{tag} OK [READ-ONLY] done\r\n",
                uids.len(),
                uids.iter().max().map_or(1, |u| u + 1),
                script
                    .alert
                    .as_ref()
                    .map(|a| format!("* OK [ALERT] {a}\r\n"))
                    .unwrap_or_default()
            ),
            "UID" if args.to_ascii_uppercase().starts_with("FETCH") => {
                let set = args.split(' ').nth(1).unwrap_or("");
                let wanted = uid_set(set, &uids);
                if args.contains("BODY.PEEK[]") {
                    if let Some(n) = script.long_line {
                        out.write_all(b"* OK ")?;
                        out.write_all(&vec![b'x'; n])?;
                        out.write_all(b"\r\n")?;
                    }
                    if script.stall_in_literal {
                        out.write_all(b"* 1 FETCH (UID 1 BODY[] {100000}\r\nFrom: a\r\n")?;
                        thread::sleep(std::time::Duration::from_secs(30));
                        return Ok(());
                    }
                    if let Some((uid, body)) = &script.unasked {
                        fetch_body(&mut out, 99, *uid, body)?;
                    }
                    for (i, (uid, body)) in script.messages.iter().enumerate() {
                        if wanted.contains(uid) && !script.refuse_fetch.contains(uid) {
                            fetch_body(&mut out, i + 1, *uid, body)?;
                        }
                    }
                    if wanted.iter().any(|u| script.refuse_fetch.contains(u)) {
                        format!("{tag} NO Some messages could not be FETCHed (Failure)\r\n")
                    } else {
                        format!("{tag} OK done\r\n")
                    }
                } else {
                    let mut r = String::new();
                    for (i, (uid, body)) in script.messages.iter().enumerate() {
                        if wanted.contains(uid) {
                            r.push_str(&format!(
                                "* {} FETCH (UID {uid} RFC822.SIZE {})\r\n",
                                i + 1,
                                body.len()
                            ));
                        }
                    }
                    r.push_str(&format!("{tag} OK done\r\n"));
                    r
                }
            }
            "UID" if args.to_ascii_uppercase().starts_with("SEARCH UID ") => {
                let found = uid_set(args.split(' ').nth(2).unwrap_or(""), &uids);
                let found: String = found.iter().map(|u| format!(" {u}")).collect();
                format!("* SEARCH{found}\r\n{tag} OK done\r\n")
            }
            "LOGOUT" => {
                out.write_all(format!("* BYE bye\r\n{tag} OK done\r\n").as_bytes())?;
                return Ok(());
            }
            _ => format!("{tag} OK done\r\n"),
        };
        out.write_all(reply.as_bytes())?;
    }
}
