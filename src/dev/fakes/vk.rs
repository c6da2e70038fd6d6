//! A loopback VK API (docs/provider-notes.md, "The fakes"): `messages.send` at
//! `{base_url}/messages.send`, form-urlencoded (POST) or query (GET), with
//! VK's real answers and error bodies; and the community's Callback API
//! events (`message_read`, `message_new`, `confirmation`) delivered to the
//! daemon with the community's `secret`.
//!
//! Like VK, it keeps `random_id → message id`: a send repeating a
//! `random_id` answers the stored id and makes no second message, so
//! `messages()` counts what the customer would see and `received()` every
//! request that arrived.
//!
//! ```no_run
//! # async fn demo() {
//! use cascade::dev::fakes::vk::FakeVk;
//! let vk = FakeVk::start().await;
//! // channels/vk.toml: base_url = "<vk.base_url()>", group_id = "<vk.group_id()>"
//! let sent = vk.messages();
//! let read = vk.message_read("the callback_secret", 123456, sent[0].message_id);
//! let (status, body) = vk.deliver("http://127.0.0.1:8080/callbacks/vk/vk", &read).await;
//! # let _ = (status, body);
//! # }
//! ```
//!
//! | `Scripted` | answer to `messages.send` (always HTTP 200, like VK) |
//! |---|---|
//! | `Ok` | `{"response": <message id>}` (ids count up from 1001) |
//! | `Transient` | error 10 `Internal server error` |
//! | `RateLimited(_)` | error 6 `Too many requests per second` (VK names no delay) |
//! | `Permanent` | error 901 `Can't send messages for users without permission` |
//! | `Misconfigured` | error 5 `User authorization failed: invalid access_token (4).` |
//! | `Slow(d)` | keeps the message, waits `d`, then answers its id |
//!
//! Any other VK error: `error_next(code)`; any other answer at all:
//! `answer_next(status, body)`. Both go before the script.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::form_pairs;
use super::script::{Script, Scripted};

/// The API version the fake's callbacks claim.
pub const API_VERSION: &str = "5.199";

/// One `messages.send` request as it arrived (also the refused ones).
#[derive(Clone, Debug)]
pub struct Request {
    pub peer_id: Option<i64>,
    pub message: Option<String>,
    pub random_id: Option<i64>,
    pub access_token: Option<String>,
    pub v: Option<String>,
    /// Every parameter, in order (the token included).
    pub params: Vec<(String, String)>,
}

/// A message the fake keeps: one per distinct `random_id`.
#[derive(Clone, Debug)]
pub struct Message {
    /// When the request that sent it arrived.
    pub at: std::time::Instant,
    pub message_id: i64,
    pub peer_id: i64,
    pub text: String,
    pub random_id: i64,
}

#[derive(Default)]
struct Inner {
    requests: Mutex<Vec<Request>>,
    messages: Mutex<Vec<Message>>,
    by_random_id: Mutex<HashMap<i64, i64>>,
    raw: Mutex<VecDeque<(u16, Value)>>,
    next_message_id: AtomicI64,
    next_event: AtomicI64,
}

/// The fake VK API; cheap to clone, stops with the runtime.
#[derive(Clone)]
pub struct FakeVk {
    addr: SocketAddr,
    group_id: i64,
    script: Script,
    inner: Arc<Inner>,
    http: reqwest::Client,
}

impl FakeVk {
    /// Starts on `127.0.0.1:0` for community 1. Panics if no loopback port
    /// can be bound.
    pub async fn start() -> FakeVk {
        FakeVk::start_on(super::LOOPBACK_ANY)
            .await
            .expect("a loopback port for the fake VK")
    }

