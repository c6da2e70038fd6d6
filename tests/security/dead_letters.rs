//! Security tests: dead letters and poison messages, and times from hostile
//! input. A message is never lost to a missing dead-letter queue, never
//! goes round the queue for ever, never loses its dead letter to the
//! producer's TTL; an outage never dead-letters a good message; a `send_at`
//! far off and a provider's absurd `Retry-After` cannot park a cascade.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use serde_json::json;

use crate::common::*;

/// Publishes `body` to `queue` as a producer would, with a confirm, and
/// without declaring any queue.
async fn publish(queue: &str, body: &[u8], properties: BasicProperties) {
    let (conn, ch) = amqp().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = ch
        .basic_publish(
            ShortString::from(""),
            ShortString::from(queue),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            properties.with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(
        matches!(confirm, lapin::Confirmation::Ack(None)),
        "RabbitMQ takes the message into {queue}"
    );
    let _ = conn.close(200, ShortString::from("bye")).await;
}

/// Waits until the daemon consumes `queue` (it declares both of its queues
/// before it starts to).
async fn wait_consuming(queue: &str) {
    wait_until(
        &format!("the daemon consumes {queue}"),
        AT_ONCE,
        async || queue_counts(queue).await.is_some_and(|q| q.consumers >= 1),
    )
    .await;
}

/// Sums `cascade_intake_total` samples with `result` now (the tests compare
/// before and after).
async fn intake_total(run: &Running, result: &str) -> u64 {
    run.metric("cascade_intake_total", &[("result", result)])
        .await
}

/// A notification for `delivery_delay` with `send_at`.
fn sending_at(id: &str, send_at: &str) -> Vec<u8> {
    json!({
        "id": id,
        "policy": "delivery_delay",
        "customer": { "id": "c-1", "contacts": { "vk": "123456", "sms": "+79161234567" } },
        "content": { "text": "Заказ задерживается" },
        "send_at": send_at
    })
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_keeps_failing_is_dead_lettered_as_poison_after_max_deliveries() {
    let (url, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::with_amqp("poison", &url, "max_deliveries = 3", "", DELIVERY_DELAY);
    let run = Running::start(cfg).await.strict();
    // Redis refuses this notification's keys every time: its receipts key
    // holds a string, and accepting it asks for a hash (accept.lua).
    let id = run.id("poison");
    let mut r = redis().await;
    let _: () = redis::AsyncCommands::set(
        &mut r,
        format!("{}:{{{id}}}:receipts", run.cfg.name),
        "not a hash",
    )
    .await
    .unwrap();
    let body = notification(&id, "c-1");
    run.publish_bytes(&body).await;
    // A good message behind it still goes through.
    let good = run.id("good");
    run.publish_bytes(&notification(&good, "c-2")).await;

    let dead = take_messages(&run.intake.dead_letter_queue, 1, Duration::from_secs(20)).await;
    assert_eq!(dead.len(), 1, "the poison message is dead-lettered");
    let d = &dead[0];
    assert_eq!(d.data, body, "byte for byte");
    let h = string_headers(d);
    assert_eq!(
        h.get("x-cascade-error-code").map(String::as_str),
        Some("poison"),
        "{h:?}"
    );
    let sentence = &h["x-cascade-error"];
    assert!(
        sentence.contains("failed 3 times") && sentence.contains("WRONGTYPE"),
        "says how often and the last error: {sentence}"
    );
    for personal in ["+79161234567", "123456", "Заказ"] {
        assert!(!sentence.contains(personal), "{sentence}");
    }
    let count = d
        .properties
        .headers()
        .as_ref()
        .and_then(|t| t.inner().get("x-cascade-deliveries").cloned());
    assert_eq!(count, Some(AMQPValue::LongLongInt(3)));

    // Nothing else: not dead-lettered twice, not left going round.
    assert!(
        take_messages(&run.intake.dead_letter_queue, 1, Duration::from_millis(700))
            .await
            .is_empty()
    );
    assert_eq!(ready_in(&run.intake.queue).await, 0);
    assert!(run.daemon().store.status(&id).await.unwrap().is_none());
    run.wait_entry(&good, "sent", Some(0)).await;
    assert_eq!(received.count("vk"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_never_makes_a_good_message_poison() {
    let (url, received) = fake_receiver(vec![]).await;
    let mut redis_server = PrivateRedis::start("poison-outage").await;
    // At 1, a single failure counted against the message would dead-letter it.
    let cfg = TestConfig::with_amqp(
        "poison-outage",
        &url,
        "max_deliveries = 1",
        "",
        DELIVERY_DELAY,
    );
    cfg.set_redis_url(&redis_server.url());
    let run = Running::start(cfg).await;
    let before = intake_total(&run, "requeued").await;

    redis_server.kill();
    let id = run.id("good");
    run.publish_bytes(&notification(&id, "c-1")).await;
    // Handed back, again and again, while Redis is away.
    wait_until(
        "the message is handed back twice",
        Duration::from_secs(30),
        async || intake_total(&run, "requeued").await >= before + 2,
    )
    .await;
    assert!(
        take_messages(&run.intake.dead_letter_queue, 1, Duration::from_millis(300))
            .await
            .is_empty(),
        "an outage dead-lettered a good message"
    );

    redis_server.restart().await;
    wait_until(
        "the first step goes out after Redis is back",
        Duration::from_secs(30),
        async || received.count("vk") >= 1,
    )
    .await;
    assert!(
        take_messages(&run.intake.dead_letter_queue, 1, Duration::from_millis(300))
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dead_letter_queue_keeps_the_message_instead_of_dropping_it() {
    let (url, _received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("no-dlq", &url, "", DELIVERY_DELAY);
    let run = Running::start(cfg).await.strict();
    wait_consuming(&run.intake.queue).await;
    let dlq = run.intake.dead_letter_queue.clone();
    let (conn, ch) = amqp().await;
    ch.queue_delete(ShortString::from(dlq.as_str()), Default::default())
        .await
        .expect("the dead-letter queue is deleted");
    let before = intake_total(&run, "dead_letter_failed").await;

    let body = br#"{"id": "cut short", "policy": "#.to_vec();
    // Not `run.publish_bytes`: it declares the queues, the dead-letter one too.
    publish(&run.intake.queue, &body, BasicProperties::default()).await;
    // RabbitMQ returns the unroutable dead letter: counted, not acknowledged.
    wait_until(
        "the dead letter comes back unrouted",
        Duration::from_secs(10),
        async || intake_total(&run, "dead_letter_failed").await > before,
    )
    .await;

    // The queue comes back: the message, handed back meanwhile, lands there.
    ch.queue_declare(
        ShortString::from(dlq.as_str()),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("the dead-letter queue is declared again");
    let _ = conn.close(200, ShortString::from("bye")).await;
    let dead = take_messages(&dlq, 1, Duration::from_secs(10)).await;
    assert_eq!(dead.len(), 1, "the message was not lost");
    assert_eq!(dead[0].data, body);
    assert_eq!(
        string_headers(&dead[0])
            .get("x-cascade-error-code")
            .map(String::as_str),
        Some("malformed_json")
    );
    assert_eq!(ready_in(&run.intake.queue).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_drops_the_producers_expiration_and_keeps_the_rest() {
    let (url, _received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("dlq-ttl", &url, "", DELIVERY_DELAY);
    let run = Running::start(cfg).await.strict();
    wait_consuming(&run.intake.queue).await;
    let mut producer_headers = FieldTable::default();
    producer_headers.insert(
        ShortString::from("x-trace"),
        AMQPValue::LongString(LongString::from("t-1")),
    );
    let body = b"not json".to_vec();
    publish(
        &run.intake.queue,
        &body,
        BasicProperties::default()
            .with_expiration(ShortString::from("600000"))
            .with_message_id(ShortString::from("m-1"))
            .with_content_type(ShortString::from("application/json"))
            .with_headers(producer_headers),
    )
    .await;

    let dead = take_messages(&run.intake.dead_letter_queue, 1, Duration::from_secs(10)).await;
    assert_eq!(dead.len(), 1);
    let p = &dead[0].properties;
    assert_eq!(
        p.expiration(),
        &None,
        "a TTL meant for the intake queue must not expire the dead letter"
    );
    assert_eq!(p.message_id().as_ref().map(|m| m.as_str()), Some("m-1"));
    assert_eq!(
        p.content_type().as_ref().map(|m| m.as_str()),
        Some("application/json")
    );
    assert_eq!(p.delivery_mode(), &Some(2));
    let h = string_headers(&dead[0]);
    assert_eq!(h.get("x-trace").map(String::as_str), Some("t-1"));
    assert_eq!(
        h.get("x-cascade-error-code").map(String::as_str),
        Some("malformed_json")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_at_beyond_the_horizon_is_dead_lettered() {
    let (url, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("horizon", &url, "", DELIVERY_DELAY);
    let run = Running::start(cfg).await.strict();
    let now = jiff::Timestamp::now();
    let at = |days: i64| {
        now.checked_add(jiff::SignedDuration::from_hours(24 * days))
            .unwrap()
            .to_string()
    };
    let (far, year_9999, within) = (run.id("far"), run.id("9999"), run.id("within"));
    let refused = [
        sending_at(&far, &at(31)),
        sending_at(&year_9999, "9999-12-30T00:00:00Z"),
    ];
    for body in &refused {
        run.publish_bytes(body).await;
    }
    run.publish_bytes(&sending_at(&within, &at(29))).await;

    let dead = take_messages(&run.intake.dead_letter_queue, 2, Duration::from_secs(10)).await;
    assert_eq!(dead.len(), 2);
    for body in &refused {
        let d = dead
            .iter()
            .find(|d| &d.data == body)
            .expect("dead-lettered byte for byte");
        let h = string_headers(d);
        assert_eq!(
            h.get("x-cascade-error-code").map(String::as_str),
            Some("send_at_too_far"),
            "{h:?}"
        );
        assert!(h["x-cascade-error"].contains("send_at_horizon"), "{h:?}");
    }
    // 29 days ahead is accepted, and waits.
    wait_until("the 29-day notification is recorded", AT_ONCE, async || {
        run.daemon().store.status(&within).await.unwrap().is_some()
    })
    .await;
    for id in [&far, &year_9999] {
        assert!(run.daemon().store.status(id).await.unwrap().is_none());
    }
    assert_eq!(received.count("vk"), 0);
}

/// A receiver whose first POST on `/vk` answers 429 with an absurd
/// `Retry-After` (about 3,000 years); every other answers 200.
async fn absurd_retry_after_receiver() -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let app = Router::new().route(
        "/{path}",
        post(move || {
            let seen = seen.clone();
            async move {
                if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", "99999999999")],
                        "slow down",
                    )
                } else {
                    (StatusCode::OK, [("x-ok", "1")], "{}")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_retry_after_is_capped_by_max_backoff() {
    let (url, calls) = absurd_retry_after_receiver().await;
    // The test channels retry after at most 200 ms (`max_backoff`).
    let cfg = TestConfig::new("retry-after", &url, "", DELIVERY_DELAY);
    let run = Running::start(cfg).await.strict();
    let id = run.id("n");
    run.publish_bytes(&notification(&id, "c-1")).await;

    let failed = run.wait_entry(&id, "send_failed", Some(0)).await;
    assert_eq!(failed.reason.as_deref(), Some("rate_limited"));
    let until = failed.until_ms.expect("a retry time");
    assert!(
        (failed.at_ms..=failed.at_ms + 200).contains(&until),
        "the retry is due {} ms later, past max_backoff",
        until - failed.at_ms
    );
    run.wait_entry(&id, "sent", Some(0)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn the_bounds_are_settings_with_defaults_and_are_checked() {
    let cfg = TestConfig::new("dl-settings", "http://127.0.0.1:9", "", DELIVERY_DELAY);
    let load = |env: &dyn Fn(&str) -> Option<String>| {
        cascade::config::Catalog::load_with_env(&cfg.path(), env)
    };
    let defaults = load(&|_| None).expect("loads").settings;
    assert_eq!(defaults.amqp.max_deliveries, 5);
    assert_eq!(defaults.defaults.send_at_horizon_ms, 30 * 86_400_000);

    let seven = load(&|k| (k == "CASCADE_AMQP_MAX_DELIVERIES").then(|| "7".into()));
    assert_eq!(seven.expect("loads").settings.amqp.max_deliveries, 7);
    for bad in ["0", "-1", "many"] {
        let refused = load(&|k| (k == "CASCADE_AMQP_MAX_DELIVERIES").then(|| bad.into()));
        let errors = refused.expect_err(bad).to_string();
        assert!(errors.contains("amqp.max_deliveries"), "{errors}");
    }

    let toml = std::fs::read_to_string(cfg.path()).unwrap();
    std::fs::write(
        cfg.path(),
        format!("{toml}\n[defaults]\nsend_at_horizon = \"0s\"\n"),
    )
    .unwrap();
    let errors = load(&|_| None).expect_err("a zero horizon").to_string();
    assert!(errors.contains("send_at_horizon"), "{errors}");
}
