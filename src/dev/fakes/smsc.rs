//! A fake SMSC.ru on `127.0.0.1:0`: `GET|POST /sys/send.php` with `login`
//! and `psw` (or `apikey`), `phones`, `mes`, `fmt=3`, optional `id` and
//! `sender`, answered in SMSC's `fmt=3` JSON. Like SMSC, it refuses a
//! request identical to one it accepted less than 60 s ago with error 9. It
//! records every accepted message and can send delivery reports to the
//! daemon the way SMSC calls a status handler.
//!
//! ```no_run
//! # async fn demo() {
//! use cascade::dev::fakes::{script::Scripted, smsc::FakeSmsc};
//! let smsc = FakeSmsc::start().await;
//! smsc.script().then(Scripted::Permanent, 1); // error 8, then success
//! // … point a channel's `base_url` at `smsc.base_url()`, send …
//! let sent = smsc.received();
//! smsc.report("http://127.0.0.1:8080/callbacks/sms/sms/secret", &sent[0].id, &sent[0].phone, 1).await;
//! # }
//! ```
//!
//! Scripted answers map to SMSC's: `Transient` → HTTP 503, `RateLimited`
//! → error 4 (IP temporarily blocked), `Permanent` → error 8 (cannot
//! deliver), `Misconfigured` → error 2 (wrong login or password),
//! `Slow(d)` → accepted, answered after `d`. Any error code can be queued
//! with `then_error`, ahead of the script.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::form_pairs;
use super::script::{Script, Scripted};
pub use super::smsru::ReceivedSms;
use super::smsru::serve_on;

/// How long SMSC refuses an identical request.
const IDENTICAL_WINDOW: Duration = Duration::from_secs(60);

/// (phones, mes, id, sender): what makes two requests identical.
type RequestKey = (String, String, String, String);

struct Inner {
    script: Script,
    errors: Mutex<VecDeque<u16>>,
    received: Mutex<Vec<ReceivedSms>>,
    accepted_at: Mutex<HashMap<RequestKey, Instant>>,
    requests: AtomicUsize,
    next_id: AtomicU64,
}

/// The running fake; stops when dropped.
pub struct FakeSmsc {
    base_url: String,
    inner: Arc<Inner>,
    http: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSmsc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeSmsc {
    /// Starts on a free loopback port.
    pub async fn start() -> FakeSmsc {
        FakeSmsc::start_on(super::LOOPBACK_ANY)
            .await
            .expect("a fake provider binds 127.0.0.1:0")
    }

    /// Starts on `addr` (`cascade fakes` binds fixed ports).
    pub async fn start_on(addr: std::net::SocketAddr) -> std::io::Result<FakeSmsc> {
        let inner = Arc::new(Inner {
            script: Script::default(),
            errors: Mutex::default(),
            received: Mutex::default(),
            accepted_at: Mutex::default(),
            requests: AtomicUsize::new(0),
            next_id: AtomicU64::new(1_000_000),
        });
        let app = Router::new()
            .route("/sys/send.php", get(send).post(send))
            .with_state(inner.clone());
        let (base_url, task) = serve_on(addr, app).await?;
        Ok(FakeSmsc {
            base_url,
            inner,
            http: reqwest::Client::new(),
            task,
        })
    }

    /// `http://127.0.0.1:<port>`: the channel's `base_url` / `smsc_base_url`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The answers to the next sends (after any queued `then_error`).
    pub fn script(&self) -> &Script {
        &self.inner.script
    }

    /// Queues `n` answers with this SMSC `error_code`, ahead of the script.
    pub fn then_error(&self, code: u16, n: usize) {
        if let Ok(mut q) = self.inner.errors.lock() {
            q.extend(std::iter::repeat_n(code, n));
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

    /// Every `/sys/send.php` request so far, accepted or not.
    pub fn requests(&self) -> usize {
        self.inner.requests.load(Ordering::SeqCst)
    }

    /// Calls the daemon's status handler the way SMSC does: a form with
    /// `id`, `phone`, `status`, `time` (unix) and `err`. Returns the
    /// daemon's HTTP status and body.
    pub async fn report(
        &self,
        callback_url: &str,
        id: &str,
        phone: &str,
        status: i32,
    ) -> (u16, String) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let err = if matches!(status, 3 | 20 | 22..=25) {
            "1"
        } else {
            "0"
        };
        let form = [
            ("id", id.to_owned()),
            ("phone", phone.to_owned()),
            ("status", status.to_string()),
            ("time", now.to_string()),
            ("ts", now.to_string()),
            ("err", err.to_owned()),
        ];
        match self.http.post(callback_url).form(&form).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.text().await.unwrap_or_default())
            }
            Err(e) => (0, e.to_string()),
        }
    }
}

