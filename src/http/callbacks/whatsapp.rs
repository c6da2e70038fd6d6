//! WhatsApp Cloud API webhooks: `GET` and `POST /callbacks/whatsapp/{channel}`.
//!
//! * Verification (`GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`):
//!   the challenge comes back as the body when the token equals the
//!   channel's `verify_token`; anything else is 403 (`http::refusal`).
//! * Authenticity (`POST`): `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app_secret,
//!   raw body)>`, checked over the exact bytes received, in constant time.
//!   Missing or wrong, no `app_secret` configured, or an unknown channel:
//!   the same 403 (`http::refusal`); nothing is recorded.
//! * `statuses[]`: `delivered`, `read` and `failed` are recorded as the
//!   receipts of the same names for the notification the wamid was sent
//!   for; when the wamid is not mapped (a status that overtook the worker's
//!   bookkeeping), the echoed `biz_opaque_callback_data` (`<id>:<step>`)
//!   names it. `sent` adds nothing to what the send itself recorded.
//! * Each (wamid, status) is handled once (Meta redelivers for days). Out of
//!   order is fine: receipts keep their first time, and a `failed` that
//!   arrives after `delivered` or `read` of the same message is stale and
//!   ignored. A `failed` escalates only the step it was sent for: a late
//!   failure of an earlier step does not skip the current one.
//! * Meta posts all of an app's statuses to one URL, so a wamid unknown to
//!   the URL's channel is looked up under the other whatsapp channels too.
//! * `messages[]` from the customer that reply to one of our messages
//!   (`context.id`) go to the reply hook (`http::replies`) with their words
//!   (a text's body, a button's text, a chosen reply's title) and the
//!   wamid, which records `replied`; other inbound messages cannot be
//!   mapped yet and are counted as `unmapped`.
//! * Unknown wamids are acknowledged (200) and counted; every authentic
//!   delivery is answered 200 unless the store fails (503: Meta retries).

use axum::Router;
use axum::body::Bytes;
use tower_http::limit::RequestBodyLimitLayer;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::collections::HashMap;

use super::{count, refuse, report_applies};
use crate::config::ChannelConfig;
use crate::core::{ChannelKind, ProviderReport};
use crate::http::{AppState, constant_time_eq};

pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";
const PROVIDER: &str = "whatsapp";
const ROUTE: &str = "callbacks/whatsapp";
/// Meta retries a webhook for up to about a week.
const SEEN_TTL_S: u64 = 8 * 24 * 3600;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/callbacks/whatsapp/{channel}",
            get(verify).post(notification),
        )
        .layer(RequestBodyLimitLayer::new(
            crate::http::body_limits::WHATSAPP,
        ))
}

/// `sha256=<hex HMAC-SHA256(app_secret, body)>`, as Meta signs.
pub fn signature(app_secret: &str, body: &[u8]) -> String {
    crate::channels::webhook::signature(app_secret, body)
}

