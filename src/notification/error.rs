//! Why an intake message was refused: a stable machine code and one sentence.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The stable machine code of an intake error.
///
/// **This list is an API.** The code travels in the `x-cascade-error-code`
/// header of every dead-lettered message (contract §2), in the `rejected` log
/// line and in metric labels, so a code is never renamed or reused for
/// another meaning; new codes may be added.
///
/// | code | meaning |
/// |---|---|
/// | `body_too_large` | the body is longer than `amqp.max_body_bytes` |
/// | `invalid_utf8` | the body is not UTF-8 |
/// | `malformed_json` | the body is not one complete JSON document (empty, syntax error, cut short, trailing bytes) |
/// | `missing_field` | a required field (`id`, `policy`, `customer`, `customer.id`) is absent |
/// | `invalid_field` | a field has the wrong type or a value outside its limits (empty, too long, too many entries, a link that is not http(s)) |
/// | `invalid_id` | `id` is empty, longer than 200 characters, or holds whitespace, control characters, `{` or `}` |
/// | `unknown_policy` | `policy` names no configured policy |
/// | `invalid_timezone` | `customer.timezone` is not an IANA time zone name |
/// | `invalid_time` | `send_at` or `expires_at` is not an RFC 3339 time |
/// | `invalid_contact` | a contact a channel of the policy would use has the wrong form for its kind (phone, email, VK peer id, Telegram chat id) |
/// | `no_reachable_channel` | no step of the policy has a channel the customer has a contact for and has not opted out of |
/// | `missing_text` | a channel the policy may use for this customer has no text (email: no text and no html) |
/// | `text_too_long` | a text is longer than its channel takes (`max_length` characters, or `max_segments` SMS segments), or longer than 64 KiB |
/// | `poison` | handling the message failed `amqp.max_deliveries` times in its own right (the daemon panicked on it, or Redis refused its keys, e.g. a key of the wrong type); the sentence says how often and the last error, `x-cascade-deliveries` the count. Outages of Redis or RabbitMQ never count |
/// | `send_at_too_far` | `send_at` is further ahead than `defaults.send_at_horizon` (default 30 days) |
/// | `invalid_placeholder` | a text holds a placeholder that is not `{{data.<key>}}`, `{{customer.id}}` or `{{notification.id}}`, or a `{{` never closed (a literal `{{` is written `{{{{`) |
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BodyTooLarge,
    InvalidUtf8,
    MalformedJson,
    MissingField,
    InvalidField,
    InvalidId,
    UnknownPolicy,
    InvalidTimezone,
    InvalidTime,
    InvalidContact,
    NoReachableChannel,
    MissingText,
    TextTooLong,
    Poison,
    SendAtTooFar,
    InvalidPlaceholder,
}

impl ErrorCode {
    /// Every code, in the order of the table above (for metrics and docs).
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::BodyTooLarge,
        ErrorCode::InvalidUtf8,
        ErrorCode::MalformedJson,
        ErrorCode::MissingField,
        ErrorCode::InvalidField,
        ErrorCode::InvalidId,
        ErrorCode::UnknownPolicy,
        ErrorCode::InvalidTimezone,
        ErrorCode::InvalidTime,
        ErrorCode::InvalidContact,
        ErrorCode::NoReachableChannel,
        ErrorCode::MissingText,
        ErrorCode::TextTooLong,
        ErrorCode::Poison,
        ErrorCode::SendAtTooFar,
        ErrorCode::InvalidPlaceholder,
    ];

    /// The machine word, as written in the dead-letter header.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::InvalidUtf8 => "invalid_utf8",
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::InvalidId => "invalid_id",
            ErrorCode::UnknownPolicy => "unknown_policy",
            ErrorCode::InvalidTimezone => "invalid_timezone",
            ErrorCode::InvalidTime => "invalid_time",
            ErrorCode::InvalidContact => "invalid_contact",
            ErrorCode::NoReachableChannel => "no_reachable_channel",
            ErrorCode::MissingText => "missing_text",
            ErrorCode::TextTooLong => "text_too_long",
            ErrorCode::Poison => "poison",
            ErrorCode::SendAtTooFar => "send_at_too_far",
            ErrorCode::InvalidPlaceholder => "invalid_placeholder",
        }
    }

    /// The code for a machine word, e.g. read back from a dead-letter header.
    pub fn parse(word: &str) -> Option<ErrorCode> {
        Self::ALL.into_iter().find(|c| c.as_str() == word)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An intake message refused: the machine code and one sentence that names
/// the field and says what would be right.
///
/// Invariant: `message` is non-empty, has no control characters (it goes
/// into an AMQP header and a log line), holds no contact in the clear
/// (phones, email addresses and messenger ids quoted from the message are
/// masked by `pii::scrub`, contract §7) and is at most `MAX_MESSAGE_BYTES`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct IntakeError {
    pub code: ErrorCode,
    pub message: String,
    /// The JSON path of the field at fault (`customer.contacts.sms`,
    /// `customer.opt_out[2]`), when one field is: the HTTP intake answers
    /// it, so a form can point at the field.
    pub field: Option<String>,
}

/// Longest `IntakeError::message`; longer sentences are cut with `…`.
pub const MAX_MESSAGE_BYTES: usize = 1024;

impl IntakeError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let message: String = message
            .into()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        // Sentences quote the message's values, and serde_json's texts
        // quote them too: masked here, before the cut, so no contact is
        // cut in half and left readable.
        let message = crate::pii::scrub(&message);
        let message = message.trim();
        let message = if message.is_empty() {
            format!("the notification was refused ({code})")
        } else {
            truncate(message, MAX_MESSAGE_BYTES)
        };
        IntakeError {
            code,
            message,
            field: None,
        }
    }

    /// The same error, naming the field at fault (an empty path, the body
    /// itself, names none).
    pub fn at(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        self.field = (!field.is_empty()).then_some(field);
        self
    }
}

/// `s` cut to at most `max` bytes on a character boundary, marked with `…`.
pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A value from the message, for quoting in a sentence: in backticks, cut to
/// 64 characters, control characters escaped.
pub(super) fn quote(value: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut out = String::from("`");
    for (i, c) in value.chars().enumerate() {
        if i == MAX_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out.push('`');
    out
}

/// `1048577` → `1,048,577`: a count that may run to millions (body sizes,
/// byte offsets), grouped so that `pii::scrub` does not take it for a
/// phone number and the reader need not count digits.
pub(super) fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
