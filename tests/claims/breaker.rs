//! The circuit breaker: a provider that says the channel is misconfigured
//! (a webhook's 401) makes the step escalate at once, logs an error, and
//! stops sends on that channel — the next notification escalates without a
//! request reaching the provider — while other channels go on.
//!
//! Not tested here: that it closes again after 60 s. The breaker reads
//! `std::time::Instant`, not the injected clock, so only a 60-second sleep
//! could show it.

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
}