/// Whether `header` is Meta's signature of `body` (constant-time compare).
pub fn signature_matches(app_secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Some(given) = decode_hex(hex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

fn channel_config(state: &AppState, channel: &str) -> Option<ChannelConfig> {
    state
        .catalog
        .load()
        .channels
        .get(channel)
        .filter(|c| c.kind == ChannelKind::Whatsapp)
        .cloned()
}

fn empty(status: StatusCode) -> Response {
    (status, "").into_response()
}

async fn verify(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(config) = channel_config(&state, &channel) else {
        return refuse(&state, PROVIDER, ROUTE, "unknown_channel");
    };
    let expected = config
        .settings
        .as_whatsapp()
        .and_then(|s| s.verify_token.as_deref())
        .unwrap_or("");
    let token = query.get("hub.verify_token").map(String::as_str);
    let ok = query.get("hub.mode").map(String::as_str) == Some("subscribe")
        && !expected.is_empty()
        && token.is_some_and(|t| constant_time_eq(t.as_bytes(), expected.as_bytes()));
    match (ok, query.get("hub.challenge")) {
        (true, Some(challenge)) => {
            tracing::info!(channel, "whatsapp webhook verified");
            (StatusCode::OK, challenge.clone()).into_response()
        }
        _ => refuse(&state, PROVIDER, ROUTE, "wrong_verify_token"),
    }
}

#[derive(Debug, Default, Deserialize)]
struct Envelope {
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Debug, Default, Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Debug, Default, Deserialize)]
struct Change {
    #[serde(default)]
    value: Value,
}

#[derive(Debug, Default, Deserialize)]
struct Value {
    #[serde(default)]
    statuses: Vec<Status>,
    #[serde(default)]
    messages: Vec<Inbound>,
}

#[derive(Debug, Deserialize)]
struct Status {
    id: String,
    status: String,
    #[serde(default)]
    biz_opaque_callback_data: Option<String>,
    #[serde(default)]
    errors: Vec<StatusError>,
}

#[derive(Debug, Deserialize)]
struct StatusError {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    title: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Inbound {
    id: String,
    #[serde(default)]
    context: Option<Context>,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    text: Option<TextBody>,
    /// A quick-reply button of a template.
    #[serde(default)]
    button: Option<ButtonBody>,
    /// A reply button or a list row of an interactive message.
    #[serde(default)]
    interactive: Option<Interactive>,
}

#[derive(Debug, Deserialize)]
struct TextBody {
    #[serde(default)]
    body: String,
}

#[derive(Debug, Deserialize)]
struct ButtonBody {
    #[serde(default)]
    text: String,
}

#[derive(Debug, Deserialize)]
struct Interactive {
    #[serde(default)]
    button_reply: Option<Titled>,
    #[serde(default)]
    list_reply: Option<Titled>,
}

#[derive(Debug, Deserialize)]
struct Titled {
    #[serde(default)]
    title: String,
}

impl Inbound {
    /// The customer's words: a text's body, a pressed button's text, a
    /// chosen reply's or list row's title; empty for media, a location….
    fn words(&self) -> &str {
        let interactive = self.interactive.as_ref();
        let found = match self.kind.as_str() {
            "text" => self.text.as_ref().map(|t| t.body.as_str()),
            "button" => self.button.as_ref().map(|b| b.text.as_str()),
            "interactive" => interactive
                .and_then(|i| i.button_reply.as_ref().or(i.list_reply.as_ref()))
                .map(|t| t.title.as_str()),
            _ => None,
        };
        found.unwrap_or("")
    }
}

#[derive(Debug, Deserialize)]
struct Context {
    #[serde(default)]
    id: Option<String>,
}

/// The store failed: answer 503 so Meta delivers again.
struct StoreDown;

async fn notification(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(config) = channel_config(&state, &channel) else {
        return refuse(&state, PROVIDER, ROUTE, "unknown_channel");
    };
    let Some(header) = headers
        .get(SIGNATURE_HEADER)
        .map(|h| h.to_str().unwrap_or(""))
    else {
        return refuse(&state, PROVIDER, ROUTE, "missing_signature");
    };
    let secret = config
        .settings
        .as_whatsapp()
        .and_then(|s| s.app_secret.as_deref())
        .unwrap_or("");
    if secret.is_empty() || !signature_matches(secret, &body, header) {
        return refuse(&state, PROVIDER, ROUTE, "wrong_signature");
    }
    let Ok(envelope) = serde_json::from_slice::<Envelope>(&body) else {
        count(&state, PROVIDER, "malformed");
        tracing::warn!(
            channel,
            "an authentic whatsapp webhook could not be read; acknowledged"
        );
        return empty(StatusCode::OK);
    };
    for value in envelope
        .entry
        .iter()
        .flat_map(|e| &e.changes)
        .map(|c| &c.value)
    {
        for status in &value.statuses {
            if let Err(StoreDown) = on_status(&state, &channel, status).await {
                return empty(StatusCode::SERVICE_UNAVAILABLE);
            }
        }
        for message in &value.messages {
            if let Err(StoreDown) = on_inbound(&state, &channel, message).await {
                return empty(StatusCode::SERVICE_UNAVAILABLE);
            }
        }
    }
    empty(StatusCode::OK)
}

fn seen_key(channel: &str, wamid: &str, what: &str) -> String {
    format!("{PROVIDER}:{channel}:{wamid}:{what}")
}

async fn on_status(state: &AppState, channel: &str, status: &Status) -> Result<(), StoreDown> {
    let event = match status.status.as_str() {
        "delivered" => "delivered",
        "read" => "read",
        "failed" => "failed",
        _ => {
            count(state, PROVIDER, "ignored");
            return Ok(());
        }
    };
    let key = seen_key(channel, &status.id, event);
    match state.store.first_time(&key, SEEN_TTL_S).await {
        Ok(true) => {}
        Ok(false) => {
            count(state, PROVIDER, "duplicate");
            return Ok(());
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot check a whatsapp status for duplicates");
            return Err(StoreDown);
        }
    }
    let result = apply_status(state, channel, status, event).await;
    if result.is_err() {
        state.store.forget_seen(&key).await;
    }
    result
}

async fn apply_status(
    state: &AppState,
    channel: &str,
    status: &Status,
    event: &str,
) -> Result<(), StoreDown> {
    let mapped = lookup(state, channel, &status.id).await?;
    // The echo of our idempotency key: `<notification id>:<step>`.
    let from_echo = || {
        let data = status.biz_opaque_callback_data.as_deref()?;
        let (id, step) = data.rsplit_once(':')?;
        Some((id.to_owned(), step.parse::<u8>().ok()?, None))
    };
    let mapped = mapped.map(|(id, step, sent_on)| (id, step, Some(sent_on)));
    let Some((id, step, sent_on)) = mapped.or_else(from_echo) else {
        count(state, PROVIDER, "unknown");
        tracing::info!(
            channel,
            provider_message_id = %status.id,
            status = %status.status,
            "whatsapp status for a message this daemon does not know; acknowledged"
        );
        return Ok(());
    };
    if event == "failed" {
        let error = status.errors.first();
        tracing::info!(
            notification_id = %id,
            channel,
            provider_message_id = %status.id,
            code = error.and_then(|e| e.code),
            // Meta's titles are generic, but free text may name the number.
            title = error
                .and_then(|e| e.title.as_deref())
                .map(crate::pii::scrub)
                .as_deref(),
            "whatsapp reports the message failed"
        );
        let report = ProviderReport {
            step,
            channel: sent_on.as_deref(),
            event,
        };
        if !failure_applies(state, channel, &status.id, &id, &report).await? {
            count(state, PROVIDER, "stale");
            return Ok(());
        }
    }
    record(state, channel, &id, event).await
}

/// A `failed` counts only if the same message was not already reported
/// delivered or read (Meta may post statuses out of order), and then as
/// `ProviderReport::applies_to` says.
async fn failure_applies(
    state: &AppState,
    channel: &str,
    wamid: &str,
    id: &str,
    report: &ProviderReport<'_>,
) -> Result<bool, StoreDown> {
    let mut c = state.store.connection();
    for later in ["delivered", "read"] {
        let key = state.store.keys.seen(&seen_key(channel, wamid, later));
        let seen: bool = redis::AsyncCommands::exists(&mut c, key)
            .await
            .map_err(|_| StoreDown)?;
        if seen {
            return Ok(false);
        }
    }
    report_applies(state, id, report).await.map_err(|e| {
        tracing::warn!(error = %e, "cannot load a cascade for a whatsapp failure");
        StoreDown
    })
}

/// The (notification id, step, channel) a wamid was sent for. Meta posts every status
/// of an app to one webhook, so a channel's URL also receives the statuses of
/// the other whatsapp channels (a text and a template channel on one
/// number): this channel is asked first, then the others.
async fn lookup(
    state: &AppState,
    channel: &str,
    wamid: &str,
) -> Result<Option<(String, u8, String)>, StoreDown> {
    let others: Vec<String> = state
        .catalog
        .load()
        .channels
        .values()
        .filter(|c| c.kind == ChannelKind::Whatsapp && c.name != channel)
        .map(|c| c.name.clone())
        .collect();
    for name in std::iter::once(channel).chain(others.iter().map(String::as_str)) {
        match state.store.provider_message(name, wamid).await {
            Ok(Some((id, step))) => return Ok(Some((id, step, name.to_owned()))),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot map a wamid");
                return Err(StoreDown);
            }
        }
    }
    Ok(None)
}

async fn on_inbound(state: &AppState, channel: &str, message: &Inbound) -> Result<(), StoreDown> {
    let Some(replied_to) = message.context.as_ref().and_then(|c| c.id.as_deref()) else {
        count(state, PROVIDER, "unmapped");
        return Ok(());
    };
    let key = seen_key(channel, &message.id, "inbound");
    match state.store.first_time(&key, SEEN_TTL_S).await {
        Ok(true) => {}
        Ok(false) => {
            count(state, PROVIDER, "duplicate");
            return Ok(());
        }
        Err(_) => return Err(StoreDown),
    }
    let result = match lookup(state, channel, replied_to).await {
        Ok(Some((id, _, _))) => replied(state, channel, &id, message).await,
        Ok(None) => {
            count(state, PROVIDER, "unknown");
            Ok(())
        }
        Err(e) => Err(e),
    };
    if result.is_err() {
        state.store.forget_seen(&key).await;
    }
    result
}

/// Hands the customer's message to the reply hook, which records `replied`.
async fn replied(
    state: &AppState,
    channel: &str,
    id: &str,
    message: &Inbound,
) -> Result<(), StoreDown> {
    let reply = crate::http::replies::Reply {
        notification_id: id,
        channel,
        text: message.words(),
        inbound_id: &message.id,
        from: None,
    };
    counted(state, crate::http::replies::received(state, reply).await)
}

async fn record(state: &AppState, channel: &str, id: &str, event: &str) -> Result<(), StoreDown> {
    let response = crate::http::record(state, id, event, Some(channel)).await;
    counted(state, response.status())
}

/// Counts what became of a status or a message; `Err` asks Meta to retry.
fn counted(state: &AppState, status: StatusCode) -> Result<(), StoreDown> {
    match status {
        StatusCode::SERVICE_UNAVAILABLE => Err(StoreDown),
        StatusCode::NOT_FOUND => {
            count(state, PROVIDER, "unknown");
            Ok(())
        }
        StatusCode::OK => {
            count(state, PROVIDER, "already_recorded");
            Ok(())
        }
        _ => {
            count(state, PROVIDER, "recorded");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trip() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let header = signature("app-secret", body);
        assert!(header.starts_with("sha256="));
        assert!(signature_matches("app-secret", body, &header));
        assert!(signature_matches(
            "app-secret",
            body,
            &header.to_uppercase().replace("SHA256=", "sha256=")
        ));
        assert!(!signature_matches("other", body, &header));
        assert!(!signature_matches("app-secret", b"{}", &header));
        assert!(!signature_matches("app-secret", body, "sha256=zz"));
        assert!(!signature_matches("app-secret", body, "sha1=abcd"));
        assert!(!signature_matches("app-secret", body, ""));
    }

    fn inbound(json: &str) -> Inbound {
        serde_json::from_str(json).expect("an inbound message")
    }

    #[test]
    fn an_inbound_message_yields_the_customers_words() {
        let text = inbound(
            r#"{"from": "79000000000", "id": "wamid.IN1", "type": "text",
                "context": {"id": "wamid.OUT"}, "text": {"body": "Приеду в 6"}}"#,
        );
        assert_eq!(
            (text.words(), text.id.as_str()),
            ("Приеду в 6", "wamid.IN1")
        );
        let button = inbound(
            r#"{"id": "wamid.IN2", "type": "button", "button": {"text": "Подтвердить", "payload": "yes"}}"#,
        );
        assert_eq!(button.words(), "Подтвердить");
        let chosen = inbound(
            r#"{"id": "wamid.IN3", "type": "interactive", "interactive": {"type": "button_reply",
                "button_reply": {"id": "b1", "title": "Перезвоните"}}}"#,
        );
        assert_eq!(chosen.words(), "Перезвоните");
        let row = inbound(
            r#"{"id": "wamid.IN4", "type": "interactive", "interactive": {"type": "list_reply",
                "list_reply": {"id": "r1", "title": "Суббота"}}}"#,
        );
        assert_eq!(row.words(), "Суббота");
        let photo = inbound(r#"{"id": "wamid.IN5", "type": "image", "image": {"id": "m1"}}"#);
        assert_eq!(photo.words(), "");
        let odd = inbound(r#"{"id": "wamid.IN6", "type": "text"}"#);
        assert_eq!(odd.words(), "");
    }
}
