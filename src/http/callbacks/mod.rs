//! Provider callbacks and tracking links (contract §6): each provider's receipts,
//! authenticated the provider's way, mapped back to a notification through
//! the provider message id, and recorded like any other receipt. A callback
//! that fails authentication gets the route's one refusal (`refusal`: 403,
//! counted, logged at most once a minute) and is not recorded; one about an
//! unknown message is acknowledged to the provider and counted.

pub mod email;
pub mod sms;
pub mod telegram;
pub mod tracking;
pub mod vk;
pub mod whatsapp;

use axum::Router;
use axum::http::StatusCode;

use super::{AppState, constant_time_eq, record};
use crate::core::{ChannelKind, ProviderReport};

/// Every callback route, merged into the daemon's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(vk::routes())
        .merge(sms::routes())
        .merge(email::routes())
        .merge(whatsapp::routes())
        .merge(telegram::routes())
        .merge(tracking::routes())
}

/// Counts callbacks by provider and what became of them (bounded labels).
pub fn count(state: &AppState, provider: &'static str, result: &'static str) {
    state.telemetry.callback(provider, result);
}

/// Refuses a callback that does not authenticate: counted as `refused`
/// for the provider, answered like every refusal of the route.
pub fn refuse(
    state: &AppState,
    provider: &'static str,
    route: &'static str,
    reason: &'static str,
) -> axum::response::Response {
    count(state, provider, "refused");
    super::refusal::forbidden(state, route, reason)
}

/// Checks the secret path segment of a report from a provider that does not
/// sign its reports: it must equal the `setting` of channel `channel`, which
/// must be of `kind` and have it set. A mismatch is counted (and logged at
/// most once a minute, `refusal`); the caller answers with
/// `refusal::forbidden` and records nothing.
pub fn path_secret_matches(
    state: &AppState,
    provider: &'static str,
    channel: &str,
    kind: ChannelKind,
    setting: &str,
    secret: &str,
) -> bool {
    let catalog = state.catalog.load();
    let expected = catalog
        .channels
        .get(channel)
        .filter(|c| c.kind == kind)
        .and_then(|c| {
            let secrets = c.settings.secrets_in_use();
            secrets
                .into_iter()
                .find(|s| s.key == setting)
                .map(|s| s.value)
        })
        .filter(|s| !s.is_empty());
    if expected.is_some_and(|e| constant_time_eq(e.as_bytes(), secret.as_bytes())) {
        return true;
    }
    count(state, provider, "forbidden");
    false
}

/// Whether a provider's report about notification `id` is recorded
/// (`ProviderReport::applies_to`); one about a notification the store does
/// not know is left to `record`, which answers it. Logs a stale one.
pub async fn report_applies(
    state: &AppState,
    id: &str,
    report: &ProviderReport<'_>,
) -> Result<bool, crate::runtime::store::StoreError> {
    if report.event != crate::core::policy::FAILED {
        return Ok(true); // no need to load the cascade
    }
    let Some((cascade, _)) = state.store.status(id).await? else {
        return Ok(true);
    };
    let applies = report.applies_to(&cascade);
    if !applies {
        tracing::info!(
            notification_id = %id,
            channel = report.channel,
            step = report.step,
            "a failed report about a message the cascade no longer waits on; not recorded"
        );
    }
    Ok(applies)
}

/// The store could not be reached; the report was not (fully) applied, and
/// the provider should send it again.
pub struct Unavailable;

/// Applies one delivery report that names a provider message id (an SMS
/// report, an email bounce): maps it back to the notification and step,
/// applies each (message id, event) once, and records a `failed` only while
/// the cascade still waits on that message, so a late one cannot escalate a
/// later step (or another alternative of the same step).
/// `event` `None` is a report that is not final yet: acknowledged and counted.
pub async fn apply_report(
    state: &AppState,
    provider: &'static str,
    channel: &str,
    message_id: &str,
    event: Option<&'static str>,
) -> Result<(), Unavailable> {
    let Some(event) = event else {
        count(state, provider, "pending");
        return Ok(());
    };
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::warn!(error = %e, provider, "cannot apply a delivery report");
        Unavailable
    };
    let ttl_s = (state.catalog.load().settings.redis.retention_ms / 1000).max(3600) as u64;
    let Some((id, step)) = state
        .store
        .provider_message(channel, message_id)
        .await
        .map_err(|e| unavailable(&e))?
    else {
        count(state, provider, "unknown");
        tracing::info!(
            channel,
            provider_message_id = %message_id,
            event,
            "delivery report about an unknown message"
        );
        return Ok(());
    };
    let key = format!("{provider}:{channel}:{message_id}:{event}");
    if !state
        .store
        .first_time(&key, ttl_s)
        .await
        .map_err(|e| unavailable(&e))?
    {
        count(state, provider, "duplicate");
        return Ok(());
    }
    let report = ProviderReport {
        step,
        channel: Some(channel),
        event,
    };
    if !report_applies(state, &id, &report)
        .await
        .map_err(|e| unavailable(&e))?
    {
        count(state, provider, "stale");
        return Ok(());
    }
    let answer = record(state, &id, event, Some(channel)).await;
    match answer.status() {
        StatusCode::SERVICE_UNAVAILABLE => {
            state.store.forget_seen(&key).await;
            return Err(Unavailable);
        }
        // Indexed, but the cascade is gone (past its retention).
        StatusCode::NOT_FOUND => count(state, provider, "unknown"),
        _ => count(state, provider, "recorded"),
    }
    Ok(())
}
