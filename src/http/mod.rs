//! The daemon's HTTP server: the receipts API, cancellation, health and
//! readiness. Provider callbacks and tracking links join it with the adapters.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

pub mod callbacks;

use crate::runtime::Health;
use crate::runtime::clock::Clock;
use crate::runtime::store::{ReceiptResult, Store};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub health: Arc<Health>,
    /// `None` disables the receipts API (no token configured).
    pub receipt_token: Option<String>,
    /// Channels (and their callback secrets) as currently loaded.
    pub catalog: Arc<arc_swap::ArcSwap<crate::config::Catalog>>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/receipts", post(post_receipt))
        .route("/v1/notifications/{id}/cancel", post(cancel))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .merge(callbacks::routes())
        .with_state(state)
}

#[derive(Deserialize)]
struct ReceiptBody {
    id: String,
    event: String,
    #[serde(default)]
    channel: Option<String>,
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// The refusal to send when the bearer token is missing or wrong.
fn refusal(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = &state.receipt_token else {
        return Some(error(
            StatusCode::FORBIDDEN,
            "the receipts API is disabled: set http.receipt_token",
        ));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => None,
        _ => Some(error(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required",
        )),
    }
}

/// Compares secrets without leaking where they differ through timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Receipt words are short identifiers: `read`, `called`, `paid`.
fn valid_event(event: &str) -> bool {
    !event.is_empty()
        && event.len() <= 64
        && event
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

async fn post_receipt(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<ReceiptBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"id\", \"event\", \"channel\"}}: {e}"),
            );
        }
    };
    record(&state, &body.id, &body.event, body.channel.as_deref()).await
}

async fn cancel(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    record(&state, &id, crate::core::policy::CANCELLED, None).await
}

/// Records a receipt and logs it; shared with the provider callbacks.
pub async fn record(state: &AppState, id: &str, event: &str, channel: Option<&str>) -> Response {
    if !valid_event(event) {
        return error(
            StatusCode::BAD_REQUEST,
            "event must be a lowercase word of letters, digits and `_`, e.g. \"read\"",
        );
    }
    match state
        .store
        .record_receipt(id, event, channel, state.clock.now_ms())
        .await
    {
        Ok(ReceiptResult::Recorded) => {
            crate::runtime::telemetry::receipt(event);
            tracing::info!(target: "cascade::lifecycle", event = "receipt", notification_id = id, receipt = event, channel, "receipt");
            (StatusCode::ACCEPTED, Json(json!({ "status": "recorded" }))).into_response()
        }
        Ok(ReceiptResult::AlreadyRecorded) => (
            StatusCode::OK,
            Json(json!({ "status": "already_recorded" })),
        )
            .into_response(),
        Ok(ReceiptResult::UnknownNotification) => {
            error(StatusCode::NOT_FOUND, "no such notification")
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot record a receipt");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store is unavailable; try again",
            )
        }
    }
}

async fn ready(State(state): State<AppState>) -> Response {
    let amqp = state.health.amqp.load(std::sync::atomic::Ordering::Relaxed);
    let redis = state
        .health
        .redis
        .load(std::sync::atomic::Ordering::Relaxed);
    let status = if amqp && redis {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "rabbitmq": amqp, "redis": redis }))).into_response()
}

async fn metrics() -> Response {
    match crate::runtime::telemetry::handle() {
        Some(h) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            h.render(),
        )
            .into_response(),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no metrics recorder is installed",
        ),
    }
}
