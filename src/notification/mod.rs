//! The intake message (contract §2): parse and validate the JSON a backend
//! enqueues into a typed `Notification`, or refuse it with a stable error
//! code and a sentence that says what would be right.
//!
//! Two stages:
//! - `parse` needs nothing but the body: size, UTF-8, JSON shape and the
//!   structural limits that keep one message from bloating Redis or breaking
//!   its keys.
//! - `admit` checks the notification against the configuration: the policy
//!   exists, the time zone is real, and every channel the policy may use for
//!   this customer has a well-formed contact and a text it can carry.
//!
//! Unknown fields are ignored, so producers may send more than this version
//! reads. The error codes are listed on `ErrorCode`; they are an API.

mod contact;
mod error;
mod json;
mod kept;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::config::{Catalog, ChannelConfig};
use crate::core::{ChannelKind, Policy, Recipient, unreachable};
use crate::pii;
use crate::segments::{SmsEncoding, sms_segments};

pub use error::{ErrorCode, IntakeError, MAX_MESSAGE_BYTES};
use error::{grouped, quote};

/// Longest `id`, in bytes.
pub const MAX_ID_BYTES: usize = 200;
/// Longest `policy` name, in bytes.
pub const MAX_POLICY_BYTES: usize = 100;
/// Longest `customer.id`, in bytes.
pub const MAX_CUSTOMER_ID_BYTES: usize = 200;
/// Most entries in `customer.contacts`.
pub const MAX_CONTACTS: usize = 32;
/// Longest contact value, in bytes (the longest email address is 320).
pub const MAX_CONTACT_BYTES: usize = 320;
/// Most entries in `customer.preferences` and in `customer.opt_out`.
pub const MAX_PREFERENCES: usize = 16;
/// Longest `text` or `html`, in bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Longest `subject`, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 2048;
/// Longest `link`, in bytes.
pub const MAX_LINK_BYTES: usize = 2048;
/// Longest key (contact key, channel name, preference word) and `segment`.
pub const MAX_KEY_BYTES: usize = 100;
/// Most entries in `content.channels`.
pub const MAX_CHANNEL_CONTENTS: usize = 32;

/// One message for one customer, as enqueued (contract §2).
///
/// Invariant after `parse`: `id` is 1..=200 bytes without whitespace,
/// control characters or braces; `policy` and `customer.id` are non-empty;
/// every list, map and text is within the limits above.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The idempotency key; also inside Redis hash tags, hence no braces.
    pub id: String,
    pub policy: String,
    #[serde(deserialize_with = "json::object")]
    pub customer: Customer,
    #[serde(default, deserialize_with = "json::object_or_default")]
    pub content: Content,
    /// Delays the first step.
    #[serde(
        default,
        with = "json::rfc3339",
        skip_serializing_if = "Option::is_none"
    )]
    pub send_at: Option<Timestamp>,
    /// Ends a cascade that has not been read by then.
    #[serde(
        default,
        with = "json::rfc3339",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<Timestamp>,
}

/// Who the notification is for, and where they can be reached.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub id: String,
    /// IANA name; the configured default when absent or empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Free word for reports (`new`, `vip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// Contact key (`sms`, `email`, `vk`, … or a channel's `contact`) → address.
    #[serde(
        default,
        deserialize_with = "json::contacts",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub contacts: BTreeMap<String, String>,
    /// Channel names, kinds or contact keys, most preferred first.
    #[serde(
        default,
        deserialize_with = "json::null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub preferences: Vec<String>,
    /// Channel names, kinds or contact keys never to use.
    #[serde(
        default,
        deserialize_with = "json::null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub opt_out: Vec<String>,
}

/// What to say. Per-channel texts override the common ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Content {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Where the customer should go; email links to it through click tracking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Channel name or channel kind → texts for that channel.
    #[serde(
        default,
        deserialize_with = "json::object_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub channels: BTreeMap<String, ChannelContent>,
}

/// Texts for one channel (by name) or one kind of channel.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelContent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

/// Which of the three texts of a channel.
#[derive(Clone, Copy)]
enum Part {
    Text,
    Subject,
    Html,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Text => "text",
            Part::Subject => "subject",
            Part::Html => "html",
        }
    }

    fn of_channel(self, c: &ChannelContent) -> Option<&str> {
        match self {
            Part::Text => c.text.as_deref(),
            Part::Subject => c.subject.as_deref(),
            Part::Html => c.html.as_deref(),
        }
    }

    fn of_content(self, c: &Content) -> Option<&str> {
        match self {
            Part::Text => c.text.as_deref(),
            Part::Subject => c.subject.as_deref(),
            Part::Html => c.html.as_deref(),
        }
    }
}

