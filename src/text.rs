//! Making untrusted text (server replies, folder names) safe to print on a terminal.

/// Replaces control characters (including ESC and C1 controls, which can drive a terminal) with
/// `\u{..}` escapes and cuts the text at `max` characters.
pub fn sanitize(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for (n, ch) in text.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        if ch.is_control()
            || ('\u{202a}'..='\u{202e}').contains(&ch)
            || ('\u{2066}'..='\u{2069}').contains(&ch)
        {
            out.push_str(&ch.escape_unicode().to_string());
        } else {
            out.push(ch);
        }
    }
    out
}

/// [`sanitize`] for bytes that may not be UTF-8.
pub fn sanitize_bytes(bytes: &[u8], max: usize) -> String {
    sanitize(&String::from_utf8_lossy(bytes), max)
}

/// Bytes in lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_cuts() {
        assert_eq!(sanitize("ok \u{1b}[2Jgone", 100), "ok \\u{1b}[2Jgone");
        assert_eq!(sanitize("a\r\nb\u{9b}", 100), "a\\u{d}\\u{a}b\\u{9b}");
        assert_eq!(sanitize("x\u{202e}y", 100), "x\\u{202e}y");
        assert_eq!(sanitize("abcdef", 3), "abc…");
        assert_eq!(sanitize_bytes(b"\xffok", 10), "\u{fffd}ok");
    }
}
