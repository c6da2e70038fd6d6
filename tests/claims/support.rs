//! What the claim tests share beyond `common`: a receiver that keeps headers
//! and raw bodies and can hold a request or answer with a chosen status, the
//! binary's log filter, the virtual clock set to a local time, and the state
//! of a cascade as stored.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;

use cascade::core::Phase;
use cascade::runtime::clock::{Clock, SystemClock};

use crate::common::{AT_ONCE, Logs, Running, wait_until};

pub const MIN: i64 = 60_000;
pub const HOUR: i64 = 60 * MIN;

/// One POST as the receiver got it.
#[derive(Clone, Debug)]
pub struct Hook {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Hook {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a webhook body is JSON")
    }

    pub fn notification_id(&self) -> String {
        self.json()["notification_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

#[derive(Clone, Default)]
struct Shared {
    got: Arc<Mutex<Vec<Hook>>>,
    /// Paths whose requests wait (after being recorded) until released.
    held: Arc<Mutex<HashSet<String>>>,
    released: Arc<tokio::sync::Notify>,
    /// Paths answered with another status than 200.
    answers: Arc<Mutex<HashMap<String, u16>>>,
}

/// A loopback webhook receiver: records every POST to `/<path>` with its
/// headers and raw body on arrival, then answers 200 (`{"id": ...}`), or the
/// status set for the path, once the path is not held.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    shared: Shared,
}

impl Receiver {
    pub async fn start() -> Receiver {
        async fn take(
            State(s): State<Shared>,
            UrlPath(path): UrlPath<String>,
            headers: HeaderMap,
            body: Bytes,
        ) -> (StatusCode, String) {
            let n = {
                let mut got = s.got.lock().unwrap();
                got.push(Hook {
                    path: path.clone(),
                    headers,
                    body,
                    at: Instant::now(),
                });
                got.len()
            };
            loop {
                let released = s.released.notified();
                if !s.held.lock().unwrap().contains(&path) {
                    break;
                }
                released.await;
            }
            let status = s.answers.lock().unwrap().get(&path).copied().unwrap_or(200);
            (
                StatusCode::from_u16(status).unwrap(),
                format!("{{\"id\":\"hook-{n}\"}}"),
            )
        }
        let shared = Shared::default();
        let app = Router::new()
            .route("/{path}", post(take))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, shared }
    }

    pub fn hooks(&self, path: &str) -> Vec<Hook> {
        let got = self.shared.got.lock().unwrap();
        got.iter().filter(|h| h.path == path).cloned().collect()
    }

    pub fn count(&self, path: &str) -> usize {
        self.hooks(path).len()
    }

    /// The notification ids posted to `path`, in arrival order.
    pub fn ids(&self, path: &str) -> Vec<String> {
        self.hooks(path).iter().map(Hook::notification_id).collect()
    }

    pub async fn wait_count(&self, path: &str, n: usize) -> Vec<Hook> {
        wait_until(&format!("{n} POSTs to /{path}"), AT_ONCE, async || {
            self.count(path) >= n
        })
        .await;
        self.hooks(path)
    }

    /// Requests to `path` wait for `release` (they are recorded at once).
    pub fn hold(&self, path: &str) {
        self.shared.held.lock().unwrap().insert(path.to_owned());
    }

    pub fn release(&self, path: &str) {
        self.shared.held.lock().unwrap().remove(path);
        self.shared.released.notify_waiters();
    }

    /// Answers requests to `path` with `status`.
    pub fn answer(&self, path: &str, status: u16) {
        self.shared
            .answers
            .lock()
            .unwrap()
            .insert(path.to_owned(), status);
    }
}

/// A webhook channel file posting to `<url>/<path>`.
pub fn webhook(url: &str, path: &str, extra: &str) -> String {
    format!(
        "kind = \"webhook\"\nurl = \"{url}/{path}\"\ntimeout = \"2s\"\n{extra}\n[retry]\nattempts = 2\nbackoff = \"100ms\"\nmax_backoff = \"200ms\"\n"
    )
}

/// A notification to `policy` with both test contacts; `extra` fields are
/// merged in at the top level (`send_at`, `expires_at`) or into `customer`
/// when under that key.
pub fn note(id: &str, customer: &str, policy: &str, extra: Value) -> Value {
    let mut n = serde_json::json!({
        "id": id,
        "policy": policy,
        "customer": { "id": customer, "contacts": { "vk": "123456", "sms": "+79161234567" } },
        "content": { "text": "Заказ задерживается" }
    });
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            match (k.as_str(), v) {
                ("customer", Value::Object(c)) => {
                    for (ck, cv) in c {
                        n["customer"][ck] = cv;
                    }
                }
                (_, v) => n[k] = v,
            }
        }
    }
    n
}

/// An RFC 3339 time `offset_ms` from the virtual now.
pub fn rfc3339(clock: &SystemClock, offset_ms: i64) -> String {
    jiff::Timestamp::from_millisecond(clock.now_ms() + offset_ms)
        .unwrap()
        .to_string()
}

/// Moves the virtual clock forward to the next `hh:mm` in `zone` and
/// returns that moment (Unix ms).
pub fn advance_to_local(clock: &SystemClock, zone: &str, hh: i8, mm: i8) -> i64 {
    let tz = jiff::tz::TimeZone::get(zone).unwrap();
    let now_ms = clock.now_ms();
    let now = jiff::Timestamp::from_millisecond(now_ms)
        .unwrap()
        .to_zoned(tz);
    let mut target = now
        .with()
        .hour(hh)
        .minute(mm)
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .unwrap();
    if target <= now {
        target = target.checked_add(jiff::Span::new().days(1)).unwrap();
    }
    let at = target.timestamp().as_millisecond();
    clock.advance(at - now_ms);
    at
}

/// The stored phase of a cascade (`None` while unknown).
pub async fn phase(run: &Running, id: &str) -> Option<Phase> {
    run.daemon()
        .store
        .status(id)
        .await
        .unwrap()
        .map(|(c, _)| c.phase)
}

/// `common::settle`, re-exported for `breaker.rs`, which imports it from here.
pub use crate::common::settle;

/// The claims binary's captured log: the daemon's warnings and errors.
pub fn logs() -> &'static Logs {
    crate::common::logs("warn")
}

/// A folder removed when dropped, also when the test fails half-way.
pub struct Removed(pub std::path::PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