    /// Starts on `addr` (`cascade fakes` binds fixed ports) for community 1.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<FakeVk> {
        let inner = Arc::new(Inner {
            next_message_id: AtomicI64::new(1001),
            next_event: AtomicI64::new(1),
            ..Inner::default()
        });
        let script = Script::default();
        let app = Router::new()
            .route("/method/{method}", get(call).post(call))
            .with_state((inner.clone(), script.clone()));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeVk {
            addr,
            group_id: 1,
            script,
            inner,
            http: reqwest::Client::new(),
        })
    }

    /// The same fake, speaking for another community in its callbacks.
    pub fn with_group_id(mut self, group_id: i64) -> FakeVk {
        self.group_id = group_id;
        self
    }

    /// The channel's `base_url` (`http://127.0.0.1:<port>/method`).
    pub fn base_url(&self) -> String {
        format!("http://{}/method", self.addr)
    }

    /// The community its callbacks come from (the channel's `group_id`).
    pub fn group_id(&self) -> i64 {
        self.group_id
    }

    /// What the next `messages.send` calls answer.
    pub fn script(&self) -> &Script {
        &self.script
    }

    /// Answers the next `messages.send` with exactly this status and body.
    pub fn answer_next(&self, status: u16, body: Value) {
        if let Ok(mut q) = self.inner.raw.lock() {
            q.push_back((status, body));
        }
    }

    /// Answers the next `messages.send` with VK's error `code` (HTTP 200,
    /// VK's own `error_msg` for it).
    pub fn error_next(&self, code: i64) {
        self.answer_next(200, error_body(code, &[]));
    }

    /// Every `messages.send` request received, in order.
    pub fn received(&self) -> Vec<Request> {
        self.inner
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// How many `messages.send` requests arrived, without copying them
    /// (the benchmark polls this).
    pub fn received_count(&self) -> usize {
        self.inner.requests.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// The distinct messages kept (what the customers would see), in order.
    pub fn messages(&self) -> Vec<Message> {
        self.inner
            .messages
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// A Callback API event of this community, with a fresh `event_id`.
    pub fn event(&self, kind: &str, object: Value, secret: &str) -> Value {
        let n = self.inner.next_event.fetch_add(1, Ordering::SeqCst);
        json!({
            "type": kind,
            "object": object,
            "group_id": self.group_id,
            "event_id": format!("{:08x}{:032x}", self.addr.port(), n),
            "v": API_VERSION,
            "secret": secret,
        })
    }

    /// `message_read`: the customer `peer_id` read every message of the
    /// community in their conversation up to `read_message_id`.
    pub fn message_read(&self, secret: &str, peer_id: i64, read_message_id: i64) -> Value {
        let object = json!({
            "from_id": peer_id,
            "peer_id": peer_id,
            "read_message_id": read_message_id,
            "conversation_message_id": read_message_id - 1000,
        });
        self.event("message_read", object, secret)
    }

    /// `message_new` (API ≥ 5.103 shape): the customer `peer_id` wrote `text`
    /// to the community.
    pub fn message_new(&self, secret: &str, peer_id: i64, text: &str) -> Value {
        let id = self.inner.next_message_id.fetch_add(1, Ordering::SeqCst);
        let object = json!({
            "message": {
                "id": id,
                "date": 1_763_900_000,
                "peer_id": peer_id,
                "from_id": peer_id,
                "out": 0,
                "text": text,
                "conversation_message_id": id - 1000,
                "fwd_messages": [],
                "important": false,
                "is_hidden": false,
                "attachments": [],
            },
            "client_info": {
                "button_actions": ["text", "callback", "open_link"],
                "keyboard": true,
                "inline_keyboard": true,
                "carousel": true,
                "lang_id": 0,
            },
        });
        self.event("message_new", object, secret)
    }

    /// The `confirmation` request VK sends when a server is added.
    pub fn confirmation(&self) -> Value {
        json!({ "type": "confirmation", "group_id": self.group_id })
    }

    /// POSTs an event to the daemon's callback URL
    /// (`<daemon>/callbacks/vk/<channel>`) as VK does; returns the HTTP
    /// status and body (0 and "" if the daemon did not answer).
    pub async fn deliver(&self, callback_url: &str, event: &Value) -> (u16, String) {
        match self.http.post(callback_url).json(event).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.text().await.unwrap_or_default())
            }
            Err(_) => (0, String::new()),
        }
    }
}

/// VK's text for an error code (VK's `errors.json`).
fn error_message(code: i64) -> &'static str {
    match code {
        1 => "Unknown error occurred",
        5 => "User authorization failed: invalid access_token (4).",
        6 => "Too many requests per second",
        7 => "Permission to perform this action is denied",
        8 => "Invalid request: v (version) is required",
        9 => "Flood control",
        10 => "Internal server error",
        14 => "Captcha needed",
        15 => "Access denied: group messages are disabled",
        18 => "User was deleted or banned",
        27 => "Group authorization failed: method is unavailable with group auth.",
        28 => "Application authorization failed",
        29 => "Rate limit reached",
        100 => "One of the parameters specified was missing or invalid",
        104 => "Not found",
        113 => "Invalid user id",
        900 => "Can't send messages for users from blacklist",
        901 => "Can't send messages for users without permission",
        902 => "Can't send messages to this user due to their privacy settings",
        910 => "Can't sent this message, because it's too big",
        911 => "Keyboard format is invalid",
        912 => "This is a chat bot feature, change this status in settings",
        913 => "Too many forwarded messages",
        914 => "Message is too long",
        917 => "You don't have access to this chat",
        922 => "You left this chat",
        927 => "Chat does not exist",
        932 => "Your community can't interact with this peer",
        936 => "Contact not found",
        945 => "Chat was disabled",
        946 => "Chat not supported",
        950 => "Can't send message, reply timed out",
        985 => "Cannot write to notifications only groups",
        987 => "Need message request",
        988 => "Pending message request",
        1012 => "Writing is disabled for this chat",
        1117 => "Access token has expired",
        _ => "Unknown error occurred",
    }
}

