//! What the daemon tells its operators, one type per event: `emit` writes
//! the event's log line and counts its metric together, so the two cannot
//! drift apart (the shape of vector's internal events). Lifecycle lines go
//! to the target `cascade::lifecycle` (contract §7); the timeline and the
//! events stream get the same entries inside the store scripts.

use std::time::Duration;

use super::store;
use super::telemetry::Telemetry;
use crate::core::Entry;

/// An event for operators: a log line, a metric, or both.
pub trait InternalEvent {
    fn emit(self, telemetry: &Telemetry);
}

impl Telemetry {
    pub fn emit(&self, event: impl InternalEvent) {
        event.emit(self);
    }
}

/// The entries of one decision about a cascade.
pub struct Lifecycle<'a> {
    pub notification_id: &'a str,
    pub customer_id: &'a str,
    pub policy: &'a str,
    pub entries: &'a [Entry],
}

impl InternalEvent for Lifecycle<'_> {
    fn emit(self, telemetry: &Telemetry) {
        for e in self.entries {
            telemetry.lifecycle(e.event.as_str(), e.channel.as_deref());
            tracing::info!(
                target: "cascade::lifecycle",
                event = e.event.as_str(),
                notification_id = self.notification_id,
                customer_id = self.customer_id,
                policy = self.policy,
                step = e.step.map(|s| s as u64 + 1),
                channel = e.channel.as_deref(),
                provider_message_id = e.provider_message_id.as_deref(),
                reason = e.reason.as_deref(),
                until_ms = e.until_ms,
                "{}",
                e.event.as_str()
            );
        }
    }
}

/// A notification recorded; its entries follow as `Lifecycle`.
pub struct Accepted;

impl InternalEvent for Accepted {
    fn emit(self, telemetry: &Telemetry) {
        telemetry.intake("accepted", None);
    }
}

/// A notification whose id is already known: acknowledged, nothing sent.
pub struct Duplicate<'a> {
    pub notification_id: &'a str,
    pub customer_id: &'a str,
    pub policy: &'a str,
}

impl InternalEvent for Duplicate<'_> {
    fn emit(self, telemetry: &Telemetry) {
        telemetry.intake("duplicate", None);
        tracing::info!(
            target: "cascade::lifecycle",
            event = "duplicate",
            notification_id = self.notification_id,
            customer_id = self.customer_id,
            policy = self.policy,
            "duplicate"
        );
    }
}

/// A message that could not be recorded because Redis is out: handed back
/// to the queue, never counted toward poison.
pub struct Requeued<'a> {
    pub notification_id: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for Requeued<'_> {
    fn emit(self, telemetry: &Telemetry) {
        telemetry.intake("requeued", None);
        tracing::warn!(
            notification_id = self.notification_id,
            error = %self.error,
            "cannot record the cascade in Redis; returning the message to the queue"
        );
    }
}

/// A message that failed in its own right, sent round again with its count.
pub struct SentRound<'a> {
    pub delivery_tag: u64,
    pub failed: u32,
    pub max_deliveries: u32,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for SentRound<'_> {
    fn emit(self, telemetry: &Telemetry) {
        telemetry.intake("failed", None);
        tracing::warn!(
            delivery_tag = self.delivery_tag,
            failed = self.failed,
            max_deliveries = self.max_deliveries,
            error = %self.error,
            "handling a message failed; it was sent round again"
        );
    }
}

/// A message dead-lettered (bad input, or poison), with its error code.
pub struct Rejected<'a> {
    pub code: &'static str,
    pub reason: &'a str,
}

impl InternalEvent for Rejected<'_> {
    fn emit(self, telemetry: &Telemetry) {
        telemetry.intake("rejected", Some(self.code));
        tracing::info!(
            target: "cascade::lifecycle",
            event = "rejected",
            code = self.code,
            reason = self.reason,
            "rejected"
        );
    }
}

/// A rejected message RabbitMQ did not take as a dead letter: handed back.
pub struct DeadLetterFailed<'a> {
    pub code: &'static str,
    pub dead_letter_queue: &'a str,
    pub outcome: &'a dyn std::fmt::Display,
}

impl InternalEvent for DeadLetterFailed<'_> {
    fn emit(self, telemetry: &Telemetry) {
        telemetry.intake("dead_letter_failed", Some(self.code));
        tracing::error!(
            code = self.code,
            dead_letter_queue = self.dead_letter_queue,
            outcome = %self.outcome,
            "cannot dead-letter a rejected message; returning it to the queue"
        );
    }
}

/// A receipt recorded (by the API, a provider callback or a tracking link).
pub struct ReceiptRecorded<'a> {
    pub notification_id: &'a str,
    pub event: &'a str,
    pub channel: Option<&'a str>,
    /// Who recorded it through the API (the token's name), if anyone.
    pub caller: Option<&'a str>,
}

impl InternalEvent for ReceiptRecorded<'_> {
    fn emit(self, telemetry: &Telemetry) {
        telemetry.receipt(self.event);
        tracing::info!(
            target: "cascade::lifecycle",
            event = "receipt",
            notification_id = self.notification_id,
            receipt = self.event,
            channel = self.channel,
            caller = self.caller,
            "receipt"
        );
    }
}

/// A provider answered a send (the outcome's word) after `took`.
pub struct ProviderAnswered<'a> {
    pub channel: &'a str,
    pub outcome: &'static str,
    pub took: Duration,
}

impl InternalEvent for ProviderAnswered<'_> {
    fn emit(self, telemetry: &Telemetry) {
        telemetry.send(self.channel, self.outcome, self.took);
    }
}

/// The scheduler claimed cascades that are due, at `now_ms` by the
/// daemon's clock: each is as late as that is after its `due_ms` (one
/// without, woken "at once" by a commit, is counted but not timed).
pub struct Claimed<'a> {
    pub cascades: &'a [store::Claimed],
    pub now_ms: i64,
}

impl InternalEvent for Claimed<'_> {
    fn emit(self, telemetry: &Telemetry) {
        if self.cascades.is_empty() {
            return;
        }
        telemetry.claimed(self.cascades.len());
        for due_ms in self.cascades.iter().filter_map(|c| c.due_ms) {
            let late_ms = self.now_ms.saturating_sub(due_ms).max(0);
            telemetry.timer_lateness(Duration::from_millis(late_ms as u64));
        }
    }
}
