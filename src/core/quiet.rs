//! Quiet hours: a daily range of local wall-clock time in which a channel must
//! not send. All arithmetic happens in the customer's time zone through jiff,
//! so ranges that cross midnight and days with a DST change come out right.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use serde::{Deserialize, Serialize};

/// A daily quiet range `[start, end)` in local minutes since midnight.
///
/// Invariant: `start != end`, both `< 1440`. When `start > end` the range
/// crosses midnight (e.g. 21:00-09:00).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    pub start_min: u16,
    pub end_min: u16,
    /// Weekdays quiet all day (bit 0 Monday … bit 6 Sunday): the days a
    /// business is closed, when staff business hours become quiet hours.
    #[serde(default, rename = "days", skip_serializing_if = "no_days")]
    pub quiet_days: u8,
}

fn no_days(days: &u8) -> bool {
    *days == 0
}

/// The weekday names `parse_days` reads, Monday first.
const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Why a `QuietHours` string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QuietHoursError(pub String);

impl QuietHours {
    /// Parses `"21:00-09:00"`.
    pub fn parse(s: &str) -> Result<Self, QuietHoursError> {
        let bad = || {
            QuietHoursError(format!(
                "`{s}` is not a quiet-hours range; write it as \"HH:MM-HH:MM\", e.g. \"21:00-09:00\""
            ))
        };
        let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
        let start_min = parse_hhmm(a.trim()).ok_or_else(bad)?;
        let end_min = parse_hhmm(b.trim()).ok_or_else(bad)?;
        if start_min == end_min {
            return Err(QuietHoursError(format!(
                "quiet hours `{s}` start and end at the same time; give a range such as \"21:00-09:00\""
            )));
        }
        Ok(QuietHours {
            start_min,
            end_min,
            quiet_days: 0,
        })
    }

    /// The quiet hours outside business hours `"09:00-18:00"` on the
    /// working days `days` (`"mon-fri"`, `"mon,wed,fri"`, `"mon-sun"`).
    pub fn outside_business(hours: &str, days: &str) -> Result<Self, QuietHoursError> {
        let open = QuietHours::parse(hours).map_err(|_| {
            QuietHoursError(format!(
                "`{hours}` is not a business-hours range; write it as \"HH:MM-HH:MM\", e.g. \"09:00-18:00\""
            ))
        })?;
        let working = parse_days(days)?;
        Ok(QuietHours {
            start_min: open.end_min,
            end_min: open.start_min,
            quiet_days: !working & 0x7f,
        })
    }

    fn quiet_day(&self, local: &DateTime) -> bool {
        let bit = local.weekday().to_monday_zero_offset() as u8;
        self.quiet_days & (1 << bit) != 0
    }

    fn contains_minute(&self, m: u16) -> bool {
        if self.start_min < self.end_min {
            self.start_min <= m && m < self.end_min
        } else {
            m >= self.start_min || m < self.end_min
        }
    }

    /// Is `at_ms` inside the quiet range, in `tz`?
    pub fn is_quiet(&self, at_ms: i64, tz: &TimeZone) -> bool {
        let local = local_time(at_ms, tz);
        self.quiet_day(&local) || self.contains_minute(minute_of_day(&local))
    }

    /// The first instant strictly after `at_ms` outside the range: usually
    /// when the local clock reads `end`. Meaningful when `is_quiet(at_ms)`:
    /// it is when sending may resume.
    pub fn quiet_end_after(&self, at_ms: i64, tz: &TimeZone) -> i64 {
        self.next_change(at_ms, false, tz)
    }

    /// The first instant strictly after `at_ms` inside the range: usually
    /// when the local clock reads `start`.
    pub fn quiet_start_after(&self, at_ms: i64, tz: &TimeZone) -> i64 {
        self.next_change(at_ms, true, tz)
    }

    /// The first instant strictly after `at_ms` at which `is_quiet` says
    /// `quiet`. The clock gets there by running to the range's edge, or a
    /// DST change moves it there: forward past the edge, or back across it
    /// (02:50 CEST -> 02:00 CET leaves 02:40-03:30 without ever reading 03:30).
    fn next_change(&self, at_ms: i64, quiet: bool, tz: &TimeZone) -> i64 {
        let edge = if quiet { self.start_min } else { self.end_min };
        let mut t = at_ms;
        // Each turn passes one edge, one midnight (when whole days are
        // quiet) or one DST change; a week's worth suffices, unless the
        // time-zone database has gone wrong.
        for _ in 0..64 {
            let mut by_clock = next_local_time(t, edge, tz);
            if self.quiet_days != 0 {
                by_clock = by_clock.min(next_local_time(t, 0, tz));
            }
            t = next_transition(t, tz)
                .filter(|&jump| jump < by_clock)
                .unwrap_or(by_clock);
            if self.is_quiet(t, tz) == quiet {
                return t;
            }
        }
        t
    }

