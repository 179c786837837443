//! The POP3 wire format, sans I/O: status lines, multi-line bodies (dot-unstuffing across any
//! read boundary), CAPA, UIDL and LIST listings (RFC 1939, RFC 2449).

/// The longest status or listing line accepted; a server sending more is broken or hostile.
pub const MAX_LINE: usize = 64 * 1024;

/// A reply line from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK [CODE] text`
    Ok {
        /// Response code (RFC 2449), e.g. `IN-USE`, `SYS/TEMP`.
        code: Option<String>,
        /// The rest of the line.
        text: String,
    },
    /// `-ERR [CODE] text`
    Err {
        /// Response code (RFC 2449), e.g. `IN-USE`, `SYS/TEMP`, `AUTH`.
        code: Option<String>,
        /// The rest of the line.
        text: String,
    },
    /// `+ base64` SASL continuation (RFC 5034).
    Continue(String),
}

/// A line that is not a POP3 reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected reply from the server: {0:?}")]
pub struct BadReply(pub String);

/// The length of the first complete line in `buf` (through its LF), if there is one.
pub fn line_len(buf: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', buf).map(|i| i + 1)
}

/// Strips CRLF or a bare LF from a line.
pub fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Parses one status line (with or without its line end).
pub fn parse_reply(line: &[u8]) -> Result<Reply, BadReply> {
    let line = trim_eol(line);
    let text = String::from_utf8_lossy(line);
    let (ok, rest) = if let Some(rest) = line.strip_prefix(b"+OK") {
        (true, rest)
    } else if let Some(rest) = line.strip_prefix(b"-ERR") {
        (false, rest)
    } else if line == b"+" || line.starts_with(b"+ ") {
        let data = String::from_utf8_lossy(line.get(2..).unwrap_or_default());
        return Ok(Reply::Continue(data.trim().to_string()));
    } else {
        return Err(BadReply(text.into_owned()));
    };
    // "+OKAY" is not "+OK": the status must end or be followed by a space.
    if !(rest.is_empty() || rest[0] == b' ') {
        return Err(BadReply(text.into_owned()));
    }
    let rest = String::from_utf8_lossy(rest).trim().to_string();
    let (code, text) = split_code(&rest);
    Ok(if ok {
        Reply::Ok { code, text }
    } else {
        Reply::Err { code, text }
    })
}

fn split_code(rest: &str) -> (Option<String>, String) {
    if let Some(inner) = rest.strip_prefix('[')
        && let Some(end) = inner.find(']')
    {
        let code = &inner[..end];
        if !code.is_empty() && code.chars().all(|c| c.is_ascii_graphic() && c != '[') {
            return (
                Some(code.to_ascii_uppercase()),
                inner[end + 1..].trim().to_string(),
            );
        }
    }
    (None, rest.to_string())
}

/// Where a multi-line body decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyState {
    /// At the start of a line.
    LineStart,
    /// After a '.' at the start of a line.
    Dot,
    /// After ".\r" at the start of a line.
    DotCr,
    /// Inside a line.
    Middle,
    /// After the terminating ".\r\n".
    Done,
}

/// Decodes a multi-line response body (after its status line) as it arrives, removing the
/// dot-stuffing and detecting the terminating `.CRLF`, whatever the read boundaries are.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: BodyState,
    /// Lines end in CRLF only: a bare LF is data, so a `.` after it starts no line (and so
    /// ends no body).
    crlf_only: bool,
    /// The last byte given was CR.
    after_cr: bool,
}

impl Default for BodyDecoder {
    fn default() -> Self {
        BodyDecoder {
            state: BodyState::LineStart,
            crlf_only: false,
            after_cr: false,
        }
    }
}

impl BodyDecoder {
    /// A decoder at the start of a body, which also takes bare LF as a line end (for a
    /// server whose own lines end so).
    pub fn new() -> BodyDecoder {
        BodyDecoder::default()
    }

