//! A loopback Telegram Bot API (docs/provider-notes.md, "The fakes"): `POST /bot<token>/sendMessage`
//! and `/bot<token>/answerCallbackQuery`, JSON in and out, with the real
//! answer and error bodies. Scriptable through `Script` (for `sendMessage`)
//! or one raw answer at a time; able to deliver updates (button presses,
//! replies) to the daemon's webhook with the secret-token header.
//!
//! ```no_run
//! # async fn demo() {
//! use cascade::dev::fakes::telegram::FakeTelegram;
//! let tg = FakeTelegram::start().await;
//! // channels/telegram.toml: base_url = "<tg.base_url()>"
//! let sent = tg.messages();            // what the daemon sent
//! # let _ = sent;
//! # }
//! ```
//!
//! | `Scripted` | answer to `sendMessage` |
//! |---|---|
//! | `Ok` | 200 `{"ok":true,"result":{"message_id":N,"chat":{…},…}}` |
//! | `Transient` | 502 `Bad Gateway` |
//! | `RateLimited(d)` | 429 `Too Many Requests: retry after S`, `parameters.retry_after = S` |
//! | `Permanent` | 403 `Forbidden: bot was blocked by the user` |
//! | `Misconfigured` | 401 `Unauthorized` |
//! | `Slow(d)` | records the message, waits `d`, then 200 |

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::script::{Script, Scripted};

/// One Bot API call the fake received.
#[derive(Clone, Debug)]
pub struct Call {
    /// `sendMessage`, `answerCallbackQuery`, …
    pub method: String,
    /// The bot token from the path.
    pub token: String,
    pub body: Value,
}

/// A message the fake accepted (and a customer could press the button of).
#[derive(Clone, Debug)]
pub struct Message {
    pub chat_id: i64,
    pub message_id: i64,
    pub text: String,
    /// The `callback_data` of the first callback button, if any.
    pub callback_data: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    calls: Mutex<Vec<Call>>,
    messages: Mutex<Vec<Message>>,
    raw: Mutex<VecDeque<(u16, Value)>>,
    next_message_id: AtomicI64,
}

/// The fake Bot API server; cheap to clone, stops with the runtime.
#[derive(Clone)]
pub struct FakeTelegram {
    addr: SocketAddr,
    script: Script,
    inner: Arc<Inner>,
    next_update_id: Arc<AtomicI64>,
    http: reqwest::Client,
}

impl FakeTelegram {
    /// Starts on `127.0.0.1:0`. Panics if no loopback port can be bound.
    pub async fn start() -> FakeTelegram {
        FakeTelegram::start_on(super::LOOPBACK_ANY)
            .await
            .expect("a loopback port for the fake Telegram")
    }

    /// Starts on `addr` (`cascade fakes` binds fixed ports).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<FakeTelegram> {
        let inner = Arc::new(Inner {
            next_message_id: AtomicI64::new(42),
            ..Inner::default()
        });
        let script = Script::default();
        let app = Router::new()
            .route("/{bot}/{method}", post(call))
            .with_state((inner.clone(), script.clone()));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeTelegram {
            addr,
            script,
            inner,
            next_update_id: Arc::new(AtomicI64::new(1)),
            http: reqwest::Client::new(),
        })
    }

    /// The channel's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the next `sendMessage` calls answer.
    pub fn script(&self) -> &Script {
        &self.script
    }

    /// Answers the next `sendMessage` with exactly this status and body
    /// (before the script), e.g. a 400 with `migrate_to_chat_id`.
    pub fn answer_next(&self, status: u16, body: Value) {
        if let Ok(mut q) = self.inner.raw.lock() {
            q.push_back((status, body));
        }
    }

    /// Every call received, in order.
    pub fn received(&self) -> Vec<Call> {
        self.inner
            .calls
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// The calls of one method.
    pub fn calls(&self, method: &str) -> Vec<Call> {
        self.received()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }

    /// The messages accepted (answered `ok`), in order.
    pub fn messages(&self) -> Vec<Message> {
        self.inner
            .messages
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// A fresh `update_id`.
    pub fn next_update_id(&self) -> i64 {
        self.next_update_id.fetch_add(1, Ordering::SeqCst)
    }

    /// The update Telegram sends when the customer presses the message's button.
    pub fn button_press(&self, message: &Message) -> Value {
        json!({
            "update_id": self.next_update_id(),
            "callback_query": {
                "id": format!("cbq{}", message.message_id),
                "from": { "id": message.chat_id, "is_bot": false, "first_name": "Ivan" },
                "message": {
                    "message_id": message.message_id,
                    "date": 1_763_900_000,
                    "chat": { "id": message.chat_id, "type": "private" },
                    "text": message.text,
                },
                "chat_instance": "-1",
                "data": message.callback_data.clone().unwrap_or_default(),
            }
        })
    }

    /// The update for the customer replying to the message.
    pub fn reply(&self, message: &Message, text: &str) -> Value {
        json!({
            "update_id": self.next_update_id(),
            "message": {
                "message_id": message.message_id + 1000,
                "from": { "id": message.chat_id, "is_bot": false, "first_name": "Ivan" },
                "chat": { "id": message.chat_id, "type": "private" },
                "date": 1_763_900_000,
                "text": text,
                "reply_to_message": {
                    "message_id": message.message_id,
                    "date": 1_763_900_000,
                    "chat": { "id": message.chat_id, "type": "private" },
                }
            }
        })
    }

    /// The update for a message the customer writes in the chat of
    /// `message` without quoting anything, `later` ids after it.
    pub fn unquoted(&self, message: &Message, later: i64, text: &str) -> Value {
        json!({
            "update_id": self.next_update_id(),
            "message": {
                "message_id": message.message_id + later,
                "from": { "id": message.chat_id, "is_bot": false, "first_name": "Ivan" },
                "chat": { "id": message.chat_id, "type": "private" },
                "date": 1_763_900_000,
                "text": text,
            }
        })
    }

    /// POSTs an update to the daemon's webhook (`<daemon>/callbacks/telegram/<channel>`)
    /// with `X-Telegram-Bot-Api-Secret-Token: secret` (none if `None`);
    /// returns the HTTP status (0 if the daemon did not answer).
    pub async fn deliver(&self, webhook_url: &str, secret: Option<&str>, update: &Value) -> u16 {
        let mut request = self.http.post(webhook_url).json(update);
        if let Some(s) = secret {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", s);
        }
        match request.send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// Presses the button of `message` (see `button_press`, `deliver`).
    pub async fn press_button(&self, webhook_url: &str, secret: &str, message: &Message) -> u16 {
        let update = self.button_press(message);
        self.deliver(webhook_url, Some(secret), &update).await
    }
}

fn error(status: StatusCode, description: &str, parameters: Option<Value>) -> Response {
    let mut body =
        json!({ "ok": false, "error_code": status.as_u16(), "description": description });
    if let Some(p) = parameters {
        body["parameters"] = p;
    }
    (status, axum::Json(body)).into_response()
}

/// Checks a `sendMessage` body as Telegram would.
fn invalid(body: &Value) -> Option<&'static str> {
    if body.get("chat_id").is_none_or(Value::is_null) {
        return Some("Bad Request: chat_id is empty");
    }
    let text = body.get("text").and_then(Value::as_str).unwrap_or("");
    if text.trim().is_empty() {
        return Some("Bad Request: message text is empty");
    }
    if text.chars().count() > 4096 {
        return Some("Bad Request: message is too long");
    }
    let buttons = body
        .pointer("/reply_markup/inline_keyboard")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten();
    for button in buttons {
        if let Some(data) = button.get("callback_data").and_then(Value::as_str)
            && !(1..=64).contains(&data.len())
        {
            return Some("Bad Request: BUTTON_DATA_INVALID");
        }
        if let Some(url) = button.get("url").and_then(Value::as_str)
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Some("Bad Request: BUTTON_URL_INVALID");
        }
    }
    None
}

