//! What a send came to: retry with backoff, move on, wait for a rate
//! limit, or treat an uncertain send as the channel's `on_uncertain` says.

use super::super::policy::{OnLimit, OnUncertain};
use super::run::Run;
use super::{Entry, EntryKind, Phase, SendOutcome};

impl<'a> Run<'_, 'a> {
    pub(super) fn send_result(&mut self, step: u8, channel: String, outcome: SendOutcome) {
        match outcome {
            SendOutcome::Sent {
                provider_message_id,
            } => {
                self.entry(Entry {
                    provider_message_id,
                    ..self.blank(EntryKind::Sent, Some(step), Some(&channel), None)
                });
                self.start_wait(step, channel);
            }
            SendOutcome::Transient {
                reason,
                retry_after_ms,
            } => self.retry_or_give_up(step, channel, &reason, retry_after_ms.unwrap_or(0)),
            SendOutcome::RateLimited { retry_after_ms } => {
                self.retry_or_give_up(step, channel, "rate_limited", retry_after_ms)
            }
            SendOutcome::Permanent { reason } => {
                self.note(
                    EntryKind::SendFailed,
                    Some(step),
                    Some(&channel),
                    Some(&reason),
                );
                self.next_alternative("failed");
            }
            SendOutcome::Misconfigured { reason } => {
                let reason = format!("misconfigured: {reason}");
                self.note(
                    EntryKind::SendFailed,
                    Some(step),
                    Some(&channel),
                    Some(&reason),
                );
                self.next_alternative("failed");
            }
            SendOutcome::Ambiguous { reason } => self.uncertain_send(step, channel, &reason),
        }
    }

    /// The send may or may not have gone out.
    pub(super) fn uncertain_send(&mut self, step: u8, channel: String, reason: &str) {
        let resend = self
            .ctx
            .channels
            .get(&channel)
            .is_some_and(|r| r.on_uncertain == OnUncertain::Resend);
        if resend {
            self.retry_or_give_up(step, channel, reason, 0);
        } else {
            self.note(
                EntryKind::Uncertain,
                Some(step),
                Some(&channel),
                Some(reason),
            );
            self.start_wait(step, channel);
        }
    }

    pub(super) fn retry_or_give_up(
        &mut self,
        step: u8,
        channel: String,
        reason: &str,
        retry_after_ms: i64,
    ) {
        let Some(rules) = self.ctx.channels.get(&channel) else {
            self.note(
                EntryKind::SendFailed,
                Some(step),
                Some(&channel),
                Some(reason),
            );
            self.next_alternative("failed");
            return;
        };
        self.cascade.failures = self.cascade.failures.saturating_add(1);
        if self.cascade.failures >= rules.retry.attempts {
            let why = format!("{reason}; gave up after {} attempts", self.cascade.failures);
            self.note(
                EntryKind::SendFailed,
                Some(step),
                Some(&channel),
                Some(&why),
            );
            self.next_alternative("failed");
            return;
        }
        let seed = jitter_seed(self.ctx.notification_id, step, self.cascade.failures);
        let delay = rules
            .retry
            .backoff(self.cascade.failures, seed)
            .max(rules.retry.cap_retry_after(retry_after_ms));
        let at_ms = self.now_ms.saturating_add(delay);
        self.entry(Entry {
            until_ms: Some(at_ms),
            ..self.blank(
                EntryKind::SendFailed,
                Some(step),
                Some(&channel),
                Some(reason),
            )
        });
        self.cascade.phase = Phase::Due { at_ms };
    }

    pub(super) fn limit_blocked(&mut self, step: u8, channel: String, not_before_ms: i64) {
        let on_limit = self.ctx.policy.steps.get(step as usize).map(|s| s.on_limit);
        if on_limit == Some(OnLimit::Next) {
            self.note(
                EntryKind::Skipped,
                Some(step),
                Some(&channel),
                Some("limit"),
            );
            self.cascade.alt += 1;
            self.cascade.failures = 0;
            self.cascade.phase = Phase::Due { at_ms: self.now_ms };
            self.advance();
            return;
        }
        self.defer(step, &channel, not_before_ms, "limit");
    }

    /// The ordered send waits until `not_before_ms` (at least a moment), for
    /// `why`.
    pub(super) fn defer(&mut self, step: u8, channel: &str, not_before_ms: i64, why: &str) {
        let at_ms = not_before_ms.max(self.now_ms.saturating_add(1));
        self.entry(Entry {
            until_ms: Some(at_ms),
            ..self.blank(EntryKind::Deferred, Some(step), Some(channel), Some(why))
        });
        self.cascade.phase = Phase::Due { at_ms };
    }
}

/// FNV-1a over the notification id, step and failure count: a stable,
/// well-spread seed for retry jitter without a random source.
fn jitter_seed(id: &str, step: u8, failures: u8) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes().chain([step, failures]) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
