//! Cron schedules for `kind = "job"`: the five fields of crontab(5) (minute, hour, day of
//! month, month, day of week; `*`, `*/N`, `A-B`, `A-B/N`, lists, names such as `mon` and
//! `jan`), an optional leading seconds field (six fields, as Quartz and croner read them),
//! and `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`. As cron does, a day matches when
//! either the day of month or the day of week does, if both are restricted.

use jiff::{Span, Zoned};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    seconds: u64,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Whether day of month and day of week were both restricted (then either matches).
    either_day: bool,
}

/// Field bounds and names.
const FIELDS: [(&str, u32, u32); 6] = [
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// One field as a bit set over `lo..=hi`; `Err` says what is wrong.
fn field(text: &str, index: usize) -> Result<u64, String> {
    let (name, lo, hi) = FIELDS[index];
    let value = |s: &str| -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        let named = match index {
            4 => MONTHS
                .iter()
                .position(|m| *m == lower)
                .map(|i| i as u32 + 1),
            5 => DAYS.iter().position(|d| *d == lower).map(|i| i as u32),
            _ => None,
        };
        let n = named
            .or_else(|| s.parse().ok())
            .ok_or_else(|| format!("`{s}` is not a {name}"))?;
        if n < lo || n > hi {
            return Err(format!("{name} {n} is out of range ({lo}-{hi})"));
        }
        Ok(n)
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("`{s}` is not a step"))?;
                (r, step)
            }
            None => (part, 1),
        };
        let (from, to) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            // `5/10`: from 5 to the end, every 10.
            (v, if part.contains('/') { hi } else { v })
        };
        if from > to {
            return Err(format!("`{range}` runs backwards"));
        }
        let mut n = from;
        while n <= to {
            bits |= 1 << n;
            n += step;
        }
    }
    Ok(bits)
}

impl Cron {
    /// Parses a schedule.
    pub fn parse(text: &str) -> Result<Cron, String> {
        let text = text.trim();
        let expanded = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(format!(
                    "`{other}` is not a schedule name (@yearly, @monthly, @weekly, @daily, @hourly)"
                ))
            }
            other => other,
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        let parts: Vec<&str> = match parts.len() {
            5 => std::iter::once("0").chain(parts).collect(),
            6 => parts,
            n => {
                return Err(format!(
                    "a schedule has 5 fields (minute hour day month weekday), or 6 with \
                     seconds first; this one has {n}"
                ))
            }
        };
        let bits: Vec<u64> = parts
            .iter()
            .enumerate()
            .map(|(i, p)| field(p, i))
            .collect::<Result<_, _>>()?;
        // Sunday is 0 or 7.
        let weekdays = (bits[5] | (bits[5] >> 7)) as u8 & 0x7f;
        Ok(Cron {
            seconds: bits[0],
            minutes: bits[1],
            hours: bits[2] as u32,
            days: bits[3] as u32,
            months: bits[4] as u16,
            weekdays,
            either_day: parts[3] != "*" && parts[5] != "*",
        })
    }

    fn day_matches(&self, t: &Zoned) -> bool {
        let dom = self.days & (1 << t.day()) != 0;
        let dow = self.weekdays & (1 << t.weekday().to_sunday_zero_offset()) != 0;
        if self.either_day {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// The first time strictly after `after` that the schedule names, in `after`'s time
    /// zone; `None` when there is none within five years (`0 0 30 2 *`).
    pub fn next_after(&self, after: &Zoned) -> Option<Zoned> {
        let mut t = after.checked_add(Span::new().seconds(1)).ok()?;
        t = t.round(jiff::Unit::Second).ok()?;
        let limit = after.checked_add(Span::new().years(5)).ok()?;
        while t < limit {
            if self.months & (1 << t.month()) == 0 {
                let first = t.first_of_month().ok()?.start_of_day().ok()?;
                t = first.checked_add(Span::new().months(1)).ok()?;
                continue;
            }
            if !self.day_matches(&t) {
                t = t
                    .start_of_day()
                    .ok()?
                    .checked_add(Span::new().days(1))
                    .ok()?;
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                let hour = t
                    .with()
                    .minute(0)
                    .second(0)
                    .subsec_nanosecond(0)
                    .build()
                    .ok()?;
                t = hour.checked_add(Span::new().hours(1)).ok()?;
                continue;
            }
            if self.minutes & (1 << t.minute()) == 0 {
                let minute = t.with().second(0).subsec_nanosecond(0).build().ok()?;
                t = minute.checked_add(Span::new().minutes(1)).ok()?;
                continue;
            }
            if self.seconds & (1 << t.second()) == 0 {
                t = t.checked_add(Span::new().seconds(1)).ok()?;
                continue;
            }
            return Some(t);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Zoned {
        format!("{s}[UTC]").parse().expect("a time")
    }

    fn next(expr: &str, from: &str) -> String {
        Cron::parse(expr)
            .unwrap()
            .next_after(&at(from))
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S").to_string())
            .unwrap_or_default()
    }

    #[test]
    fn schedules_find_their_next_time() {
        assert_eq!(
            next("*/5 * * * *", "2026-12-02T03:12:10"),
            "2026-12-02T03:15:00"
        );
        assert_eq!(
            next("0 3 * * *", "2026-12-02T03:00:00"),
            "2026-12-03T03:00:00"
        );
        assert_eq!(
            next("@hourly", "2026-12-31T23:30:00"),
            "2027-01-01T00:00:00"
        );
        assert_eq!(
            next("0 9 * * mon-fri", "2026-12-05T10:00:00"),
            "2026-12-07T09:00:00"
        );
        assert_eq!(
            next("0 0 1 jan *", "2026-06-01T00:00:00"),
            "2027-01-01T00:00:00"
        );
        assert_eq!(
            next("*/2 * * * * *", "2026-12-02T03:12:11"),
            "2026-12-02T03:12:12"
        );
        // Day of month or day of week, when both are given (cron's rule).
        assert_eq!(
            next("0 0 13 * fri", "2026-12-02T00:00:00"),
            "2026-12-04T00:00:00"
        );
        assert_eq!(next("0 0 30 2 *", "2026-01-01T00:00:00"), "");
    }

    #[test]
    fn a_time_zone_moves_the_hour() {
        let c = Cron::parse("0 9 * * *").unwrap();
        let paris: Zoned = "2026-12-02T08:30:00+01:00[Europe/Paris]".parse().unwrap();
        let n = c.next_after(&paris).unwrap();
        assert_eq!(n.strftime("%H:%M %Z").to_string(), "09:00 CET");
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let err = |e: &str| Cron::parse(e).unwrap_err();
        assert!(err("* * *").contains("has 3"), "{}", err("* * *"));
        assert_eq!(err("61 * * * *"), "minute 61 is out of range (0-59)");
        assert_eq!(err("* * * foo *"), "`foo` is not a month");
        assert_eq!(err("*/0 * * * *"), "`0` is not a step");
        assert!(err("@often").contains("not a schedule name"));
        assert_eq!(err("5-1 * * * *"), "`5-1` runs backwards");
    }
}
