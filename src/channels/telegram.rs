//! `telegram` channels: the Bot API's `sendMessage` (docs/provider-notes.md, "Telegram").
//!
//! Bots get no delivered or read receipts, so every message carries an inline
//! button ("✓ Прочитано" by default). Pressing it sends the bot a
//! `callback_query` naming the chat and message id the button hangs under;
//! the worker remembers `<message_id>@<chat pseudonym>` as the provider
//! message id (`provider_message_id`),
//! so `http::callbacks::telegram` maps the press back to the notification and
//! step and records `read`. The button's `callback_data` is therefore a
//! fixed word and carries no identifier: nothing in it needs to be trusted.
//! When the notification has an `http(s)` link, a second button opens it.
//!
//! The Bot API has no idempotency key, so an uncertain send (a timeout after
//! the request went out) is not resent unless the channel says
//! `on_uncertain = "resend"` (docs/provider-notes.md, "Uncertain sends").

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::Outgoing;
use super::settings::{self, ChannelConfig, Role, Secret};
use crate::core::SendOutcome;

/// The provider keys of a `telegram` channel file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSettings {
    pub bot_token: String,
    /// The `secret_token` given to `setWebhook`, checked on every update.
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// `DEFAULT_BASE_URL` when unset.
    #[serde(default, deserialize_with = "settings::base_url")]
    pub base_url: Option<String>,
    /// The label of the button that records `read`.
    #[serde(default)]
    pub button_text: Option<String>,
    /// The label of the button that opens the notification's link.
    #[serde(default)]
    pub link_text: Option<String>,
}

/// The secrets of a `telegram` channel.
pub const SECRETS: &[Secret<TelegramSettings>] = &[
    Secret {
        key: "bot_token",
        role: Role::Credential,
        off_when_empty: false,
        value: |s| Some(&s.bot_token),
    },
    Secret {
        key: "webhook_secret",
        role: Role::Guard,
        off_when_empty: false,
        value: |s| s.webhook_secret.as_deref(),
    },
];

pub const DEFAULT_BASE_URL: &str = "https://api.telegram.org";
/// The label of the button that stands in for a read receipt.
pub const DEFAULT_BUTTON_TEXT: &str = "✓ Прочитано";
/// The label of the button that opens `content.link`.
pub const DEFAULT_LINK_TEXT: &str = "Открыть";
/// The button's `callback_data` (1–64 bytes by the Bot API).
pub const CALLBACK_DATA: &str = "read";

/// Used when a 429 names no `retry_after`.
const DEFAULT_RETRY_AFTER_MS: i64 = 5_000;

/// A Bot API answer: `{"ok":true,"result":…}` or
/// `{"ok":false,"error_code":…,"description":"…","parameters":{…}}`.
#[derive(Debug, Default, Deserialize)]
pub struct Answer {
    #[serde(default)]
    pub ok: bool,
    #[serde(default)]
    pub result: Option<Value>,
    #[serde(default)]
    pub error_code: Option<i64>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<Parameters>,
}

/// `ResponseParameters`: why a request failed, machine-readably.
#[derive(Debug, Default, Deserialize)]
pub struct Parameters {
    #[serde(default)]
    pub retry_after: Option<i64>,
    #[serde(default)]
    pub migrate_to_chat_id: Option<i64>,
}

