//! Customer replies reach a person. An inbound message that belongs to a
//! notification — VK `message_new`, a Telegram message, a WhatsApp inbound
//! message, an email reply — is recorded as `replied` and, when
//! `[replies] sink` is set, opens a staff cascade (`core::replies`): the
//! reply goes to the sink at once, and the staff channels follow in turn
//! until someone records `answered`. Staff mark a reply answered through
//! `POST /v1/receipts` or the signed link each staff message carries.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::AppState;
use super::escape;
use crate::core::Recipient;
use crate::core::replies::{ANSWERED, replied_to, staff_id, staff_policy};
use crate::notification::{Admitted, Content, Customer, Notification, ReplyOf};
use crate::runtime::store::Loaded;
use crate::runtime::worker::Started;

/// One inbound customer message mapped to the notification it answers.
#[derive(Clone, Copy, Debug)]
pub struct Reply<'a> {
    /// The notification the customer replied to.
    pub notification_id: &'a str,
    /// The channel (by name) the reply came in on.
    pub channel: &'a str,
    /// The customer's words; empty for a sticker, a photo, a voice note.
    pub text: &'a str,
    /// The provider's id of the inbound message (VK message id, Telegram
    /// `chat:message_id`, WhatsApp `wamid`, email `Message-ID`): a provider
    /// delivering the same message twice hands it to staff once.
    pub inbound_id: &'a str,
    /// Who it says it is from, where the channel cannot vouch for that
    /// (an email's `From`, lowercased): it must be the address our message
    /// went to. `None` where the provider maps the sender (a chat).
    pub from: Option<&'a str>,
}

/// The longest reply text handed to staff, in characters.
const MAX_REPLY_CHARS: usize = 4096;

