//! What mailferry reads of a message itself, pure: header fields, line ends, content hashes.

use sha2::{Digest, Sha256};

/// The Message-ID in a header block, if any.
pub fn message_id(header: &[u8]) -> Option<String> {
    header_value(header, "message-id")
}

/// The (unfolded, trimmed) value of the first header field called `name` in a header block.
pub fn header_value(header: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() {
            break;
        }
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        if !field.trim().eq_ignore_ascii_case(name) {
            continue;
        }
        let mut value = value.trim().to_string();
        while let Some(next) = lines.peek().filter(|l| l.starts_with([' ', '\t'])) {
            value.push(' ');
            value.push_str(next.trim());
            lines.next();
        }
        let value = value.trim();
        return (!value.is_empty()).then(|| value.to_string());
    }
    None
}

/// The header block of a message (up to the first empty line, LF or CRLF line ends).
pub fn header(data: &[u8]) -> &[u8] {
    let end = memchr::memmem::find(data, b"\n\n")
        .or_else(|| memchr::memmem::find(data, b"\r\n\r\n"))
        .unwrap_or(data.len());
    &data[..end]
}

/// The Date header of a message as an IMAP date-time, if it has a readable one.
pub fn date(data: &[u8]) -> Option<String> {
    header_value(header(data), "date").and_then(|d| crate::date::from_header(&d))
}

/// SHA-256 of bytes, in hex.
pub fn sha256_hex(data: &[u8]) -> String {
    crate::text::hex(&Sha256::digest(data))
}

/// LF line ends to CRLF (IMAP wants CRLF; a Maildir holds LF).
pub fn to_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    let mut prev = 0u8;
    for &b in data {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// CRLF line ends to LF.
pub fn to_lf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for (i, &b) in data.iter().enumerate() {
        if b == b'\r' && data.get(i + 1) == Some(&b'\n') {
            continue;
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_message_ids() {
        assert_eq!(
            message_id(b"Message-ID: <a@b>\r\n\r\n").as_deref(),
            Some("<a@b>")
        );
        assert_eq!(
            message_id(b"message-id:\r\n <folded@x>\r\n\r\n").as_deref(),
            Some("<folded@x>")
        );
        assert_eq!(message_id(b"Subject: x\r\n\r\n"), None);
        assert_eq!(message_id(b""), None);
    }

    #[test]
    fn crlf() {
        assert_eq!(to_crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
        assert_eq!(to_crlf(b""), b"");
        assert_eq!(to_lf(b"a\r\nb\rc\n"), b"a\nb\rc\n");
    }

    #[test]
    fn header_ends_at_the_first_empty_line() {
        assert_eq!(header(b"A: 1\nB: 2\n\nbody\n\n"), b"A: 1\nB: 2");
        assert_eq!(header(b"A: 1\r\n\r\nbody"), b"A: 1");
        assert_eq!(header(b"A: 1"), b"A: 1");
    }
}
