//! A fake SMS.ru on `127.0.0.1:0`: `GET|POST /sms/send` with `api_id`,
//! `to`, `msg`, `json=1` (and `from`), answered in SMS.ru's JSON with a
//! status for the request and one per number. It records every accepted
//! message and can send delivery reports to the daemon the way SMS.ru does.
//!
//! ```no_run
//! # async fn demo() {
//! use cascade::dev::fakes::{script::Scripted, smsru::FakeSmsRu};
//! let sms = FakeSmsRu::start().await;
//! sms.script().then(Scripted::Transient, 1); // top-level 220, then success
//! // … point a channel's `base_url` at `sms.base_url()`, send …
//! let sent = sms.received();
//! sms.report("http://127.0.0.1:8080/callbacks/sms/sms/secret", &sent[0].id, 103).await;
//! # }
//! ```
//!
//! Scripted answers map to SMS.ru codes: `Transient` → request status 220
//! (service unavailable), `RateLimited` → number status 231 (identical
//! message within a minute), `Permanent` → number status 202 (invalid
//! number), `Misconfigured` → request status 200 (invalid `api_id`),
//! `Slow(d)` → accepted, answered after `d`. Any code can be queued with
//! `then_status`, ahead of the script.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::form_pairs;
use super::script::{Script, Scripted};

/// One message a fake gateway accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedSms {
    /// The number as sent to the gateway (SMS.ru and SMSC: digits only).
    pub phone: String,
    pub text: String,
    /// The sender name (`from` at SMS.ru, `sender` at SMSC).
    pub sender: Option<String>,
    /// The provider message id: SMS.ru's `sms_id`, SMSC's `id`.
    pub id: String,
}

/// An SMS.ru status code to answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// For the whole request: `{"status":"ERROR","status_code":N}`.
    Request(u16),
    /// For the number: the request is OK, `sms.<number>.status_code` is N.
    Number(u16),
}

struct Inner {
    script: Script,
    statuses: Mutex<VecDeque<Status>>,
    received: Mutex<Vec<ReceivedSms>>,
    requests: AtomicUsize,
    next_id: AtomicU64,
}

/// The running fake; stops when dropped.
pub struct FakeSmsRu {
    base_url: String,
    inner: Arc<Inner>,
    http: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSmsRu {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeSmsRu {
    /// Starts on a free loopback port.
    pub async fn start() -> FakeSmsRu {
        FakeSmsRu::start_on(super::LOOPBACK_ANY)
            .await
            .expect("a fake provider binds 127.0.0.1:0")
    }

    /// Starts on `addr` (`cascade fakes` binds fixed ports).
    pub async fn start_on(addr: std::net::SocketAddr) -> std::io::Result<FakeSmsRu> {
        let inner = Arc::new(Inner {
            script: Script::default(),
            statuses: Mutex::default(),
            received: Mutex::default(),
            requests: AtomicUsize::new(0),
            next_id: AtomicU64::new(10_000_000),
        });
        let app = Router::new()
            .route("/sms/send", get(send).post(send))
            .with_state(inner.clone());
        let (base_url, task) = serve_on(addr, app).await?;
        Ok(FakeSmsRu {
            base_url,
            inner,
            http: reqwest::Client::new(),
            task,
        })
    }

    /// `http://127.0.0.1:<port>`: the channel's `base_url` / `smsru_base_url`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The answers to the next sends (after any queued `then_status`).
    pub fn script(&self) -> &Script {
        &self.inner.script
    }

    /// Queues `n` answers with this SMS.ru code, ahead of the script.
    pub fn then_status(&self, status: Status, n: usize) {
        if let Ok(mut q) = self.inner.statuses.lock() {
            q.extend(std::iter::repeat_n(status, n));
        }
    }

    /// The messages accepted so far, in order.
    pub fn received(&self) -> Vec<ReceivedSms> {
        self.inner
            .received
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Every `/sms/send` request so far, accepted or not.
    pub fn requests(&self) -> usize {
        self.inner.requests.load(Ordering::SeqCst)
    }

    /// Sends one delivery report the way SMS.ru does: form field
    /// `data[0]=sms_status\n<sms_id>\n<code>\n<unix time>`. Returns the
    /// daemon's HTTP status and body (SMS.ru expects `100`).
    pub async fn report(&self, callback_url: &str, sms_id: &str, code: u16) -> (u16, String) {
        self.report_many(callback_url, &[(sms_id, code)]).await
    }

    /// Several reports in one request (`data[0]`, `data[1]`, …).
    pub async fn report_many(&self, callback_url: &str, reports: &[(&str, u16)]) -> (u16, String) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let form: Vec<(String, String)> = reports
            .iter()
            .enumerate()
            .map(|(i, (id, code))| {
                (
                    format!("data[{i}]"),
                    format!("sms_status\n{id}\n{code}\n{now}"),
                )
            })
            .collect();
        match self.http.post(callback_url).form(&form).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.text().await.unwrap_or_default())
            }
            Err(e) => (0, e.to_string()),
        }
    }
}

