//! IMAP responses, sans I/O: a tolerant lexer for the response grammar (atoms, numbers, quoted
//! strings, literals, lists, bracketed section names) and typed responses for what a fetch and
//! sync engine needs (RFC 3501, 4315 UIDPLUS, 7162 CONDSTORE/QRESYNC, 5161 ENABLE).
//!
//! The driver assembles one response at a time: text segments, and literals inlined after their
//! `{N}\r\n`. A `BODY[]` literal is streamed to disk by the driver instead, and appears here as
//! an empty string.

use std::fmt;

/// A response that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unparsable IMAP response ({why}): {line}")]
pub struct ParseError {
    /// What was wrong.
    pub why: &'static str,
    /// The response, shortened and sanitised.
    pub line: String,
}

/// A value in a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An atom or number (also `BODY[...]` section names, and NIL: whether that means "no
    /// value" or is a name depends on where it stands, see [`Value::nstring`]).
    Atom(Vec<u8>),
    /// A quoted string or literal.
    Str(Vec<u8>),
    /// A parenthesised list.
    List(Vec<Value>),
}

impl Value {
    /// The atom as text, if it is one.
    pub fn atom(&self) -> Option<&str> {
        match self {
            Value::Atom(a) => std::str::from_utf8(a).ok(),
            _ => None,
        }
    }

    /// The value as a number, if it is one.
    pub fn number(&self) -> Option<u64> {
        self.atom()?.parse().ok()
    }

    /// The bytes of a string or atom (a flag or mailbox called NIL included).
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Atom(a) | Value::Str(a) => Some(a),
            Value::List(_) => None,
        }
    }

    /// Whether this is NIL, the absent value of an nstring.
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Atom(a) if a.eq_ignore_ascii_case(b"NIL"))
    }

    /// The bytes of an nstring: None for NIL.
    pub fn nstring(&self) -> Option<&[u8]> {
        if self.is_nil() { None } else { self.bytes() }
    }
}

/// Completion status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// OK.
    Ok,
    /// NO.
    No,
    /// BAD.
    Bad,
    /// PREAUTH (greeting).
    Preauth,
    /// BYE.
    Bye,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
            Status::Preauth => "PREAUTH",
            Status::Bye => "BYE",
        })
    }
}

/// A response code (`[...]` after a status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// UIDVALIDITY n.
    UidValidity(u32),
    /// UIDNEXT n.
    UidNext(u32),
    /// HIGHESTMODSEQ n.
    HighestModseq(u64),
    /// NOMODSEQ: the mailbox has no mod-sequences.
    NoModseq,
    /// APPENDUID uidvalidity uid.
    AppendUid(u32, u32),
    /// CAPABILITY list.
    Capability(Vec<String>),
    /// PERMANENTFLAGS list: the flags a message keeps (`\*`: new keywords too).
    PermanentFlags(Vec<String>),
    /// Anything else, upper-cased name with its raw arguments.
    Other(String, String),
}

/// A status with optional code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    /// OK, NO, BAD, PREAUTH, BYE.
    pub status: Status,
    /// Response code.
    pub code: Option<Code>,
    /// Human-readable text (untrusted).
    pub text: String,
}

/// The data items of a FETCH response that mailferry uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetch {
    /// Message sequence number.
    pub seq: u32,
    /// UID.
    pub uid: Option<u32>,
    /// Flags (system flags with their backslash, keywords as sent).
    pub flags: Option<Vec<String>>,
    /// INTERNALDATE as sent ("17-Jul-1996 02:44:25 -0700").
    pub internaldate: Option<String>,
    /// RFC822.SIZE.
    pub size: Option<u64>,
    /// MODSEQ.
    pub modseq: Option<u64>,
    /// Whether a `BODY[]` was present (its bytes were streamed by the driver).
    pub body: bool,
    /// A header section (`BODY[HEADER.FIELDS (...)]`) if one was fetched.
    pub header: Option<Vec<u8>>,
}

/// One entry of a LIST response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// Name attributes (`\Noselect`, `\HasChildren`, ...).
    pub attributes: Vec<String>,
    /// Hierarchy delimiter, if any.
    pub delimiter: Option<char>,
    /// The mailbox name as sent (modified UTF-7 unless UTF8=ACCEPT is enabled).
    pub name: Vec<u8>,
}

