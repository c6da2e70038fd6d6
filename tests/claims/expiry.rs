//! `expire_after`, `expires_at` and `send_at` in the daemon: the earlier
//! expiry ends a cascade and nothing goes out after it; a notification
//! already expired at intake is accepted and recorded `expired`, not
//! dead-lettered; `send_at` delays the first step, whose wait starts when
//! it is sent.

use cascade::core::Phase;
use serde_json::json;

use crate::common::{DELIVERY_DELAY, Running, TestConfig, ready_in, settle};
use crate::support::{HOUR, MIN, Receiver, note, rfc3339};

/// Expires an hour after intake; the SMS would come after two.
const SLOW: &str = "stop_on = [\"read\"]\nexpire_after = \"1h\"\n\n[[steps]]\nchannel = \"vk\"\nwait = \"2h\"\n\n[[steps]]\nchannel = \"sms\"\n";

async fn expires_at_ms(run: &Running, id: &str) -> Option<i64> {
    let (cascade, _) = run.daemon().store.status(id).await.unwrap().unwrap();
    cascade.expires_at_ms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_earlier_of_expires_at_and_expire_after_ends_the_cascade() {
    let hooks = Receiver::start().await;
    let cfg = TestConfig::new("expiry", &hooks.url, "", SLOW);
    let run = Running::start(cfg).await;
    let soon = rfc3339(&run.clock, 20 * MIN);
    let policy_only = run.id("policy");
    let own_earlier = run.id("earlier");
    let own_later = run.id("later");
    run.publish(&note(&policy_only, "c-1", "delivery_delay", json!({})))
        .await;
    run.publish(&note(
        &own_earlier,
        "c-2",
        "delivery_delay",
        json!({ "expires_at": soon }),
    ))
    .await;
    run.publish(&note(
        &own_later,
        "c-3",
        "delivery_delay",
        json!({ "expires_at": rfc3339(&run.clock, 3 * HOUR) }),
    ))
    .await;
    let mut accepted = Vec::new();
    for id in [&policy_only, &own_earlier, &own_later] {
        accepted.push(run.wait_entries(id, "sent", 1).await[0].at_ms);
    }
    let soon_ms = soon.parse::<jiff::Timestamp>().unwrap().as_millisecond();
    assert_eq!(expires_at_ms(&run, &own_earlier).await, Some(soon_ms));
    for (i, id) in [(0, &policy_only), (2, &own_later)] {
        let at = expires_at_ms(&run, id).await.unwrap();
        assert!(
            at <= accepted[i] + HOUR && at > accepted[i] + HOUR - MIN,
            "{id}: an hour after intake"
        );
    }

    run.clock.advance(21 * MIN);
    run.wait_outcome(&own_earlier, "expired").await;
    assert_eq!(run.outcome(&policy_only).await, None);
    assert_eq!(run.outcome(&own_later).await, None);

    run.clock.advance(40 * MIN);
    run.wait_outcome(&policy_only, "expired").await;
    run.wait_outcome(&own_later, "expired").await;

    // The SMS would have been due at two hours: nothing goes out.
    run.clock.advance(2 * HOUR);
    settle().await;
    assert_eq!(hooks.count("sms"), 0);
    assert_eq!(hooks.count("vk"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_expired_at_intake_is_recorded_expired_and_sends_nothing() {
    let hooks = Receiver::start().await;
    let cfg = TestConfig::new("expired-intake", &hooks.url, "", DELIVERY_DELAY);
    let mut run = Running::start(cfg).await;
    let id = run.id("late");
    run.publish(&note(
        &id,
        "c-1",
        "delivery_delay",
        json!({ "expires_at": rfc3339(&run.clock, -MIN) }),
    ))
    .await;
    run.wait_outcome(&id, "expired").await;
    assert_eq!(run.events(&id).await, ["accepted", "expired"]);
    settle().await;
    assert_eq!(hooks.count("vk") + hooks.count("sms"), 0);
    // Not dead-lettered, and acknowledged: nothing comes back to the queue
    // when the daemon's connection closes.
    assert_eq!(ready_in(&run.intake.dead_letter_queue).await, 0);
    run.stop().await;
    assert_eq!(ready_in(&run.intake.queue).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_at_delays_the_first_step_and_its_wait_starts_when_sent() {
    let hooks = Receiver::start().await;
    let cfg = TestConfig::new("send-at", &hooks.url, "", DELIVERY_DELAY);
    let run = Running::start(cfg).await;
    let id = run.id("later");
    let send_at = rfc3339(&run.clock, 2 * HOUR);
    run.publish(&note(
        &id,
        "c-1",
        "delivery_delay",
        json!({ "send_at": send_at }),
    ))
    .await;
    let deferred = run.wait_entry(&id, "deferred", Some(0)).await;
    assert_eq!(deferred.reason.as_deref(), Some("send_at"));
    assert_eq!(
        deferred.until_ms,
        Some(send_at.parse::<jiff::Timestamp>().unwrap().as_millisecond())
    );
    settle().await;
    assert_eq!(hooks.count("vk"), 0);

    run.clock.advance(2 * HOUR + MIN);
    let sent = run.wait_entries(&id, "sent", 1).await[0].at_ms;
    assert_eq!(hooks.ids("vk"), [id.as_str()]);
    match crate::support::phase(&run, &id).await {
        Some(Phase::Waiting { until_ms, .. }) => assert_eq!(until_ms, sent + 30 * MIN),
        other => panic!("waiting 30 minutes from the send: {other:?}"),
    }
}
