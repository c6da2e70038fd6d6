//! The cascade state machine: one notification's way through its policy.
//!
//! `decide` is a pure function of the current state, one event, `now` and the
//! facts in `Context` (policy snapshot, channel rules, the customer, the
//! receipts recorded so far). It returns the new state, at most one send to
//! perform, and the timeline entries to log. The shell persists the state,
//! schedules a wake-up at `Cascade::wake_at_ms`, performs the send and feeds
//! its outcome back as another event.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use super::policy::{CANCELLED, ChannelRules, FAILED, OnLimit, OnUncertain, Policy, WaitClock};

/// Everything about the customer that decides where a step can go.
#[derive(Clone, Debug)]
pub struct Recipient {
    pub contacts: BTreeMap<String, String>,
    /// Channel names, kinds or contact keys, most preferred first.
    pub preferences: Vec<String>,
    /// Channel names, kinds or contact keys the customer opted out of.
    pub opt_out: Vec<String>,
    pub tz: TimeZone,
}

/// Tunables of the state machine that are not part of a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// A send with no outcome after this long is treated as interrupted
    /// (the instance performing it died): the channel's `on_uncertain` decides.
    pub in_flight_timeout_ms: i64,
    /// A stopping receipt this soon after an escalation is recorded as `late_read`.
    pub late_read_window_ms: i64,
    /// Hard bound on events handled per cascade; past it the cascade ends.
    pub max_transitions: u16,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            in_flight_timeout_ms: 120_000,
            late_read_window_ms: 15 * 60_000,
            max_transitions: 256,
        }
    }
}

/// The facts a decision reads. Nothing here is changed by the core.
pub struct Context<'a> {
    pub notification_id: &'a str,
    pub policy: &'a Policy,
    pub channels: &'a BTreeMap<String, ChannelRules>,
    pub recipient: &'a Recipient,
    /// The receipts hash of contract §6: event word → Unix milliseconds.
    pub receipts: &'a BTreeMap<String, i64>,
    pub timing: Timing,
}

/// The running state of one cascade. Compact on purpose: it lives in Redis.
///
/// Invariants: `step` indexes the policy's steps while not `Done`; `alt`
/// indexes the step's alternatives in the customer's order; once `Done`, no
/// event changes the phase again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cascade {
    #[serde(rename = "s")]
    pub step: u8,
    #[serde(rename = "a")]
    pub alt: u8,
    /// Transient failures of the current alternative so far.
    #[serde(rename = "f")]
    pub failures: u8,
    #[serde(rename = "p")]
    pub phase: Phase,
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// When the latest escalation (a send of step > 0) went out.
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub last_escalation_ms: Option<i64>,
    /// The `failed` receipt already acted upon, so it escalates only once.
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    pub handled_failed_ms: Option<i64>,
    #[serde(rename = "l", default, skip_serializing_if = "std::ops::Not::not")]
    pub late_read: bool,
    #[serde(rename = "t")]
    pub transitions: u16,
}

/// Where a cascade stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Phase {
    /// The current step/alternative will be tried at `at_ms` (`send_at`,
    /// quiet hours, a limit, or a retry backoff).
    #[serde(rename = "D")]
    Due { at_ms: i64 },
    /// A send was ordered and its outcome is awaited.
    #[serde(rename = "F")]
    InFlight { channel: String, deadline_ms: i64 },
    /// The current step went out; waiting for a stopping receipt until `until_ms`.
    #[serde(rename = "W")]
    Waiting {
        channel: String,
        sent_ms: i64,
        until_ms: i64,
    },
    /// Finished; nothing more will be sent.
    #[serde(rename = "X")]
    Done { outcome: Outcome, at_ms: i64 },
}

/// How a cascade ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A stopping receipt (`read`, `opened`, …) arrived.
    Completed { event: String },
    /// Every step was tried; nobody read.
    Exhausted,
    /// `expires_at` / `expire_after` passed first.
    Expired,
    /// `cancelled` was recorded.
    Cancelled,
}