impl Notification {
    /// The text to send on `channel`: `content.channels.<channel>.text`, else
    /// `content.channels.<kind>.text`, else `content.text`. Blank texts do not
    /// count, so an empty per-channel text falls back to the common one.
    pub fn text_for(&self, channel: &str, kind: ChannelKind) -> Option<&str> {
        self.part_for(Part::Text, channel, kind).map(|(_, t)| t)
    }

    /// The subject for `channel`, looked up like `text_for`.
    pub fn subject_for(&self, channel: &str, kind: ChannelKind) -> Option<&str> {
        self.part_for(Part::Subject, channel, kind).map(|(_, t)| t)
    }

    /// The HTML body for `channel`, looked up like `text_for`.
    pub fn html_for(&self, channel: &str, kind: ChannelKind) -> Option<&str> {
        self.part_for(Part::Html, channel, kind).map(|(_, t)| t)
    }

    /// The text and the path of the field it came from, for messages.
    fn part_for(&self, part: Part, channel: &str, kind: ChannelKind) -> Option<(String, &str)> {
        fn present(t: Option<&str>) -> Option<&str> {
            t.filter(|t| !t.trim().is_empty())
        }
        for key in [channel, kind.as_str()] {
            let found = self.content.channels.get(key).map(|c| part.of_channel(c));
            if let Some(text) = present(found.flatten()) {
                return Some((
                    format!("content.channels{}.{}", json::segment(key), part.name()),
                    text,
                ));
            }
        }
        present(part.of_content(&self.content))
            .map(|text| (format!("content.{}", part.name()), text))
    }
}

/// A notification that passed every check, with what the runtime needs to
/// start its cascade.
///
/// Invariant: at least one channel of `notification.policy` can reach
/// `recipient`; every such channel's contact is well-formed (and stored in
/// its normal form in both `notification` and `recipient`) and has a text;
/// both hold only the contacts some channel of the policy reads.
#[derive(Clone, Debug)]
pub struct Admitted<'c> {
    pub notification: Notification,
    /// The policy it names, as configured when it was admitted.
    pub policy: &'c Policy,
    pub recipient: Recipient,
    pub send_at_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
}

