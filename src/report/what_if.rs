//! What another wait would have done: from the recorded time to read of a
//! step's messages, per segment, how many escalations, how much money and
//! how many late reads a different wait before the next step would have
//! given.
//!
//! The model, said plainly (`ASSUMPTIONS`, printed with every table): a
//! customer reads when they would have whatever the wait; the next step
//! goes out to everyone not read by the end of the wait; reads are spread
//! evenly within a time-to-read bucket; the next step costs what it cost on
//! average. It starts from what happened (the escalations counted at the
//! current wait) and moves by the reads a longer or shorter wait would have
//! caught or missed, so at the current wait it gives the counts as they are.

use std::collections::BTreeMap;

use serde::Serialize;

use super::rows::buckets;
use super::tally::MONEY_SCALE;
use super::{OTHER_SEGMENT, parse_field};

/// What the estimate takes for granted.
pub const ASSUMPTIONS: [&str; 5] = [
    "customers read when they would have, whatever the wait",
    "the next step goes to everyone not read by the end of the wait",
    "within a time-to-read bucket, reads are spread evenly; reads past 1d within the week after",
    "the next step costs what it cost on average in the range",
    "a read seen only because the customer did not read the next step first is the only kind recorded after an escalation, so reads after the current wait are undercounted",
];

/// The upper bound given to the `more` bucket: a week.
const MORE_UPPER_MS: i64 = 7 * 86_400_000;

/// What was recorded for one step of a policy in one segment.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StepRecord {
    pub sent: i64,
    pub escalated: i64,
    /// Reads of this step's messages by time-to-read bucket.
    pub time_to_read: BTreeMap<String, i64>,
    /// Sends of the next step, and what they cost (the price of an escalation).
    pub next_sent: i64,
    pub next_cost: f64,
    pub late_reads: i64,
}

/// The estimate for one wait.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Estimate {
    pub wait_ms: i64,
    pub escalations: f64,
    /// What the escalations cost; `None` when the next step states no price
    /// or never went out.
    pub cost: Option<f64>,
    pub late_reads: f64,
}

/// A what-if for one step: the estimates for each wait, per segment and in all.
#[derive(Clone, Debug, Serialize)]
pub struct WhatIf {
    pub policy: String,
    /// The step's index from 0; its JSON counts from 1, as `--wait 1=15m`.
    #[serde(serialize_with = "super::step_number")]
    pub step: u8,
    pub current_wait_ms: i64,
    pub late_read_window_ms: i64,
    pub waits_ms: Vec<i64>,
    pub segments: BTreeMap<String, Vec<Estimate>>,
    pub total: Vec<Estimate>,
    pub assumptions: Vec<&'static str>,
}

/// How many of the reads in `hist` came within `wait_ms` of the send.
pub fn reads_within(hist: &BTreeMap<String, i64>, wait_ms: i64) -> f64 {
    let mut n = 0.0;
    for (lower, upper, name) in buckets() {
        let count = hist.get(name).copied().unwrap_or(0) as f64;
        let upper = upper.unwrap_or(MORE_UPPER_MS);
        if wait_ms >= upper {
            n += count;
        } else if wait_ms > lower {
            n += count * (wait_ms - lower) as f64 / (upper - lower) as f64;
        }
    }
    n
}

/// The estimate for `wait_ms` from what `r` recorded at `current_wait_ms`.
pub fn estimate(r: &StepRecord, current_wait_ms: i64, wait_ms: i64, window_ms: i64) -> Estimate {
    let now_caught = reads_within(&r.time_to_read, current_wait_ms);
    let then_caught = reads_within(&r.time_to_read, wait_ms);
    let escalations =
        (r.escalated as f64 + now_caught - then_caught).clamp(0.0, r.sent.max(0) as f64);
    let price = (r.next_sent > 0).then(|| r.next_cost / r.next_sent as f64);
    let late = reads_within(&r.time_to_read, wait_ms.saturating_add(window_ms)) - then_caught;
    Estimate {
        wait_ms,
        escalations,
        cost: price.map(|p| escalations * p),
        late_reads: late.max(0.0),
    }
}

