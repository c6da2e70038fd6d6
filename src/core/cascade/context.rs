//! The facts a decision reads about the customer and the channels.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;

use super::super::policy::{ChannelRules, Policy};

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
    /// A read of an earlier step's message this soon after an escalation
    /// is a `late_read` (report/tally.rs).
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

/// A step's alternatives, in the customer's preference order.
pub fn alternatives<'a>(ctx: &Context<'a>, step: usize) -> Vec<&'a str> {
    let Some(step) = ctx.policy.steps.get(step) else {
        return Vec::new();
    };
    let mut alts: Vec<&'a str> = step.channels.iter().map(String::as_str).collect();
    let prefs = &ctx.recipient.preferences;
    if !prefs.is_empty() {
        // Stable: channels the customer did not rank keep the policy's order, last.
        alts.sort_by_key(|ch| {
            prefs
                .iter()
                .position(|p| names_channel(p, ch, ctx.channels))
                .unwrap_or(prefs.len())
        });
    }
    alts
}

/// The channel a step would go out on: its first alternative, in the
/// customer's order, the customer can be reached on.
pub fn channel_for_step<'a>(ctx: &Context<'a>, step: usize) -> Option<&'a str> {
    alternatives(ctx, step)
        .into_iter()
        .find(|ch| unreachable(ch, ctx.channels, ctx.recipient).is_none())
}
