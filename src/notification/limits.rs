//! The structural limits `parse` enforces: they keep one message from
//! bloating Redis or breaking its keys.

use super::error::quote;
use super::{
    Content, Customer, ErrorCode, IntakeError, MAX_CHANNEL_CONTENTS, MAX_CONTACT_CHARS,
    MAX_CUSTOMER_ID_CHARS, MAX_ID_CHARS, MAX_KEY_CHARS, MAX_LINK_CHARS, MAX_POLICY_CHARS,
    MAX_PREFERENCES, MAX_STEP_CONTENTS, MAX_SUBJECT_CHARS, MAX_TEXT_CHARS, Notification, json,
};
use crate::core::template;

fn invalid(field: &str, msg: String) -> Result<(), IntakeError> {
    Err(IntakeError::new(ErrorCode::InvalidField, msg).at(field))
}

/// Length in characters, as JSON Schema's `maxLength` counts.
fn chars(s: &str) -> usize {
    s.chars().count()
}

/// The structural limits of `parse`.
pub(super) fn check_limits(n: &Notification) -> Result<(), IntakeError> {
    check_id(&n.id)?;
    if n.policy.trim().is_empty() || chars(&n.policy) > MAX_POLICY_CHARS {
        return invalid(
            "policy",
            format!(
                "policy must name a configured policy in 1 to {MAX_POLICY_CHARS} characters, not {}",
                quote(&n.policy)
            ),
        );
    }
    check_customer(&n.customer)?;
    check_content(&n.content)
}

/// `id`: the idempotency key, and part of the cascade's Redis keys.
fn check_id(id: &str) -> Result<(), IntakeError> {
    if id.is_empty() {
        return Err(IntakeError::new(
            ErrorCode::InvalidId,
            "id is empty; it is the idempotency key, e.g. \"order-1001:delayed\"",
        )
        .at("id"));
    }
    if chars(id) > MAX_ID_CHARS {
        return Err(IntakeError::new(
            ErrorCode::InvalidId,
            format!(
                "id is {} characters long; at most {MAX_ID_CHARS} are allowed",
                chars(id)
            ),
        )
        .at("id"));
    }
    if let Some(c) = id
        .chars()
        .find(|&c| c.is_whitespace() || c.is_control() || c == '{' || c == '}')
    {
        return Err(IntakeError::new(
            ErrorCode::InvalidId,
            format!(
                "id {} contains {}; use letters, digits and punctuation other than braces",
                quote(id),
                describe(c)
            ),
        )
        .at("id"));
    }
    Ok(())
}

fn check_customer(c: &Customer) -> Result<(), IntakeError> {
    if c.id.trim().is_empty() || chars(&c.id) > MAX_CUSTOMER_ID_CHARS {
        return invalid(
            "customer.id",
            format!(
                "customer.id must be 1 to {MAX_CUSTOMER_ID_CHARS} characters and not blank, not {} characters",
                chars(&c.id)
            ),
        );
    }
    // The customer id keys per-customer limits in Redis, like `id` keys the cascade.
    if let Some(ch) =
        c.id.chars()
            .find(|&ch| ch.is_control() || ch == '{' || ch == '}')
    {
        return invalid(
            "customer.id",
            format!("customer.id {} contains {}", quote(&c.id), describe(ch)),
        );
    }
    if let Some(tz) = &c.timezone
        && chars(tz) > MAX_KEY_CHARS
    {
        return Err(IntakeError::new(
            ErrorCode::InvalidTimezone,
            format!(
                "customer.timezone {} is not an IANA time zone such as Europe/Moscow",
                quote(tz)
            ),
        )
        .at("customer.timezone"));
    }
    if let Some(s) = &c.segment
        && (chars(s) > MAX_KEY_CHARS || s.chars().any(char::is_control))
    {
        return invalid(
            "customer.segment",
            format!(
                "customer.segment must be a word of at most {MAX_KEY_CHARS} characters, not {}",
                quote(s)
            ),
        );
    }
    check_contacts(c)?;
    check_channel_words(c)
}

/// The values of `customer.contacts`; their number and keys were checked
/// while reading them (`json::contacts`), where entries written as `null`
/// are still there to count.
fn check_contacts(c: &Customer) -> Result<(), IntakeError> {
    for (key, value) in &c.contacts {
        if chars(value) > MAX_CONTACT_CHARS {
            let field = format!("customer.contacts{}", json::segment(key));
            return invalid(
                &field,
                format!(
                    "{field} is {} characters long; a contact may have at most {MAX_CONTACT_CHARS}",
                    chars(value)
                ),
            );
        }
    }
    Ok(())
}

