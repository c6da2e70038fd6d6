//! Moving through the policy: the step's alternatives in the customer's
//! order, past unreachable channels and quiet hours, to a send or a wait.

use super::super::policy::WaitClock;
use super::super::quiet::QuietHours;
use super::run::Run;
use super::{Entry, EntryKind, Outcome, Phase, SendOrder, alternatives, unreachable};

impl<'a> Run<'_, 'a> {
    /// The current step's alternatives, in the customer's preference order.
    pub(super) fn alternatives(&self, step: usize) -> Vec<&'a str> {
        alternatives(self.ctx, step)
    }

    pub(super) fn unreachable(&self, channel: &str) -> Option<&'static str> {
        unreachable(channel, self.ctx.channels, self.ctx.recipient)
    }

    pub(super) fn quiet_hours(&self, channel: &str) -> Option<QuietHours> {
        let kind = self.ctx.channels.get(channel).map(|r| r.kind);
        self.ctx.policy.quiet_hours_for(channel, kind)
    }

    /// Tries the current step and alternative, moving past unreachable ones,
    /// until a send is ordered, the step is deferred, or the cascade ends.
    pub(super) fn advance(&mut self) {
        let steps = self.ctx.policy.steps.len();
        // Each turn moves past one alternative or one step.
        for _ in 0..=(steps * 16 + 16) {
            if self.expired() {
                return;
            }
            let step = self.cascade.step as usize;
            if step >= steps {
                self.done(Outcome::Exhausted, Some("no_more_steps"));
                return;
            }
            let alts = self.alternatives(step);
            let Some(&channel) = alts.get(self.cascade.alt as usize) else {
                self.next_step("unreachable");
                if self.cascade.is_done() {
                    return;
                }
                continue;
            };
            if let Some(why) = self.unreachable(channel) {
                self.note(
                    EntryKind::Skipped,
                    Some(step as u8),
                    Some(channel),
                    Some(why),
                );
                self.cascade.alt += 1;
                self.cascade.failures = 0;
                continue;
            }
            if let Some(q) = self.quiet_hours(channel)
                && q.is_quiet(self.now_ms, &self.ctx.recipient.tz)
            {
                let until = q.quiet_end_after(self.now_ms, &self.ctx.recipient.tz);
                self.entry(Entry {
                    until_ms: Some(until),
                    ..self.blank(
                        EntryKind::Deferred,
                        Some(step as u8),
                        Some(channel),
                        Some("quiet_hours"),
                    )
                });
                self.cascade.phase = Phase::Due { at_ms: until };
                return;
            }
            self.cascade.phase = Phase::InFlight {
                channel: channel.to_owned(),
                deadline_ms: self
                    .now_ms
                    .saturating_add(self.ctx.timing.in_flight_timeout_ms),
            };
            self.send = Some(SendOrder {
                step: step as u8,
                channel: channel.to_owned(),
                attempt: self.cascade.failures.saturating_add(1),
            });
            return;
        }
        self.done(Outcome::Exhausted, Some("transition_limit"));
    }

    /// Leaves the current step for the next one (or ends the cascade).
    pub(super) fn next_step(&mut self, why: &str) {
        // Past expiry there is no next step to take (a `failed` receipt seen
        // at expiry would otherwise exhaust the cascade instead).
        if self.expired() {
            return;
        }
        let here = self.cascade.step as usize;
        let next = match self.ctx.policy.steps.get(here) {
            Some(s) if s.is_final => None,
            _ => self.ctx.policy.after_wait(here),
        };
        let Some(next) = next.filter(|&n| n < self.ctx.policy.steps.len()) else {
            self.done(Outcome::Exhausted, Some(why));
            return;
        };
        if let Some(b) = &mut self.cascade.branch {
            b.here = false;
        }
        self.cascade.step = next as u8;
        self.cascade.alt = 0;
        self.cascade.failures = 0;
        self.note(EntryKind::Escalated, Some(next as u8), None, Some(why));
        self.cascade.phase = Phase::Due { at_ms: self.now_ms };
        self.advance();
    }

    /// The current alternative failed for good: try the step's next one.
    pub(super) fn next_alternative(&mut self, _why: &str) {
        self.cascade.alt += 1;
        self.cascade.failures = 0;
        self.cascade.phase = Phase::Due { at_ms: self.now_ms };
        // `advance` escalates with reason "unreachable" when no alternative is
        // left; a failure is more precise, so check first.
        let alts = self.alternatives(self.cascade.step as usize).len();
        if self.cascade.alt as usize >= alts {
            self.next_step("failed");
        } else {
            self.advance();
        }
    }

    /// The step is out: wait for a stopping receipt.
    pub(super) fn start_wait(&mut self, step: u8, channel: String) {
        let Some(def) = self.ctx.policy.steps.get(step as usize) else {
            self.done(Outcome::Exhausted, Some("no_more_steps"));
            return;
        };
        if def.is_final {
            // Reached by a branch, the step is the follow-up of the receipt
            // that led here; otherwise it ends the cascade as a last step.
            match self.cascade.branch.as_ref().filter(|b| b.here) {
                Some(b) => {
                    let event = b.word.clone();
                    self.done(Outcome::Completed { event }, None);
                }
                None => self.done(Outcome::Exhausted, Some("final")),
            }
            return;
        }
        let wait_ms = def.wait_ms.unwrap_or(0);
        let mut until_ms = self.now_ms.saturating_add(wait_ms);
        if def.wait_clock == WaitClock::Awake
            && let Some(q) = self
                .first_reachable(step as usize)
                .and_then(|next| self.quiet_hours(next))
                .or(self.ctx.policy.awake_hours)
        {
            until_ms = q.awake_deadline(self.now_ms, wait_ms, &self.ctx.recipient.tz);
        }
        self.cascade.phase = Phase::Waiting {
            channel,
            sent_ms: self.now_ms,
            until_ms,
        };
        if until_ms <= self.now_ms {
            self.next_step("unread");
        }
    }

    /// The channel the steps after `step`'s wait would use, for the awake
    /// wait clock: the first reachable one along the wait's way on.
    pub(super) fn first_reachable(&self, step: usize) -> Option<&'a str> {
        let policy = self.ctx.policy;
        let mut at = policy.after_wait(step);
        // The way on is acyclic in a checked policy; bound it regardless.
        for _ in 0..policy.steps.len() {
            let s = at?;
            if let Some(ch) = self
                .alternatives(s)
                .into_iter()
                .find(|ch| self.unreachable(ch).is_none())
            {
                return Some(ch);
            }
            if policy.steps.get(s).is_none_or(|d| d.is_final) {
                return None;
            }
            at = policy.after_wait(s);
        }
        None
    }
}
