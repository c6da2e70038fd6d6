//! A customer's reply to one of our emails, read from the raw message
//! (RFC 5322) an MTA or an inbound-mail service hands over: which of our
//! messages it answers (`In-Reply-To`, then `References`, newest first) and
//! the customer's own words, without the quoted original or the signature.
//! Pure: bytes in, a value out.

use mail_parser::decoders::html::html_to_text;
use mail_parser::{HeaderValue, MessageParser, MimeHeaders, PartType};
use sha2::{Digest, Sha256};

/// Longest reply text kept, in characters (a messenger message's length).
pub const MAX_REPLY_CHARS: usize = 4096;

/// What an inbound email says.
#[derive(Debug, PartialEq, Eq)]
pub struct InboundEmail {
    /// The ids of the messages it answers, `<…>` as our `Message-ID`s are
    /// written: `In-Reply-To` first, then `References` from the newest.
    pub answers: Vec<String>,
    /// Its own `Message-ID` (`<…>`), or `sha256:<hex>` of the raw message
    /// when it has none: a redelivery of the same message keeps it.
    pub inbound_id: String,
    /// The customer's words, at most `MAX_REPLY_CHARS` characters.
    pub text: String,
    /// The `From` address, lowercased: a reply must come from the address
    /// our message went to.
    pub from: String,
    /// Sent by a machine, not a person (RFC 3834 `Auto-Submitted`, an
    /// out-of-office `Precedence`/`X-Autoreply`, a bounce): not a reply.
    pub automatic: bool,
}

/// Reads a raw message. `None` when the bytes are not an email at all
/// (no `From`, as every message has).
pub fn parse(raw: &[u8]) -> Option<InboundEmail> {
    let message = MessageParser::default().parse(raw)?;
    let from = message
        .from()?
        .first()
        .and_then(|a| a.address())
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let automatic = is_automatic(&message, &from);
    let bracketed = |id: &str| {
        let id = id.trim().trim_start_matches('<').trim_end_matches('>');
        (!id.is_empty()).then(|| format!("<{id}>"))
    };
    let ids = |value: &HeaderValue<'_>| -> Vec<String> {
        value
            .as_text_list()
            .unwrap_or_default()
            .iter()
            .filter_map(|id| bracketed(id))
            .collect()
    };
    let mut answers = ids(message.in_reply_to());
    for id in ids(message.references()).into_iter().rev() {
        if !answers.contains(&id) {
            answers.push(id);
        }
    }
    let inbound_id = message.message_id().and_then(bracketed).unwrap_or_else(|| {
        let digest = Sha256::digest(raw);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    });
    // The first text part, or the HTML one's text when that is all there is.
    let body = match message.text_part(0).map(|p| &p.body) {
        Some(PartType::Text(text)) => text.to_string(),
        Some(PartType::Html(html)) => html_text(html),
        _ => String::new(),
    };
    Some(InboundEmail {
        answers,
        inbound_id,
        text: reply_text(&body),
        from,
        automatic,
    })
}

/// Whether a message was sent by a machine: `Auto-Submitted` other than
/// `no` (RFC 3834), `Precedence: bulk|junk|list|auto_reply`, the
/// `X-Autoreply`/`X-Autorespond` of older responders, or a bounce (from
/// MAILER-DAEMON or postmaster, or a delivery report).
fn is_automatic(message: &mail_parser::Message<'_>, from: &str) -> bool {
    let header = |name: &str| {
        message
            .header_raw(name)
            .map(|v| v.trim().to_ascii_lowercase())
    };
    let submitted = header("Auto-Submitted").is_some_and(|v| !v.starts_with("no"));
    let precedence = header("Precedence")
        .is_some_and(|v| ["bulk", "junk", "list", "auto_reply"].contains(&v.as_str()));
    let responder = header("X-Autoreply").is_some() || header("X-Autorespond").is_some();
    let local = from.split('@').next().unwrap_or("");
    let bounce = from.is_empty()
        || ["mailer-daemon", "postmaster"].contains(&local)
        || message.content_type().is_some_and(|c| {
            c.c_subtype
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
        });
    submitted || precedence || responder || bounce
}

