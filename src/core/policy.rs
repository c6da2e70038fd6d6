//! The rules the decision core follows: policies, steps, channel rules and
//! per-customer rates. These are plain data; `config` builds them from TOML.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::quiet::QuietHours;

/// The receipt words that end a cascade when a policy names no `stop_on`.
pub const DEFAULT_STOP_ON: [&str; 4] = ["read", "opened", "clicked", "replied"];

/// The receipt that ends every cascade, whatever its `stop_on` says.
pub const CANCELLED: &str = "cancelled";

/// The receipt that makes the current step count as failed.
pub const FAILED: &str = "failed";

/// One escalation policy, resolved: global limits and quiet hours are already
/// merged with the policy's own overrides, so a snapshot of this value is all
/// a running cascade needs (contract §3: a cascade keeps the policy it started with).
///
/// Invariant: `steps` is non-empty and every step names at least one channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub stop_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_after_ms: Option<i64>,
    pub steps: Vec<Step>,
    #[serde(default)]
    pub limits: Limits,
    /// Keyed by channel name or channel kind; the name wins.
    #[serde(default)]
    pub quiet_hours: BTreeMap<String, QuietHours>,
    /// Channels whose quiet hours are lifted by name (`<channel> = "off"`):
    /// a range set for their kind does not apply to them either.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub quiet_off: BTreeSet<String>,
    /// How soon staff must answer a customer's reply, and whom to escalate
    /// to when they do not (`answer_within`, `answer_escalation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Answer>,
    /// The quiet hours an awake wait skips when no step after it has any
    /// of its own: a staff cascade's business hours, so a deadline with no
    /// staff channel after it still counts working time only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awake_hours: Option<QuietHours>,
}

/// A policy's answer deadline for customers' replies (`core::replies`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub within_ms: i64,
    /// The staff channels in turn once the deadline passes; each waits
    /// for `answered` before the next (the last one waits for nothing).
    pub escalation: Vec<StaffStep>,
}

/// One staff channel of an answer escalation and its wait.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StaffStep {
    pub channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<i64>,
}

/// One step: the channel (or ordered alternatives) and how long to wait for a
/// stopping receipt before the next step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub channels: Vec<String>,
    /// `None` on a last step means "done as soon as it is sent".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<i64>,
    #[serde(default)]
    pub wait_clock: WaitClock,
    #[serde(default)]
    pub on_limit: OnLimit,
    /// The step's name in the policy file, for branches to name it by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Branches: a receipt word recorded while this step waits moves the
    /// cascade to the step at this index at once.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub on: BTreeMap<String, u8>,
    /// Where the wait's end leads; `None` means the following step in file
    /// order that no branch targets (`Policy::after_wait`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u8>,
    /// The cascade ends once this step is sent.
    #[serde(rename = "final", default, skip_serializing_if = "is_false")]
    pub is_final: bool,
    /// The step's own text (placeholders allowed, `core::template`), used
    /// when the notification has none for this step (`content.steps`).
    /// Skipped when absent, so snapshots of policies without it keep
    /// their bytes (and their hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The subject going with `text` (email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// How a step's wait is counted (contract §3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitClock {
    /// Plain elapsed time.
    #[default]
    Wall,
    /// Only time outside the quiet hours of the channel escalated to counts.
    Awake,
}

/// What a step does when a per-customer limit blocks it (contract §3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnLimit {
    /// Wait until the limit allows the send.
    #[default]
    Defer,
    /// Move on to the next alternative or step at once.
    Next,
}

/// At most `count` sends per `per_ms` milliseconds, e.g. `4/1h`.
///
/// Invariant: `count >= 1`, `per_ms >= 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rate {
    pub count: u32,
    pub per_ms: i64,
}

impl Rate {
    /// Given the times of earlier sends (any order), when may the next one go?
    /// `None` means now. This is the arithmetic of the sliding-window limit;
    /// the Redis store performs the same sum atomically in Lua.
    pub fn not_before(&self, earlier_sends_ms: &[i64], now_ms: i64) -> Option<i64> {
        let mut recent: Vec<i64> = earlier_sends_ms
            .iter()
            .copied()
            .filter(|&t| t > now_ms.saturating_sub(self.per_ms))
            .collect();
        if recent.len() < self.count as usize {
            return None;
        }
        recent.sort_unstable();
        // The send that must age out of the window before one more fits.
        let blocking = recent[recent.len() - self.count as usize];
        Some(blocking.saturating_add(self.per_ms))
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per = std::time::Duration::from_millis(self.per_ms as u64);
        write!(f, "{}/{}", self.count, humantime::format_duration(per))
    }
}