/// Records `replied` on the notification and hands the reply to staff.
/// Answers like `super::record`: 202 recorded (or handed over), 200 known
/// already, 404 no such notification, 503 the store is unavailable (the
/// provider should deliver it again); and 403, nothing recorded, when
/// `from` is not the address our message went to. A reply to a finished
/// or expired notification is still handed over: the customer still wrote.
pub async fn received(state: &AppState, reply: Reply<'_>) -> StatusCode {
    let id = reply.notification_id;
    let catalog = state.catalog.load_full();
    let replies = &catalog.settings.replies;
    // A staff member answering a staff message in a messenger is not a
    // customer's reply: nothing to hand over (and no loop of staff cascades).
    let sink = replies.sink.as_deref().filter(|_| replied_to(id).is_none());
    // Read once, for the sender's check and the staff cascade.
    let loaded = if sink.is_some() || reply.from.is_some() {
        match state.store.load(id).await {
            Ok(Some(loaded)) => Some(loaded),
            Ok(None) => return StatusCode::NOT_FOUND,
            Err(e) => {
                tracing::warn!(notification_id = %id, error = %e, "cannot read the notification a reply answers");
                return StatusCode::SERVICE_UNAVAILABLE;
            }
        }
    } else {
        None
    };
    if let (Some(from), Some(loaded)) = (reply.from, &loaded)
        && sent_to(&catalog, loaded, reply.channel).is_none_or(|to| to != from)
    {
        return StatusCode::FORBIDDEN;
    }
    let recorded = super::record(state, id, "replied", Some(reply.channel))
        .await
        .status();
    let (Some(sink), Some(loaded)) = (sink, loaded) else {
        return recorded;
    };
    if matches!(
        recorded,
        StatusCode::NOT_FOUND | StatusCode::SERVICE_UNAVAILABLE
    ) {
        return recorded;
    }
    match open_staff_cascade(state, &catalog, sink, reply, loaded).await {
        Ok(true) => StatusCode::ACCEPTED,
        Ok(false) => StatusCode::OK,
        Err(e) => {
            tracing::warn!(notification_id = %id, error = %e, "cannot hand a reply to staff; the provider will deliver it again");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// Starts the staff cascade of one reply; `false` when it was started
/// before (the same inbound message delivered again).
async fn open_staff_cascade(
    state: &AppState,
    catalog: &crate::config::Catalog,
    sink: &str,
    reply: Reply<'_>,
    loaded: Loaded,
) -> Result<bool, crate::runtime::store::StoreError> {
    let id = reply.notification_id;
    let replies = &catalog.settings.replies;
    let business = replies.business.as_ref();
    let policy = staff_policy(&loaded.policy, sink, business.map(|b| b.quiet));
    let staff = staff_id(id, &format!("{}:{}", reply.channel, reply.inbound_id));
    let now = state.clock.now_ms();
    let answer_url = answer_url(
        &catalog.settings.http.public_url,
        &replies.link_secret,
        &staff,
    );
    let text: String = reply.text.chars().take(MAX_REPLY_CHARS).collect();
    let original = &loaded.notification;
    let of = ReplyOf {
        notification_id: id.to_owned(),
        policy: loaded.policy.name.clone(),
        customer_id: loaded.customer_id.clone(),
        channel: reply.channel.to_owned(),
        text: text.clone(),
        received_at: super::timeline::rfc3339(now),
        answer_url: answer_url.clone(),
    };
    let timezone = business.map(|b| b.timezone_name.clone());
    let tz_name = timezone
        .clone()
        .unwrap_or_else(|| catalog.settings.defaults.timezone_name.clone());
    let notification = Notification {
        id: staff.clone(),
        policy: policy.name.clone(),
        customer: Customer {
            id: loaded.customer_id.clone(),
            timezone,
            segment: original.customer.segment.clone(),
            contacts: replies.staff.clone(),
            preferences: Vec::new(),
            opt_out: Vec::new(),
        },
        content: Content {
            text: Some(staff_text(&of)),
            subject: Some(format!("Customer reply to {id}")),
            link: Some(answer_url),
            ..Content::default()
        },
        send_at: None,
        expires_at: None,
        reply: Some(of),
    };
    let recipient = Recipient {
        contacts: replies.staff.clone(),
        preferences: Vec::new(),
        opt_out: Vec::new(),
        tz: jiff::tz::TimeZone::get(&tz_name)
            .unwrap_or_else(|_| catalog.settings.defaults.timezone.clone()),
    };
    let admitted = Admitted {
        notification,
        policy: &policy,
        recipient,
        send_at_ms: None,
        expires_at_ms: None,
    };
    // Noted first: an `answered` recorded from now on reaches the cascade
    // (or, while it is not stored yet, marks it for the check below).
    if !state.store.note_reply(id, &staff, now).await? {
        tracing::warn!(notification_id = %id, channel = reply.channel, "a reply past the most one notification hands to staff; recorded, not handed over");
        return Ok(false);
    }
    match state.worker.start(admitted, catalog, now).await? {
        Started::New { first } => {
            if state.store.answered_before_start(id, &staff).await? {
                state
                    .store
                    .record_receipt(&staff, ANSWERED, None, state.clock.now_ms())
                    .await?;
            }
            tracing::info!(notification_id = %id, staff_cascade = %staff, channel = reply.channel, text_chars = text.chars().count(), "a customer's reply handed to staff");
            // Without a first send the scheduler takes it on (`start`
            // noted its wake-up).
            if let Some(first) = first {
                let worker = state.worker.clone();
                tokio::spawn(async move {
                    if let Err(e) = worker.carry_out_first(first).await {
                        tracing::warn!(error = %e, "handing a reply over failed; it will be retried");
                    }
                });
            }
            Ok(true)
        }
        // Known already: a provider delivering the reply again.
        Started::Duplicate => Ok(false),
        // Refused even alone: asking the provider again would not help
        // (and VK turns off a callback server that keeps failing).
        Started::Refused => {
            tracing::error!(notification_id = %id, staff_cascade = %staff, "the store refused a staff cascade; the reply is recorded, not handed over");
            Ok(false)
        }
    }
}

/// The address (lowercased) `loaded`'s messages on `channel` went to.
fn sent_to(catalog: &crate::config::Catalog, loaded: &Loaded, channel: &str) -> Option<String> {
    let key = catalog
        .channels
        .get(channel)
        .and_then(|c| c.rules.contact_key.as_deref())
        .unwrap_or("email");
    loaded
        .recipient
        .contacts
        .get(key)
        .map(|a| a.trim().to_ascii_lowercase())
}

/// What a staff channel's message says: who wrote, about what, their
/// words, and where to mark it answered.
fn staff_text(of: &ReplyOf) -> String {
    // The customer's words come last, each line quoted, so that nothing
    // they write can pass for our own lines (a link of theirs, say).
    let words = if of.text.trim().is_empty() {
        "> (no text: a photo, a sticker or a voice message)".to_owned()
    } else {
        of.text
            .lines()
            .map(|l| format!("> {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    // Quoted, never filled in: a `{{` of theirs is the template's `{{{{`.
    let words = words.replace("{{", "{{{{");
    format!(
        "Customer {} replied on {} to {} ({}).\nMark it answered: {}\n\n{}",
        of.customer_id, of.channel, of.notification_id, of.policy, of.answer_url, words
    )
}

/// After `answered` was recorded on `id` (`Store::spread_answer`). On a
/// failure the caller answers 503, so that the answer is sent again.
pub async fn answered(state: &AppState, id: &str) -> Result<(), ()> {
    state
        .store
        .spread_answer(id, state.clock.now_ms())
        .await
        .map(|_| ())
        .map_err(|e| {
            tracing::warn!(notification_id = %id, error = %e, "cannot pass an answer on to the staff cascades");
        })
}

/// The signed-link routes: a page to mark a reply answered.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/answer/{token}", get(answer_page).post(answer_post))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            super::body_limits::TRACKING,
        ))
}

/// Keeps answer-link MACs apart from any other use of a secret.
const LINK_CONTEXT: &[u8] = b"cascade answer link v1\0";

fn mac(secret: &str, staff_id: &str) -> [u8; 16] {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return [0; 16], // HMAC takes keys of any length
    };
    mac.update(LINK_CONTEXT);
    mac.update(staff_id.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut out = [0; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// `<public url>/answer/<base64url(staff id)>.<base64url(MAC)>`.
pub fn answer_url(public_url: &str, secret: &str, staff_id: &str) -> String {
    format!(
        "{}/answer/{}.{}",
        public_url.trim_end_matches('/'),
        URL_SAFE_NO_PAD.encode(staff_id),
        URL_SAFE_NO_PAD.encode(mac(secret, staff_id))
    )
}

/// The staff cascade a link's token names, when its MAC is right.
fn verify(secret: &str, token: &str) -> Option<String> {
    if secret.is_empty() || token.len() > 1024 {
        return None;
    }
    let (id, tag) = token.split_once('.')?;
    let id = String::from_utf8(URL_SAFE_NO_PAD.decode(id).ok()?).ok()?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    super::constant_time_eq(&tag, &mac(secret, &id)).then_some(id)
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <meta name=\"viewport\" content=\"width=device-width\"><meta name=\"robots\" content=\"noindex\"></head>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:2em auto\"><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        ),
    );
    response
}

fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Unknown link",
        "<p>This link is not valid, or the reply it was about is no longer kept.</p>",
    )
}

/// `GET /answer/<token>`: what the reply is about and a button. A GET
/// changes nothing, since messengers open links to preview them.
async fn answer_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let secret = state.catalog.load().settings.replies.link_secret.clone();
    let Some(staff) = verify(&secret, &token) else {
        return not_found();
    };
    let loaded = match state.store.load(&staff).await {
        Ok(Some(loaded)) => loaded,
        Ok(None) => return not_found(),
        Err(_) => return unavailable(),
    };
    let Some(of) = loaded.notification.reply.as_ref() else {
        return not_found();
    };
    let state_line = if loaded.receipts.contains_key(ANSWERED) {
        "<p><strong>Already marked answered.</strong></p>"
    } else {
        "<form method=\"post\"><button type=\"submit\">Mark answered</button></form>"
    };
    page(
        StatusCode::OK,
        "Customer reply",
        &format!(
            "<p>Customer <code>{}</code> replied on {} to <code>{}</code> ({}) at {}.</p>{state_line}",
            escape(&of.customer_id),
            escape(&of.channel),
            escape(&of.notification_id),
            escape(&of.policy),
            escape(&of.received_at),
        ),
    )
}

/// `POST /answer/<token>`: records `answered` on the reply's notification
/// (and so on every staff cascade its replies opened).
async fn answer_post(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let secret = state.catalog.load().settings.replies.link_secret.clone();
    let Some(staff) = verify(&secret, &token) else {
        return not_found();
    };
    if replied_to(&staff).is_none() {
        return not_found();
    }
    // This reply's answer (noted on its notification too), not its
    // notification's: a later reply waits for an answer of its own, and
    // the link works after the notification itself is gone.
    let recorded = super::record(&state, &staff, ANSWERED, None).await;
    match recorded.status() {
        StatusCode::SERVICE_UNAVAILABLE => return unavailable(),
        StatusCode::NOT_FOUND => return not_found(),
        _ => {}
    }
    page(
        StatusCode::OK,
        "Marked answered",
        "<p>Thank you. The reply is marked answered; no one else will be asked to answer it.</p>",
    )
}

fn unavailable() -> Response {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        "<p>The store is unavailable for a moment; reload the page.</p>",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_links_verify_only_with_their_secret_and_id() {
        let url = answer_url(
            "https://cascade.shop.example/",
            "a-secret-of-some-length",
            "order-1}reply-00ff",
        );
        let token = url
            .strip_prefix("https://cascade.shop.example/answer/")
            .unwrap();
        assert_eq!(
            verify("a-secret-of-some-length", token).as_deref(),
            Some("order-1}reply-00ff")
        );
        assert_eq!(verify("another-secret-of-length", token), None);
        assert_eq!(verify("", token), None);
        // Another id under the same MAC does not verify.
        let (_, tag) = token.split_once('.').unwrap();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode("order-2}reply-00ff"));
        assert_eq!(verify("a-secret-of-some-length", &forged), None);
        assert_eq!(verify("a-secret-of-some-length", "garbage"), None);
    }
}
