//! One decision in progress: the state being changed, the send ordered and
//! the entries noted, and the dispatch of an event to its handling.

use super::{
    Cascade, Context, Decision, Entry, EntryKind, Event, Outcome, Phase, SendOrder, SendOutcome,
};

/// One decision in progress.
pub(super) struct Run<'c, 'a> {
    pub(super) cascade: Cascade,
    pub(super) now_ms: i64,
    pub(super) ctx: &'c Context<'a>,
    pub(super) send: Option<SendOrder>,
    pub(super) entries: Vec<Entry>,
}

impl<'c, 'a> Run<'c, 'a> {
    pub(super) fn new(cascade: Cascade, now_ms: i64, ctx: &'c Context<'a>) -> Self {
        Run {
            cascade,
            now_ms,
            ctx,
            send: None,
            entries: Vec::new(),
        }
    }

    pub(super) fn finish(self) -> Decision {
        Decision {
            cascade: self.cascade,
            send: self.send,
            entries: self.entries,
        }
    }

    pub(super) fn handle(&mut self, event: Event) {
        if self.cascade.is_done() {
            self.after_done(&event);
            return;
        }
        // A timer that fires early (clock skew between instances, a stale
        // wake-up) changes nothing — but receipts still apply: recording one
        // wakes the cascade this way, so it completes (or escalates on `failed`)
        // at once rather than when its wait runs out.
        if event == Event::TimerDue && self.cascade.wake_at_ms().is_some_and(|at| at > self.now_ms)
        {
            self.check_receipts();
            return;
        }
        self.cascade.transitions = self.cascade.transitions.saturating_add(1);
        if self.cascade.transitions > self.ctx.timing.max_transitions {
            self.done(Outcome::Exhausted, Some("transition_limit"));
            return;
        }
        // Receipts first: a stopping receipt beats everything else, including a
        // send result, so nothing further goes out once it is recorded.
        if let Event::SendResult {
            step,
            channel,
            outcome: SendOutcome::Sent {
                provider_message_id,
            },
        } = &event
            && self.in_flight_matches(*step, channel)
            && self.receipt_stops().is_some()
        {
            // The send did happen; record it before closing the cascade.
            self.entry(Entry {
                provider_message_id: provider_message_id.clone(),
                ..self.blank(EntryKind::Sent, Some(*step), Some(channel), None)
            });
        }
        let handled_failed_ms = self.cascade.handled_failed_ms;
        let branch = self.cascade.branch.clone();
        if self.check_receipts() || self.expired() {
            return;
        }
        // A `failed` receipt or a branch just moved the cascade on (and maybe
        // ordered a send): the event was meant for the step it left, so it is
        // spent. A timer would otherwise take that new send for an
        // interrupted one.
        if self.cascade.handled_failed_ms != handled_failed_ms || self.cascade.branch != branch {
            return;
        }
        match event {
            Event::TimerDue => self.timer_due(),
            Event::SendResult {
                step,
                channel,
                outcome,
            } => {
                if self.in_flight_matches(step, &channel) {
                    self.send_result(step, channel, outcome);
                }
            }
            Event::LimitBlocked {
                step,
                channel,
                not_before_ms,
            } => {
                if self.in_flight_matches(step, &channel) {
                    self.limit_blocked(step, channel, not_before_ms);
                }
            }
            Event::Throttled {
                step,
                channel,
                not_before_ms,
            } => {
                if self.in_flight_matches(step, &channel) {
                    self.defer(step, &channel, not_before_ms, "rate");
                }
            }
            Event::ReceiptsChanged | Event::ClaimLapsed { .. } => {}
        }
    }

    pub(super) fn blank(
        &self,
        event: EntryKind,
        step: Option<u8>,
        channel: Option<&str>,
        reason: Option<&str>,
    ) -> Entry {
        Entry {
            at_ms: self.now_ms,
            event,
            step,
            channel: channel.map(str::to_owned),
            reason: reason.map(str::to_owned),
            until_ms: None,
            provider_message_id: None,
        }
    }

    pub(super) fn entry(&mut self, entry: Entry) {
        self.entries.push(entry);
    }

    pub(super) fn note(
        &mut self,
        event: EntryKind,
        step: Option<u8>,
        channel: Option<&str>,
        reason: Option<&str>,
    ) {
        let e = self.blank(event, step, channel, reason);
        self.entries.push(e);
    }

    pub(super) fn done(&mut self, outcome: Outcome, reason: Option<&str>) {
        let kind = match outcome {
            Outcome::Completed { .. } => EntryKind::Completed,
            Outcome::Exhausted => EntryKind::Exhausted,
            Outcome::Expired => EntryKind::Expired,
            Outcome::Cancelled => EntryKind::Cancelled,
        };
        let reason = match (&outcome, reason) {
            (Outcome::Completed { event }, None) => Some(event.clone()),
            (_, r) => r.map(str::to_owned),
        };
        let step = Some(self.cascade.step);
        self.entry(Entry {
            reason,
            ..self.blank(kind, step, None, None)
        });
        self.cascade.phase = Phase::Done {
            outcome,
            at_ms: self.now_ms,
        };
    }

    pub(super) fn in_flight_matches(&self, step: u8, channel: &str) -> bool {
        matches!(&self.cascade.phase, Phase::InFlight { channel: c, .. } if c == channel)
            && self.cascade.step == step
    }

    /// A finished cascade only ever notes a send that was already in
    /// flight when it finished.
    pub(super) fn after_done(&mut self, event: &Event) {
        if let Event::SendResult {
            step,
            channel,
            outcome: SendOutcome::Sent {
                provider_message_id,
            },
        } = event
        {
            self.entry(Entry {
                provider_message_id: provider_message_id.clone(),
                ..self.blank(
                    EntryKind::Sent,
                    Some(*step),
                    Some(channel),
                    Some("after_done"),
                )
            });
        }
    }

    pub(super) fn expired(&mut self) -> bool {
        if self.cascade.expires_at_ms.is_some_and(|x| x <= self.now_ms) {
            self.done(Outcome::Expired, None);
            return true;
        }
        false
    }

    pub(super) fn timer_due(&mut self) {
        match self.cascade.phase.clone() {
            Phase::Due { .. } => self.advance(),
            Phase::InFlight { channel, .. } => {
                let step = self.cascade.step;
                self.uncertain_send(
                    step,
                    channel,
                    "interrupted: no outcome before the in-flight deadline",
                )
            }
            Phase::Waiting { .. } => self.next_step("unread"),
            Phase::Done { .. } => {}
        }
    }
}
