//! What happens to a cascade (`Event`), what a send came to (`SendOutcome`)
//! and what the core asks the shell to send (`SendOrder`).

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
