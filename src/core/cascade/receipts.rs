//! Receipts: a stopping receipt ends the cascade, a branch word moves it
//! to the step the waiting step names for it, a `failed` report
//! escalates. (A read just after an escalation is noted as late by the
//! report's tally, which sees the channel each receipt came on.)

use super::super::policy::{CANCELLED, FAILED};
use super::run::Run;
use super::{Branch, EntryKind, Outcome, Phase};

impl<'a> Run<'_, 'a> {
    /// The first stopping receipt recorded, if any (`cancelled` first).
    pub(super) fn receipt_stops(&self) -> Option<(&'a str, i64)> {
        let receipts = self.ctx.receipts;
        if let Some((k, &at)) = receipts.get_key_value(CANCELLED) {
            return Some((k.as_str(), at));
        }
        let branches = self
            .ctx
            .policy
            .steps
            .get(self.cascade.step as usize)
            .map(|s| &s.on);
        receipts
            .iter()
            .filter(|(event, _)| self.ctx.policy.stops_on(event))
            // A word the current step branches on follows the branch here.
            .filter(|(event, _)| branches.is_none_or(|on| !on.contains_key(*event)))
            .filter(|(event, at)| !self.spent(event, **at))
            .min_by_key(|(_, at)| **at)
            .map(|(k, &at)| (k.as_str(), at))
    }

    /// Is this receipt spent by the branches taken: a word some step
    /// branches on, recorded no later than the receipt of the latest branch?
    /// It either moved the cascade then, or came while no step could take
    /// it; either way it neither branches nor stops again.
    fn spent(&self, event: &str, at_ms: i64) -> bool {
        self.cascade.branch.as_ref().is_some_and(|b| {
            at_ms <= b.receipt_ms && (b.word == event || self.ctx.policy.branches_on(event))
        })
    }

    /// The branch the waiting step takes on the receipts recorded since it
    /// went out, if any: the earliest such receipt (word order breaks a tie).
    fn branch_due(&self) -> Option<(&'a str, i64, u8)> {
        let Phase::Waiting { sent_ms, .. } = &self.cascade.phase else {
            return None;
        };
        let on = &self.ctx.policy.steps.get(self.cascade.step as usize)?.on;
        on.iter()
            .filter_map(|(word, &to)| {
                let (k, &at) = self.ctx.receipts.get_key_value(word)?;
                (at >= *sent_ms && !self.spent(word, at)).then_some((k.as_str(), at, to))
            })
            .min_by_key(|&(_, at, _)| at)
    }

    /// Moves the cascade to step `to` at once on receipt `word`, as a
    /// transition of its own (bounded like every other).
    fn take_branch(&mut self, word: &str, receipt_ms: i64, to: u8) {
        let from = self.cascade.step;
        self.note(
            EntryKind::Escalated,
            Some(from),
            None,
            Some(&format!("on {word}")),
        );
        self.cascade.branch = Some(Branch {
            word: word.to_owned(),
            receipt_ms,
            here: true,
        });
        self.cascade.transitions = self.cascade.transitions.saturating_add(1);
        if self.cascade.transitions > self.ctx.timing.max_transitions {
            self.done(Outcome::Exhausted, Some("transition_limit"));
            return;
        }
        self.cascade.step = to;
        self.cascade.alt = 0;
        self.cascade.failures = 0;
        self.cascade.phase = Phase::Due { at_ms: self.now_ms };
        self.advance();
    }

    /// Applies the receipts hash. Returns true when the cascade is now done.
    pub(super) fn check_receipts(&mut self) -> bool {
        if let Some((event, _)) = self.receipt_stops() {
            if event == CANCELLED {
                self.done(Outcome::Cancelled, None);
            } else {
                self.done(
                    Outcome::Completed {
                        event: event.to_owned(),
                    },
                    None,
                );
            }
            return true;
        }
        if let Some((word, at, to)) = self.branch_due() {
            self.take_branch(word, at, to);
            return self.cascade.is_done();
        }
        // A `failed` report for the step now waiting escalates at once.
        if let (
            Some(&failed_ms),
            Phase::Waiting {
                channel, sent_ms, ..
            },
        ) = (self.ctx.receipts.get(FAILED), &self.cascade.phase)
            && failed_ms >= *sent_ms
            && self.cascade.handled_failed_ms.is_none_or(|h| failed_ms > h)
        {
            let channel = channel.clone();
            self.cascade.handled_failed_ms = Some(failed_ms);
            let step = self.cascade.step;
            self.note(
                EntryKind::SendFailed,
                Some(step),
                Some(&channel),
                Some("failed receipt"),
            );
            self.next_alternative("failed");
        }
        self.cascade.is_done()
    }
}
