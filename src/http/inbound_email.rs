//! `POST /v1/inbound/email`: a customer's reply to one of our emails, as
//! the raw message (RFC 5322) a mail server pipes or an inbound-mail
//! service posts. It is matched to the notification by the `Message-ID`s
//! it answers (`In-Reply-To`, then `References` from the newest): each of
//! our emails' `Message-ID` is its provider message id, looked up under
//! every email channel. A match goes to the reply hook (`replies::received`)
//! with the customer's words (`channels::email::inbound`).
//!
//! The caller is a mail server: anything it cannot fix by retrying is
//! acknowledged (`202`, a reply that answers none of our messages is counted
//! `unmapped`), so no reply loops between the MTA and the daemon; only a
//! store failure answers `503`, which an MTA retries. Authenticated with the
//! `/v1` API's bearer tokens, and only those of `http.inbound_email_callers`
//! may: what is posted reaches staff as a customer's words.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::callbacks::count;
use super::replies::{Reply, received};
use super::{AppState, authenticate, error, refused};
use crate::channels::email::inbound::parse;
use crate::core::ChannelKind;

/// The metric's provider label.
const PROVIDER: &str = "email_inbound";

/// The media types a raw message arrives as: what MTAs' pipes (curl) and
/// inbound-mail services send; none at all is taken as a raw message too.
const MEDIA_TYPES: [&str; 3] = ["message/rfc822", "text/plain", "application/octet-stream"];

fn answer(status: StatusCode, word: &str) -> Response {
    (status, Json(json!({ "status": word }))).into_response()
}

/// Takes a customer's email reply and hands it to staff.
#[utoipa::path(
    post,
    path = "/v1/inbound/email",
    tag = "receipts",
    security(("bearer" = [])),
    request_body(
        description = "The raw reply (RFC 5322), as the mail server received it",
        content(
            (String = "message/rfc822"),
            (String = "text/plain"),
            (String = "application/octet-stream"),
        )
    ),
    responses(
        (status = 202, description = "Recorded as `replied` (`recorded`), or answering none of our messages (`unmapped`, counted, not to be sent again)", body = super::openapi::InboundAnswer),
        (status = 200, description = "This reply was recorded before", body = super::openapi::InboundAnswer),
        (status = 400, description = "The body is not an email (no `From`)", body = super::openapi::ApiError),
        (status = 401, description = "No valid bearer token", body = super::openapi::ApiError),
        (status = 403, description = "The API has no token configured, or this caller is not in `http.inbound_email_callers`", body = super::openapi::ApiError),
        (status = 408, description = "The request took longer than `http.request_timeout`"),
        (status = 413, description = "The body is longer than 1 MiB"),
        (status = 415, description = "Not `message/rfc822`, `text/plain` or `application/octet-stream`", body = super::openapi::ApiError),
        (status = 503, description = "Redis is unavailable; deliver it again", body = super::openapi::ApiError),
    )
)]
pub(super) async fn post_inbound_email(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = match authenticate(&state, &headers) {
        Ok(caller) => caller,
        Err(reason) => return refused(&state, reason),
    };
    // What is posted here reaches staff as the customer's words: only the
    // mail server's token may, not every system that records receipts.
    let allowed = {
        let catalog = state.catalog.load();
        catalog
            .settings
            .http
            .inbound_email_callers
            .contains(&caller)
    };
    if !allowed {
        count(&state, PROVIDER, "forbidden");
        return error(
            StatusCode::FORBIDDEN,
            &format!(
                "the caller `{caller}` may use the /v1 API but not post email replies; list it in http.inbound_email_callers"
            ),
        );
    }
    if !raw_message(&headers) {
        count(&state, PROVIDER, "unsupported_media_type");
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the raw message as message/rfc822 (or text/plain, application/octet-stream)",
        );
    }
    // Parsing a large message takes a while: off the async workers.
    let Ok(parsed) = tokio::task::spawn_blocking(move || parse(&body)).await else {
        count(&state, PROVIDER, "malformed");
        return error(StatusCode::BAD_REQUEST, "the message could not be read");
    };
    let Some(email) = parsed else {
        count(&state, PROVIDER, "malformed");
        return error(
            StatusCode::BAD_REQUEST,
            "expected a raw email (RFC 5322) with at least a From header",
        );
    };
    if email.automatic {
        // An out-of-office answer or a bounce: nobody wrote to us.
        count(&state, PROVIDER, "automatic");
        return answer(StatusCode::ACCEPTED, "ignored");
    }
    let channels: Vec<String> = state
        .catalog
        .load()
        .channels
        .values()
        .filter(|c| c.kind == ChannelKind::Email)
        .map(|c| c.name.clone())
        .collect();
    // At most the newest few ids a reply names: a long References list
    // costs a lookup per id and channel.
    for answered in email.answers.iter().take(MAX_ANSWERED_IDS) {
        for channel in &channels {
            let found = match state.store.provider_message(channel, answered).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot map an email reply");
                    return unavailable();
                }
            };
            let Some((notification_id, _step)) = found else {
                continue;
            };
            let status = received(
                &state,
                Reply {
                    notification_id: &notification_id,
                    channel,
                    text: &email.text,
                    inbound_id: &email.inbound_id,
                    // Anyone can copy a Message-ID into In-Reply-To: only
                    // the customer the message went to may answer it.
                    from: Some(&email.from),
                },
            )
            .await;
            tracing::info!(
                notification_id = %notification_id,
                channel = %channel,
                // The customer's words are personal data: only their length.
                text_chars = email.text.chars().count(),
                status = status.as_u16(),
                "an email reply to a notification"
            );
            return match status {
                StatusCode::SERVICE_UNAVAILABLE => unavailable(),
                StatusCode::OK => {
                    count(&state, PROVIDER, "already_recorded");
                    answer(StatusCode::OK, "already_recorded")
                }
                // Indexed, but the cascade is gone (past its retention).
                StatusCode::NOT_FOUND => {
                    count(&state, PROVIDER, "unknown");
                    answer(StatusCode::ACCEPTED, "unmapped")
                }
                StatusCode::FORBIDDEN => {
                    count(&state, PROVIDER, "foreign_sender");
                    answer(StatusCode::ACCEPTED, "foreign_sender")
                }
                _ => {
                    count(&state, PROVIDER, "recorded");
                    answer(StatusCode::ACCEPTED, "recorded")
                }
            };
        }
    }
    count(&state, PROVIDER, "unmapped");
    tracing::info!(
        answered_ids = email.answers.len(),
        "an email that answers none of our messages; acknowledged"
    );
    answer(StatusCode::ACCEPTED, "unmapped")
}

/// The most ids of `In-Reply-To` and `References` looked up.
const MAX_ANSWERED_IDS: usize = 20;

fn unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the store is unavailable; deliver it again",
    )
}

/// Whether the body is declared as a raw message (or not declared at all).
fn raw_message(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let media = value.split(';').next().unwrap_or("").trim();
    MEDIA_TYPES.iter().any(|m| media.eq_ignore_ascii_case(m))
}