impl Outcome {
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Completed { .. } => "completed",
            Outcome::Exhausted => "exhausted",
            Outcome::Expired => "expired",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// An input to the state machine.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The wake-up scheduled at `wake_at_ms` is due.
    TimerDue,
    /// The outcome of a `SendOrder`.
    SendResult {
        step: u8,
        channel: String,
        outcome: SendOutcome,
    },
    /// A per-customer limit refused the ordered send until `not_before_ms`.
    LimitBlocked {
        step: u8,
        channel: String,
        not_before_ms: i64,
    },
    /// The channel's outbound rate (its `rate`) had no room for the ordered
    /// send within the send's window, so nothing was requested: try again
    /// at `not_before_ms`. Unlike a limit, always waits (the step's
    /// `on_limit` is about the customer's limits, not the provider's).
    Throttled {
        step: u8,
        channel: String,
        not_before_ms: i64,
    },
    /// The receipts hash changed; look at it again.
    ReceiptsChanged,
    /// The wake-up is due, and the instance that claimed it at
    /// `claimed_at_ms` let its claim run out without storing a decision (it
    /// died or stalled): a send it ordered then may have gone out. The core
    /// replays that wake-up; the send it would have ordered counts as
    /// uncertain (`on_uncertain`), and the cascade goes on from there now.
    /// If it would have ordered none, this is a plain `TimerDue`.
    ClaimLapsed { claimed_at_ms: i64 },
}

/// How a provider answered, classified by the channel adapter (contract §4).
#[derive(Clone, Debug, PartialEq)]
pub enum SendOutcome {
    Sent {
        provider_message_id: Option<String>,
    },
    Transient {
        reason: String,
        retry_after_ms: Option<i64>,
    },
    RateLimited {
        retry_after_ms: i64,
    },
    /// Permanent for this recipient (invalid number, blocked bot): escalate now.
    Permanent {
        reason: String,
    },
    /// Permanent for everyone (bad token, no funds): escalate now; the shell alerts.
    Misconfigured {
        reason: String,
    },
    /// Timed out after the request went out: it may have been sent.
    Ambiguous {
        reason: String,
    },
}

/// A send for the shell to perform: check the per-customer limits, then send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendOrder {
    pub step: u8,
    pub channel: String,
    /// 1 for the first try of this step on this channel.
    pub attempt: u8,
}

/// One line of a cascade's timeline; `event` is a lifecycle word of contract §7.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub at_ms: i64,
    pub event: EntryKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For `deferred` and retries: when the next try is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
}

/// The lifecycle words the core emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Accepted,
    Sent,
    SendFailed,
    Uncertain,
    Deferred,
    Skipped,
    Escalated,
    Completed,
    Exhausted,
    Expired,
    Cancelled,
    LateRead,
    /// A receipt was recorded. Written by the shell, which sees receipts arrive.
    Receipt,
    /// Intake saw an id it already knows. Written by the shell.
    Duplicate,
    /// Intake dead-lettered a message. Written by the shell.
    Rejected,
}

impl EntryKind {
    pub const ALL: [EntryKind; 15] = [
        EntryKind::Accepted,
        EntryKind::Sent,
        EntryKind::SendFailed,
        EntryKind::Uncertain,
        EntryKind::Deferred,
        EntryKind::Skipped,
        EntryKind::Escalated,
        EntryKind::Completed,
        EntryKind::Exhausted,
        EntryKind::Expired,
        EntryKind::Cancelled,
        EntryKind::LateRead,
        EntryKind::Receipt,
        EntryKind::Duplicate,
        EntryKind::Rejected,
    ];

    /// The kind a lifecycle word names ([`EntryKind::as_str`] backwards).
    pub fn from_word(word: &str) -> Option<EntryKind> {
        EntryKind::ALL.into_iter().find(|k| k.as_str() == word)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Accepted => "accepted",
            EntryKind::Sent => "sent",
            EntryKind::SendFailed => "send_failed",
            EntryKind::Uncertain => "uncertain",
            EntryKind::Deferred => "deferred",
            EntryKind::Skipped => "skipped",
            EntryKind::Escalated => "escalated",
            EntryKind::Completed => "completed",
            EntryKind::Exhausted => "exhausted",
            EntryKind::Expired => "expired",
            EntryKind::Cancelled => "cancelled",
            EntryKind::LateRead => "late_read",
            EntryKind::Receipt => "receipt",
            EntryKind::Duplicate => "duplicate",
            EntryKind::Rejected => "rejected",
        }
    }
}