/// Per-customer limits: all channels together, and per channel (name or kind).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_customer: Option<Rate>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_channel: BTreeMap<String, Rate>,
}

impl Limits {
    /// The limits a send on `channel` counts against: `None` for the
    /// all-channels limit, `Some(key)` for a per-channel one.
    pub fn applying_to(&self, channel: &str, kind: ChannelKind) -> Vec<(Option<&str>, Rate)> {
        let all = self.per_customer.map(|rate| (None, rate));
        let own = self
            .per_channel
            .iter()
            .filter(|(key, _)| Self::covers(key, channel, kind))
            .map(|(key, rate)| (Some(key.as_str()), *rate));
        all.into_iter().chain(own).collect()
    }

    /// Does a `per_channel` key (a channel name or a kind) cover this channel?
    pub fn covers(key: &str, channel: &str, kind: ChannelKind) -> bool {
        key == channel || key == kind.as_str()
    }
}

/// The kinds of channel of contract §4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Vk,
    Sms,
    Email,
    Telegram,
    Whatsapp,
    Webhook,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 6] = [
        ChannelKind::Vk,
        ChannelKind::Sms,
        ChannelKind::Email,
        ChannelKind::Telegram,
        ChannelKind::Whatsapp,
        ChannelKind::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Vk => "vk",
            ChannelKind::Sms => "sms",
            ChannelKind::Email => "email",
            ChannelKind::Telegram => "telegram",
            ChannelKind::Whatsapp => "whatsapp",
            ChannelKind::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The key in `customer.contacts` this kind reads by default. A webhook
    /// (call-centre task, in-app push) needs no customer address.
    pub fn default_contact_key(self) -> Option<&'static str> {
        match self {
            ChannelKind::Webhook => None,
            other => Some(other.as_str()),
        }
    }
}

impl std::fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Exponential backoff for transient send errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Send attempts in all, the first included.
    pub attempts: u8,
    pub backoff_ms: i64,
    pub max_backoff_ms: i64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            backoff_ms: 2_000,
            max_backoff_ms: 300_000,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `next_attempt` (1-based count of failures so
    /// far), with "equal jitter": half fixed, half spread by `jitter_seed`, so
    /// many cascades failing together do not retry in lockstep. Pure: the
    /// seed comes from the notification id, not from a random source.
    pub fn backoff(&self, failures: u8, jitter_seed: u64) -> i64 {
        let exp = self
            .backoff_ms
            .saturating_mul(1_i64 << failures.saturating_sub(1).min(30));
        let full = exp.min(self.max_backoff_ms).max(1);
        let half = full / 2;
        half + (jitter_seed % (full - half + 1) as u64) as i64
    }

    /// A provider's delay (`Retry-After`, Telegram's `retry_after`, a
    /// rate-limit cool-down) as this channel will honour it: at most
    /// `max_backoff`, never negative. A provider — or anyone who can answer
    /// in its place — must not park a cascade for years with one header;
    /// retrying earlier than asked costs at most an attempt.
    pub fn cap_retry_after(&self, retry_after_ms: i64) -> i64 {
        retry_after_ms.clamp(0, self.max_backoff_ms.max(0))
    }
}

/// What to do when a send's outcome is unknown (timed out after the request
/// went out, or the daemon died mid-send).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUncertain {
    /// Count the step as (possibly) sent and let its wait run: never a blind resend.
    #[default]
    Skip,
    /// Send again. Safe where the provider deduplicates (VK `random_id`, SMSC `id`).
    Resend,
}

/// What the core needs to know about a configured channel.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelRules {
    pub kind: ChannelKind,
    /// Key into `customer.contacts`; `None` when the channel needs no address.
    pub contact_key: Option<String>,
    pub retry: RetryPolicy,
    pub on_uncertain: OnUncertain,
}

impl Policy {
    /// Quiet hours of a channel under this policy: by name, else by kind.
    pub fn quiet_hours_for(&self, channel: &str, kind: Option<ChannelKind>) -> Option<QuietHours> {
        if let Some(q) = self.quiet_hours.get(channel) {
            return Some(*q);
        }
        if self.quiet_off.contains(channel) {
            return None;
        }
        kind.and_then(|k| self.quiet_hours.get(k.as_str())).copied()
    }

    /// Does this receipt word end the cascade?
    pub fn stops_on(&self, event: &str) -> bool {
        event == CANCELLED || self.stop_on.iter().any(|e| e == event)
    }