/// A server response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `+ text`: the server waits for more of a command.
    Continue(String),
    /// `tag OK|NO|BAD ...`: a command completed.
    Tagged {
        /// The command's tag.
        tag: String,
        /// Its completion.
        status: StatusLine,
    },
    /// `* OK|NO|BAD|BYE|PREAUTH ...`.
    Status(StatusLine),
    /// `* CAPABILITY ...`.
    Capability(Vec<String>),
    /// `* ENABLED ...`.
    Enabled(Vec<String>),
    /// `* LIST ...`.
    List(ListEntry),
    /// `* n EXISTS`.
    Exists(u32),
    /// `* n EXPUNGE`.
    Expunge(u32),
    /// `* n FETCH (...)`.
    Fetch(Fetch),
    /// `* VANISHED [(EARLIER)] uid-set`.
    Vanished {
        /// Whether this reports expunges from before this session (QRESYNC).
        earlier: bool,
        /// UID ranges, inclusive.
        uids: Vec<(u32, u32)>,
    },
    /// `* SEARCH n n n`.
    Search(Vec<u32>),
    /// `* STATUS mailbox (ITEM n ...)`: items upper case, with their numbers.
    MailboxStatus {
        /// The mailbox name as sent.
        name: Vec<u8>,
        /// The status items.
        items: Vec<(String, u64)>,
    },
    /// `* NAMESPACE personal other shared` (RFC 2342): the first personal namespace's prefix
    /// and hierarchy delimiter, if there is one.
    Namespace(Option<(Vec<u8>, Option<char>)>),
    /// Anything else (`* FLAGS`, `* n RECENT`, ...).
    Other(String),
}

impl Response {
    /// The text of an `[ALERT]`, which a client must show to its user (RFC 3501 7.1).
    pub fn alert(&self) -> Option<&str> {
        let (Response::Status(status) | Response::Tagged { status, .. }) = self else {
            return None;
        };
        match &status.code {
            Some(Code::Other(name, _)) if name == "ALERT" => Some(&status.text),
            _ => None,
        }
    }
}

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

fn shorten(s: &[u8]) -> String {
    crate::text::sanitize_bytes(&s[..s.len().min(200)], 200)
}

impl<'a> Lexer<'a> {
    fn err(&self, why: &'static str) -> ParseError {
        ParseError {
            why,
            line: shorten(self.s),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    /// Skips spaces (servers sometimes send two where one is due).
    fn spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn atom_char(b: u8) -> bool {
        !matches!(b, b' ' | b'(' | b')' | b'{' | b'"' | b'\r' | b'\n' | b']')
            && b >= 0x20
            && b != 0x7f
    }

    /// An atom; a `[` inside it runs to the matching `]` (section names such as
    /// `BODY[HEADER.FIELDS (MESSAGE-ID)]`), and a `<n>` origin after it is kept.
    fn atom(&mut self) -> Result<&'a [u8], ParseError> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b == b'[' {
                let mut depth = 0usize;
                while let Some(c) = self.peek() {
                    self.pos += 1;
                    match c {
                        b'[' => depth += 1,
                        b']' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        b'\r' | b'\n' => return Err(self.err("unclosed '['")),
                        _ => {}
                    }
                }
                if depth != 0 {
                    return Err(self.err("unclosed '['"));
                }
            } else if Self::atom_char(b) {
                self.pos += 1;
            } else {
                break;
            }
        }
        if self.pos == start {
            return Err(self.err("expected an atom"));
        }
        Ok(&self.s[start..self.pos])
    }

    fn quoted(&mut self) -> Result<Vec<u8>, ParseError> {
        self.pos += 1; // opening quote
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r') | Some(b'\n') => {
                    return Err(self.err("unterminated quoted string"));
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = self.peek().ok_or_else(|| self.err("bad escape"))?;
                    out.push(c);
                    self.pos += 1;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn literal(&mut self) -> Result<Vec<u8>, ParseError> {
        self.pos += 1; // '{'
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        let len: usize = std::str::from_utf8(&self.s[start..self.pos])
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| self.err("bad literal length"))?;
        if self.peek() == Some(b'+') {
            self.pos += 1;
        }
        if self.s.get(self.pos..self.pos + 3) != Some(b"}\r\n") {
            return Err(self.err("bad literal header"));
        }
        self.pos += 3;
        let data = self
            .s
            .get(self.pos..self.pos + len)
            .ok_or_else(|| self.err("literal shorter than announced"))?
            .to_vec();
        self.pos += len;
        Ok(data)
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        self.spaces();
        match self.peek() {
            None => Err(self.err("unexpected end")),
            Some(b'(') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.spaces();
                    match self.peek() {
                        Some(b')') => {
                            self.pos += 1;
                            return Ok(Value::List(items));
                        }
                        None => return Err(self.err("unclosed '('")),
                        _ => items.push(self.value()?),
                    }
                }
            }
            Some(b'"') => Ok(Value::Str(self.quoted()?)),
            Some(b'{') => Ok(Value::Str(self.literal()?)),
            Some(b'~') if self.s.get(self.pos + 1) == Some(&b'{') => {
                self.pos += 1;
                Ok(Value::Str(self.literal()?))
            }
            Some(_) => Ok(Value::Atom(self.atom()?.to_vec())),
        }
    }

    fn word(&mut self) -> Result<String, ParseError> {
        self.spaces();
        Ok(String::from_utf8_lossy(self.atom()?).to_ascii_uppercase())
    }

    fn rest(&mut self) -> String {
        self.spaces();
        let text = String::from_utf8_lossy(&self.s[self.pos.min(self.s.len())..]);
        self.pos = self.s.len();
        text.trim_end().to_string()
    }

    fn status_line(&mut self, status: Status) -> Result<StatusLine, ParseError> {
        self.spaces();
        let code = if self.peek() == Some(b'[') {
            self.pos += 1;
            let start = self.pos;
            let mut depth = 1;
            while let Some(b) = self.peek() {
                match b {
                    b'[' => depth += 1,
                    b']' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                self.pos += 1;
            }
            if self.at_end() {
                return Err(self.err("unclosed response code"));
            }
            let inner = &self.s[start..self.pos];
            self.pos += 1;
            Some(parse_code(inner))
        } else {
            None
        };
        Ok(StatusLine {
            status,
            code,
            text: self.rest(),
        })
    }
}