    /// The earliest instant `>= at_ms` that is outside the quiet range.
    pub fn next_open(&self, at_ms: i64, tz: &TimeZone) -> i64 {
        if self.is_quiet(at_ms, tz) {
            self.quiet_end_after(at_ms, tz)
        } else {
            at_ms
        }
    }

    /// The instant at which `wait_ms` of time *outside* the quiet range has
    /// passed since `from_ms` (the "awake" wait clock of contract §3).
    pub fn awake_deadline(&self, from_ms: i64, wait_ms: i64, tz: &TimeZone) -> i64 {
        let mut t = from_ms;
        let mut remaining = wait_ms.max(0);
        // Each turn consumes one open stretch (at most one per day), so a
        // wait of N days takes about N turns; the bound only guards against
        // a time-zone database gone wrong.
        for _ in 0..10_000 {
            if self.is_quiet(t, tz) {
                t = self.quiet_end_after(t, tz);
            }
            if remaining == 0 {
                return t;
            }
            let closes = self.quiet_start_after(t, tz);
            let end = t.saturating_add(remaining);
            if end <= closes {
                return end;
            }
            remaining -= closes - t;
            t = closes;
        }
        t.saturating_add(remaining)
    }
}

impl std::fmt::Display for QuietHours {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start_min / 60,
            self.start_min % 60,
            self.end_min / 60,
            self.end_min % 60
        )
    }
}

/// `"mon-fri"`, `"sat,sun"`, `"mon-wed,fri"` → a weekday bit set (bit 0 Monday).
fn parse_days(s: &str) -> Result<u8, QuietHoursError> {
    let bad = || {
        QuietHoursError(format!(
            "`{s}` is not a list of weekdays; write e.g. \"mon-fri\" or \"mon,wed,fri\""
        ))
    };
    let day = |d: &str| {
        WEEKDAYS
            .iter()
            .position(|w| *w == d.trim().to_ascii_lowercase())
            .ok_or_else(bad)
    };
    let mut bits = 0u8;
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                if a > b {
                    return Err(bad());
                }
                (a..=b).for_each(|d| bits |= 1 << d);
            }
            None => bits |= 1 << day(part)?,
        }
    }
    Ok(bits)
}

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    // "24:00" is accepted as midnight at the end of the day.
    if h == 24 && m == 0 {
        return Some(0);
    }
    (h < 24 && m < 60).then_some(h * 60 + m)
}

fn local_time(at_ms: i64, tz: &TimeZone) -> DateTime {
    let ts = Timestamp::from_millisecond(at_ms).unwrap_or(Timestamp::UNIX_EPOCH);
    tz.to_datetime(ts)
}

fn minute_of_day(dt: &DateTime) -> u16 {
    dt.hour() as u16 * 60 + dt.minute() as u16
}

/// The first instant strictly after `at_ms` whose local wall clock reads
/// `minute`: either of the two when the clock reads it twice (a DST change
/// back), none on a day that skips it (`next_change` finds that jump).
fn next_local_time(at_ms: i64, minute: u16, tz: &TimeZone) -> i64 {
    let local = local_time(at_ms, tz);
    // From the day before: a change back at midnight shows yesterday again.
    let mut date: Date = local.date().yesterday().unwrap_or(local.date());
    for _ in 0..5 {
        let candidate = date.at((minute / 60) as i8, (minute % 60) as i8, 0, 0);
        let offsets = match tz.to_ambiguous_timestamp(candidate).offset() {
            AmbiguousOffset::Unambiguous { offset } => [Some(offset), None],
            // `before` is the larger offset: the earlier instant.
            AmbiguousOffset::Fold { before, after } => [Some(before), Some(after)],
            AmbiguousOffset::Gap { .. } => [None, None],
        };
        for offset in offsets.into_iter().flatten() {
            if let Ok(ts) = offset.to_timestamp(candidate)
                && ts.as_millisecond() > at_ms
            {
                return ts.as_millisecond();
            }
        }
        match date.tomorrow() {
            Ok(next) => date = next,
            Err(_) => break,
        }
    }
    // Only reachable at the very end of jiff's supported range (or beyond
    // it, where `local_time` reads the epoch).
    at_ms.saturating_add(86_400_000)
}

