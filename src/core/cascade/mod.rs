//! The cascade state machine: one notification's way through its policy.
//!
//! `decide` is a pure function of the current state, one event, `now` and the
//! facts in `Context` (policy snapshot, channel rules, the customer, the
//! receipts recorded so far). It returns the new state, at most one send to
//! perform, and the timeline entries to log. The shell persists the state,
//! schedules a wake-up at `Cascade::wake_at_ms`, performs the send and feeds
//! its outcome back as another event.

mod context;
mod event;
mod receipts;
mod run;
mod send_result;
mod steps;
mod timeline;

use serde::{Deserialize, Serialize};

pub use context::{
    Context, Recipient, Timing, alternatives, channel_for_step, names_channel, unreachable,
};
pub use event::{Event, SendOrder, SendOutcome};
use run::Run;
pub use timeline::{Entry, EntryKind};

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
    /// The `failed` receipt already acted upon, so it escalates only once.
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    pub handled_failed_ms: Option<i64>,
    #[serde(rename = "t")]
    pub transitions: u16,
    /// For the shell: how many of the cascade's timeline entries the report
    /// counters hold (report/tally.rs); `None` for a cascade stored before
    /// they were kept. The core leaves it as it is.
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub tallied: Option<u32>,
    /// The latest branch (`on`) taken; `None` until one is.
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<Branch>,
}

/// A branch taken: the receipt that moved the cascade, which is spent (it
/// neither branches nor stops again), and whether the current step is the
/// one it led to (a `final` step so reached completes with `word`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branch {
    #[serde(rename = "w")]
    pub word: String,
    #[serde(rename = "r")]
    pub receipt_ms: i64,
    #[serde(rename = "v", default, skip_serializing_if = "std::ops::Not::not")]
    pub here: bool,
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
            handled_failed_ms: None,
            transitions: 0,
            tallied: None,
            branch: None,
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
        Self::first_step(
            Self::accept(now_ms, send_at_ms, expires_at_ms, ctx),
            now_ms,
            ctx,
        )
    }

    /// The first step of an `accepted` cascade at once when it is due now
    /// (the entries of both together), else `accepted` as it is.
    pub fn first_step(accepted: Decision, now_ms: i64, ctx: &Context) -> Decision {
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
