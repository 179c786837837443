//! An async POP3 client over the sans-IO codec: timeouts on every wait, STLS, SASL, pipelining,
//! and message bodies streamed to a sink as they arrive.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use md5::{Digest, Md5};

use super::Pop3Error;
use super::codec::{
    self, BodyDecoder, Capabilities, MAX_LINE, Reply, apop_timestamp, parse_capa,
    parse_listing_line,
};
use crate::config::AuthMech;
use crate::credentials::Secret;
use crate::net::{BoxIo, Conn, Endpoint, Fingerprint};
use crate::text::sanitize;

/// Receives message bodies from [`Client::retr_pipelined`].
pub trait RetrSink {
    /// A message's data begins (its `+OK` arrived).
    fn begin(&mut self, msg: u32) -> anyhow::Result<()>;
    /// A piece of its unstuffed body, with line ends as sent (CRLF).
    fn data(&mut self, chunk: &[u8]) -> anyhow::Result<()>;
    /// The message is complete.
    fn end(&mut self, msg: u32) -> anyhow::Result<()>;
    /// The server refused to send it (`why` in its words); returns whether the sink takes
    /// that and the others are still read.
    fn refused(&mut self, msg: u32, why: &str) -> bool;
}

/// A connected POP3 session.
pub struct Client {
    conn: Conn,
    greeting: String,
    scratch: Vec<u8>,
    /// The server's last status line ended in CRLF: its bodies are framed by CRLF lines.
    crlf: bool,
}

type Result<T> = std::result::Result<T, Pop3Error>;

impl Client {
    /// Takes a fresh connection and reads the greeting.
    pub async fn start(io: BoxIo, timeout: Duration) -> Result<Client> {
        let mut client = Client {
            conn: Conn::new(io, timeout),
            greeting: String::new(),
            scratch: Vec::with_capacity(64 * 1024),
            crlf: true,
        };
        match client.read_reply("the greeting").await? {
            Reply::Ok { text, .. } => client.greeting = text,
            reply => return Err(refused("connect", reply)),
        }
        Ok(client)
    }

    /// The server's greeting text (untrusted: sanitise before printing).
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    async fn read_line(&mut self, what: &str) -> Result<Vec<u8>> {
        loop {
            let pending = self.conn.buffered();
            if let Some(len) = codec::line_len(pending) {
                let line = pending[..len].to_vec();
                self.conn.consume(len);
                return Ok(line);
            }
            if pending.len() > MAX_LINE {
                return Err(Pop3Error::Protocol(format!(
                    "a line longer than {MAX_LINE} bytes in {what}"
                )));
            }
            // A Pop3Error, so that a link lost in the middle of a body is told from a local
            // failure of the sink.
            self.conn.fill(what).await.map_err(Pop3Error::from)?;
        }
    }

    /// Reads one status line.
    pub async fn read_reply(&mut self, what: &str) -> Result<Reply> {
        let line = self.read_line(what).await?;
        self.crlf = line.ends_with(b"\r\n");
        crate::report::trace("S", &line);
        codec::parse_reply(&line)
            .map_err(|e| Pop3Error::Protocol(format!("{} in {what}", sanitize(&e.0, 200))))
    }

    async fn write(&mut self, data: &[u8], what: &str) -> Result<()> {
        Ok(self.conn.write_all(data, what).await?)
    }

    /// Sends one command line (CR, LF and NUL are refused: they would inject commands).
    async fn send(&mut self, line: &str) -> Result<()> {
        if line.contains(['\r', '\n', '\0']) {
            return Err(Pop3Error::Protocol(
                "refusing to send a command with a line break in it".to_string(),
            ));
        }
        let verb = line.split(' ').next().unwrap_or("").to_string();
        crate::report::trace("C", line.as_bytes());
        self.write(format!("{line}\r\n").as_bytes(), &verb).await
    }

