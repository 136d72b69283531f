//! CronJob schedules: the 5-field cron syntax and macros upstream accepts (robfig/cron's
//! standard parser), evaluated in the CronJob's `timeZone` (the controller's local zone
//! without one), and which scheduled time is due at a given moment.
//!
//! Evaluation is croner's; this module first brings a schedule to robfig's meaning:
//! only 5 fields or a macro (`@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
//! `@midnight`, `@hourly`), no seconds, no `L`/`W`/`#`; `N/step` means `N-max/step`; and a
//! day-of-month or day-of-week field containing `*` or `?` (with step 1) is written `*`, so
//! croner's rule "both days restricted → either matches, else both must" is robfig's
//! (robfig keys the AND/OR choice on the star bit, which `*/1` and `*,5` also carry).
//!
//! Invariant: a [`Schedule`] never yields a time at or before the one it is asked about
//! ([`Schedule::next_after`] is strictly later).

use croner::parser::{CronParser, Seconds};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("unknown time zone {0}")]
    UnknownTimeZone(String),
    #[error("{0}")]
    Unparseable(String),
}

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    tz: TimeZone,
}

/// Which scheduled time is due now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The latest scheduled time at or before now (and after the earliest time asked about).
    pub time: Timestamp,
    /// Roughly how many scheduled times were missed up to now, this one included (upstream
    /// estimates it from the period between the first two, as here).
    pub missed: i64,
}

impl Schedule {
    pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let tz = match time_zone {
            Some(name) => {
                TimeZone::get(name).map_err(|_| ScheduleError::UnknownTimeZone(name.to_owned()))?
            }
            None => TimeZone::system(),
        };
        let pattern = normalize(schedule)?;
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .sloppy_ranges(true)
            .build()
            .parse(&pattern)
            .map_err(|e| ScheduleError::Unparseable(e.to_string()))?;
        Ok(Schedule { cron, tz })
    }

    /// The first scheduled time strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let z = t.to_zoned(self.tz.clone());
        self.cron
            .find_next_occurrence(&z, false)
            .ok()
            .map(|z: Zoned| z.timestamp())
    }

    /// The latest scheduled time in `(earliest, now]`, if any.
    pub fn due(&self, earliest: Timestamp, now: Timestamp) -> Option<Due> {
        let t1 = self.next_after(earliest)?;
        if now < t1 {
            return None;
        }
        let latest = self
            .cron
            .find_previous_occurrence(&now.to_zoned(self.tz.clone()), true)
            .ok()
            .map(|z: Zoned| z.timestamp())
            .filter(|t| *t >= t1)
            .unwrap_or(t1);
        let missed = match self.next_after(t1) {
            Some(t2) if t2 <= now => {
                let period = t2.duration_since(t1).as_secs().max(1);
                now.duration_since(t1).as_secs() / period + 1
            }
            _ => 1,
        };
        Some(Due {
            time: latest,
            missed,
        })
    }

    /// The time zone the schedule is read in.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }
}

/// Brings a schedule to the croner pattern with robfig's meaning (see the module docs).
fn normalize(schedule: &str) -> Result<String, ScheduleError> {
    let s = schedule.trim();
    if let Some(name) = s.strip_prefix('@') {
        let fields = match name.to_ascii_lowercase().as_str() {
            "yearly" | "annually" => "0 0 1 1 *",
            "monthly" => "0 0 1 * *",
            "weekly" => "0 0 * * 0",
            "daily" | "midnight" => "0 0 * * *",
            "hourly" => "0 * * * *",
            _ => {
                return Err(ScheduleError::Unparseable(format!(
                    "unrecognized descriptor: {s}"
                )))
            }
        };
        return Ok(fields.to_owned());
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(ScheduleError::Unparseable(format!(
            "expected exactly 5 fields, found {}: {s}",
            fields.len()
        )));
    }
    let mut out = Vec::with_capacity(5);
    for (i, f) in fields.iter().enumerate() {
        if f.contains(['#']) || f.chars().any(|c| c.is_ascii_alphabetic()) && !is_named(i, f) {
            return Err(ScheduleError::Unparseable(format!(
                "failed to parse field {f}: {s}"
            )));
        }
        let is_day = i == 2 || i == 4;
        let starred = f.split(',').any(|part| {
            let (range, step) = part.split_once('/').unwrap_or((part, "1"));
            (range == "*" || range == "?") && step == "1"
        });
        if f.contains('?') && !is_day {
            return Err(ScheduleError::Unparseable(format!(
                "failed to parse field {f}: {s}"
            )));
        }
        out.push(if starred {
            "*".to_owned()
        } else {
            f.replace('?', "*")
        });
    }
    Ok(out.join(" "))
}

/// Month (`JAN`..`DEC`) and weekday (`SUN`..`SAT`) names, the only letters robfig takes.
fn is_named(field: usize, f: &str) -> bool {
    const MONTHS: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    let names: &[&str] = match field {
        3 => &MONTHS,
        4 => &DAYS,
        _ => return false,
    };
    f.split([',', '-', '/'])
        .filter(|w| w.chars().any(|c| c.is_ascii_alphabetic()))
        .all(|w| names.contains(&w.to_ascii_uppercase().as_str()))
}

#[cfg(test)]
mod tests;