impl std::fmt::Display for EntryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `decide` returns.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub cascade: Cascade,
    pub send: Option<SendOrder>,
    pub entries: Vec<Entry>,
}

impl Cascade {
    /// A new cascade, accepted at `now_ms` and due at once (or at `send_at`):
    /// nothing is sent yet. The daemon stores this and lets its scheduler
    /// take the first step, so a crash right after intake loses nothing.
    pub fn accept(
        now_ms: i64,
        send_at_ms: Option<i64>,
        expires_at_ms: Option<i64>,
        ctx: &Context,
    ) -> Decision {
        let from_policy = ctx.policy.expire_after_ms.map(|d| now_ms.saturating_add(d));
        let expires_at_ms = match (expires_at_ms, from_policy) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let start_ms = send_at_ms.unwrap_or(now_ms).max(now_ms);
        let cascade = Cascade {
            step: 0,
            alt: 0,
            failures: 0,
            phase: Phase::Due { at_ms: start_ms },
            expires_at_ms,
            last_escalation_ms: None,
            handled_failed_ms: None,
            late_read: false,
            transitions: 0,
        };
        let mut run = Run::new(cascade, now_ms, ctx);
        run.note(EntryKind::Accepted, None, None, None);
        if start_ms > now_ms {
            run.entry(Entry {
                until_ms: Some(start_ms),
                ..run.blank(EntryKind::Deferred, Some(0), None, Some("send_at"))
            });
        }
        if !run.check_receipts() {
            run.expired();
        }
        run.finish()
    }

    /// `accept`, then the first step at once when it is due now.
    pub fn start(
        now_ms: i64,
        send_at_ms: Option<i64>,
        expires_at_ms: Option<i64>,
        ctx: &Context,
    ) -> Decision {
        let accepted = Self::accept(now_ms, send_at_ms, expires_at_ms, ctx);
        if accepted.cascade.wake_at_ms().is_none_or(|at| at > now_ms) {
            return accepted;
        }
        let mut next = decide(accepted.cascade, Event::TimerDue, now_ms, ctx);
        let mut entries = accepted.entries;
        entries.append(&mut next.entries);
        next.entries = entries;
        next
    }

    /// When the shell must call `decide` with `TimerDue` next; `None` once done.
    pub fn wake_at_ms(&self) -> Option<i64> {
        let at = match &self.phase {
            Phase::Due { at_ms } => *at_ms,
            Phase::InFlight { deadline_ms, .. } => *deadline_ms,
            Phase::Waiting { until_ms, .. } => *until_ms,
            Phase::Done { .. } => return None,
        };
        Some(self.expires_at_ms.map_or(at, |x| x.min(at)))
    }

    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done { .. })
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.phase {
            Phase::Done { outcome, .. } => Some(outcome),
            _ => None,
        }
    }
}

/// Handles one event. See the module comment.
pub fn decide(cascade: Cascade, event: Event, now_ms: i64, ctx: &Context) -> Decision {
    if let Event::ClaimLapsed { claimed_at_ms } = event {
        return claim_lapsed(cascade, claimed_at_ms.min(now_ms), now_ms, ctx);
    }
    let mut run = Run::new(cascade, now_ms, ctx);
    run.handle(event);
    run.finish()
}

/// `Event::ClaimLapsed`: what the lapsed claim's holder decided, replayed
/// (on the receipts known now, a superset of what it saw), then its send
/// made uncertain at `now_ms`. Any send after that one the holder would
/// have stored in flight first, so only this one can be unrecorded.
fn claim_lapsed(cascade: Cascade, claimed_at_ms: i64, now_ms: i64, ctx: &Context) -> Decision {
    let mut then = Run::new(cascade.clone(), claimed_at_ms, ctx);
    then.handle(Event::TimerDue);
    let Some(order) = then.send.take() else {
        let mut run = Run::new(cascade, now_ms, ctx);
        run.handle(Event::TimerDue);
        return run.finish();
    };
    let mut run = Run::new(then.cascade, now_ms, ctx);
    run.entries = then.entries;
    run.handle(Event::SendResult {
        step: order.step,
        channel: order.channel,
        outcome: SendOutcome::Ambiguous {
            reason: "interrupted: the claim ran out before an outcome was stored".into(),
        },
    });
    run.finish()
}