    /// Sends a SASL continuation answer (never shown in the trace).
    async fn send_answer(&mut self, answer: &str) -> Result<()> {
        if answer.contains(['\r', '\n', '\0']) {
            return Err(Pop3Error::Protocol(
                "refusing to send an answer with a line break in it".to_string(),
            ));
        }
        crate::report::trace("C+", b"");
        self.write(format!("{answer}\r\n").as_bytes(), "AUTH").await
    }

    /// Sends a command and expects `+OK`; returns its text.
    async fn simple(&mut self, line: &str, verb: &str) -> Result<String> {
        self.send(line).await?;
        match self.read_reply(verb).await? {
            Reply::Ok { text, .. } => Ok(text),
            reply => Err(refused(verb, reply)),
        }
    }

    /// Reads a multi-line body, handing each unstuffed piece to `sink`.
    async fn read_body<F>(&mut self, what: &str, mut sink: F) -> anyhow::Result<()>
    where
        F: FnMut(&[u8]) -> anyhow::Result<()>,
    {
        // A server that ends its own lines in CRLF frames bodies so (RFC 1939): a bare LF is
        // data; one that does not is read the tolerant way.
        let mut decoder = if self.crlf {
            BodyDecoder::crlf_lines()
        } else {
            BodyDecoder::new()
        };
        loop {
            if !self.conn.buffered().is_empty() {
                self.scratch.clear();
                let used = decoder.decode(self.conn.buffered(), &mut self.scratch);
                self.conn.consume(used);
                if !self.scratch.is_empty() {
                    sink(&self.scratch)?;
                }
                if decoder.is_done() {
                    return Ok(());
                }
            }
            // A Pop3Error, so that a link lost in the middle of a body is told from a local
            // failure of the sink.
            self.conn.fill(what).await.map_err(Pop3Error::from)?;
        }
    }

    async fn read_body_to_vec(&mut self, what: &str, limit: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let result = self
            .read_body(what, |chunk| {
                if out.len() + chunk.len() > limit {
                    anyhow::bail!("more than {limit} bytes");
                }
                out.extend_from_slice(chunk);
                Ok(())
            })
            .await;
        match result {
            Ok(()) => Ok(out),
            Err(e) => match e.downcast::<Pop3Error>() {
                Ok(p) => Err(p),
                Err(e) => Err(Pop3Error::Protocol(format!("{what}: {e}"))),
            },
        }
    }

    /// Reads a multi-line body line by line (each with its line end), so that a listing of a
    /// large mailbox is parsed as it arrives rather than held whole.
    async fn read_lines<F>(&mut self, what: &str, mut each: F) -> Result<()>
    where
        F: FnMut(&[u8]) -> Result<()>,
    {
        let mut partial = Vec::new();
        let mut total = 0;
        let result = self
            .read_body(what, |mut chunk| {
                total += chunk.len();
                if total > MAX_LISTING {
                    anyhow::bail!("more than {MAX_LISTING} bytes");
                }
                loop {
                    let end = memchr::memchr(b'\n', chunk);
                    if partial.len() + end.map_or(chunk.len(), |e| e + 1) > MAX_LISTING_LINE {
                        anyhow::bail!("a line longer than {MAX_LISTING_LINE} bytes");
                    }
                    let Some(end) = end else { break };
                    let (line, rest) = chunk.split_at(end + 1);
                    if partial.is_empty() {
                        each(line)?;
                    } else {
                        partial.extend_from_slice(line);
                        each(&partial)?;
                        partial.clear();
                    }
                    chunk = rest;
                }
                partial.extend_from_slice(chunk);
                Ok(())
            })
            .await;
        match result {
            Ok(()) if partial.is_empty() => Ok(()),
            Ok(()) => each(&partial),
            Err(e) => match e.downcast::<Pop3Error>() {
                Ok(p) => Err(p),
                Err(e) => Err(Pop3Error::Protocol(format!("{what}: {e}"))),
            },
        }
    }

