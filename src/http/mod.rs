//! The daemon's two HTTP listeners. The public one serves what the
//! internet must reach: provider callbacks, tracking links and the
//! authenticated `/v1/…` API, each route with a body limit of its own and
//! every request under one timeout. The admin one (loopback by default)
//! serves `/metrics`, `/healthz`, `/readyz` and the read-only operator
//! console (`/console`), which the public one never serves.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

pub mod callbacks;
mod console;
mod inbound_email;
/// Text made safe for HTML (also for `cascade fakes`' index page).
pub(crate) use console::{escape, url_encode};
pub mod openapi;
pub mod refusal;
pub mod replies;
mod reports;
pub mod serve;
mod submit;
mod timeline;

pub use submit::{MAX_BATCH, MAX_REQUEST_BYTES, RETRY_AFTER_SECS};
pub use timeline::EntryView;

use crate::core::receipt_data::{self, ReceiptData};
use crate::runtime::Health;
use crate::runtime::clock::Clock;
use crate::runtime::internal_events::ReceiptRecorded;
use crate::runtime::publisher::Publisher;
use crate::runtime::store::{ReceiptResult, Store};
use crate::runtime::telemetry::Telemetry;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub health: Arc<Health>,
    /// Channels (and their callback secrets) and the receipts API's tokens,
    /// as currently loaded: a reload rotates them.
    pub catalog: Arc<arc_swap::ArcSwap<crate::config::Catalog>>,
    /// The daemon's metrics registry.
    pub telemetry: Telemetry,
    /// Publishes what `POST /v1/notifications` takes to the intake queue.
    pub publisher: Arc<Publisher>,
    /// Starts the staff cascades customers' replies open (`replies`).
    pub worker: Arc<crate::runtime::worker::Worker>,
}

/// Body limits per route, in bytes: what each sender documents or needs,
/// with room to spare, instead of one large limit everywhere. A longer body
/// is answered `413`.
pub mod body_limits {
    /// `{"id", "event", "channel"}`: a few hundred bytes.
    pub const RECEIPTS_API: usize = 16 * 1024;
    /// One Callback API event; a `message_new` carries at most 4,096 characters of text.
    pub const VK: usize = 64 * 1024;
    /// SMS.ru batches reports (about 50 bytes each); SMSC sends one.
    pub const SMS: usize = 64 * 1024;
    /// One Telegram update: a message of at most 4,096 characters, and the one it quotes.
    pub const TELEGRAM: usize = 64 * 1024;
    /// Meta batches statuses and messages (about 1 KiB each) in one webhook.
    pub const WHATSAPP: usize = 256 * 1024;
    /// A bounce report may quote the whole message it returns.
    pub const EMAIL_BOUNCE: usize = 256 * 1024;
    /// `POST /v1/inbound/email`: one customer's reply as a raw message, with
    /// the original it quotes; a longer one is refused whole (`413`).
    pub const INBOUND_EMAIL: usize = 1024 * 1024;
    /// Tracking links are GETs; nothing to read.
    pub const TRACKING: usize = 1024;
    /// `POST /v1/notifications` (one notification or a batch) reads its body
    /// itself, up to `super::MAX_REQUEST_BYTES`, and answers `413` past it.
    pub const NOTIFICATIONS: usize = super::MAX_REQUEST_BYTES;
}

/// The `/v1` API: each path (as axum writes it) and its handlers, with the
/// body limit of each. tests/openapi.rs checks that `/openapi.json`
/// describes every one of them.
fn v1_routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    let small = || RequestBodyLimitLayer::new(body_limits::RECEIPTS_API);
    vec![
        ("/v1/receipts", post(post_receipt).layer(small())),
        // Reads its body itself, with a limit of its own (`submit`).
        ("/v1/notifications", post(submit::post_notifications)),
        ("/v1/notifications/{id}/cancel", post(cancel).layer(small())),
        (
            "/v1/notifications/{id}",
            get(timeline::get_notification).layer(small()),
        ),
        (
            "/v1/inbound/email",
            post(inbound_email::post_inbound_email)
                .layer(RequestBodyLimitLayer::new(body_limits::INBOUND_EMAIL)),
        ),
        ("/v1/report", get(reports::get_report).layer(small())),
        (
            "/v1/customers/{id}/notifications",
            get(reports::get_customer).layer(small()),
        ),
    ]
}

