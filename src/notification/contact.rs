//! The form of a customer's address for each channel kind. Checked at intake
//! so a typo is a dead-lettered message with a reason, not a permanent send
//! error hours later.

use crate::core::ChannelKind;

/// The contact in its normal form (trimmed; phone separators removed;
/// numeric ids in plain decimal), or what it should have looked like. The
/// hints describe the form rather than show a sample contact: the sentence
/// is masked (`pii::scrub`), and a masked sample would only confuse.
pub(super) fn normalise(kind: ChannelKind, value: &str) -> Result<String, &'static str> {
    let value = value.trim();
    match kind {
        ChannelKind::Sms | ChannelKind::Whatsapp => phone(value)
            .ok_or("is not a phone number in E.164 form: a + and 8 to 15 digits, the first not 0"),
        ChannelKind::Email => email(value)
            .then(|| value.to_owned())
            .ok_or("is not an email address: a local part, one @ and a domain such as example.ru"),
        ChannelKind::Vk => vk_peer_id(value)
            .map(|id| id.to_string())
            .ok_or("is not a VK peer id (a positive whole number)"),
        ChannelKind::Telegram => telegram_chat_id(value)
            .map(|id| id.to_string())
            .ok_or("is not a Telegram chat id (a whole number other than 0, negative for groups)"),
        // A webhook's address, if it reads one, means something only to the receiver.
        ChannelKind::Webhook => Ok(value.to_owned()),
    }
}

/// `+7 (916) 123-45-67` → `+79161234567`: a `+`, then 8 to 15 digits, the
/// first not 0; spaces, dashes, dots and parentheses between them are dropped.
fn phone(value: &str) -> Option<String> {
    let rest = value.strip_prefix('+')?;
    let mut digits = String::with_capacity(16);
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    let ok = (8..=15).contains(&digits.len()) && !digits.starts_with('0');
    ok.then(|| format!("+{digits}"))
}

/// One `@`; a local part of 1..=64 characters; a domain of dot-separated,
/// non-empty labels (at least two); no spaces, controls or the characters
/// that would need quoting in a mail header.
fn email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    let bad = |c: char| {
        c.is_whitespace() || c.is_control() || "@<>()[]\\,;:\"".contains(c) || c == '\u{7f}'
    };
    let local_ok = (1..=64).contains(&local.chars().count())
        && !local.chars().any(bad)
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    local_ok && domain_ok
}

/// A VK peer id: a positive whole number (users, and chats from 2000000001).
fn vk_peer_id(value: &str) -> Option<i64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<i64>().ok().filter(|&id| id > 0)
}

/// A Telegram chat id: a non-zero whole number; groups and channels are negative.
fn telegram_chat_id(value: &str) -> Option<i64> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<i64>().ok().filter(|&id| id != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones() {
        assert_eq!(phone("+79161234567").as_deref(), Some("+79161234567"));
        assert_eq!(phone("+7 (916) 123-45-67").as_deref(), Some("+79161234567"));
        assert_eq!(phone("+4420 7946.0958").as_deref(), Some("+442079460958"));
        for bad in [
            "",
            "+",
            "+7916",
            "89161234567",
            "+0123456789",
            "+7916123456789012",
            "+7916abc4567",
            "+7 916 123 45 67 ext 2",
        ] {
            assert_eq!(phone(bad), None, "{bad}");
        }
    }

    #[test]
    fn emails() {
        for good in [
            "ivan@example.ru",
            "i.van+tag@mail.example.co.uk",
            "иван@пример.рф",
        ] {
            assert!(email(good), "{good}");
        }
        for bad in [
            "",
            "ivan",
            "ivan@",
            "@example.ru",
            "ivan@example",
            "ivan@@example.ru",
            "iv an@example.ru",
            "ivan@exa mple.ru",
            "ivan@.example.ru",
            "ivan@example..ru",
            "ivan@example.ru.",
            "<ivan@example.ru>",
            "ivan@example.ru, boss@example.ru",
            ".ivan@example.ru",
        ] {
            assert!(!email(bad), "{bad}");
        }
    }

    #[test]
    fn ids() {
        assert_eq!(vk_peer_id("123456789"), Some(123456789));
        assert_eq!(vk_peer_id("2000000001"), Some(2000000001));
        for bad in ["", "0", "-5", "+5", "12a", "99999999999999999999", "1 2"] {
            assert_eq!(vk_peer_id(bad), None, "{bad}");
        }
        assert_eq!(telegram_chat_id("5551234"), Some(5551234));
        assert_eq!(telegram_chat_id("-1001234567890"), Some(-1001234567890));
        for bad in ["", "-", "0", "--5", "+5", "@channel", "5.5"] {
            assert_eq!(telegram_chat_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn normal_forms() {
        assert_eq!(
            normalise(ChannelKind::Sms, " +7 916 123-45-67 "),
            Ok("+79161234567".into())
        );
        assert_eq!(normalise(ChannelKind::Vk, "007"), Ok("7".into()));
        assert_eq!(
            normalise(ChannelKind::Email, " ivan@example.ru"),
            Ok("ivan@example.ru".into())
        );
        assert!(normalise(ChannelKind::Telegram, "@ivan").is_err());
        assert_eq!(
            normalise(ChannelKind::Webhook, "anything"),
            Ok("anything".into())
        );
    }
}