    /// CAPA; a server without it gets empty capabilities (`known == false`).
    pub async fn capa(&mut self) -> Result<Capabilities> {
        self.send("CAPA").await?;
        match self.read_reply("CAPA").await? {
            Reply::Ok { .. } => {
                let body = self.read_body_to_vec("the CAPA list", 1 << 20).await?;
                Ok(parse_capa(&body))
            }
            _ => Ok(Capabilities::default()),
        }
    }

    /// UTF8 (RFC 6856): messages are sent as they are, raw UTF-8 headers included.
    pub async fn utf8(&mut self) -> Result<()> {
        self.simple("UTF8", "UTF8").await.map(|_| ()).map_err(|e| match e {
            Pop3Error::Refused { command, code, text } => Pop3Error::Refused {
                command,
                code,
                text: format!(
                    "{text} (the server offers UTF8 but will not turn it on; without it, it may \
                     send made-up substitutes for messages with UTF-8 headers, which mailferry \
                     does not take for the mail)"
                ),
            },
            e => e,
        })
    }

    /// STLS: upgrades the connection to TLS. Bytes the server sent after its `+OK` would be
    /// read as if they came over TLS, so they are refused (RFC 2595 response injection).
    pub async fn stls(mut self, endpoint: &Endpoint<'_>) -> Result<(Client, Fingerprint)> {
        self.simple("STLS", "STLS").await?;
        let timeout = self.conn.timeout();
        let io = self.conn.into_io().ok_or_else(|| {
            Pop3Error::Protocol(
                "the server sent data after its STLS reply, before TLS began (possible injection)"
                    .to_string(),
            )
        })?;
        let (io, fingerprint) = endpoint.secure(io).await?;
        let client = Client {
            conn: Conn::new(io, timeout),
            greeting: self.greeting,
            scratch: self.scratch,
            crlf: self.crlf,
        };
        Ok((client, fingerprint))
    }

    /// Logs in with the chosen (or best offered) mechanism.
    pub async fn login(
        &mut self,
        mech: AuthMech,
        user: &str,
        secret: &Secret,
        caps: &Capabilities,
    ) -> Result<()> {
        let mech = match mech {
            AuthMech::Auto => choose_mechanism(caps, &self.greeting)?,
            m => m,
        };
        let fail = |mechanism: &str, reply: Reply| match reply {
            Reply::Err { code, text } => Pop3Error::AuthFailed {
                user: sanitize(user, 100),
                mechanism: mechanism.to_string(),
                code,
                text: sanitize(&text, 300),
            },
            other => Pop3Error::Protocol(format!("unexpected reply to {mechanism}: {other:?}")),
        };
        let pw = secret.expose();
        match mech {
            AuthMech::User | AuthMech::Auto => {
                self.send(&format!("USER {user}")).await?;
                match self.read_reply("USER").await? {
                    Reply::Ok { .. } => {}
                    r => return Err(fail("USER/PASS", r)),
                }
                self.send(&format!("PASS {pw}")).await?;
                match self.read_reply("PASS").await? {
                    Reply::Ok { .. } => Ok(()),
                    r => Err(fail("USER/PASS", r)),
                }
            }
            AuthMech::Apop => {
                let stamp = apop_timestamp(&self.greeting)
                    .ok_or(Pop3Error::Missing("APOP (no timestamp in the greeting)"))?;
                let digest = Md5::digest(format!("{stamp}{pw}").as_bytes());
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                self.send(&format!("APOP {user} {hex}")).await?;
                match self.read_reply("APOP").await? {
                    Reply::Ok { .. } => Ok(()),
                    r => Err(fail("APOP", r)),
                }
            }
            AuthMech::Plain => {
                let ir = B64.encode(format!("\0{user}\0{pw}"));
                self.sasl("PLAIN", &ir, "")
                    .await
                    .map_err(|r| r.into_error(&fail, "AUTH PLAIN"))
            }
            AuthMech::Xoauth2 => {
                let ir = B64.encode(format!("user={user}\x01auth=Bearer {pw}\x01\x01"));
                self.sasl("XOAUTH2", &ir, "")
                    .await
                    .map_err(|r| r.into_error(&fail, "AUTH XOAUTH2"))
            }
            AuthMech::Oauthbearer => {
                let ir = B64.encode(format!("n,a={user},\x01auth=Bearer {pw}\x01\x01"));
                self.sasl("OAUTHBEARER", &ir, "AQ==")
                    .await
                    .map_err(|r| r.into_error(&fail, "AUTH OAUTHBEARER"))
            }
            AuthMech::Login => {
                self.send("AUTH LOGIN").await?;
                for answer in [B64.encode(user), B64.encode(pw)] {
                    match self.read_reply("AUTH LOGIN").await? {
                        Reply::Continue(_) => self.send_answer(&answer).await?,
                        r => return Err(fail("AUTH LOGIN", r)),
                    }
                }
                match self.read_reply("AUTH LOGIN").await? {
                    Reply::Ok { .. } => Ok(()),
                    r => Err(fail("AUTH LOGIN", r)),
                }
            }
        }
    }

