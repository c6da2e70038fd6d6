//! `channels/<name>.toml`: one configured way to send.
//!
//! A channel file is flat: the keys every channel has (`kind`, `cost`,
//! `timeout`, `retry`, …) and the provider keys of its kind. Which provider
//! keys a kind takes is said by the adapter's settings type
//! (`channels::ChannelSettings`, read by `provider_keys`), so a key of the
//! wrong kind is reported by name rather than ignored.

use serde::Deserialize;
use toml::Spanned;

use super::check::{FileCheck, parse_toml};
use super::{provider_keys, secrets};
use crate::channels::sms::Provider;
use crate::channels::{ChannelConfig, ChannelSettings};
use crate::core::{ChannelKind, ChannelRules, OnUncertain, RetryPolicy};

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

/// Reads one channel file: the common keys here, the provider keys through
/// `provider_keys`, the secrets judged by `secrets`. `None` when anything in
/// it is wrong (each problem reported to `check`).
pub(super) fn load_channel(name: &str, check: &mut FileCheck) -> Option<ChannelConfig> {
    let raw: RawChannel = parse_toml(check.file, check.src, check.errors)?;
    let before = check.errors.len();
    let kind = read_kind(&raw.kind, check)?;

    // Provider keys, read into the kind's settings type.
    let provider = provider_keys::read(kind, check);
    let contact = raw.contact.as_ref().map(|v| check.text(v));
    let no_contact_meant = matches!(&contact, Some(Some(s)) if s.is_empty() || s == "none");
    let contact_key = match contact {
        Some(v) => v.filter(|s| !s.is_empty() && s != "none"),
        None => kind.default_contact_key().map(str::to_owned),
    };
    let (cost, cost_per_segment) = read_cost(&raw, check);
    let timeout_ms = match &raw.timeout {
        Some(v) => check.duration_ms(v).unwrap_or(10_000),
        None => 10_000,
    };
    let rate = raw.rate.as_ref().and_then(|v| check.rate(v));
    let retry = read_retry(raw.retry.as_ref(), check);
    let dedupes = provider
        .as_ref()
        .is_some_and(|(s, _)| dedupes_by_default(s));
    let on_uncertain = read_on_uncertain(raw.on_uncertain.as_ref(), dedupes, check);
    let max_length = match &raw.max_length {
        Some(v) => check.positive(v, "max_length", 1 << 20).map(|n| n as usize),
        None => default_max_length(kind),
    };
    let max_segments = read_max_segments(raw.max_segments.as_ref(), kind, check);
    let (settings, sources) = provider?;
    if check.errors.len() > before {
        return None;
    }
    let channel = ChannelConfig {
        name: name.to_owned(),
        kind,
        description: raw.description.clone().unwrap_or_default(),
        rules: ChannelRules {
            kind,
            contact_key,
            retry,
            on_uncertain,
        },
        no_contact_meant,
        cost,
        cost_per_segment,
        timeout_ms,
        rate,
        max_length,
        max_segments,
        settings,
    };
    secrets::judge_channel(&channel, sources, check);
    Some(channel)
}

fn read_kind(kind: &Spanned<String>, check: &mut FileCheck) -> Option<ChannelKind> {
    let found = ChannelKind::parse(kind.get_ref());
    if found.is_none() {
        let kinds: Vec<&str> = ChannelKind::ALL.iter().map(|k| k.as_str()).collect();
        check.err(
            kind.span(),
            format!(
                "`{}` is not a channel kind; use one of {}",
                kind.get_ref(),
                kinds.join(", ")
            ),
        );
    }
    found
}

/// `cost` and whether it is per segment (`cost_per`), in that reading order:
/// `cost_per` first.
fn read_cost(raw: &RawChannel, check: &mut FileCheck) -> (Option<f64>, bool) {
    let cost_per_segment = match &raw.cost_per {
        Some(v) => check
            .choice(v, "cost unit", &[("message", false), ("segment", true)])
            .unwrap_or(false),
        None => false,
    };
    let cost = raw.cost.as_ref().and_then(|v| {
        let c = *v.get_ref();
        if c.is_finite() && c >= 0.0 {
            Some(c)
        } else {
            check.err(v.span(), "cost must be a price of zero or more, e.g. 4.20");
            None
        }
    });
    (cost, cost_per_segment)
}

/// `[retry]` over the defaults.
fn read_retry(raw: Option<&RawRetry>, check: &mut FileCheck) -> RetryPolicy {
    let mut retry = RetryPolicy::default();
    if let Some(r) = raw {
        if let Some(a) = &r.attempts {
            retry.attempts = check.positive(a, "retry.attempts", 50).unwrap_or(1) as u8;
        }
        if let Some(b) = &r.backoff {
            retry.backoff_ms = check.duration_ms(b).unwrap_or(retry.backoff_ms);
        }
        if let Some(m) = &r.max_backoff {
            retry.max_backoff_ms = check.duration_ms(m).unwrap_or(retry.max_backoff_ms);
        }
    }
    retry
}

/// `on_uncertain`; unset, `resend` where the provider dedupes a resend.
fn read_on_uncertain(
    raw: Option<&Spanned<String>>,
    provider_dedupes: bool,
    check: &mut FileCheck,
) -> OnUncertain {
    match raw {
        Some(v) => check
            .choice(
                v,
                "choice for an uncertain send",
                &[("skip", OnUncertain::Skip), ("resend", OnUncertain::Resend)],
            )
            .unwrap_or_default(),
        None if provider_dedupes => OnUncertain::Resend,
        None => OnUncertain::Skip,
    }
}

fn read_max_segments(
    raw: Option<&Spanned<i64>>,
    kind: ChannelKind,
    check: &mut FileCheck,
) -> Option<u32> {
    match raw {
        Some(v) if kind == ChannelKind::Sms => {
            check.positive(v, "max_segments", 255).map(|n| n as u32)
        }
        Some(v) => {
            check.err(v.span(), "max_segments applies to sms channels only");
            None
        }
        None => None,
    }
}
