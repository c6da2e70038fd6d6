//! `POST /v1/notifications`: notifications submitted over HTTP instead of
//! put on the queue. Each is admitted by the same code as the queue path
//! (`notification::admit_at`, against the configuration as loaded now), so
//! the same error codes apply; a batch is all or nothing. What passes is
//! published to the intake queue under publisher confirms (`Publisher`) and
//! answered `202` only when RabbitMQ confirmed all of it: the queue stays the
//! one durable intake, and the daemon's consumer starts the cascades,
//! idempotent on `id` as for any message.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::{AppState, authenticate, refused};
use crate::notification::{self, ErrorCode, IntakeError};

/// Most notifications in one request (a JSON array).
pub const MAX_BATCH: usize = 100;
/// Longest request body, in bytes: a full batch of typical notifications
/// (a few KiB each) fits with room to spare; each notification must also
/// be within `amqp.max_body_bytes`. A longer body is answered `413`.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// What `Retry-After` says when RabbitMQ did not take a batch, in seconds.
pub const RETRY_AFTER_SECS: u64 = 5;

/// `202`: every notification was confirmed by RabbitMQ.
#[derive(Serialize, ToSchema)]
pub struct AcceptedBody {
    /// The ids of the notifications taken, in the order sent.
    pub accepted: Vec<String>,
}

/// One refused notification.
#[derive(Clone, Serialize, ToSchema)]
pub struct IntakeProblem {
    /// The intake error code (the same as the dead-letter queue's `x-cascade-error-code`).
    #[schema(example = "invalid_contact")]
    pub code: String,
    /// One sentence naming the field and what would be right; contacts masked.
    pub message: String,
    /// The JSON path of the bad field (e.g. `customer.contacts.sms`), or null.
    pub field: Option<String>,
    /// The position in the array of a batch; absent for a single object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

/// `400`: the first refused notification, and every refused one in `errors`.
#[derive(Serialize, ToSchema)]
pub struct IntakeRefusal {
    #[serde(flatten)]
    pub first: IntakeProblem,
    pub errors: Vec<IntakeProblem>,
}

/// `413`, `415` and `503`: a code and a sentence.
#[derive(Serialize, ToSchema)]
pub struct CodedError {
    #[schema(example = "broker_unavailable")]
    pub code: String,
    pub message: String,
}

/// What the body holds: one notification, or a batch of them.
#[derive(Debug)]
enum Shape<'b> {
    One(&'b [u8]),
    Batch(Vec<&'b RawValue>),
}

/// One notification (anything but an array: `admit` says what is wrong
/// with a body that is not an object), or an array of 1 to `MAX_BATCH`.
fn shape(body: &[u8]) -> Result<Shape<'_>, IntakeError> {
    let start = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if start.trim_ascii_start().first() != Some(&b'[') {
        return Ok(Shape::One(body));
    }
    let text = std::str::from_utf8(start).map_err(|e| {
        IntakeError::new(
            ErrorCode::InvalidUtf8,
            format!(
                "the body is not UTF-8: invalid bytes after the first {} bytes",
                e.valid_up_to()
            ),
        )
    })?;
    let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| {
        IntakeError::new(
            ErrorCode::MalformedJson,
            format!("the body is not one JSON array of notifications: {e}"),
        )
    })?;
    if items.is_empty() {
        return Err(IntakeError::new(
            ErrorCode::InvalidField,
            format!("the array is empty; send 1 to {MAX_BATCH} notifications"),
        ));
    }
    if items.len() > MAX_BATCH {
        return Err(IntakeError::new(
            ErrorCode::InvalidField,
            format!(
                "the array holds {} notifications; at most {MAX_BATCH} are taken in one request",
                items.len()
            ),
        ));
    }
    Ok(Shape::Batch(items))
}

fn problem(error: &IntakeError, index: Option<usize>) -> IntakeProblem {
    IntakeProblem {
        code: error.code.as_str().to_owned(),
        message: error.message.clone(),
        field: error.field.clone(),
        index,
    }
}

/// Admits every item; the ids in order, or every refusal.
fn admit_all(
    items: &[(Option<usize>, &[u8])],
    catalog: &crate::config::Catalog,
    now_ms: i64,
) -> Result<Vec<String>, Vec<IntakeProblem>> {
    let mut ids = Vec::with_capacity(items.len());
    let mut problems = Vec::new();
    for (index, body) in items {
        match notification::admit_at(body, catalog, now_ms) {
            Ok(admitted) => ids.push(admitted.notification.id),
            Err(e) => problems.push(problem(&e, *index)),
        }
    }
    if problems.is_empty() {
        Ok(ids)
    } else {
        Err(problems)
    }
}

fn refusal(problems: Vec<IntakeProblem>) -> Response {
    let first = problems[0].clone();
    (
        StatusCode::BAD_REQUEST,
        Json(IntakeRefusal {
            first,
            errors: problems,
        }),
    )
        .into_response()
}

fn coded(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(CodedError {
            code: code.to_owned(),
            message: message.into(),
        }),
    )
        .into_response()
}

/// `application/json`, with or without parameters (`; charset=utf-8`).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

fn too_large() -> Response {
    coded(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::BodyTooLarge.as_str(),
        format!(
            "the request body is longer than {MAX_REQUEST_BYTES} bytes; send fewer notifications per request"
        ),
    )
}

/// The body, at most `MAX_REQUEST_BYTES`, or the answer to give instead.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REQUEST_BYTES as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, MAX_REQUEST_BYTES)
        .await
        .map_err(|e| {
            let over = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if over {
                too_large()
            } else {
                let cut = IntakeError::new(
                    ErrorCode::MalformedJson,
                    "the request body could not be read to its end",
                );
                refusal(vec![problem(&cut, None)])
            }
        })
}