    /// A one-step SASL exchange with an initial response; a challenge after it (an error
    /// report for the OAuth mechanisms) is answered with `abort` so the server sends -ERR.
    async fn sasl(
        &mut self,
        mech: &str,
        initial: &str,
        abort: &str,
    ) -> std::result::Result<(), SaslFailure> {
        // RFC 5034 allows an initial response only if the whole line fits in 255 octets.
        if initial.len() + mech.len() + 6 <= 255 {
            self.send(&format!("AUTH {mech} {initial}"))
                .await
                .map_err(SaslFailure::Other)?;
        } else {
            self.send(&format!("AUTH {mech}"))
                .await
                .map_err(SaslFailure::Other)?;
            match self.read_reply("AUTH").await.map_err(SaslFailure::Other)? {
                Reply::Continue(_) => self
                    .send_answer(initial)
                    .await
                    .map_err(SaslFailure::Other)?,
                r => return Err(SaslFailure::Reply(r)),
            }
        }
        loop {
            match self.read_reply("AUTH").await.map_err(SaslFailure::Other)? {
                Reply::Ok { .. } => return Ok(()),
                Reply::Continue(_) => self.send_answer(abort).await.map_err(SaslFailure::Other)?,
                r => return Err(SaslFailure::Reply(r)),
            }
        }
    }

    /// UIDL for all messages, or `None` if the server does not support it.
    pub async fn uidl(&mut self) -> Result<Option<Vec<(u32, Box<str>)>>> {
        self.send("UIDL").await?;
        match self.read_reply("UIDL").await? {
            Reply::Ok { .. } => {}
            _ => return Ok(None),
        }
        let mut out = Vec::new();
        self.read_lines("the UIDL list", |line| {
            let (n, uidl) = parse_listing_line(line).ok_or_else(|| malformed("UIDL", line))?;
            // A valid UIDL is printable ASCII, so also UTF-8.
            match std::str::from_utf8(uidl) {
                Ok(uidl) if codec::valid_uidl(uidl.as_bytes()) => out.push((n, uidl.into())),
                _ => return Err(Pop3Error::Protocol(format!("invalid UIDL for message {n}"))),
            }
            Ok(())
        })
        .await?;
        Ok(Some(out))
    }

