//! Dates and times in exports: read in the configured time zone, turned into UTC.
//!
//! A value with an offset (`2024-01-31T07:55:13Z`, `...+02:00`) is that instant. A value
//! without one is a wall-clock time in `idp.timezone`; a date alone is midnight at the
//! start of that day. The format is `idp.date_format` (the preset's by default), which
//! settles day/month order; ISO 8601 (`YYYY-MM-DD`, optionally with a time) is read
//! whatever the format, since it is never ambiguous.
//!
//! Local times that a daylight-saving change makes ambiguous or nonexistent resolve by
//! one rule, the same every time:
//! - a time that happens twice (clocks go back) is the earlier of the two instants;
//! - a time that never happens (clocks go forward) is moved later by the length of the
//!   gap, as if the clock had not yet been changed: 02:30 on a night that jumps from 02:00
//!   to 03:00 is 03:30.

use chrono::{
    DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc,
};
use chrono_tz::Tz;

/// How dates of one export are read.
#[derive(Debug, Clone)]
pub struct DateReader {
    pub format: String,
    pub timezone: Tz,
}

/// A value that is not a date in the expected format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateError {
    pub value: String,
    pub format: String,
}

impl std::fmt::Display for DateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` is not a date in the format `{}` (nor ISO 8601); set `idp.date_format` to \
             the export's format",
            self.value, self.format
        )
    }
}

impl DateReader {
    /// Reads `text` as an instant. Values meaning "no date" (`0000-00-00`) give `None`.
    pub fn instant(&self, text: &str) -> Result<Option<DateTime<Utc>>, DateError> {
        let text = text.trim();
        if text.is_empty() || text.starts_with("0000-00-00") {
            return Ok(None);
        }
        if let Ok(at) = DateTime::parse_from_rfc3339(text) {
            return Ok(Some(at.with_timezone(&Utc)));
        }
        if let Ok(at) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%:z") {
            return Ok(Some(at.with_timezone(&Utc)));
        }
        let local = self.naive(text).ok_or_else(|| DateError {
            value: text.to_owned(),
            format: self.format.clone(),
        })?;
        Ok(Some(local_to_utc(self.timezone, local)))
    }

    /// The UTC day of [`DateReader::instant`].
    pub fn day(&self, text: &str) -> Result<Option<NaiveDate>, DateError> {
        Ok(self.instant(text)?.map(|at| at.date_naive()))
    }

    /// A wall-clock time without an offset, in the configured format or in ISO 8601.
    fn naive(&self, text: &str) -> Option<NaiveDateTime> {
        let format = self.format.as_str();
        // The date part of a date-and-time format, for values that carry only a date.
        let date_part = format.split_whitespace().next().unwrap_or(format);
        let midnight = |d: NaiveDate| d.and_time(NaiveTime::MIN);
        NaiveDateTime::parse_from_str(text, format)
            .ok()
            .or_else(|| NaiveDate::parse_from_str(text, format).ok().map(midnight))
            .or_else(|| {
                NaiveDate::parse_from_str(text, date_part)
                    .ok()
                    .map(midnight)
            })
            .or_else(|| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").ok())
            .or_else(|| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok())
            .or_else(|| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").ok())
            .or_else(|| {
                NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .ok()
                    .map(midnight)
            })
    }
}

/// The instant of a wall-clock time in `tz`, by the rule in the module documentation.
pub fn local_to_utc(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(at) => at.with_timezone(&Utc),
        LocalResult::Ambiguous(earlier, later) => earlier.min(later).with_timezone(&Utc),
        LocalResult::None => {
            // The offset in force before the gap: read the wall time with it.
            let before = tz
                .offset_from_utc_datetime(&(local - Duration::hours(24)))
                .fix();
            (local - before).and_utc()
        }
    }
}

/// Whether `format` is a chrono format that can read a date.
pub fn valid_format(format: &str) -> bool {
    use chrono::format::{Item, StrftimeItems};
    let items: Vec<Item<'_>> = StrftimeItems::new(format).collect();
    !items.is_empty() && !items.iter().any(|i| matches!(i, Item::Error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(format: &str, tz: &str) -> DateReader {
        DateReader {
            format: format.into(),
            timezone: tz.parse().unwrap(),
        }
    }

    fn utc(text: &str) -> Option<DateTime<Utc>> {
        Some(
            DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc),
        )
    }

    #[test]
    fn dates_read_as_the_table_says() {
        let us = "%m/%d/%Y %I:%M:%S %p";
        let cases: &[(&str, &str, &str, Option<DateTime<Utc>>)] = &[
            // Entra's download, in UTC and in New York (EDT in August).
            (
                us,
                "UTC",
                "8/19/2021 1:25:31 PM",
                utc("2021-08-19T13:25:31Z"),
            ),
            (
                us,
                "America/New_York",
                "8/19/2021 1:25:31 PM",
                utc("2021-08-19T17:25:31Z"),
            ),
            (
                us,
                "UTC",
                "12/1/2021 12:05:00 AM",
                utc("2021-12-01T00:05:00Z"),
            ),
            // A date alone, in a date-and-time format: midnight.
            (us, "UTC", "8/19/2021", utc("2021-08-19T00:00:00Z")),
            // Google's last sign-in.
            (
                "%Y/%m/%d %H:%M:%S",
                "UTC",
                "2024/01/31 07:55:13",
                utc("2024-01-31T07:55:13Z"),
            ),
            // Day/month order settled by the format.
            ("%d/%m/%Y", "UTC", "03/04/2024", utc("2024-04-03T00:00:00Z")),
            ("%m/%d/%Y", "UTC", "03/04/2024", utc("2024-03-04T00:00:00Z")),
            // ISO 8601 whatever the format; an offset wins over the time zone.
            (
                "%d.%m.%Y",
                "Europe/Berlin",
                "2026-11-30",
                utc("2026-11-29T23:00:00Z"),
            ),
            (
                "%d.%m.%Y",
                "Europe/Berlin",
                "2024-01-31T07:55:13Z",
                utc("2024-01-31T07:55:13Z"),
            ),
            (
                "%Y-%m-%d",
                "UTC",
                "2024-01-31T09:55:13+02:00",
                utc("2024-01-31T07:55:13Z"),
            ),
            (
                "%Y-%m-%d",
                "UTC",
                "2013-07-02T21:36:25.344Z",
                utc("2013-07-02T21:36:25.344Z"),
            ),
            (
                "%Y-%m-%d",
                "Asia/Tokyo",
                "2026-11-30 08:00:00",
                utc("2026-11-29T23:00:00Z"),
            ),
            // BambooHR's "no date".
            ("%Y-%m-%d", "UTC", "0000-00-00", None),
            ("%Y-%m-%d", "UTC", "  ", None),
        ];
        for (format, tz, text, expected) in cases {
            assert_eq!(
                reader(format, tz).instant(text).unwrap(),
                *expected,
                "{text} as {format} in {tz}"
            );
        }
    }

    #[test]
    fn daylight_saving_changes_resolve_by_the_documented_rule() {
        let iso = "%Y-%m-%d %H:%M:%S";
        let cases = [
            // New York springs forward at 02:00 to 03:00: 02:30 is 03:30 EDT.
            (
                "America/New_York",
                "2026-03-08 02:30:00",
                "2026-03-08T07:30:00Z",
            ),
            (
                "America/New_York",
                "2026-03-08 01:59:59",
                "2026-03-08T06:59:59Z",
            ),
            (
                "America/New_York",
                "2026-03-08 03:00:00",
                "2026-03-08T07:00:00Z",
            ),
            // ... and falls back at 02:00 to 01:00: 01:30 happens twice, the first wins.
            (
                "America/New_York",
                "2026-11-01 01:30:00",
                "2026-11-01T05:30:00Z",
            ),
            // Berlin: 02:30 does not exist in March and happens twice in October.
            (
                "Europe/Berlin",
                "2026-03-29 02:30:00",
                "2026-03-29T01:30:00Z",
            ),
            (
                "Europe/Berlin",
                "2026-10-25 02:30:00",
                "2026-10-25T00:30:00Z",
            ),
            // Santiago changes at midnight: a date alone falls in the gap.
            (
                "America/Santiago",
                "2026-09-06 00:00:00",
                "2026-09-06T04:00:00Z",
            ),
            // Lord Howe moves by half an hour.
            (
                "Australia/Lord_Howe",
                "2026-10-04 02:15:00",
                "2026-10-03T15:45:00Z",
            ),
        ];
        for (tz, text, expected) in cases {
            assert_eq!(
                reader(iso, tz).instant(text).unwrap(),
                utc(expected),
                "{text} in {tz}"
            );
        }
        let date_only = reader("%Y-%m-%d", "America/Santiago");
        assert_eq!(
            date_only.instant("2026-09-06").unwrap(),
            utc("2026-09-06T04:00:00Z")
        );
    }

    #[test]
    fn a_value_in_no_known_format_names_the_value_the_format_and_the_key() {
        let err = reader("%d/%m/%Y", "UTC").instant("31/31/2024").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`31/31/2024`"), "{text}");
        assert!(text.contains("`%d/%m/%Y`"), "{text}");
        assert!(text.contains("idp.date_format"), "{text}");
        assert!(
            reader("%Y-%m-%d", "UTC")
                .instant("Never logged in")
                .is_err()
        );
    }

    #[test]
    fn the_day_is_the_utc_day_of_the_instant() {
        let r = reader("%Y-%m-%d", "America/Los_Angeles");
        assert_eq!(
            r.day("2026-11-30").unwrap(),
            NaiveDate::from_ymd_opt(2026, 11, 30)
        );
        let r = reader("%Y-%m-%d", "Pacific/Auckland");
        assert_eq!(
            r.day("2026-11-30").unwrap(),
            NaiveDate::from_ymd_opt(2026, 11, 29)
        );
    }

    #[test]
    fn only_well_formed_chrono_formats_are_valid() {
        assert!(valid_format("%d/%m/%Y"));
        assert!(valid_format("%m/%d/%Y %I:%M:%S %p"));
        assert!(!valid_format("%Q"));
        assert!(!valid_format(""));
    }
}