/// How a `sendMessage` answer is read. `chat_id` is the chat the message
/// went to, and `bot_token` keys its pseudonym in the provider message id
/// (`provider_message_id`).
///
/// | answer | outcome |
/// |---|---|
/// | 2xx, `ok: true` | sent; provider message id `<result.message_id>@<pseudonym of result.chat.id>` |
/// | 2xx without `ok: true` (unreadable) | ambiguous: something answered, the message may be out |
/// | any status with `parameters.migrate_to_chat_id` | permanent; the reason names the new chat id (masked on its way to the timeline, like every contact) |
/// | 429 | rate-limited, after `parameters.retry_after` seconds (default 5 s) |
/// | 401 `Unauthorized`, 404 `Not Found` | misconfigured: the bot token (or base URL) is wrong |
/// | 403 (`bot was blocked by the user`, `user is deactivated`, `bot can't initiate conversation`, `bot was kicked`) | permanent for this customer |
/// | 400 `chat not found`, `PEER_ID_INVALID`, any other 400 | permanent: this message will not be taken (see below) |
/// | 5xx | transient (a `retry_after` is honoured) |
/// | other 4xx | permanent |
/// | no connection | transient: nothing reached Telegram |
/// | timeout or broken connection after sending | ambiguous (no dedupe in the Bot API) |
///
/// A 400 such as `message is too long` reads like a configuration error,
/// but it is one for this notification only: treating it as
/// misconfigured would open the circuit breaker and stop the channel for
/// every customer because of one bad text, so it is permanent here.
pub fn classify(
    status: u16,
    answer: Option<&Answer>,
    chat_id: &str,
    bot_token: &str,
) -> SendOutcome {
    let description = answer
        .and_then(|a| a.description.as_deref())
        .unwrap_or("")
        .to_owned();
    let params = answer.and_then(|a| a.parameters.as_ref());
    let said = |fallback: &str| {
        if description.is_empty() {
            format!("HTTP {status}: {fallback}")
        } else {
            format!("HTTP {status}: {description}")
        }
    };
    if (200..300).contains(&status) {
        return match answer {
            Some(a) if a.ok => SendOutcome::Sent {
                provider_message_id: a
                    .result
                    .as_ref()
                    .and_then(|r| message_id(r, chat_id, bot_token)),
            },
            _ => SendOutcome::Ambiguous {
                reason: format!("HTTP {status} without a readable Bot API answer"),
            },
        };
    }
    if let Some(new_id) = params.and_then(|p| p.migrate_to_chat_id) {
        return SendOutcome::Permanent {
            reason: format!(
                "the group was upgraded to a supergroup; its new chat id is {new_id}: update the customer's telegram contact"
            ),
        };
    }
    let retry_after_ms = params
        .and_then(|p| p.retry_after)
        .filter(|s| *s >= 0)
        .map(|s| s.saturating_mul(1000));
    match status {
        429 => SendOutcome::RateLimited {
            retry_after_ms: retry_after_ms.unwrap_or(DEFAULT_RETRY_AFTER_MS),
        },
        401 | 404 => SendOutcome::Misconfigured {
            reason: format!("{}; check the bot token", said("Unauthorized")),
        },
        500..=599 => SendOutcome::Transient {
            reason: said("server error"),
            retry_after_ms,
        },
        _ => SendOutcome::Permanent {
            reason: said("refused"),
        },
    }
}

/// The provider message id of a sent `Message`.
fn message_id(result: &Value, chat_id: &str, bot_token: &str) -> Option<String> {
    let message_id = result.get("message_id")?.as_i64()?;
    let chat = result
        .get("chat")
        .and_then(|c| c.get("id"))
        .and_then(Value::as_i64)
        .map_or_else(|| chat_id.to_owned(), |id| id.to_string());
    Some(provider_message_id(bot_token, &chat, message_id))
}

/// The provider message id the worker remembers and callbacks look up:
/// `<message id>@<pseudonym>`. A message id is unique only within its chat,
/// and the chat id is the customer's Telegram id, which must not appear in
/// logs, the timeline or the events stream; so the chat is named by the
/// first 8 bytes of an HMAC of its id keyed with the bot token (which both
/// the sender and the webhook have, and an outsider does not, so the
/// pseudonym cannot be reversed by trying every id).
pub fn provider_message_id(bot_token: &str, chat_id: &str, message_id: i64) -> String {
    message_id_in(&chat_pseudonym(bot_token, chat_id), message_id)
}

