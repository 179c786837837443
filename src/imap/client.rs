//! An async IMAP client over the sans-IO codec: one response at a time, `BODY[]` literals
//! streamed to a sink as they arrive, every untagged response handed back (none dropped),
//! timeouts on every wait, commands pipelined where the caller asks.

use std::time::Duration;

use super::ImapError;
use super::codec::{self, Code, Fetch, Response, Status, StatusLine};
use crate::net::{BoxIo, Conn, Deflate, Endpoint, Fingerprint, NetError};
use crate::text::sanitize;

/// The longest response line (between literals) accepted.
const MAX_SEGMENT: usize = 16 << 20;
/// The longest literal held in memory (anything but a message body, which is streamed).
const MAX_INLINE_LITERAL: usize = 16 << 20;

/// Receives message bodies (`BODY[]` literals) and the FETCH responses around them.
pub trait FetchSink {
    /// A body of `len` bytes begins.
    fn begin(&mut self, len: usize) -> anyhow::Result<()>;
    /// Some of its bytes (CRLF line ends as sent).
    fn data(&mut self, chunk: &[u8]) -> anyhow::Result<()>;
    /// The FETCH response is complete; `fetch.body` says whether a body came with it.
    fn fetched(&mut self, fetch: &codec::Fetch) -> anyhow::Result<()>;
}

/// A sink that drops bodies (for commands that ask for none).
pub struct NoBodies;

impl FetchSink for NoBodies {
    fn begin(&mut self, _: usize) -> anyhow::Result<()> {
        Ok(())
    }
    fn data(&mut self, _: &[u8]) -> anyhow::Result<()> {
        Ok(())
    }
    fn fetched(&mut self, _: &codec::Fetch) -> anyhow::Result<()> {
        Ok(())
    }
}

/// A connected IMAP session.
pub struct Client {
    conn: Conn,
    next_tag: u32,
    /// Tags sent whose completion has not been read, oldest first: what a failed pipeline
    /// left behind is read off before the next command (see [`Client::settle`]).
    in_flight: Vec<String>,
    /// Capabilities, upper case.
    pub caps: Vec<String>,
}

type Result<T> = std::result::Result<T, ImapError>;

impl Client {
    /// Takes a fresh connection and reads the greeting.
    pub async fn start(io: BoxIo, timeout: Duration) -> Result<(Client, StatusLine)> {
        let mut client = Client {
            conn: Conn::new(io, timeout),
            next_tag: 1,
            in_flight: Vec::new(),
            caps: Vec::new(),
        };
        match client.read(&mut NoBodies).await? {
            Response::Status(s) if matches!(s.status, Status::Ok | Status::Preauth) => {
                if let Some(Code::Capability(c)) = &s.code {
                    client.caps = c.clone();
                }
                Ok((client, s))
            }
            Response::Status(s) => Err(ImapError::Refused {
                command: "connect".into(),
                status: s.status,
                code: s.code.map(|c| format!("{c:?}")),
                text: sanitize(&s.text, 300),
            }),
            other => Err(ImapError::Protocol(format!(
                "unexpected greeting: {}",
                sanitize(&format!("{other:?}"), 200)
            ))),
        }
    }

