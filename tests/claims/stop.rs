//! SIGTERM on `cascade run`: intake stops, the sends in hand (one from
//! intake, one an escalation the scheduler claimed) finish and their
//! outcomes are stored, and the process exits 0 within the grace of 20 s.
//! The binary runs with a clean environment.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cascade::core::Phase;
use cascade::runtime::keys::Keys;
use cascade::runtime::store::Store;
use serde_json::json;

use crate::common::{CleanUp, TestConfig, unique, wait_until};
use crate::support::{Reaped, Receiver, note, ready_in, webhook};

/// VK, and an SMS a second later.
const QUICK: &str = "stop_on = [\"read\"]\n\n[[steps]]\nchannel = \"vk\"\nwait = \"1s\"\n\n[[steps]]\nchannel = \"sms\"\n";

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([name, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_sends_in_hand_finish_and_exits_0() {
    let hooks = Receiver::start().await;
    let cfg = TestConfig::new("sigterm", &hooks.url, "", QUICK);
    cfg.write("policies/sms_only.toml", "[[steps]]\nchannel = \"sms\"\n");
    // Time enough for the provider to answer after the SIGTERM.
    cfg.write(
        "channels/sms.toml",
        &webhook(&hooks.url, "sms", "contact = \"sms\"").replace("\"2s\"", "\"10s\""),
    );
    let _clean = CleanUp(cfg.name.clone());
    let intake = crate::common::intake_config_of(&cfg.catalog());
    let log = std::env::temp_dir().join(format!("{}.log", unique("sigterm")));
    let out = std::fs::File::create(&log).unwrap();
    let mut child = Reaped(
        Command::new(env!("CARGO_BIN_EXE_cascade"))
            .env_clear()
            .env("CASCADE_LOG", "info")
            .arg("--config")
            .arg(cfg.path())
            .arg("run")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap(),
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();

    hooks.hold("sms");
    let escalated = format!("{}-escalated", cfg.name);
    let direct = format!("{}-direct", cfg.name);
    let after = format!("{}-after", cfg.name);
    for (id, policy) in [(&escalated, "delivery_delay"), (&direct, "sms_only")] {
        let body = note(id, "c-1", policy, json!({})).to_string();
        assert!(
            cascade::runtime::intake::publish(&intake, body.as_bytes())
                .await
                .unwrap()
        );
    }
    // Both SMS are in the provider's hands: one sent from intake, one
    // escalated by the scheduler a second after the VK message.
    let mut exited = None;
    wait_until("both SMS requests", Duration::from_secs(15), async || {
        exited = child.0.try_wait().unwrap();
        exited.is_some() || hooks.count("sms") == 2
    })
    .await;
    assert!(
        exited.is_none(),
        "the daemon exited ({exited:?}; target/debug/cascade is shared: build it right before this test):\n{}",
        read_log()
    );

    signal(child.0.id(), "-TERM");
    let stopped = Instant::now();
    // Intake has stopped: this one stays in the queue.
    let body = note(&after, "c-2", "sms_only", json!({})).to_string();
    assert!(
        cascade::runtime::intake::publish(&intake, body.as_bytes())
            .await
            .unwrap()
    );
    // The provider takes its time, well within the grace.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "it waits for the sends in hand:\n{}",
        read_log()
    );
    hooks.release("sms");
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(25),
            "still running 25 s after SIGTERM:\n{}",
            read_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0), "{}", read_log());

    // Nothing half-sent: each SMS went out once and its outcome is stored.
    let store = Store::connect("redis://127.0.0.1:6379", Keys::new(&cfg.name, 4), 3_600_000)
        .await
        .unwrap();
    for id in [&escalated, &direct] {
        let (cascade, timeline) = store.status(id).await.unwrap().expect("recorded");
        assert!(
            matches!(cascade.phase, Phase::Done { .. }),
            "{id}: {:?}\n{timeline:?}",
            cascade.phase
        );
        let sms_sent = timeline
            .iter()
            .filter(|e| e.event.as_str() == "sent" && e.channel.as_deref() == Some("sms"))
            .count();
        assert_eq!(sms_sent, 1, "{id}: {timeline:?}");
    }
    let mut sms = hooks.ids("sms");
    sms.sort();
    let mut want = vec![escalated, direct];
    want.sort();
    assert_eq!(sms, want);
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
