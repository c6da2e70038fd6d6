//! `channels/<name>.toml`: one configured way to send.
//!
//! A channel file is flat: the keys every channel has (`kind`, `cost`,
//! `timeout`, `retry`, …) and the provider keys of its kind. Which provider
//! keys a kind takes is listed in `kind_settings`, so a key of the wrong kind
//! is reported by name rather than ignored.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::core::{ChannelKind, ChannelRules, Rate};

/// A channel, validated. Provider settings are interpolated strings; each
/// adapter reads the ones of its kind.
#[derive(Clone, Debug)]
pub struct ChannelConfig {
    pub name: String,
    pub kind: ChannelKind,
    pub description: String,
    pub rules: ChannelRules,
    /// Price per message, or per SMS segment when `cost_per = "segment"`.
    pub cost: Option<f64>,
    pub cost_per_segment: bool,
    pub timeout_ms: i64,
    /// Outbound throughput to the provider, per instance.
    pub rate: Option<Rate>,
    /// Longest text the channel takes, in characters.
    pub max_length: Option<usize>,
    /// SMS only: most segments one message may use.
    pub max_segments: Option<u32>,
    pub settings: BTreeMap<String, String>,
}

impl ChannelConfig {
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings.get(key).map(String::as_str)
    }
}

/// A channel file as written: the keys every channel has. Provider keys are
/// read separately (with their positions) and checked against the kind.
#[derive(Debug, Deserialize)]
pub(super) struct RawChannel {
    pub kind: Spanned<String>,
    pub description: Option<String>,
    pub contact: Option<Spanned<String>>,
    pub cost: Option<Spanned<f64>>,
    pub cost_per: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub rate: Option<Spanned<String>>,
    pub retry: Option<RawRetry>,
    pub on_uncertain: Option<Spanned<String>>,
    pub max_length: Option<Spanned<i64>>,
    pub max_segments: Option<Spanned<i64>>,
}

/// The keys of `RawChannel`: everything else in a channel file is a provider key.
pub(super) const COMMON_KEYS: [&str; 11] = [
    "kind",
    "description",
    "contact",
    "cost",
    "cost_per",
    "timeout",
    "rate",
    "retry",
    "on_uncertain",
    "max_length",
    "max_segments",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    pub attempts: Option<Spanned<i64>>,
    pub backoff: Option<Spanned<String>>,
    pub max_backoff: Option<Spanned<String>>,
}

/// Provider keys each kind takes, and which of them are required.
pub fn kind_settings(kind: ChannelKind) -> (&'static [&'static str], &'static [&'static str]) {
    match kind {
        ChannelKind::Vk => (
            &[
                "base_url",
                "access_token",
                "group_id",
                "api_version",
                "callback_secret",
                "confirmation",
            ],
            &["access_token"],
        ),
        // `provider` or `providers` (an ordered failover list): see channels::sms.
        ChannelKind::Sms => (
            &[
                "provider",
                "providers",
                "base_url",
                "smsru_base_url",
                "smsc_base_url",
                "api_id",
                "login",
                "password",
                "apikey",
                "sender",
                "report_secret",
                "url",
                "body",
                "authorization",
            ],
            &[],
        ),
        ChannelKind::Email => (
            &[
                "host",
                "port",
                "tls",
                "username",
                "password",
                "from",
                "reply_to",
                "unsubscribe_url",
                "tracking_secret",
                "bounce_secret",
            ],
            &["host", "from"],
        ),
        ChannelKind::Telegram => (
            &[
                "base_url",
                "bot_token",
                "webhook_secret",
                "button_text",
                "link_text",
            ],
            &["bot_token"],
        ),
        ChannelKind::Whatsapp => (
            &[
                "base_url",
                "api_version",
                "phone_number_id",
                "access_token",
                "app_secret",
                "verify_token",
                "template",
                "template_language",
            ],
            &["phone_number_id", "access_token"],
        ),
        ChannelKind::Webhook => (&["url", "secret"], &["url"]),
    }
}

/// Which kinds dedupe a resend by their own key, so an uncertain send may be
/// retried safely (VK `random_id`, SMSC `id`, and our webhook's
/// `Idempotency-Key` header, which a receiver is expected to honour).
pub fn dedupes_by_default(kind: ChannelKind, provider: Option<&str>) -> bool {
    match kind {
        ChannelKind::Vk | ChannelKind::Webhook => true,
        // Only `provider = "smsc"`: a failover list (`providers`) must not
        // resend, since the next provider cannot dedupe against the last.
        ChannelKind::Sms => provider == Some("smsc"),
        _ => false,
    }
}

/// Default outbound ceilings from the providers' published limits.
pub fn default_max_length(kind: ChannelKind) -> Option<usize> {
    match kind {
        ChannelKind::Vk | ChannelKind::Telegram | ChannelKind::Whatsapp => Some(4096),
        ChannelKind::Sms | ChannelKind::Email | ChannelKind::Webhook => None,
    }
}
