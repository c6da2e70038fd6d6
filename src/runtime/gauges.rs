//! The metrics that are a state rather than a count of events, sampled by
//! one task per daemon every few seconds: what waits in the timer shards
//! (`Store::timer_counts`: `cascade_cascades_waiting`, `cascade_backlog`)
//! and each configured channel's circuit breaker (`cascade_breaker_open`).
//! It also gives the money counters a series at zero for every channel of
//! every policy, so a dashboard shows them before anything is spent and
//! `increase()` counts the first amount.
//!
//! Every instance on one Redis reports the same timer counts: a dashboard
//! takes their `max`, not their sum.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::store::{Store, StoreError, TimerCounts};
use super::worker::Worker;

/// How often the gauges are sampled unless the daemon is told otherwise
/// (`DaemonOptions::sample_every`). A sample costs Redis one or two
/// pipelined round trips per timer shard.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Samples at once, then every `every`, until `shutdown`.
pub async fn sample(worker: Arc<Worker<Store>>, every: Duration, shutdown: CancellationToken) {
    // The channels given a breaker gauge, to set one that a reload removed to 0.
    let mut reported = BTreeSet::new();
    loop {
        match timer_counts(&worker).await {
            Ok(counts) => worker.telemetry.timers(counts.waiting, counts.due),
            // Kept at the last sample; the scheduler reports Redis being out.
            Err(e) => tracing::debug!(error = %e, "cannot count the timers for the gauges"),
        }
        breakers(&worker, &mut reported);
        money_series(&worker);
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Every shard's counts, summed.
async fn timer_counts(worker: &Worker<Store>) -> Result<TimerCounts, StoreError> {
    let now_ms = worker.clock.now_ms();
    let mut all = TimerCounts::default();
    for shard in 0..worker.store.keys.shards() {
        all = all + worker.store.timer_counts(shard, now_ms).await?;
    }
    Ok(all)
}

/// Sets each configured channel's breaker gauge, and to 0 that of a
/// channel no longer configured.
fn breakers(worker: &Worker<Store>, reported: &mut BTreeSet<String>) {
    let now_ms = worker.clock.now_ms();
    let catalog = worker.catalog.load();
    for (name, channel) in &catalog.channels {
        worker
            .telemetry
            .breaker(name, worker.outbound.is_open(channel, now_ms));
        if !reported.contains(name) {
            reported.insert(name.clone());
        }
    }
    reported.retain(|name| {
        let configured = catalog.channels.contains_key(name);
        if !configured {
            worker.telemetry.breaker(name, false);
        }
        configured
    });
}

/// A series at zero for each channel a policy's steps name (and for each
/// step's alternatives), spent and saved.
fn money_series(worker: &Worker<Store>) {
    let catalog = worker.catalog.load();
    for (policy, p) in &catalog.policies {
        for channel in p.steps.iter().flat_map(|s| &s.channels) {
            worker.telemetry.money_spent(channel, policy, 0.0);
            worker.telemetry.money_saved(channel, policy, 0.0);
        }
    }
}
