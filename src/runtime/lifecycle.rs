//! One structured log line per lifecycle event (contract §7). The same entries go
//! to the timeline and the `cascade:events` stream inside the store scripts.

use super::telemetry::Telemetry;
use crate::core::Entry;

/// Logs (and counts) the entries of one decision.
pub fn log_entries(
    telemetry: &Telemetry,
    id: &str,
    customer_id: &str,
    policy: &str,
    entries: &[Entry],
) {
    for e in entries {
        telemetry.lifecycle(e.event.as_str(), e.channel.as_deref());
        tracing::info!(
            target: "cascade::lifecycle",
            event = e.event.as_str(),
            notification_id = id,
            customer_id,
            policy,
            step = e.step.map(|s| s as u64 + 1),
            channel = e.channel.as_deref(),
            provider_message_id = e.provider_message_id.as_deref(),
            reason = e.reason.as_deref(),
            until_ms = e.until_ms,
            "{}",
            e.event.as_str()
        );
    }
}