/// The chat part of `provider_message_id`: computed once when many ids of
/// one chat are needed (the look-back of an unquoted reply).
pub fn chat_pseudonym(bot_token: &str, chat_id: &str) -> String {
    use hmac::{Hmac, Mac};
    Hmac::<sha2::Sha256>::new_from_slice(bot_token.as_bytes())
        .map(|mut mac| {
            mac.update(b"cascade telegram chat\n");
            mac.update(chat_id.as_bytes());
            mac.finalize().into_bytes()
        })
        .map(|bytes| {
            bytes[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        })
        .unwrap_or_default()
}

/// `provider_message_id` from a chat's pseudonym.
pub fn message_id_in(chat_pseudonym: &str, message_id: i64) -> String {
    format!("{message_id}@{chat_pseudonym}")
}

/// `{base_url}/bot<token>/<method>`.
pub fn method_url(channel: &ChannelConfig, method: &str) -> Option<String> {
    let settings = channel.settings.as_telegram()?;
    let token = Some(settings.bot_token.as_str()).filter(|t| !t.is_empty())?;
    let base = settings
        .base_url
        .as_deref()
        .unwrap_or(DEFAULT_BASE_URL)
        .trim_end_matches('/');
    Some(format!("{base}/bot{token}/{method}"))
}

/// The `sendMessage` body for one notification.
pub fn message_body(out: &Outgoing<'_>, chat_id: &str) -> Value {
    let settings = out.channel.settings.as_telegram();
    let button = settings
        .and_then(|s| s.button_text.as_deref())
        .unwrap_or(DEFAULT_BUTTON_TEXT);
    let mut keyboard = vec![vec![
        json!({ "text": button, "callback_data": CALLBACK_DATA }),
    ]];
    if let Some(link) = out.notification.content.link.as_deref()
        && (link.starts_with("https://") || link.starts_with("http://"))
    {
        let label = settings
            .and_then(|s| s.link_text.as_deref())
            .unwrap_or(DEFAULT_LINK_TEXT);
        keyboard.push(vec![json!({ "text": label, "url": link })]);
    }
    // Numeric ids go as numbers; `@channelusername` as a string.
    let chat: Value = chat_id
        .parse::<i64>()
        .map_or_else(|_| Value::from(chat_id), Value::from);
    json!({
        "chat_id": chat,
        "text": out.text(),
        "reply_markup": { "inline_keyboard": keyboard },
    })
}

/// Sends the notification and classifies the answer.
pub async fn send(http: &reqwest::Client, out: &Outgoing<'_>) -> SendOutcome {
    let channel = out.channel;
    let Some(url) = method_url(channel, "sendMessage") else {
        return SendOutcome::Misconfigured {
            reason: "the telegram channel has no bot_token".into(),
        };
    };
    let Some(chat_id) = out.contact.filter(|c| !c.is_empty()) else {
        return SendOutcome::Permanent {
            reason: "the customer has no telegram chat id".into(),
        };
    };
    let request = http
        .post(url)
        .timeout(Duration::from_millis(channel.timeout_ms.max(1) as u64))
        .json(&message_body(out, chat_id));
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            // The body is small; an unreadable one is classified by status.
            let answer = match response.bytes().await {
                Ok(bytes) => serde_json::from_slice::<Answer>(&bytes).ok(),
                Err(e) if (200..300).contains(&status) => {
                    return SendOutcome::Ambiguous {
                        reason: format!(
                            "HTTP {status}, then the answer broke off: {}",
                            e.without_url()
                        ),
                    };
                }
                Err(_) => None,
            };
            let bot_token = channel
                .settings
                .as_telegram()
                .map_or("", |s| s.bot_token.as_str());
            classify(status, answer.as_ref(), chat_id, bot_token)
        }
        // The token is part of the URL: errors are reported without it.
        Err(e) if e.is_connect() => SendOutcome::Transient {
            reason: format!("cannot connect: {}", e.without_url()),
            retry_after_ms: None,
        },
        Err(e) => SendOutcome::Ambiguous {
            reason: format!("no answer after sending: {}", e.without_url()),
        },
    }
}