/// The text of an HTML-only reply: cut where the clients put the quoted
/// original (Gmail's `gmail_quote`, a `<blockquote>`, Outlook's
/// `divRplyFwdMsg`), with a line break at each block, so the attribution
/// stays on a line of its own for `reply_text`.
fn html_text(html: &str) -> String {
    let lower = html.to_ascii_lowercase();
    let cut = [
        "<blockquote",
        "class=\"gmail_quote",
        "id=\"divrplyfwdmsg",
        "id=\"appendonsend",
    ]
    .iter()
    .filter_map(|m| lower.find(m))
    .min()
    // An attribute's marker: cut at the start of its tag.
    .and_then(|at| match lower[at..].starts_with('<') {
        true => Some(at),
        false => lower[..at].rfind('<'),
    })
    .unwrap_or(html.len());
    let mut broken = String::with_capacity(cut + 64);
    let mut rest = &html[..cut];
    while let Some(at) = rest.find('<') {
        broken.push_str(&rest[..at]);
        // Only the tag's first bytes are looked at: copying the rest for
        // every `<` made a large body cost its length squared.
        let after = rest[at + 1..].trim_start_matches('/').as_bytes();
        let head = &after[..after.len().min(4)];
        if ["div", "p", "br", "tr", "li", "h1", "h2", "h3"]
            .iter()
            .any(|t| {
                head.len() >= t.len()
                    && head[..t.len()].eq_ignore_ascii_case(t.as_bytes())
                    && !head.get(t.len()).is_some_and(|c| c.is_ascii_alphanumeric())
            })
        {
            broken.push_str("<br>");
        }
        broken.push('<');
        rest = &rest[at + 1..];
    }
    broken.push_str(rest);
    html_to_text(&broken)
}

/// The customer's own words in a reply's text: the quoted original (lines
/// starting with `>`, and everything from the line that introduces the
/// quote) and the signature (from `-- `) cut off, at most
/// `MAX_REPLY_CHARS` characters.
pub fn reply_text(body: &str) -> String {
    let lines: Vec<&str> = body.lines().map(|l| l.trim_end_matches('\r')).collect();
    let end = (0..lines.len())
        .find_map(|i| quote_starts(&lines, i))
        .unwrap_or(lines.len());
    let kept: Vec<&str> = lines[..end]
        .iter()
        .copied()
        .filter(|l| !l.trim_start().starts_with('>'))
        .collect();
    let text = kept.join("\n");
    let text = text.trim();
    match text.char_indices().nth(MAX_REPLY_CHARS) {
        Some((cut, _)) => text[..cut].to_owned(),
        None => text.to_owned(),
    }
}

/// Where the quote (or signature) begins when line `i` introduces it: `i`,
/// or the line before when a client wrapped its attribution in two.
fn quote_starts(lines: &[&str], i: usize) -> Option<usize> {
    let line = lines[i].trim();
    if lines[i] == "-- " || line == "--" {
        return Some(i); // the signature separator (RFC 3676)
    }
    if is_separator(line) || is_header_block(lines, i) {
        return Some(i);
    }
    if is_attribution(line) {
        // Gmail wraps a long "On …, Name <address>" before "wrote:".
        let wrapped = i > 0 && {
            let before = lines[i - 1].trim();
            starts_with_word(before, "On") && !is_attribution(before) && line.len() < 40
        };
        return Some(if wrapped { i - 1 } else { i });
    }
    None
}

/// "On Sat, 5 Dec 2026 at 17:43, Shop <noreply@shop.example> wrote:",
/// "05.12.2026 17:43, Shop пишет:", "5 дек. 2026 г., в 17:43, Shop
/// <noreply@shop.example> написал(а):", and the Russian Gmail, Yandex and
/// Mail.ru form: a date, the sender's address and a colon.
fn is_attribution(line: &str) -> bool {
    let lower = line.to_lowercase();
    const ENDINGS: [&str; 6] = [
        "wrote:",
        "writes:",
        "пишет:",
        "написал(а):",
        "написал:",
        "написала:",
    ];
    if ENDINGS.iter().any(|e| lower.ends_with(e)) {
        return true;
    }
    // `… <noreply@shop.example>:` after a date (digits), as the whole line.
    lower.ends_with(">:")
        && lower.contains('@')
        && lower.contains('<')
        && lower.chars().filter(char::is_ascii_digit).count() >= 4
}