    /// A decoder at the start of a body whose lines end in CRLF, as RFC 1939 says: what a
    /// server that ends its own lines in CRLF sends. A message with a bare LF followed by
    /// `.` and CRLF is then read whole instead of cut there.
    pub fn crlf_lines() -> BodyDecoder {
        BodyDecoder {
            crlf_only: true,
            ..BodyDecoder::default()
        }
    }

    /// Whether the terminating line has been seen.
    pub fn is_done(&self) -> bool {
        self.state == BodyState::Done
    }

    /// Consumes bytes from `input`, appending the unstuffed body (line ends kept as sent) to
    /// `out`. Returns how many bytes were consumed: all of `input`, or fewer when the body
    /// ended, the rest then belonging to the next response.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                BodyState::Done => return i,
                BodyState::LineStart => {
                    if input[i] == b'.' {
                        self.state = BodyState::Dot;
                        i += 1;
                    } else {
                        self.state = BodyState::Middle;
                    }
                }
                BodyState::Dot => match input[i] {
                    b'\r' => {
                        self.state = BodyState::DotCr;
                        i += 1;
                    }
                    b'\n' if !self.crlf_only => {
                        // A bare-LF terminator from a sloppy server.
                        self.state = BodyState::Done;
                        i += 1;
                    }
                    _ => {
                        self.after_cr = false;
                        self.state = BodyState::Middle;
                    }
                },
                BodyState::DotCr => {
                    if input[i] == b'\n' {
                        self.state = BodyState::Done;
                        i += 1;
                    } else {
                        // ".\rX": not a terminator; the '.' was stuffing, the CR is data.
                        out.push(b'\r');
                        self.after_cr = true;
                        self.state = BodyState::Middle;
                    }
                }
                BodyState::Middle => match memchr::memchr(b'\n', &input[i..]) {
                    Some(pos) => {
                        let cr = match pos {
                            0 => self.after_cr,
                            _ => input[i + pos - 1] == b'\r',
                        };
                        out.extend_from_slice(&input[i..=i + pos]);
                        i += pos + 1;
                        self.after_cr = false;
                        if cr || !self.crlf_only {
                            self.state = BodyState::LineStart;
                        }
                    }
                    None => {
                        out.extend_from_slice(&input[i..]);
                        self.after_cr = input.last() == Some(&b'\r');
                        i = input.len();
                    }
                },
            }
        }
        i
    }
}

/// Adds dot-stuffing and the terminator to a body (what a server sends); used by tests and
/// the fake servers in `tests/`.
pub fn stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    let mut at_start = true;
    for &b in body {
        if at_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_start = b == b'\n';
    }
    if !at_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// What a server said in its CAPA response (RFC 2449).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Whether CAPA was answered at all.
    pub known: bool,
    /// PIPELINING.
    pub pipelining: bool,
    /// UIDL.
    pub uidl: bool,
    /// TOP.
    pub top: bool,
    /// STLS (RFC 2595).
    pub stls: bool,
    /// USER (USER/PASS allowed).
    pub user: bool,
    /// RESP-CODES.
    pub resp_codes: bool,
    /// SASL mechanisms, upper case.
    pub sasl: Vec<String>,
    /// EXPIRE policy as given ("NEVER", a number of days, ...).
    pub expire: Option<String>,
    /// LOGIN-DELAY seconds.
    pub login_delay: Option<u64>,
    /// UTF8 (RFC 6856): the server can send messages with raw UTF-8 in their header as they
    /// are, once asked to.
    pub utf8: bool,
}

/// Parses the lines of a CAPA body.
pub fn parse_capa(body: &[u8]) -> Capabilities {
    let mut caps = Capabilities {
        known: true,
        ..Capabilities::default()
    };
    for line in body.split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(trim_eol(line));
        let mut words = line.split_ascii_whitespace();
        let Some(name) = words.next() else { continue };
        match name.to_ascii_uppercase().as_str() {
            "PIPELINING" => caps.pipelining = true,
            "UIDL" => caps.uidl = true,
            "TOP" => caps.top = true,
            "STLS" => caps.stls = true,
            "USER" => caps.user = true,
            "RESP-CODES" => caps.resp_codes = true,
            "SASL" => caps.sasl = words.map(str::to_ascii_uppercase).collect(),
            "EXPIRE" => caps.expire = words.next().map(str::to_string),
            "LOGIN-DELAY" => caps.login_delay = words.next().and_then(|w| w.parse().ok()),
            "UTF8" => caps.utf8 = true,
            _ => {}
        }
    }
    caps
}

