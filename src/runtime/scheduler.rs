//! The scheduler: claims due cascades from the timer shards (atomically, with
//! a lease, so several instances share the work) and wakes each one on a
//! bounded pool of tasks.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Health;
use super::internal_events::Claimed;
use super::store::{CascadeStore, StoreError};
use super::worker::Worker;

/// Tunables of the claim loop.
#[derive(Clone, Copy, Debug)]
pub struct SchedulerConfig {
    /// How long a claimed cascade is ours before another instance may take it.
    pub lease_ms: i64,
    /// Most cascades claimed from one shard per round trip.
    pub batch: usize,
    /// Most cascades being woken at once.
    pub concurrency: usize,
    /// Sleep between polls when nothing is due (a poke cuts it short).
    pub idle_poll: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            lease_ms: 30_000,
            batch: 256,
            concurrency: 512,
            idle_poll: Duration::from_millis(100),
        }
    }
}

/// Runs until `shutdown`; then stops claiming and lets the wake-ups in
/// progress finish (what is left over goes back to the shards when its lease ends).
pub async fn run<S: CascadeStore>(
    worker: Arc<Worker<S>>,
    config: SchedulerConfig,
    poke: Arc<Notify>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let shards = worker.store.shards();
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        let now = worker.clock.now_ms();
        let mut claimed = 0usize;
        let mut failed = false;
        let mut saturated = false;
        for shard in 0..shards {
            // Claim no more than there are free hands for.
            let room = permits.available_permits().min(config.batch);
            if room == 0 {
                saturated = true;
                break;
            }
            match worker.store.claim(shard, now, config.lease_ms, room).await {
                Ok(cascades) => {
                    claimed += cascades.len();
                    worker.telemetry.emit(Claimed(cascades.len()));
                    for claimed in cascades {
                        let Ok(permit) = permits.clone().acquire_owned().await else {
                            break;
                        };
                        let worker = worker.clone();
                        tracker.spawn(async move {
                            let id = claimed.id.clone();
                            let woken = worker.wake_claimed(claimed).await;
                            if let Err(e) = woken {
                                // The lease brings it back; nothing is lost.
                                tracing::warn!(notification_id = %id, error = %e, "wake-up failed; it will be retried after the lease");
                            }
                            drop(permit);
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim due cascades from Redis");
                    failed = true;
                    break;
                }
            }
        }
        health.redis.store(!failed, Ordering::Relaxed);
        if failed {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.cancelled() => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        }
        backoff = Duration::from_millis(100);
        if saturated {
            // Every hand is busy: go on as soon as one is free, not after
            // an idle poll (that gap was most of a sweep's lateness).
            tokio::select! {
                p = permits.clone().acquire_owned() => drop(p),
                _ = shutdown.cancelled() => {}
            }
        } else if claimed == 0 {
            tokio::select! {
                _ = tokio::time::sleep(config.idle_poll) => {}
                _ = poke.notified() => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }
    tracker.close();
    tracker.wait().await;
}

/// One sweep of every shard at the worker's clock, each claimed cascade
/// woken in turn rather than side by side: `demo` and `simulate` play a
/// day on a virtual clock with it, the same seed the same way. Returns the
/// ids it woke, in order, each with whether its claim was found lapsed
/// (the wake-up before it left the cascade claimed).
pub async fn wake_due_in_turn<S: CascadeStore>(
    worker: &Worker<S>,
    config: SchedulerConfig,
) -> Result<Vec<(String, bool)>, StoreError> {
    let now = worker.clock.now_ms();
    let mut woken = Vec::new();
    for shard in 0..worker.store.shards() {
        let cascades = worker
            .store
            .claim(shard, now, config.lease_ms, config.batch)
            .await?;
        worker.telemetry.emit(Claimed(cascades.len()));
        for claimed in cascades {
            let woke = (claimed.id.clone(), claimed.lapsed_claim_at_ms.is_some());
            worker.wake_claimed(claimed).await?;
            woken.push(woke);
        }
    }
    Ok(woken)
}