/// `{"error":{"error_code":…,"error_msg":…,"request_params":[…]}}`; VK lists
/// the request's parameters without the token.
fn error_body(code: i64, params: &[(String, String)]) -> Value {
    let request_params: Vec<Value> = params
        .iter()
        .filter(|(k, _)| k != "access_token" && k != "message")
        .map(|(k, v)| json!({ "key": k, "value": v }))
        .collect();
    json!({
        "error": {
            "error_code": code,
            "error_msg": error_message(code),
            "request_params": request_params,
        }
    })
}

fn answer(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn call(
    State((inner, script)): State<(Arc<Inner>, Script)>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    body: axum::body::Bytes,
) -> Response {
    let mut params = form_pairs(query.as_deref().unwrap_or(""));
    params.extend(form_pairs(&String::from_utf8_lossy(&body)));
    let mut with_method = vec![("method".to_owned(), method.clone())];
    with_method.extend(params.iter().cloned());
    if method != "messages.send" {
        return answer(error_body(3, &with_method));
    }
    send(&inner, &script, params, &with_method).await
}

async fn send(
    inner: &Inner,
    script: &Script,
    params: Vec<(String, String)>,
    with_method: &[(String, String)],
) -> Response {
    let param = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let request = Request {
        peer_id: param("peer_id")
            .or_else(|| param("user_id"))
            .and_then(|p| p.parse().ok()),
        message: param("message"),
        random_id: param("random_id").and_then(|r| r.parse().ok()),
        access_token: param("access_token"),
        v: param("v"),
        params: params.clone(),
    };
    if let Ok(mut r) = inner.requests.lock() {
        r.push(request.clone());
    }
    let raw = inner.raw.lock().ok().and_then(|mut q| q.pop_front());
    if let Some((status, body)) = raw {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, axum::Json(body)).into_response();
    }
    let refuse = |code: i64, why: &str| {
        let mut body = error_body(code, with_method);
        body["error"]["error_msg"] = json!(why);
        answer(body)
    };
    if request.access_token.as_deref().is_none_or(str::is_empty) {
        return refuse(5, "User authorization failed: no access_token passed.");
    }
    if request.v.is_none() {
        return answer(error_body(8, with_method));
    }
    let Some(random_id) = request.random_id else {
        return refuse(
            100,
            "One of the parameters specified was missing or invalid: random_id is a required parameter",
        );
    };
    let Some(peer_id) = request.peer_id else {
        return refuse(
            100,
            "One of the parameters specified was missing or invalid: peer_id is undefined",
        );
    };
    let text = request.message.clone().unwrap_or_default();
    if text.trim().is_empty() && param("attachment").is_none() {
        return refuse(
            100,
            "One of the parameters specified was missing or invalid: message is empty or invalid",
        );
    }
    if text.chars().count() > 9000 {
        return answer(error_body(914, with_method));
    }
    match script.next() {
        Scripted::Ok => answer(json!({ "response": keep(inner, peer_id, text, random_id) })),
        Scripted::Slow(d) => {
            let id = keep(inner, peer_id, text, random_id);
            tokio::time::sleep(d).await;
            answer(json!({ "response": id }))
        }
        Scripted::Transient => answer(error_body(10, with_method)),
        Scripted::RateLimited(_) => answer(error_body(6, with_method)),
        Scripted::Permanent => answer(error_body(901, with_method)),
        Scripted::Misconfigured => answer(error_body(5, with_method)),
    }
}

/// Keeps a message, once per `random_id` (0 turns the check off); returns its id.
fn keep(inner: &Inner, peer_id: i64, text: String, random_id: i64) -> i64 {
    let Ok(mut by_random_id) = inner.by_random_id.lock() else {
        return 0;
    };
    if random_id != 0
        && let Some(id) = by_random_id.get(&random_id)
    {
        return *id;
    }
    let id = inner.next_message_id.fetch_add(1, Ordering::SeqCst);
    if random_id != 0 {
        by_random_id.insert(random_id, id);
    }
    if let Ok(mut m) = inner.messages.lock() {
        m.push(Message {
            at: std::time::Instant::now(),
            message_id: id,
            peer_id,
            text,
            random_id,
        });
    }
    id
}
