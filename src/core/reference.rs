//! A reference model of quiet hours, the awake wait clock, expiry and the
//! limit window, for the property tests to judge the core by.
//!
//! It shares no code with `quiet.rs`, `cascade.rs` or `Rate`: it asks jiff
//! what the customer's clock reads at one instant at a time and walks
//! minute by minute, which is slow and plainly right. The walk relies on
//! every offset being a whole number of minutes, so that the local clock
//! reads one minute through each UTC minute; true of every zone in 2026
//! (Kolkata is +05:30, Lord Howe +10:30 or +11:00), and checked below for
//! the zones the properties use.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::{ChannelKind, Policy, QuietHours, Rate};

pub const MIN: i64 = 60_000;

/// The minute of the day the customer's clock reads at `at_ms`.
pub fn clock_minute(at_ms: i64, tz: &TimeZone) -> u16 {
    let local = Timestamp::from_millisecond(at_ms)
        .expect("test instants are in jiff's range")
        .to_zoned(tz.clone());
    local.hour() as u16 * 60 + local.minute() as u16
}

/// Does the customer's clock read a minute inside `quiet` at `at_ms`? The
/// start minute is quiet, the end minute is not; a range whose end comes
/// before its start wraps around midnight.
pub fn is_quiet(quiet: QuietHours, at_ms: i64, tz: &TimeZone) -> bool {
    let m = clock_minute(at_ms, tz);
    let (start, end) = (quiet.start_min, quiet.end_min);
    if start < end {
        start <= m && m < end
    } else {
        start <= m || m < end
    }
}

/// The start of the next UTC minute, strictly after `at_ms`.
fn next_minute(at_ms: i64) -> i64 {
    (at_ms.div_euclid(MIN) + 1) * MIN
}

/// The earliest instant at or after `at_ms` outside `quiet`: `at_ms` itself
/// when it is open, else the first minute at which the clock reads an open
/// minute, found by trying one minute after another.
pub fn first_open(quiet: QuietHours, at_ms: i64, tz: &TimeZone) -> i64 {
    let mut t = at_ms;
    // A range is at most 23:59 long, and a DST change adds at most an hour.
    for _ in 0..3 * 1440 {
        if !is_quiet(quiet, t, tz) {
            return t;
        }
        t = next_minute(t);
    }
    panic!("quiet hours {quiet} never end after {at_ms}");
}

/// The instant by which `wait_ms` of time outside `quiet` has passed since
/// `from_ms`: each open minute (or the open part of the first one) counts,
/// each quiet minute does not. A zero wait ends at the first open instant.
pub fn awake_deadline(quiet: QuietHours, from_ms: i64, wait_ms: i64, tz: &TimeZone) -> i64 {
    let mut t = first_open(quiet, from_ms, tz);
    let mut left = wait_ms.max(0);
    if left == 0 {
        return t;
    }
    // Waits in the tests are under a week.
    for _ in 0..14 * 1440 {
        let minute_end = next_minute(t);
        if !is_quiet(quiet, t, tz) {
            if t + left <= minute_end {
                return t + left;
            }
            left -= minute_end - t;
        }
        t = minute_end;
    }
    panic!("an awake wait of {wait_ms} ms from {from_ms} did not end");
}

/// The quiet hours a policy gives a channel: those keyed by the channel's
/// name, else those keyed by its kind.
pub fn quiet_hours(policy: &Policy, channel: &str, kind: ChannelKind) -> Option<QuietHours> {
    match policy.quiet_hours.get(channel) {
        Some(q) => Some(*q),
        None => policy.quiet_hours.get(kind.as_str()).copied(),
    }
}

/// The per-customer rates of a policy, each with the channel name or kind
/// it is keyed by (`None` for the one over all channels).
pub fn rates(policy: &Policy) -> Vec<(Option<&str>, Rate)> {
    let all = policy.limits.per_customer.map(|rate| (None, rate));
    let own = policy
        .limits
        .per_channel
        .iter()
        .map(|(key, rate)| (Some(key.as_str()), *rate));
    all.into_iter().chain(own).collect()
}

/// Does a send on `channel` count against the rate keyed by `key`?
pub fn rate_covers(key: Option<&str>, channel: &str, kind: ChannelKind) -> bool {
    key.is_none_or(|key| key == channel || key == kind.as_str())
}

/// When a cascade accepted at `accepted_ms` expires: `expire_after` after
/// acceptance, or at the notification's own `expires_at` when that is earlier.
pub fn expiry(
    accepted_ms: i64,
    expire_after_ms: Option<i64>,
    expires_at_ms: Option<i64>,
) -> Option<i64> {
    [expire_after_ms.map(|d| accepted_ms + d), expires_at_ms]
        .into_iter()
        .flatten()
        .min()
}