/// Outlook's "-----Original Message-----", its Russian form, and the rule
/// it draws above its header block.
fn is_separator(line: &str) -> bool {
    let lower = line.to_lowercase();
    let dashed = lower.starts_with("-----") || lower.starts_with("--------");
    (dashed
        && ["original message", "исходное сообщение", "reply message"]
            .iter()
            .any(|m| lower.contains(m)))
        || (line.len() >= 20 && line.chars().all(|c| c == '_'))
}

/// Outlook's (and many webmails') header block of the quoted message:
/// `From:` / `От:` followed within a few lines by `Sent:`, `Date:`, `To:`,
/// `Subject:` or their Russian names.
fn is_header_block(lines: &[&str], i: usize) -> bool {
    let field = |line: &str, names: &[&str]| {
        let line = line.trim().trim_start_matches('*').to_lowercase();
        names.iter().any(|n| line.starts_with(n))
    };
    const FROM: [&str; 2] = ["from:", "от:"];
    const OTHERS: [&str; 10] = [
        "sent:",
        "date:",
        "to:",
        "subject:",
        "отправлено:",
        "дата:",
        "кому:",
        "тема:",
        "cc:",
        "копия:",
    ];
    field(lines[i], &FROM) && lines[i + 1..].iter().take(4).any(|l| field(l, &OTHERS))
}