    /// Is some step the target of a branch (`on`)? Such a step is reached
    /// only by a branch or a `next` naming it, never by falling through.
    pub fn is_branch_target(&self, step: usize) -> bool {
        self.steps
            .iter()
            .any(|s| s.on.values().any(|&t| t as usize == step))
    }

    /// Where the cascade goes when step `step`'s wait runs out: its `next`,
    /// else the following step in file order that no branch targets;
    /// `None` when there is none (the cascade is exhausted).
    pub fn after_wait(&self, step: usize) -> Option<usize> {
        if let Some(next) = self.steps.get(step).and_then(|s| s.next) {
            return Some(next as usize);
        }
        (step + 1..self.steps.len()).find(|&s| !self.is_branch_target(s))
    }

    /// Does any step branch on this receipt word?
    pub fn branches_on(&self, event: &str) -> bool {
        self.steps.iter().any(|s| s.on.contains_key(event))
    }

    /// Every receipt word that ends a cascade on this policy (`stops_on`
    /// as a list): `cancelled`, then `stop_on`. The store's scripts are
    /// given this list and know no stopping word of their own. A `stop_on`
    /// word some step branches on is left out: on that step it moves the
    /// cascade on rather than ending it, so the store must not refuse the
    /// branch's send; the core still ends the cascade on it elsewhere.
    pub fn stopping_receipts(&self) -> Vec<&str> {
        let mut words = vec![CANCELLED];
        for w in &self.stop_on {
            if !words.contains(&w.as_str()) && !self.branches_on(w) {
                words.push(w);
            }
        }
        words
    }

    /// The receipt words that call for a decision at once when recorded on
    /// a running cascade: the stopping ones, and `failed` (the current
    /// step's send failed after all).
    pub fn waking_receipts(&self) -> Vec<&str> {
        self.receipt_words().0
    }

    /// The waking receipts, the stopping ones first, and how many of them
    /// stop: both lists in one (the store passes them to its scripts so).
    pub fn receipt_words(&self) -> (Vec<&str>, usize) {
        let mut words = self.stopping_receipts();
        let stopping = words.len();
        // Branch words, and the stopping words left out above, wake a
        // cascade without ending it.
        let branching = self.steps.iter().flat_map(|s| s.on.keys());
        let other = self.stop_on.iter().chain(branching).map(String::as_str);
        for w in std::iter::once(FAILED).chain(other) {
            if !words.contains(&w) {
                words.push(w);
            }
        }
        (words, stopping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_window_arithmetic() {
        let r = Rate {
            count: 3,
            per_ms: 1_000,
        };
        assert_eq!(r.not_before(&[], 5_000), None);
        assert_eq!(r.not_before(&[4_100, 4_500], 5_000), None);
        assert_eq!(r.not_before(&[4_500, 4_100, 4_800], 5_000), Some(5_100));
        // Sends that have aged out do not count.
        assert_eq!(
            r.not_before(&[4_000, 4_200, 4_500, 4_800], 5_000),
            Some(5_200)
        );
    }

    #[test]
    fn limits_apply_by_channel_name_or_kind() {
        let r = |count| Rate {
            count,
            per_ms: 1_000,
        };
        let limits = Limits {
            per_customer: Some(r(4)),
            per_channel: [
                ("sms".to_string(), r(3)),
                ("sms_backup".to_string(), r(2)),
                ("vk".to_string(), r(9)),
            ]
            .into_iter()
            .collect(),
        };
        assert_eq!(
            limits.applying_to("sms_backup", ChannelKind::Sms),
            [
                (None, r(4)),
                (Some("sms"), r(3)),
                (Some("sms_backup"), r(2))
            ]
        );
        assert_eq!(
            limits.applying_to("email", ChannelKind::Email),
            [(None, r(4))]
        );
        assert!(
            Limits::default()
                .applying_to("vk", ChannelKind::Vk)
                .is_empty()
        );
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let p = RetryPolicy {
            attempts: 5,
            backoff_ms: 1_000,
            max_backoff_ms: 10_000,
        };
        for seed in [0u64, 1, 77, u64::MAX] {
            let b1 = p.backoff(1, seed);
            let b3 = p.backoff(3, seed);
            let b9 = p.backoff(9, seed);
            assert!((500..=1_000).contains(&b1), "{b1}");
            assert!((2_000..=4_000).contains(&b3), "{b3}");
            assert!((5_000..=10_000).contains(&b9), "{b9}");
        }
        assert_ne!(p.backoff(3, 1), p.backoff(3, 2));
    }
}