fn error(code: u16, id: Option<&str>) -> Response {
    let text = match code {
        1 => "parameters error",
        2 => "authorise error",
        3 => "no money",
        4 => "IP address is temporarily blocked",
        5 => "invalid date format",
        6 => "message is denied",
        7 => "invalid number",
        8 => "cannot deliver to this number",
        9 => "duplicate request, wait a minute",
        _ => "error",
    };
    let mut body = json!({ "error": text, "error_code": code });
    // SMSC names the message in errors 3, 6, 7 and 8.
    if let Some(id) = id.filter(|_| matches!(code, 3 | 6 | 7 | 8)) {
        body["id"] = json!(id.parse::<u64>().unwrap_or(0));
    }
    axum::Json(body).into_response()
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
    let authorised =
        field("apikey").is_some() || (field("login").is_some() && field("psw").is_some());
    if !authorised {
        return error(2, None);
    }
    let (Some(phones), Some(mes)) = (field("phones"), field("mes")) else {
        return error(1, None);
    };
    let id =
        field("id").unwrap_or_else(|| inner.next_id.fetch_add(1, Ordering::SeqCst).to_string());
    let sender = field("sender");
    let key: RequestKey = (
        phones.clone(),
        mes.clone(),
        id.clone(),
        sender.clone().unwrap_or_default(),
    );
    let identical = inner
        .accepted_at
        .lock()
        .ok()
        .and_then(|m| m.get(&key).copied())
        .is_some_and(|at| at.elapsed() < IDENTICAL_WINDOW);
    if identical {
        return error(9, None);
    }
    if let Some(code) = inner.errors.lock().ok().and_then(|mut q| q.pop_front()) {
        return error(code, Some(&id));
    }
    match inner.script.next() {
        Scripted::Ok => accept(&inner, key, sender),
        Scripted::Transient => {
            (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response()
        }
        Scripted::RateLimited(_) => error(4, None),
        Scripted::Permanent => error(8, Some(&id)),
        Scripted::Misconfigured => error(2, None),
        Scripted::Slow(d) => {
            let answer = accept(&inner, key, sender);
            tokio::time::sleep(d).await;
            answer
        }
    }
}

/// Records an accepted message and builds SMSC's success answer.
fn accept(inner: &Inner, key: RequestKey, sender: Option<String>) -> Response {
    let (phones, mes, id, _) = key.clone();
    if let Ok(mut m) = inner.accepted_at.lock() {
        m.retain(|_, at| at.elapsed() < IDENTICAL_WINDOW);
        m.insert(key, Instant::now());
    }
    let cnt = parts(&mes);
    if let Ok(mut r) = inner.received.lock() {
        r.push(ReceivedSms {
            phone: phones,
            text: mes,
            sender,
            id: id.clone(),
        });
    }
    let id_json = id.parse::<u64>().map(|n| json!(n)).unwrap_or(json!(id));
    axum::Json(json!({ "id": id_json, "cnt": cnt })).into_response()
}

/// GSM 03.38's default alphabet, in table order, without the escape (0x1B).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                          ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// Its extension table: each takes two septets (the escape and itself).
const GSM7_EXTENDED: &str = "\u{c}^{}\\[~]|€";

/// The parts SMSC bills `mes` as (its `cnt`), counted from the GSM 03.38
/// tables above rather than by the daemon's own segment count: 160 septets
/// (70 UTF-16 units when a character is outside GSM-7) in one SMS, else
/// parts of 153 (67), a character never split between two parts.
fn parts(mes: &str) -> u32 {
    let gsm7 = mes
        .chars()
        .all(|c| GSM7_BASIC.contains(c) || GSM7_EXTENDED.contains(c));
    let units = |c: char| match (gsm7, GSM7_EXTENDED.contains(c)) {
        (true, true) => 2,
        (true, false) => 1,
        (false, _) => c.len_utf16(),
    };
    let (single, part) = if gsm7 { (160, 153) } else { (70, 67) };
    if mes.chars().map(units).sum::<usize>() <= single {
        return 1;
    }
    let (mut parts, mut used) = (1, 0);
    for n in mes.chars().map(units) {
        if used + n > part {
            parts += 1;
            used = 0;
        }
        used += n;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_hold_127_and_10_characters() {
        // 128 code points less the escape; 9 characters and the form feed.
        assert_eq!(GSM7_BASIC.chars().count(), 127);
        assert_eq!(GSM7_EXTENDED.chars().count(), 10);
    }

    #[test]
    fn parts_as_smsc_counts_them() {
        let n = |s: &str, k: usize| s.repeat(k);
        assert_eq!(parts(""), 1);
        assert_eq!(parts(&n("a", 160)), 1);
        assert_eq!(parts(&n("a", 161)), 2);
        assert_eq!(parts(&n("a", 306)), 2);
        assert_eq!(parts(&n("a", 307)), 3);
        assert_eq!(parts(&n("€", 80)), 1, "two septets each");
        assert_eq!(parts(&n("€", 81)), 2);
        // 152 septets, then an escape pair that does not fit the part.
        assert_eq!(parts(&(n("a", 152) + &n("€", 1) + &n("a", 8))), 2);
        assert_eq!(parts(&n("ж", 70)), 1);
        assert_eq!(parts(&n("ж", 71)), 2);
        assert_eq!(parts(&n("ж", 134)), 2);
        assert_eq!(parts(&n("ж", 135)), 3);
        // One character outside GSM-7 makes the whole text UTF-16.
        assert_eq!(parts(&(n("a", 70) + "ж")), 2);
    }
}
