//! The staff side of the report: customers' replies and how staff answered
//! them, by the policy of the notification replied to (and by segment when
//! asked), from the counters of the staff cascades (`core::replies`).
//!
//! A reply to a notification of policy `P` is a cascade of policy
//! `P:answer` whose step 0 hands it to the replies sink and waits for
//! `answered`, and whose later steps are `answer_escalation`'s staff
//! channels. So its counters read: `accepted` = replies received; `sent`
//! on step 0 = handed over; `read` on step 0 = answered within the
//! deadline; `escalated` on step 0 = the deadline missed, staff asked;
//! `read` on a later step = answered after escalation; `exhausted` = the
//! staff cascade ran out (its last staff channel asked); an answer after
//! that is still a `read`, and also `answered_after_end`;
//! `answer:<bucket>` = the time from the hand-over to the answer.
//!
//! Without a deadline the staff cascade ends `exhausted` as soon as the
//! reply is handed over, so `exhausted` means nothing there: such a
//! policy's row gives replies received, handed over and answered only.

use std::collections::BTreeMap;

use serde::Serialize;

use super::parse_field;
use super::rows::{Dimension, Query, percentile};
use super::tally::ANSWERED_AFTER_END;
use crate::core::replies::is_staff_policy;

/// The replies to one policy's notifications (in one segment, when the
/// report is grouped by segment).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ReplyRow {
    /// The policy of the notifications replied to (without `:answer`).
    pub policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// Whether replies had to be answered within a deadline
    /// (`answer_within`): configured so, or the counters show staff asked.
    pub deadline: bool,
    /// Replies received (staff cascades opened).
    pub received: i64,
    /// Replies handed to the replies sink.
    pub handed_over: i64,
    /// Replies answered (`answered` recorded), in time or not.
    pub answered: i64,
    /// Answered before the deadline, no staff asked. `None` without a deadline.
    pub answered_in_time: Option<i64>,
    /// Deadline missed: escalated to the first staff channel.
    pub escalated: Option<i64>,
    /// Answered after the deadline: after staff were asked (also after the
    /// escalation ran out) or, with no staff channels, after it passed.
    pub answered_after_escalation: Option<i64>,
    /// Not answered, and nobody left to ask: the staff escalation ran out
    /// (its last staff channel was asked) or, with no staff channels, the
    /// deadline passed; an answer since takes a reply out of it.
    pub unanswered: Option<i64>,
    /// received − answered − unanswered − cancelled − expired (not below
    /// 0): still waiting for an answer, or received before the range.
    pub open: Option<i64>,
    /// answered in time ÷ replies whose deadline is decided (answered in
    /// time, or the deadline passed).
    pub in_time_rate: Option<f64>,
    /// Time from the hand-over to the answer (wall clock), from the buckets.
    pub answer_p50_ms: Option<i64>,
    pub answer_p90_ms: Option<i64>,
    /// Answers by answer-time bucket (`1m` … `1d`, `more`).
    pub answer_time: BTreeMap<String, i64>,
}

impl ReplyRow {
    /// The counted columns in table order (received … open): `None` where
    /// the policy has no deadline to count against.
    pub fn counts(&self) -> [Option<i64>; 8] {
        [
            Some(self.received),
            Some(self.handed_over),
            Some(self.answered),
            self.answered_in_time,
            self.escalated,
            self.answered_after_escalation,
            self.unanswered,
            self.open,
        ]
    }
}

/// The counters of one row's staff cascades, summed.
#[derive(Default)]
struct Sums {
    accepted: i64,
    sent_first: i64,
    read_first: i64,
    read_later: i64,
    escalated_first: i64,
    exhausted_first: i64,
    /// Answers after the staff cascade ended, on step 0 and later steps.
    late_first: i64,
    late_later: i64,
    exhausted_later: i64,
    cancelled: i64,
    expired: i64,
    /// Anything counted on a staff step (step ≥ 1): there is a deadline.
    staff_steps: bool,
    answer_time: BTreeMap<String, i64>,
}

