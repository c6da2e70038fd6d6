//! What one stored decision adds to the report's counters: a pure function
//! of the cascade's timeline.
//!
//! Each decision the daemon stores counts the timeline entries nobody has
//! counted yet: the receipts recorded since the cascade's last decision,
//! then the decision's own entries. The counts are stored in the same
//! script call as the decision (runtime/store), so what the report says is
//! what the timelines say.
//!
//! Reads are counted once per notification: its first stopping receipt
//! (`read`, `opened`, … but not `cancelled`), on the step and channel of
//! the message it answers — the receipt's own channel when its source told
//! it, else the latest message sent before it — with the time from that
//! message to the read. A read that answers an *earlier* step's message
//! within the late-read window after a later step went out is a late read
//! of that later step: its escalation may not have been needed.

use std::collections::BTreeMap;

use crate::core::policy::CANCELLED;
use crate::core::{Cascade, Entry, EntryKind, Phase, Policy};

/// The upper bounds of the time-to-read buckets, with their names; a read
/// later than the last is counted in `more`.
pub const TTR_BUCKETS: [(i64, &str); 11] = [
    (60_000, "1m"),
    (120_000, "2m"),
    (300_000, "5m"),
    (600_000, "10m"),
    (900_000, "15m"),
    (1_800_000, "30m"),
    (3_600_000, "1h"),
    (7_200_000, "2h"),
    (21_600_000, "6h"),
    (43_200_000, "12h"),
    (86_400_000, "1d"),
];

/// A staff cascade's answer recorded after it ended (`report::replies`),
/// counted on the step and channel of the answer's read.
pub const ANSWERED_AFTER_END: &str = "answered_after_end";

/// The bucket past the last bound.
pub const TTR_MORE: &str = "more";

/// Receipt words counted under their own name; any other is `other`.
pub const RECEIPT_WORDS: [&str; 8] = [
    "delivered",
    "read",
    "opened",
    "clicked",
    "replied",
    "failed",
    "cancelled",
    "answered",
];

/// Money is counted in thousandths of the channels' `cost` unit, so that
/// Redis adds integers.
pub const MONEY_SCALE: f64 = 1000.0;

/// One counter to add to: the step and channel it is about (the policy,
/// segment and hour are the same for every count of one decision) and the
/// metric.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Count {
    pub step: Option<u8>,
    pub channel: String,
    pub metric: String,
    pub n: i64,
}

/// What the tally needs to know besides the entries.
pub struct Tally<'a> {
    pub policy: &'a Policy,
    /// The entries counted before.
    pub counted: &'a [Entry],
    /// The entries to count, in timeline order: receipts recorded since the
    /// last decision, then the decision's own.
    pub fresh: &'a [Entry],
    /// The state the decision was made on.
    pub before: &'a Cascade,
    /// The receipts hash (word → ms), for a stopping receipt written into
    /// it directly, which leaves no timeline entry.
    pub receipts: &'a BTreeMap<String, i64>,
    pub late_read_window_ms: i64,
    /// The price of one message of this notification on a channel (SMS
    /// segments included), when the channel states one.
    pub price: &'a dyn Fn(&str) -> Option<f64>,
    /// The channel a step would have gone out on (its first alternative
    /// the customer can be reached on), for the money a read saved.
    pub would_use: &'a dyn Fn(usize) -> Option<String>,
    /// When the decision is made (the time of the late-read entries).
    pub now_ms: i64,
}

/// The counts, and the `late_read` entries to add to the timeline.
#[derive(Debug, Default, PartialEq)]
pub struct Tallied {
    pub counts: Vec<Count>,
    pub late_reads: Vec<Entry>,
}

impl Tallied {
    fn add(&mut self, step: Option<u8>, channel: &str, metric: impl Into<String>, n: i64) {
        if n != 0 {
            self.counts.push(Count {
                step,
                channel: channel.to_owned(),
                metric: metric.into(),
                n,
            });
        }
    }

    fn money(&mut self, step: Option<u8>, channel: &str, metric: &str, amount: Option<f64>) {
        if let Some(a) = amount {
            self.add(step, channel, metric, (a * MONEY_SCALE).round() as i64);
        }
    }
}

/// The name of the time-to-read bucket of `ms`.
pub fn ttr_bucket(ms: i64) -> &'static str {
    TTR_BUCKETS
        .iter()
        .find(|(bound, _)| ms <= *bound)
        .map_or(TTR_MORE, |(_, name)| name)
}

/// Whether an entry recorded a stopping receipt other than `cancelled`.
fn is_read(policy: &Policy, e: &Entry) -> bool {
    e.event == EntryKind::Receipt
        && e.reason
            .as_deref()
            .is_some_and(|w| w != CANCELLED && policy.stops_on(w))
}

