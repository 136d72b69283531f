//! CronJob schedule syntax, as upstream checks it with robfig/cron's standard parser
//! (five fields or an `@` descriptor) plus its ban on `TZ=` inside the schedule.
//!
//! Invariant: returns robfig's error wording for the first problem found, so the 422 message
//! reads like kube-apiserver's.

struct Bounds {
    min: u64,
    max: u64,
    names: &'static [(&'static str, u64)],
}

const MONTHS: &[(&str, u64)] = &[
    ("jan", 1),
    ("feb", 2),
    ("mar", 3),
    ("apr", 4),
    ("may", 5),
    ("jun", 6),
    ("jul", 7),
    ("aug", 8),
    ("sep", 9),
    ("oct", 10),
    ("nov", 11),
    ("dec", 12),
];
const DAYS: &[(&str, u64)] = &[
    ("sun", 0),
    ("mon", 1),
    ("tue", 2),
    ("wed", 3),
    ("thu", 4),
    ("fri", 5),
    ("sat", 6),
];
const FIELDS: [Bounds; 5] = [
    Bounds {
        min: 0,
        max: 59,
        names: &[],
    },
    Bounds {
        min: 0,
        max: 23,
        names: &[],
    },
    Bounds {
        min: 1,
        max: 31,
        names: &[],
    },
    Bounds {
        min: 1,
        max: 12,
        names: MONTHS,
    },
    Bounds {
        min: 0,
        max: 6,
        names: DAYS,
    },
];

/// Go's `strconv.Atoi` failure text, as robfig embeds it.
fn parse_int(expr: &str) -> Result<u64, String> {
    match expr.parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("negative number ({n}) not allowed: {expr}")),
        Ok(n) => Ok(n.unsigned_abs()),
        Err(_) => Err(format!(
            "failed to parse int from {expr}: strconv.Atoi: parsing {}: invalid syntax",
            serde_json::to_string(expr).unwrap_or_default()
        )),
    }
}

fn parse_int_or_name(expr: &str, b: &Bounds) -> Result<u64, String> {
    let lower = expr.to_lowercase();
    if let Some((_, n)) = b.names.iter().find(|(name, _)| *name == lower) {
        return Ok(*n);
    }
    parse_int(expr)
}

fn check_range(expr: &str, b: &Bounds) -> Result<(), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let (start, mut end) = if low_high[0] == "*" || low_high[0] == "?" {
        (b.min, b.max)
    } else {
        let start = parse_int_or_name(low_high[0], b)?;
        let end = match low_high.len() {
            1 => start,
            2 => parse_int_or_name(low_high[1], b)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        (start, end)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = parse_int(range_and_step[1])?;
            // "N/step" means "N-max/step".
            if low_high.len() == 1 {
                end = b.max;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(())
}

/// Go's `time.ParseDuration` grammar: signed sequence of decimal numbers with units.
fn is_go_duration(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 || rest[..num_len] == *"." {
            return false;
        }
        rest = &rest[num_len..];
        let unit = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            // "ms" must win over "m", so longer units come first in the list above.
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

fn parse_descriptor(spec: &str) -> Result<(), String> {
    match spec {
        "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@midnight" | "@hourly" => {
            Ok(())
        }
        _ => match spec.strip_prefix("@every ") {
            Some(d) if is_go_duration(d) => Ok(()),
            Some(d) => Err(format!(
                "failed to parse duration {spec}: time: invalid duration {}",
                serde_json::to_string(d).unwrap_or_default()
            )),
            None => Err(format!("unrecognized descriptor: {spec}")),
        },
    }
}

/// Problems with a non-empty `spec.schedule`, in upstream's order.
pub(super) fn validate_schedule(schedule: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let mut spec = schedule.trim();
    // robfig accepts a leading TZ=/CRON_TZ= token; upstream then forbids it separately.
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        spec = spec
            .split_once(' ')
            .map(|(_, rest)| rest.trim())
            .unwrap_or("");
    }
    let parsed = if spec.is_empty() {
        Err("empty spec string".to_string())
    } else if spec.starts_with('@') {
        parse_descriptor(spec)
    } else {
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != 5 {
            Err(format!(
                "expected exactly 5 fields, found {}: [{}]",
                fields.len(),
                fields.join(" ")
            ))
        } else {
            fields.iter().zip(FIELDS.iter()).try_for_each(|(f, b)| {
                f.split(',')
                    .filter(|r| !r.is_empty())
                    .try_for_each(|r| check_range(r, b))
            })
        }
    };
    if let Err(e) = parsed {
        errs.push(e);
    }
    if schedule.contains("TZ") {
        errs.push("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".to_string());
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_schedules() {
        for s in [
            "*/5 * * * *",
            "0 0 * * 0",
            "30 2 1-15 jan,JUL mon-fri",
            "0 */2 * * *",
            "@hourly",
            "@every 1h30m",
            "5 4 ? * sun",
        ] {
            assert!(
                validate_schedule(s).is_empty(),
                "{s}: {:?}",
                validate_schedule(s)
            );
        }
    }

    #[test]
    fn rejects_with_robfig_wording() {
        assert_eq!(
            validate_schedule("foo"),
            vec!["expected exactly 5 fields, found 1: [foo]".to_string()]
        );
        assert_eq!(
            validate_schedule("60 * * * *"),
            vec!["end of range (60) above maximum (59): 60".to_string()]
        );
        assert_eq!(
            validate_schedule("* * 0 * *"),
            vec!["beginning of range (0) below minimum (1): 0".to_string()]
        );
        assert_eq!(
            validate_schedule("x * * * *"),
            vec![
                "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"
                    .to_string()
            ]
        );
        assert_eq!(
            validate_schedule("@often"),
            vec!["unrecognized descriptor: @often".to_string()]
        );
        assert_eq!(
            validate_schedule("*/0 * * * *"),
            vec!["step of range should be a positive number: */0".to_string()]
        );
    }

    #[test]
    fn tz_in_schedule_is_forbidden() {
        assert_eq!(
            validate_schedule("TZ=UTC 0 * * * *"),
            vec!["cannot use TZ or CRON_TZ in schedule, use timeZone field instead".to_string()]
        );
    }
}