    /// Whether the server announced a capability.
    pub fn has(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c == cap)
    }

    /// Reads one whole response; a `BODY[]` literal goes to `sink` (or is dropped).
    pub async fn read(&mut self, sink: &mut dyn FetchSink) -> Result<Response> {
        let mut assembled = Vec::new();
        let mut streamed = false;
        loop {
            let seg_len = loop {
                if let Some(i) = memchr::memchr(b'\n', self.conn.buffered()) {
                    break i + 1;
                }
                if self.conn.buffered().len() > MAX_SEGMENT {
                    return Err(ImapError::Protocol(format!(
                        "a response line longer than {MAX_SEGMENT} bytes"
                    )));
                }
                self.conn.fill("a response").await?;
            };
            let segment = &self.conn.buffered()[..seg_len];
            crate::report::trace("S", segment);
            let literal = codec::literal_at_end(segment);
            match literal {
                None => {
                    assembled.extend_from_slice(segment);
                    self.conn.consume(seg_len);
                    let response = codec::parse(&assembled)?;
                    if let Some(text) = response.alert() {
                        crate::report::alert(text);
                    }
                    if let Response::Fetch(f) = &response {
                        if f.body != streamed {
                            return Err(ImapError::Protocol(
                                "a FETCH body that was not where announced".into(),
                            ));
                        }
                        sink.fetched(f).map_err(ImapError::Local)?;
                    }
                    return Ok(response);
                }
                Some((len, true)) => {
                    if streamed {
                        return Err(ImapError::Protocol(
                            "two message bodies in one FETCH response".into(),
                        ));
                    }
                    let open = memchr::memrchr(b'{', segment).unwrap_or(0);
                    assembled.extend_from_slice(&segment[..open]);
                    assembled.extend_from_slice(b"{0}\r\n");
                    self.conn.consume(seg_len);
                    sink.begin(len).map_err(ImapError::Local)?;
                    let mut remaining = len;
                    while remaining > 0 {
                        if self.conn.buffered().is_empty() {
                            self.conn.fill("a message body").await?;
                        }
                        let n = remaining.min(self.conn.buffered().len());
                        sink.data(&self.conn.buffered()[..n])
                            .map_err(ImapError::Local)?;
                        self.conn.consume(n);
                        remaining -= n;
                    }
                    streamed = true;
                }
                Some((len, false)) => {
                    if len > MAX_INLINE_LITERAL {
                        return Err(ImapError::Protocol(format!(
                            "a literal of {len} bytes where a short one is due"
                        )));
                    }
                    assembled.extend_from_slice(segment);
                    self.conn.consume(seg_len);
                    while self.conn.buffered().len() < len {
                        self.conn.fill("a literal").await?;
                    }
                    assembled.extend_from_slice(&self.conn.buffered()[..len]);
                    self.conn.consume(len);
                }
            }
        }
    }

    /// A fresh command tag, counted in flight until its completion is read.
    fn tag(&mut self) -> String {
        let tag = format!("m{}", self.next_tag);
        self.next_tag += 1;
        self.in_flight.push(tag.clone());
        tag
    }

    /// Notes that the completion of `tag` was read (by a caller that reads replies itself).
    pub fn completed(&mut self, tag: &str) {
        self.in_flight.retain(|t| t != tag);
    }

    /// Reads off the completions of commands whose caller stopped waiting (a pipeline cut
    /// short by a refusal), dropping what they return, so that the next command's replies
    /// are its own.
    pub async fn settle(&mut self) -> Result<()> {
        while !self.in_flight.is_empty() {
            match self.read(&mut NoBodies).await? {
                Response::Tagged { tag, .. } if self.in_flight.contains(&tag) => {
                    self.completed(&tag);
                }
                Response::Tagged { tag, .. } => return Err(not_sent(&tag)),
                Response::Status(s) if s.status == Status::Bye => {
                    return Err(ImapError::Bye(sanitize(&s.text, 300)));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes bytes and flushes, within the timeout.
    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        Ok(self.conn.write_all(data, "a command").await?)
    }

    /// Sends a tagged command line; returns the tag.
    pub async fn send(&mut self, command: &str) -> Result<String> {
        if command.contains(['\r', '\n', '\0']) {
            return Err(ImapError::Protocol(
                "refusing to send a command with a line break in it".into(),
            ));
        }
        let tag = self.tag();
        let line = format!("{tag} {command}\r\n");
        crate::report::trace("C", line.as_bytes());
        self.write(line.as_bytes()).await?;
        Ok(tag)
    }

    /// Reads until the completion of `tag`, passing untagged responses to `untagged` one by one
    /// (so that a listing of a large mailbox is never held whole) and bodies to `sink`. NO and
    /// BAD become errors.
    pub async fn complete(
        &mut self,
        tag: &str,
        what: &str,
        sink: &mut dyn FetchSink,
        untagged: &mut dyn FnMut(Response),
    ) -> Result<StatusLine> {
        loop {
            match self.read(sink).await? {
                Response::Tagged { tag: t, status } if t == tag => {
                    self.completed(tag);
                    return match status.status {
                        Status::Ok => Ok(status),
                        s => Err(ImapError::Refused {
                            command: what.to_string(),
                            status: s,
                            code: status.code.map(|c| match c {
                                Code::Other(name, _) => name,
                                c => format!("{c:?}"),
                            }),
                            text: sanitize(&status.text, 300),
                        }),
                    };
                }
                Response::Tagged { tag: t, .. } => return Err(not_sent(&t)),
                Response::Status(s) if s.status == Status::Bye => {
                    return Err(ImapError::Bye(sanitize(&s.text, 300)));
                }
                Response::Capability(c) => {
                    self.caps = c.clone();
                    untagged(Response::Capability(c));
                }
                Response::Continue(_) => {
                    return Err(ImapError::Protocol(format!(
                        "an unexpected continuation during {what}"
                    )));
                }
                other => untagged(other),
            }
        }
    }

    /// Sends `commands` in one write and reads each one's completion in turn (one round
    /// trip); returns each one's untagged responses, or its refusal.
    pub async fn run_all(&mut self, commands: &[&str]) -> Result<Vec<Result<Vec<Response>>>> {
        let mut lines = String::new();
        let mut tags = Vec::with_capacity(commands.len());
        for command in commands {
            if command.contains(['\r', '\n', '\0']) {
                return Err(ImapError::Protocol(
                    "refusing to send a command with a line break in it".into(),
                ));
            }
            let tag = self.tag();
            let line = format!("{tag} {command}\r\n");
            crate::report::trace("C", line.as_bytes());
            lines.push_str(&line);
            tags.push(tag);
        }
        self.write(lines.as_bytes()).await?;
        let mut out = Vec::with_capacity(commands.len());
        for (tag, command) in tags.iter().zip(commands) {
            let what = command.split(' ').take(2).collect::<Vec<_>>().join(" ");
            let mut untagged = Vec::new();
            match self
                .complete(tag, &what, &mut NoBodies, &mut |r| untagged.push(r))
                .await
            {
                Ok(_) => out.push(Ok(untagged)),
                Err(e @ ImapError::Refused { .. }) => out.push(Err(e)),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Runs one command to completion; returns its untagged responses and completion.
    pub async fn run(&mut self, command: &str) -> Result<(Vec<Response>, StatusLine)> {
        self.run_with(command, &mut NoBodies).await
    }

    /// Runs one command to completion with bodies going to `sink`.
    pub async fn run_with(
        &mut self,
        command: &str,
        sink: &mut dyn FetchSink,
    ) -> Result<(Vec<Response>, StatusLine)> {
        let mut untagged = Vec::new();
        let status = self
            .run_each(command, sink, &mut |r| untagged.push(r))
            .await?;
        Ok((untagged, status))
    }

    /// Runs one command to completion, its untagged responses to `untagged` as they arrive.
    async fn run_each(
        &mut self,
        command: &str,
        sink: &mut dyn FetchSink,
        untagged: &mut dyn FnMut(Response),
    ) -> Result<StatusLine> {
        let what = command.split(' ').take(2).collect::<Vec<_>>().join(" ");
        let tag = self.send(command).await?;
        self.complete(&tag, &what, sink, untagged).await
    }

    /// Runs a FETCH-like command to completion, passing each FETCH response to `each` as it
    /// arrives (other untagged responses are dropped).
    pub async fn fetch_each(
        &mut self,
        command: &str,
        mut each: impl FnMut(Fetch),
    ) -> Result<StatusLine> {
        self.run_each(command, &mut NoBodies, &mut |r| {
            if let Response::Fetch(f) = r {
                each(f)
            }
        })
        .await
    }

    /// Asks for the capabilities (kept in `caps`).
    pub async fn capability(&mut self) -> Result<()> {
        self.run("CAPABILITY").await?;
        Ok(())
    }

    /// STARTTLS: upgrades the connection. Bytes sent after the OK are refused (injection).
    pub async fn starttls(mut self, endpoint: &Endpoint<'_>) -> Result<(Client, Fingerprint)> {
        self.run("STARTTLS").await?;
        let timeout = self.conn.timeout();
        let io = self.conn.into_io().ok_or_else(|| {
            ImapError::Protocol(
                "the server sent data after its STARTTLS reply, before TLS began (possible injection)".into(),
            )
        })?;
        let (io, fp) = endpoint.secure(io).await?;
        let mut client = Client {
            conn: Conn::new(io, timeout),
            next_tag: self.next_tag,
            in_flight: Vec::new(),
            caps: Vec::new(),
        };
        // Capabilities learnt before TLS are not to be trusted (RFC 3501 §6.2.1).
        client.capability().await?;
        Ok((client, fp))
    }

    /// COMPRESS DEFLATE (RFC 4978): from its OK on, both directions are compressed.
    pub async fn compress(mut self) -> Result<Client> {
        self.run("COMPRESS DEFLATE").await?;
        let timeout = self.conn.timeout();
        let io = self.conn.into_io().ok_or_else(|| {
            ImapError::Protocol("the server sent data after its COMPRESS reply".into())
        })?;
        Ok(Client {
            conn: Conn::new(Box::new(Deflate::new(io)), timeout),
            next_tag: self.next_tag,
            in_flight: Vec::new(),
            caps: self.caps,
        })
    }

    /// Sends an APPEND of a message to a mailbox (given quoted, as on the wire); returns its
    /// tag for [`Client::append_done`]. With LITERAL+ nothing is waited for, so appends can be
    /// pipelined; without it the server's go-ahead is awaited first.
    pub async fn append_send(
        &mut self,
        name: &str,
        flags: &str,
        date: Option<&str>,
        message: &[u8],
    ) -> Result<String> {
        let date = date.map(|d| format!(" \"{d}\"")).unwrap_or_default();
        let plus = self.has("LITERAL+");
        let tag = self.tag();
        let head = format!(
            "{tag} APPEND {name} ({flags}){date} {{{}{}}}\r\n",
            message.len(),
            if plus { "+" } else { "" }
        );
        crate::report::trace("C", head.as_bytes());
        self.write(head.as_bytes()).await?;
        if !plus {
            match self.read(&mut NoBodies).await? {
                Response::Continue(_) => {}
                Response::Tagged { status, .. } => {
                    self.completed(&tag);
                    return Err(ImapError::Refused {
                        command: "APPEND".into(),
                        status: status.status,
                        code: None,
                        text: sanitize(&status.text, 300),
                    });
                }
                other => {
                    return Err(ImapError::Protocol(format!(
                        "unexpected reply to APPEND: {}",
                        sanitize(&format!("{other:?}"), 200)
                    )));
                }
            }
        }
        self.write(message).await?;
        self.write(b"\r\n").await?;
        Ok(tag)
    }

    /// Waits for an APPEND's completion; returns (UIDVALIDITY, UID) when the server has
    /// UIDPLUS.
    pub async fn append_done(&mut self, tag: &str) -> Result<Option<(u32, u32)>> {
        let status = self
            .complete(tag, "APPEND", &mut NoBodies, &mut |_| {})
            .await?;
        Ok(match status.code {
            Some(Code::AppendUid(v, u)) => Some((v, u)),
            _ => None,
        })
    }

    /// LOGOUT, ignoring what a server does after saying BYE.
    pub async fn logout(mut self) -> Result<()> {
        self.settle().await?;
        let tag = self.send("LOGOUT").await?;
        match self
            .complete(&tag, "LOGOUT", &mut NoBodies, &mut |_| {})
            .await
        {
            Ok(_) | Err(ImapError::Bye(_)) => Ok(()),
            Err(ImapError::Net(NetError::Closed { .. })) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The error for a completion of a command this client never sent.
pub fn not_sent(tag: &str) -> ImapError {
    ImapError::Protocol(format!(
        "a reply for command {} that was not sent",
        sanitize(tag, 40)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn fetch_each_passes_fetch_responses_in_order_and_fails_on_no() {
        let (ours, mut server) = tokio::io::duplex(1 << 16);
        let script = tokio::spawn(async move {
            server.write_all(b"* OK ready\r\n").await.unwrap();
            let mut command = vec![0u8; 32];
            let n = server.read(&mut command).await.unwrap();
            assert_eq!(&command[..n], b"m1 UID FETCH 1:* (UID FLAGS)\r\n");
            server
                .write_all(
                    b"* 1 FETCH (UID 7 FLAGS (\\Seen))\r\n* 3 EXISTS\r\n\
                      * 2 FETCH (FLAGS () UID 9)\r\n* 3 FETCH (UID 12 FLAGS (\\Flagged $Junk))\r\n\
                      m1 OK done\r\n",
                )
                .await
                .unwrap();
            let n = server.read(&mut command).await.unwrap();
            assert_eq!(&command[..n], b"m2 UID FETCH 1:* (UID)\r\n");
            server
                .write_all(b"* 1 FETCH (UID 7)\r\nm2 NO [SERVERBUG] broken\r\n")
                .await
                .unwrap();
        });
        let (mut client, _) = Client::start(Box::new(ours), Duration::from_secs(5))
            .await
            .unwrap();
        let mut seen = Vec::new();
        let status = client
            .fetch_each("UID FETCH 1:* (UID FLAGS)", |f| {
                seen.push((f.uid, f.flags.unwrap_or_default().join(" ")))
            })
            .await
            .unwrap();
        assert_eq!(status.status, Status::Ok);
        assert_eq!(
            seen,
            vec![
                (Some(7), "\\Seen".to_string()),
                (Some(9), String::new()),
                (Some(12), "\\Flagged $Junk".to_string()),
            ]
        );
        let refused = client.fetch_each("UID FETCH 1:* (UID)", |_| {}).await;
        assert!(
            matches!(refused, Err(ImapError::Refused { ref command, .. }) if command == "UID FETCH"),
            "{refused:?}"
        );
        script.await.unwrap();
    }

    #[tokio::test]
    async fn what_a_refused_pipeline_left_in_flight_is_read_off_before_the_next_command() {
        let (ours, mut server) = tokio::io::duplex(1 << 16);
        let script = tokio::spawn(async move {
            server.write_all(b"* OK ready\r\n").await.unwrap();
            let mut got = Vec::new();
            while !got.ends_with(b"m2 UID FETCH 2 (UID)\r\n") {
                let mut buf = [0u8; 64];
                let n = server.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            server
                .write_all(b"m1 NO [LIMIT] too many\r\n* 2 FETCH (UID 2)\r\nm2 OK done\r\n")
                .await
                .unwrap();
            let mut command = vec![0u8; 32];
            let n = server.read(&mut command).await.unwrap();
            assert_eq!(&command[..n], b"m3 NOOP\r\n");
            server.write_all(b"m3 OK noop\r\n").await.unwrap();
        });
        let (mut client, _) = Client::start(Box::new(ours), Duration::from_secs(5))
            .await
            .unwrap();
        let first = client.send("UID FETCH 1 (UID)").await.unwrap();
        client.send("UID FETCH 2 (UID)").await.unwrap();
        let refused = client
            .complete(&first, "UID FETCH", &mut NoBodies, &mut |_| {})
            .await;
        assert!(
            matches!(refused, Err(ImapError::Refused { .. })),
            "{refused:?}"
        );
        client.settle().await.unwrap();
        let (untagged, status) = client.run("NOOP").await.unwrap();
        assert_eq!((untagged.len(), status.status), (0, Status::Ok));
        script.await.unwrap();
    }
}
