//! Recurrence of a `repeat` task: when each occurrence opens.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

use crate::duration::IsoDuration;

/// How occurrences follow each other.
#[derive(Debug, Clone)]
pub enum Cadence {
    /// A fixed calendar interval from the start of the series.
    Every(IsoDuration),
    /// Matches of a cron expression.
    Cron(Box<Cron>),
}

/// A parsed, validated `repeat`.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub cadence: Cadence,
    /// The zone calendar arithmetic and cron matching use; `None` means the engagement's.
    pub timezone: Option<Tz>,
    pub count: Option<u32>,
    pub until: Option<IsoDuration>,
}

/// Parses a cron expression of five fields (minute first) or six (seconds first).
pub fn parse_cron(pattern: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(pattern)
        .map_err(|error| format!("'{pattern}' is not a valid cron expression: {error}"))
}

/// Parses an IANA time-zone name.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("'{name}' is not an IANA time zone such as Europe/Berlin"))
}

impl Schedule {
    /// Whether the series has no natural end (neither `count` nor `until`).
    pub fn is_unbounded(&self) -> bool {
        self.count.is_none() && self.until.is_none()
    }

    /// When occurrence `number` (1-based) of a series started at `series_start` opens, given
    /// when the previous one opened; `None` when the series has ended by then.
    pub fn occurrence(
        &self,
        series_start: DateTime<Utc>,
        number: u32,
        previous: Option<DateTime<Utc>>,
        engagement_zone: Tz,
    ) -> Option<DateTime<Utc>> {
        if number == 0 || self.count.is_some_and(|count| number > count) {
            return None;
        }
        let zone = self.timezone.unwrap_or(engagement_zone);
        let at = match &self.cadence {
            // Counted from the start each time, so month ends and DST never make it drift.
            Cadence::Every(interval) => interval.times(number - 1)?.after(series_start, zone)?,
            Cadence::Cron(cron) => {
                let (from, inclusive) = match previous {
                    Some(previous) => (previous, false),
                    None => (series_start, true),
                };
                cron.find_next_occurrence(&from.with_timezone(&zone), inclusive)
                    .ok()?
                    .with_timezone(&Utc)
            }
        };
        if let Some(until) = &self.until
            && at > until.after(series_start, zone)?
        {
            return None;
        }
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn cron_in_a_zone_keeps_local_time_across_dst() {
        let schedule = Schedule {
            cadence: Cadence::Cron(Box::new(parse_cron("0 9 * * MON").unwrap())),
            timezone: Some(parse_timezone("America/New_York").unwrap()),
            count: Some(3),
            until: None,
        };
        // DST in New York starts on Sunday 8 March 2026.
        let start = utc("2026-03-01T12:00:00Z");
        let first = schedule.occurrence(start, 1, None, Tz::UTC).unwrap();
        assert_eq!(first, utc("2026-03-02T14:00:00Z"));
        let second = schedule.occurrence(start, 2, Some(first), Tz::UTC).unwrap();
        assert_eq!(second, utc("2026-03-09T13:00:00Z"));
        let third = schedule.occurrence(start, 3, Some(second), Tz::UTC).unwrap();
        assert_eq!(schedule.occurrence(start, 4, Some(third), Tz::UTC), None);
    }

    #[test]
    fn until_ends_an_interval_series() {
        let schedule = Schedule {
            cadence: Cadence::Every("P1W".parse().unwrap()),
            timezone: None,
            count: None,
            until: Some("P3W".parse().unwrap()),
        };
        let start = utc("2026-01-05T09:00:00Z");
        assert_eq!(
            schedule.occurrence(start, 4, None, Tz::UTC),
            Some(utc("2026-01-26T09:00:00Z"))
        );
        assert_eq!(schedule.occurrence(start, 5, None, Tz::UTC), None);
    }

    #[test]
    fn rejects_bad_cron_and_zones() {
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_timezone("Mars/Olympus").is_err());
    }
}