/// Sums estimates wait by wait.
fn sum(a: &mut Vec<Estimate>, b: &[Estimate]) {
    if a.is_empty() {
        a.extend_from_slice(b);
        return;
    }
    for (x, y) in a.iter_mut().zip(b) {
        x.escalations += y.escalations;
        x.late_reads += y.late_reads;
        x.cost = match (x.cost, y.cost) {
            (Some(p), Some(q)) => Some(p + q),
            (p, q) => p.or(q),
        };
    }
}

/// The records of `step` of `policy` per segment, from summed counters.
pub fn records(
    counters: &BTreeMap<String, i64>,
    policy: &str,
    step: u8,
) -> BTreeMap<String, StepRecord> {
    let mut out: BTreeMap<String, StepRecord> = BTreeMap::new();
    for (field, &n) in counters {
        let Some((g, metric)) = parse_field(field) else {
            continue;
        };
        if g.policy != policy {
            continue;
        }
        let segment = if g.segment.is_empty() {
            OTHER_SEGMENT.to_owned()
        } else {
            g.segment
        };
        let r = out.entry(segment).or_default();
        if g.step == Some(step) {
            match metric {
                "sent" => r.sent += n,
                // Only escalations after a send: one from a step that was
                // skipped (no contact) happens whatever the wait.
                "escalated" if !g.channel.is_empty() => r.escalated += n,
                m => {
                    if let Some(b) = m.strip_prefix("ttr:") {
                        *r.time_to_read.entry(b.to_owned()).or_default() += n;
                    }
                }
            }
        } else if g.step == Some(step + 1) {
            match metric {
                "sent" => r.next_sent += n,
                "cost" => r.next_cost += n as f64 / MONEY_SCALE,
                "late_read" => r.late_reads += n,
                _ => {}
            }
        }
    }
    out.retain(|_, r| r.sent > 0);
    out
}

