//! The notification's JSON Schema (draft 2020-12), for producers to
//! validate against: `cascade schema notification`, committed as
//! `docs/notification.schema.json`, and served in the HTTP API's OpenAPI.
//!
//! The shape comes from the types in `notification` (`#[derive(JsonSchema)]`);
//! the limits come from this module's field schemas, built from the same
//! constants `parse` enforces. `tests/schema.rs` plays a generated corpus of
//! valid and invalid messages through both and fails where they disagree.
//!
//! What a schema cannot say, and the intake still refuses: a body over
//! `amqp.max_body_bytes`, bytes that are not UTF-8, a key given twice in one
//! object, and everything checked against the configuration (the policy
//! exists, the time zone is real, contacts fit their channels, a text exists
//! for every channel the policy may use).
//!
//! Patterns spell their character classes out (Unicode White_Space and the
//! control characters, as Rust's `char::is_whitespace` and `is_control`
//! mean them) instead of `\s`, whose meaning differs between regex dialects.

use schemars::{Schema, SchemaGenerator, json_schema};
use serde_json::Value;

use super::json::MAX_WHOLE_CONTACT;
use super::{
    MAX_CHANNEL_CONTENTS, MAX_CONTACT_CHARS, MAX_CONTACTS, MAX_CUSTOMER_ID_CHARS, MAX_ID_CHARS,
    MAX_KEY_CHARS, MAX_LINK_CHARS, MAX_POLICY_CHARS, MAX_PREFERENCES, MAX_STEP_CONTENTS,
    MAX_SUBJECT_CHARS, MAX_TEXT_CHARS, Notification,
};

/// Where the schema is published in the repository; also its `$id`.
pub const SCHEMA_ID: &str = "https://cascade.invalid/schemas/notification.schema.json";

/// Unicode White_Space, the characters `str::trim` removes.
const WHITESPACE: &str =
    r"\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// Unicode control characters (Cc), as `char::is_control`.
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";

/// The notification's JSON Schema, as a JSON value.
pub fn json_schema() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12()
        .for_deserialize()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let mut schema = generator.into_root_schema_for::<Notification>();
    schema.insert("$id".into(), SCHEMA_ID.into());
    schema.insert("title".into(), "cascade notification".into());
    schema.insert(
        "description".into(),
        "One message for one customer, published to the intake queue or posted to \
         POST /v1/notifications. Fields not listed here are ignored."
            .into(),
    );
    schema.to_value()
}

/// Contains a character that is not whitespace (an unanchored pattern).
fn not_blank() -> String {
    format!("[^{WHITESPACE}]")
}

pub(super) fn id(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "description": "The idempotency key: a second notification with a known id is \
                        acknowledged and counted as a duplicate, nothing is sent twice. No \
                        whitespace, control characters or braces.",
        "minLength": 1,
        "maxLength": MAX_ID_CHARS,
        "pattern": format!("^[^{WHITESPACE}{CONTROL}{{}}]+$"),
        "examples": ["order-1001:delayed"],
    })
}

pub(super) fn policy(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "description": "The name of a configured policy (its file name in policies/, without .toml).",
        "maxLength": MAX_POLICY_CHARS,
        "pattern": not_blank(),
        "examples": ["delivery_delay"],
    })
}

pub(super) fn customer_id(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "description": "The customer's id in your systems; per-customer limits count by it. \
                        Not blank; no control characters or braces.",
        "maxLength": MAX_CUSTOMER_ID_CHARS,
        "allOf": [
            { "pattern": not_blank() },
            { "pattern": format!("^[^{CONTROL}{{}}]*$") },
        ],
    })
}

pub(super) fn timezone(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "null"],
        "description": "An IANA time zone name (Europe/Moscow) for quiet hours and reports; \
                        absent, null or empty means the configured default.",
        "maxLength": MAX_KEY_CHARS,
    })
}

pub(super) fn segment(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "null"],
        "description": "A free word for reports (new, regular, vip).",
        "maxLength": MAX_KEY_CHARS,
        "pattern": format!("^[^{CONTROL}]*$"),
    })
}

