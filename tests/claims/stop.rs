//! SIGTERM on `cascade run`: intake stops, the sends in hand (one from
//! intake, one an escalation the scheduler claimed) finish and their
//! outcomes are stored, and the process exits 0 within the grace of 20 s.
//! Two cases, one for each send being the last to finish, so that neither
//! the intake's nor the scheduler's wait can be missing unnoticed. The
//! binary runs with a clean environment.

use std::time::{Duration, Instant};

use cascade::core::Phase;
use cascade::runtime::intake::IntakeConfig;
use cascade::runtime::keys::Keys;
use cascade::runtime::store::Store;
use serde_json::json;

use crate::common::{ChildDaemon, CleanUp, TestConfig, publish_to, ready_in, unique, wait_until};
use crate::support::{Receiver, note, webhook};

/// VK, and an SMS a second later.
const QUICK: &str = "stop_on = [\"read\"]\n\n[[steps]]\nchannel = \"vk\"\nwait = \"1s\"\n\n[[steps]]\nchannel = \"sms\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_waits_for_the_escalation_in_hand_and_exits_0() {
    sigterm_case("sigterm-esc", "direct", "sms").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_waits_for_the_intake_send_in_hand_and_exits_0() {
    sigterm_case("sigterm-intake", "sms", "direct").await;
}

/// Holds both sends at the provider, sends SIGTERM, answers `first`, then
/// (while the daemon must still be running) `last`.
async fn sigterm_case(name: &str, first: &str, last: &str) {
    let hooks = Receiver::start().await;
    let cfg = TestConfig::new(name, &hooks.url, "", QUICK);
    // Time enough for the provider to answer after the SIGTERM.
    cfg.write(
        "channels/sms.toml",
        &webhook(&hooks.url, "sms", "contact = \"sms\"").replace("\"2s\"", "\"10s\""),
    );
    cfg.write(
        "channels/direct.toml",
        &webhook(&hooks.url, "direct", "").replace("\"2s\"", "\"10s\""),
    );
    cfg.write("policies/direct.toml", "[[steps]]\nchannel = \"direct\"\n");
    let _clean = CleanUp(cfg.name.clone());
    let intake = IntakeConfig::from(&cfg.catalog().settings.amqp);
    let log = std::env::temp_dir().join(format!("{}.log", unique(name)));
    let mut child = ChildDaemon::spawn_with(&cfg.path(), &log, "info", &[]);

    hooks.hold("sms");
    hooks.hold("direct");
    let escalated = format!("{}-escalated", cfg.name);
    let direct = format!("{}-direct", cfg.name);
    let after = format!("{}-after", cfg.name);
    for (id, policy) in [(&escalated, "delivery_delay"), (&direct, "direct")] {
        let body = note(id, "c-1", policy, json!({})).to_string();
        publish_to(&intake, body.as_bytes()).await;
    }
    // Both are in the provider's hands: one sent from intake, one an SMS
    // escalated by the scheduler a second after the VK message.
    child
        .wait_alive_until("both sends", Duration::from_secs(15), async || {
            hooks.count("sms") == 1 && hooks.count("direct") == 1
        })
        .await;

    child.signal("TERM");
    let stopped = Instant::now();
    // Intake has stopped: this one stays in the queue.
    let body = note(&after, "c-2", "direct", json!({})).to_string();
    publish_to(&intake, body.as_bytes()).await;
    // The provider takes its time, well within the grace.
    for path in [first, last] {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        child.assert_alive(&format!("before the send to /{path} finished"));
        hooks.release(path);
    }
    // Within 25 s of the SIGTERM.
    let status = child
        .wait_exit(Duration::from_secs(25).saturating_sub(stopped.elapsed()))
        .await;
    assert_eq!(status.code(), Some(0), "{}", child.log());

    // Nothing half-sent: each went out once and its outcome is stored.
    let store = Store::connect(
        &crate::common::redis_target(),
        Keys::new(&cfg.name, 4),
        3_600_000,
    )
    .await
    .unwrap();
    for (id, channel) in [(&escalated, "sms"), (&direct, "direct")] {
        let (cascade, timeline) = store.status(id).await.unwrap().expect("recorded");
        assert!(
            matches!(cascade.phase, Phase::Done { .. }),
            "{id}: {:?}\n{timeline:?}",
            cascade.phase
        );
        let sent = timeline
            .iter()
            .filter(|e| e.event.as_str() == "sent" && e.channel.as_deref() == Some(channel))
            .count();
        assert_eq!(sent, 1, "{id}: {timeline:?}");
    }
    assert_eq!(hooks.ids("sms"), [escalated.as_str()]);
    assert_eq!(hooks.ids("direct"), [direct.as_str()]);
    assert!(store.status(&after).await.unwrap().is_none());
    // Back in the queue once the broker has seen the connection close.
    wait_until(
        "the message back in the queue",
        Duration::from_secs(5),
        async || ready_in(&intake.queue).await == 1,
    )
    .await;
    let _ = std::fs::remove_file(&log);
}