/// When `rate` lets one more send go at or after `now_ms`, given the times of
/// the earlier sends: the first instant `T` at which fewer than `count` of
/// them lie in the window `(T - per, T]`. `None` when that is `now_ms`.
pub fn limit_not_before(rate: Rate, sends_ms: &[i64], now_ms: i64) -> Option<i64> {
    let in_window = |t: i64| {
        sends_ms
            .iter()
            .filter(|&&s| t - rate.per_ms < s && s <= t)
            .count()
    };
    if in_window(now_ms) < rate.count as usize {
        return None;
    }
    // The count only falls when a send leaves the window, `per` after it.
    let mut leaves: Vec<i64> = sends_ms.iter().map(|s| s + rate.per_ms).collect();
    leaves.sort_unstable();
    leaves
        .into_iter()
        .filter(|&t| t > now_ms)
        .find(|&t| in_window(t) < rate.count as usize)
}

/// A 2026 DST change in a zone the properties use. At `at` (UTC) the local
/// clock, which was about to read `from_min`, reads `to_min` instead: it
/// skips `[from, to)` when it goes forward and reads `[to, from)` twice when
/// it goes back. Hard-coded so that a reader can check them against a
/// calendar; a test checks them against jiff's time-zone database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DstChange {
    pub zone: &'static str,
    pub at: &'static str,
    pub from_min: u16,
    pub to_min: u16,
}

impl DstChange {
    pub fn at_ms(&self) -> i64 {
        self.at
            .parse::<Timestamp>()
            .expect("a valid instant")
            .as_millisecond()
    }

    pub fn tz(&self) -> TimeZone {
        TimeZone::get(self.zone).expect("a zone of the bundled database")
    }

    /// The minutes of the day the clock skips or reads twice, `[lo, hi)`.
    pub fn odd_minutes(&self) -> (u16, u16) {
        (
            self.from_min.min(self.to_min),
            self.from_min.max(self.to_min),
        )
    }
}