/// A key of `customer.contacts` or `content.channels`.
fn key() -> Value {
    serde_json::json!({ "maxLength": MAX_KEY_CHARS, "pattern": not_blank() })
}

pub(super) fn contacts(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["object", "null"],
        "description": "Contact key (sms, email, vk, telegram, whatsapp, or a channel's own \
                        contact key) to address. A whole number (at most 2^53 - 1) is taken \
                        as its decimal text (a VK or Telegram id); null means no such contact.",
        "maxProperties": MAX_CONTACTS,
        "propertyNames": key(),
        "additionalProperties": {
            "anyOf": [
                { "type": "string", "maxLength": MAX_CONTACT_CHARS },
                {
                    "type": "integer",
                    "minimum": -(MAX_WHOLE_CONTACT as i64),
                    "maximum": MAX_WHOLE_CONTACT,
                },
                { "type": "null" },
            ],
        },
    })
}

/// `customer.preferences` and `customer.opt_out`.
pub(super) fn channel_words(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["array", "null"],
        "maxItems": MAX_PREFERENCES,
        "items": { "type": "string", "maxLength": MAX_KEY_CHARS },
    })
}

/// A text whose every `{{` opens a placeholder `core::template` fills in
/// (`{{data.<key>}}`, `{{customer.id}}`, `{{notification.id}}`, spaces or
/// tabs inside the braces) or is a literal `{{` written `{{{{`.
fn placeholders() -> String {
    format!(
        r"^(?:[^{{]|\{{(?:[^{{]|$)|\{{\{{\{{\{{|\{{\{{[ \t]*(?:data\.[a-z0-9_]{{1,{}}}|customer\.id|notification\.id)[ \t]*\}}\}})*$",
        crate::core::template::MAX_DATA_KEY_CHARS
    )
}

pub(super) fn text(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "null"],
        "maxLength": MAX_TEXT_CHARS,
        "pattern": placeholders(),
    })
}

pub(super) fn subject(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "null"],
        "maxLength": MAX_SUBJECT_CHARS,
        "pattern": placeholders(),
    })
}

pub(super) fn link(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "null"],
        "description": "Where the customer should go: an http or https URL without spaces. \
                        Email links to it through click tracking.",
        "maxLength": MAX_LINK_CHARS,
        "pattern": format!("^[Hh][Tt][Tt][Pp][Ss]?://[^{WHITESPACE}{CONTROL}]*$"),
    })
}

pub(super) fn content(generator: &mut SchemaGenerator) -> Schema {
    nullable(generator.subschema_for::<super::Content>())
}

pub(super) fn channel_contents(generator: &mut SchemaGenerator) -> Schema {
    let texts = generator.subschema_for::<super::ChannelContent>();
    json_schema!({
        "type": ["object", "null"],
        "description": "Channel name or channel kind to texts for that channel; they override \
                        the common text, subject and html.",
        "maxProperties": MAX_CHANNEL_CONTENTS,
        "propertyNames": key(),
        "additionalProperties": texts,
    })
}

pub(super) fn step_contents(generator: &mut SchemaGenerator) -> Schema {
    let texts = generator.subschema_for::<super::ChannelContent>();
    json_schema!({
        "type": ["object", "null"],
        "description": "Policy step name to texts for that step (a follow-up's own words); \
                        they win over the policy step's text, content.channels and the common \
                        texts.",
        "maxProperties": MAX_STEP_CONTENTS,
        "propertyNames": { "pattern": format!("^[a-z0-9_]{{1,{MAX_KEY_CHARS}}}$") },
        "additionalProperties": texts,
    })
}

/// `send_at` and `expires_at`: RFC 3339, as `json::rfc3339` reads it.
pub(super) fn time(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "null"],
        "format": "date-time",
        "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$",
        "examples": ["2026-11-23T09:00:00Z", "2026-11-23T12:00:00+03:00"],
    })
}

/// `schema` that also accepts `null`.
fn nullable(schema: Schema) -> Schema {
    json_schema!({ "anyOf": [schema, { "type": "null" }] })
}
