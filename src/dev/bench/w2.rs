//! W2 sweep: N cascades due at once after a clock jump; SMS rate, wrong and missing SMS.

use crate::runtime::store::RedisConn;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::measure::{process_cpu, redis_cpu, script_stats, watch};
use super::rig::{Rig, clock_now, publish, redis_conn};
use super::{BenchError, BenchOptions, Sweep, WAIT_MS};
use crate::dev::fakes::vk::FakeVk;
use crate::dev::fakes::webhook::{FakeWebhook, Received};
use crate::runtime::clock::SystemClock;

pub(super) async fn w2(opts: &BenchOptions) -> Result<Sweep, BenchError> {
    let vk = FakeVk::start().await;
    let sms = FakeWebhook::start().await?;
    let rig = Rig::new("w2", opts, &vk.base_url(), sms.url())?;
    let result = sweep(opts, &rig, &vk, &sms).await;
    rig.clean(opts).await;
    result
}

async fn sweep(
    opts: &BenchOptions,
    rig: &Rig,
    vk: &FakeVk,
    sms: &FakeWebhook,
) -> Result<Sweep, BenchError> {
    let n = opts.w2_n;
    publish(&opts.amqp_url, &rig.intake, &rig.intake.queue, n, |i| {
        rig.body(i)
    })
    .await?;
    let clock = Arc::new(SystemClock::default());
    let daemon = rig.start(opts, clock.clone()).await?;
    watch(n, opts.timeout, || vk.received_count()).await;
    let mut conn = redis_conn(&opts.redis).await?;
    wait_until_waiting(rig, &mut conn, &clock, n, opts.timeout).await?;
    let read = mark_half_read(rig, &mut conn, n, clock_now(&clock)).await?;
    let expected = n - read.len();
    let (measured, due) = jump(rig, &mut conn, &clock, sms, expected, opts).await?;
    daemon.stop(Duration::from_secs(5)).await;

    let mut sweep = Sweep {
        n,
        sms_expected: expected,
        ..measured
    };
    tally(&mut sweep, &sms.received(), &read, due);
    Ok(sweep)
}

/// Every cascade must have stored its send and be waiting on the 1 h step
/// before the clock moves, or in-flight sends would time out.
async fn wait_until_waiting(
    rig: &Rig,
    conn: &mut RedisConn,
    clock: &SystemClock,
    n: usize,
    timeout: Duration,
) -> Result<(), BenchError> {
    let deadline = Instant::now() + timeout;
    while rig
        .waiting_after(conn, clock_now(clock) + WAIT_MS / 2)
        .await?
        < n as u64
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Half of the customers read the VK message (even numbers): a `read`
/// receipt written straight into Redis at `now`. Returns their ids.
async fn mark_half_read(
    rig: &Rig,
    conn: &mut RedisConn,
    n: usize,
    now: i64,
) -> Result<HashSet<String>, BenchError> {
    for chunk in (0..n).step_by(2).collect::<Vec<_>>().chunks(1_000) {
        if conn.is_cluster() {
            // Each receipts hash is in its cascade's slot: one call each.
            let writes = chunk.iter().map(|i| {
                let mut c = conn.clone();
                let key = rig.keys.receipts(&rig.id(*i));
                async move {
                    redis::cmd("HSET")
                        .arg(key)
                        .arg("read")
                        .arg(now)
                        .query_async::<()>(&mut c)
                        .await
                }
            });
            futures_util::future::try_join_all(writes).await?;
            continue;
        }
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.hset(rig.keys.receipts(&rig.id(*i)), "read", now)
                .ignore();
        }
        let _: () = pipe.query_async(conn).await?;
    }
    Ok((0..n).step_by(2).map(|i| rig.id(i)).collect())
}

/// Moves the daemon's clock past the wait, so everything is due at once, and
/// measures up to the last of the `expected` SMS and a settle time after it.
/// Returns the timings and CPU figures (the SMS counts are `tally`'s) and
/// the instant of the jump.
async fn jump(
    rig: &Rig,
    conn: &mut RedisConn,
    clock: &SystemClock,
    sms: &FakeWebhook,
    expected: usize,
    opts: &BenchOptions,
) -> Result<(Sweep, Instant), BenchError> {
    let timeout = opts.timeout;
    // Everything is due from this instant on.
    let cpu_before = (redis_cpu(&opts.redis).await?, process_cpu());
    let scripts_before = script_stats(&opts.redis).await?;
    let due = Instant::now();
    clock.advance(WAIT_MS + 1_000);
    let (_, last, _) = watch(expected, timeout, || sms.received_count()).await;
    let elapsed = last.unwrap_or_else(Instant::now) - due;
    let redis_cpu = redis_cpu(&opts.redis).await?.saturating_sub(cpu_before.0);
    let process_cpu = process_cpu().saturating_sub(cpu_before.1);
    // Give wrong sends (to readers) a moment to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let scripts_after = script_stats(&opts.redis).await?;
    let unsettled = rig.waiting_after(conn, i64::MIN).await?;
    let measured = Sweep {
        elapsed,
        unsettled,
        redis_cpu,
        process_cpu,
        script_calls: scripts_after.0.saturating_sub(scripts_before.0),
        script_time: scripts_after.1.saturating_sub(scripts_before.1),
        ..Sweep::default()
    };
    Ok((measured, due))
}

/// Sorts the SMS `received` into distinct, repeated and sent to readers,
/// and takes the lateness of the distinct ones behind the jump at `due`.
fn tally(sweep: &mut Sweep, received: &[Received], read: &HashSet<String>, due: Instant) {
    let mut seen = HashSet::new();
    let mut lateness = Vec::new();
    for r in received {
        let key = r.idempotency_key.clone().unwrap_or_default();
        let id = key
            .rsplit_once(':')
            .map(|(id, _)| id)
            .unwrap_or(&key)
            .to_owned();
        if !seen.insert(key) {
            sweep.sms_repeated += 1;
            continue;
        }
        if read.contains(&id) {
            sweep.sms_to_read += 1;
        } else {
            sweep.sms_distinct += 1;
            lateness.push(r.at.saturating_duration_since(due));
        }
    }
    sweep.sms_missing = sweep.sms_expected.saturating_sub(sweep.sms_distinct);
    lateness.sort();
    sweep.lateness_p50 = quantile(&lateness, 0.50);
    sweep.lateness_p99 = quantile(&lateness, 0.99);
    sweep.lateness_max = quantile(&lateness, 1.0);
}

/// The `q` quantile of `sorted` by nearest rank; zero when it is empty.
pub(super) fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        Duration::ZERO
    } else {
        sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
    }
}
