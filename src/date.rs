//! Time: INTERNALDATE (`17-Jul-1996 02:44:25 -0700`) to and from system time, RFC 5322 dates,
//! log stamps, and the clock (which tests can set).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Parses an INTERNALDATE; `None` if it is malformed.
pub fn parse(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (date, rest) = text.split_once(' ')?;
    let mut parts = date.split('-');
    let day: i64 = parts.next()?.trim().parse().ok()?;
    let month_name = parts.next()?;
    let month = MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(month_name))? as i64
        + 1;
    let year: i64 = parts.next()?.parse().ok()?;
    let (time, zone) = rest.trim().split_once(' ')?;
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, s) = (hms.next()??, hms.next()??, hms.next()??);
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let z: i64 = zone.get(1..5)?.parse().ok()?;
    if !(1..=31).contains(&day) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let offset = sign * ((z / 100) * 3600 + (z % 100) * 60);
    let secs = days_from_civil(year, month, day) * 86_400 + h * 3600 + mi * 60 + s - offset;
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs as u64))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

/// Formats a time as an INTERNALDATE in UTC (the date of a message added to a server).
pub fn format(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{d:02}-{}-{y:04} {:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A time in UTC as RFC 3339 (`2026-11-22T10:52:37Z`), for log lines.
pub fn timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// An RFC 5322 `Date:` header value (`Tue, 1 Jul 2003 10:52:37 +0200`, obsolete zone names
/// and two-digit years accepted) as an INTERNALDATE, keeping its zone; `None` if malformed.
pub fn from_header(value: &str) -> Option<String> {
    // Comments such as "(CEST)" carry nothing needed.
    let mut text = String::with_capacity(value.len());
    let mut depth = 0usize;
    for c in value.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            c if depth == 0 => text.push(c),
            _ => {}
        }
    }
    let text = text.split_once(',').map_or(text.as_str(), |(_, rest)| rest);
    let mut words = text.split_whitespace();
    let day: u32 = words.next()?.parse().ok()?;
    let month = words.next()?;
    let month = MONTHS.iter().find(|m| m.eq_ignore_ascii_case(month))?;
    let year: u32 = match words.next()?.parse().ok()? {
        y @ 0..=49 => y + 2000,
        y @ 50..=999 => y + 1900,
        y => y,
    };
    let mut hms = words.next()?.split(':');
    let (h, mi) = (
        hms.next()?.parse::<u32>().ok()?,
        hms.next()?.parse::<u32>().ok()?,
    );
    let s = hms.next().map_or(Some(0), |s| s.parse::<u32>().ok())?;
    let zone = match words.next().unwrap_or("-0000") {
        z if z.len() == 5
            && matches!(z.as_bytes()[0], b'+' | b'-')
            && z[1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            z.to_string()
        }
        z => match z.to_ascii_uppercase().as_str() {
            "EDT" => "-0400",
            "EST" | "CDT" => "-0500",
            "CST" | "MDT" => "-0600",
            "MST" | "PDT" => "-0700",
            "PST" => "-0800",
            _ => "+0000",
        }
        .to_string(),
    };
    if !(1..=31).contains(&day) || h > 23 || mi > 59 || s > 60 || year > 9999 {
        return None;
    }
    Some(format!(
        "{day:02}-{month}-{year:04} {h:02}:{mi:02}:{s:02} {zone}"
    ))
}

/// The current unix time; `MAILFERRY_NOW` (unix seconds) overrides it, for tests of
/// time-based policies such as delete_after.
pub fn now() -> i64 {
    if let Some(t) = std::env::var("MAILFERRY_NOW")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return t;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_057_049_557);
        assert_eq!(timestamp(t), "2003-07-01T08:52:37Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn date_headers_become_internaldates() {
        for (header, want) in [
            (
                "Tue, 1 Jul 2003 10:52:37 +0200",
                "01-Jul-2003 10:52:37 +0200",
            ),
            ("1 Jul 2003 10:52 -0000", "01-Jul-2003 10:52:00 -0000"),
            ("Fri, 21 Nov 97 09:55:06 GMT", "21-Nov-1997 09:55:06 +0000"),
            (
                "Mon, 3 Feb 2025 08:00:00 PST (Pacific)",
                "03-Feb-2025 08:00:00 -0800",
            ),
            (
                " Wed,\t5  Mar 2025 23:59:60 +0530 (IST)",
                "05-Mar-2025 23:59:60 +0530",
            ),
        ] {
            assert_eq!(from_header(header).as_deref(), Some(want), "{header}");
            assert!(parse(want).is_some(), "{want}");
        }
        for bad in [
            "",
            "yesterday",
            "32 Jan 2020 00:00 +0000",
            "1 Foo 2020 00:00 +0000",
        ] {
            assert_eq!(from_header(bad), None, "{bad}");
        }
    }

    #[test]
    fn round_trip_and_zones() {
        let t = parse("17-Jul-1996 02:44:25 -0700").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 837_596_665);
        assert_eq!(format(t), "17-Jul-1996 09:44:25 +0000");
        assert_eq!(
            parse(" 1-Jan-2000 00:00:00 +0000"),
            Some(UNIX_EPOCH + Duration::from_secs(946_684_800))
        );
        assert_eq!(parse(&format(t)), Some(t));
        assert_eq!(
            parse("29-Feb-2024 12:00:00 +0530").map(format).as_deref(),
            Some("29-Feb-2024 06:30:00 +0000")
        );
        for bad in [
            "",
            "17-Jul-1996",
            "17-Foo-1996 02:44:25 -0700",
            "17-Jul-1996 25:00:00 +0000",
            "17-Jul-1996 02:44:25 0700",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