/// Submits one notification or a batch.
#[utoipa::path(
    post,
    path = "/v1/notifications",
    tag = "notifications",
    security(("bearer" = [])),
    request_body(
        content = inline(super::openapi::NotificationOrBatch),
        content_type = "application/json",
        description = "One notification (as producers put on the queue), or an array of 1 to 100.",
        example = json!({
            "id": "order-1001:delayed",
            "policy": "delivery_delay",
            "customer": {
                "id": "c-42",
                "timezone": "Europe/Moscow",
                "contacts": { "vk": "123456789", "sms": "+79161234567" }
            },
            "content": { "text": "Заказ 1001 задерживается на 2 дня" }
        })
    ),
    responses(
        (status = 202, description = "Every notification was validated and confirmed by RabbitMQ; the daemon starts the cascades (an id seen before counts as a duplicate, nothing is sent twice)", body = AcceptedBody),
        (status = 400, description = "At least one notification was refused (nothing of the batch was published), or the body is not JSON", body = IntakeRefusal),
        (status = 401, description = "No valid bearer token", body = super::openapi::ApiError),
        (status = 403, description = "The API has no token configured, or this caller is not in `http.intake_callers`", body = super::openapi::ApiError),
        (status = 408, description = "The request took longer than `http.request_timeout`"),
        (status = 413, description = "The body is longer than 1 MiB", body = CodedError),
        (status = 415, description = "The body is not `application/json`", body = CodedError),
        (status = 503, description = "RabbitMQ did not take the batch (unreachable, a nack, or no confirm in time); retry after `Retry-After` seconds", body = CodedError,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub(super) async fn post_notifications(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let caller = match authenticate(&state, &headers) {
        Ok(caller) => caller,
        Err(reason) => return refused(&state, reason),
    };
    let telemetry = &state.telemetry;
    // One configuration for the whole request, as loaded now.
    let catalog = state.catalog.load_full();
    // A token handed to a system that records receipts does not send SMS.
    if !catalog.settings.http.intake_callers.contains(&caller) {
        telemetry.http_intake("forbidden");
        return super::error(
            StatusCode::FORBIDDEN,
            &format!(
                "the caller `{caller}` may use the /v1 API but not submit notifications; list it in http.intake_callers"
            ),
        );
    }
    if !is_json(&headers) {
        telemetry.http_intake("unsupported_media_type");
        return coded(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the notifications as Content-Type: application/json",
        );
    }
    let body = match read_body(&headers, body).await {
        Ok(b) => b,
        Err(answer) => {
            let result = if answer.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "too_large"
            } else {
                "invalid"
            };
            telemetry.http_intake(result);
            return answer;
        }
    };
    let items: Vec<(Option<usize>, &[u8])> = match shape(&body) {
        Ok(Shape::One(one)) => vec![(None, one)],
        Ok(Shape::Batch(items)) => items
            .iter()
            .enumerate()
            .map(|(i, raw)| (Some(i), raw.get().as_bytes()))
            .collect(),
        Err(e) => {
            telemetry.http_intake("invalid");
            return refusal(vec![problem(&e, None)]);
        }
    };
    let ids = match admit_all(&items, &catalog, state.clock.now_ms()) {
        Ok(ids) => ids,
        Err(problems) => {
            telemetry.http_intake("invalid");
            return refusal(problems);
        }
    };
    let bodies: Vec<&[u8]> = items.iter().map(|(_, b)| *b).collect();
    match state.publisher.publish_all(&bodies).await {
        Ok(()) => {
            telemetry.http_intake("accepted");
            tracing::info!(caller = %caller, notifications = ids.len(), "notifications submitted over HTTP");
            (StatusCode::ACCEPTED, Json(AcceptedBody { accepted: ids })).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, notifications = bodies.len(), "cannot publish notifications submitted over HTTP");
            telemetry.http_intake("broker_unavailable");
            let mut answer = coded(
                StatusCode::SERVICE_UNAVAILABLE,
                "broker_unavailable",
                format!(
                    "{e}; nothing of this request was taken for sure: send it again (ids make copies harmless)"
                ),
            );
            answer
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            answer
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_array_is_a_batch_and_anything_else_one_notification() {
        assert!(matches!(shape(b"{\"id\": 1}"), Ok(Shape::One(_))));
        assert!(matches!(shape(b"\"text\""), Ok(Shape::One(_))));
        let Ok(Shape::Batch(items)) = shape(b"\xEF\xBB\xBF \n[{\"id\": \"a\"}, 5]") else {
            panic!("a batch");
        };
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].get(), "5");
    }

    #[test]
    fn a_batch_is_1_to_100_notifications_of_valid_json() {
        let code = |body: &[u8]| shape(body).unwrap_err().code;
        assert_eq!(code(b"[]"), ErrorCode::InvalidField);
        let many = format!("[{}]", vec!["{}"; MAX_BATCH + 1].join(","));
        assert_eq!(code(many.as_bytes()), ErrorCode::InvalidField);
        let full = format!("[{}]", vec!["{}"; MAX_BATCH].join(","));
        assert!(shape(full.as_bytes()).is_ok());
        assert_eq!(code(b"[{\"id\": "), ErrorCode::MalformedJson);
        assert_eq!(code(b"[{}] x"), ErrorCode::MalformedJson);
        assert_eq!(code(b"[\"\xff\"]"), ErrorCode::InvalidUtf8);
    }

    #[test]
    fn only_json_is_taken() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            is_json(&h)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(!with("text/plain"));
        assert!(!with("application/jsonx"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
