//! `GET /v1/report` (the report as JSON, as `cascade report --json` gives
//! it) and `GET /v1/customers/<id>/notifications` (a customer's recent
//! notifications, for support staff). Behind the `/v1` bearer tokens.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{AppState, authenticate, error, refused};
use crate::config::parse_duration;
use crate::report::Dimension;
use crate::runtime::reports::{ReportRequest, report};

/// A range as the query gives it: `since` (a duration back from now), or
/// `from` and `to` (Unix ms or RFC 3339).
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// How far back from `to` (a duration: `30m`, `24h`, `7d`); not with `from`.
    since: Option<String>,
    /// The start: Unix ms or RFC 3339.
    from: Option<String>,
    /// The end: Unix ms or RFC 3339; now when left out.
    to: Option<String>,
}

/// `policy`, `by` and the range.
#[derive(Deserialize, Default)]
pub struct ReportQuery {
    policy: Option<String>,
    by: Option<String>,
    #[serde(flatten)]
    range: RangeQuery,
}

fn moment(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| format!("`{s}` is neither Unix ms nor an RFC 3339 time"))
}

impl RangeQuery {
    /// The range's ends (Unix ms), `default_since_ms` back from now when none is given.
    pub fn resolve(&self, now_ms: i64, default_since_ms: i64) -> Result<(i64, i64), String> {
        let to = self
            .to
            .as_deref()
            .map(moment)
            .transpose()?
            .unwrap_or(now_ms);
        let from = match (&self.from, &self.since) {
            (Some(f), None) => moment(f)?,
            (None, Some(s)) => {
                let back = i64::try_from(parse_duration(s)?.as_millis()).unwrap_or(i64::MAX);
                to.saturating_sub(back)
            }
            (None, None) => to.saturating_sub(default_since_ms),
            (Some(_), Some(_)) => return Err("give `from` or `since`, not both".into()),
        };
        if from >= to {
            return Err("the range is empty: `from` must come before `to`".into());
        }
        Ok((from, to))
    }
}

/// A week, the range when none is given.
const DEFAULT_SINCE_MS: i64 = 7 * 86_400_000;

/// The report as `cascade report --json` gives it.
#[utoipa::path(
    get,
    path = "/v1/report",
    tag = "reports",
    security(("bearer" = [])),
    params(
        ("policy" = Option<String>, Query, description = "Only this policy's cascades"),
        ("by" = Option<String>, Query, description = "Comma-separated dimensions to group by: `policy`, `step`, `channel`, `segment` (`policy,step,channel` when left out)"),
        RangeQuery,
    ),
    responses(
        (status = 200, description = "The report", body = super::openapi::ReportDoc),
        (status = 400, description = "A range or grouping that cannot be read", body = super::openapi::ApiError),
        (status = 401, description = "No valid bearer token", body = super::openapi::ApiError),
        (status = 403, description = "The API has no token configured", body = super::openapi::ApiError),
        (status = 408, description = "The request took longer than `http.request_timeout`"),
        (status = 503, description = "Redis cannot be read; try again", body = super::openapi::ApiError),
    )
)]
pub(super) async fn get_report(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ReportQuery>,
) -> Response {
    if let Err(reason) = authenticate(&state, &headers) {
        return refused(&state, reason);
    }
    let (from_ms, to_ms) = match q.range.resolve(state.clock.now_ms(), DEFAULT_SINCE_MS) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let by = match Dimension::parse_list(q.by.as_deref().unwrap_or("policy,step,channel")) {
        Ok(by) => by,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let catalog = state.catalog.load_full();
    let req = ReportRequest {
        from_ms,
        to_ms,
        policy: q.policy,
        by,
    };
    match report(&state.store, &catalog, &req).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the report counters");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Redis cannot be read; try again",
            )
        }
    }
}

/// A customer's recent notifications, newest first.
#[utoipa::path(
    get,
    path = "/v1/customers/{id}/notifications",
    tag = "reports",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The customer's id"), RangeQuery),
    responses(
        (status = 200, description = "The notifications", body = super::openapi::CustomerNotificationsDoc),
        (status = 400, description = "A range that cannot be read", body = super::openapi::ApiError),
        (status = 401, description = "No valid bearer token", body = super::openapi::ApiError),
        (status = 403, description = "The API has no token configured", body = super::openapi::ApiError),
        (status = 408, description = "The request took longer than `http.request_timeout`"),
        (status = 503, description = "Redis cannot be read; try again", body = super::openapi::ApiError),
    )
)]
pub(super) async fn get_customer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(customer): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Response {
    if let Err(reason) = authenticate(&state, &headers) {
        return refused(&state, reason);
    }
    let retention = state.catalog.load().settings.redis.retention_ms;
    let (from_ms, _) = match q.resolve(state.clock.now_ms(), retention) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    match state.store.customer_notifications(&customer, from_ms).await {
        Ok(list) => Json(serde_json::json!({
            "customer_id": customer,
            "since_ms": from_ms,
            "notifications": list,
        }))
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a customer's notifications");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Redis cannot be read; try again",
            )
        }
    }
}
