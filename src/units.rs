//! Parsing of human-written durations ("30d") and sizes ("20M") used in config and flags.

use std::time::Duration;

/// Parses a duration such as `500ms`, `45s`, `90m`, `12h`, `30d` or `2w`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text)?;
    if unit == "ms" {
        return Ok(Duration::from_millis(number));
    }
    let seconds_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "\"{text}\" is not a duration: expected a number and a unit ms, s, m, h, d or w (e.g. \"30d\")"
            ));
        }
    };
    number
        .checked_mul(seconds_per)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("\"{text}\" is too long a duration"))
}

/// A duration the way a person writes it: `250ms`, `10s`, `5m`, `2h`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0..1000 => format!("{ms}ms"),
        _ if !ms.is_multiple_of(60_000) || ms < 60_000 => format!("{}s", d.as_secs()),
        _ if !ms.is_multiple_of(3_600_000) => format!("{}m", d.as_secs() / 60),
        _ => format!("{}h", d.as_secs() / 3600),
    }
}

/// Parses a size such as `512`, `64k`, `20M` or `1G` (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text)?;
    let factor: u64 = match unit {
        "" | "b" | "B" => 1,
        "k" | "K" => 1 << 10,
        "m" | "M" => 1 << 20,
        "g" | "G" => 1 << 30,
        _ => {
            return Err(format!(
                "\"{text}\" is not a size: expected a number and an optional unit k, M or G (e.g. \"20M\")"
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("\"{text}\" is too large a size"))
}

fn split_number(text: &str) -> Result<(u64, &str), String> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!("\"{text}\" does not start with a number"));
    }
    let number = text[..digits]
        .parse()
        .map_err(|_| format!("\"{text}\": the number is too large"))?;
    Ok((number, text[digits..].trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("30y").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert_eq!(parse_duration("50ms"), Ok(Duration::from_millis(50)));
        for text in ["50ms", "10s", "90s", "5m", "2h"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("20M"), Ok(20 << 20));
        assert!(parse_size("20X").is_err());
        assert!(parse_size("").is_err());
    }
}
