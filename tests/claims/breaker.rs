//! The circuit breaker: a provider that says the channel is misconfigured
//! (a webhook's 401) makes the step escalate at once, logs an error, and
//! stops sends on that channel — the next notification escalates without a
//! request reaching the provider — while other channels go on. After
//! `BREAKER_OPEN` (60 s, on the daemon's clock, moved here by the test) the
//! next send finds out whether the channel was fixed.

use serde_json::json;

use crate::common::{DELIVERY_DELAY, Running, TestConfig};
use crate::support::{Receiver, logs, note, settle};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misconfigured_channel_opens_its_circuit_and_other_channels_go_on() {
    logs();
    let hooks = Receiver::start().await;
    hooks.answer("vk", 401);
    let cfg = TestConfig::new("breaker", &hooks.url, "", DELIVERY_DELAY);
    let run = Running::start(cfg).await;

    let first = run.id("first");
    run.publish(&note(&first, "c-1", "delivery_delay", json!({})))
        .await;
    run.wait_outcome(&first, "exhausted").await;
    let failed = run.entries(&first, "send_failed").await;
    assert!(
        failed[0].reason.as_deref().unwrap().contains("HTTP 401"),
        "{failed:?}"
    );
    logs()
        .wait_line(&["misconfigured", "stopping sends on it"])
        .await;

    let second = run.id("second");
    run.publish(&note(&second, "c-2", "delivery_delay", json!({})))
        .await;
    run.wait_outcome(&second, "exhausted").await;
    let failed = run.entries(&second, "send_failed").await;
    assert!(
        failed[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("circuit open"),
        "{failed:?}"
    );
    settle().await;
    assert_eq!(hooks.count("vk"), 1, "the open circuit keeps VK untouched");
    assert_eq!(hooks.ids("sms"), [first.as_str(), second.as_str()]);

    // The provider is fixed. 50 s on (10 s short of the breaker's minute,
    // room for a slow machine), the circuit is still open.
    hooks.answer("vk", 200);
    run.clock.advance(50_000);
    let third = run.id("third");
    run.publish(&note(&third, "c-3", "delivery_delay", json!({})))
        .await;
    run.wait_outcome(&third, "exhausted").await;
    let failed = run.entries(&third, "send_failed").await;
    assert!(
        failed[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("circuit open"),
        "{failed:?}"
    );
    assert_eq!(hooks.count("vk"), 1, "still open at 50 s");

    // Past the minute it closes: the next send reaches VK and is sent.
    run.clock.advance(11_000);
    let fourth = run.id("fourth");
    run.publish(&note(&fourth, "c-4", "delivery_delay", json!({})))
        .await;
    let sent = run.wait_entry(&fourth, "sent", Some(0)).await;
    assert_eq!(sent.channel.as_deref(), Some("vk"), "{sent:?}");
    assert_eq!(hooks.ids("vk"), [first.as_str(), fourth.as_str()]);
}