/// Stops the spinner on the customer's button (`answerCallbackQuery`).
/// Best effort: the press is recorded whatever Telegram answers here.
pub async fn answer_callback_query(
    http: &reqwest::Client,
    channel: &ChannelConfig,
    callback_query_id: &str,
) -> Result<(), String> {
    let url = method_url(channel, "answerCallbackQuery").ok_or("no bot_token")?;
    let timeout = Duration::from_millis(channel.timeout_ms.clamp(1, 5_000) as u64);
    let response = http
        .post(url)
        .timeout(timeout)
        .json(&json!({ "callback_query_id": callback_query_id }))
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        let answer: Option<Answer> = response.json().await.ok();
        Err(format!(
            "HTTP {status}: {}",
            answer.and_then(|a| a.description).unwrap_or_default()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: &str) -> Answer {
        serde_json::from_str(json).unwrap()
    }

    fn c(status: u16, body: &str) -> SendOutcome {
        classify(status, Some(&answer(body)), "5551234", "123:bot-token")
    }

    #[test]
    fn provider_message_ids_name_the_chat_by_a_keyed_pseudonym() {
        // HMAC-SHA256("123:bot-token", "cascade telegram chat\n5551234"), first 8 bytes.
        let expected = {
            use hmac::{Hmac, Mac};
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"123:bot-token").unwrap();
            mac.update(b"cascade telegram chat\n5551234");
            let bytes = mac.finalize().into_bytes();
            bytes[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        assert_eq!(
            provider_message_id("123:bot-token", "5551234", 42),
            format!("42@{expected}")
        );
        assert!(!provider_message_id("123:bot-token", "5551234", 42).contains("5551234"));
        assert_ne!(
            provider_message_id("another:token", "5551234", 42),
            provider_message_id("123:bot-token", "5551234", 42)
        );
        assert_ne!(
            provider_message_id("123:bot-token", "5551235", 42),
            provider_message_id("123:bot-token", "5551234", 42)
        );
    }

    #[test]
    fn sent_with_chat_and_message_id() {
        assert_eq!(
            c(
                200,
                r#"{"ok":true,"result":{"message_id":42,"date":1,"chat":{"id":5551234,"type":"private"},"text":"x"}}"#
            ),
            SendOutcome::Sent {
                provider_message_id: Some(provider_message_id("123:bot-token", "5551234", 42))
            }
        );
        // Without `chat` in the result, the chat id we sent to is used.
        assert_eq!(
            c(200, r#"{"ok":true,"result":{"message_id":7}}"#),
            SendOutcome::Sent {
                provider_message_id: Some(provider_message_id("123:bot-token", "5551234", 7))
            }
        );
    }

    #[test]
    fn unreadable_success_is_ambiguous() {
        assert!(matches!(
            classify(200, None, "1", "t"),
            SendOutcome::Ambiguous { .. }
        ));
        assert!(matches!(
            c(200, r#"{"ok":false}"#),
            SendOutcome::Ambiguous { .. }
        ));
    }

    #[test]
    fn too_many_requests_honours_retry_after() {
        assert_eq!(
            c(
                429,
                r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 3","parameters":{"retry_after":3}}"#
            ),
            SendOutcome::RateLimited {
                retry_after_ms: 3_000
            }
        );
        assert_eq!(
            classify(429, None, "1", "t"),
            SendOutcome::RateLimited {
                retry_after_ms: DEFAULT_RETRY_AFTER_MS
            }
        );
        // Absurd values saturate (the core caps them at `max_backoff`); a
        // negative one is no delay of the provider's.
        assert_eq!(
            c(
                429,
                r#"{"ok":false,"error_code":429,"parameters":{"retry_after":9223372036854775807}}"#
            ),
            SendOutcome::RateLimited {
                retry_after_ms: i64::MAX
            }
        );
        assert_eq!(
            c(
                429,
                r#"{"ok":false,"error_code":429,"parameters":{"retry_after":-5}}"#
            ),
            SendOutcome::RateLimited {
                retry_after_ms: DEFAULT_RETRY_AFTER_MS
            }
        );
    }

    #[test]
    fn blocked_deactivated_and_never_started_are_permanent() {
        for d in [
            "Forbidden: bot was blocked by the user",
            "Forbidden: user is deactivated",
            "Forbidden: bot can't initiate conversation with a user",
            "Forbidden: bot was kicked from the group chat",
        ] {
            let body = format!(r#"{{"ok":false,"error_code":403,"description":"{d}"}}"#);
            match c(403, &body) {
                SendOutcome::Permanent { reason } => assert!(reason.contains(d), "{reason}"),
                other => panic!("{d}: {other:?}"),
            }
        }
    }

    #[test]
    fn chat_not_found_is_permanent() {
        for d in [
            "Bad Request: chat not found",
            "Bad Request: PEER_ID_INVALID",
        ] {
            let body = format!(r#"{{"ok":false,"error_code":400,"description":"{d}"}}"#);
            assert!(
                matches!(c(400, &body), SendOutcome::Permanent { .. }),
                "{d}"
            );
        }
    }

    #[test]
    fn a_bad_message_is_permanent_not_misconfigured() {
        assert!(matches!(
            c(
                400,
                r#"{"ok":false,"error_code":400,"description":"Bad Request: message is too long"}"#
            ),
            SendOutcome::Permanent { .. }
        ));
    }

    #[test]
    fn migrated_group_names_the_new_chat_id() {
        match c(
            400,
            r#"{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1001234567890}}"#,
        ) {
            SendOutcome::Permanent { reason } => assert!(reason.contains("-1001234567890")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_token_is_misconfigured() {
        assert!(matches!(
            c(
                401,
                r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#
            ),
            SendOutcome::Misconfigured { .. }
        ));
        assert!(matches!(
            c(
                404,
                r#"{"ok":false,"error_code":404,"description":"Not Found"}"#
            ),
            SendOutcome::Misconfigured { .. }
        ));
    }

    #[test]
    fn server_errors_are_transient() {
        assert!(matches!(
            classify(502, None, "1", "t"),
            SendOutcome::Transient {
                retry_after_ms: None,
                ..
            }
        ));
        assert!(matches!(
            c(
                500,
                r#"{"ok":false,"error_code":500,"description":"Internal Server Error","parameters":{"retry_after":2}}"#
            ),
            SendOutcome::Transient {
                retry_after_ms: Some(2_000),
                ..
            }
        ));
    }

    #[test]
    fn other_client_errors_are_permanent() {
        assert!(matches!(
            c(
                409,
                r#"{"ok":false,"error_code":409,"description":"Conflict"}"#
            ),
            SendOutcome::Permanent { .. }
        ));
    }

    #[test]
    fn callback_data_fits_the_limit() {
        assert!((1..=64).contains(&CALLBACK_DATA.len()));
    }
}