fn status_of(word: &str) -> Option<Status> {
    Some(match word {
        "OK" => Status::Ok,
        "NO" => Status::No,
        "BAD" => Status::Bad,
        "PREAUTH" => Status::Preauth,
        "BYE" => Status::Bye,
        _ => return None,
    })
}

fn parse_code(inner: &[u8]) -> Code {
    let text = String::from_utf8_lossy(inner);
    let mut words = text.split_ascii_whitespace();
    let name = words.next().unwrap_or("").to_ascii_uppercase();
    let num = |w: Option<&str>| w.and_then(|w| w.parse::<u64>().ok());
    let args: Vec<&str> = words.collect();
    match (name.as_str(), args.as_slice()) {
        ("UIDVALIDITY", [n]) => num(Some(n))
            .and_then(|n| u32::try_from(n).ok())
            .map(Code::UidValidity),
        ("UIDNEXT", [n]) => num(Some(n))
            .and_then(|n| u32::try_from(n).ok())
            .map(Code::UidNext),
        ("HIGHESTMODSEQ", [n]) => num(Some(n)).map(Code::HighestModseq),
        ("NOMODSEQ", []) => Some(Code::NoModseq),
        ("APPENDUID", [v, u]) => match (num(Some(v)), num(Some(u))) {
            (Some(v), Some(u)) => Some(Code::AppendUid(v as u32, u as u32)),
            _ => None,
        },
        ("CAPABILITY", caps) => Some(Code::Capability(
            caps.iter().map(|c| c.to_ascii_uppercase()).collect(),
        )),
        ("PERMANENTFLAGS", flags) => Some(Code::PermanentFlags(
            flags
                .iter()
                .map(|f| f.trim_matches(|c| c == '(' || c == ')').to_string())
                .filter(|f| !f.is_empty())
                .collect(),
        )),
        _ => None,
    }
    .unwrap_or_else(|| {
        let rest = text.get(name.len()..).unwrap_or("").trim().to_string();
        Code::Other(name, rest)
    })
}

/// Parses a sequence or UID set such as `1:3,5,7:*` (`*` is taken as u32::MAX).
pub fn parse_set(text: &str) -> Option<Vec<(u32, u32)>> {
    let num = |s: &str| {
        if s == "*" {
            Some(u32::MAX)
        } else {
            s.parse().ok()
        }
    };
    text.split(',')
        .map(|part| match part.split_once(':') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                Some((a.min(b), a.max(b)))
            }
            None => num(part).map(|n| (n, n)),
        })
        .collect()
}

/// Formats UIDs as a compact set (`1:3,7`).
pub fn format_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

fn atoms(list: &Value) -> Vec<String> {
    match list {
        Value::List(items) => items
            .iter()
            .filter_map(|v| v.bytes().map(|b| String::from_utf8_lossy(b).into_owned()))
            .collect(),
        _ => Vec::new(),
    }
}

fn parse_fetch(seq: u32, lx: &mut Lexer<'_>) -> Result<Fetch, ParseError> {
    let mut fetch = Fetch {
        seq,
        ..Fetch::default()
    };
    let Value::List(items) = lx.value()? else {
        return Err(lx.err("FETCH without a list"));
    };
    let mut it = items.into_iter();
    while let Some(name) = it.next() {
        let name = name
            .atom()
            .map(str::to_ascii_uppercase)
            .ok_or_else(|| lx.err("FETCH item name is not an atom"))?;
        let value = it
            .next()
            .ok_or_else(|| lx.err("FETCH item without a value"))?;
        match name.as_str() {
            "UID" => fetch.uid = value.number().and_then(|n| u32::try_from(n).ok()),
            "FLAGS" => fetch.flags = Some(atoms(&value)),
            "INTERNALDATE" => {
                fetch.internaldate = value
                    .bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            }
            "RFC822.SIZE" => fetch.size = value.number(),
            "MODSEQ" => {
                fetch.modseq = match &value {
                    Value::List(v) => v.first().and_then(Value::number),
                    v => v.number(),
                }
            }
            n if n == "BODY[]" || n.starts_with("BODY[]<") || n == "BINARY[]" => fetch.body = true,
            n if n.starts_with("BODY[HEADER") => fetch.header = value.nstring().map(<[u8]>::to_vec),
            _ => {}
        }
    }
    Ok(fetch)
}