impl Sums {
    fn add(&mut self, step: Option<u8>, metric: &str, n: i64) {
        let first = step == Some(0);
        if step.is_some_and(|s| s > 0) {
            self.staff_steps = true;
        }
        match metric {
            "accepted" => self.accepted += n,
            "sent" if first => self.sent_first += n,
            "read" if first => self.read_first += n,
            "read" => self.read_later += n,
            "escalated" if first => self.escalated_first += n,
            "exhausted" if first => self.exhausted_first += n,
            "exhausted" => self.exhausted_later += n,
            ANSWERED_AFTER_END if first => self.late_first += n,
            ANSWERED_AFTER_END => self.late_later += n,
            "cancelled" => self.cancelled += n,
            "expired" => self.expired += n,
            m => {
                if let Some(bucket) = m.strip_prefix("answer:") {
                    *self.answer_time.entry(bucket.to_owned()).or_default() += n;
                }
            }
        }
    }

    fn row(self, policy: String, segment: Option<String>, configured: bool) -> ReplyRow {
        let deadline = configured || self.staff_steps || self.escalated_first > 0;
        let answered = self.read_first + self.read_later;
        let mut row = ReplyRow {
            policy,
            segment,
            deadline,
            received: self.accepted,
            handed_over: self.sent_first,
            answered,
            answer_p50_ms: percentile(&self.answer_time, 0.5),
            answer_p90_ms: percentile(&self.answer_time, 0.9),
            answer_time: self.answer_time,
            ..ReplyRow::default()
        };
        if deadline {
            // An answer on step 0 after the staff cascade ended came after
            // the deadline (a policy with no staff channels).
            let in_time = (self.read_first - self.late_first).max(0);
            let late = self.read_later + self.late_first;
            // Ran out, and not answered afterwards.
            let unanswered =
                (self.exhausted_first + self.exhausted_later - self.late_first - self.late_later)
                    .max(0);
            // The deadline passed: staff were asked, or there were none to ask.
            let missed = self.escalated_first + self.exhausted_first;
            let decided = in_time + missed;
            row.answered_in_time = Some(in_time);
            row.escalated = Some(self.escalated_first);
            row.answered_after_escalation = Some(late);
            row.unanswered = Some(unanswered);
            row.open = Some(
                (self.accepted - answered - unanswered - self.cancelled - self.expired).max(0),
            );
            row.in_time_rate = (decided > 0).then(|| in_time as f64 / decided as f64);
        }
        row
    }
}

/// The policy of the notifications a staff policy's replies answer.
fn replied_policy(staff: &str) -> &str {
    staff.strip_suffix(":answer").unwrap_or(staff)
}

