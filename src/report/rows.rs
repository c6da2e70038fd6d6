//! Report rows: the counters of a time range summed by the dimensions asked
//! for, and the rates, time-to-read percentiles and money worked out from
//! them.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::replies::ReplyRow;
use super::tally::{MONEY_SCALE, TTR_BUCKETS, TTR_MORE};
use super::{Group, parse_field};
use crate::core::replies::is_staff_policy;

/// What rows are grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    Policy,
    Step,
    Channel,
    Segment,
}

impl Dimension {
    pub fn parse(word: &str) -> Result<Dimension, String> {
        match word.trim() {
            "policy" => Ok(Dimension::Policy),
            "step" => Ok(Dimension::Step),
            "channel" => Ok(Dimension::Channel),
            "segment" => Ok(Dimension::Segment),
            other => Err(format!(
                "`{other}` is not a dimension: use policy, step, channel or segment"
            )),
        }
    }

    /// `policy,step,…` as a list, in the order given, without repeats.
    pub fn parse_list(words: &str) -> Result<Vec<Dimension>, String> {
        let mut out = Vec::new();
        for w in words.split(',').filter(|w| !w.trim().is_empty()) {
            let d = Dimension::parse(w)?;
            if !out.contains(&d) {
                out.push(d);
            }
        }
        Ok(out)
    }
}

/// One row: its group (only the dimensions asked for are set) and what was
/// counted in it. Money is in the channels' `cost` unit.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Row {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The step's index from 0; its JSON (`cascade report --json`,
    /// `GET /v1/report`) counts from 1, as the text and CSV do.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::step_number_opt"
    )]
    pub step: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// Notifications accepted (counted on no step or channel).
    pub accepted: i64,
    pub sent: i64,
    /// Notifications read (their first stopping receipt), on the step and
    /// channel of the message they answered.
    pub read: i64,
    /// read ÷ sent.
    pub read_rate: Option<f64>,
    /// Time to read, from the buckets (linear within one); `None` with no reads.
    pub ttr_p50_ms: Option<i64>,
    pub ttr_p90_ms: Option<i64>,
    /// Escalations from this row's step (to the next).
    pub escalated: i64,
    /// escalated ÷ sent.
    pub escalation_rate: Option<f64>,
    /// Reads of an earlier step's message soon after this row's send.
    pub late_reads: i64,
    /// late_reads ÷ sent.
    pub late_read_rate: Option<f64>,
    /// Sends that failed for good (a retry is not counted).
    pub failed: i64,
    pub uncertain: i64,
    /// Steps skipped, by reason.
    pub skipped: BTreeMap<String, i64>,
    pub completed: i64,
    pub exhausted: i64,
    pub expired: i64,
    pub cancelled: i64,
    /// Money spent on the sends.
    pub cost: f64,
    /// Money the steps not sent would have cost (the customer read first).
    pub saved: f64,
    /// Steps not sent because the customer read first, and of them SMS.
    pub avoided: i64,
    pub sms_avoided: i64,
    /// Receipts recorded, by word.
    pub receipts: BTreeMap<String, i64>,
    /// Reads by time-to-read bucket (`1m` … `1d`, `more`).
    pub time_to_read: BTreeMap<String, i64>,
}

/// A report: its range (Unix ms), how it is grouped, its rows and their total.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub from_ms: i64,
    pub to_ms: i64,
    pub by: Vec<Dimension>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    pub rows: Vec<Row>,
    pub total: Row,
    /// Customers' replies and staff's answers, by the policy replied to
    /// (`replies`); the staff cascades' own counters are not in `rows` or
    /// `total` unless `policy` names a staff policy (`P:answer`).
    pub replies: Vec<ReplyRow>,
}

/// Which rows to build.
pub struct Query<'a> {
    pub from_ms: i64,
    pub to_ms: i64,
    pub policy: Option<&'a str>,
    pub by: &'a [Dimension],
    /// The channels of SMS kind (for `sms_avoided`).
    pub sms_channels: &'a BTreeSet<String>,
    /// The policies whose replies must be answered within a deadline
    /// (`answer_within`), for the replies rows.
    pub answer_deadlines: &'a BTreeSet<String>,
}

/// The group a counter's group falls in when rows are grouped by `by`.
fn project(g: &Group, by: &[Dimension]) -> Group {
    let has = |d| by.contains(&d);
    Group {
        policy: if has(Dimension::Policy) {
            g.policy.clone()
        } else {
            String::new()
        },
        step: if has(Dimension::Step) { g.step } else { None },
        channel: if has(Dimension::Channel) {
            g.channel.clone()
        } else {
            String::new()
        },
        segment: if has(Dimension::Segment) {
            g.segment.clone()
        } else {
            String::new()
        },
    }
}