/// Parses one assembled response (without its final CRLF).
pub fn parse(line: &[u8]) -> Result<Response, ParseError> {
    let line = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))
        .unwrap_or(line);
    let mut lx = Lexer { s: line, pos: 0 };
    match lx.peek() {
        Some(b'+') => {
            lx.pos += 1;
            return Ok(Response::Continue(lx.rest()));
        }
        Some(b'*') => lx.pos += 1,
        Some(_) => {
            let tag = String::from_utf8_lossy(lx.atom()?).into_owned();
            let word = lx.word()?;
            let status =
                status_of(&word).ok_or_else(|| lx.err("tagged response without OK/NO/BAD"))?;
            return Ok(Response::Tagged {
                tag,
                status: lx.status_line(status)?,
            });
        }
        None => return Err(lx.err("empty response")),
    }
    let word = lx.word()?;
    if let Ok(n) = word.parse::<u32>() {
        let what = lx.word()?;
        return Ok(match what.as_str() {
            "EXISTS" => Response::Exists(n),
            "EXPUNGE" => Response::Expunge(n),
            "FETCH" => Response::Fetch(parse_fetch(n, &mut lx)?),
            _ => Response::Other(format!("{n} {what}")),
        });
    }
    if let Some(status) = status_of(&word) {
        return Ok(Response::Status(lx.status_line(status)?));
    }
    Ok(match word.as_str() {
        "CAPABILITY" => Response::Capability(
            lx.rest()
                .split_ascii_whitespace()
                .map(str::to_ascii_uppercase)
                .collect(),
        ),
        "ENABLED" => Response::Enabled(
            lx.rest()
                .split_ascii_whitespace()
                .map(str::to_ascii_uppercase)
                .collect(),
        ),
        "LIST" | "LSUB" => {
            let attributes = atoms(&lx.value()?);
            let delimiter = match lx.value()? {
                Value::Str(d) | Value::Atom(d) if d.len() == 1 => Some(d[0] as char),
                v if v.is_nil() => None,
                _ => return Err(lx.err("bad LIST delimiter")),
            };
            let name = lx
                .value()?
                .bytes()
                .ok_or_else(|| lx.err("bad LIST name"))?
                .to_vec();
            Response::List(ListEntry {
                attributes,
                delimiter,
                name,
            })
        }
        "STATUS" => {
            let name = lx
                .value()?
                .bytes()
                .ok_or_else(|| lx.err("bad STATUS name"))?
                .to_vec();
            let Value::List(values) = lx.value()? else {
                return Err(lx.err("bad STATUS items"));
            };
            let items = values
                .chunks(2)
                .filter_map(|pair| match pair {
                    [key, value] => Some((key.atom()?.to_ascii_uppercase(), value.number()?)),
                    _ => None,
                })
                .collect();
            Response::MailboxStatus { name, items }
        }
        "NAMESPACE" => {
            let personal = match lx.value()? {
                Value::List(spaces) => match spaces.first() {
                    Some(Value::List(space)) => {
                        let prefix = space.first().and_then(Value::bytes);
                        let prefix = prefix.ok_or_else(|| lx.err("bad NAMESPACE prefix"))?;
                        let delimiter = match space.get(1) {
                            Some(Value::Str(d)) if d.len() == 1 => Some(d[0] as char),
                            _ => None,
                        };
                        Some((prefix.to_vec(), delimiter))
                    }
                    _ => None,
                },
                _ => None,
            };
            Response::Namespace(personal)
        }
        "SEARCH" => {
            let mut uids = Vec::new();
            while !lx.at_end() {
                // A trailing (MODSEQ n) is not a UID.
                if let Value::Atom(a) = lx.value()?
                    && let Some(n) = std::str::from_utf8(&a).ok().and_then(|a| a.parse().ok())
                {
                    uids.push(n);
                }
                lx.spaces();
            }
            Response::Search(uids)
        }
        "VANISHED" => {
            lx.spaces();
            let earlier = if lx.peek() == Some(b'(') {
                let tag = atoms(&lx.value()?);
                tag.iter().any(|t| t.eq_ignore_ascii_case("EARLIER"))
            } else {
                false
            };
            let set = lx.rest();
            let uids = parse_set(&set).ok_or_else(|| lx.err("bad VANISHED set"))?;
            Response::Vanished { earlier, uids }
        }
        _ => Response::Other(format!(
            "{word} {}",
            shorten(&line[lx.pos.min(line.len())..])
        )),
    })
}