/// `customer.preferences` and `customer.opt_out`: short lists of channel words.
fn check_channel_words(c: &Customer) -> Result<(), IntakeError> {
    for (field, list) in [
        ("customer.preferences", &c.preferences),
        ("customer.opt_out", &c.opt_out),
    ] {
        if list.len() > MAX_PREFERENCES {
            return invalid(
                field,
                format!(
                    "{field} has {} entries; at most {MAX_PREFERENCES} are allowed",
                    list.len()
                ),
            );
        }
        for (i, word) in list.iter().enumerate() {
            if chars(word) > MAX_KEY_CHARS {
                return invalid(
                    &format!("{field}[{i}]"),
                    format!(
                        "{field}[{i}] is {} characters long; a channel name has at most {MAX_KEY_CHARS}",
                        chars(word)
                    ),
                );
            }
        }
    }
    Ok(())
}

fn check_content(content: &Content) -> Result<(), IntakeError> {
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
            && chars(link) <= MAX_LINK_CHARS
            && !link.chars().any(|ch| ch.is_whitespace() || ch.is_control());
        if !ok {
            return invalid(
                "content.link",
                format!(
                    "content.link {} must be an http or https URL without spaces, at most {MAX_LINK_CHARS} characters",
                    quote(link)
                ),
            );
        }
    }
    if content.channels.len() > MAX_CHANNEL_CONTENTS {
        return invalid(
            "content.channels",
            format!(
                "content.channels has {} entries; at most {MAX_CHANNEL_CONTENTS} are allowed",
                content.channels.len()
            ),
        );
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
    if content.steps.len() > MAX_STEP_CONTENTS {
        return invalid(
            "content.steps",
            format!(
                "content.steps has {} entries; at most {MAX_STEP_CONTENTS} are allowed",
                content.steps.len()
            ),
        );
    }
    for (name, texts) in &content.steps {
        if !step_name_ok(name) {
            return invalid(
                "content.steps",
                format!(
                    "content.steps has the key {}; keys are policy step names: 1 to {MAX_KEY_CHARS} lowercase letters, digits and `_`",
                    quote(name)
                ),
            );
        }
        check_texts(
            &format!("content.steps.{name}"),
            texts.text.as_deref(),
            texts.subject.as_deref(),
            texts.html.as_deref(),
        )?;
    }
    Ok(())
}

/// A key of `content.steps`: a policy step name (`config/policy.rs`), short.
fn step_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_KEY_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A map key: not blank and short.
fn check_key(field: &str, key: &str) -> Result<(), IntakeError> {
    if key_ok(key) {
        return Ok(());
    }
    Err(IntakeError::new(
        ErrorCode::InvalidField,
        format!(
            "{field} has the key {}; keys are channel names or kinds of 1 to {MAX_KEY_CHARS} characters",
            quote(key)
        ),
    )
    .at(field))
}

/// Whether a map key is usable: not blank and at most `MAX_KEY_CHARS`.
pub(super) fn key_ok(key: &str) -> bool {
    !key.trim().is_empty() && chars(key) <= MAX_KEY_CHARS
}

fn check_texts(
    field: &str,
    text: Option<&str>,
    subject: Option<&str>,
    html: Option<&str>,
) -> Result<(), IntakeError> {
    for (part, value, max) in [
        ("text", text, MAX_TEXT_CHARS),
        ("html", html, MAX_TEXT_CHARS),
        ("subject", subject, MAX_SUBJECT_CHARS),
    ] {
        if let Some(v) = value
            && chars(v) > max
        {
            return Err(IntakeError::new(
                ErrorCode::TextTooLong,
                format!(
                    "{field}.{part} is {} characters long; at most {max} are accepted",
                    chars(v)
                ),
            )
            .at(format!("{field}.{part}")));
        }
        // Every text is filled in when sent (`core::template`): a
        // placeholder that could never be filled in is refused now.
        if let Some(v) = value
            && let Err(e) = template::check(v)
        {
            let at = v[..e.offset].chars().count();
            return Err(IntakeError::new(
                ErrorCode::InvalidPlaceholder,
                format!("{field}.{part}, at character {at}: {}", e.message),
            )
            .at(format!("{field}.{part}")));
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