/// The paths of the `/v1` API, as axum writes them (`/v1/notifications/{id}`).
pub fn v1_paths() -> Vec<&'static str> {
    v1_routes().into_iter().map(|(path, _)| path).collect()
}

/// The public listener's routes, each with its body limit, all under
/// `request_timeout` (a client trickling its body is cut off with `408`).
pub fn public_router(state: AppState, request_timeout: Duration) -> Router {
    let api = v1_routes()
        .into_iter()
        .fold(Router::new(), |router, (path, handlers)| {
            router.route(path, handlers)
        });
    Router::new()
        .merge(api)
        .route(
            "/openapi.json",
            get(openapi::serve).layer(RequestBodyLimitLayer::new(body_limits::TRACKING)),
        )
        .merge(callbacks::routes())
        .merge(replies::routes())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .with_state(state)
}

/// The admin listener's routes: metrics, probes and the read-only
/// operator console (`/console…`, on this listener only).
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .merge(console::routes())
        .with_state(state)
}

/// `POST /v1/receipts`.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = Receipt)]
struct ReceiptBody {
    /// The notification's id.
    id: String,
    /// What happened: a lowercase word of letters, digits and `_` (`read`, `called`, `paid`).
    #[schema(pattern = "^[a-z0-9_]{1,64}$", example = "read")]
    event: String,
    /// The configured channel it happened on (the report counts it there), or left out.
    #[serde(default)]
    channel: Option<String>,
    /// What came with it, for follow-up texts (`{{data.slot}}`): at most 16
    /// entries, keys of `[a-z0-9_]{1,40}`, values strings (numbers and
    /// booleans kept as their JSON text) of at most 500 characters without
    /// control characters. Merged into the notification's data whenever it
    /// exists, a later value of a key winning.
    #[serde(default)]
    #[schema(value_type = Option<std::collections::BTreeMap<String, String>>, example = json!({"slot": "Friday 10-14"}))]
    data: Option<serde_json::Value>,
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Why a request to the `/v1` API was refused (a metric label).
type Refused = &'static str;

/// The answer to a refused `/v1` request: `401` whatever was wrong with the
/// token, `403` while the API has no token at all.
fn refused(state: &AppState, reason: Refused) -> Response {
    refusal::note(state, "v1", reason);
    if reason == "disabled" {
        return error(
            StatusCode::FORBIDDEN,
            "the receipts API is disabled: set http.receipt_token",
        );
    }
    let mut answer = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
    answer
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    answer
}

/// The caller's name when the request carries one of the receipts API's
/// bearer tokens.
fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<String, Refused> {
    let catalog = state.catalog.load();
    let tokens = &catalog.settings.http.receipt_tokens;
    if tokens.is_empty() {
        return Err("disabled");
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|g| !g.is_empty());
    let Some(given) = given else {
        return Err("missing_token");
    };
    // Compare with every token, so the time taken does not tell which matched.
    let mut caller = None;
    for t in tokens {
        if constant_time_eq(given.as_bytes(), t.token.as_bytes()) {
            caller = Some(t.name.clone());
        }
    }
    caller.ok_or("wrong_token")
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

/// Records a receipt: the customer read, called, paid….
#[utoipa::path(
    post,
    path = "/v1/receipts",
    tag = "receipts",
    security(("bearer" = [])),
    request_body(content = ReceiptBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Recorded", body = openapi::ReceiptAnswer),
        (status = 200, description = "This event was recorded for this notification before", body = openapi::ReceiptAnswer),
        (status = 400, description = "Not `{\"id\", \"event\", \"channel\", \"data\"}`, an event that is not a lowercase word, an unknown channel, or `data` refused (`{\"error\", \"field\"}`, the field e.g. `data.slot`)", body = openapi::ApiError),
        (status = 401, description = "No valid bearer token", body = openapi::ApiError),
        (status = 403, description = "The API has no token configured", body = openapi::ApiError),
        (status = 404, description = "No such notification", body = openapi::ApiError),
        (status = 408, description = "The request took longer than `http.request_timeout`"),
        (status = 413, description = "The body is longer than 16 KiB"),
        (status = 503, description = "Redis is unavailable; try again", body = openapi::ApiError),
    )
)]
async fn post_receipt(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<ReceiptBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let caller = match authenticate(&state, &headers) {
        Ok(caller) => caller,
        Err(reason) => return refused(&state, reason),
    };
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"id\", \"event\", \"channel\", \"data\"}}: {e}"),
            );
        }
    };
    let data = match body.data.as_ref().map(receipt_data::from_json).transpose() {
        Ok(data) => data.unwrap_or_default(),
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": e.message, "field": e.field })),
            )
                .into_response();
        }
    };
    // The channel says which message was read (the report counts the read
    // there): it must be one of the configuration's.
    if let Some(channel) = &body.channel
        && !state.catalog.load().channels.contains_key(channel)
    {
        return error(
            StatusCode::BAD_REQUEST,
            "`channel` must name a configured channel (a file of channels/), or be left out",
        );
    }
    record_from(
        &state,
        &body.id,
        &body.event,
        body.channel.as_deref(),
        &data,
        Some(&caller),
    )
    .await
}