/// Parses a scan listing line `n value` (UIDL or LIST); `None` if it is malformed.
pub fn parse_listing_line(line: &[u8]) -> Option<(u32, &[u8])> {
    let line = trim_eol(line);
    let space = memchr::memchr(b' ', line)?;
    let number = std::str::from_utf8(&line[..space]).ok()?.parse().ok()?;
    let value = line[space + 1..].trim_ascii();
    if value.is_empty() || value.contains(&b' ') {
        return None;
    }
    Some((number, value))
}

/// A UIDL is 1-70 characters in 0x21..=0x7E (RFC 1939).
pub fn valid_uidl(uidl: &[u8]) -> bool {
    (1..=70).contains(&uidl.len()) && uidl.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// The APOP timestamp (`<...@...>`) of a greeting, if it has one.
pub fn apop_timestamp(greeting: &str) -> Option<&str> {
    let start = greeting.find('<')?;
    let end = start + greeting[start..].find('>')?;
    let stamp = &greeting[start..=end];
    stamp.contains('@').then_some(stamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(
            parse_reply(b"+OK Dovecot ready.\r\n").unwrap(),
            Reply::Ok {
                code: None,
                text: "Dovecot ready.".into()
            }
        );
        assert_eq!(
            parse_reply(b"-ERR [IN-USE] Mailbox locked\r\n").unwrap(),
            Reply::Err {
                code: Some("IN-USE".into()),
                text: "Mailbox locked".into()
            }
        );
        assert_eq!(
            parse_reply(b"-ERR [sys/temp] try later").unwrap(),
            Reply::Err {
                code: Some("SYS/TEMP".into()),
                text: "try later".into()
            }
        );
        assert_eq!(
            parse_reply(b"+OK\r\n").unwrap(),
            Reply::Ok {
                code: None,
                text: String::new()
            }
        );
        assert_eq!(
            parse_reply(b"+ \r\n").unwrap(),
            Reply::Continue(String::new())
        );
        assert_eq!(
            parse_reply(b"+ VXNlcg==\r\n").unwrap(),
            Reply::Continue("VXNlcg==".into())
        );
        assert!(parse_reply(b"+OKAY").is_err());
        assert!(parse_reply(b"* OK imap").is_err());
        assert!(parse_reply(b"").is_err());
        assert_eq!(
            parse_reply(b"-ERR [unclosed text").unwrap(),
            Reply::Err {
                code: None,
                text: "[unclosed text".into()
            }
        );
    }

    /// `wire` cut into reads at the given offsets (clamped and sorted).
    fn split(wire: &[u8], cuts: Vec<usize>) -> Vec<&[u8]> {
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(wire.len())).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&wire[last..p]);
            last = p;
        }
        chunks.push(&wire[last..]);
        chunks
    }

    fn decode_all(chunks: &[&[u8]]) -> (Vec<u8>, usize, bool) {
        decode_with(BodyDecoder::new(), chunks)
    }

    fn decode_with(mut d: BodyDecoder, chunks: &[&[u8]]) -> (Vec<u8>, usize, bool) {
        let mut out = Vec::new();
        let mut consumed = 0;
        for c in chunks {
            consumed += d.decode(c, &mut out);
            if d.is_done() {
                break;
            }
        }
        (out, consumed, d.is_done())
    }

    const WIRE: &[u8] = b"From: a\r\n\r\n..dot\r\n.\r\n...\r\nx.\r\n..\r\n.\r\nNEXT";
    const BODY: &[u8] = b"From: a\r\n\r\n.dot\r\n\r\n..\r\nx.\r\n.\r\n";

    #[test]
    fn body_every_split_point() {
        // A lone "." line ends the body, whatever follows it.
        let (out, consumed, done) = decode_all(&[WIRE]);
        assert!(done);
        assert_eq!(&out[..], b"From: a\r\n\r\n.dot\r\n");
        assert_eq!(consumed, 21);
        let wire = stuff(BODY);
        assert_eq!(
            &wire[..],
            b"From: a\r\n\r\n..dot\r\n\r\n...\r\nx.\r\n..\r\n.\r\n"
        );
        for a in 0..=wire.len() {
            for b in a..=wire.len() {
                let (out, consumed, done) = decode_all(&[&wire[..a], &wire[a..b], &wire[b..]]);
                assert!(done, "split {a},{b}");
                assert_eq!(out, BODY, "split {a},{b}");
                assert_eq!(consumed, wire.len(), "split {a},{b}");
            }
        }
    }

    #[test]
    fn with_crlf_lines_a_bare_lf_then_a_dot_is_data_at_every_split_point() {
        // The poison message: a bare LF followed by ".\r\n" inside the body.
        // A server that frames by CRLF stuffs only dots after CRLF, so the wire holds it as is.
        let body = b"Subject: x\r\n\r\nbefore\n.\r\nafter\r\n";
        let wire = b"Subject: x\r\n\r\nbefore\n.\r\nafter\r\n.\r\n";
        for a in 0..=wire.len() {
            for b in a..=wire.len() {
                let chunks = [&wire[..a], &wire[a..b], &wire[b..]];
                let (out, consumed, done) = decode_with(BodyDecoder::crlf_lines(), &chunks);
                assert!(done, "split {a},{b}");
                assert_eq!(out, body, "split {a},{b}");
                assert_eq!(consumed, wire.len(), "split {a},{b}");
            }
        }
        let (out, _, _) = decode_with(BodyDecoder::crlf_lines(), &[WIRE]);
        assert_eq!(&out[..], b"From: a\r\n\r\n.dot\r\n");
        // A sloppy server's bare-LF framing is still read by the tolerant decoder.
        assert_eq!(decode_all(&[b"a\n.\n"]), (b"a\n".to_vec(), 4, true));
    }

    #[test]
    fn body_stops_at_terminator_and_leaves_the_rest() {
        let mut wire = stuff(b"line\r\n");
        wire.extend_from_slice(b"+OK next\r\n");
        let mut d = BodyDecoder::new();
        let mut out = Vec::new();
        let n = d.decode(&wire, &mut out);
        assert!(d.is_done());
        assert_eq!(&wire[n..], b"+OK next\r\n");
        assert_eq!(out, b"line\r\n");
        // Nothing more is consumed once done.
        assert_eq!(d.decode(b"more", &mut out), 0);
    }

    #[test]
    fn empty_body_and_odd_line_ends() {
        assert_eq!(decode_all(&[b".\r\n"]), (vec![], 3, true));
        assert_eq!(decode_all(&[b".\n"]), (vec![], 2, true));
        assert_eq!(decode_all(&[b".\rX\r\n.\r\n"]).0, b"\rX\r\n");
        let (out, _, done) = decode_all(&[b"no terminator yet\r\n"]);
        assert!(!done);
        assert_eq!(out, b"no terminator yet\r\n");
    }

    #[test]
    fn stuff_adds_missing_line_end() {
        assert_eq!(stuff(b""), b".\r\n");
        assert_eq!(stuff(b".x"), b"..x\r\n.\r\n");
    }

    #[test]
    fn capa() {
        let caps = parse_capa(
            b"CAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nSTLS\r\nUSER\r\nSASL PLAIN login\r\nEXPIRE 30\r\nLOGIN-DELAY 900\r\n",
        );
        assert!(caps.known && caps.top && caps.uidl && caps.pipelining && caps.stls && caps.user);
        assert_eq!(caps.sasl, vec!["PLAIN", "LOGIN"]);
        assert_eq!(caps.expire.as_deref(), Some("30"));
        assert_eq!(caps.login_delay, Some(900));
        assert!(!caps.utf8);
        // Courier: "UTF8 USER" (UTF-8 user names too).
        assert!(parse_capa(b"USER\r\nUTF8 USER\r\n").utf8);
    }

    #[test]
    fn listings() {
        assert_eq!(
            parse_listing_line(b"1 000000016b021035\r\n"),
            Some((1, &b"000000016b021035"[..]))
        );
        assert_eq!(parse_listing_line(b"12 4096"), Some((12, &b"4096"[..])));
        assert_eq!(parse_listing_line(b"x 1"), None);
        assert_eq!(parse_listing_line(b"1 a b"), None);
        assert_eq!(parse_listing_line(b"1 "), None);
        assert!(valid_uidl(b"abc"));
        assert!(!valid_uidl(b""));
        assert!(!valid_uidl(&[b'a'; 71]));
        assert!(!valid_uidl(b"a\x01"));
    }

    #[test]
    fn apop() {
        assert_eq!(
            apop_timestamp("POP3 ready <1896.697170952@dbc.mtview.ca.us>"),
            Some("<1896.697170952@dbc.mtview.ca.us>")
        );
        assert_eq!(apop_timestamp("Dovecot ready."), None);
        assert_eq!(apop_timestamp("<no-at-sign>"), None);
    }

    proptest::proptest! {
        #[test]
        fn stuffing_round_trips_under_any_chunking(
            lines in proptest::collection::vec("[.a-z\r]{0,6}", 0..8),
            cuts in proptest::collection::vec(0usize..64, 0..6),
        ) {
            let body: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\r\n").into_bytes()).collect();
            let wire = stuff(&body);
            let chunks = split(&wire, cuts);
            let (out, consumed, done) = decode_all(&chunks);
            proptest::prop_assert!(done);
            proptest::prop_assert_eq!(out, body);
            proptest::prop_assert_eq!(consumed, wire.len());
        }

        /// Whatever a server sends, the decoder ends at the same place with the same output
        /// however the bytes are split into reads.
        #[test]
        fn decoding_any_bytes_ignores_read_boundaries(
            wire in proptest::collection::vec(proptest::sample::select(b".\r\nab".as_slice()), 0..80),
            cuts in proptest::collection::vec(0usize..80, 0..8),
        ) {
            let whole = decode_all(&[&wire]);
            let chunks = split(&wire, cuts);
            proptest::prop_assert_eq!(decode_all(&chunks), whole.clone());
            proptest::prop_assert!(whole.1 <= wire.len());
            if whole.2 {
                // What ends a body is a line of a single dot.
                let end = &wire[..whole.1];
                proptest::prop_assert!(end.ends_with(b"\n"));
                proptest::prop_assert!(end == b".\n" || end == b".\r\n" || end.ends_with(b"\n.\n") || end.ends_with(b"\n.\r\n"));
            } else {
                proptest::prop_assert_eq!(whole.1, wire.len());
            }
        }

        #[test]
        fn replies_read_back(
            ok in proptest::bool::ANY,
            code in proptest::option::of("[A-Z][A-Z/-]{0,12}"),
            text in "[ -~]{0,40}",
        ) {
            let status = if ok { "+OK" } else { "-ERR" };
            let line = match &code {
                Some(c) => format!("{status} [{c}] {text}\r\n"),
                None => format!("{status} {text}\r\n"),
            };
            let reply = parse_reply(line.as_bytes()).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            let (got_code, got_text) = match reply {
                Reply::Ok { code, text } if ok => (code, text),
                Reply::Err { code, text } if !ok => (code, text),
                other => return Err(proptest::test_runner::TestCaseError::fail(format!("{other:?}"))),
            };
            if code.is_some() {
                proptest::prop_assert_eq!(got_code, code);
                proptest::prop_assert_eq!(got_text, text.trim());
            } else if got_code.is_none() {
                proptest::prop_assert_eq!(got_text, text.trim());
            }
        }

        #[test]
        fn pop3_parsers_survive_any_line(line in proptest::collection::vec(proptest::num::u8::ANY, 0..120)) {
            let _ = parse_reply(&line);
            let _ = parse_capa(&line);
            if let Some((_, value)) = parse_listing_line(&line) {
                proptest::prop_assert!(!value.is_empty() && !value.contains(&b' '));
            }
            let _ = apop_timestamp(&String::from_utf8_lossy(&line));
        }
    }
}