/// The what-if for `step` of `policy`, whose wait is `current_wait_ms`,
/// over `waits_ms` (sorted, without repeats).
pub fn what_if(
    counters: &BTreeMap<String, i64>,
    policy: &str,
    step: u8,
    current_wait_ms: i64,
    window_ms: i64,
    waits_ms: &[i64],
) -> WhatIf {
    let mut waits: Vec<i64> = waits_ms.to_vec();
    waits.sort_unstable();
    waits.dedup();
    let mut segments = BTreeMap::new();
    let mut total = Vec::new();
    for (segment, r) in records(counters, policy, step) {
        let row: Vec<Estimate> = waits
            .iter()
            .map(|&w| estimate(&r, current_wait_ms, w, window_ms))
            .collect();
        sum(&mut total, &row);
        segments.insert(segment, row);
    }
    WhatIf {
        policy: policy.to_owned(),
        step,
        current_wait_ms,
        late_read_window_ms: window_ms,
        waits_ms: waits,
        segments,
        total,
        assumptions: ASSUMPTIONS.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Its JSON names the step as `--wait 1=15m` does.
    #[test]
    fn json_counts_the_step_from_one() {
        let w = WhatIf {
            policy: "delivery_delay".into(),
            step: 0,
            current_wait_ms: 0,
            late_read_window_ms: 0,
            waits_ms: vec![],
            segments: BTreeMap::new(),
            total: vec![],
            assumptions: vec![],
        };
        assert_eq!(serde_json::to_value(&w).unwrap()["step"], 1);
    }

    const MIN: i64 = 60_000;

    fn record(hist: &[(&str, i64)], sent: i64, escalated: i64) -> StepRecord {
        StepRecord {
            sent,
            escalated,
            time_to_read: hist.iter().map(|(b, n)| (b.to_string(), *n)).collect(),
            next_sent: escalated,
            next_cost: escalated as f64 * 4.2,
            late_reads: 0,
        }
    }

    #[test]
    fn at_the_current_wait_it_gives_what_happened() {
        let r = record(&[("5m", 40), ("30m", 20), ("2h", 10)], 100, 40);
        let e = estimate(&r, 30 * MIN, 30 * MIN, 15 * MIN);
        assert!((e.escalations - 40.0).abs() < 1e-9);
        assert!((e.cost.unwrap() - 168.0).abs() < 1e-9);
        // 1h..2h holds 10 reads evenly; 30m..45m catches none of them.
        assert!(e.late_reads.abs() < 1e-9);
    }

    #[test]
    fn a_shorter_wait_misses_the_reads_it_cuts_off() {
        let r = record(&[("5m", 40), ("30m", 20), ("2h", 10)], 100, 40);
        // 15m..30m holds 20 reads; a 15-minute wait misses all of them.
        let e = estimate(&r, 30 * MIN, 15 * MIN, 15 * MIN);
        assert!((e.escalations - 60.0).abs() < 1e-9, "{e:?}");
        // ...and they become late reads within 15 minutes of the escalation.
        assert!((e.late_reads - 20.0).abs() < 1e-9, "{e:?}");
        // A 2-hour wait catches the 10 reads of 1h..2h too.
        let e = estimate(&r, 30 * MIN, 120 * MIN, 15 * MIN);
        assert!((e.escalations - 30.0).abs() < 1e-9, "{e:?}");
    }

    #[test]
    fn records_come_per_segment_from_the_counters() {
        use crate::report::field;
        let counters: BTreeMap<String, i64> = [
            (field("dd", Some(0), "vk", "new", "sent"), 10),
            (field("dd", Some(0), "vk", "new", "escalated"), 4),
            (field("dd", Some(0), "", "new", "escalated"), 7),
            (field("dd", Some(0), "vk", "new", "ttr:5m"), 6),
            (field("dd", Some(1), "sms", "new", "sent"), 4),
            (field("dd", Some(1), "sms", "new", "cost"), 16_800),
            (field("dd", Some(0), "vk", "vip", "sent"), 2),
            (field("other", Some(0), "vk", "new", "sent"), 99),
        ]
        .into_iter()
        .collect();
        let w = what_if(&counters, "dd", 0, 30 * MIN, 15 * MIN, &[30 * MIN, 5 * MIN]);
        assert_eq!(w.waits_ms, vec![5 * MIN, 30 * MIN]);
        assert_eq!(w.segments.len(), 2);
        let now = &w.segments["new"][1];
        assert!((now.escalations - 4.0).abs() < 1e-9);
        assert!((now.cost.unwrap() - 16.8).abs() < 1e-9);
        // The total sums the segments.
        assert!((w.total[1].escalations - 4.0 - 0.0).abs() < 1e-9);
    }

    fn hist() -> impl Strategy<Value = Vec<(usize, i64)>> {
        prop::collection::vec((0usize..12, 0i64..500), 0..12)
    }

    proptest! {
        #[test]
        fn longer_waits_never_escalate_more_and_stay_in_bounds(
            h in hist(),
            sent in 0i64..5_000,
            escalated in 0i64..5_000,
            current in 0i64..(8 * 86_400_000),
            a in 0i64..(8 * 86_400_000),
            b in 0i64..(8 * 86_400_000),
        ) {
            let names: Vec<&str> = buckets().map(|(_, _, n)| n).collect();
            let mut r = record(&[], sent, escalated.min(sent));
            for (i, n) in h {
                *r.time_to_read.entry(names[i].to_owned()).or_default() += n;
            }
            let (short, long) = (a.min(b), a.max(b));
            let es = estimate(&r, current, short, 15 * MIN);
            let el = estimate(&r, current, long, 15 * MIN);
            prop_assert!(el.escalations <= es.escalations + 1e-6);
            for e in [&es, &el] {
                prop_assert!(e.escalations >= 0.0 && e.escalations <= sent as f64 + 1e-6);
                prop_assert!(e.late_reads >= -1e-9);
                if let Some(c) = e.cost {
                    prop_assert!(c >= 0.0);
                }
            }
            let at_now = estimate(&r, current, current, 15 * MIN);
            prop_assert!((at_now.escalations - r.escalated as f64).abs() < 1e-6);
        }

        #[test]
        fn reads_within_grows_with_the_wait_up_to_all_reads(
            h in hist(),
            a in 0i64..(8 * 86_400_000),
            b in 0i64..(8 * 86_400_000),
        ) {
            let names: Vec<&str> = buckets().map(|(_, _, n)| n).collect();
            let mut m = BTreeMap::new();
            for (i, n) in h {
                *m.entry(names[i].to_owned()).or_insert(0) += n;
            }
            let all: i64 = m.values().sum();
            let (x, y) = (reads_within(&m, a.min(b)), reads_within(&m, a.max(b)));
            prop_assert!(x <= y + 1e-9);
            prop_assert!(y <= all as f64 + 1e-9);
            prop_assert!((reads_within(&m, MORE_UPPER_MS) - all as f64).abs() < 1e-6);
        }
    }
}
