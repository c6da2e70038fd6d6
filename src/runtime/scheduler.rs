//! The scheduler: claims due cascades from the timer shards (atomically, with
//! a lease, so several instances share the work) and wakes each one on a
//! bounded pool of tasks.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

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
///
/// On time: each claim says when its shard's next cascade comes due, and the
/// scheduler sleeps until the soonest of those, then claims only the shards
/// that are due. Every `idle_poll` (and on a poke) it claims them all, which
/// finds what other instances stored sooner than it knew.
pub async fn run<S: CascadeStore>(
    worker: Arc<Worker<S>>,
    config: SchedulerConfig,
    poke: Arc<Notify>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut plan = Plan::new(worker.store.shards());
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        worker.alarm.plan(i64::MIN);
        plan.merge(worker.alarm.take());
        let swept = sweep(&worker, &config, &permits, &tracker, &mut plan).await;
        health.redis.store(!swept.failed, Ordering::Relaxed);
        if swept.failed {
            plan.all_due();
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.cancelled() => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        }
        backoff = Duration::from_millis(100);
        if swept.saturated {
            // Every hand is busy: go on as soon as one is free, not after
            // an idle poll (that gap was most of a sweep's lateness).
            tokio::select! {
                p = permits.clone().acquire_owned() => drop(p),
                _ = shutdown.cancelled() => {}
            }
        } else if swept.claimed == 0 {
            // Planned first, then the notes read: a wake-up noted after
            // this read rings the alarm.
            let now = worker.clock.now_ms();
            plan.merge(worker.alarm.take());
            let pause = plan.pause(now, config.idle_poll);
            worker.alarm.plan(now + pause.as_millis() as i64);
            // A note taken here is sooner than planned: look again at once.
            plan.merge(worker.alarm.take());
            let pause = plan.pause(now, config.idle_poll);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = worker.alarm.rung() => {}
                _ = poke.notified() => plan.all_due(),
                _ = shutdown.cancelled() => {}
            }
        }
    }
    tracker.close();
    tracker.wait().await;
}

/// When each shard is next worth a claim.
struct Plan {
    /// Per shard: when its next cascade can be claimed (`None`: nothing
    /// waits there, as far as this instance knows).
    next_ms: Vec<Option<i64>>,
    /// When every shard was last claimed from.
    full_sweep: Option<Instant>,
}

/// Dues closer together than this are claimed in one sweep: a claim per
/// cascade would cost Redis more than the milliseconds are worth.
const GATHER: Duration = Duration::from_millis(6);

impl Plan {
    fn new(shards: u16) -> Plan {
        Plan {
            next_ms: vec![None; shards as usize],
            full_sweep: None,
        }
    }

    /// Wake-ups this instance stored since it last looked (`Alarm`).
    fn merge(&mut self, noted: Vec<Option<i64>>) {
        for (known, noted) in self.next_ms.iter_mut().zip(noted) {
            *known = known.iter().copied().chain(noted).min();
        }
    }

    /// The next sweep takes every shard.
    fn all_due(&mut self) {
        self.full_sweep = None;
    }

    /// The shards to claim from at `now_ms`: all of them once an idle poll
    /// has passed since the last full sweep, else those whose next cascade
    /// is due.
    fn shards(&mut self, now_ms: i64, idle_poll: Duration) -> Vec<u16> {
        if self.full_sweep.is_none_or(|at| at.elapsed() >= idle_poll) {
            self.full_sweep = Some(Instant::now());
            return (0..self.next_ms.len() as u16).collect();
        }
        (0..self.next_ms.len() as u16)
            .filter(|s| self.next_ms[*s as usize].is_some_and(|at| at <= now_ms))
            .collect()
    }

    /// How long to sleep: until the soonest known due moment (a little
    /// after, to gather close ones), at most until the next full sweep.
    fn pause(&self, now_ms: i64, idle_poll: Duration) -> Duration {
        let to_full = self
            .full_sweep
            .map_or(Duration::ZERO, |at| idle_poll.saturating_sub(at.elapsed()));
        let to_next = self
            .next_ms
            .iter()
            .flatten()
            .min()
            .map(|at| Duration::from_millis((at - now_ms).max(0) as u64) + GATHER);
        to_next.map_or(to_full, |d| d.min(to_full))
    }
}

/// What one sweep over the shards came to.
#[derive(Default)]
struct Swept {
    claimed: usize,
    failed: bool,
    saturated: bool,
}

/// Claims from the shards the plan says are due, and wakes what it claims
/// on the bounded pool.
async fn sweep<S: CascadeStore>(
    worker: &Arc<Worker<S>>,
    config: &SchedulerConfig,
    permits: &Arc<Semaphore>,
    tracker: &TaskTracker,
    plan: &mut Plan,
) -> Swept {
    let now = worker.clock.now_ms();
    let mut swept = Swept::default();
    for shard in plan.shards(now, config.idle_poll) {
        // Claim no more than there are free hands for.
        let room = permits.available_permits().min(config.batch);
        if room == 0 {
            swept.saturated = true;
            break;
        }
        let claims = match worker
            .store
            .claim_due(shard, now, config.lease_ms, room)
            .await
        {
            Ok(claims) => claims,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim due cascades from Redis");
                swept.failed = true;
                break;
            }
        };
        plan.next_ms[shard as usize] = claims.next_ms;
        swept.claimed += claims.due.len();
        worker.telemetry.emit(Claimed {
            cascades: &claims.due,
            now_ms: worker.clock.now_ms(),
        });
        for claimed in claims.due {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let worker = worker.clone();
            tracker.spawn(async move {
                let id = claimed.id.clone();
                if let Err(e) = worker.wake_claimed(claimed).await {
                    // The lease brings it back; nothing is lost.
                    tracing::warn!(notification_id = %id, error = %e, "wake-up failed; it will be retried after the lease");
                }
                drop(permit);
            });
        }
    }
    if swept.saturated || swept.failed {
        // The shards after the break were not looked at: all of them next.
        plan.all_due();
    }
    swept
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
        worker.telemetry.emit(Claimed {
            cascades: &cascades,
            now_ms: worker.clock.now_ms(),
        });
        for claimed in cascades {
            let woke = (claimed.id.clone(), claimed.lapsed_claim_at_ms.is_some());
            worker.wake_claimed(claimed).await?;
            woken.push(woke);
        }
    }
    Ok(woken)
}