/// Sums `counters` (field → n) into the report `q` asks for.
pub fn build(counters: &BTreeMap<String, i64>, q: &Query<'_>) -> Report {
    let mut groups: BTreeMap<Group, Row> = BTreeMap::new();
    let mut total = Row::default();
    for (field, &n) in counters {
        let Some((g, metric)) = parse_field(field) else {
            continue;
        };
        if q.policy.is_some_and(|p| p != g.policy) {
            continue;
        }
        // Staff answering customers' replies are not customers being
        // notified: their counters make the replies rows, and the main
        // rows only when their policy is asked for by name.
        if q.policy.is_none() && is_staff_policy(&g.policy) {
            continue;
        }
        let sms = q.sms_channels.contains(&g.channel);
        let key = project(&g, q.by);
        let row = groups
            .entry(key.clone())
            .or_insert_with(|| labelled(&key, q.by));
        add(row, metric, n, sms);
        add(&mut total, metric, n, sms);
    }
    let mut rows: Vec<Row> = groups.into_values().collect();
    for row in rows.iter_mut().chain(std::iter::once(&mut total)) {
        finish(row);
    }
    // Rows with nothing but zeros (a group seen only in other metrics) stay:
    // they say a group exists.
    Report {
        from_ms: q.from_ms,
        to_ms: q.to_ms,
        by: q.by.to_vec(),
        policy: q.policy.map(str::to_owned),
        rows,
        total,
        replies: super::replies::build(counters, q),
    }
}

/// An empty row labelled with the dimensions of `key` asked for.
fn labelled(key: &Group, by: &[Dimension]) -> Row {
    let has = |d| by.contains(&d);
    Row {
        policy: has(Dimension::Policy).then(|| key.policy.clone()),
        step: if has(Dimension::Step) { key.step } else { None },
        channel: has(Dimension::Channel).then(|| key.channel.clone()),
        segment: has(Dimension::Segment).then(|| key.segment.clone()),
        ..Row::default()
    }
}

/// Adds one counter to a row.
fn add(row: &mut Row, metric: &str, n: i64, sms: bool) {
    let money = n as f64 / MONEY_SCALE;
    match metric {
        "accepted" => row.accepted += n,
        "sent" => row.sent += n,
        "read" => row.read += n,
        "escalated" => row.escalated += n,
        "late_read" => row.late_reads += n,
        "failed" => row.failed += n,
        "uncertain" => row.uncertain += n,
        "completed" => row.completed += n,
        "exhausted" => row.exhausted += n,
        "expired" => row.expired += n,
        "cancelled" => row.cancelled += n,
        "cost" => row.cost += money,
        "saved" => row.saved += money,
        "avoided" => {
            row.avoided += n;
            if sms {
                row.sms_avoided += n;
            }
        }
        m => {
            if let Some(reason) = m.strip_prefix("skipped:") {
                *row.skipped.entry(reason.to_owned()).or_default() += n;
            } else if let Some(word) = m.strip_prefix("receipt:") {
                *row.receipts.entry(word.to_owned()).or_default() += n;
            } else if let Some(bucket) = m.strip_prefix("ttr:") {
                *row.time_to_read.entry(bucket.to_owned()).or_default() += n;
            }
        }
    }
}

