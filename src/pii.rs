//! Personal data in what the daemon writes (contract §7): phones, email
//! addresses and messenger ids are masked the same way in logs, the events
//! stream, dead-letter headers and `cascade status`.
//!
//! Two tools:
//! - `mask_*` and `mask_contact` mask a value known to be a contact, for a
//!   log field that names one.
//! - `scrub` masks every contact it can recognise inside free text: a
//!   provider's error, an SMTP reply that repeats the address, a sentence
//!   about a refused notification that quotes its values.
//!
//! Both produce the same form for the same contact, so one customer's
//! address looks alike wherever it appears: `+7916•••4567`, `7916•••4567`
//! (a WhatsApp id), `iv•••@example.ru`, `12•••89` (a VK or Telegram id).
//! Digits are kept from each end only when at least three stay hidden.
//!
//! This module is a leaf: of the rest of the daemon it knows only
//! `ChannelKind`.

use std::borrow::Cow;

use crate::core::ChannelKind;

/// What stands for the hidden part (three U+2022 bullets).
pub const MASK: &str = "•••";

/// Fewest digits `scrub` takes for a phone number or a messenger id. Shorter
/// numbers (SMTP codes, steps, counts, years) are left alone; so are VK ids
/// of six digits or fewer, which free text cannot tell from any other number.
pub const MIN_DIGITS: usize = 7;

/// A phone number: `+79161234567` → `+7916•••4567`. Separators are dropped,
/// so every way of writing one number masks alike. A value that is not
/// digits, separators and a leading `+` is hidden whole.
pub fn mask_phone(value: &str) -> String {
    let value = value.trim();
    let (sign, rest) = match value.strip_prefix('+') {
        Some(rest) => ("+", rest),
        None => ("", value),
    };
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return MASK.to_owned(),
        }
    }
    masked_digits(sign, &digits)
}

/// An email address: `ivan@example.ru` → `iv•••@example.ru`. The domain
/// stays (it says which provider bounced); of the local part, at most two
/// characters, and always at least one fewer than it has.
pub fn mask_email(value: &str) -> String {
    let value = value.trim();
    let Some((local, domain)) = value.rsplit_once('@') else {
        return MASK.to_owned();
    };
    let keep = match local.chars().count() {
        0 | 1 => 0,
        2 => 1,
        _ => 2,
    };
    let head: String = local.chars().take(keep).collect();
    format!("{head}{MASK}@{domain}")
}

/// A numeric messenger id (a VK peer id, a Telegram chat id, negative for
/// groups): `123456789` → `12•••89`, `-1001234567890` → `-1001•••7890`.
/// Ids of fewer than seven digits, and anything that is not a whole number,
/// are hidden whole.
pub fn mask_id(value: &str) -> String {
    let value = value.trim();
    let (sign, digits) = match value.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", value),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return MASK.to_owned();
    }
    masked_digits(sign, digits)
}

/// A contact of a channel kind, masked by its form. A webhook's contact
/// means something only to its receiver, so nothing of it is shown.
pub fn mask_contact(kind: ChannelKind, value: &str) -> String {
    match kind {
        ChannelKind::Sms | ChannelKind::Whatsapp => mask_phone(value),
        ChannelKind::Email => mask_email(value),
        ChannelKind::Vk | ChannelKind::Telegram => mask_id(value),
        ChannelKind::Webhook => MASK.to_owned(),
    }
}

/// `text` with every email address and every phone-like number masked, as
/// `mask_email`, `mask_phone` and `mask_id` would mask them. Borrowed when
/// there was nothing to mask.
///
/// An email address is a local part, `@` and a domain. A phone-like number
/// is at least `MIN_DIGITS` digits, perhaps after a `+` (also as `%2B`, in
/// a URL) or a `-` (a Telegram group), perhaps in groups parted by a space,
/// a dash or parentheses (`+7 (916) 123-45-67`). Not taken: digits glued to
/// letters (`FAKE000001`, `gsmtp7a1b`), dotted, comma- or colon-separated
/// numbers (`5.1.1`, `127.0.0.1:2525`, `1,048,576`, `09:00:00`), and ISO
/// dates (`2026-11-23`). Erring the other way is cheaper: a long number
/// that is no contact (`HTTP 503 1234567`) is masked too.
pub fn scrub(text: &str) -> Cow<'_, str> {
    match scrub_emails(text) {
        Cow::Borrowed(t) => scrub_numbers(t),
        Cow::Owned(s) => Cow::Owned(scrub_numbers(&s).into_owned()),
    }
}

