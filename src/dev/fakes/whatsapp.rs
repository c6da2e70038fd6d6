//! A loopback WhatsApp Cloud API (docs/provider-notes.md, "The fakes"): `POST /{version}/{phone_number_id}/messages`
//! with `Authorization: Bearer …`, JSON in and out, the real success and
//! Graph error bodies. Scriptable through `Script` or one raw answer at a
//! time; able to deliver signed status webhooks (`X-Hub-Signature-256`) and
//! the verification `GET` to the daemon.
//!
//! ```no_run
//! # async fn demo() {
//! use cascade::dev::fakes::whatsapp::FakeWhatsApp;
//! let wa = FakeWhatsApp::start().await;
//! // channels/whatsapp.toml: base_url = "<wa.base_url()>"
//! let sent = wa.messages();
//! # let _ = sent;
//! # }
//! ```
//!
//! | `Scripted` | answer |
//! |---|---|
//! | `Ok` | 200 `{"messaging_product":"whatsapp","contacts":[…],"messages":[{"id":"wamid.TEST<n>"}]}` |
//! | `Transient` | 500, code 131000 `Something went wrong` |
//! | `RateLimited(_)` | 400, code 130429 `Rate limit hit` (Meta names no retry-after) |
//! | `Permanent` | 400, code 131026 `Message Undeliverable` |
//! | `Misconfigured` | 401, code 190 `Error validating access token` |
//! | `Slow(d)` | records the message, waits `d`, then 200 |

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::script::{Script, Scripted};

/// One request to `/messages`.
#[derive(Clone, Debug)]
pub struct Request {
    pub api_version: String,
    pub phone_number_id: String,
    /// The `Authorization` header as sent.
    pub authorization: Option<String>,
    pub body: Value,
}

/// A message the fake accepted.
#[derive(Clone, Debug)]
pub struct Message {
    pub wamid: String,
    /// The recipient's digits (`to`).
    pub to: String,
    /// `text` or `template`.
    pub kind: String,
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    requests: Mutex<Vec<Request>>,
    messages: Mutex<Vec<Message>>,
    raw: Mutex<VecDeque<(u16, Value)>>,
    next: AtomicU64,
}

/// The fake Cloud API server; cheap to clone, stops with the runtime.
#[derive(Clone)]
pub struct FakeWhatsApp {
    addr: SocketAddr,
    script: Script,
    inner: Arc<Inner>,
    http: reqwest::Client,
}

/// A Graph API error body.
pub fn graph_error(code: i64, message: &str, details: &str) -> Value {
    json!({
        "error": {
            "message": format!("(#{code}) {message}"),
            "type": "OAuthException",
            "code": code,
            "error_data": { "messaging_product": "whatsapp", "details": details },
            "fbtrace_id": "AFakeTraceId",
        }
    })
}

impl FakeWhatsApp {
    /// Starts on `127.0.0.1:0`. Panics if no loopback port can be bound.
    pub async fn start() -> FakeWhatsApp {
        FakeWhatsApp::start_on(super::LOOPBACK_ANY)
            .await
            .expect("a loopback port for the fake WhatsApp")
    }

    /// Starts on `addr` (`cascade fakes` binds fixed ports).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<FakeWhatsApp> {
        let inner = Arc::new(Inner {
            next: AtomicU64::new(1),
            ..Inner::default()
        });
        let script = Script::default();
        let app = Router::new()
            .route("/{version}/{phone}/messages", post(messages))
            .with_state((inner.clone(), script.clone()));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeWhatsApp {
            addr,
            script,
            inner,
            http: reqwest::Client::new(),
        })
    }

    /// The channel's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the next sends answer.
    pub fn script(&self) -> &Script {
        &self.script
    }

    /// Answers the next send with exactly this status and body (before the
    /// script), e.g. `(400, graph_error(131047, …))`.
    pub fn answer_next(&self, status: u16, body: Value) {
        if let Ok(mut q) = self.inner.raw.lock() {
            q.push_back((status, body));
        }
    }

    /// Every request received, in order.
    pub fn received(&self) -> Vec<Request> {
        self.inner
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// The messages accepted, in order.
    pub fn messages(&self) -> Vec<Message> {
        self.inner
            .messages
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// One status item, as in a `statuses[]` webhook.
    pub fn status(message: &Message, status: &str) -> Value {
        let mut item = json!({
            "id": message.wamid,
            "status": status,
            "timestamp": "1763900000",
            "recipient_id": message.to,
        });
        if let Some(data) = message.body.get("biz_opaque_callback_data") {
            item["biz_opaque_callback_data"] = data.clone();
        }
        if status == "failed" {
            item["errors"] = json!([{
                "code": 131026,
                "title": "Message undeliverable",
                "message": "Message undeliverable",
                "error_data": { "details": "The recipient is not a WhatsApp user" }
            }]);
        }
        item
    }

    /// The webhook envelope around status items.
    pub fn envelope(statuses: Vec<Value>) -> Value {
        json!({
            "object": "whatsapp_business_account",
            "entry": [{
                "id": "102290129340398",
                "changes": [{
                    "field": "messages",
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": { "display_phone_number": "15550783881", "phone_number_id": "106540352242922" },
                        "statuses": statuses,
                    }
                }]
            }]
        })
    }

    /// POSTs `body` to the daemon's webhook with `X-Hub-Signature-256`
    /// computed over exactly these bytes; returns the HTTP status (0 if
    /// the daemon did not answer).
    pub async fn deliver(&self, webhook_url: &str, app_secret: &str, body: &Value) -> u16 {
        let bytes = body.to_string().into_bytes();
        let signature = Self::signature(app_secret, &bytes);
        self.deliver_raw(webhook_url, Some(&signature), bytes).await
    }

    /// `X-Hub-Signature-256` as Meta computes it, `sha256=<hex
    /// HMAC-SHA256(app_secret, body)>`: the fake's own, not the daemon's.
    pub fn signature(app_secret: &str, body: &[u8]) -> String {
        match Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()) {
            Ok(mut mac) => {
                mac.update(body);
                format!("sha256={:x}", mac.finalize().into_bytes())
            }
            Err(_) => String::new(), // HMAC takes keys of any length
        }
    }

    /// POSTs bytes with the given signature header (or none): for forged
    /// and unsigned deliveries.
    pub async fn deliver_raw(
        &self,
        webhook_url: &str,
        signature: Option<&str>,
        body: Vec<u8>,
    ) -> u16 {
        let mut request = self
            .http
            .post(webhook_url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(s) = signature {
            request = request.header("X-Hub-Signature-256", s);
        }
        match request.send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// Sends one signed status of `message` (`delivered`, `read`, `failed`).
    pub async fn send_status(
        &self,
        webhook_url: &str,
        app_secret: &str,
        message: &Message,
        status: &str,
    ) -> u16 {
        let body = Self::envelope(vec![Self::status(message, status)]);
        self.deliver(webhook_url, app_secret, &body).await
    }

    /// The verification `GET`; returns the status and body.
    pub async fn verify(
        &self,
        webhook_url: &str,
        verify_token: &str,
        challenge: &str,
    ) -> (u16, String) {
        let request = self.http.get(webhook_url).query(&[
            ("hub.mode", "subscribe"),
            ("hub.verify_token", verify_token),
            ("hub.challenge", challenge),
        ]);
        match request.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.text().await.unwrap_or_default())
            }
            Err(_) => (0, String::new()),
        }
    }
}

