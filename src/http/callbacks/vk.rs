//! VK Callback API: `POST /callbacks/vk/{channel}`, the server address set
//! in the community's settings (Manage → API usage → Callback API), with the
//! channel's `callback_secret` as its secret key (docs/provider-notes.md, "VK").
//!
//! * `{"type":"confirmation"}` is answered with the channel's `confirmation`
//!   string, as plain text: that is how VK checks the address.
//! * Every other event must carry `secret` equal to `callback_secret`
//!   (compared in constant time; VK signs nothing else). Wrong or missing,
//!   or no secret configured, an unknown channel, or a body that is no
//!   event → the same 403 (`http::refusal`), nothing recorded. When the
//!   channel names its `group_id`, an event of another community is refused
//!   the same way.
//! * Each event is handled once: its `event_id` is remembered for two days
//!   (VK redelivers an unanswered event for about an hour).
//! * `message_read` is a watermark: the customer read every message in the
//!   conversation up to `read_message_id`. Each notification sent to that
//!   peer with a message id up to it gets `read`.
//! * `message_new` from the customer (not the community's own, `out = 1`)
//!   goes to the reply hook (`http::replies`) with its `text` and
//!   `<peer_id>_<id>`, which records `replied` for the latest message sent
//!   to that peer before it.
//! * Every authentic event is answered `ok` (200, plain text), also unknown
//!   kinds and events about messages this daemon does not know, since VK
//!   stops calling a server that keeps failing; only a store failure
//!   answers 503 (VK retries) and forgets the `event_id`.

use std::collections::BTreeSet;

use axum::Router;
use axum::body::Bytes;
use tower_http::limit::RequestBodyLimitLayer;

use crate::http::refusal::forbidden;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::Value;

use super::{count, refuse};
use crate::config::ChannelConfig;
use crate::core::ChannelKind;
use crate::http::{AppState, constant_time_eq};

const ROUTE: &str = "callbacks/vk";
const PROVIDER: &str = "vk";
/// How long an `event_id` is remembered.
const SEEN_TTL_S: u64 = 2 * 24 * 3600;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/callbacks/vk/{channel}", post(event))
        .layer(RequestBodyLimitLayer::new(crate::http::body_limits::VK))
}

/// `callback_base`: every Callback API request.
#[derive(Debug, Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    object: Value,
    #[serde(default)]
    group_id: Option<i64>,
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    secret: Option<String>,
}

/// `message_read`'s object.
#[derive(Debug, Deserialize)]
struct Read {
    #[serde(default)]
    from_id: Option<i64>,
    peer_id: i64,
    read_message_id: i64,
}

/// The message of a `message_new` (the object's `message` since API 5.103,
/// the object itself before).
#[derive(Debug, Deserialize)]
struct Incoming {
    #[serde(default)]
    id: Option<i64>,
    peer_id: i64,
    #[serde(default)]
    from_id: Option<i64>,
    #[serde(default)]
    out: Option<i64>,
    /// The message's number within the conversation, when `id` is 0 (a
    /// community chat).
    #[serde(default)]
    conversation_message_id: Option<i64>,
    /// The customer's words (empty for a sticker or a photo).
    #[serde(default)]
    text: String,
}

impl Incoming {
    /// The message of a `message_new` object, in either API version's shape.
    fn of(object: &Value) -> Option<Incoming> {
        Incoming::deserialize(object.get("message").unwrap_or(object)).ok()
    }