/// Parses and checks the shape of an intake body: at most `max_body_bytes`,
/// UTF-8 (a leading byte-order mark is skipped), one JSON object, and every
/// field within its limits. Never panics.
pub fn parse(body: &[u8], max_body_bytes: usize) -> Result<Notification, IntakeError> {
    if body.len() > max_body_bytes {
        return Err(IntakeError::new(
            ErrorCode::BodyTooLarge,
            format!(
                "the body is {} bytes; at most {} are accepted (amqp.max_body_bytes)",
                grouped(body.len()),
                grouped(max_body_bytes)
            ),
        ));
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        IntakeError::new(
            ErrorCode::InvalidUtf8,
            format!(
                "the body is not UTF-8: invalid bytes at offset {}",
                grouped(e.valid_up_to())
            ),
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(IntakeError::new(
            ErrorCode::MalformedJson,
            "the body is empty; send one JSON object with id, policy, customer and content",
        ));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let notification: Notification = json::object(&mut de)
        .and_then(|n| de.end().map(|()| n))
        .map_err(|e| json::error_from_serde(text, &e))?;
    check_limits(&notification)?;
    Ok(notification)
}

/// `parse` with the configured body limit, then the checks against the
/// configuration: the policy exists; `customer.timezone` is an IANA zone
/// (default `[defaults] timezone`); and for every channel of every step that
/// can reach the customer, the contact has the right form for the channel's
/// kind and a text exists that fits the channel. At least one channel must be
/// reachable. Contacts no channel of the policy reads are dropped. An
/// `expires_at` in the past is not an error: the runtime records the
/// cascade as expired.
pub fn admit<'c>(body: &[u8], catalog: &'c Catalog) -> Result<Admitted<'c>, IntakeError> {
    let mut notification = parse(body, catalog.settings.amqp.max_body_bytes)?;
    let Some(policy) = catalog.policies.get(&notification.policy) else {
        let known: Vec<&str> = catalog.policies.keys().map(String::as_str).collect();
        return Err(IntakeError::new(
            ErrorCode::UnknownPolicy,
            format!(
                "policy {} is not configured; known policies: {}",
                quote(&notification.policy),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        ));
    };
    let tz = timezone(
        notification.customer.timezone.as_deref(),
        &catalog.settings.defaults.timezone,
    )?;
    let mut recipient = Recipient {
        contacts: notification.customer.contacts.clone(),
        preferences: notification.customer.preferences.clone(),
        opt_out: notification.customer.opt_out.clone(),
        tz,
    };

    let mut seen = BTreeSet::new();
    let mut skipped = Vec::new();
    for channel in policy.steps.iter().flat_map(|s| &s.channels) {
        if !seen.insert(channel.as_str()) {
            continue;
        }
        if let Some(why) = unreachable(channel, &catalog.channel_rules, &recipient) {
            skipped.push(format!("{channel} ({})", why.replace('_', " ")));
            continue;
        }
        let Some(config) = catalog.channels.get(channel) else {
            skipped.push(format!("{channel} (unknown channel)"));
            continue;
        };
        if let Some(key) = &config.rules.contact_key
            && let Some(value) = recipient.contacts.get(key)
        {
            let normal = contact::normalise(config.kind, value).map_err(|expected| {
                IntakeError::new(
                    ErrorCode::InvalidContact,
                    format!(
                        "customer.contacts{} {} {expected}",
                        json::segment(key),
                        // Masked by its kind: `scrub` would not see the
                        // id in a malformed one such as `id123456789`.
                        quote(&pii::mask_contact(config.kind, value))
                    ),
                )
            })?;
            if &normal != value {
                recipient.contacts.insert(key.clone(), normal.clone());
                notification.customer.contacts.insert(key.clone(), normal);
            }
        }
        check_text(&notification, &policy.name, config)?;
    }
    // The record keeps only what the cascade can use: a contact no channel
    // of the policy reads is personal data with no purpose there (contract §7).
    let used: BTreeSet<&str> = seen
        .iter()
        .filter_map(|ch| catalog.channels.get(*ch)?.rules.contact_key.as_deref())
        .collect();
    notification
        .customer
        .contacts
        .retain(|key, _| used.contains(key.as_str()));
    recipient
        .contacts
        .retain(|key, _| used.contains(key.as_str()));
    if seen.len() == skipped.len() {
        return Err(IntakeError::new(
            ErrorCode::NoReachableChannel,
            format!(
                "no channel of policy {} can reach customer {}: {}; add a contact for one of them to customer.contacts",
                quote(&policy.name),
                quote(&notification.customer.id),
                skipped.join(", ")
            ),
        ));
    }
    Ok(Admitted {
        policy,
        send_at_ms: notification.send_at.map(|t| t.as_millisecond()),
        expires_at_ms: notification.expires_at.map(|t| t.as_millisecond()),
        notification,
        recipient,
    })
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
fn check_send_at(send_at_ms: Option<i64>, now_ms: i64, horizon_ms: i64) -> Result<(), IntakeError> {
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
    ))
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
        ));
    };
    if let Some(max) = config.max_length {
        let chars = text.chars().count();
        if chars > max {
            return Err(IntakeError::new(
                ErrorCode::TextTooLong,
                format!(
                    "{field} is {chars} characters long; channel {} takes at most {max}",
                    quote(channel)
                ),
            ));
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
            ));
        }
    }
    Ok(())
}

