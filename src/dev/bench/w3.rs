//! W3 footprint: RSS and Redis memory per pending cascade.

use crate::runtime::store::RedisConn;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::measure::{rss_kib, used_memory};
use super::rig::{Rig, clock_now, keys_under, publish, redis_conn};
use super::{BenchError, BenchOptions, Footprint, WAIT_MS};
use crate::dev::fakes::webhook::FakeWebhook;
use crate::runtime::clock::SystemClock;

/// A VK `messages.send` that only counts: the recording fake would keep
/// every request in this process and spoil its RSS.
async fn counting_vk() -> Result<(String, Arc<AtomicUsize>), BenchError> {
    use axum::routing::post;
    let count = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(AtomicI64::new(1_001));
    let (c, m) = (count.clone(), ids.clone());
    let app = axum::Router::new().route(
        "/method/messages.send",
        post(move || {
            let id = m.fetch_add(1, Ordering::Relaxed);
            c.fetch_add(1, Ordering::Relaxed);
            async move { axum::Json(serde_json::json!({ "response": id })) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/method", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, count))
}

pub(super) async fn w3(opts: &BenchOptions) -> Result<Footprint, BenchError> {
    let (vk_url, sent) = counting_vk().await?;
    let sms = FakeWebhook::start().await?;
    let rig = Rig::new("w3", opts, &vk_url, sms.url())?;
    let result = async {
        let n = opts.w3_n;
        publish(&opts.amqp_url, &rig.intake, &rig.intake.queue, n, |i| {
            rig.body(i)
        })
        .await?;
        let redis_before = used_memory(&opts.redis).await?;
        let (rss_before_kib, _) = rss_kib();
        let clock = Arc::new(SystemClock::default());
        let daemon = rig.start(opts, clock.clone()).await?;
        let mut conn = redis_conn(&opts.redis).await?;
        let deadline = Instant::now() + opts.timeout;
        let mut rss_peak_kib = rss_before_kib;
        let mut waiting = 0;
        while Instant::now() < deadline {
            rss_peak_kib = rss_peak_kib.max(rss_kib().0);
            if sent.load(Ordering::Relaxed) >= n {
                waiting = rig
                    .waiting_after(&mut conn, clock_now(&clock) + WAIT_MS / 2)
                    .await? as usize;
                if waiting >= n {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (rss_now, hwm_kib) = rss_kib();
        rss_peak_kib = rss_peak_kib.max(rss_now);
        let redis_after = used_memory(&opts.redis).await?;
        daemon.stop(Duration::from_secs(5)).await;
        let keys = keys_under(&opts.redis, rig.keys.prefix()).await?;
        let breakdown = breakdown(&mut conn, rig.keys.prefix(), keys, n).await?;
        Ok::<_, BenchError>(Footprint {
            n,
            waiting,
            rss_before_kib,
            rss_peak_kib,
            hwm_kib,
            redis_before,
            redis_after,
            breakdown,
        })
    }
    .await;
    rig.clean(opts).await;
    result
}

/// What each kind of key costs per pending cascade: `MEMORY USAGE` of a
/// sample of each kind that exists once per cascade, times how many there
/// are, and the shared keys (timers, the events streams) in full, over `n`.
async fn breakdown(
    conn: &mut RedisConn,
    prefix: &str,
    keys: Vec<String>,
    n: usize,
) -> Result<Vec<(String, f64)>, BenchError> {
    use std::collections::BTreeMap;
    let kind = |key: &str| -> String {
        let rest = key.strip_prefix(prefix).unwrap_or(key);
        if rest.starts_with(":timers:") {
            "timers (zsets)".into()
        } else if rest.starts_with(":later:") {
            "timers (far lists)".into()
        } else if rest.starts_with(":events:") {
            "events streams".into()
        } else if rest.starts_with(":pmid:") {
            "provider message id".into()
        } else if rest.starts_with(":peers:") {
            "VK peer hashes".into()
        } else if rest.starts_with(":policy:") {
            "policy snapshot".into()
        } else if rest.starts_with(":customer:") {
            "customer index".into()
        } else if rest.starts_with(":report:") || rest.starts_with(":segments:") {
            "report counters".into()
        } else {
            rest.rsplit(':').next().unwrap_or("?").to_owned()
        }
    };
    // (keys of this kind, sampled keys, sampled bytes)
    let mut kinds: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for key in keys {
        let k = kinds.entry(kind(&key)).or_default();
        k.0 += 1;
        if k.1 < 500 {
            let bytes: Option<u64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&key)
                .arg("SAMPLES")
                .arg(0)
                .query_async(conn)
                .await?;
            k.1 += 1;
            k.2 += bytes.unwrap_or(0);
        }
    }
    let mut out: Vec<(String, f64)> = kinds
        .into_iter()
        .map(|(name, (count, sampled, bytes))| {
            let per_key = bytes as f64 / sampled.max(1) as f64;
            (name, per_key * count as f64 / n.max(1) as f64)
        })
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(out)
}