    /// LIST: message numbers and sizes.
    pub async fn list(&mut self) -> Result<Vec<(u32, u64)>> {
        self.simple("LIST", "LIST").await?;
        let mut out = Vec::new();
        self.read_lines("the LIST list", |line| {
            let parsed = parse_listing_line(line)
                .and_then(|(n, v)| Some((n, std::str::from_utf8(v).ok()?.parse::<u64>().ok()?)));
            out.push(parsed.ok_or_else(|| malformed("LIST", line))?);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// TOP n 0: the header of a message (for an identity when there is no UIDL).
    pub async fn top_header(&mut self, msg: u32) -> Result<Vec<u8>> {
        self.simple(&format!("TOP {msg} 0"), "TOP").await?;
        self.read_body_to_vec("a TOP reply", 16 << 20).await
    }

    /// Sends RETR for each of `msgs` at once (PIPELINING), to be read by
    /// [`Client::retr_read`] in the same order.
    pub async fn retr_send(&mut self, msgs: &[u32]) -> Result<()> {
        let batch: String = msgs.iter().map(|m| format!("RETR {m}\r\n")).collect();
        self.write(batch.as_bytes(), "RETR").await
    }

    /// Reads the replies to RETRs sent before, bodies streamed to `sink`.
    pub async fn retr_read(&mut self, msgs: &[u32], sink: &mut dyn RetrSink) -> anyhow::Result<()> {
        self.retr(msgs, msgs.len(), usize::MAX, sink).await
    }

    /// RETR of many messages with up to `window` commands in flight, bodies streamed to `sink`.
    pub async fn retr_pipelined(
        &mut self,
        msgs: &[u32],
        window: usize,
        sink: &mut dyn RetrSink,
    ) -> anyhow::Result<()> {
        self.retr(msgs, 0, window.max(1), sink).await
    }

    /// Reads the replies to RETR of `msgs`, of which `sent` were sent already, sending the
    /// others as the window allows.
    async fn retr(
        &mut self,
        msgs: &[u32],
        mut sent: usize,
        window: usize,
        sink: &mut dyn RetrSink,
    ) -> anyhow::Result<()> {
        let mut done = 0;
        while done < msgs.len() {
            let mut batch = String::new();
            while sent < msgs.len() && sent - done < window {
                batch.push_str(&format!("RETR {}\r\n", msgs[sent]));
                sent += 1;
            }
            if !batch.is_empty() {
                self.write(batch.as_bytes(), "RETR").await?;
            }
            let msg = msgs[done];
            match self.read_reply("a RETR reply").await? {
                Reply::Ok { .. } => {}
                reply @ Reply::Err { .. } => {
                    // No body follows a refusal: the next reply is the next message's.
                    let e = refused(&format!("RETR {msg}"), reply);
                    if !sink.refused(msg, &e.to_string()) {
                        return Err(e.into());
                    }
                    done += 1;
                    continue;
                }
                reply => return Err(refused(&format!("RETR {msg}"), reply).into()),
            }
            sink.begin(msg)?;
            self.read_body(&format!("message {msg}"), |chunk| sink.data(chunk))
                .await?;
            sink.end(msg)?;
            done += 1;
        }
        Ok(())
    }

    /// DELE of many messages, pipelined in windows. The deletions take effect only at QUIT.
    pub async fn dele_pipelined(&mut self, msgs: &[u32], window: usize) -> Result<()> {
        for chunk in msgs.chunks(window.max(1)) {
            let batch: String = chunk.iter().map(|m| format!("DELE {m}\r\n")).collect();
            self.write(batch.as_bytes(), "DELE").await?;
            for m in chunk {
                match self.read_reply("a DELE reply").await? {
                    Reply::Ok { .. } => {}
                    reply => return Err(refused(&format!("DELE {m}"), reply)),
                }
            }
        }
        Ok(())
    }

    /// QUIT; its `+OK` confirms that the deletions of this session were carried out.
    pub async fn quit(mut self) -> Result<()> {
        self.simple("QUIT", "QUIT").await.map(|_| ())
    }
}

enum SaslFailure {
    Reply(Reply),
    Other(Pop3Error),
}

impl SaslFailure {
    fn into_error(self, fail: &impl Fn(&str, Reply) -> Pop3Error, mech: &str) -> Pop3Error {
        match self {
            SaslFailure::Reply(r) => fail(mech, r),
            SaslFailure::Other(e) => e,
        }
    }
}

/// The longest line of a UIDL or LIST listing accepted (a valid one is under 90 bytes).
const MAX_LISTING_LINE: usize = 4096;
/// The largest UIDL or LIST listing accepted (millions of messages).
const MAX_LISTING: usize = 256 << 20;

fn malformed(command: &str, line: &[u8]) -> Pop3Error {
    Pop3Error::Protocol(format!(
        "malformed {command} line {:?}",
        sanitize(&String::from_utf8_lossy(line), 100)
    ))
}

fn refused(command: &str, reply: Reply) -> Pop3Error {
    match reply {
        Reply::Err { code, text } => Pop3Error::Refused {
            command: command.to_string(),
            code,
            text: sanitize(&text, 300),
        },
        other => Pop3Error::Protocol(format!(
            "unexpected reply to {command}: {}",
            sanitize(&format!("{other:?}"), 200)
        )),
    }
}

/// The password mechanism to use when the account says `auth = "auto"`.
fn choose_mechanism(caps: &Capabilities, greeting: &str) -> Result<AuthMech> {
    let has = |m: &str| caps.sasl.iter().any(|s| s == m);
    if has("PLAIN") {
        Ok(AuthMech::Plain)
    } else if caps.user || !caps.known {
        Ok(AuthMech::User)
    } else if has("LOGIN") {
        Ok(AuthMech::Login)
    } else if apop_timestamp(greeting).is_some() {
        Ok(AuthMech::Apop)
    } else {
        Err(Pop3Error::Missing(
            "a password login mechanism (USER, PLAIN, LOGIN or APOP)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// A server that answers each of `replies` after reading a command, in `piece`-byte writes.
    fn server(
        mut io: DuplexStream,
        replies: Vec<Vec<u8>>,
        piece: usize,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            io.write_all(b"+OK ready\r\n").await.unwrap();
            for reply in replies {
                let mut command = [0u8; 64];
                let _ = io.read(&mut command).await.unwrap();
                for chunk in reply.chunks(piece) {
                    io.write_all(chunk).await.unwrap();
                    tokio::task::yield_now().await;
                }
            }
        })
    }

    async fn client(replies: Vec<Vec<u8>>, piece: usize) -> Client {
        let (ours, theirs) = tokio::io::duplex(64);
        server(theirs, replies, piece);
        Client::start(Box::new(ours), Duration::from_secs(5))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn listings_are_read_line_by_line_over_any_read_boundaries() {
        let uidl = b"+OK\r\n1 a\r\n2 0123456789abcdef\r\n10 ..dot\r\n.\r\n".to_vec();
        let list = b"+OK 2 messages\r\n1 120\r\n2 7\r\n.\r\n".to_vec();
        for piece in [1, 2, 3, 7, 64] {
            let mut c = client(vec![uidl.clone(), list.clone()], piece).await;
            let uidls = c.uidl().await.unwrap().unwrap();
            let want: Vec<(u32, Box<str>)> = vec![
                (1, "a".into()),
                (2, "0123456789abcdef".into()),
                (10, "..dot".into()),
            ];
            assert_eq!(uidls, want, "piece {piece}");
            assert_eq!(c.list().await.unwrap(), vec![(1, 120), (2, 7)]);
        }
    }

    #[tokio::test]
    async fn malformed_and_overlong_listing_lines_are_errors() {
        let mut c = client(vec![b"+OK\r\n1 a\r\n2\r\n.\r\n".to_vec()], 5).await;
        let e = c.uidl().await.unwrap_err();
        assert!(e.to_string().contains("malformed UIDL line"), "{e}");
        let long = format!("+OK\r\n1 {}\r\n.\r\n", "x".repeat(MAX_LISTING_LINE));
        let mut c = client(vec![long.into_bytes()], 100).await;
        let e = c.list().await.unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
        let mut c = client(vec![b"+OK\r\n1 a\x01\r\n.\r\n".to_vec()], 5).await;
        let e = c.uidl().await.unwrap_err();
        assert!(e.to_string().contains("invalid UIDL"), "{e}");
    }
}
