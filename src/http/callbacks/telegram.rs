//! Telegram webhook updates: `POST /callbacks/telegram/{channel}`, set with
//! `setWebhook(url, secret_token = <the channel's webhook_secret>)`.
//!
//! * Authenticity: the header `X-Telegram-Bot-Api-Secret-Token` must equal
//!   the channel's `webhook_secret` (constant-time). Missing or wrong, no
//!   secret configured, or an unknown channel: the same 403
//!   (`http::refusal`); nothing is recorded.
//! * Each update is handled once: `update_id` is remembered for two days
//!   (Telegram keeps undelivered updates for a day).
//! * A `callback_query` (the customer pressed the message's button) names
//!   the chat and message id it came from; `provider_message_id` makes of
//!   them the id the worker remembered, so `read` is recorded for
//!   that notification. The query is answered (`answerCallbackQuery`) so the
//!   customer's spinner stops, also when the message is unknown.
//! * A `message` that replies to one of the bot's messages goes to the
//!   reply hook (`http::replies`) with its text (or caption) and
//!   `<chat id>:<message_id>`, which records `replied` for that message's
//!   notification. A message that quotes nothing is taken
//!   as a reply to the newest of the bot's messages just before it in that
//!   chat: message ids count up within a private chat (observed; the Bot
//!   API only promises them unique per chat), so the daemon looks at the
//!   `UNQUOTED_LOOKBACK` ids before the customer's (one `MGET`). Further back
//!   (or nothing of ours there) it is acknowledged and counted as `unmapped`.
//! * Every authentic update is answered 200, so Telegram does not redeliver
//!   it; only a store failure answers 503 (Telegram retries).

use std::sync::OnceLock;

use axum::Router;
use axum::body::Bytes;
use tower_http::limit::RequestBodyLimitLayer;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;

use super::{count, refuse};
use crate::channels::telegram::{
    answer_callback_query, chat_pseudonym, message_id_in, provider_message_id,
};
use crate::config::ChannelConfig;
use crate::core::ChannelKind;
use crate::http::{AppState, constant_time_eq};

pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";
const PROVIDER: &str = "telegram";
/// How long an `update_id` is remembered.
const SEEN_TTL_S: u64 = 2 * 24 * 3600;
/// How many message ids before an unquoted message are searched for the
/// bot's newest message in that chat.
pub const UNQUOTED_LOOKBACK: i64 = 20;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/callbacks/telegram/{channel}", post(update))
        .layer(RequestBodyLimitLayer::new(
            crate::http::body_limits::TELEGRAM,
        ))
}

#[derive(Debug, Deserialize)]
struct Update {
    update_id: i64,
    #[serde(default)]
    callback_query: Option<CallbackQuery>,
    #[serde(default)]
    message: Option<Message>,
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    id: String,
    /// Absent when the message is too old for Telegram to include.
    #[serde(default)]
    message: Option<MessageRef>,
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    message_id: i64,
    #[serde(default)]
    chat: Option<Chat>,
    #[serde(default)]
    from: Option<User>,
    #[serde(default)]
    reply_to_message: Option<MessageRef>,
    #[serde(default)]
    text: Option<String>,
    /// A photo's or a document's words.
    #[serde(default)]
    caption: Option<String>,
}

impl Message {
    /// The customer's words: the text, else a caption, else nothing.
    fn words(&self) -> &str {
        self.text
            .as_deref()
            .or(self.caption.as_deref())
            .unwrap_or("")
    }

    /// The reply hook's id of this message: `<chat id>:<message_id>`.
    fn inbound_id(&self) -> String {
        let chat = self.chat.as_ref().map_or(0, |c| c.id);
        format!("{chat}:{}", self.message_id)
    }
}

#[derive(Debug, Deserialize)]
struct MessageRef {
    message_id: i64,
    chat: Chat,
}

#[derive(Debug, Deserialize)]
struct Chat {
    id: i64,
}

#[derive(Debug, Deserialize)]
struct User {
    #[serde(default)]
    is_bot: bool,
}

/// One client for answering callback queries.
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(3))
            .build()
            .unwrap_or_default()
    })
}

fn answer(status: StatusCode) -> Response {
    (status, "").into_response()
}

/// The channel's config when the request carries its secret, else why not
/// (answered the same way for an unknown channel and a wrong secret).
fn authenticate(
    state: &AppState,
    channel: &str,
    headers: &HeaderMap,
) -> Result<ChannelConfig, &'static str> {
    let catalog = state.catalog.load();
    let Some(config) = catalog
        .channels
        .get(channel)
        .filter(|c| c.kind == ChannelKind::Telegram)
    else {
        return Err("unknown_channel");
    };
    let Some(given) = headers.get(SECRET_HEADER) else {
        return Err("missing_secret");
    };
    let expected = config
        .settings
        .as_telegram()
        .and_then(|s| s.webhook_secret.as_deref())
        .unwrap_or("");
    if expected.is_empty() || !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return Err("wrong_secret");
    }
    Ok(config.clone())
}

