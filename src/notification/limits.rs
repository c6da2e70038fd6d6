//! The structural limits `parse` enforces: they keep one message from
//! bloating Redis or breaking its keys.

use super::error::quote;
use super::{
    Content, Customer, ErrorCode, IntakeError, MAX_CHANNEL_CONTENTS, MAX_CONTACT_BYTES,
    MAX_CONTACTS, MAX_CUSTOMER_ID_BYTES, MAX_ID_BYTES, MAX_KEY_BYTES, MAX_LINK_BYTES,
    MAX_POLICY_BYTES, MAX_PREFERENCES, MAX_SUBJECT_BYTES, MAX_TEXT_BYTES, Notification, json,
};

fn invalid(msg: String) -> Result<(), IntakeError> {
    Err(IntakeError::new(ErrorCode::InvalidField, msg))
}

/// The structural limits of `parse`.
pub(super) fn check_limits(n: &Notification) -> Result<(), IntakeError> {
    check_id(&n.id)?;
    if n.policy.trim().is_empty() || n.policy.len() > MAX_POLICY_BYTES {
        return invalid(format!(
            "policy must name a configured policy in 1 to {MAX_POLICY_BYTES} bytes, not {}",
            quote(&n.policy)
        ));
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
        ));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(IntakeError::new(
            ErrorCode::InvalidId,
            format!(
                "id is {} bytes long; at most {MAX_ID_BYTES} are allowed",
                id.len()
            ),
        ));
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
        ));
    }
    Ok(())
}

fn check_customer(c: &Customer) -> Result<(), IntakeError> {
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
    check_contacts(c)?;
    check_channel_words(c)
}

fn check_contacts(c: &Customer) -> Result<(), IntakeError> {
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
    Ok(())
}

/// `customer.preferences` and `customer.opt_out`: short lists of channel words.
fn check_channel_words(c: &Customer) -> Result<(), IntakeError> {
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
