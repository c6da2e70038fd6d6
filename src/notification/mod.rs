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

mod admit;
mod contact;
mod error;
mod json;
mod kept;
mod limits;
pub mod schema;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::core::{ChannelKind, Policy, Recipient, Step};

pub use admit::{admit, admit_at};
use error::grouped;
pub use error::{ErrorCode, IntakeError, MAX_MESSAGE_BYTES};
use limits::check_limits;
pub use schema::json_schema;

// Lengths count characters (Unicode scalar values), as JSON Schema's
// `maxLength` does, so the published schema and the intake agree.

/// Longest `id`, in characters.
pub const MAX_ID_CHARS: usize = 200;
/// Longest `policy` name, in characters.
pub const MAX_POLICY_CHARS: usize = 100;
/// Longest `customer.id`, in characters.
pub const MAX_CUSTOMER_ID_CHARS: usize = 200;
/// Most entries in `customer.contacts` (entries written as `null` count too).
pub const MAX_CONTACTS: usize = 32;
/// Longest contact value, in characters (the longest email address is 320).
pub const MAX_CONTACT_CHARS: usize = 320;
/// Most entries in `customer.preferences` and in `customer.opt_out`.
pub const MAX_PREFERENCES: usize = 16;
/// Longest `text` or `html`, in characters.
pub const MAX_TEXT_CHARS: usize = 64 * 1024;
/// Longest `subject`, in characters.
pub const MAX_SUBJECT_CHARS: usize = 2048;
/// Longest `link`, in characters.
pub const MAX_LINK_CHARS: usize = 2048;
/// Longest key (contact key, channel name, preference word), `segment` and
/// `timezone`, in characters.
pub const MAX_KEY_CHARS: usize = 100;
/// Most entries in `content.channels`.
pub const MAX_CHANNEL_CONTENTS: usize = 32;
/// Most entries in `content.steps`.
pub const MAX_STEP_CONTENTS: usize = 32;

/// One message for one customer, as enqueued (contract §2).
///
/// Invariant after `parse`: `id` is 1..=200 characters without whitespace,
/// control characters or braces; `policy` and `customer.id` are non-empty;
/// every list, map and text is within the limits above.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Notification {
    /// The idempotency key; also inside Redis hash tags, hence no braces.
    #[schemars(schema_with = "schema::id")]
    pub id: String,
    #[schemars(schema_with = "schema::policy")]
    pub policy: String,
    #[serde(deserialize_with = "json::object")]
    pub customer: Customer,
    #[serde(default, deserialize_with = "json::object_or_default")]
    #[schemars(schema_with = "schema::content")]
    pub content: Content,
    /// Delays the first step.
    #[serde(
        default,
        with = "json::rfc3339",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "schema::time")]
    pub send_at: Option<Timestamp>,
    /// Ends a cascade that has not been read by then.
    #[serde(
        default,
        with = "json::rfc3339",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "schema::time")]
    pub expires_at: Option<Timestamp>,
    /// The customer's reply a staff cascade hands over (`core::replies`).
    /// Set by the daemon only: `parse` drops whatever a producer sends.
    #[serde(
        default,
        deserialize_with = "json::lenient",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(skip)]
    pub reply: Option<ReplyOf>,
}

/// What staff need to answer a customer's reply: carried by the staff
/// cascade's notification and sent in the webhook body as `reply`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplyOf {
    /// The notification the customer replied to.
    pub notification_id: String,
    pub policy: String,
    pub customer_id: String,
    /// The channel the reply came in on.
    pub channel: String,
    pub text: String,
    /// RFC 3339.
    pub received_at: String,
    /// A signed page where staff mark the reply answered.
    pub answer_url: String,
}

/// Who the notification is for, and where they can be reached.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Customer {
    #[schemars(schema_with = "schema::customer_id")]
    pub id: String,
    /// IANA name; the configured default when absent or empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::timezone")]
    pub timezone: Option<String>,
    /// Free word for reports (`new`, `vip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::segment")]
    pub segment: Option<String>,
    /// Contact key (`sms`, `email`, `vk`, … or a channel's `contact`) → address.
    #[serde(
        default,
        deserialize_with = "json::contacts",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    #[schemars(schema_with = "schema::contacts")]
    pub contacts: BTreeMap<String, String>,
    /// Channel names, kinds or contact keys, most preferred first.
    #[serde(
        default,
        deserialize_with = "json::null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(schema_with = "schema::channel_words")]
    pub preferences: Vec<String>,
    /// Channel names, kinds or contact keys never to use.
    #[serde(
        default,
        deserialize_with = "json::null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(schema_with = "schema::channel_words")]
    pub opt_out: Vec<String>,
}

/// What to say. Per-channel texts override the common ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Content {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::text")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::subject")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::text")]
    pub html: Option<String>,
    /// Where the customer should go; email links to it through click tracking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::link")]
    pub link: Option<String>,
    /// Channel name or channel kind → texts for that channel.
    #[serde(
        default,
        deserialize_with = "json::object_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    #[schemars(schema_with = "schema::channel_contents")]
    pub channels: BTreeMap<String, ChannelContent>,
    /// Policy step name → texts for that step (a follow-up's own words,
    /// `{{data.slot}}` and all): they win over every other text of the
    /// step's channels (`Notification::step_texts`).
    #[serde(
        default,
        deserialize_with = "json::object_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    #[schemars(schema_with = "schema::step_contents")]
    pub steps: BTreeMap<String, ChannelContent>,
}

/// Texts for one channel (by name) or one kind of channel.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChannelContent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::text")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::subject")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::text")]
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

    /// The texts a send of `step` says on `channel`, placeholders not yet
    /// filled in: `content.steps.<step name>` when it has a text or an
    /// html, else the policy step's own `text` (and `subject`), else
    /// `text_for`, `subject_for` and `html_for`. A step's texts come as a
    /// set: an email of a step text has the step's subject and html or none.
    pub fn step_texts<'a>(
        &'a self,
        step: Option<&'a Step>,
        channel: &str,
        kind: ChannelKind,
    ) -> StepTexts<'a> {
        fn present(t: Option<&str>) -> Option<&str> {
            t.filter(|t| !t.trim().is_empty())
        }
        let name = step.and_then(|s| s.name.as_deref());
        if let Some(c) = name.and_then(|n| self.content.steps.get(n))
            && (present(c.text.as_deref()).is_some() || present(c.html.as_deref()).is_some())
        {
            return StepTexts {
                text: present(c.text.as_deref()),
                subject: present(c.subject.as_deref()),
                html: present(c.html.as_deref()),
            };
        }
        if let Some(s) = step
            && let Some(text) = present(s.text.as_deref())
        {
            return StepTexts {
                text: Some(text),
                subject: present(s.subject.as_deref()),
                html: None,
            };
        }
        StepTexts {
            text: self.text_for(channel, kind),
            subject: self.subject_for(channel, kind),
            html: self.html_for(channel, kind),
        }
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

/// The texts of one send before their placeholders are filled in
/// (`Notification::step_texts`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepTexts<'a> {
    pub text: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub html: Option<&'a str>,
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
    let mut notification: Notification = json::object(&mut de)
        .and_then(|n| de.end().map(|()| n))
        .map_err(|e| json::error_from_serde(text, &e))?;
    notification.reply = None;
    check_limits(&notification)?;
    Ok(notification)
}
