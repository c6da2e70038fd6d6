//! Composing one step's message: subject, text and HTML parts, the link,
//! tracking, `Message-ID` and `List-Unsubscribe`.

use lettre::Message;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MessageBuilder, MultiPart};
use sha2::{Digest, Sha256};

use super::html::{escape_html, insert_before_body_end, rewrite_links};
use super::settings::{EmailSettings, is_http_url};
use super::tracking::Tracker;
use crate::channels::Outgoing;
use crate::notification::Notification;

/// Longest subject taken from the first line of the text, in characters.
const SUBJECT_FROM_TEXT_CHARS: usize = 150;

/// One step's message, ready to submit.
pub(super) struct Composed {
    pub(super) message: Message,
    pub(super) message_id: String,
}

/// `<hex@from-domain>`: the same for every attempt of one step. Derived
/// from the step's index from 0 (not its number from 1), and it must stay
/// so: a send retried across an upgrade keeps the `Message-ID` of its first
/// attempt, which is how mail systems drop the duplicate.
pub fn message_id(notification_id: &str, step: u8, from_domain: &str) -> String {
    let digest = Sha256::digest(format!("cascade\x1f{notification_id}\x1f{step}").as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("<{hex}@{from_domain}>")
}

/// The step's message: subject, a text and an HTML part carrying the link
/// and the tracking, and the headers.
pub(super) fn compose(
    out: &Outgoing<'_>,
    s: &EmailSettings,
    to: Mailbox,
) -> Result<Composed, String> {
    let (notification, channel) = (out.notification, out.channel);
    let text = out.text();
    let subject = out
        .subject()
        .map(|t| t.trim().to_owned())
        .unwrap_or_else(|| subject_from_text(text));
    let tracker = s.tracking_secret.as_deref().map(|secret| Tracker {
        secret,
        base: out.public_url.trim_end_matches('/'),
        channel: &channel.name,
        notification_id: &notification.id,
        step: out.order.step,
        until_ms: out.tracking_until_ms,
    });
    let link = notification
        .content
        .link
        .as_deref()
        .map(str::trim)
        .filter(|l| is_http_url(l))
        .map(|original| Link {
            original,
            tracked: match &tracker {
                Some(t) => t.click(original),
                None => original.to_owned(),
            },
        });

    let plain = plain_part(text, link.as_ref());
    let mut html = match out.html() {
        Some(given) => html_from_given(given, link.as_ref(), s, tracker.as_ref()),
        None => html_from_text(text, link.as_ref()),
    };
    if let Some(t) = &tracker {
        let pixel = format!(
            "<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" style=\"border:0\">",
            escape_html(&t.pixel())
        );
        html = insert_before_body_end(&html, &pixel);
    }

    let message_id = message_id(&notification.id, out.order.step, s.from.email.domain());
    let mut builder = Message::builder()
        .from(s.from.clone())
        .to(to)
        .subject(subject)
        .message_id(Some(message_id.clone()));
    if let Some(reply_to) = &s.reply_to {
        builder = builder.reply_to(reply_to.clone());
    }
    if let Some(url) = &s.unsubscribe_url {
        builder = with_unsubscribe(builder, url, notification);
    }
    let message = builder
        .multipart(MultiPart::alternative_plain_html(plain, html))
        .map_err(|e| format!("cannot build the message: {e}"))?;
    Ok(Composed {
        message,
        message_id,
    })
}

/// The notification's link as given and as sent (tracked when tracking is on).
struct Link<'a> {
    original: &'a str,
    tracked: String,
}

/// The text part: the text, with the link (tracked) in it or after it.
fn plain_part(text: &str, link: Option<&Link<'_>>) -> String {
    let mut plain = text.to_owned();
    if let Some(link) = link {
        if plain.contains(link.original) {
            plain = plain.replace(link.original, &link.tracked);
        } else {
            plain = format!("{}\n\n{}\n", plain.trim_end(), link.tracked);
        }
    }
    plain
}

/// The notification's own HTML with its links rewritten for tracking (never
/// the unsubscribe link), and the link added when the HTML lacks it.
fn html_from_given(
    given: &str,
    link: Option<&Link<'_>>,
    s: &EmailSettings,
    tracker: Option<&Tracker<'_>>,
) -> String {
    let (mut html, originals) = rewrite_links(given, |url| {
        if is_unsubscribe(url, s.unsubscribe_url.as_deref()) {
            return None;
        }
        tracker.map(|t| t.click(url))
    });
    if let Some(link) = link
        && !originals.iter().any(|o| o == link.original)
    {
        let paragraph = format!(
            "<p><a href=\"{}\">{}</a></p>",
            escape_html(&link.tracked),
            escape_html(link.original)
        );
        html = insert_before_body_end(&html, &paragraph);
    }
    html
}

/// An HTML page made of the text, with the link as an anchor.
fn html_from_text(text: &str, link: Option<&Link<'_>>) -> String {
    let mut body = format!(
        "<p>{}</p>",
        escape_html(text.trim_end()).replace('\n', "<br>\n")
    );
    if let Some(link) = link {
        // The link where the text has it, else after the text: always
        // an anchor, so clients do not linkify the bare (untracked) URL.
        let shown = escape_html(link.original);
        let anchor = format!("<a href=\"{}\">{shown}</a>", escape_html(&link.tracked));
        if body.contains(&shown) {
            body = body.replace(&shown, &anchor);
        } else {
            body.push_str(&format!("\n<p>{anchor}</p>"));
        }
    }
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n{body}\n</body></html>\n"
    )
}

/// `List-Unsubscribe` with the notification's ids filled in, and
/// `List-Unsubscribe-Post` when the URL allows one-click.
fn with_unsubscribe(
    builder: MessageBuilder,
    url: &str,
    notification: &Notification,
) -> MessageBuilder {
    let url = url
        .replace("{notification_id}", &percent_encode(&notification.id))
        .replace("{customer_id}", &percent_encode(&notification.customer.id));
    let mut builder = builder.raw_header(HeaderValue::new(
        HeaderName::new_from_ascii_str("List-Unsubscribe"),
        format!("<{url}>"),
    ));
    // RFC 8058: one-click needs an https URI to POST to.
    if url
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
    {
        builder = builder.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
            "List-Unsubscribe=One-Click".to_owned(),
        ));
    }
    builder
}

pub(super) fn subject_from_text(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    match line.char_indices().nth(SUBJECT_FROM_TEXT_CHARS) {
        Some((cut, _)) => format!("{}…", line[..cut].trim_end()),
        None => line.to_owned(),
    }
}

fn is_unsubscribe(url: &str, unsubscribe: Option<&str>) -> bool {
    unsubscribe.is_some_and(|u| {
        let base = u.split('{').next().unwrap_or(u);
        !base.is_empty() && url.starts_with(base)
    })
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub(super) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