    /// The reply hook's id of this message: `<peer_id>_<id>`, as VK names
    /// a message in a conversation; `<peer_id>_c<n>` by its number in the
    /// conversation when VK gives no id; else a digest of its text, so
    /// that two different messages are never taken for one.
    fn inbound_id(&self) -> String {
        match (self.id.filter(|id| *id > 0), self.conversation_message_id) {
            (Some(id), _) => format!("{}_{id}", self.peer_id),
            (None, Some(n)) => format!("{}_c{n}", self.peer_id),
            (None, None) => {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(self.text.as_bytes());
                let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                format!("{}_t{hex}", self.peer_id)
            }
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response {
    (status, body.to_owned()).into_response()
}

fn ok() -> Response {
    text(StatusCode::OK, "ok")
}

async fn event(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    body: Bytes,
) -> Response {
    let config = {
        let catalog = state.catalog.load();
        match catalog
            .channels
            .get(&channel)
            .filter(|c| c.kind == ChannelKind::Vk)
        {
            Some(c) => c.clone(),
            None => {
                return refuse(&state, PROVIDER, ROUTE, "unknown_channel");
            }
        }
    };
    let Ok(event) = serde_json::from_slice::<Event>(&body) else {
        // Not authenticated yet (the secret is inside): the same answer.
        count(&state, PROVIDER, "malformed");
        return forbidden(&state, ROUTE, "malformed");
    };
    if let Some(refused) = wrong_community(&state, &config, &event) {
        return refused;
    }
    if event.kind == "confirmation" {
        return confirm(&state, &config);
    }
    if let Some(refused) = wrong_secret(&state, &config, &event) {
        return refused;
    }
    let seen_key = event
        .event_id
        .as_deref()
        .map(|e| format!("{PROVIDER}:{channel}:{e}"));
    if let Some(key) = &seen_key {
        match state.store.first_time(key, SEEN_TTL_S).await {
            Ok(true) => {}
            Ok(false) => {
                count(&state, PROVIDER, "duplicate");
                return ok();
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot check a VK event for duplicates");
                return text(StatusCode::SERVICE_UNAVAILABLE, "try again");
            }
        }
    }
    let handled = match event.kind.as_str() {
        "message_read" => message_read(&state, &channel, &event.object).await,
        "message_new" => message_new(&state, &channel, &event.object).await,
        _ => {
            count(&state, PROVIDER, "ignored");
            Ok(())
        }
    };
    match handled {
        Ok(()) => ok(),
        Err(()) => {
            if let Some(key) = &seen_key {
                state.store.forget_seen(key).await;
            }
            text(StatusCode::SERVICE_UNAVAILABLE, "try again")
        }
    }
}

/// The refusal when the channel names its community and the event is another's.
fn wrong_community(state: &AppState, config: &ChannelConfig, event: &Event) -> Option<Response> {
    let expected = config.settings.as_vk()?.group_id?;
    match event.group_id {
        Some(g) if g != expected => Some(refuse(state, PROVIDER, ROUTE, "wrong_community")),
        _ => None,
    }
}

/// The answer to `confirmation`: the channel's `confirmation` string.
fn confirm(state: &AppState, config: &ChannelConfig) -> Response {
    let confirmation = config
        .settings
        .as_vk()
        .and_then(|s| s.confirmation.as_deref());
    match confirmation.filter(|c| !c.is_empty()) {
        Some(code) => {
            count(state, PROVIDER, "confirmation");
            tracing::info!(channel = %config.name, "VK confirmed the callback address");
            text(StatusCode::OK, code)
        }
        None => {
            tracing::warn!(
                channel = %config.name,
                "VK asks to confirm the callback address, but the channel has no `confirmation` setting"
            );
            refuse(state, PROVIDER, ROUTE, "no_confirmation")
        }
    }
}

/// The refusal when `secret` is missing or wrong (or none is configured).
fn wrong_secret(state: &AppState, config: &ChannelConfig, event: &Event) -> Option<Response> {
    let expected = config
        .settings
        .as_vk()
        .and_then(|s| s.callback_secret.as_deref())
        .unwrap_or("");
    let given = event.secret.as_deref().unwrap_or("");
    if !expected.is_empty() && constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return None;
    }
    Some(refuse(
        state,
        PROVIDER,
        ROUTE,
        if given.is_empty() {
            "missing_secret"
        } else {
            "wrong_secret"
        },
    ))
}

/// `read` for every notification sent to the peer up to the watermark.
async fn message_read(state: &AppState, channel: &str, object: &Value) -> Result<(), ()> {
    let Ok(read) = Read::deserialize(object) else {
        count(state, PROVIDER, "malformed");
        tracing::warn!(
            channel,
            "an authentic VK message_read without peer_id or read_message_id; acknowledged"
        );
        return Ok(());
    };
    if read.from_id.is_some_and(|f| f < 0) {
        // The community reading the customer's messages, not the other way round.
        count(state, PROVIDER, "ignored");
        return Ok(());
    }
    let peer = read.peer_id.to_string();
    let sent = state
        .store
        .peer_messages_up_to(channel, &peer, read.read_message_id, state.clock.now_ms())
        .await
        .map_err(|e| tracing::warn!(error = %e, "cannot look up VK messages by peer"))?;
    let ids: BTreeSet<String> = sent.into_iter().map(|(id, _step)| id).collect();
    record_all(state, channel, &ids, "read", read.read_message_id).await
}

/// `replied` for the latest message sent to the peer before the customer
/// wrote, handed to the reply hook with the customer's words.
async fn message_new(state: &AppState, channel: &str, object: &Value) -> Result<(), ()> {
    let Some(incoming) = Incoming::of(object) else {
        count(state, PROVIDER, "malformed");
        tracing::warn!(
            channel,
            "an authentic VK message_new without a message; acknowledged"
        );
        return Ok(());
    };
    if incoming.out == Some(1) || incoming.from_id.is_some_and(|f| f < 0) {
        count(state, PROVIDER, "ignored");
        return Ok(());
    }
    let before = incoming.id.filter(|id| *id > 0).unwrap_or(i64::MAX);
    let peer = incoming.peer_id.to_string();
    let sent = state
        .store
        .peer_messages_up_to(channel, &peer, before, state.clock.now_ms())
        .await
        .map_err(|e| tracing::warn!(error = %e, "cannot look up VK messages by peer"))?;
    let Some((id, _step)) = sent.into_iter().last() else {
        return record_all(state, channel, &BTreeSet::new(), "replied", before).await;
    };
    let status = crate::http::replies::received(
        state,
        crate::http::replies::Reply {
            notification_id: &id,
            channel,
            text: &incoming.text,
            inbound_id: &incoming.inbound_id(),
            from: None,
        },
    )
    .await;
    match status {
        StatusCode::SERVICE_UNAVAILABLE => return Err(()),
        StatusCode::NOT_FOUND => count(state, PROVIDER, "unknown"),
        _ => count(state, PROVIDER, "recorded"),
    }
    Ok(())
}

/// Records `event` for each notification; counts the callback once.
async fn record_all(
    state: &AppState,
    channel: &str,
    ids: &BTreeSet<String>,
    event: &str,
    message_id: i64,
) -> Result<(), ()> {
    if ids.is_empty() {
        count(state, PROVIDER, "unknown");
        tracing::info!(
            channel,
            provider_message_id = message_id,
            event,
            "VK callback about messages this daemon does not know; acknowledged"
        );
        return Ok(());
    }
    let mut recorded = false;
    for id in ids {
        let answer = crate::http::record(state, id, event, Some(channel)).await;
        match answer.status() {
            StatusCode::SERVICE_UNAVAILABLE => return Err(()),
            StatusCode::NOT_FOUND => {}
            _ => recorded = true,
        }
    }
    count(
        state,
        PROVIDER,
        if recorded { "recorded" } else { "unknown" },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_message_new_yields_the_customers_text_and_the_message_id() {
        // API 5.103 and later: the message under `message`.
        let object = json!({
            "message": {"id": 812, "peer_id": 123456, "from_id": 123456, "out": 0,
                        "text": "Да, привезите завтра"},
            "client_info": {}
        });
        let m = Incoming::of(&object).expect("a message");
        assert_eq!(m.text, "Да, привезите завтра");
        assert_eq!(m.inbound_id(), "123456_812");
        // Before 5.103: the object is the message; a sticker has no text.
        let old = json!({"id": 9, "peer_id": 77, "out": 0});
        let m = Incoming::of(&old).expect("a message");
        assert_eq!((m.text.as_str(), m.inbound_id().as_str()), ("", "77_9"));
        assert!(Incoming::of(&json!({"message": {"text": "no peer"}})).is_none());
        // No id: the number in the conversation, else the text tells apart.
        let chat = json!({"message": {"id": 0, "conversation_message_id": 41, "peer_id": 2000000001, "text": "a"}});
        assert_eq!(Incoming::of(&chat).unwrap().inbound_id(), "2000000001_c41");
        let bare = |text: &str| {
            Incoming::of(&json!({"peer_id": 5, "text": text}))
                .unwrap()
                .inbound_id()
        };
        assert_ne!(bare("первое"), bare("второе"));
        assert_eq!(bare("первое"), bare("первое"));
    }
}