/// One decision in progress.
struct Run<'c, 'a> {
    cascade: Cascade,
    now_ms: i64,
    ctx: &'c Context<'a>,
    send: Option<SendOrder>,
    entries: Vec<Entry>,
}

impl<'c, 'a> Run<'c, 'a> {
    fn new(cascade: Cascade, now_ms: i64, ctx: &'c Context<'a>) -> Self {
        Run {
            cascade,
            now_ms,
            ctx,
            send: None,
            entries: Vec::new(),
        }
    }

    fn finish(self) -> Decision {
        Decision {
            cascade: self.cascade,
            send: self.send,
            entries: self.entries,
        }
    }

    fn handle(&mut self, event: Event) {
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
        if self.check_receipts() || self.expired() {
            return;
        }
        // A `failed` receipt just moved the cascade on (and maybe ordered a
        // send): the event was meant for the step it left, so it is spent. A
        // timer would otherwise take that new send for an interrupted one.
        if self.cascade.handled_failed_ms != handled_failed_ms {
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

    fn blank(
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

    fn entry(&mut self, entry: Entry) {
        self.entries.push(entry);
    }

    fn note(
        &mut self,
        event: EntryKind,
        step: Option<u8>,
        channel: Option<&str>,
        reason: Option<&str>,
    ) {
        let e = self.blank(event, step, channel, reason);
        self.entries.push(e);
    }

    fn done(&mut self, outcome: Outcome, reason: Option<&str>) {
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

    fn in_flight_matches(&self, step: u8, channel: &str) -> bool {
        matches!(&self.cascade.phase, Phase::InFlight { channel: c, .. } if c == channel)
            && self.cascade.step == step
    }

    /// The first stopping receipt recorded, if any (`cancelled` first).
    fn receipt_stops(&self) -> Option<(&'a str, i64)> {
        let receipts = self.ctx.receipts;
        if let Some((k, &at)) = receipts.get_key_value(CANCELLED) {
            return Some((k.as_str(), at));
        }
        receipts
            .iter()
            .filter(|(event, _)| self.ctx.policy.stops_on(event))
            .min_by_key(|(_, at)| **at)
            .map(|(k, &at)| (k.as_str(), at))
    }

    /// Applies the receipts hash. Returns true when the cascade is now done.
    fn check_receipts(&mut self) -> bool {
        if let Some((event, at_ms)) = self.receipt_stops() {
            self.mark_late_read(at_ms);
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

    fn mark_late_read(&mut self, read_ms: i64) {
        if let Some(esc) = self.cascade.last_escalation_ms
            && !self.cascade.late_read
            && read_ms >= esc
            && read_ms.saturating_sub(esc) <= self.ctx.timing.late_read_window_ms
        {
            self.cascade.late_read = true;
            self.note(EntryKind::LateRead, Some(self.cascade.step), None, None);
        }
    }

    /// A finished cascade only ever notes a late read, or a send that was
    /// already in flight when it finished.
    fn after_done(&mut self, event: &Event) {
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
        if let Some((event, at_ms)) = self.receipt_stops()
            && event != CANCELLED
        {
            self.mark_late_read(at_ms);
        }
    }

    fn expired(&mut self) -> bool {
        if self.cascade.expires_at_ms.is_some_and(|x| x <= self.now_ms) {
            self.done(Outcome::Expired, None);
            return true;
        }
        false
    }

    fn timer_due(&mut self) {
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

    /// The current step's alternatives, in the customer's preference order.
    fn alternatives(&self, step: usize) -> Vec<&'a str> {
        let Some(step) = self.ctx.policy.steps.get(step) else {
            return Vec::new();
        };
        let mut alts: Vec<&'a str> = step.channels.iter().map(String::as_str).collect();
        let prefs = &self.ctx.recipient.preferences;
        if !prefs.is_empty() {
            // Stable: channels the customer did not rank keep the policy's order, last.
            alts.sort_by_key(|ch| {
                prefs
                    .iter()
                    .position(|p| names_channel(p, ch, self.ctx.channels))
                    .unwrap_or(prefs.len())
            });
        }
        alts
    }

    fn unreachable(&self, channel: &str) -> Option<&'static str> {
        unreachable(channel, self.ctx.channels, self.ctx.recipient)
    }

    fn quiet_hours(&self, channel: &str) -> Option<super::quiet::QuietHours> {
        let kind = self.ctx.channels.get(channel).map(|r| r.kind);
        self.ctx.policy.quiet_hours_for(channel, kind)
    }

    /// Tries the current step and alternative, moving past unreachable ones,
    /// until a send is ordered, the step is deferred, or the cascade ends.
    fn advance(&mut self) {
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
    fn next_step(&mut self, why: &str) {
        // Past expiry there is no next step to take (a `failed` receipt seen
        // at expiry would otherwise exhaust the cascade instead).
        if self.expired() {
            return;
        }
        let next = self.cascade.step as usize + 1;
        if next >= self.ctx.policy.steps.len() {
            self.done(Outcome::Exhausted, Some(why));
            return;
        }
        self.cascade.step = next as u8;
        self.cascade.alt = 0;
        self.cascade.failures = 0;
        self.note(EntryKind::Escalated, Some(next as u8), None, Some(why));
        self.cascade.phase = Phase::Due { at_ms: self.now_ms };
        self.advance();
    }

    /// The current alternative failed for good: try the step's next one.
    fn next_alternative(&mut self, _why: &str) {
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

    fn send_result(&mut self, step: u8, channel: String, outcome: SendOutcome) {
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
    fn uncertain_send(&mut self, step: u8, channel: String, reason: &str) {
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

    fn retry_or_give_up(&mut self, step: u8, channel: String, reason: &str, retry_after_ms: i64) {
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

    fn limit_blocked(&mut self, step: u8, channel: String, not_before_ms: i64) {
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
    fn defer(&mut self, step: u8, channel: &str, not_before_ms: i64, why: &str) {
        let at_ms = not_before_ms.max(self.now_ms.saturating_add(1));
        self.entry(Entry {
            until_ms: Some(at_ms),
            ..self.blank(EntryKind::Deferred, Some(step), Some(channel), Some(why))
        });
        self.cascade.phase = Phase::Due { at_ms };
    }

    /// The step is out: wait for a stopping receipt.
    fn start_wait(&mut self, step: u8, channel: String) {
        if step > 0 {
            self.cascade.last_escalation_ms = Some(self.now_ms);
        }
        let Some(def) = self.ctx.policy.steps.get(step as usize) else {
            self.done(Outcome::Exhausted, Some("no_more_steps"));
            return;
        };
        let wait_ms = def.wait_ms.unwrap_or(0);
        let mut until_ms = self.now_ms.saturating_add(wait_ms);
        if def.wait_clock == WaitClock::Awake
            && let Some(next) = self.first_reachable(step as usize + 1)
            && let Some(q) = self.quiet_hours(next)
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

    /// The channel a later step would use, for the awake wait clock.
    fn first_reachable(&self, step: usize) -> Option<&'a str> {
        (step..self.ctx.policy.steps.len())
            .flat_map(|s| self.alternatives(s))
            .find(|ch| self.unreachable(ch).is_none())
    }
}

/// Does a customer's word (in `preferences` or `opt_out`) name this channel?
/// It may be the channel's name, its kind or its contact key.
pub fn names_channel(word: &str, channel: &str, channels: &BTreeMap<String, ChannelRules>) -> bool {
    if word == channel {
        return true;
    }
    match channels.get(channel) {
        Some(rules) => word == rules.kind.as_str() || rules.contact_key.as_deref() == Some(word),
        None => false,
    }
}

/// Why a channel cannot be used for this customer (`unknown_channel`,
/// `opted_out`, `no_contact`), or `None` when it can.
pub fn unreachable(
    channel: &str,
    channels: &BTreeMap<String, ChannelRules>,
    recipient: &Recipient,
) -> Option<&'static str> {
    let Some(rules) = channels.get(channel) else {
        return Some("unknown_channel");
    };
    if recipient
        .opt_out
        .iter()
        .any(|w| names_channel(w, channel, channels))
    {
        return Some("opted_out");
    }
    if let Some(key) = &rules.contact_key
        && recipient
            .contacts
            .get(key)
            .is_none_or(|c| c.trim().is_empty())
    {
        return Some("no_contact");
    }
    None
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