async fn update(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let config = match authenticate(&state, &channel, &headers) {
        Ok(c) => c,
        Err(reason) => {
            return refuse(&state, PROVIDER, "callbacks/telegram", reason);
        }
    };
    let Ok(update) = serde_json::from_slice::<Update>(&body) else {
        // Authentic but unreadable: redelivering it would not help.
        count(&state, PROVIDER, "malformed");
        tracing::warn!(
            channel,
            "an authentic telegram update could not be read; acknowledged"
        );
        return answer(StatusCode::OK);
    };
    let seen_key = format!("{PROVIDER}:{channel}:{}", update.update_id);
    match state.store.first_time(&seen_key, SEEN_TTL_S).await {
        Ok(true) => {}
        Ok(false) => {
            count(&state, PROVIDER, "duplicate");
            return answer(StatusCode::OK);
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot check a telegram update for duplicates");
            return answer(StatusCode::SERVICE_UNAVAILABLE);
        }
    }
    let Some(About {
        candidates,
        event,
        unquoted,
    }) = about(&channel, &config, &update).await
    else {
        count(&state, PROVIDER, "ignored");
        return answer(StatusCode::OK);
    };
    if candidates.is_empty() {
        count(
            &state,
            PROVIDER,
            if unquoted { "unmapped" } else { "unknown" },
        );
        return answer(StatusCode::OK);
    }
    let found = match state
        .store
        .newest_known_provider_message(&channel, &candidates)
        .await
    {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "cannot map a telegram message id");
            state.store.forget_seen(&seen_key).await;
            return answer(StatusCode::SERVICE_UNAVAILABLE);
        }
    };
    let Some((id, _step)) = found else {
        if unquoted {
            count(&state, PROVIDER, "unmapped");
            return answer(StatusCode::OK);
        }
        count(&state, PROVIDER, "unknown");
        tracing::info!(
            channel,
            provider_message_id = %candidates[0],
            "telegram update about a message this daemon does not know; acknowledged"
        );
        return answer(StatusCode::OK);
    };
    let recorded = match (event, &update.message) {
        ("replied", Some(message)) => {
            crate::http::replies::received(
                &state,
                crate::http::replies::Reply {
                    notification_id: &id,
                    channel: &channel,
                    text: message.words(),
                    inbound_id: &message.inbound_id(),
                    from: None,
                },
            )
            .await
        }
        _ => crate::http::record(&state, &id, event, Some(&channel))
            .await
            .status(),
    };
    answer_recorded(&state, &seen_key, recorded).await
}

/// What an update is about: the provider message ids it may concern, newest
/// first, and the receipt it records.
struct About {
    candidates: Vec<String>,
    event: &'static str,
    /// A message that names none of ours, whose candidates are guesses.
    unquoted: bool,
}

/// `None`: nothing to record (the bot's own message, another kind of update).
async fn about(channel: &str, config: &ChannelConfig, update: &Update) -> Option<About> {
    let bot_token = config
        .settings
        .as_telegram()
        .map_or("", |s| s.bot_token.as_str());
    let pmid =
        |m: &MessageRef| provider_message_id(bot_token, &m.chat.id.to_string(), m.message_id);
    let replied = |candidates, unquoted| {
        Some(About {
            candidates,
            event: "replied",
            unquoted,
        })
    };
    if let Some(query) = &update.callback_query {
        // Stop the customer's spinner whatever becomes of the press.
        if let Err(e) = answer_callback_query(client(), config, &query.id).await {
            tracing::warn!(channel, error = %e, "answerCallbackQuery failed");
        }
        return Some(About {
            candidates: query.message.iter().map(pmid).collect(),
            event: "read",
            unquoted: false,
        });
    }
    let message = update.message.as_ref()?;
    if message.from.as_ref().is_some_and(|u| u.is_bot) {
        return None;
    }
    match (&message.reply_to_message, &message.chat) {
        (Some(to), _) => replied(vec![pmid(to)], false),
        (None, Some(chat)) => {
            let chat = chat_pseudonym(bot_token, &chat.id.to_string());
            let before = (1..=UNQUOTED_LOOKBACK)
                .map(|back| message.message_id - back)
                .filter(|id| *id > 0)
                .map(|id| message_id_in(&chat, id))
                .collect();
            replied(before, true)
        }
        (None, None) => replied(Vec::new(), true),
    }
}

/// Telegram's answer once the receipt was recorded (or not): only a store
/// failure asks for the update again, so it is forgotten as seen.
async fn answer_recorded(state: &AppState, seen_key: &str, recorded: StatusCode) -> Response {
    match recorded {
        StatusCode::SERVICE_UNAVAILABLE => {
            state.store.forget_seen(seen_key).await;
            answer(StatusCode::SERVICE_UNAVAILABLE)
        }
        StatusCode::NOT_FOUND => {
            count(state, PROVIDER, "unknown");
            answer(StatusCode::OK)
        }
        StatusCode::OK => {
            count(state, PROVIDER, "already_recorded");
            answer(StatusCode::OK)
        }
        _ => {
            count(state, PROVIDER, "recorded");
            answer(StatusCode::OK)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(json: &str) -> Message {
        serde_json::from_str::<Update>(json)
            .expect("an update")
            .message
            .expect("a message")
    }

    #[test]
    fn a_message_yields_its_text_or_caption_and_chat_and_message_id() {
        let text = message(
            r#"{"update_id": 1, "message": {"message_id": 42, "chat": {"id": 555},
                "from": {"id": 555, "is_bot": false}, "text": "Заберу сегодня"}}"#,
        );
        assert_eq!(text.words(), "Заберу сегодня");
        assert_eq!(text.inbound_id(), "555:42");
        let photo = message(
            r#"{"update_id": 2, "message": {"message_id": 43, "chat": {"id": -100},
                "caption": "вот чек", "photo": []}}"#,
        );
        assert_eq!(photo.words(), "вот чек");
        assert_eq!(photo.inbound_id(), "-100:43");
        let sticker =
            message(r#"{"update_id": 3, "message": {"message_id": 44, "chat": {"id": 1}}}"#);
        assert_eq!(sticker.words(), "");
    }
}
