//! ISO-8601 durations (`P14D`, `P6W`, `PT2H`, `P1M2DT3H`) with calendar-correct arithmetic.
//!
//! Calendar units (years, months, weeks, days) move the wall clock of a time zone, so "one
//! week later at the same time" stays at 09:00 across a daylight-saving change; time units
//! (hours, minutes, seconds) are exact elapsed time. Calendar units are applied first, then
//! time units, which is what RFC 5545 and `jiff` do.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Days, LocalResult, Months, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

/// A non-negative ISO-8601 duration with at least one non-zero component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct IsoDuration {
    pub years: u32,
    pub months: u32,
    pub weeks: u32,
    pub days: u32,
    pub hours: u32,
    pub minutes: u32,
    pub seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not an ISO-8601 duration such as P14D, P6W or PT2H30M: {reason}")]
pub struct DurationError {
    text: String,
    reason: &'static str,
}

impl FromStr for IsoDuration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason| DurationError {
            text: text.to_owned(),
            reason,
        };
        let rest = text.strip_prefix('P').ok_or_else(|| fail("it must start with 'P'"))?;
        if rest.is_empty() {
            return Err(fail("it names no amount"));
        }
        let mut duration = IsoDuration::default();
        let mut in_time = false;
        let mut number = String::new();
        // Units must come in this order; the index of the last one seen keeps them so.
        const DATE_UNITS: [char; 4] = ['Y', 'M', 'W', 'D'];
        const TIME_UNITS: [char; 3] = ['H', 'M', 'S'];
        let mut last_unit: Option<usize> = None;
        let mut saw_time_component = false;
        for character in rest.chars() {
            if character.is_ascii_digit() {
                number.push(character);
                continue;
            }
            if character == 'T' {
                if in_time || !number.is_empty() {
                    return Err(fail("'T' is misplaced"));
                }
                in_time = true;
                last_unit = None;
                continue;
            }
            if character == '.' || character == ',' {
                return Err(fail("fractions are not supported"));
            }
            if number.is_empty() {
                return Err(fail("a unit has no number before it"));
            }
            let units: &[char] = if in_time { &TIME_UNITS } else { &DATE_UNITS };
            let Some(position) = units.iter().position(|unit| *unit == character) else {
                return Err(fail(if in_time {
                    "time units after 'T' are H, M and S"
                } else {
                    "date units are Y, M, W and D (put hours, minutes, seconds after 'T')"
                }));
            };
            if last_unit.is_some_and(|last| position <= last) {
                return Err(fail("units are repeated or out of order"));
            }
            last_unit = Some(position);
            let value: u32 = number.parse().map_err(|_| fail("a number is too large"))?;
            number.clear();
            let slot = match (in_time, character) {
                (false, 'Y') => &mut duration.years,
                (false, 'M') => &mut duration.months,
                (false, 'W') => &mut duration.weeks,
                (false, _) => &mut duration.days,
                (true, 'H') => &mut duration.hours,
                (true, 'M') => &mut duration.minutes,
                (true, _) => &mut duration.seconds,
            };
            *slot = value;
            saw_time_component |= in_time;
        }
        if !number.is_empty() {
            return Err(fail("a number has no unit after it"));
        }
        if in_time && !saw_time_component {
            return Err(fail("'T' must be followed by hours, minutes or seconds"));
        }
        if duration.is_zero() {
            return Err(fail("it must be longer than zero"));
        }
        Ok(duration)
    }
}

impl fmt::Display for IsoDuration {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("P")?;
        for (value, unit) in [
            (self.years, 'Y'),
            (self.months, 'M'),
            (self.weeks, 'W'),
            (self.days, 'D'),
        ] {
            if value > 0 {
                write!(formatter, "{value}{unit}")?;
            }
        }
        if self.hours + self.minutes + self.seconds > 0 {
            formatter.write_str("T")?;
            for (value, unit) in [(self.hours, 'H'), (self.minutes, 'M'), (self.seconds, 'S')] {
                if value > 0 {
                    write!(formatter, "{value}{unit}")?;
                }
            }
        }
        if self.is_zero() {
            formatter.write_str("T0S")?;
        }
        Ok(())
    }
}

impl IsoDuration {
    pub fn is_zero(&self) -> bool {
        *self == IsoDuration::default()
    }

    /// The duration repeated `times` times, component by component (so `P1M` × 3 is `P3M`,
    /// not 90 days). `None` on overflow.
    pub fn times(&self, times: u32) -> Option<IsoDuration> {
        Some(IsoDuration {
            years: self.years.checked_mul(times)?,
            months: self.months.checked_mul(times)?,
            weeks: self.weeks.checked_mul(times)?,
            days: self.days.checked_mul(times)?,
            hours: self.hours.checked_mul(times)?,
            minutes: self.minutes.checked_mul(times)?,
            seconds: self.seconds.checked_mul(times)?,
        })
    }

    /// The instant this duration after `start`, with calendar units counted on the wall
    /// clock of `zone`. `None` if the result is out of range.
    pub fn after(&self, start: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        let local = start.with_timezone(&zone).naive_local();
        let (months, days) = self.calendar_part()?;
        let moved = local.checked_add_months(months)?.checked_add_days(days)?;
        let calendar_instant = if moved == local {
            start
        } else {
            resolve_local(zone, moved)?
        };
        calendar_instant.checked_add_signed(self.exact_part()?)
    }

