//! Requests refused before they were authenticated.
//!
//! Every refusal of one route answers the same way whatever the reason, so
//! an unknown channel cannot be told from a wrong secret (no oracle for
//! channel names). Each is counted in `cascade_http_rejected_total{route,
//! reason}` (both labels from fixed lists) and logged at most once a minute
//! per route, with the number refused since — never with anything the
//! caller chose (paths, headers, bodies), which could forge log lines or
//! flood them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// How often one route's refusals are logged at most.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Per route: when it was last logged, and how many refusals since.
static LOGGED: Mutex<Option<HashMap<&'static str, (Instant, u64)>>> = Mutex::new(None);

/// Counts and (rate-limited) logs one refusal.
pub fn note(state: &AppState, route: &'static str, reason: &'static str) {
    state.telemetry.http_rejected(route, reason);
    let now = Instant::now();
    let due = {
        let Ok(mut logged) = LOGGED.lock() else {
            return;
        };
        let entry = logged
            .get_or_insert_with(HashMap::new)
            .entry(route)
            .or_insert((now - LOG_EVERY, 0));
        entry.1 += 1;
        if now.duration_since(entry.0) >= LOG_EVERY {
            let refused = entry.1;
            *entry = (now, 0);
            Some(refused)
        } else {
            None
        }
    };
    if let Some(refused) = due {
        tracing::warn!(
            route,
            reason,
            refused,
            "unauthenticated requests refused (logged at most once a minute per route; cascade_http_rejected_total counts them all)"
        );
    }
}

/// The one answer of a provider callback route to any request that does
/// not authenticate: `403`, a fixed body.
pub fn forbidden(state: &AppState, route: &'static str, reason: &'static str) -> Response {
    note(state, route, reason);
    (StatusCode::FORBIDDEN, "forbidden\n").into_response()
}
