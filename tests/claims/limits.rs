//! Per-customer limits in the daemon: `per_channel` counts only the
//! channels it names, per customer; a blocked send waits for the limit
//! (`on_limit = "defer"`, the default) or moves on at once to the next
//! alternative or step (`on_limit = "next"`, on a step or a policy).

use serde_json::json;

use crate::common::{DELIVERY_DELAY, Running, TestConfig, settle};
use crate::support::{HOUR, MIN, Receiver, note};

const DAY: i64 = 24 * HOUR;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_channel_limit_defers_or_moves_on_as_the_policy_says() {
    let hooks = Receiver::start().await;
    let cfg = TestConfig::new(
        "limits",
        &hooks.url,
        "[limits]\nper_channel = { sms = \"1/1d\" }\n",
        DELIVERY_DELAY,
    );
    cfg.write("policies/sms_only.toml", "[[steps]]\nchannel = \"sms\"\n");
    cfg.write("policies/vk_only.toml", "[[steps]]\nchannel = \"vk\"\n");
    cfg.write(
        "policies/sms_or_vk.toml",
        "[[steps]]\nchannel = [\"sms\", \"vk\"]\non_limit = \"next\"\n",
    );
    cfg.write(
        "policies/sms_then_vk.toml",
        "on_limit = \"next\"\n\n[[steps]]\nchannel = \"sms\"\nwait = \"30m\"\n\n[[steps]]\nchannel = \"vk\"\n",
    );
    let run = Running::start(cfg).await;
    let publish = async |suffix: &str, customer: &str, policy: &str| {
        let id = run.id(suffix);
        run.publish(&note(&id, customer, policy, json!({}))).await;
        id
    };

    let first = publish("first", "a", "sms_only").await;
    let sent = run.wait_entries(&first, "sent", 1).await[0].at_ms;

    // The customer's one SMS a day is taken: the default waits for it.
    let deferred = publish("deferred", "a", "sms_only").await;
    let entry = run.wait_entry(&deferred, "deferred", Some(0)).await;
    assert_eq!(entry.reason.as_deref(), Some("limit"));
    let until = entry.until_ms.expect("a deferral says until when");
    assert!(
        (until - (sent + DAY)).abs() < MIN,
        "deferred until a day after the first SMS, not {} min after it",
        (until - sent) / MIN
    );

    // `on_limit = "next"` on a step: its next alternative at once.
    let alternative = publish("alternative", "a", "sms_or_vk").await;
    run.wait_outcome(&alternative, "exhausted").await;
    let skipped = run.entries(&alternative, "skipped").await;
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(
        (skipped[0].channel.as_deref(), skipped[0].reason.as_deref()),
        (Some("sms"), Some("limit"))
    );
    // On a policy: its next step at once, without the 30-minute wait.
    let next_step = publish("next-step", "a", "sms_then_vk").await;
    run.wait_outcome(&next_step, "exhausted").await;
    assert_eq!(
        run.events(&next_step).await,
        ["accepted", "skipped", "escalated", "sent", "exhausted"]
    );

    // The SMS limit leaves VK alone, and other customers.
    let vk = publish("vk", "a", "vk_only").await;
    run.wait_outcome(&vk, "exhausted").await;
    let other = publish("other", "b", "sms_only").await;
    run.wait_outcome(&other, "exhausted").await;

    settle().await;
    assert_eq!(hooks.ids("sms"), [first.as_str(), other.as_str()]);
    let mut vk_ids = hooks.ids("vk");
    vk_ids.sort();
    let mut want = vec![alternative, next_step, vk];
    want.sort();
    assert_eq!(vk_ids, want);
    assert_eq!(run.outcome(&deferred).await, None);

    // A day later the deferred SMS goes out.
    run.clock.advance(DAY + MIN);
    run.wait_outcome(&deferred, "exhausted").await;
    assert_eq!(hooks.ids("sms").last(), Some(&deferred));
}