fn error(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Checks a message body as the Cloud API would.
fn invalid(body: &Value) -> Option<Value> {
    let bad = |what: &str| Some(graph_error(100, "Invalid parameter", what));
    if body.get("messaging_product").and_then(Value::as_str) != Some("whatsapp") {
        return bad("messaging_product must be \"whatsapp\"");
    }
    let to = body.get("to").and_then(Value::as_str).unwrap_or("");
    if to.is_empty() || !to.bytes().all(|b| b.is_ascii_digit() || b == b'+') {
        return bad("to must be a phone number");
    }
    match body.get("type").and_then(Value::as_str) {
        Some("text") => {
            let text = body
                .pointer("/text/body")
                .and_then(Value::as_str)
                .unwrap_or("");
            if text.is_empty() {
                return bad("text.body is required");
            }
            if text.chars().count() > 4096 {
                return bad("text.body is longer than 4096 characters");
            }
        }
        Some("template") => {
            let name = body.pointer("/template/name").and_then(Value::as_str);
            let language = body
                .pointer("/template/language/code")
                .and_then(Value::as_str);
            if name.is_none_or(str::is_empty) || language.is_none_or(str::is_empty) {
                return bad("template.name and template.language.code are required");
            }
        }
        _ => return bad("type must be text or template"),
    }
    None
}

async fn messages(
    State((inner, script)): State<(Arc<Inner>, Script)>,
    Path((version, phone)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Ok(mut r) = inner.requests.lock() {
        r.push(Request {
            api_version: version,
            phone_number_id: phone,
            authorization: authorization.clone(),
            body: body.clone(),
        });
    }
    let raw = inner.raw.lock().ok().and_then(|mut q| q.pop_front());
    if let Some((status, answer)) = raw {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return error(status, answer);
    }
    if !authorization.is_some_and(|a| a.starts_with("Bearer ") && a.len() > 7) {
        return error(
            StatusCode::UNAUTHORIZED,
            graph_error(190, "Invalid OAuth access token", "missing bearer token"),
        );
    }
    if let Some(problem) = invalid(&body) {
        return error(StatusCode::BAD_REQUEST, problem);
    }
    match script.next() {
        Scripted::Ok => accept(&inner, &body),
        Scripted::Slow(d) => {
            let answer = accept(&inner, &body);
            tokio::time::sleep(d).await;
            answer
        }
        Scripted::Transient => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            graph_error(131000, "Something went wrong", "Something went wrong"),
        ),
        Scripted::RateLimited(_) => error(
            StatusCode::BAD_REQUEST,
            graph_error(
                130429,
                "Rate limit hit",
                "Cloud API message throughput has been reached.",
            ),
        ),
        Scripted::Permanent => error(
            StatusCode::BAD_REQUEST,
            graph_error(131026, "Message Undeliverable", "Message Undeliverable."),
        ),
        Scripted::Misconfigured => error(
            StatusCode::UNAUTHORIZED,
            graph_error(
                190,
                "Error validating access token: Session has expired",
                "access token expired",
            ),
        ),
    }
}

fn accept(inner: &Inner, body: &Value) -> Response {
    let n = inner.next.fetch_add(1, Ordering::SeqCst);
    let wamid = format!("wamid.TEST{n}");
    let to = body
        .get("to")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let kind = body
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if let Ok(mut m) = inner.messages.lock() {
        m.push(Message {
            wamid: wamid.clone(),
            to: to.clone(),
            kind: kind.clone(),
            body: body.clone(),
        });
    }
    let mut message = json!({ "id": wamid });
    if kind == "template" {
        message["message_status"] = json!("accepted");
    }
    (
        StatusCode::OK,
        axum::Json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{ "input": to, "wa_id": to.trim_start_matches('+') }],
            "messages": [message],
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_rfc_4231_test_case_2() {
        assert_eq!(
            FakeWhatsApp::signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