fn starts_with_word(line: &str, word: &str) -> bool {
    line.strip_prefix(word)
        .is_some_and(|rest| rest.starts_with(' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripped(body: &str) -> String {
        reply_text(body)
    }

    fn message(headers: &str, from: &str) -> InboundEmail {
        let raw = format!(
            "From: Ivan <{from}>\r\nTo: replies@shop.example.ru\r\nSubject: Re: order\r\n\
             Message-ID: <r1@mail.example>\r\nIn-Reply-To: <a@shop>\r\n{headers}\r\nThanks\r\n"
        );
        parse(raw.as_bytes()).unwrap()
    }

    #[test]
    fn a_person_s_reply_is_not_automatic_and_names_its_sender() {
        let m = message("", "Ivan@Example.RU");
        assert!(!m.automatic);
        assert_eq!(m.from, "ivan@example.ru");
        assert!(!message("Auto-Submitted: no\r\n", "ivan@example.ru").automatic);
    }

    #[test]
    fn out_of_office_answers_and_bounces_are_automatic() {
        for headers in [
            "Auto-Submitted: auto-replied\r\n",
            "auto-submitted: auto-generated\r\n",
            "Precedence: bulk\r\n",
            "Precedence: auto_reply\r\n",
            "X-Autoreply: yes\r\n",
            "X-Autorespond: On vacation\r\n",
            "Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n",
        ] {
            assert!(message(headers, "ivan@example.ru").automatic, "{headers}");
        }
        assert!(message("", "MAILER-DAEMON@mx.example.ru").automatic);
        assert!(message("", "postmaster@mx.example.ru").automatic);
    }

    #[test]
    fn many_tags_cost_their_length_not_its_square() {
        // 400,000 `<` took minutes while each one copied the rest of the
        // body; now it is one pass (this test would hang, not fail).
        let html = format!("<p>{}", "<".repeat(400_000));
        assert!(html_text(&html).len() < 400_010);
    }

    #[test]
    fn gmail_english_with_a_wrapped_attribution() {
        let body = "Yes, please deliver tomorrow.\r\n\r\nOn Sat, Dec 5, 2026 at 5:43 PM Shop <\r\nnoreply@shop.example.ru> wrote:\r\n\r\n> Your cart is waiting\r\n> https://shop.example.ru/cart\r\n";
        assert_eq!(stripped(body), "Yes, please deliver tomorrow.");
        let one_line = "Thanks!\n\nOn Sat, Dec 5, 2026 at 5:43 PM Shop <noreply@shop.example.ru> wrote:\nYour cart is waiting\n";
        assert_eq!(stripped(one_line), "Thanks!");
        let wrapped_wrote = "Ok\n\nOn Sat, Dec 5, 2026 at 5:43 PM Shop <noreply@shop.example.ru>\nwrote:\nYour cart\n";
        assert_eq!(stripped(wrapped_wrote), "Ok");
    }

    #[test]
    fn gmail_russian() {
        let body = "Да, заберу завтра.\n\nсб, 5 дек. 2026 г. в 17:43, Магазин <noreply@shop.example.ru>:\n\n> Ваша корзина ждёт\n";
        assert_eq!(stripped(body), "Да, заберу завтра.");
    }

    #[test]
    fn outlook_header_blocks_in_english_and_russian() {
        let english = "Please call me.\r\n\r\n________________________________\r\nFrom: Shop <noreply@shop.example.ru>\r\nSent: Saturday, December 5, 2026 5:43 PM\r\nTo: ivan@example.ru\r\nSubject: Your cart\r\n\r\nYour cart is waiting\r\n";
        assert_eq!(stripped(english), "Please call me.");
        let no_rule = "Please call me.\n\nFrom: Shop <noreply@shop.example.ru>\nSent: Saturday, December 5, 2026 5:43 PM\nTo: ivan@example.ru\n\nYour cart is waiting\n";
        assert_eq!(stripped(no_rule), "Please call me.");
        let russian = "Перезвоните, пожалуйста.\n\nОт: Магазин <noreply@shop.example.ru>\nОтправлено: 5 декабря 2026 г. 17:43\nКому: ivan@example.ru\nТема: Корзина ждёт\n\nВаша корзина ждёт\n";
        assert_eq!(stripped(russian), "Перезвоните, пожалуйста.");
        let original = "Sure\n\n-----Original Message-----\nFrom: Shop\nYour cart\n";
        assert_eq!(stripped(original), "Sure");
        let original_ru = "Хорошо\n\n-----Исходное сообщение-----\nОт: Магазин\nКорзина\n";
        assert_eq!(stripped(original_ru), "Хорошо");
    }

    #[test]
    fn apple_mail_in_english_and_russian() {
        let english = "Got it\n\nSent from my iPhone\n\n> On 5 Dec 2026, at 17:43, Shop <noreply@shop.example.ru> wrote:\n>\n> Your cart is waiting\n";
        assert_eq!(stripped(english), "Got it\n\nSent from my iPhone");
        let russian = "Понял\n\n> 5 дек. 2026 г., в 17:43, Магазин <noreply@shop.example.ru> написал(а):\n>\n> Ваша корзина ждёт\n";
        assert_eq!(stripped(russian), "Понял");
        let unquoted = "Понял\n\n5 дек. 2026 г., в 17:43, Магазин <noreply@shop.example.ru> написал(а):\n\nВаша корзина ждёт\n";
        assert_eq!(stripped(unquoted), "Понял");
    }

    #[test]
    fn yandex_and_mail_ru() {
        let yandex = "Привезите в субботу\n\n05.12.2026, 17:43, \"Магазин\" <noreply@shop.example.ru>:\n\nВаша корзина ждёт\n";
        assert_eq!(stripped(yandex), "Привезите в субботу");
        let mail_ru = "Спасибо, оплачу вечером\n\n\nСуббота, 5 декабря 2026, 17:43 +03:00 от Магазин <noreply@shop.example.ru>:\n \n>Ваша корзина ждёт\n";
        assert_eq!(stripped(mail_ru), "Спасибо, оплачу вечером");
        let thunderbird = "Ок\n\n05.12.2026 17:43, Магазин пишет:\n> Ваша корзина ждёт\n";
        assert_eq!(stripped(thunderbird), "Ок");
    }

    #[test]
    fn quoted_lines_and_signatures_go_and_the_rest_stays() {
        let bottom_posted =
            "> Your cart is waiting\n> at the shop\n\nI will come tomorrow.\nThanks\n";
        assert_eq!(stripped(bottom_posted), "I will come tomorrow.\nThanks");
        let signed = "See you\n-- \nIvan Petrov\n+7 900 000-00-00\n";
        assert_eq!(stripped(signed), "See you");
        // A dash in the text, or "from:" inside a sentence, cuts nothing.
        let plain = "Two -- three\nfrom: here to there, anything\nsee you\n";
        assert_eq!(
            stripped(plain),
            "Two -- three\nfrom: here to there, anything\nsee you"
        );
        assert_eq!(stripped(""), "");
    }

    #[test]
    fn the_text_is_capped() {
        let long = "я".repeat(MAX_REPLY_CHARS + 10);
        assert_eq!(stripped(&long).chars().count(), MAX_REPLY_CHARS);
    }

    /// A reply as Gmail sends it: multipart/alternative, quoted-printable.
    const REPLY: &str = "From: Ivan <ivan@example.ru>\r\n\
To: Shop <noreply@shop.example.ru>\r\n\
Subject: Re: =?UTF-8?B?0JrQvtGA0LfQuNC90LA=?=\r\n\
Message-ID: <CAF-reply-1@mail.gmail.com>\r\n\
In-Reply-To: <0123abcd@shop.example.ru>\r\n\
References: <older@shop.example.ru>\r\n <0123abcd@shop.example.ru>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"000b\"\r\n\
\r\n\
--000b\r\n\
Content-Type: text/plain; charset=\"UTF-8\"\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
=D0=94=D0=B0, =D0=B7=D0=B0=D0=B1=D0=B5=D1=80=D1=83\r\n\
\r\n\
On Sat, Dec 5, 2026 at 5:43 PM Shop <noreply@shop.example.ru> wrote:\r\n\
\r\n\
> Your cart\r\n\
--000b\r\n\
Content-Type: text/html; charset=\"UTF-8\"\r\n\
\r\n\
<div>other</div>\r\n\
--000b--\r\n";

    #[test]
    fn a_reply_names_what_it_answers_newest_first_and_its_text() {
        let reply = parse(REPLY.as_bytes()).expect("an email");
        assert_eq!(
            reply.answers,
            ["<0123abcd@shop.example.ru>", "<older@shop.example.ru>"]
        );
        assert_eq!(reply.inbound_id, "<CAF-reply-1@mail.gmail.com>");
        assert_eq!(reply.text, "Да, заберу");
    }

    #[test]
    fn charsets_and_html_only_replies_are_read() {
        // "Привет" in KOI8-R, base64 encoded: 0xF0 0xD2 0xC9 0xD7 0xC5 0xD4.
        let koi8 = "From: ivan@example.ru\r\nIn-Reply-To: <a@shop.example.ru>\r\n\
Content-Type: text/plain; charset=koi8-r\r\nContent-Transfer-Encoding: base64\r\n\r\n8NLJ18XU\r\n";
        assert_eq!(parse(koi8.as_bytes()).unwrap().text, "Привет");
        let cp1251 = b"From: ivan@example.ru\r\nContent-Type: text/plain; charset=windows-1251\r\n\r\n\xc4\xe0\r\n";
        assert_eq!(parse(cp1251).unwrap().text, "Да");
        let html = "From: ivan@example.ru\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<html><body><p>Call me</p><div>On Sat, Dec 5, 2026 at 5:43 PM Shop &lt;noreply@shop.example.ru&gt; wrote:</div><blockquote>Your cart</blockquote></body></html>\r\n";
        assert_eq!(parse(html.as_bytes()).unwrap().text, "Call me");
        let gmail = "From: ivan@example.ru\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<div dir=\"ltr\">Call me<div>after six</div></div><br><div class=\"gmail_quote\"><div class=\"gmail_attr\">\
On Sat wrote:<br></div><blockquote class=\"gmail_quote\">Your cart</blockquote></div>\r\n";
        assert_eq!(parse(gmail.as_bytes()).unwrap().text, "Call me\nafter six");
        // A quote with no attribution line: the blockquote itself goes.
        let bare_quote = "From: ivan@example.ru\r\nContent-Type: text/html\r\n\r\n\
<p>Yes</p><blockquote type=\"cite\"><p>Your cart is waiting</p></blockquote>\r\n";
        assert_eq!(parse(bare_quote.as_bytes()).unwrap().text, "Yes");
    }

    #[test]
    fn without_a_message_id_the_body_names_it_and_garbage_is_no_email() {
        let bare = "From: ivan@example.ru\r\n\r\nhello\r\n";
        let a = parse(bare.as_bytes()).unwrap();
        assert!(a.inbound_id.starts_with("sha256:"), "{}", a.inbound_id);
        assert_eq!(a.inbound_id, parse(bare.as_bytes()).unwrap().inbound_id);
        assert!(a.answers.is_empty());
        assert_eq!(parse(b"hello, this is not an email"), None);
        assert_eq!(parse(b"{\"id\":\"n-1\"}"), None);
        assert_eq!(parse(b""), None);
    }
}
