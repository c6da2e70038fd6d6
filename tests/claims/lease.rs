//! The claim's lease and the channel `rate`: a send whose channel timeout
//! does not fit in what is left of the lease (with 5 s to spare), or that
//! would wait for the channel's `rate`, stores its in-flight state before
//! it goes out; one that fits goes out on the lease, its decision stored
//! with its outcome. The `rate` holds the channel's throughput.

use std::time::Duration;

use cascade::core::Phase;
use cascade::runtime::clock::Clock;
use serde_json::json;

use crate::common::{AT_ONCE, DELIVERY_DELAY, PrivateRedis, Running, TestConfig, wait_until};
use crate::support::{MIN, Receiver, note, phase, webhook};

fn in_flight_on(phase: &Option<Phase>, channel: &str) -> bool {
    matches!(phase, Some(Phase::InFlight { channel: c, .. }) if c == channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_that_does_not_fit_in_the_lease_is_stored_in_flight_first() {
    let hooks = Receiver::start().await;
    let cfg = TestConfig::new("lease-fit", &hooks.url, "", DELIVERY_DELAY);
    // The lease is 30 s: 28 s + 5 s does not fit, 2 s does.
    cfg.write(
        "channels/sms.toml",
        &webhook(&hooks.url, "sms", "contact = \"sms\"").replace("\"2s\"", "\"28s\""),
    );
    cfg.write("channels/push.toml", &webhook(&hooks.url, "push", ""));
    cfg.write(
        "policies/vk_push.toml",
        &DELIVERY_DELAY.replace("channel = \"sms\"", "channel = \"push\""),
    );
    let run = Running::start(cfg).await;
    let slow = run.id("slow");
    let fits = run.id("fits");
    run.publish(&note(&slow, "c-1", "delivery_delay", json!({})))
        .await;
    run.publish(&note(&fits, "c-2", "vk_push", json!({}))).await;
    for id in [&slow, &fits] {
        run.wait_entries(id, "sent", 1).await;
    }

    hooks.hold("sms");
    hooks.hold("push");
    run.clock.advance(31 * MIN);
    hooks.wait_count("sms", 1).await;
    hooks.wait_count("push", 1).await;
    // Both escalations are in the provider's hands.
    assert!(
        in_flight_on(&phase(&run, &slow).await, "sms"),
        "stored in flight before the send: {:?}",
        phase(&run, &slow).await
    );
    assert!(
        matches!(phase(&run, &fits).await, Some(Phase::Waiting { channel, .. }) if channel == "vk"),
        "on the lease, nothing stored before the outcome: {:?}",
        phase(&run, &fits).await
    );

    hooks.release("sms");
    hooks.release("push");
    run.wait_outcome(&slow, "exhausted").await;
    run.wait_outcome(&fits, "exhausted").await;
    assert_eq!((hooks.count("sms"), hooks.count("push")), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_that_waits_for_the_rate_is_stored_in_flight_and_the_rate_holds() {
    let hooks = Receiver::start().await;
    let cfg = TestConfig::new("lease-rate", &hooks.url, "", DELIVERY_DELAY);
    // One SMS every two seconds; VK two at once, then one a second.
    cfg.write(
        "channels/sms.toml",
        &webhook(&hooks.url, "sms", "contact = \"sms\"\nrate = \"1/2s\""),
    );
    cfg.write(
        "channels/vk.toml",
        &webhook(&hooks.url, "vk", "contact = \"vk\"\nrate = \"2/2s\""),
    );
    let run = Running::start(cfg).await;
    let ids: Vec<String> = (1..=4).map(|n| run.id(&n.to_string())).collect();
    for (n, id) in ids.iter().enumerate() {
        run.publish(&note(id, &format!("c-{n}"), "delivery_delay", json!({})))
            .await;
    }
    let vk = hooks.wait_count("vk", 2).await;
    wait_until("all four VK messages", AT_ONCE, async || {
        hooks.count("vk") == 4
    })
    .await;
    let vk_all = hooks.hooks("vk");
    // Lower bounds only, with room for a request slow to arrive: without
    // the rate, all four come within milliseconds.
    assert!(vk_all[2].at - vk[0].at >= Duration::from_millis(500));
    assert!(vk_all[3].at - vk[0].at >= Duration::from_millis(1500));
    for id in &ids {
        run.wait_entries(id, "sent", 1).await;
    }

    // Two escalations fall due together: one SMS goes out on the lease, the
    // other waits for the rate, stored in flight meanwhile.
    let (a, b) = (&ids[0], &ids[1]);
    for id in &ids[2..] {
        run.daemon()
            .store
            .record_receipt(id, "read", None, 0)
            .await
            .unwrap();
        run.wait_outcome(id, "completed").await;
    }
    run.clock.advance(31 * MIN);
    let first = hooks.wait_count("sms", 1).await[0].clone();
    let waiting = if first.notification_id() == *a { b } else { a };
    wait_until("the second SMS stored in flight", AT_ONCE, async || {
        in_flight_on(&phase(&run, waiting).await, "sms")
    })
    .await;
    assert_eq!(hooks.count("sms"), 1, "it waits for the rate");
    let sms = hooks.wait_count("sms", 2).await;
    assert!(sms[1].at - sms[0].at >= Duration::from_millis(1000));
    run.wait_outcome(a, "exhausted").await;
    run.wait_outcome(b, "exhausted").await;
}

/// Two escalations to an SMS channel that takes one send every `period`:
/// one goes out on the lease, the other is stored in flight and waits for
/// the rate. Returns (the one sent first, the one waiting).
async fn two_escalations_one_waiting(run: &Running, hooks: &Receiver) -> (String, String) {
    let (a, b) = (run.id("a"), run.id("b"));
    for (n, id) in [&a, &b].into_iter().enumerate() {
        run.publish(&note(id, &format!("c-{n}"), "delivery_delay", json!({})))
            .await;
        run.wait_entries(id, "sent", 1).await;
    }
    run.clock.advance(31 * MIN);
    let first = hooks.wait_count("sms", 1).await[0].notification_id();
    let waiting = if first == a { b } else { a };
    (first, waiting)
}

/// A `read` that arrives while a send waits for its channel's rate stops
/// it: the receipts are read again right before the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_arrives_while_a_send_waits_for_the_rate_stops_it() {
    let hooks = Receiver::start().await;
    let cfg = TestConfig::new("rate-read", &hooks.url, "", DELIVERY_DELAY);
    cfg.write(
        "channels/sms.toml",
        &webhook(&hooks.url, "sms", "contact = \"sms\"\nrate = \"1/3s\""),
    );
    let run = Running::start(cfg).await;
    let (_, waiting) = two_escalations_one_waiting(&run, &hooks).await;
    wait_until("the second SMS waits in flight", AT_ONCE, async || {
        in_flight_on(&phase(&run, &waiting).await, "sms")
    })
    .await;
    run.daemon()
        .store
        .record_receipt(&waiting, "read", Some("vk"), run.clock.now_ms())
        .await
        .unwrap();
    run.wait_outcome(&waiting, "completed").await;
    // Past the moment the rate would have let it out.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(hooks.count("sms"), 1, "the read one was never requested");
}

/// A send that cannot get its channel's rate inside its in-flight window
/// is not requested late (where the scheduler would already count it
/// interrupted and resend it): it is deferred, and goes out once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_that_cannot_get_the_rate_inside_its_window_is_deferred_not_doubled() {
    let hooks = Receiver::start().await;
    // Window 7 s = the channel's 2 s timeout + 5 s margin: no time to wait.
    let cfg = TestConfig::new(
        "rate-window",
        &hooks.url,
        "[defaults]\nin_flight_timeout = \"7s\"\n",
        DELIVERY_DELAY,
    );
    cfg.write(
        "channels/sms.toml",
        &webhook(&hooks.url, "sms", "contact = \"sms\"\nrate = \"1/3s\""),
    );
    let run = Running::start(cfg).await;
    let (first, waiting) = two_escalations_one_waiting(&run, &hooks).await;
    // Whatever the daemon did with it, its window is over now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    run.clock.advance(8_000);
    let deferred = run.wait_entry(&waiting, "deferred", Some(1)).await;
    assert_eq!(deferred.reason.as_deref(), Some("rate"), "{deferred:?}");
    // The rate lets it out 3 s after the first; the clock must reach the
    // deferral too.
    wait_until("the second SMS", Duration::from_secs(10), async || {
        run.clock.advance(1_000);
        hooks.count("sms") == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(hooks.ids("sms"), [first.as_str(), waiting.as_str()]);
    assert!(run.entries(&waiting, "uncertain").await.is_empty());
}

/// Redis fails right after the provider took a send: the outcome (and the
/// provider message id callbacks will name) is stored once Redis is back,
/// within the send's window, instead of being lost and the step later
/// counted as uncertain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sends_outcome_is_stored_once_redis_is_back() {
    let mut redis_server = PrivateRedis::start("commit-retry").await;
    let hooks = Receiver::start().await;
    let cfg = TestConfig::new("commit-retry", &hooks.url, "", DELIVERY_DELAY);
    cfg.set_redis_url(&redis_server.url());
    let run = Running::start(cfg).await;
    hooks.hold("vk");
    let id = run.id("n");
    run.publish(&note(&id, "c-1", "delivery_delay", json!({})))
        .await;
    hooks.wait_count("vk", 1).await;
    // The provider has it; Redis goes away before the outcome is stored.
    redis_server.kill();
    hooks.release("vk");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    redis_server.restart().await;
    // The daemon's connection comes back on its own schedule: until then a
    // read may fail too.
    let mut sent = None;
    wait_until("the send's outcome stored", AT_ONCE, async || {
        if let Ok(Some((_, timeline))) = run.daemon().store.status(&id).await {
            sent = timeline.into_iter().find(|e| e.event.as_str() == "sent");
        }
        sent.is_some()
    })
    .await;
    let sent = sent.unwrap();
    assert_eq!(sent.step, Some(0));
    assert_eq!(sent.provider_message_id.as_deref(), Some("hook-1"));
    assert!(matches!(
        phase(&run, &id).await,
        Some(Phase::Waiting { .. })
    ));
    assert_eq!(hooks.count("vk"), 1);
}

/// Stopping while a send waits for its channel's rate hands that send back
/// (due at once, for any instance), instead of leaving it in flight to be
/// counted interrupted — and the stop does not wait for the rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_hands_back_a_send_that_waits_for_the_rate() {
    let hooks = Receiver::start().await;
    let cfg = TestConfig::new("rate-stop", &hooks.url, "", DELIVERY_DELAY);
    cfg.write(
        "channels/sms.toml",
        &webhook(&hooks.url, "sms", "contact = \"sms\"\nrate = \"1/30s\""),
    );
    let mut run = Running::start(cfg).await;
    let (_, waiting) = two_escalations_one_waiting(&run, &hooks).await;
    wait_until("the second SMS waits in flight", AT_ONCE, async || {
        in_flight_on(&phase(&run, &waiting).await, "sms")
    })
    .await;
    let store = run.daemon().store.clone();
    let started = std::time::Instant::now();
    run.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the stop waited {:?}",
        started.elapsed()
    );
    let (cascade, timeline) = store.status(&waiting).await.unwrap().unwrap();
    assert!(
        matches!(cascade.phase, Phase::Due { .. }),
        "{:?}",
        cascade.phase
    );
    let last = timeline.last().unwrap();
    assert_eq!(
        (last.event.as_str(), last.reason.as_deref()),
        ("deferred", Some("rate"))
    );
    assert_eq!(hooks.count("sms"), 1);
}