    /// The instant this duration before `end` (calendar units on the wall clock of `zone`).
    pub fn before(&self, end: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        let end = end.checked_sub_signed(self.exact_part()?)?;
        let local = end.with_timezone(&zone).naive_local();
        let (months, days) = self.calendar_part()?;
        let moved = local.checked_sub_months(months)?.checked_sub_days(days)?;
        if moved == local {
            return Some(end);
        }
        resolve_local(zone, moved)
    }

    /// Years, months, weeks and days as whole months and days of the calendar.
    fn calendar_part(&self) -> Option<(Months, Days)> {
        let months = self.years.checked_mul(12)?.checked_add(self.months)?;
        let days = u64::from(self.weeks) * 7 + u64::from(self.days);
        Some((Months::new(months), Days::new(days)))
    }

    /// Hours, minutes and seconds as exact elapsed time.
    fn exact_part(&self) -> Option<TimeDelta> {
        TimeDelta::try_hours(i64::from(self.hours))?
            .checked_add(&TimeDelta::try_minutes(i64::from(self.minutes))?)?
            .checked_add(&TimeDelta::try_seconds(i64::from(self.seconds))?)
    }

    /// A rough length in seconds, for ordering and sanity checks only (a month is 30 days).
    pub fn approximate_seconds(&self) -> u64 {
        let days = u64::from(self.years) * 365
            + u64::from(self.months) * 30
            + u64::from(self.weeks) * 7
            + u64::from(self.days);
        days * 86_400 + u64::from(self.hours) * 3_600 + u64::from(self.minutes) * 60 + u64::from(self.seconds)
    }
}

/// The instant a wall-clock time names in `zone`. A time that falls in a daylight-saving
/// gap moves forward by the gap (02:30 on a spring-forward night becomes 03:30); a time
/// that occurs twice takes the earlier one. This is RFC 5545's and `jiff`'s "compatible"
/// disambiguation.
pub fn resolve_local(zone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(instant) => Some(instant.with_timezone(&Utc)),
        LocalResult::Ambiguous(earlier, _) => Some(earlier.with_timezone(&Utc)),
        LocalResult::None => {
            // Read the wall time with the offset in force before the gap: that lands as far
            // past the gap's start as the wall time is.
            let before_gap = local.checked_sub_signed(TimeDelta::try_days(1)?)?;
            let offset_before = zone.offset_from_local_datetime(&before_gap).earliest()?.fix();
            let instant =
                local.checked_sub_signed(TimeDelta::try_seconds(i64::from(offset_before.local_minus_utc()))?)?;
            Some(instant.and_utc())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_common_forms() {
        for text in ["P14D", "P6W", "PT2H", "P1Y2M3W4DT5H6M7S", "PT30M", "P3M"] {
            let duration: IsoDuration = text.parse().unwrap();
            assert_eq!(duration.to_string(), text);
        }
    }

    #[test]
    fn rejects_malformed_durations_with_a_reason() {
        for (text, reason) in [
            ("14D", "it must start with 'P'"),
            ("P", "it names no amount"),
            ("P0D", "it must be longer than zero"),
            (
                "P2H",
                "date units are Y, M, W and D (put hours, minutes, seconds after 'T')",
            ),
            ("PT", "'T' must be followed by hours, minutes or seconds"),
            ("P1D2W", "units are repeated or out of order"),
            ("P1.5D", "fractions are not supported"),
            ("P10", "a number has no unit after it"),
            ("PD", "a unit has no number before it"),
            ("P99999999999D", "a number is too large"),
        ] {
            let error = text.parse::<IsoDuration>().unwrap_err();
            assert_eq!(error.reason, reason, "{text}");
        }
    }

    #[test]
    fn a_week_later_keeps_the_wall_clock_across_a_dst_change() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // Friday 27 March 2026, 09:00 CET (UTC+1); DST starts Sunday 29 March.
        let start = utc("2026-03-27T08:00:00Z");
        let week: IsoDuration = "P1W".parse().unwrap();
        assert_eq!(week.after(start, berlin), Some(utc("2026-04-03T07:00:00Z")));
        // Exact hours are elapsed time: 168 hours later is 10:00 local.
        let hours: IsoDuration = "PT168H".parse().unwrap();
        assert_eq!(hours.after(start, berlin), Some(utc("2026-04-03T08:00:00Z")));
        assert_eq!(week.before(utc("2026-04-03T07:00:00Z"), berlin), Some(start));
    }

    #[test]
    fn months_clamp_to_the_end_of_the_month() {
        let month: IsoDuration = "P1M".parse().unwrap();
        let start = utc("2026-01-31T10:00:00Z");
        assert_eq!(month.after(start, Tz::UTC), Some(utc("2026-02-28T10:00:00Z")));
        // Counting from the anchor avoids drift: three months from 31 January is 30 April.
        let three = month.times(3).unwrap();
        assert_eq!(three.after(start, Tz::UTC), Some(utc("2026-04-30T10:00:00Z")));
    }

    #[test]
    fn a_wall_time_in_a_gap_moves_forward_and_a_repeated_one_takes_the_first() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let gap = NaiveDateTime::parse_from_str("2026-03-29 02:30", "%Y-%m-%d %H:%M").unwrap();
        // 02:30 does not exist; 03:30 CEST is 01:30 UTC.
        assert_eq!(resolve_local(berlin, gap), Some(utc("2026-03-29T01:30:00Z")));
        let fold = NaiveDateTime::parse_from_str("2026-10-25 02:30", "%Y-%m-%d %H:%M").unwrap();
        // 02:30 happens twice; the first is CEST (UTC+2).
        assert_eq!(resolve_local(berlin, fold), Some(utc("2026-10-25T00:30:00Z")));
    }
}