/// The first DST change (or other change of offset) strictly after `at_ms`.
fn next_transition(at_ms: i64, tz: &TimeZone) -> Option<i64> {
    let ts = Timestamp::from_millisecond(at_ms).ok()?;
    tz.following(ts)
        .map(|t| t.timestamp().as_millisecond())
        .find(|&t| t > at_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }
    fn msk() -> TimeZone {
        TimeZone::get("Europe/Moscow").unwrap()
    }

    #[test]
    fn parses_and_rejects() {
        assert_eq!(
            QuietHours::parse("21:00-09:00").unwrap(),
            QuietHours {
                start_min: 1260,
                end_min: 540,
                quiet_days: 0,
            }
        );
        assert_eq!(QuietHours::parse("9:30 - 10:00").unwrap().start_min, 570);
        for bad in [
            "",
            "21:00",
            "25:00-09:00",
            "21:00-09:60",
            "10:00-10:00",
            "a-b",
            "21-9",
        ] {
            assert!(QuietHours::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn business_hours_become_quiet_hours_with_days_off() {
        let q = QuietHours::outside_business("09:00-18:00", "mon-fri").unwrap();
        assert_eq!(
            (q.start_min, q.end_min, q.quiet_days),
            (1080, 540, 0b110_0000)
        );
        assert_eq!(
            QuietHours::outside_business("10:00-19:00", "mon-wed,fri")
                .unwrap()
                .quiet_days,
            0b110_1000
        );
        for (hours, days) in [
            ("09:00-18:00", "mon-funday"),
            ("09:00-18:00", "fri-mon"),
            ("09:00-18:00", ""),
            ("9-18", "mon-fri"),
        ] {
            assert!(
                QuietHours::outside_business(hours, days).is_err(),
                "{hours} {days}"
            );
        }
        // 2026-12-04 is a Friday. 17:59 MSK open; 18:00 quiet until Monday 09:00.
        assert!(!q.is_quiet(ms("2026-12-04T14:59:00Z"), &msk()));
        assert!(q.is_quiet(ms("2026-12-04T15:00:00Z"), &msk()));
        assert!(q.is_quiet(ms("2026-12-05T09:00:00Z"), &msk())); // Saturday noon
        assert_eq!(
            q.next_open(ms("2026-12-04T16:00:00Z"), &msk()),
            ms("2026-12-07T06:00:00Z")
        );
        assert_eq!(
            q.quiet_start_after(ms("2026-12-07T06:00:00Z"), &msk()),
            ms("2026-12-07T15:00:00Z")
        );
        // Fifteen business minutes from Friday 17:50 end on Monday 09:05.
        assert_eq!(
            q.awake_deadline(ms("2026-12-04T14:50:00Z"), 15 * 60_000, &msk()),
            ms("2026-12-07T06:05:00Z")
        );
    }

    #[test]
    fn days_off_alone_around_midnight() {
        // Open every weekday except a short night range; Sunday closed.
        let q = QuietHours::outside_business("06:00-23:00", "mon-sat").unwrap();
        // Saturday 23:30 is quiet (range), and stays so through Sunday, to Monday 06:00.
        assert_eq!(
            q.next_open(ms("2026-12-05T20:30:00Z"), &msk()),
            ms("2026-12-07T03:00:00Z")
        );
        // From Monday 05:00 the quiet range ends at 06:00 the same morning.
        assert_eq!(
            q.next_open(ms("2026-12-07T02:00:00Z"), &msk()),
            ms("2026-12-07T03:00:00Z")
        );
    }

    #[test]
    fn crossing_midnight_in_moscow() {
        let q = QuietHours::parse("21:00-09:00").unwrap();
        // 17:59Z = 20:59 MSK: open; 18:00Z = 21:00 MSK: quiet; 06:00Z = 09:00 MSK: open.
        assert!(!q.is_quiet(ms("2026-11-23T17:59:00Z"), &msk()));
        assert!(q.is_quiet(ms("2026-11-23T18:00:00Z"), &msk()));
        assert!(q.is_quiet(ms("2026-11-24T05:59:00Z"), &msk()));
        assert!(!q.is_quiet(ms("2026-11-24T06:00:00Z"), &msk()));
        assert_eq!(
            q.next_open(ms("2026-11-23T20:00:00Z"), &msk()),
            ms("2026-11-24T06:00:00Z")
        );
        // Just after midnight local time, the end is the same local day.
        assert_eq!(
            q.next_open(ms("2026-11-23T22:30:00Z"), &msk()),
            ms("2026-11-24T06:00:00Z")
        );
    }

    #[test]
    fn awake_wait_matches_the_documented_example() {
        // VK at 20:50, 30 awake minutes, SMS quiet 21:00-09:00: escalates at 09:20.
        let q = QuietHours::parse("21:00-09:00").unwrap();
        let sent = ms("2026-11-23T17:50:00Z"); // 20:50 MSK
        assert_eq!(
            q.awake_deadline(sent, 30 * 60_000, &msk()),
            ms("2026-11-24T06:20:00Z")
        );
        // Sent inside quiet hours: the whole wait starts in the morning.
        let night = ms("2026-11-23T20:00:00Z");
        assert_eq!(
            q.awake_deadline(night, 30 * 60_000, &msk()),
            ms("2026-11-24T06:30:00Z")
        );
        // A wait longer than a day skips every night.
        assert_eq!(
            q.awake_deadline(ms("2026-11-23T06:00:00Z"), 24 * 3_600_000, &msk()),
            ms("2026-11-24T18:00:00Z") // 12 h on the 23rd, 12 h on the 24th
        );
    }

    #[test]
    fn dst_days_in_berlin() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let q = QuietHours::parse("22:00-08:00").unwrap();
        // Night of 2026-03-28 -> 29 (clocks go 02:00 -> 03:00): 08:00 CEST = 06:00Z.
        assert_eq!(
            q.next_open(ms("2026-03-28T23:00:00Z"), &berlin),
            ms("2026-03-29T06:00:00Z")
        );
        // Night of 2026-10-24 -> 25 (clocks go 03:00 -> 02:00): 08:00 CET = 07:00Z.
        assert_eq!(
            q.next_open(ms("2026-10-24T23:00:00Z"), &berlin),
            ms("2026-10-25T07:00:00Z")
        );
        // A range that starts in the skipped hour still ends correctly.
        let gap = QuietHours::parse("02:30-04:00").unwrap();
        assert!(!gap.is_quiet(ms("2026-03-29T00:59:00Z"), &berlin));
        assert!(gap.is_quiet(ms("2026-03-29T01:00:00Z"), &berlin)); // 03:00 CEST
        assert_eq!(
            gap.next_open(ms("2026-03-29T01:00:00Z"), &berlin),
            ms("2026-03-29T02:00:00Z")
        );
    }

    #[test]
    fn quiet_hours_that_end_in_a_skipped_hour() {
        // Berlin, spring: the clock jumps from 01:59 CET to 03:00 CEST, past 02:30.
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let q = QuietHours::parse("22:00-02:30").unwrap();
        assert_eq!(
            q.next_open(ms("2026-03-28T23:00:00Z"), &berlin),
            ms("2026-03-29T01:00:00Z")
        );
        // Lord Howe skips half an hour, 02:00-02:29 (+10:30 -> +11:00).
        let lord_howe = TimeZone::get("Australia/Lord_Howe").unwrap();
        let q = QuietHours::parse("22:00-02:15").unwrap();
        assert_eq!(
            q.next_open(ms("2026-10-03T15:00:00Z"), &lord_howe),
            ms("2026-10-03T15:30:00Z")
        );
    }

    #[test]
    fn quiet_hours_that_end_in_a_repeated_hour() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // At 02:10 CET, the second 02:10 of the autumn night: quiet until
        // 02:30 CET, not until tomorrow's 02:30.
        let q = QuietHours::parse("22:00-02:30").unwrap();
        assert_eq!(
            q.next_open(ms("2026-10-25T01:10:00Z"), &berlin),
            ms("2026-10-25T01:30:00Z")
        );
        // 02:40-03:30 ends when the clock goes back from 02:59 CEST to
        // 02:00 CET, and starts again at 02:40 CET.
        let late = QuietHours::parse("02:40-03:30").unwrap();
        assert_eq!(
            late.next_open(ms("2026-10-25T00:50:00Z"), &berlin),
            ms("2026-10-25T01:00:00Z")
        );
        assert_eq!(
            late.quiet_start_after(ms("2026-10-25T01:00:00Z"), &berlin),
            ms("2026-10-25T01:40:00Z")
        );
    }

    #[test]
    fn an_awake_wait_across_a_skipped_quiet_start() {
        // Quiet 02:30-04:00 starts at 03:00 CEST on the spring night (02:30
        // never happens): an hour of open time from 00:30Z runs 30 minutes
        // to 01:00Z, then 30 more from 04:00 CEST (02:00Z).
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let q = QuietHours::parse("02:30-04:00").unwrap();
        assert_eq!(
            q.awake_deadline(ms("2026-03-29T00:30:00Z"), 60 * 60_000, &berlin),
            ms("2026-03-29T02:30:00Z")
        );
    }
}