/// The replies rows of `counters` for `q`: every staff policy's, or with
/// `q.policy` set (`P` or `P:answer`) those of `P`'s replies; by segment
/// when `q.by` has it.
pub fn build(counters: &BTreeMap<String, i64>, q: &Query<'_>) -> Vec<ReplyRow> {
    let by_segment = q.by.contains(&Dimension::Segment);
    let mut groups: BTreeMap<(String, Option<String>), Sums> = BTreeMap::new();
    for (field, &n) in counters {
        let Some((g, metric)) = parse_field(field) else {
            continue;
        };
        if !is_staff_policy(&g.policy) {
            continue;
        }
        let policy = replied_policy(&g.policy);
        if q.policy.is_some_and(|p| p != policy && p != g.policy) {
            continue;
        }
        let segment = by_segment.then(|| g.segment.clone());
        groups
            .entry((policy.to_owned(), segment))
            .or_default()
            .add(g.step, metric, n);
    }
    groups
        .into_iter()
        .map(|((policy, segment), sums)| {
            let configured = q.answer_deadlines.contains(&policy);
            sums.row(policy, segment, configured)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::report::field;

    /// policy, step, segment, metric, count (staff counters name no channel
    /// the replies table needs).
    type Counter<'a> = (&'a str, Option<u8>, &'a str, &'a str, i64);

    fn counters(list: &[Counter<'_>]) -> BTreeMap<String, i64> {
        list.iter()
            .map(|(p, s, seg, m, n)| (field(p, *s, "x", seg, m), *n))
            .collect()
    }

    fn query<'a>(
        policy: Option<&'a str>,
        by: &'a [Dimension],
        answer_deadlines: &'a BTreeSet<String>,
    ) -> Query<'a> {
        static NONE: std::sync::LazyLock<BTreeSet<String>> =
            std::sync::LazyLock::new(BTreeSet::new);
        Query {
            from_ms: 0,
            to_ms: 1,
            policy,
            by,
            sms_channels: &NONE,
            answer_deadlines,
        }
    }

    /// Ten replies to `dd`: 5 answered in time, 4 escalated (2 answered
    /// then, 1 unanswered, 1 still open), 1 still within its deadline.
    fn dd() -> Vec<Counter<'static>> {
        vec![
            ("dd:answer", None, "new", "accepted", 6),
            ("dd:answer", None, "vip", "accepted", 4),
            ("dd:answer", Some(0), "new", "sent", 6),
            ("dd:answer", Some(0), "vip", "sent", 4),
            ("dd:answer", Some(0), "new", "read", 3),
            ("dd:answer", Some(0), "vip", "read", 2),
            ("dd:answer", Some(0), "new", "escalated", 2),
            ("dd:answer", Some(0), "vip", "escalated", 2),
            ("dd:answer", Some(1), "new", "read", 1),
            ("dd:answer", Some(2), "vip", "read", 1),
            ("dd:answer", Some(2), "vip", "exhausted", 1),
            ("dd:answer", None, "new", "completed", 4),
            ("dd:answer", None, "vip", "completed", 3),
            // Answer times: 5 within 5m (2m..5m), 2 within 1h (30m..1h).
            ("dd:answer", None, "new", "answer:5m", 3),
            ("dd:answer", None, "vip", "answer:5m", 2),
            ("dd:answer", None, "new", "answer:1h", 1),
            ("dd:answer", None, "vip", "answer:1h", 1),
            // A customer's policy is not a reply's.
            ("dd", None, "new", "accepted", 100),
            ("dd", Some(0), "new", "read", 60),
        ]
    }

    #[test]
    fn replies_are_counted_by_the_policy_replied_to() {
        let c = counters(&dd());
        let deadlines = BTreeSet::from(["dd".to_owned()]);
        let rows = build(&c, &query(None, &[Dimension::Policy], &deadlines));
        assert_eq!(rows.len(), 1, "{rows:?}");
        let r = &rows[0];
        assert_eq!((r.policy.as_str(), r.segment.as_deref()), ("dd", None));
        assert!(r.deadline);
        assert_eq!((r.received, r.handed_over, r.answered), (10, 10, 7));
        assert_eq!(r.answered_in_time, Some(5));
        assert_eq!(r.escalated, Some(4));
        assert_eq!(r.answered_after_escalation, Some(2));
        assert_eq!(r.unanswered, Some(1));
        // 10 − 7 answered − 1 unanswered.
        assert_eq!(r.open, Some(2));
        // 5 in time of 9 decided (5 in time, 4 missed).
        assert_eq!(r.in_time_rate, Some(5.0 / 9.0));
        // The 3.5th of 7 answers: 2m + 0.7 × 3m; the 6.3rd: 30m + 0.65 × 30m.
        assert_eq!(r.answer_p50_ms, Some(246_000));
        assert_eq!(r.answer_p90_ms, Some(2_970_000));
        assert_eq!(r.answer_time.get("1h"), Some(&2));
    }

    #[test]
    fn an_answer_after_the_staff_cascade_ran_out_is_late_not_unanswered() {
        let c = counters(&[
            // x: 3 replies, 1 in time; 2 ran out, one of them answered later.
            ("x:answer", None, "-", "accepted", 3),
            ("x:answer", Some(0), "-", "sent", 3),
            ("x:answer", Some(0), "-", "read", 1),
            ("x:answer", Some(0), "-", "escalated", 2),
            ("x:answer", Some(1), "-", "exhausted", 2),
            ("x:answer", Some(1), "-", "read", 1),
            ("x:answer", Some(1), "-", "answered_after_end", 1),
            // y, no staff channels: 2 replies past the deadline, one
            // answered afterwards.
            ("y:answer", None, "-", "accepted", 2),
            ("y:answer", Some(0), "-", "sent", 2),
            ("y:answer", Some(0), "-", "exhausted", 2),
            ("y:answer", Some(0), "-", "read", 1),
            ("y:answer", Some(0), "-", "answered_after_end", 1),
        ]);
        let deadlines = BTreeSet::from(["x".to_owned(), "y".to_owned()]);
        let rows = build(&c, &query(None, &[], &deadlines));
        let x = &rows[0];
        assert_eq!(x.answered, 2);
        assert_eq!(
            (
                x.answered_in_time,
                x.answered_after_escalation,
                x.unanswered,
                x.open
            ),
            (Some(1), Some(1), Some(1), Some(0))
        );
        assert_eq!(x.in_time_rate, Some(1.0 / 3.0));
        let y = &rows[1];
        assert_eq!(
            (
                y.answered_in_time,
                y.answered_after_escalation,
                y.unanswered,
                y.open
            ),
            (Some(0), Some(1), Some(1), Some(0))
        );
        assert_eq!(y.in_time_rate, Some(0.0));
    }

    #[test]
    fn by_segment_when_asked_and_only_the_policy_asked_for() {
        let mut list = dd();
        list.push(("other:answer", None, "new", "accepted", 3));
        let c = counters(&list);
        let none = BTreeSet::new();
        let by = [Dimension::Policy, Dimension::Segment];
        let rows = build(&c, &query(None, &by, &none));
        let keys: Vec<_> = rows
            .iter()
            .map(|r| (r.policy.as_str(), r.segment.as_deref().unwrap()))
            .collect();
        assert_eq!(keys, [("dd", "new"), ("dd", "vip"), ("other", "new")]);
        let vip = &rows[1];
        assert_eq!((vip.received, vip.answered), (4, 3));
        assert_eq!(vip.unanswered, Some(1));
        assert_eq!(vip.open, Some(0));
        // The escalations show a deadline the configuration no longer has.
        assert!(vip.deadline);
        for asked in ["dd", "dd:answer"] {
            let rows = build(&c, &query(Some(asked), &by, &none));
            assert!(rows.iter().all(|r| r.policy == "dd"), "{asked}: {rows:?}");
            assert_eq!(rows.len(), 2);
        }
    }

    #[test]
    fn without_a_deadline_only_received_handed_over_and_answered_count() {
        // Each staff cascade ends `exhausted` right after the hand-over.
        let c = counters(&[
            ("plain:answer", None, "-", "accepted", 4),
            ("plain:answer", Some(0), "-", "sent", 4),
            ("plain:answer", Some(0), "-", "exhausted", 3),
            ("plain:answer", Some(0), "-", "read", 1),
            ("plain:answer", None, "-", "answer:1m", 1),
        ]);
        let none = BTreeSet::new();
        let rows = build(&c, &query(None, &[], &none));
        let r = &rows[0];
        assert!(!r.deadline);
        assert_eq!((r.received, r.handed_over, r.answered), (4, 4, 1));
        assert_eq!(r.answer_p50_ms, Some(30_000));
        assert_eq!(
            (r.answered_in_time, r.escalated, r.unanswered, r.open),
            (None, None, None, None),
            "a hand-over is no missed deadline"
        );
        assert_eq!(r.in_time_rate, None);
        // The same counters with a deadline configured and no staff
        // channels: the exhausted ones missed it.
        let deadlines = BTreeSet::from(["plain".to_owned()]);
        let r = &build(&c, &query(None, &[], &deadlines))[0];
        assert_eq!((r.unanswered, r.open), (Some(3), Some(0)));
        assert_eq!(r.in_time_rate, Some(0.25));
    }
}