/// Keeps digits from each end only when at least three stay hidden: four
/// from each end of 11 or more (`+7916•••4567`), two of 7 to 10 (`55•••34`),
/// none of fewer.
fn masked_digits(sign: &str, digits: &str) -> String {
    let n = digits.len();
    let keep = match n {
        n if n >= 11 => 4,
        n if n >= MIN_DIGITS => 2,
        _ => return format!("{sign}{MASK}"),
    };
    // ASCII digits only, so byte offsets are character boundaries.
    format!("{sign}{}{MASK}{}", &digits[..keep], &digits[n - keep..])
}

/// Characters `scrub` reads as part of an address's local part. Narrower
/// than RFC 5322 on purpose: quotes, backticks and brackets around an
/// address in a sentence stay outside it.
fn is_local(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-')
}

fn is_domain(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '-')
}

fn scrub_emails(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    // Bytes of `text` up to `copied` are in `out` (or masked there).
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = text[from..].find('@') {
        let at = from + found;
        let mut start = at;
        for (i, c) in text[copied..at].char_indices().rev() {
            if !is_local(c) {
                break;
            }
            start = copied + i;
        }
        // A local part does not start with a dot (`…end of sentence.ivan@`).
        while text[start..at].starts_with('.') {
            start += 1;
        }
        let after = at + 1;
        let mut end = after;
        for (i, c) in text[after..].char_indices() {
            if !is_domain(c) {
                break;
            }
            end = after + i + c.len_utf8();
        }
        // Nor does a domain end with one (`… to ivan@example.ru.`).
        while end > after && text[after..end].ends_with(['.', '-']) {
            end -= 1;
        }
        let domain_ok = text[after..end]
            .chars()
            .next()
            .is_some_and(char::is_alphanumeric);
        if start < at && domain_ok {
            out.push_str(&text[copied..start]);
            out.push_str(&mask_email(&text[start..end]));
            copied = end;
            from = end;
        } else {
            from = after;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// Separators a phone number may have between its groups of digits.
fn is_separator(b: u8) -> bool {
    matches!(b, b' ' | b'-' | b'(' | b')')
}

/// Most separator characters between two groups (`) ` in `(916) 123`).
const MAX_SEPARATORS: usize = 2;

/// Punctuation that joins numbers into something else when a digit stands
/// on its other side: a version or SMTP status (`5.1.1`), an address
/// (`127.0.0.1:2525`), a time (`09:00`), a decimal or a grouped count.
fn is_joiner(b: u8) -> bool {
    matches!(b, b'.' | b':' | b',')
}

fn scrub_numbers(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let Some(run) = number_at(text, i) else {
            i += 1;
            continue;
        };
        if let Some(masked) = run.masked {
            out.push_str(&text[copied..i]);
            out.push_str(&masked);
            copied = run.end;
        }
        i = run.end.max(i + 1);
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// A number read by `number_at`: where it ends, and its masked form if it
/// is long enough to be a phone or an id.
struct Run {
    end: usize,
    masked: Option<String>,
}

/// The number that starts at byte `i` of `text`, if one starts there: a
/// digit, `+` or `-` followed by a digit, after something that is not part
/// of a word or of a dotted number.
fn number_at(text: &str, i: usize) -> Option<Run> {
    let bytes = text.as_bytes();
    let b = bytes[i];
    // A `+` in a URL's query (`?to=%2B79161234567`, in an HTTP client's
    // error) is percent-encoded.
    let sign_len = match b {
        b'+' | b'-' => 1,
        b'%' if bytes
            .get(i + 1..i + 3)
            .is_some_and(|h| h.eq_ignore_ascii_case(b"2B")) =>
        {
            3
        }
        _ => 0,
    };
    let signed = sign_len > 0;
    let first_digit = bytes.get(i + sign_len).is_some_and(u8::is_ascii_digit);
    if !first_digit || !starts_a_number(text, i) {
        return None;
    }
    let sign = match sign_len {
        0 => "",
        1 => &text[i..i + 1],
        _ => "+",
    };
    // Groups of digits as byte ranges.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut j = i + sign_len;
    loop {
        let start = j;
        while j < bytes.len() && bytes[j].is_ascii_digit() {
            j += 1;
        }
        groups.push((start, j));
        let mut k = j;
        while k < bytes.len() && k - j < MAX_SEPARATORS && is_separator(bytes[k]) {
            k += 1;
        }
        if k > j && bytes.get(k).is_some_and(u8::is_ascii_digit) {
            j = k;
        } else {
            break;
        }
    }
    // An ISO date is not a phone: step over it, and let what follows be read anew.
    if !signed && is_date(text, &groups) {
        return Some(Run {
            end: groups[2].1,
            masked: None,
        });
    }
    // Drop trailing groups that run into a word or a dotted number
    // (`+79161234567 12:00` keeps the phone).
    while let Some(&(_, end)) = groups.last() {
        if ends_a_number(text, end) {
            break;
        }
        groups.pop();
    }
    let end = groups.last().map(|g| g.1)?;
    let digits: String = groups.iter().map(|&(s, e)| &text[s..e]).collect();
    let masked = (digits.len() >= MIN_DIGITS).then(|| masked_digits(sign, &digits));
    Some(Run { end, masked })
}

/// Whether a number may start at byte `i`: not inside a word (`id123`,
/// `FAKE000001`), nor after a dash that hangs on one (`order-1234567`), nor
/// after the dot or colon of a dotted number (`5.1.1`, `:2525`).
fn starts_a_number(text: &str, i: usize) -> bool {
    let before = &text[..i];
    let mut back = before.chars().rev();
    let Some(prev) = back.next() else {
        return true;
    };
    if prev.is_alphanumeric() || prev == '_' || prev == '+' {
        return false;
    }
    if prev == '-' {
        // A sign is read where the dash itself starts; a digit after a dash
        // that was not a sign belongs to a word.
        return false;
    }
    if prev.is_ascii() && is_joiner(prev as u8) {
        return !back.next().is_some_and(|c| c.is_ascii_digit());
    }
    true
}

/// Whether a number may end before byte `end`: not glued to a letter (of
/// any script), and not followed by the dot or colon of a dotted number.
fn ends_a_number(text: &str, end: usize) -> bool {
    let mut after = text[end..].chars();
    let Some(next) = after.next() else {
        return true;
    };
    if next.is_alphanumeric() || next == '_' {
        return false;
    }
    if next.is_ascii() && is_joiner(next as u8) {
        return !after.next().is_some_and(|c| c.is_ascii_digit());
    }
    true
}

/// `2026-11-23`: groups of 4, 2 and 2 digits parted by single dashes.
fn is_date(text: &str, groups: &[(usize, usize)]) -> bool {
    let [(s0, e0), (s1, e1), (s2, e2), ..] = groups else {
        return false;
    };
    let bytes = text.as_bytes();
    e0 - s0 == 4
        && e1 - s1 == 2
        && e2 - s2 == 2
        && *s1 == e0 + 1
        && *s2 == e1 + 1
        && bytes[*e0] == b'-'
        && bytes[*e1] == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones() {
        assert_eq!(mask_phone("+79161234567"), "+7916•••4567");
        assert_eq!(mask_phone("+7 (916) 123-45-67"), "+7916•••4567");
        assert_eq!(mask_phone("79161234567"), "7916•••4567");
        assert_eq!(mask_phone("+442079460958"), "+4420•••0958");
        assert_eq!(mask_phone("+3612345678"), "+36•••78");
        assert_eq!(mask_phone("+7916"), "+•••");
        assert_eq!(mask_phone("call me"), "•••");
        assert_eq!(mask_phone(""), "•••");
    }

    #[test]
    fn emails() {
        assert_eq!(mask_email("ivan@example.ru"), "iv•••@example.ru");
        assert_eq!(mask_email("ab@example.ru"), "a•••@example.ru");
        assert_eq!(mask_email("a@example.ru"), "•••@example.ru");
        assert_eq!(mask_email("иван@пример.рф"), "ив•••@пример.рф");
        assert_eq!(mask_email("ivan@example"), "iv•••@example");
        assert_eq!(mask_email("not an address"), "•••");
    }

    #[test]
    fn messenger_ids() {
        assert_eq!(mask_id("123456789"), "12•••89");
        assert_eq!(mask_id("5551234"), "55•••34");
        assert_eq!(mask_id("-1001234567890"), "-1001•••7890");
        assert_eq!(mask_id("123456"), "•••");
        assert_eq!(mask_id("42"), "•••");
        assert_eq!(mask_id("id123456789"), "•••");
        assert_eq!(mask_id("@ivan"), "•••");
    }

    #[test]
    fn contacts_by_kind() {
        assert_eq!(
            mask_contact(ChannelKind::Sms, "+79161234567"),
            "+7916•••4567"
        );
        assert_eq!(
            mask_contact(ChannelKind::Whatsapp, "+79161234567"),
            "+7916•••4567"
        );
        assert_eq!(
            mask_contact(ChannelKind::Email, "ivan@example.ru"),
            "iv•••@example.ru"
        );
        assert_eq!(mask_contact(ChannelKind::Vk, "123456789"), "12•••89");
        assert_eq!(mask_contact(ChannelKind::Telegram, "5551234"), "55•••34");
        assert_eq!(mask_contact(ChannelKind::Webhook, "crm-42"), "•••");
    }

    #[test]
    fn smtp_replies() {
        assert_eq!(
            scrub("550 5.1.1 <ivan@example.ru>: Recipient address rejected"),
            "550 5.1.1 <iv•••@example.ru>: Recipient address rejected"
        );
        assert_eq!(
            scrub(
                "permanent error (550): 5.1.1 <ivan.petrov+shop@mail.example.co.uk>: \
                 Recipient address rejected: User unknown in virtual mailbox table"
            ),
            "permanent error (550): 5.1.1 <iv•••@mail.example.co.uk>: \
             Recipient address rejected: User unknown in virtual mailbox table"
        );
        assert_eq!(
            scrub("250 2.0.0 Ok: queued as FAKE000001"),
            "250 2.0.0 Ok: queued as FAKE000001"
        );
        assert_eq!(
            scrub("451 4.3.0 Temporary failure, try again later"),
            "451 4.3.0 Temporary failure, try again later"
        );
    }

    #[test]
    fn several_contacts_in_one_text() {
        assert_eq!(
            scrub("to +79161234567, ivan@example.ru and VK 123456789; also 79161234567."),
            "to +7916•••4567, iv•••@example.ru and VK 12•••89; also 7916•••4567."
        );
        assert_eq!(
            scrub(r#"invalid type: string "+79161234567", expected a whole number"#),
            r#"invalid type: string "+7916•••4567", expected a whole number"#
        );
        assert_eq!(
            scrub("chat_id=-1001234567890&peer_id=2000000001"),
            "chat_id=-1001•••7890&peer_id=20•••01"
        );
        assert_eq!(
            scrub("error sending request for url (http://gw/send?to=%2B79161234567&text=Hi)"),
            "error sending request for url (http://gw/send?to=+7916•••4567&text=Hi)"
        );
        assert_eq!(
            scrub("call +7 (916) 123-45-67 or 8-916-123-45-67 now"),
            "call +7916•••4567 or 8916•••4567 now"
        );
    }

    #[test]
    fn cyrillic_text() {
        assert_eq!(
            scrub("Клиент иван@пример.рф, телефон +79161234567: заказ 1001 задерживается на 2 дня"),
            "Клиент ив•••@пример.рф, телефон +7916•••4567: заказ 1001 задерживается на 2 дня"
        );
        assert_eq!(
            scrub("тел.79161234567, почта ivan@example.ru."),
            "тел.7916•••4567, почта iv•••@example.ru."
        );
    }

    #[test]
    fn what_is_not_a_contact_stays() {
        for text in [
            "550 5.1.1 User unknown",
            "step 2 of 3: HTTP 503 after 2 attempts",
            "SMSC error 7: bad phone number format",
            "send_at must be an RFC 3339 time, such as 2026-11-23T09:00:00Z",
            "due 2026-11-23 09:00:00 in Europe/Moscow",
            "cannot connect to 127.0.0.1:2525 (os error 111)",
            "connection to 192.168.100.200:25 refused",
            "the body is 1,048,577 bytes",
            "queued as FAKE000001, wamid.HBgLNzkxNjEyMzQ1Njc",
            "order-1001:delayed, order-12345678:2, c_12345678",
            "Заказ 1001 задерживается на 2 дня",
            "@channel is not a chat id",
            "version 0.11.12345678",
            "",
        ] {
            assert_eq!(scrub(text), text);
            assert!(matches!(scrub(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn a_phone_next_to_a_time_is_still_masked() {
        assert_eq!(scrub("+79161234567 12:00"), "+7916•••4567 12:00");
        assert_eq!(scrub("2026-11-23 79161234567"), "2026-11-23 7916•••4567");
    }

    #[test]
    fn a_long_number_is_masked_even_when_it_is_no_contact() {
        assert_eq!(scrub("HTTP 503 1234567"), "HTTP 50•••67");
        assert_eq!(scrub("random_id 4827361950"), "random_id 48•••50");
    }

    #[test]
    fn masked_text_is_left_as_it_is() {
        for masked in [
            "+7916•••4567",
            "iv•••@example.ru",
            "12•••89",
            "-1001•••7890",
            "•••@example.ru",
        ] {
            assert_eq!(scrub(masked), masked);
        }
    }
}