fn ratio(a: i64, b: i64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

fn finish(row: &mut Row) {
    row.read_rate = ratio(row.read, row.sent);
    row.escalation_rate = ratio(row.escalated, row.sent);
    row.late_read_rate = ratio(row.late_reads, row.sent);
    row.ttr_p50_ms = percentile(&row.time_to_read, 0.5);
    row.ttr_p90_ms = percentile(&row.time_to_read, 0.9);
    row.cost = (row.cost * 100.0).round() / 100.0;
    row.saved = (row.saved * 100.0).round() / 100.0;
}

/// The buckets in order: (lower bound, upper bound, name); `more` has no upper.
pub fn buckets() -> impl Iterator<Item = (i64, Option<i64>, &'static str)> {
    let mut lower = 0;
    TTR_BUCKETS
        .iter()
        .map(move |&(upper, name)| {
            let b = (lower, Some(upper), name);
            lower = upper;
            b
        })
        .chain(std::iter::once((
            TTR_BUCKETS[TTR_BUCKETS.len() - 1].0,
            None,
            TTR_MORE,
        )))
}

/// The `q` quantile of reads in `hist` (bucket name → reads), spreading a
/// bucket's reads evenly over it; a quantile in `more` is its lower bound.
pub fn percentile(hist: &BTreeMap<String, i64>, q: f64) -> Option<i64> {
    let total: i64 = hist.values().sum();
    if total <= 0 {
        return None;
    }
    let target = q * total as f64;
    let mut below = 0.0;
    for (lower, upper, name) in buckets() {
        let n = hist.get(name).copied().unwrap_or(0) as f64;
        if n > 0.0 && below + n >= target {
            let Some(upper) = upper else {
                return Some(lower);
            };
            let frac = ((target - below) / n).clamp(0.0, 1.0);
            return Some(lower + ((upper - lower) as f64 * frac).round() as i64);
        }
        below += n;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::field;

    /// The JSON of `cascade report --json` and `GET /v1/report` numbers
    /// steps as the text and CSV do (and the timeline API, and the logs).
    #[test]
    fn json_rows_count_steps_from_one() {
        let row = |step| Row {
            step,
            ..Row::default()
        };
        let first = serde_json::to_value(row(Some(0))).unwrap();
        assert_eq!(first["step"], 1);
        let no_step = serde_json::to_value(row(None)).unwrap();
        assert!(no_step.get("step").is_none(), "{no_step}");
    }

    /// policy, step, channel, segment, metric, count.
    type Counter<'a> = (&'a str, Option<u8>, &'a str, &'a str, &'a str, i64);

    fn counters(list: &[Counter<'_>]) -> BTreeMap<String, i64> {
        list.iter()
            .map(|(p, s, c, seg, m, n)| (field(p, *s, c, seg, m), *n))
            .collect()
    }

    #[test]
    fn rows_sum_by_the_dimensions_asked_for() {
        let c = counters(&[
            ("dd", None, "", "new", "accepted", 10),
            ("dd", Some(0), "vk", "new", "sent", 10),
            ("dd", Some(0), "vk", "new", "read", 6),
            ("dd", Some(0), "vk", "new", "ttr:5m", 6),
            ("dd", Some(0), "vk", "new", "escalated", 4),
            ("dd", Some(1), "sms", "new", "sent", 4),
            ("dd", Some(1), "sms", "new", "cost", 16_800),
            ("dd", Some(1), "sms", "new", "avoided", 6),
            ("dd", Some(1), "sms", "new", "saved", 25_200),
            ("dd", Some(0), "vk", "vip", "sent", 5),
            ("other", Some(0), "email", "-", "sent", 3),
        ]);
        let sms = BTreeSet::from(["sms".to_owned()]);
        let r = build(
            &c,
            &Query {
                from_ms: 0,
                to_ms: 1,
                policy: Some("dd"),
                by: &[Dimension::Step, Dimension::Channel],
                sms_channels: &sms,
                answer_deadlines: &BTreeSet::new(),
            },
        );
        assert_eq!(r.rows.len(), 3, "{:?}", r.rows);
        let vk = &r.rows[1];
        assert_eq!((vk.step, vk.channel.as_deref()), (Some(0), Some("vk")));
        assert_eq!((vk.sent, vk.read, vk.escalated), (15, 6, 4));
        assert_eq!(vk.read_rate, Some(6.0 / 15.0));
        let s = &r.rows[2];
        assert_eq!((s.cost, s.saved, s.sms_avoided), (16.8, 25.2, 6));
        assert_eq!(r.total.sent, 19);
        assert_eq!(r.total.accepted, 10);
        assert!(
            r.rows
                .iter()
                .all(|row| row.policy.is_none() && row.segment.is_none())
        );
    }

    #[test]
    fn percentiles_interpolate_within_a_bucket() {
        let hist = BTreeMap::from([("5m".to_owned(), 10)]);
        // 2m..5m, evenly: the median at 3.5m.
        assert_eq!(percentile(&hist, 0.5), Some(210_000));
        let hist = BTreeMap::from([("1m".to_owned(), 1), ("more".to_owned(), 9)]);
        assert_eq!(percentile(&hist, 0.5), Some(86_400_000));
        assert_eq!(percentile(&BTreeMap::new(), 0.5), None);
    }

    #[test]
    fn dimensions_parse_in_order_without_repeats() {
        assert_eq!(
            Dimension::parse_list("step, channel,step").unwrap(),
            vec![Dimension::Step, Dimension::Channel]
        );
        assert!(Dimension::parse_list("hour").is_err());
    }
}
