//! Times and durations as operators read and type them: tables in the
//! local zone, JSON in RFC 3339 (UTC), durations as `1h2m`, `60s`, `500ms`.

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::error::{CtlError, Result};

/// Milliseconds since the Unix epoch, now.
#[must_use]
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn timestamp(ms: u64) -> Option<Timestamp> {
    Timestamp::from_millisecond(i64::try_from(ms).ok()?).ok()
}

/// RFC 3339 in UTC, for JSON: `2026-12-06T11:23:05.123Z`.
#[must_use]
pub fn rfc3339(ms: u64) -> String {
    timestamp(ms).map_or_else(|| ms.to_string(), |t| t.to_string())
}

/// The operator's local zone (`TZ`, else /etc/localtime, else UTC).
fn local_zone() -> TimeZone {
    TimeZone::try_system().unwrap_or(TimeZone::UTC)
}

/// A table cell: local date and time to the second, `2026-12-06 12:23:05`.
#[must_use]
pub fn local(ms: u64) -> String {
    local_in(ms, &local_zone())
}

fn local_in(ms: u64, zone: &TimeZone) -> String {
    match timestamp(ms) {
        Some(t) => t
            .to_zoned(zone.clone())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        None => ms.to_string(),
    }
}

/// A short duration for tables: `230ms`, `4.2s`, `3m12s`, `2h5m`, `3d4h`.
#[must_use]
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..10_000 => format!("{}.{}s", s, (ms % 1000) / 100),
        10_000..60_000 => format!("{s}s"),
        60_000..3_600_000 => format!("{}m{}s", s / 60, s % 60),
        3_600_000..86_400_000 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// `expires` as seen from `now`: "in 2.3s" or "2.3s ago".
#[must_use]
pub fn relative(expires_ms: u64, now_ms: u64) -> String {
    if expires_ms >= now_ms {
        format!("in {}", age(expires_ms - now_ms))
    } else {
        format!("{} ago", age(now_ms - expires_ms))
    }
}

/// A duration typed by an operator: `500ms`, `60s`, `5m`, `2h`, `1h30m`, or
/// a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let bad = || {
        CtlError::usage(format!(
            "{text:?} is not a duration (examples: 500ms, 60s, 5m, 1h30m)"
        ))
    };
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(unit);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// A point in time typed by an operator: RFC 3339 (`2027-05-01T19:30:00Z`,
/// `2027-05-01T19:30:00+01:00`), ms since the epoch, or `+DURATION` from now.
pub fn parse_time(text: &str, now_ms: u64) -> Result<u64> {
    let text = text.trim();
    if let Some(later) = text.strip_prefix('+') {
        let d = parse_duration(later)?;
        return Ok(now_ms.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)));
    }
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let t: Timestamp = text.parse().map_err(|e| {
        CtlError::usage(format!(
            "{text:?} is not a time: use RFC 3339 (2027-05-01T19:30:00Z), ms since the epoch, or +DURATION ({e})"
        ))
    })?;
    u64::try_from(t.as_millisecond())
        .map_err(|_| CtlError::usage(format!("{text:?} is before 1970")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_with_millis() {
        assert_eq!(rfc3339(1_796_000_000_000), "2026-11-30T00:53:20Z");
        assert_eq!(rfc3339(1_796_000_000_123), "2026-11-30T00:53:20.123Z");
    }

    #[test]
    fn local_times_follow_the_zone() {
        let zone = TimeZone::fixed(jiff::tz::offset(2));
        assert_eq!(local_in(1_796_000_000_000, &zone), "2026-11-30 02:53:20");
        assert_eq!(
            local_in(1_796_000_000_000, &TimeZone::UTC),
            "2026-11-30 00:53:20"
        );
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(age(230), "230ms");
        assert_eq!(age(4_250), "4.2s");
        assert_eq!(age(42_000), "42s");
        assert_eq!(age(192_000), "3m12s");
        assert_eq!(age(7_500_000), "2h5m");
        assert_eq!(relative(1_500, 1_000), "in 500ms");
        assert_eq!(relative(1_000, 3_000), "2.0s ago");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("60").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        for bad in ["", "s", "5x", "1.5s", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_parse() {
        assert_eq!(
            parse_time("2026-11-30T00:53:20Z", 0).unwrap(),
            1_796_000_000_000
        );
        assert_eq!(
            parse_time("2026-11-30T01:53:20+01:00", 0).unwrap(),
            1_796_000_000_000
        );
        assert_eq!(parse_time("1796000000000", 0).unwrap(), 1_796_000_000_000);
        assert_eq!(parse_time("+1m", 1_000).unwrap(), 61_000);
        assert!(parse_time("next tuesday", 0).is_err());
    }
}
