//! A webhook receiver (a call-centre task queue, an in-app push service):
//! records every POST with its `Idempotency-Key`, answers by its `Script`.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::script::{Script, Scripted};

/// One POST the receiver accepted.
#[derive(Clone, Debug)]
pub struct Received {
    pub idempotency_key: Option<String>,
    /// As it arrived: the benchmark's fake must cost little per request.
    pub body: Bytes,
    /// When it arrived (the benchmark's lateness is measured from this).
    pub at: std::time::Instant,
}

impl Received {
    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Clone, Default)]
struct Shared {
    script: Script,
    received: Arc<Mutex<Vec<Received>>>,
}

/// The receiver; it serves until the runtime that started it stops.
pub struct FakeWebhook {
    url: String,
    shared: Shared,
}

impl FakeWebhook {
    /// Starts on `127.0.0.1:0`; POST anything under its `url()`.
    pub async fn start() -> std::io::Result<FakeWebhook> {
        FakeWebhook::start_on(super::LOOPBACK_ANY).await
    }

    /// Starts on `addr` (`cascade fakes` binds fixed ports).
    pub async fn start_on(addr: std::net::SocketAddr) -> std::io::Result<FakeWebhook> {
        let shared = Shared::default();
        let app = Router::new()
            .route("/{*path}", post(take))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let url = format!("http://{}/tasks", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeWebhook { url, shared })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn script(&self) -> &Script {
        &self.shared.script
    }

    /// How many POSTs were answered with success, without copying them.
    pub fn received_count(&self) -> usize {
        self.shared.received.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Every POST answered with success, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared
            .received
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

async fn take(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let answer = s.script.next();
    match answer {
        Scripted::Transient => return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response(),
        Scripted::RateLimited(d) => {
            let secs = d.as_secs().max(1).to_string();
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", secs)],
                "slow down",
            )
                .into_response();
        }
        Scripted::Permanent => {
            return (StatusCode::UNPROCESSABLE_ENTITY, "refused").into_response();
        }
        Scripted::Misconfigured => {
            return (StatusCode::UNAUTHORIZED, "bad credentials").into_response();
        }
        Scripted::Slow(d) => tokio::time::sleep(d).await,
        Scripted::Ok => {}
    }
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let n = match s.received.lock() {
        Ok(mut r) => {
            r.push(Received {
                idempotency_key,
                body,
                at: std::time::Instant::now(),
            });
            r.len()
        }
        Err(_) => 0,
    };
    (
        StatusCode::OK,
        axum::Json(json!({ "id": format!("task-{n}") })),
    )
        .into_response()
}
