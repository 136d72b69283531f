//! Ages and durations as kubectl shows them ("5m30s", "2d3h", "3y").
//!
//! Owns the one rounding rule every column uses: the upstream
//! `HumanDuration` steps (seconds below 2m, minutes+seconds below 10m, ...),
//! truncating toward zero, with up to 2s of negative skew shown as "0s" and
//! anything earlier as "<invalid>". Missing or zero timestamps are "<unknown>".

use chrono::{DateTime, Datelike, Duration, Utc};

/// Renders `d` with ~2-3 significant figures, exactly like apimachinery's
/// `duration.HumanDuration`.
pub fn human_duration(d: Duration) -> String {
    // Truncation toward zero matches Go's int(d.Seconds()).
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d.num_minutes();
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d.num_hours();
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{}h", hours / 24, h)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{}d", hours / 24 / 365, dy)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Parses a Kubernetes `Time`/`MicroTime` string. `None` for absent, empty,
/// unparsable, or Go's zero time, which upstream treats as "not set".
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc);
    if t.year() <= 1 {
        return None;
    }
    Some(t)
}

/// Age of a timestamp string relative to `now` ("<unknown>" when unset).
pub fn since(timestamp: Option<&str>, now: DateTime<Utc>) -> String {
    match timestamp.and_then(parse_time) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_string(),
    }
}

/// Age of an already parsed instant ("<unknown>" when unset).
pub fn since_time(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match t {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: i64) -> Duration {
        Duration::seconds(s)
    }

    #[test]
    fn short_durations_print_whole_seconds_up_to_two_minutes() {
        assert_eq!(human_duration(secs(0)), "0s");
        assert_eq!(human_duration(secs(45)), "45s");
        assert_eq!(human_duration(secs(119)), "119s");
    }

    #[test]
    fn minutes_keep_seconds_below_ten_minutes() {
        assert_eq!(human_duration(secs(120)), "2m");
        assert_eq!(human_duration(secs(330)), "5m30s");
        assert_eq!(human_duration(secs(300)), "5m");
        assert_eq!(human_duration(secs(600)), "10m");
        assert_eq!(human_duration(secs(6000)), "100m");
        assert_eq!(human_duration(secs(3 * 3600 - 1)), "179m");
    }

    #[test]
    fn hours_keep_minutes_below_eight_hours() {
        assert_eq!(human_duration(secs(3 * 3600)), "3h");
        assert_eq!(human_duration(secs(3 * 3600 + 25 * 60)), "3h25m");
        assert_eq!(human_duration(secs(8 * 3600 + 25 * 60)), "8h");
        assert_eq!(human_duration(secs(47 * 3600)), "47h");
    }

    #[test]
    fn days_keep_hours_below_eight_days_then_years() {
        assert_eq!(human_duration(secs(2 * 86400)), "2d");
        assert_eq!(human_duration(secs(2 * 86400 + 3 * 3600)), "2d3h");
        assert_eq!(human_duration(secs(90 * 86400)), "90d");
        assert_eq!(human_duration(secs(729 * 86400)), "729d");
        assert_eq!(human_duration(secs(730 * 86400)), "2y");
        assert_eq!(human_duration(secs(3 * 365 * 86400 + 20 * 86400)), "3y20d");
        assert_eq!(human_duration(secs(10 * 365 * 86400)), "10y");
    }

    #[test]
    fn small_negative_skew_is_zero_and_larger_is_invalid() {
        assert_eq!(human_duration(Duration::milliseconds(-1900)), "0s");
        assert_eq!(human_duration(Duration::milliseconds(-2100)), "<invalid>");
    }

    #[test]
    fn missing_and_zero_timestamps_are_unknown() {
        let now = Utc::now();
        assert_eq!(since(None, now), "<unknown>");
        assert_eq!(since(Some(""), now), "<unknown>");
        assert_eq!(since(Some("0001-01-01T00:00:00Z"), now), "<unknown>");
    }

    #[test]
    fn micro_time_with_fraction_parses() {
        let now = parse_time("2024-05-01T10:00:00Z").expect("valid time");
        assert_eq!(since(Some("2024-05-01T09:59:30.123456Z"), now), "29s");
    }
}
