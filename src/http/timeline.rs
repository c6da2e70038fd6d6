//! `GET /v1/notifications/<id>`: one notification's state, timeline and
//! receipts as JSON, for support staff and the systems that produce
//! notifications. Behind the `/v1` bearer tokens, like the receipts API.
//! Personal data is masked as in `cascade status`: the record keeps only
//! masked reasons, and older records' are masked again here.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{AppState, authenticate, error, refused};
use crate::core::Entry;
use crate::runtime::store::Timeline;

/// The answer's body. The field names are part of the API (docs/http-api.md).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Notification_State)]
pub(super) struct View {
    id: String,
    /// `running`, or how it ended: `completed`, `exhausted`, `expired`, `cancelled`.
    state: &'static str,
    /// The current step, counted from 1.
    step: u8,
    /// When it wakes next (running only), Unix ms and RFC 3339.
    next_wake_up_ms: Option<i64>,
    next_wake_up: Option<String>,
    /// Event word → when it was first recorded (Unix ms; `failed`: the latest).
    receipts: BTreeMap<String, i64>,
    /// Data recorded with its receipts (`{"slot": "Friday 10-14"}`), for
    /// follow-up texts, personal data masked; `{}` when none.
    data: BTreeMap<String, String>,
    timeline: Vec<EntryView>,
}

/// One timeline entry as the API and `cascade status --json` show it:
/// steps counted from 1, the time also in RFC 3339, reasons masked.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = TimelineEntry)]
pub struct EntryView {
    at_ms: i64,
    at: String,
    event: &'static str,
    /// Counted from 1.
    step: Option<u8>,
    channel: Option<String>,
    reason: Option<String>,
    until_ms: Option<i64>,
    provider_message_id: Option<String>,
}

impl EntryView {
    pub fn of(e: Entry) -> EntryView {
        EntryView {
            at_ms: e.at_ms,
            at: rfc3339(e.at_ms),
            event: e.event.as_str(),
            step: e.step.map(|s| s + 1),
            channel: e.channel,
            // Reasons are masked when recorded; a record kept by an earlier
            // version may still quote a provider's answer in the clear.
            reason: e.reason.map(|r| crate::pii::scrub(&r).into_owned()),
            until_ms: e.until_ms,
            provider_message_id: e.provider_message_id,
        }
    }
}

fn view(id: String, t: Timeline) -> View {
    let outcome = t.cascade.outcome();
    let next = outcome.is_none().then(|| t.cascade.wake_at_ms()).flatten();
    View {
        id,
        state: outcome.map_or("running", |o| o.word()),
        step: t.cascade.step + 1,
        next_wake_up_ms: next,
        next_wake_up: next.map(rfc3339),
        receipts: t.receipts,
        // Typed by people: a phone or an address in it is masked, as reasons are.
        data: t
            .data
            .into_iter()
            .map(|(k, v)| (k, crate::pii::scrub(&v).into_owned()))
            .collect(),
        timeline: t.entries.into_iter().map(EntryView::of).collect(),
    }
}

pub(super) fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// One notification's state, timeline and receipts (personal data masked).
#[utoipa::path(
    get,
    path = "/v1/notifications/{id}",
    tag = "notifications",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The notification's id")),
    responses(
        (status = 200, description = "Its state and timeline", body = View),
        (status = 401, description = "No valid bearer token", body = super::openapi::ApiError),
        (status = 403, description = "The API has no token configured", body = super::openapi::ApiError),
        (status = 404, description = "Unknown, or its retention ran out", body = super::openapi::ApiError),
        (status = 408, description = "The request took longer than `http.request_timeout`"),
        (status = 503, description = "Redis cannot be read; try again", body = super::openapi::ApiError),
    )
)]
pub(super) async fn get_notification(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(reason) = authenticate(&state, &headers) {
        return refused(&state, reason);
    }
    match state.store.timeline(&id).await {
        Ok(Some(t)) => Json(view(id, t)).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "no such notification (unknown, or its retention ran out)",
        ),
        Err(e) => {
            tracing::warn!(notification_id = %id, error = %e, "cannot read a notification for the timeline API");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Redis cannot be read; try again",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::EntryKind;

    #[test]
    fn steps_are_counted_from_one() {
        let entry = |step| Entry {
            at_ms: 0,
            event: EntryKind::Sent,
            step,
            channel: Some("vk".into()),
            reason: None,
            until_ms: None,
            provider_message_id: None,
        };
        let first = serde_json::to_value(EntryView::of(entry(Some(0)))).unwrap();
        assert_eq!(first["step"], 1);
        assert_eq!(first["event"], "sent");
        assert_eq!(first["at"], "1970-01-01T00:00:00Z");
        let none = serde_json::to_value(EntryView::of(entry(None))).unwrap();
        assert!(none["step"].is_null());
    }
}