async fn call(
    State((inner, script)): State<(Arc<Inner>, Script)>,
    Path((bot, method)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let Some(token) = bot.strip_prefix("bot").map(str::to_owned) else {
        return error(StatusCode::NOT_FOUND, "Not Found", None);
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Ok(mut calls) = inner.calls.lock() {
        calls.push(Call {
            method: method.clone(),
            token,
            body: body.clone(),
        });
    }
    match method.as_str() {
        "answerCallbackQuery" => (
            StatusCode::OK,
            axum::Json(json!({ "ok": true, "result": true })),
        )
            .into_response(),
        "sendMessage" => send_message(&inner, &script, body).await,
        _ => error(StatusCode::NOT_FOUND, "Not Found: method not found", None),
    }
}

async fn send_message(inner: &Inner, script: &Script, body: Value) -> Response {
    let raw = inner.raw.lock().ok().and_then(|mut q| q.pop_front());
    if let Some((status, answer)) = raw {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, axum::Json(answer)).into_response();
    }
    if let Some(problem) = invalid(&body) {
        return error(StatusCode::BAD_REQUEST, problem, None);
    }
    match script.next() {
        Scripted::Ok => accept(inner, &body),
        Scripted::Slow(d) => {
            let answer = accept(inner, &body);
            tokio::time::sleep(d).await;
            answer
        }
        Scripted::Transient => error(StatusCode::BAD_GATEWAY, "Bad Gateway", None),
        Scripted::RateLimited(d) => {
            let s = d.as_secs_f64().ceil().max(1.0) as i64;
            error(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too Many Requests: retry after {s}"),
                Some(json!({ "retry_after": s })),
            )
        }
        Scripted::Permanent => error(
            StatusCode::FORBIDDEN,
            "Forbidden: bot was blocked by the user",
            None,
        ),
        Scripted::Misconfigured => error(StatusCode::UNAUTHORIZED, "Unauthorized", None),
    }
}

fn accept(inner: &Inner, body: &Value) -> Response {
    let chat_id = match body.get("chat_id") {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    };
    let message_id = inner.next_message_id.fetch_add(1, Ordering::SeqCst);
    let text = body
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let callback_data = body
        .pointer("/reply_markup/inline_keyboard")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .find_map(|b| b.get("callback_data").and_then(Value::as_str))
        .map(str::to_owned);
    if let Ok(mut m) = inner.messages.lock() {
        m.push(Message {
            chat_id,
            message_id,
            text: text.clone(),
            callback_data,
            body: body.clone(),
        });
    }
    let result = json!({
        "message_id": message_id,
        "from": { "id": 1, "is_bot": true, "first_name": "Cascade", "username": "cascade_bot" },
        "chat": { "id": chat_id, "first_name": "Ivan", "type": "private" },
        "date": 1_763_900_000,
        "text": text,
        "reply_markup": body.get("reply_markup").cloned().unwrap_or(Value::Null),
    });
    (
        StatusCode::OK,
        axum::Json(json!({ "ok": true, "result": result })),
    )
        .into_response()
}