/// Cancels a notification: records the receipt `cancelled`, which ends its cascade.
#[utoipa::path(
    post,
    path = "/v1/notifications/{id}/cancel",
    tag = "notifications",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The notification's id")),
    responses(
        (status = 202, description = "Cancelled", body = openapi::ReceiptAnswer),
        (status = 200, description = "It was cancelled before", body = openapi::ReceiptAnswer),
        (status = 401, description = "No valid bearer token", body = openapi::ApiError),
        (status = 403, description = "The API has no token configured", body = openapi::ApiError),
        (status = 404, description = "No such notification", body = openapi::ApiError),
        (status = 408, description = "The request took longer than `http.request_timeout`"),
        (status = 413, description = "The body is longer than 16 KiB"),
        (status = 503, description = "Redis is unavailable; try again", body = openapi::ApiError),
    )
)]
async fn cancel(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let caller = match authenticate(&state, &headers) {
        Ok(caller) => caller,
        Err(reason) => return refused(&state, reason),
    };
    record_from(
        &state,
        &id,
        crate::core::policy::CANCELLED,
        None,
        &ReceiptData::new(),
        Some(&caller),
    )
    .await
}

/// Records a receipt and logs it; shared with the provider callbacks.
pub async fn record(state: &AppState, id: &str, event: &str, channel: Option<&str>) -> Response {
    record_from(state, id, event, channel, &ReceiptData::new(), None).await
}

/// Records a receipt and logs it with the API caller that sent it.
async fn record_from(
    state: &AppState,
    id: &str,
    event: &str,
    channel: Option<&str>,
    data: &ReceiptData,
    caller: Option<&str>,
) -> Response {
    if !valid_event(event) {
        return error(
            StatusCode::BAD_REQUEST,
            "event must be a lowercase word of letters, digits and `_`, e.g. \"read\"",
        );
    }
    let result = state
        .store
        .record_receipt_with_data(id, event, channel, data, state.clock.now_ms())
        .await;
    // An answer reaches every staff cascade the notification's replies
    // opened, also when the notification had an answer before.
    if event == crate::core::replies::ANSWERED
        && matches!(
            result,
            Ok(ReceiptResult::Recorded | ReceiptResult::AlreadyRecorded)
        )
        && replies::answered(state, id).await.is_err()
    {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the store is unavailable; try again",
        );
    }
    match result {
        Ok(ReceiptResult::Recorded) => {
            state.telemetry.emit(ReceiptRecorded {
                notification_id: id,
                event,
                channel,
                caller,
            });

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
        Ok(ReceiptResult::DataFull(held)) => (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": format!(
                    "the notification holds {held} data keys; with this receipt's new ones it would pass {} (nothing was recorded)",
                    receipt_data::MAX_KEYS
                ),
                "field": "data",
            })),
        )
            .into_response(),
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

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.telemetry.render(),
    )
        .into_response()
}
