//! Provider callbacks and tracking links (SPEC 6): each provider's receipts,
//! authenticated the provider's way, mapped back to a notification through
//! the provider message id, and recorded like any other receipt. A callback
//! that fails authentication is refused (401/403), logged and not recorded;
//! one about an unknown message is acknowledged to the provider and counted.

pub mod sms;
pub mod telegram;
pub mod tracking;
pub mod vk;
pub mod whatsapp;

use axum::Router;

use super::AppState;

/// Every callback route, merged into the daemon's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(vk::routes())
        .merge(sms::routes())
        .merge(whatsapp::routes())
        .merge(telegram::routes())
        .merge(tracking::routes())
}

/// Counts callbacks by provider and what became of them (bounded labels).
pub fn count(provider: &'static str, result: &'static str) {
    metrics::counter!("cascade_callbacks_total", "provider" => provider, "result" => result)
        .increment(1);
}
