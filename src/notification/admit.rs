//! The checks against the configuration and the clock: the policy exists,
//! the customer can be reached on at least one of its channels, each such
//! channel's contact is well-formed and has a text, `send_at` is not too far.

use std::collections::BTreeSet;

use jiff::tz::TimeZone;

use super::error::quote;
use super::{Admitted, ErrorCode, IntakeError, Notification, Part, contact, json, parse};
use crate::config::{Catalog, ChannelConfig};
use crate::core::{ChannelKind, Policy, Recipient, unreachable};
use crate::pii;
use crate::segments::{SmsEncoding, sms_segments};

/// `parse` with the configured body limit, then the checks against the
/// configuration: the policy exists; `customer.timezone` is an IANA zone
/// (default `[defaults] timezone`); and for every channel of every step that
/// can reach the customer, the contact has the right form for the channel's
/// kind and a text exists that fits the channel. At least one channel must be
/// reachable. Contacts no channel of the policy reads are dropped. An
/// `expires_at` in the past is not an error: the runtime records the
/// cascade as expired.
pub fn admit<'c>(body: &[u8], catalog: &'c Catalog) -> Result<Admitted<'c>, IntakeError> {
    let notification = parse(body, catalog.settings.amqp.max_body_bytes)?;
    let policy = configured_policy(&notification.policy, catalog)?;
    let tz = timezone(
        notification.customer.timezone.as_deref(),
        &catalog.settings.defaults.timezone,
    )?;
    let recipient = Recipient {
        contacts: notification.customer.contacts.clone(),
        preferences: notification.customer.preferences.clone(),
        opt_out: notification.customer.opt_out.clone(),
        tz,
    };
    let mut admission = Admission {
        catalog,
        notification,
        recipient,
    };
    let reach = admission.check_channels(policy)?;
    admission.keep_used_contacts(&reach.seen);
    let Admission {
        notification,
        recipient,
        ..
    } = admission;
    if reach.seen.len() == reach.skipped.len() {
        return Err(IntakeError::new(
            ErrorCode::NoReachableChannel,
            format!(
                "no channel of policy {} can reach customer {}: {}; add a contact for one of them to customer.contacts",
                quote(&policy.name),
                quote(&notification.customer.id),
                reach.skipped.join(", ")
            ),
        )
        .at("customer.contacts"));
    }
    Ok(Admitted {
        policy,
        send_at_ms: notification.send_at.map(|t| t.as_millisecond()),
        expires_at_ms: notification.expires_at.map(|t| t.as_millisecond()),
        notification,
        recipient,
    })
}

/// The policy the notification names, or `unknown_policy` listing the known ones.
fn configured_policy<'c>(name: &str, catalog: &'c Catalog) -> Result<&'c Policy, IntakeError> {
    catalog.policies.get(name).ok_or_else(|| {
        let known: Vec<&str> = catalog.policies.keys().map(String::as_str).collect();
        IntakeError::new(
            ErrorCode::UnknownPolicy,
            format!(
                "policy {} is not configured; known policies: {}",
                quote(name),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        )
        .at("policy")
    })
}

/// A notification being admitted: its contacts are normalised in place, in
/// both the notification and the recipient.
struct Admission<'c> {
    catalog: &'c Catalog,
    notification: Notification,
    recipient: Recipient,
}

/// The policy's channels (each once) and those that cannot reach the customer, with why.
struct Reach<'c> {
    seen: BTreeSet<&'c str>,
    skipped: Vec<String>,
}

impl Admission<'_> {
    /// Checks the contact and the text of every channel of the policy that
    /// can reach the customer.
    fn check_channels<'p>(&mut self, policy: &'p Policy) -> Result<Reach<'p>, IntakeError> {
        let mut seen = BTreeSet::new();
        let mut skipped = Vec::new();
        for channel in policy.steps.iter().flat_map(|s| &s.channels) {
            if !seen.insert(channel.as_str()) {
                continue;
            }
            if let Some(why) = unreachable(channel, &self.catalog.channel_rules, &self.recipient) {
                skipped.push(format!("{channel} ({})", why.replace('_', " ")));
                continue;
            }
            let Some(config) = self.catalog.channels.get(channel) else {
                skipped.push(format!("{channel} (unknown channel)"));
                continue;
            };
            self.normalise_contact(config)?;
            check_text(&self.notification, &policy.name, config)?;
        }
        self.check_step_texts(policy)?;
        Ok(Reach { seen, skipped })
    }

    /// A text of `content.steps` must fit every channel of its step that
    /// can reach the customer, as the other texts must (placeholders count
    /// as written: their values are checked when they are recorded).
    fn check_step_texts(&self, policy: &Policy) -> Result<(), IntakeError> {
        for step in &policy.steps {
            let Some(name) = step.name.as_deref() else {
                continue;
            };
            let Some(text) = self.notification.content.steps.get(name) else {
                continue;
            };
            let Some(text) = text.text.as_deref().filter(|t| !t.trim().is_empty()) else {
                continue;
            };
            for channel in &step.channels {
                if unreachable(channel, &self.catalog.channel_rules, &self.recipient).is_some() {
                    continue;
                }
                if let Some(config) = self.catalog.channels.get(channel) {
                    fits(&format!("content.steps.{name}.text"), text, config)?;
                }
            }
        }
        Ok(())
    }

    /// The channel's contact in its normal form, or `invalid_contact`.
    fn normalise_contact(&mut self, config: &ChannelConfig) -> Result<(), IntakeError> {
        let Some(key) = &config.rules.contact_key else {
            return Ok(());
        };
        let Some(value) = self.recipient.contacts.get(key) else {
            return Ok(());
        };
        let normal = contact::normalise(config.kind, value).map_err(|expected| {
            let field = format!("customer.contacts{}", json::segment(key));
            IntakeError::new(
                ErrorCode::InvalidContact,
                format!(
                    "{field} {} {expected}",
                    // Masked by its kind: `scrub` would not see the
                    // id in a malformed one such as `id123456789`.
                    quote(&pii::mask_contact(config.kind, value))
                ),
            )
            .at(field)
        })?;
        if &normal != value {
            self.recipient.contacts.insert(key.clone(), normal.clone());
            self.notification
                .customer
                .contacts
                .insert(key.clone(), normal);
        }
        Ok(())
    }

    /// The record keeps only what the cascade can use: a contact no channel
    /// of the policy reads is personal data with no purpose there (contract §7).
    fn keep_used_contacts(&mut self, seen: &BTreeSet<&str>) {
        let used: BTreeSet<&str> = seen
            .iter()
            .filter_map(|ch| self.catalog.channels.get(*ch)?.rules.contact_key.as_deref())
            .collect();
        self.notification
            .customer
            .contacts
            .retain(|key, _| used.contains(key.as_str()));
        self.recipient
            .contacts
            .retain(|key, _| used.contains(key.as_str()));
    }
}