/// The structural limits of `parse`.
fn check_limits(n: &Notification) -> Result<(), IntakeError> {
    let invalid = |msg: String| Err(IntakeError::new(ErrorCode::InvalidField, msg));

    if n.id.is_empty() {
        return Err(IntakeError::new(
            ErrorCode::InvalidId,
            "id is empty; it is the idempotency key, e.g. \"order-1001:delayed\"",
        ));
    }
    if n.id.len() > MAX_ID_BYTES {
        return Err(IntakeError::new(
            ErrorCode::InvalidId,
            format!(
                "id is {} bytes long; at most {MAX_ID_BYTES} are allowed",
                n.id.len()
            ),
        ));
    }
    if let Some(c) =
        n.id.chars()
            .find(|&c| c.is_whitespace() || c.is_control() || c == '{' || c == '}')
    {
        return Err(IntakeError::new(
            ErrorCode::InvalidId,
            format!(
                "id {} contains {}; use letters, digits and punctuation other than braces",
                quote(&n.id),
                describe(c)
            ),
        ));
    }
    if n.policy.trim().is_empty() || n.policy.len() > MAX_POLICY_BYTES {
        return invalid(format!(
            "policy must name a configured policy in 1 to {MAX_POLICY_BYTES} bytes, not {}",
            quote(&n.policy)
        ));
    }

    let c = &n.customer;
    if c.id.trim().is_empty() || c.id.len() > MAX_CUSTOMER_ID_BYTES {
        return invalid(format!(
            "customer.id must be 1 to {MAX_CUSTOMER_ID_BYTES} bytes, not {} bytes",
            c.id.len()
        ));
    }
    // The customer id keys per-customer limits in Redis, like `id` keys the cascade.
    if let Some(ch) =
        c.id.chars()
            .find(|&ch| ch.is_control() || ch == '{' || ch == '}')
    {
        return invalid(format!(
            "customer.id {} contains {}",
            quote(&c.id),
            describe(ch)
        ));
    }
    if let Some(tz) = &c.timezone
        && tz.len() > MAX_KEY_BYTES
    {
        return Err(IntakeError::new(
            ErrorCode::InvalidTimezone,
            format!(
                "customer.timezone {} is not an IANA time zone such as Europe/Moscow",
                quote(tz)
            ),
        ));
    }
    if let Some(s) = &c.segment
        && (s.len() > MAX_KEY_BYTES || s.chars().any(char::is_control))
    {
        return invalid(format!(
            "customer.segment must be a word of at most {MAX_KEY_BYTES} bytes, not {}",
            quote(s)
        ));
    }
    if c.contacts.len() > MAX_CONTACTS {
        return invalid(format!(
            "customer.contacts has {} entries; at most {MAX_CONTACTS} are allowed",
            c.contacts.len()
        ));
    }
    for (key, value) in &c.contacts {
        check_key("customer.contacts", key)?;
        if value.len() > MAX_CONTACT_BYTES {
            return invalid(format!(
                "customer.contacts{} is {} bytes long; a contact may have at most {MAX_CONTACT_BYTES}",
                json::segment(key),
                value.len()
            ));
        }
    }
    for (field, list) in [
        ("customer.preferences", &c.preferences),
        ("customer.opt_out", &c.opt_out),
    ] {
        if list.len() > MAX_PREFERENCES {
            return invalid(format!(
                "{field} has {} entries; at most {MAX_PREFERENCES} are allowed",
                list.len()
            ));
        }
        for (i, word) in list.iter().enumerate() {
            if word.len() > MAX_KEY_BYTES {
                return invalid(format!(
                    "{field}[{i}] is {} bytes long; a channel name has at most {MAX_KEY_BYTES}",
                    word.len()
                ));
            }
        }
    }

    let content = &n.content;
    check_texts(
        "content",
        content.text.as_deref(),
        content.subject.as_deref(),
        content.html.as_deref(),
    )?;
    if let Some(link) = &content.link {
        let scheme_ok = ["https://", "http://"].iter().any(|s| {
            link.get(..s.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(s))
        });
        let ok = scheme_ok
            && link.len() <= MAX_LINK_BYTES
            && !link.chars().any(|ch| ch.is_whitespace() || ch.is_control());
        if !ok {
            return invalid(format!(
                "content.link {} must be an http or https URL without spaces, at most {MAX_LINK_BYTES} bytes",
                quote(link)
            ));
        }
    }
    if content.channels.len() > MAX_CHANNEL_CONTENTS {
        return invalid(format!(
            "content.channels has {} entries; at most {MAX_CHANNEL_CONTENTS} are allowed",
            content.channels.len()
        ));
    }
    for (key, texts) in &content.channels {
        check_key("content.channels", key)?;
        check_texts(
            &format!("content.channels{}", json::segment(key)),
            texts.text.as_deref(),
            texts.subject.as_deref(),
            texts.html.as_deref(),
        )?;
    }
    Ok(())
}

/// A map key: non-empty and short.
fn check_key(field: &str, key: &str) -> Result<(), IntakeError> {
    if key.trim().is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(IntakeError::new(
            ErrorCode::InvalidField,
            format!(
                "{field} has the key {}; keys are channel names or kinds of 1 to {MAX_KEY_BYTES} bytes",
                quote(key)
            ),
        ));
    }
    Ok(())
}

fn check_texts(
    field: &str,
    text: Option<&str>,
    subject: Option<&str>,
    html: Option<&str>,
) -> Result<(), IntakeError> {
    for (part, value, max) in [
        ("text", text, MAX_TEXT_BYTES),
        ("html", html, MAX_TEXT_BYTES),
        ("subject", subject, MAX_SUBJECT_BYTES),
    ] {
        if let Some(v) = value
            && v.len() > max
        {
            return Err(IntakeError::new(
                ErrorCode::TextTooLong,
                format!(
                    "{field}.{part} is {} bytes long; at most {max} are accepted",
                    v.len()
                ),
            ));
        }
    }
    Ok(())
}

/// `a space`, `a control character (U+0007)`, `` `{` ``.
fn describe(c: char) -> String {
    if c == ' ' {
        "a space".to_owned()
    } else if c.is_whitespace() || c.is_control() {
        format!(
            "a {} (U+{:04X})",
            if c.is_control() {
                "control character"
            } else {
                "whitespace character"
            },
            c as u32
        )
    } else {
        format!("`{c}`")
    }
}
