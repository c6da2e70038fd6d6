//! The pure decision core: no async, no I/O, no clock. Everything that is hard
//! to get right — escalation, quiet hours, limits, expiry — lives here and is
//! tested here, with time passed in as `now`.

pub mod cascade;
pub mod policy;
pub mod quiet;
pub mod receipt_data;
pub mod replies;
pub mod report;
pub mod template;

pub use cascade::{
    Branch, Cascade, Context, Decision, Entry, EntryKind, Event, Outcome, Phase, Recipient,
    SendOrder, SendOutcome, Timing, channel_for_step, decide, names_channel, unreachable,
};
pub use policy::{
    ChannelKind, ChannelRules, Limits, OnLimit, OnUncertain, Policy, Rate, RetryPolicy, Step,
    WaitClock,
};
pub use quiet::QuietHours;
pub use report::ProviderReport;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties;

#[cfg(test)]
mod reference;
