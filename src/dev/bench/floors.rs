//! The floors: the stack's own round trips (AMQP, HTTP to the fakes, Redis), no daemon.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeleteOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Connection, ConnectionProperties};

use super::rig::{Rig, publish, redis_conn};
use super::{BenchError, BenchOptions, Floor};
use crate::dev::fakes::vk::FakeVk;
use crate::dev::fakes::webhook::FakeWebhook;

pub(super) async fn floors(opts: &BenchOptions) -> Result<Vec<Floor>, BenchError> {
    Ok(vec![
        amqp_floor(opts).await?,
        webhook_floor(opts).await?,
        vk_floor(opts).await?,
        redis_floor(opts).await?,
    ])
}

/// Consume-and-ack, one ack per delivery, at the daemon's prefetch.
async fn amqp_floor(opts: &BenchOptions) -> Result<Floor, BenchError> {
    let n = opts.w1_n.max(1);
    let rig = Rig::new(
        "floor",
        opts,
        "http://127.0.0.1:9/method",
        "http://127.0.0.1:9/",
    )?;
    let floor_queue = format!("{}.floor", rig.name);
    let result = async {
        let sample = rig.body(0);
        publish(&opts.amqp_url, &rig.intake, &floor_queue, n, |_| {
            sample.clone()
        })
        .await?;
        let conn = Connection::connect(&opts.amqp_url, ConnectionProperties::default()).await?;
        let channel = conn.create_channel().await?;
        channel
            .basic_qos(opts.prefetch, BasicQosOptions::default())
            .await?;
        let mut consumer = channel
            .basic_consume(
                ShortString::from(floor_queue.as_str()),
                ShortString::from("bench-floor"),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut first = None;
        let mut got = 0;
        let deadline = Instant::now() + opts.timeout;
        while got < n {
            let next = tokio::time::timeout_at(deadline.into(), consumer.next()).await;
            let Ok(Some(delivery)) = next else { break };
            let delivery = delivery?;
            first.get_or_insert_with(Instant::now);
            delivery.ack(BasicAckOptions::default()).await?;
            got += 1;
        }
        let elapsed = first.map(|f| f.elapsed()).unwrap_or_default();
        let _ = channel
            .queue_delete(
                ShortString::from(floor_queue.as_str()),
                QueueDeleteOptions::default(),
            )
            .await;
        let _ = conn.close(200, ShortString::from("floor done")).await;
        Ok::<_, BenchError>(Floor {
            name: "AMQP consume+ack",
            count: got,
            elapsed,
        })
    }
    .await;
    rig.clean(opts).await;
    result
}

async fn concurrent<F, Fut>(n: usize, concurrency: usize, op: F) -> (usize, Duration)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    let ok = futures_util::stream::iter(0..n)
        .map(op)
        .buffer_unordered(concurrency.max(1))
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    (ok, started.elapsed())
}

/// POSTs of a notification-sized JSON body to a fresh webhook fake.
async fn webhook_floor(opts: &BenchOptions) -> Result<Floor, BenchError> {
    let fake = FakeWebhook::start().await?;
    let http = reqwest::Client::new();
    let url = fake.url().to_owned();
    let (count, elapsed) = concurrent(opts.floor_n, opts.concurrency, |i| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.post(&url)
                .header("idempotency-key", format!("floor-{i}:0"))
                .json(&serde_json::json!({"id": format!("floor-{i}"), "step": 0, "text": "Заказ задерживается"}))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    Ok(Floor {
        name: "HTTP POST to webhook fake",
        count,
        elapsed,
    })
}

/// `messages.send` to a fresh VK fake, as the VK adapter sends it.
async fn vk_floor(opts: &BenchOptions) -> Result<Floor, BenchError> {
    let fake = FakeVk::start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/messages.send", fake.base_url());
    let (count, elapsed) = concurrent(opts.floor_n, opts.concurrency, |i| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let form = [
                ("peer_id", (1_000_000 + i).to_string()),
                ("random_id", i.to_string()),
                ("message", "Заказ задерживается".to_owned()),
                ("access_token", "bench-token".to_owned()),
                ("v", "5.199".to_owned()),
            ];
            http.post(&url)
                .form(&form)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    Ok(Floor {
        name: "HTTP POST to VK fake",
        count,
        elapsed,
    })
}

/// EVALSHA of `return 1` through one ConnectionManager, like the store's.
async fn redis_floor(opts: &BenchOptions) -> Result<Floor, BenchError> {
    let conn = redis_conn(&opts.redis).await?;
    let script = Arc::new(redis::Script::new("return 1"));
    let (count, elapsed) = concurrent(opts.floor_n, opts.concurrency, |_| {
        let (mut conn, script) = (conn.clone(), script.clone());
        async move {
            script
                .invoke_async::<_, i64>(&mut conn)
                .await
                .is_ok_and(|v| v == 1)
        }
    })
    .await;
    Ok(Floor {
        name: "Redis EVALSHA",
        count,
        elapsed,
    })
}
