//! The operator's view: counters the daemon keeps for every stored decision
//! (`tally`), read back by hour and summed into report rows (`rows`), the
//! what-if on a step's wait (`what_if`), customers' replies and staff's
//! answers (`replies`), and their text forms (`render`).
//! No I/O here: the store reads and writes the counters
//! (runtime/store/aggregates.rs).
//!
//! A counter is one field of an hour's hash: `policy \t step \t channel \t
//! segment \t metric`, with `-` for no step. The hash of an hour is kept per
//! timer shard (so a decision's counts go in its shard's call), for the
//! retention.

pub mod render;
pub mod replies;
pub mod rows;
pub mod tally;
pub mod what_if;

pub use replies::ReplyRow;
pub use rows::{Dimension, Report, Row};
pub use tally::{Count, Tallied, Tally};

/// Serializes a step index (0-based, as the counters and the core keep it)
/// as the step's number, counted from 1 as everywhere people read steps:
/// the policy file's order, `cascade status`, the timeline API, the logs.
pub(crate) fn step_number<S: serde::Serializer>(step: &u8, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u16(u16::from(*step) + 1)
}

/// `step_number` of a step that may be absent.
pub(crate) fn step_number_opt<S: serde::Serializer>(
    step: &Option<u8>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match step {
        Some(step) => step_number(step, s),
        None => s.serialize_none(),
    }
}

/// Separates a counter field's parts.
const SEP: char = '\t';

/// The segment of notifications whose segment is not counted on its own.
pub const OTHER_SEGMENT: &str = "other";

/// The segment of notifications that name none.
pub const NO_SEGMENT: &str = "-";

/// Where a counter belongs: policy, step, channel and segment.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Group {
    pub policy: String,
    pub step: Option<u8>,
    pub channel: String,
    pub segment: String,
}

/// The field of a counter in an hour's hash.
pub fn field(policy: &str, step: Option<u8>, channel: &str, segment: &str, metric: &str) -> String {
    let step = step.map_or_else(|| "-".to_owned(), |s| s.to_string());
    format!("{policy}{SEP}{step}{SEP}{channel}{SEP}{segment}{SEP}{metric}")
}

/// A field read back: its group and metric; `None` for a field this
/// version does not know how to read.
pub fn parse_field(field: &str) -> Option<(Group, &str)> {
    let mut parts = field.splitn(5, SEP);
    let policy = parts.next()?;
    let step = match parts.next()? {
        "-" => None,
        s => Some(s.parse().ok()?),
    };
    let channel = parts.next()?;
    let segment = parts.next()?;
    let metric = parts.next()?;
    Some((
        Group {
            policy: policy.to_owned(),
            step,
            channel: channel.to_owned(),
            segment: segment.to_owned(),
        },
        metric,
    ))
}

/// A segment name as counted: no separators, no control characters, at
/// most 40 bytes (longer ones are cut at a character boundary).
pub fn clean_segment(raw: &str) -> String {
    let mut out: String = raw.chars().filter(|c| !c.is_control()).take(40).collect();
    while out.len() > 40 {
        out.pop();
    }
    if out.is_empty() {
        NO_SEGMENT.to_owned()
    } else {
        out
    }
}

/// The hour (Unix ms / 1h) a time falls in.
pub fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(3_600_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_reads_back_as_written() {
        let f = field("delivery_delay", Some(1), "sms", "new", "ttr:5m");
        let (g, m) = parse_field(&f).unwrap();
        assert_eq!(
            g,
            Group {
                policy: "delivery_delay".into(),
                step: Some(1),
                channel: "sms".into(),
                segment: "new".into()
            }
        );
        assert_eq!(m, "ttr:5m");
        let f = field("p", None, "", "-", "accepted");
        assert_eq!(parse_field(&f).unwrap().0.step, None);
        assert!(parse_field("p\tx\tvk\tnew\tsent").is_none());
        assert!(parse_field("p\t1\tvk").is_none());
    }

    #[test]
    fn segments_are_cleaned_and_bounded() {
        assert_eq!(clean_segment("new"), "new");
        assert_eq!(clean_segment(""), "-");
        assert_eq!(clean_segment("a\tb\nc"), "abc");
        let long = "ж".repeat(50);
        let c = clean_segment(&long);
        assert!(c.len() <= 40 && c.chars().all(|ch| ch == 'ж'), "{c}");
    }
}
