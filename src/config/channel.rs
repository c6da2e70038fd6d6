//! `channels/<name>.toml`: one configured way to send.
//!
//! A channel file is flat: the keys every channel has (`kind`, `cost`,
//! `timeout`, `retry`, …) and the provider keys of its kind. Which provider
//! keys a kind takes is said by the adapter's settings type
//! (`channels::ChannelSettings`, read by `provider_keys`), so a key of the
//! wrong kind is reported by name rather than ignored.

use serde::Deserialize;
use toml::Spanned;

use crate::channels::ChannelSettings;
use crate::channels::sms::Provider;
use crate::core::ChannelKind;

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

/// Which kinds dedupe a resend by their own key, so an uncertain send may be
/// retried safely (VK `random_id`, SMSC `id`, and our webhook's
/// `Idempotency-Key` header, which a receiver is expected to honour).
pub fn dedupes_by_default(settings: &ChannelSettings) -> bool {
    match settings {
        ChannelSettings::Vk(_) | ChannelSettings::Webhook(_) => true,
        // Only `provider = "smsc"`: a failover list (`providers`) must not
        // resend, since the next provider cannot dedupe against the last.
        ChannelSettings::Sms(s) => s.provider == Some(Provider::Smsc),
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