fn request_error(code: u16) -> Value {
    json!({
        "status": "ERROR",
        "status_code": code,
        "status_text": status_text(code),
    })
}

fn status_text(code: u16) -> &'static str {
    match code {
        200 => "Неправильный api_id",
        201 => "Не хватает средств на лицевом счету",
        202 => "Неправильно указан номер телефона получателя, либо на него нет маршрута",
        203 => "Нет текста сообщения",
        207 => "На этот номер нельзя отправлять сообщения",
        220 => "Сервис временно недоступен, попробуйте чуть позже",
        231 => "Превышен лимит одинаковых сообщений на этот номер в минуту",
        500 => "Ошибка на сервере. Повторите запрос",
        _ => "Ошибка",
    }
}

async fn send(State(inner): State<Arc<Inner>>, RawQuery(query): RawQuery, body: Bytes) -> Response {
    inner.requests.fetch_add(1, Ordering::SeqCst);
    let mut pairs = form_pairs(query.as_deref().unwrap_or(""));
    pairs.extend(form_pairs(&String::from_utf8_lossy(&body)));
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let answer = |v: Value| axum::Json(v).into_response();
    let Some(_api_id) = field("api_id") else {
        return answer(request_error(200));
    };
    let Some(to) = field("to") else {
        return answer(request_error(202));
    };
    let Some(msg) = field("msg") else {
        return answer(request_error(203));
    };
    let queued = inner.statuses.lock().ok().and_then(|mut q| q.pop_front());
    let status = match queued {
        Some(s) => Some(s),
        None => match inner.script.next() {
            Scripted::Ok => None,
            Scripted::Transient => Some(Status::Request(220)),
            Scripted::RateLimited(_) => Some(Status::Number(231)),
            Scripted::Permanent => Some(Status::Number(202)),
            Scripted::Misconfigured => Some(Status::Request(200)),
            Scripted::Slow(d) => {
                let accepted = accept(&inner, &to, &msg, field("from"));
                tokio::time::sleep(d).await;
                return answer(accepted);
            }
        },
    };
    match status {
        Some(Status::Request(code)) => answer(request_error(code)),
        Some(Status::Number(100)) | None => answer(accept(&inner, &to, &msg, field("from"))),
        Some(Status::Number(code)) => answer(json!({
            "status": "OK",
            "status_code": 100,
            "sms": { to.clone(): {
                "status": "ERROR",
                "status_code": code,
                "status_text": status_text(code),
            }},
            "balance": 100.0,
        })),
    }
}

/// Serves `app` on `addr`: its base URL and task.
pub(crate) async fn serve_on(
    addr: std::net::SocketAddr,
    app: Router,
) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}"), task))
}

/// Records an accepted message and builds SMS.ru's success answer.
fn accept(inner: &Inner, to: &str, msg: &str, from: Option<String>) -> Value {
    let n = inner.next_id.fetch_add(1, Ordering::SeqCst);
    let sms_id = format!("000000-{n:08}");
    if let Ok(mut r) = inner.received.lock() {
        r.push(ReceivedSms {
            phone: to.to_owned(),
            text: msg.to_owned(),
            sender: from,
            id: sms_id.clone(),
        });
    }
    json!({
        "status": "OK",
        "status_code": 100,
        "sms": { to: { "status": "OK", "status_code": 100, "sms_id": sms_id } },
        "balance": 100.0,
    })
}