/// `admit`, and then the checks that need the time: a `send_at` more than
/// `defaults.send_at_horizon` after `now_ms` is refused (`send_at_too_far`),
/// so a typo in the year cannot park a cascade in Redis for centuries. A
/// `send_at` in the past means "now".
pub fn admit_at<'c>(
    body: &[u8],
    catalog: &'c Catalog,
    now_ms: i64,
) -> Result<Admitted<'c>, IntakeError> {
    let admitted = admit(body, catalog)?;
    check_send_at(
        admitted.send_at_ms,
        now_ms,
        catalog.settings.defaults.send_at_horizon_ms,
    )?;
    Ok(admitted)
}

/// Refuses a `send_at` further than `horizon_ms` after `now_ms`.
pub(super) fn check_send_at(
    send_at_ms: Option<i64>,
    now_ms: i64,
    horizon_ms: i64,
) -> Result<(), IntakeError> {
    let Some(send_at_ms) = send_at_ms else {
        return Ok(());
    };
    // Saturating: a clock or a horizon at the end of the range refuses
    // nothing rather than wrap around and refuse everything.
    let latest = now_ms.saturating_add(horizon_ms.max(0));
    if send_at_ms <= latest {
        return Ok(());
    }
    Err(IntakeError::new(
        ErrorCode::SendAtTooFar,
        format!(
            "send_at is {} ahead; at most {} are accepted (defaults.send_at_horizon)",
            crate::config::fmt_ms(send_at_ms.saturating_sub(now_ms)),
            crate::config::fmt_ms(horizon_ms)
        ),
    )
    .at("send_at"))
}

/// The customer's time zone, or the default when none is named.
fn timezone(name: Option<&str>, default: &TimeZone) -> Result<TimeZone, IntakeError> {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(default.clone());
    };
    let bad = || {
        IntakeError::new(
            ErrorCode::InvalidTimezone,
            format!(
                "customer.timezone {} is not an IANA time zone such as Europe/Moscow",
                quote(name)
            ),
        )
        .at("customer.timezone")
    };
    // Only names that could be in the database reach the lookup.
    let plausible = name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c));
    if !plausible {
        return Err(bad());
    }
    TimeZone::get(name).map_err(|_| bad())
}

/// A channel the policy may use needs a text it can carry.
fn check_text(n: &Notification, policy: &str, config: &ChannelConfig) -> Result<(), IntakeError> {
    let (channel, kind) = (config.name.as_str(), config.kind);
    let Some((field, text)) = n.part_for(Part::Text, channel, kind) else {
        if kind == ChannelKind::Email && n.html_for(channel, kind).is_some() {
            return Ok(());
        }
        let html = if kind == ChannelKind::Email {
            ", html"
        } else {
            ""
        };
        return Err(IntakeError::new(
            ErrorCode::MissingText,
            format!(
                "channel {} of policy {} has nothing to send; set content.text{html} or content.channels{}.text",
                quote(channel),
                quote(policy),
                json::segment(channel)
            ),
        )
        .at("content.text"));
    };
    fits(&field, text, config)
}

/// `text` (of `field`) fits the channel: its `max_length`, and for SMS its
/// `max_segments`.
fn fits(field: &str, text: &str, config: &ChannelConfig) -> Result<(), IntakeError> {
    let (channel, kind) = (config.name.as_str(), config.kind);
    if let Some(max) = config.max_length {
        let chars = text.chars().count();
        if chars > max {
            return Err(IntakeError::new(
                ErrorCode::TextTooLong,
                format!(
                    "{field} is {chars} characters long; channel {} takes at most {max}",
                    quote(channel)
                ),
            )
            .at(field));
        }
    }
    if kind == ChannelKind::Sms
        && let Some(max) = config.max_segments
    {
        let (encoding, segments, units) = sms_segments(text);
        if segments > max {
            let hint = match encoding {
                SmsEncoding::Ucs2 => "; text in Latin letters only (GSM-7) fits 153 a segment",
                SmsEncoding::Gsm7 => "",
            };
            return Err(IntakeError::new(
                ErrorCode::TextTooLong,
                format!(
                    "{field} needs {segments} SMS segments ({units} {}); channel {} allows at most {max}{hint}",
                    encoding.unit_name(),
                    quote(channel),
                ),
            )
            .at(field));
        }
    }
    Ok(())
}
