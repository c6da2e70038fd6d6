//! W2s: escalations whose due moments are spread over time, as customers
//! see them (W2 makes them all due at one instant). Notifications arrive at
//! a steady pace; each SMS is due a fixed wait after its VK message, and
//! its lateness is how long after that it arrived.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::measure::{redis_cpu, script_stats, watch};
use super::rig::{Rig, publish};
use super::{BenchError, BenchOptions, Spread};
use crate::dev::fakes::vk::FakeVk;
use crate::dev::fakes::webhook::FakeWebhook;
use crate::runtime::clock::SystemClock;

/// The wait between the VK message and the SMS.
const WAIT: Duration = Duration::from_secs(2);
/// How long the notifications take to arrive, in this many batches.
const PACE: Duration = Duration::from_secs(5);
const BATCHES: usize = 50;

pub(super) async fn w2s(opts: &BenchOptions) -> Result<Spread, BenchError> {
    let vk = FakeVk::start().await;
    let sms = FakeWebhook::start().await?;
    let rig = Rig::with_wait("w2s", opts, &vk.base_url(), sms.url(), "2s")?;
    let result = spread(opts, &rig, &vk, &sms).await;
    rig.clean(opts).await;
    result
}

async fn spread(
    opts: &BenchOptions,
    rig: &Rig,
    vk: &FakeVk,
    sms: &FakeWebhook,
) -> Result<Spread, BenchError> {
    let n = opts.w2s_n;
    let daemon = rig.start(opts, Arc::new(SystemClock::default())).await?;
    let redis_before = redis_cpu(&opts.redis).await?;
    let scripts_before = script_stats(&opts.redis).await?;
    let per_batch = n.div_ceil(BATCHES);
    for batch in 0..BATCHES {
        let first = batch * per_batch;
        let count = per_batch.min(n.saturating_sub(first));
        if count > 0 {
            publish(&opts.amqp_url, &rig.intake, &rig.intake.queue, count, |i| {
                rig.body(first + i)
            })
            .await?;
        }
        tokio::time::sleep(PACE / BATCHES as u32).await;
    }
    watch(n, opts.timeout, || sms.received_count()).await;
    let redis = redis_cpu(&opts.redis).await?.saturating_sub(redis_before);
    let scripts = script_stats(&opts.redis).await?.0 - scripts_before.0;
    daemon.stop(Duration::from_secs(5)).await;
    Ok(Spread {
        redis_cpu: redis,
        script_calls: scripts,
        ..lateness(n, vk, sms)
    })
}

/// Each SMS against the moment it was due: its VK message's arrival + WAIT.
fn lateness(n: usize, vk: &FakeVk, sms: &FakeWebhook) -> Spread {
    // The bench's VK peers are 1,000,000 + i; the SMS keys `order-<i>:delayed:<step>`.
    let sent: HashMap<usize, Instant> = vk
        .messages()
        .iter()
        .map(|m| ((m.peer_id - 1_000_000) as usize, m.at))
        .collect();
    let mut late: Vec<Duration> = sms
        .received()
        .iter()
        .filter_map(|r| {
            let key = r.idempotency_key.as_deref()?;
            let i: usize = key
                .strip_prefix("order-")?
                .split(':')
                .next()?
                .parse()
                .ok()?;
            Some(r.at.saturating_duration_since(*sent.get(&i)? + WAIT))
        })
        .collect();
    late.sort();
    Spread {
        n,
        sms: late.len(),
        p50: super::w2::quantile(&late, 0.50),
        p99: super::w2::quantile(&late, 0.99),
        max: super::w2::quantile(&late, 1.0),
        ..Spread::default()
    }
}