impl Tally<'_> {
    /// The entry at timeline position `i` (counted ones first).
    fn at(&self, i: usize) -> &Entry {
        if i < self.counted.len() {
            &self.counted[i]
        } else {
            &self.fresh[i - self.counted.len()]
        }
    }

    /// The latest message sent before position `pos` that matches.
    fn sent_before(&self, pos: usize, matches: impl Fn(&Entry) -> bool) -> Option<&Entry> {
        (0..pos)
            .rev()
            .map(|i| self.at(i))
            .find(|e| e.event == EntryKind::Sent && matches(e))
    }

    /// The step of the latest send, failure, skip or deferral before `pos`.
    fn step_before(&self, pos: usize) -> Option<u8> {
        (0..pos)
            .rev()
            .map(|i| self.at(i))
            .find(|e| {
                matches!(
                    e.event,
                    EntryKind::Sent
                        | EntryKind::Uncertain
                        | EntryKind::SendFailed
                        | EntryKind::Skipped
                        | EntryKind::Deferred
                ) && e.step.is_some()
            })
            .and_then(|e| e.step)
    }

    /// The message a receipt at `pos` answers: the latest sent before it
    /// on its channel (or on any, when it names none); failing that, the
    /// first sent after it in this decision — a receipt recorded while its
    /// message's send was out lands in the timeline before the send's
    /// entry. `None` when nothing was sent.
    fn message_read(&self, pos: usize, channel: Option<&str>) -> Option<&Entry> {
        let on = |e: &Entry| channel.is_none_or(|c| e.channel.as_deref() == Some(c));
        let after = |m: &dyn Fn(&Entry) -> bool| {
            (pos + 1..self.counted.len() + self.fresh.len())
                .map(|i| self.at(i))
                .find(|e| e.event == EntryKind::Sent && m(e))
        };
        self.sent_before(pos, on)
            .or_else(|| after(&on))
            .or_else(|| self.sent_before(pos, |_| true))
            .or_else(|| after(&|_| true))
    }

    pub fn run(&self) -> Tallied {
        let mut out = Tallied::default();
        let mut read_counted = self
            .counted
            .iter()
            .any(|e| is_read(self.policy, e) || e.event == EntryKind::Completed);
        for (i, e) in self.fresh.iter().enumerate() {
            let pos = self.counted.len() + i;
            let channel = e.channel.as_deref().unwrap_or("");
            match e.event {
                EntryKind::Accepted => out.add(None, "", "accepted", 1),
                EntryKind::Sent => {
                    out.add(e.step, channel, "sent", 1);
                    out.money(e.step, channel, "cost", (self.price)(channel));
                }
                // A retry is not a failure of the step yet.
                EntryKind::SendFailed if e.until_ms.is_none() => {
                    out.add(e.step, channel, "failed", 1)
                }
                EntryKind::Uncertain => out.add(e.step, channel, "uncertain", 1),
                EntryKind::Skipped => {
                    let reason = e.reason.as_deref().unwrap_or("other");
                    out.add(e.step, channel, format!("skipped:{reason}"), 1);
                }
                EntryKind::Escalated => {
                    // Counted on the step left, on the channel it was sent on.
                    // A branch (`on <word>`) is noted on the step it left;
                    // any other escalation on the step it moved to.
                    let branch = e.reason.as_deref().is_some_and(|r| r.starts_with("on "));
                    let from = if branch {
                        e.step
                    } else if self
                        .policy
                        .steps
                        .iter()
                        .any(|s| s.next.is_some() || !s.on.is_empty())
                    {
                        // A `next`, or falling through past steps only a
                        // branch leads to, may jump: the step left is the
                        // one the cascade last did something on.
                        self.step_before(pos)
                    } else {
                        e.step.and_then(|s| s.checked_sub(1))
                    };
                    let sent = self.sent_before(pos, |s| s.step == from);
                    let ch = sent.and_then(|s| s.channel.as_deref()).unwrap_or("");
                    out.add(from, ch, "escalated", 1);
                }
                EntryKind::Receipt => {
                    let word = e.reason.as_deref().unwrap_or("");
                    let (step, ch) = self.answered(pos, e.channel.as_deref());
                    let named = RECEIPT_WORDS.contains(&word);
                    out.add(
                        step,
                        &ch,
                        format!("receipt:{}", if named { word } else { "other" }),
                        1,
                    );
                    if !read_counted && is_read(self.policy, e) {
                        read_counted = true;
                        self.read(&mut out, pos, e.at_ms, e.channel.as_deref());
                    }
                }
                EntryKind::Completed => {
                    out.add(e.step, "", "completed", 1);
                    // A `final` step reached by a branch completes with the
                    // branch's word (`called`): a verdict that led to the
                    // follow-up, not a read, and nothing was saved by it.
                    let word = e.reason.as_deref().unwrap_or("");
                    if !self.policy.stops_on(word) {
                        continue;
                    }
                    if !read_counted {
                        // A stopping receipt written straight into the
                        // receipts hash: no entry tells its channel.
                        read_counted = true;
                        let word = e.reason.as_deref().unwrap_or("");
                        let at = self.receipts.get(word).copied().unwrap_or(e.at_ms);
                        self.read(&mut out, pos, at, None);
                    }
                    self.saved(&mut out);
                }
                EntryKind::Exhausted | EntryKind::Expired | EntryKind::Cancelled => {
                    out.add(e.step, "", e.event.as_str(), 1)
                }
                _ => {}
            }
        }
        out
    }

    /// The step and channel of the message a receipt at `pos` answers
    /// (`message_read`). With none, the cascade's step and no channel: a
    /// receipt's own channel word is never a counter's (it comes from
    /// outside; only a send's channel is one of the configuration's).
    fn answered(&self, pos: usize, channel: Option<&str>) -> (Option<u8>, String) {
        match self.message_read(pos, channel) {
            Some(s) => (s.step, s.channel.clone().unwrap_or_default()),
            None => (Some(self.before.step), String::new()),
        }
    }

    /// The notification's read, at `at_ms`, answering the message before
    /// `pos` (on `channel` when known): its time to read, and a late read
    /// when it answers an earlier step than the latest sent.
    fn read(&self, out: &mut Tallied, pos: usize, at_ms: i64, channel: Option<&str>) {
        let Some(msg) = self.message_read(pos, channel) else {
            // Read before anything went out (a receipt before the first send).
            out.add(Some(self.before.step), "", "read", 1);
            return;
        };
        let ch = msg.channel.as_deref().unwrap_or("");
        out.add(msg.step, ch, "read", 1);
        let ttr = at_ms.saturating_sub(msg.at_ms).max(0);
        out.add(msg.step, ch, format!("ttr:{}", ttr_bucket(ttr)), 1);
        // A staff cascade's answer time counts from the reply: when the
        // reply was handed over (its first step's send), on no step.
        if crate::core::replies::is_staff_policy(&self.policy.name)
            && let Some(handed) = self.sent_before(pos, |s| s.step == Some(0))
        {
            let answer_ms = at_ms.saturating_sub(handed.at_ms).max(0);
            out.add(None, "", format!("answer:{}", ttr_bucket(answer_ms)), 1);
            // An answer after the staff cascade ended (its last staff
            // channel asked, or the deadline passed with none): the reply
            // counted as run out is answered after all.
            let ended = (0..pos).map(|i| self.at(i)).any(|e| {
                matches!(
                    e.event,
                    EntryKind::Exhausted | EntryKind::Expired | EntryKind::Cancelled
                )
            });
            if ended {
                out.add(msg.step, ch, ANSWERED_AFTER_END, 1);
            }
        }
        let later = self.sent_before(pos, |s| s.step > msg.step);
        if let Some(esc) = later
            && at_ms >= esc.at_ms
            && at_ms.saturating_sub(esc.at_ms) <= self.late_read_window_ms
        {
            let esc_ch = esc.channel.clone().unwrap_or_default();
            out.add(esc.step, &esc_ch, "late_read", 1);
            out.late_reads.push(Entry {
                at_ms: self.now_ms,
                event: EntryKind::LateRead,
                step: esc.step,
                channel: esc.channel.clone(),
                // Steps counted from 1, as `status` prints them.
                reason: Some(format!(
                    "read of step {}",
                    u16::from(msg.step.unwrap_or(0)) + 1
                )),
                until_ms: None,
                provider_message_id: None,
            });
        }
    }

    /// The steps a read made unneeded: those not sent when the cascade
    /// completed, on the channel each would have used, and their price.
    /// They are the steps the cascade would have gone on to with nobody
    /// reading: each wait's end leads to the next (`Policy::after_wait`,
    /// which skips steps only a branch leads to), up to a `final` step.
    fn saved(&self, out: &mut Tallied) {
        let policy = self.policy;
        let mut step = match &self.before.phase {
            Phase::Due { .. } => Some(self.before.step as usize),
            Phase::InFlight { .. } | Phase::Waiting { .. } => {
                policy.after_wait(self.before.step as usize)
            }
            Phase::Done { .. } => return,
        };
        // `check` refuses ways on that come round; the bound is for safety.
        for _ in 0..policy.steps.len() {
            let Some(s) = step.filter(|&s| s < policy.steps.len()) else {
                return;
            };
            if let Some(ch) = (self.would_use)(s) {
                out.add(Some(s as u8), &ch, "avoided", 1);
                out.money(Some(s as u8), &ch, "saved", (self.price)(&ch));
            }
            if policy.steps[s].is_final {
                return;
            }
            step = policy.after_wait(s);
        }
    }
}

#[cfg(test)]
mod tests;
