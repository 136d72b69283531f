use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().expect("a timestamp")
}

fn nexts(s: &Schedule, from: &str, n: usize) -> Vec<String> {
    let mut t = ts(from);
    let mut out = Vec::new();
    for _ in 0..n {
        t = s.next_after(t).expect("a next time");
        out.push(t.to_string());
    }
    out
}

#[test]
fn every_minute_fires_on_each_minute_strictly_after() {
    let s = Schedule::parse("*/1 * * * *", Some("UTC")).unwrap();
    assert_eq!(
        nexts(&s, "2026-01-01T00:00:00Z", 3),
        [
            "2026-01-01T00:01:00Z",
            "2026-01-01T00:02:00Z",
            "2026-01-01T00:03:00Z"
        ]
    );
    assert_eq!(
        s.next_after(ts("2026-01-01T00:00:30Z")),
        Some(ts("2026-01-01T00:01:00Z"))
    );
}

#[test]
fn macros_mean_what_cron_means() {
    let at = "2026-03-15T10:30:00Z";
    let first = |m: &str| nexts(&Schedule::parse(m, Some("UTC")).unwrap(), at, 1)[0].clone();
    assert_eq!(first("@hourly"), "2026-03-15T11:00:00Z");
    assert_eq!(first("@daily"), "2026-03-16T00:00:00Z");
    assert_eq!(first("@midnight"), "2026-03-16T00:00:00Z");
    assert_eq!(first("@weekly"), "2026-03-22T00:00:00Z"); // a Sunday
    assert_eq!(first("@monthly"), "2026-04-01T00:00:00Z");
    assert_eq!(first("@yearly"), "2027-01-01T00:00:00Z");
    assert_eq!(first("@annually"), "2027-01-01T00:00:00Z");
}

#[test]
fn restricted_day_of_month_and_week_match_either_like_cron() {
    // 13th of the month OR a Friday.
    let s = Schedule::parse("0 0 13 * 5", Some("UTC")).unwrap();
    assert_eq!(
        nexts(&s, "2026-02-01T00:00:00Z", 4),
        [
            "2026-02-06T00:00:00Z", // Fri
            "2026-02-13T00:00:00Z", // 13th (also a Friday)
            "2026-02-20T00:00:00Z", // Fri
            "2026-02-27T00:00:00Z", // Fri
        ]
    );
}

#[test]
fn a_starred_day_field_makes_the_other_decide_alone() {
    // robfig: `*/1` and `*,3` carry the star bit like `*`: only Mondays match, not every day.
    for dom in ["*", "*/1", "?", "*,3"] {
        let s = Schedule::parse(&format!("0 0 {dom} * MON"), Some("UTC")).unwrap();
        assert_eq!(
            nexts(&s, "2026-02-01T00:00:00Z", 2),
            ["2026-02-02T00:00:00Z", "2026-02-09T00:00:00Z"],
            "day of month {dom}"
        );
    }
    // `*/2` has no star bit: odd days OR Mondays.
    let s = Schedule::parse("0 0 */2 * MON", Some("UTC")).unwrap();
    assert_eq!(
        nexts(&s, "2026-02-01T00:00:00Z", 3),
        [
            "2026-02-02T00:00:00Z",
            "2026-02-03T00:00:00Z",
            "2026-02-05T00:00:00Z"
        ]
    );
}

#[test]
fn start_with_step_runs_to_the_end_of_the_range() {
    let s = Schedule::parse("50/5 * * * *", Some("UTC")).unwrap();
    assert_eq!(
        nexts(&s, "2026-01-01T00:00:00Z", 3),
        [
            "2026-01-01T00:50:00Z",
            "2026-01-01T00:55:00Z",
            "2026-01-01T01:50:00Z"
        ]
    );
}

#[test]
fn time_zone_moves_the_schedule() {
    let s = Schedule::parse("0 9 * * *", Some("Asia/Tokyo")).unwrap();
    assert_eq!(
        nexts(&s, "2026-01-01T00:30:00Z", 1),
        ["2026-01-02T00:00:00Z"]
    );
    let s = Schedule::parse("0 9 * * *", Some("America/New_York")).unwrap();
    assert_eq!(
        nexts(&s, "2026-01-01T00:00:00Z", 1),
        ["2026-01-01T14:00:00Z"]
    );
}

#[test]
fn daylight_saving_keeps_local_time_and_skips_nothing_twice() {
    // New York springs forward on 2026-03-08 (02:00 → 03:00) and falls back on
    // 2026-11-01 (02:00 → 01:00).
    let s = Schedule::parse("0 9 * * *", Some("America/New_York")).unwrap();
    assert_eq!(
        nexts(&s, "2026-03-07T00:00:00Z", 2),
        ["2026-03-07T14:00:00Z", "2026-03-08T13:00:00Z"],
        "09:00 local is 14:00 UTC before and 13:00 UTC after the change"
    );
    // 01:30 exists twice on the fall-back day; the job runs once.
    let s = Schedule::parse("30 1 * * *", Some("America/New_York")).unwrap();
    let times = nexts(&s, "2026-10-31T12:00:00Z", 3);
    assert_eq!(
        times,
        [
            "2026-11-01T05:30:00Z",
            "2026-11-02T06:30:00Z",
            "2026-11-03T06:30:00Z"
        ]
    );
    // 02:30 does not exist on the spring-forward day: croner runs it when the gap ends
    // (03:00 EDT), as Vixie cron does, rather than dropping the day.
    let s = Schedule::parse("30 2 * * *", Some("America/New_York")).unwrap();
    let spring = nexts(&s, "2026-03-07T12:00:00Z", 2);
    assert_eq!(
        spring[0], "2026-03-08T07:00:00Z",
        "the skipped 02:30 runs at 03:00 EDT"
    );
    assert_eq!(spring[1], "2026-03-09T06:30:00Z");
}

#[test]
fn bad_schedules_and_zones_are_refused() {
    for bad in [
        "* * * *",
        "0 0 * * * *",
        "@every 5m",
        "0 0 L * *",
        "0 0 * * 5#2",
        "61 * * * *",
        "? * * * *",
    ] {
        assert!(
            matches!(
                Schedule::parse(bad, None),
                Err(ScheduleError::Unparseable(_))
            ),
            "{bad} should not parse"
        );
    }
    assert_eq!(
        Schedule::parse("* * * * *", Some("Mars/Olympus")).unwrap_err(),
        ScheduleError::UnknownTimeZone("Mars/Olympus".into())
    );
}

#[test]
fn due_picks_the_latest_missed_time_and_counts_the_missed_ones() {
    let s = Schedule::parse("*/5 * * * *", Some("UTC")).unwrap();
    assert_eq!(
        s.due(ts("2026-01-01T00:00:00Z"), ts("2026-01-01T00:04:59Z")),
        None
    );
    let d = s
        .due(ts("2026-01-01T00:00:00Z"), ts("2026-01-01T00:05:00Z"))
        .unwrap();
    assert_eq!((d.time, d.missed), (ts("2026-01-01T00:05:00Z"), 1));
    let d = s
        .due(ts("2026-01-01T00:00:00Z"), ts("2026-01-01T10:02:00Z"))
        .unwrap();
    assert_eq!(d.time, ts("2026-01-01T10:00:00Z"));
    assert_eq!(d.missed, 120);
}