/// Whether a response line segment (up to and including CRLF) announces a literal; returns its
/// length and whether it is the `BODY[]` of a FETCH (which the driver streams).
pub fn literal_at_end(segment: &[u8]) -> Option<(usize, bool)> {
    let line = segment
        .strip_suffix(b"\r\n")
        .or_else(|| segment.strip_suffix(b"\n"))?;
    let line = line.strip_suffix(b"}")?;
    let open = memchr::memrchr(b'{', line)?;
    let digits = &line[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let len = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let before = line[..open].strip_suffix(b"~").unwrap_or(&line[..open]);
    let before = before.trim_ascii_end();
    let upper = before.to_ascii_uppercase();
    let body = upper.ends_with(b"BODY[]") || upper.ends_with(b"BINARY[]") || {
        // BODY[]<0> partial form.
        upper.ends_with(b">")
            && memchr::memmem::rfind(&upper, b"BODY[]<")
                .is_some_and(|p| !upper[p..].contains(&b' '))
    };
    Some((len, body))
}

/// Encodes a mailbox name in modified UTF-7 (RFC 3501 §5.1.3).
pub fn utf7_encode(name: &str) -> String {
    use base64::Engine;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::IMAP_MUTF7,
        base64::engine::general_purpose::NO_PAD,
    );
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&engine.encode(bytes));
        out.push('-');
        pending.clear();
    };
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut pending, &mut out);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Decodes a modified UTF-7 mailbox name; `None` if it is not valid.
pub fn utf7_decode(name: &[u8]) -> Option<String> {
    use base64::Engine;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::IMAP_MUTF7,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        let b = name[i];
        if b == b'&' {
            let end = i + 1 + name[i + 1..].iter().position(|&c| c == b'-')?;
            if end == i + 1 {
                out.push('&');
            } else {
                let bytes = engine.decode(&name[i + 1..end]).ok()?;
                if bytes.len() % 2 != 0 {
                    return None;
                }
                let units: Vec<u16> = bytes
                    .chunks(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect();
                let decoded = String::from_utf16(&units).ok()?;
                // Printable ASCII must not be encoded (it would make two names for one mailbox).
                if decoded.chars().any(|c| (' '..='~').contains(&c)) {
                    return None;
                }
                out.push_str(&decoded);
            }
            i = end + 1;
        } else if (0x20..=0x7e).contains(&b) {
            out.push(b as char);
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

/// Quotes a string for a command; `None` if it holds CR, LF or NUL (those need a literal).
pub fn quote(s: &str) -> Option<String> {
    if s.contains(['\r', '\n', '\0']) {
        return None;
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_are_found_in_untagged_and_tagged_replies() {
        let alert = |line: &[u8]| parse(line).unwrap().alert().map(str::to_string);
        assert_eq!(
            alert(b"* OK [ALERT] Mailbox is at 95% of quota\r\n").as_deref(),
            Some("Mailbox is at 95% of quota")
        );
        assert_eq!(
            alert(b"a2 NO [ALERT] System going down\r\n").as_deref(),
            Some("System going down")
        );
        assert_eq!(alert(b"* OK [UIDNEXT 4] next\r\n"), None);
        assert_eq!(alert(b"* 3 EXISTS\r\n"), None);
    }

    #[test]
    fn tagged_and_status_responses() {
        assert_eq!(
            parse(b"a1 OK [READ-WRITE] SELECT completed\r\n").unwrap(),
            Response::Tagged {
                tag: "a1".into(),
                status: StatusLine {
                    status: Status::Ok,
                    code: Some(Code::Other("READ-WRITE".into(), String::new())),
                    text: "SELECT completed".into()
                }
            }
        );
        assert_eq!(
            parse(b"* OK [UIDVALIDITY 3857529045] UIDs valid").unwrap(),
            Response::Status(StatusLine {
                status: Status::Ok,
                code: Some(Code::UidValidity(3857529045)),
                text: "UIDs valid".into()
            })
        );
        assert_eq!(
            parse(b"a2 OK [APPENDUID 38505 3955] APPEND completed").unwrap(),
            Response::Tagged {
                tag: "a2".into(),
                status: StatusLine {
                    status: Status::Ok,
                    code: Some(Code::AppendUid(38505, 3955)),
                    text: "APPEND completed".into()
                }
            }
        );
        assert!(matches!(
            parse(b"* OK [HIGHESTMODSEQ 715194045007]").unwrap(),
            Response::Status(StatusLine {
                code: Some(Code::HighestModseq(715194045007)),
                ..
            })
        ));
        assert!(matches!(
            parse(b"* OK [CAPABILITY IMAP4rev1  SASL-IR AUTH=PLAIN] ready").unwrap(),
            Response::Status(StatusLine { code: Some(Code::Capability(c)), .. }) if c == ["IMAP4REV1", "SASL-IR", "AUTH=PLAIN"]
        ));
        assert_eq!(
            parse(b"+ Ready for literal").unwrap(),
            Response::Continue("Ready for literal".into())
        );
        assert_eq!(parse(b"+").unwrap(), Response::Continue(String::new()));
        assert!(parse(b"a3 MAYBE").is_err());
        assert!(parse(b"").is_err());
    }

    #[test]
    fn namespaces() {
        let cyrus = parse(br#"* NAMESPACE (("INBOX." ".")) (("user." ".")) (("" "."))"#);
        assert_eq!(
            cyrus.unwrap(),
            Response::Namespace(Some((b"INBOX.".to_vec(), Some('.'))))
        );
        let dovecot = parse(br#"* NAMESPACE (("" "/" "X-PARAM" ("x"))) NIL NIL"#);
        assert_eq!(
            dovecot.unwrap(),
            Response::Namespace(Some((Vec::new(), Some('/'))))
        );
        let flat = parse(br#"* NAMESPACE (("" NIL)) NIL NIL"#).unwrap();
        assert_eq!(flat, Response::Namespace(Some((Vec::new(), None))));
        assert_eq!(
            parse(b"* NAMESPACE NIL NIL NIL").unwrap(),
            Response::Namespace(None)
        );
        assert!(parse(br#"* NAMESPACE ((( "x"))) NIL NIL"#).is_err());
    }

    #[test]
    fn untagged_data() {
        assert_eq!(parse(b"* 172 EXISTS").unwrap(), Response::Exists(172));
        assert_eq!(parse(b"* 3 EXPUNGE").unwrap(), Response::Expunge(3));
        assert_eq!(
            parse(b"* CAPABILITY IMAP4rev1 UIDPLUS condstore").unwrap(),
            Response::Capability(vec![
                "IMAP4REV1".into(),
                "UIDPLUS".into(),
                "CONDSTORE".into()
            ])
        );
        assert_eq!(
            parse(b"* ENABLED QRESYNC").unwrap(),
            Response::Enabled(vec!["QRESYNC".into()])
        );
        assert_eq!(
            parse(b"* SEARCH 2 84 882").unwrap(),
            Response::Search(vec![2, 84, 882])
        );
        assert_eq!(parse(b"* SEARCH").unwrap(), Response::Search(vec![]));
        assert_eq!(
            parse(b"* OK [PERMANENTFLAGS (\\Seen \\Deleted $Junk \\*)] Limited").unwrap(),
            Response::Status(StatusLine {
                status: Status::Ok,
                code: Some(Code::PermanentFlags(vec![
                    "\\Seen".into(),
                    "\\Deleted".into(),
                    "$Junk".into(),
                    "\\*".into()
                ])),
                text: "Limited".into()
            })
        );
        assert_eq!(
            parse(b"* OK [PERMANENTFLAGS ()] none").unwrap(),
            Response::Status(StatusLine {
                status: Status::Ok,
                code: Some(Code::PermanentFlags(vec![])),
                text: "none".into()
            })
        );
        assert_eq!(
            parse(b"* STATUS \"Caf&AOk-\" (MESSAGES 231 unseen 7 UIDNEXT 44292)").unwrap(),
            Response::MailboxStatus {
                name: b"Caf&AOk-".to_vec(),
                items: vec![
                    ("MESSAGES".into(), 231),
                    ("UNSEEN".into(), 7),
                    ("UIDNEXT".into(), 44292)
                ]
            }
        );
        assert_eq!(
            parse(b"* STATUS {5}\r\na b c ()").unwrap(),
            Response::MailboxStatus {
                name: b"a b c".to_vec(),
                items: vec![]
            }
        );
        assert_eq!(
            parse(b"* VANISHED (EARLIER) 41,43:116,118").unwrap(),
            Response::Vanished {
                earlier: true,
                uids: vec![(41, 41), (43, 116), (118, 118)]
            }
        );
        assert_eq!(
            parse(b"* LIST (\\HasNoChildren) \".\" \"Work.Caf&AOk-\"").unwrap(),
            Response::List(ListEntry {
                attributes: vec!["\\HasNoChildren".into()],
                delimiter: Some('.'),
                name: b"Work.Caf&AOk-".to_vec()
            })
        );
        assert_eq!(
            parse(b"* LIST (\\Noselect) NIL {5}\r\na\"b)c").unwrap(),
            Response::List(ListEntry {
                attributes: vec!["\\Noselect".into()],
                delimiter: None,
                name: b"a\"b)c".to_vec()
            })
        );
        assert_eq!(
            parse(b"* LIST () \"/\" INBOX").unwrap(),
            Response::List(ListEntry {
                attributes: vec![],
                delimiter: Some('/'),
                name: b"INBOX".to_vec()
            })
        );
        assert!(matches!(
            parse(b"* FLAGS (\\Answered \\Seen)").unwrap(),
            Response::Other(_)
        ));
        assert!(matches!(parse(b"* 5 RECENT").unwrap(), Response::Other(_)));
    }

    #[test]
    fn fetch_responses() {
        let f = parse(
            b"* 12 FETCH (UID 4827 FLAGS (\\Seen $Junk) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE 4286 MODSEQ (12121) BODY[] {0}\r\n)",
        )
        .unwrap();
        assert_eq!(
            f,
            Response::Fetch(Fetch {
                seq: 12,
                uid: Some(4827),
                flags: Some(vec!["\\Seen".into(), "$Junk".into()]),
                internaldate: Some("17-Jul-1996 02:44:25 -0700".into()),
                size: Some(4286),
                modseq: Some(12121),
                body: true,
                header: None,
            })
        );
        let f = parse(
            b"* 1 FETCH (BODY[HEADER.FIELDS (MESSAGE-ID)] {21}\r\nMessage-ID: <a@b>\r\n\r\n UID 7)",
        )
        .unwrap();
        let Response::Fetch(f) = f else { panic!() };
        assert_eq!(f.uid, Some(7));
        assert_eq!(f.header.as_deref(), Some(&b"Message-ID: <a@b>\r\n\r\n"[..]));
        // Flag changes of other messages arrive unsolicited, without a body.
        let Response::Fetch(f) = parse(b"* 3 FETCH (FLAGS (\\Deleted) UID 9)").unwrap() else {
            panic!()
        };
        assert_eq!((f.uid, f.body), (Some(9), false));
        assert!(parse(b"* 3 FETCH (UID)").is_err());
        assert!(parse(b"* 3 FETCH UID 9").is_err());
    }

    #[test]
    fn literals_at_segment_ends() {
        assert_eq!(
            literal_at_end(b"* 1 FETCH (UID 5 BODY[] {1234}\r\n"),
            Some((1234, true))
        );
        assert_eq!(
            literal_at_end(b"* 1 FETCH (UID 5 body[] {12}\r\n"),
            Some((12, true))
        );
        assert_eq!(
            literal_at_end(b"* 1 FETCH (BODY[]<0> {12}\r\n"),
            Some((12, true))
        );
        assert_eq!(
            literal_at_end(b"* 1 FETCH (BINARY[] ~{12}\r\n"),
            Some((12, true))
        );
        assert_eq!(literal_at_end(b"* LIST () \"/\" {5}\r\n"), Some((5, false)));
        assert_eq!(
            literal_at_end(b"* 1 FETCH (BODY[HEADER] {5}\r\n"),
            Some((5, false))
        );
        assert_eq!(literal_at_end(b"* OK {not a literal}\r\n"), None);
        assert_eq!(literal_at_end(b"* OK done\r\n"), None);
    }

    #[test]
    fn sets() {
        assert_eq!(
            parse_set("1:3,5,9:7,10:*"),
            Some(vec![(1, 3), (5, 5), (7, 9), (10, u32::MAX)])
        );
        assert_eq!(parse_set("x"), None);
        assert_eq!(format_set(&[5, 1, 2, 3, 9, 10]), "1:3,5,9:10");
        assert_eq!(format_set(&[]), "");
    }

    #[test]
    fn modified_utf7() {
        for (utf8, wire) in [
            ("INBOX", "INBOX"),
            ("Cartório", "Cart&APM-rio"),
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("A&B", "A&-B"),
            ("😀 smile", "&2D3eAA- smile"),
        ] {
            assert_eq!(utf7_encode(utf8), wire, "{utf8}");
            assert_eq!(
                utf7_decode(wire.as_bytes()).as_deref(),
                Some(utf8),
                "{wire}"
            );
        }
        assert_eq!(utf7_decode(b"&Jjo!"), None);
        assert_eq!(
            utf7_decode(b"&AGE-"),
            None,
            "encoded ASCII is not canonical"
        );
        assert_eq!(
            utf7_decode(b"caf\xc3\xa9"),
            None,
            "8-bit is not modified UTF-7"
        );
        assert_eq!(utf7_decode(b"&2D3-"), None, "a lone surrogate");
    }

    #[test]
    fn nil_is_a_name_where_a_name_stands() {
        // Found by the fetch read-back property: a keyword "nil" was read as NIL, i.e. lost.
        let Ok(Response::Fetch(f)) =
            parse(b"* 1 FETCH (UID 7 FLAGS (nil \\Seen) BODY[HEADER.FIELDS (MESSAGE-ID)] NIL)")
        else {
            panic!()
        };
        assert_eq!(f.flags, Some(vec!["nil".to_string(), "\\Seen".to_string()]));
        assert_eq!(f.header, None);
        let Ok(Response::List(l)) = parse(b"* LIST () NIL NIL") else {
            panic!()
        };
        assert_eq!((l.delimiter, l.name), (None, b"NIL".to_vec()));
    }

    #[test]
    fn quoting() {
        assert_eq!(
            quote("a \"b\" \\c").as_deref(),
            Some("\"a \\\"b\\\" \\\\c\"")
        );
        assert_eq!(quote("a\r\nb"), None);
    }

    proptest::proptest! {
        #[test]
        fn utf7_round_trips(name in "\\PC{0,20}") {
            let wire = utf7_encode(&name);
            proptest::prop_assert!(wire.is_ascii());
            proptest::prop_assert_eq!(utf7_decode(wire.as_bytes()), Some(name));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse(&bytes);
            let _ = literal_at_end(&bytes);
        }

        /// Input built from the grammar's own pieces reaches deep into the parser, where
        /// random bytes rarely go.
        #[test]
        fn parse_survives_imap_shaped_input(
            pieces in proptest::collection::vec(proptest::sample::select(IMAP_PIECES), 0..40),
            noise in proptest::collection::vec(proptest::num::u8::ANY, 0..3),
        ) {
            let mut line: Vec<u8> = pieces.concat().into_bytes();
            let at = noise.first().map_or(0, |&b| b as usize % (line.len() + 1));
            line.splice(at..at, noise.iter().copied());
            let _ = parse(&line);
            let _ = literal_at_end(&line);
            if let Ok(text) = std::str::from_utf8(&line) {
                let _ = parse_set(text);
            }
        }

        #[test]
        fn fetch_responses_read_back(
            seq in 1u32..,
            uid in 1u32..,
            flags in proptest::collection::btree_set("\\\\(Seen|Answered|Flagged|Deleted|Draft)|[$A-Za-z][A-Za-z0-9_.-]{0,12}", 0..6),
            size in proptest::num::u64::ANY,
            modseq in 1u64..,
            order in 0usize..4,
        ) {
            let flags: Vec<String> = flags.into_iter().collect();
            let mut items = [
                format!("UID {uid}"),
                format!("FLAGS ({})", flags.join(" ")),
                format!("RFC822.SIZE {size}"),
                format!("MODSEQ ({modseq})"),
            ];
            items.rotate_left(order);
            let line = format!("* {seq} FETCH ({})\r\n", items.join(" "));
            let Ok(Response::Fetch(f)) = parse(line.as_bytes()) else {
                return Err(proptest::test_runner::TestCaseError::fail(line));
            };
            proptest::prop_assert_eq!(f.seq, seq);
            proptest::prop_assert_eq!(f.uid, Some(uid));
            proptest::prop_assert_eq!(f.flags, Some(flags));
            proptest::prop_assert_eq!(f.size, Some(size));
            proptest::prop_assert_eq!(f.modseq, Some(modseq));
        }

        #[test]
        fn uid_sets_round_trip(uids in proptest::collection::btree_set(1u32.., 0..60)) {
            let uids: Vec<u32> = uids.into_iter().collect();
            let set = format_set(&uids);
            let mut back = Vec::new();
            for (a, b) in parse_set(&set).unwrap_or_default() {
                back.extend(a..=b);
            }
            proptest::prop_assert_eq!(back, uids);
        }
    }

    /// Pieces of IMAP responses for [`parse_survives_imap_shaped_input`].
    const IMAP_PIECES: &[&str] = &[
        "* ",
        "A1 ",
        "+ ",
        "OK ",
        "NO ",
        "BAD ",
        "BYE ",
        "PREAUTH ",
        "1 ",
        "42 ",
        "4294967296 ",
        "FETCH ",
        "EXISTS",
        "EXPUNGE",
        "LIST ",
        "LSUB ",
        "SEARCH ",
        "STATUS ",
        "VANISHED ",
        "(EARLIER) ",
        "CAPABILITY ",
        "ENABLED ",
        "UID ",
        "FLAGS ",
        "MODSEQ ",
        "RFC822.SIZE ",
        "INTERNALDATE ",
        "BODY[] ",
        "BODY[]<0> ",
        "BODY[HEADER.FIELDS (MESSAGE-ID)] ",
        "BINARY[] ",
        "(",
        ")",
        "[",
        "]",
        "{3}\r\n",
        "{0}\r\n",
        "{99999999999}\r\n",
        "\"",
        "\\",
        "NIL",
        "\\Seen ",
        "$Junk ",
        "\"/\" ",
        "\"a b\" ",
        "1:*",
        "1:3,5",
        ",",
        ":",
        "*",
        " ",
        "\r\n",
        "[UIDNEXT 7] ",
        "[APPENDUID 3 9] ",
        "[HIGHESTMODSEQ 12] ",
        "&AOk-",
        "\u{e9}",
    ];
}