pub const DST_2026: [DstChange; 6] = [
    // 02:00 CET -> 03:00 CEST: 02:00-02:59 never happens.
    DstChange {
        zone: "Europe/Berlin",
        at: "2026-03-29T01:00:00Z",
        from_min: 120,
        to_min: 180,
    },
    // 03:00 CEST -> 02:00 CET: 02:00-02:59 happens twice.
    DstChange {
        zone: "Europe/Berlin",
        at: "2026-10-25T01:00:00Z",
        from_min: 180,
        to_min: 120,
    },
    // 02:00 EST -> 03:00 EDT.
    DstChange {
        zone: "America/New_York",
        at: "2026-03-08T07:00:00Z",
        from_min: 120,
        to_min: 180,
    },
    // 02:00 EDT -> 01:00 EST: 01:00-01:59 twice.
    DstChange {
        zone: "America/New_York",
        at: "2026-11-01T06:00:00Z",
        from_min: 120,
        to_min: 60,
    },
    // 02:00 +11:00 -> 01:30 +10:30: half an hour, 01:30-01:59, twice.
    DstChange {
        zone: "Australia/Lord_Howe",
        at: "2026-04-04T15:00:00Z",
        from_min: 120,
        to_min: 90,
    },
    // 02:00 +10:30 -> 02:30 +11:00: 02:00-02:29 never happens.
    DstChange {
        zone: "Australia/Lord_Howe",
        at: "2026-10-03T15:30:00Z",
        from_min: 120,
        to_min: 150,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }
    fn q(s: &str) -> QuietHours {
        QuietHours::parse(s).unwrap()
    }
    fn tz(zone: &str) -> TimeZone {
        TimeZone::get(zone).unwrap()
    }

    #[test]
    fn the_dst_table_is_what_jiff_says() {
        for zone in ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"] {
            let z = tz(zone);
            let start = Timestamp::from_millisecond(ms("2026-01-01T00:00:00Z")).unwrap();
            let from_jiff: Vec<i64> = z
                .following(start)
                .take_while(|t| t.timestamp().as_millisecond() < ms("2027-01-01T00:00:00Z"))
                .map(|t| t.timestamp().as_millisecond())
                .collect();
            let table: Vec<i64> = DST_2026
                .iter()
                .filter(|c| c.zone == zone)
                .map(DstChange::at_ms)
                .collect();
            assert_eq!(from_jiff, table, "{zone}");
        }
        for c in DST_2026 {
            let z = c.tz();
            // The last minute before the change, and the first after it.
            assert_eq!(clock_minute(c.at_ms() - 1, &z), c.from_min - 1, "{c:?}");
            assert_eq!(clock_minute(c.at_ms(), &z), c.to_min, "{c:?}");
        }
    }

    #[test]
    fn offsets_are_whole_minutes_in_2026() {
        for zone in super::super::properties::ZONES {
            let z = tz(zone);
            for day in 0..365 {
                let at = ms("2026-01-01T00:00:00Z") + day * 24 * 60 * MIN;
                let offset = z.to_offset(Timestamp::from_millisecond(at).unwrap());
                assert_eq!(offset.seconds() % 60, 0, "{zone} on day {day}");
            }
        }
    }

    #[test]
    fn quiet_hours_by_the_clock() {
        let msk = tz("Europe/Moscow");
        let night = q("21:00-09:00");
        assert!(!is_quiet(night, ms("2026-11-23T17:59:59.999Z"), &msk)); // 20:59 MSK
        assert!(is_quiet(night, ms("2026-11-23T18:00:00Z"), &msk)); // 21:00
        assert!(is_quiet(night, ms("2026-11-24T05:59:59.999Z"), &msk)); // 08:59
        assert!(!is_quiet(night, ms("2026-11-24T06:00:00Z"), &msk)); // 09:00
        let lunch = q("12:00-13:00");
        assert!(is_quiet(lunch, ms("2026-11-23T09:00:00Z"), &msk));
        assert!(!is_quiet(lunch, ms("2026-11-23T10:00:00Z"), &msk));
        // Kolkata is +05:30: 12:00 there is 06:30Z.
        assert!(is_quiet(
            lunch,
            ms("2026-11-23T06:30:00Z"),
            &tz("Asia/Kolkata")
        ));
        assert!(!is_quiet(
            lunch,
            ms("2026-11-23T06:29:00Z"),
            &tz("Asia/Kolkata")
        ));
    }

    #[test]
    fn sending_resumes_at_the_first_open_minute() {
        let msk = tz("Europe/Moscow");
        let night = q("21:00-09:00");
        let open = ms("2026-11-23T12:34:56.789Z");
        assert_eq!(first_open(night, open, &msk), open);
        assert_eq!(
            first_open(night, ms("2026-11-23T20:00:00.5Z"), &msk),
            ms("2026-11-24T06:00:00Z")
        );
        let berlin = tz("Europe/Berlin");
        // Spring: the clock jumps from 01:59 to 03:00, past 02:30.
        assert_eq!(
            first_open(q("22:00-02:30"), ms("2026-03-28T23:00:00Z"), &berlin),
            ms("2026-03-29T01:00:00Z")
        );
        // Autumn: at 02:10 CET, the second 02:10 of the night, quiet until
        // 02:30 CET — not until 02:30 CEST, which has passed.
        assert_eq!(
            first_open(q("22:00-02:30"), ms("2026-10-25T01:10:00Z"), &berlin),
            ms("2026-10-25T01:30:00Z")
        );
        // Autumn: quiet 02:40-03:30 ends when the clock goes back from
        // 02:59 CEST to 02:00 CET, and starts again at 02:40 CET.
        assert_eq!(
            first_open(q("02:40-03:30"), ms("2026-10-25T00:50:00Z"), &berlin),
            ms("2026-10-25T01:00:00Z")
        );
        assert!(is_quiet(
            q("02:40-03:30"),
            ms("2026-10-25T01:40:00Z"),
            &berlin
        ));
    }

    #[test]
    fn awake_waits_count_open_time_only() {
        let msk = tz("Europe/Moscow");
        let night = q("21:00-09:00");
        // The example of docs/policies.md (the wait clock): VK at 20:50,
        // 30 awake minutes, SMS quiet 21:00-09:00: SMS at 09:20.
        assert_eq!(
            awake_deadline(night, ms("2026-11-23T17:50:00Z"), 30 * MIN, &msk),
            ms("2026-11-24T06:20:00Z")
        );
        // Ten open minutes end exactly as the quiet hours begin.
        assert_eq!(
            awake_deadline(night, ms("2026-11-23T17:50:00Z"), 10 * MIN, &msk),
            ms("2026-11-23T18:00:00Z")
        );
        // Part minutes count by the millisecond.
        assert_eq!(
            awake_deadline(night, ms("2026-11-23T17:59:59.5Z"), 1_000, &msk),
            ms("2026-11-24T06:00:00.5Z")
        );
        assert_eq!(
            awake_deadline(night, ms("2026-11-23T20:00:00Z"), 0, &msk),
            ms("2026-11-24T06:00:00Z")
        );
        // Berlin in spring: the night 22:00-08:00 is an hour shorter.
        let berlin = tz("Europe/Berlin");
        assert_eq!(
            awake_deadline(
                q("22:00-08:00"),
                ms("2026-03-28T20:00:00Z"),
                3 * 60 * MIN,
                &berlin
            ),
            ms("2026-03-29T08:00:00Z") // an hour before 22:00 CET, two after 08:00 CEST
        );
    }

    #[test]
    fn expiry_is_the_earlier_of_the_two() {
        assert_eq!(expiry(1_000, None, None), None);
        assert_eq!(expiry(1_000, Some(500), None), Some(1_500));
        assert_eq!(expiry(1_000, None, Some(1_200)), Some(1_200));
        assert_eq!(expiry(1_000, Some(500), Some(1_200)), Some(1_200));
        assert_eq!(expiry(1_000, Some(100), Some(1_200)), Some(1_100));
    }

    #[test]
    fn the_limit_window_slides() {
        let rate = Rate {
            count: 2,
            per_ms: 1_000,
        };
        assert_eq!(limit_not_before(rate, &[], 5_000), None);
        assert_eq!(limit_not_before(rate, &[4_500], 5_000), None);
        assert_eq!(limit_not_before(rate, &[4_500, 4_200], 5_000), Some(5_200));
        // A send exactly `per` ago has left the window.
        assert_eq!(limit_not_before(rate, &[4_000, 4_200], 5_000), None);
        assert_eq!(
            limit_not_before(rate, &[4_100, 4_200, 4_900], 5_000),
            Some(5_200)
        );
    }
}
