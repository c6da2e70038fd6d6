//! Quiet hours, applied by the running daemon in the customer's time zone:
//! the global ones of `cascade.toml`, and a policy's own, which replace
//! them per channel or lift them with `"off"`.

use serde_json::json;

use crate::common::{DELIVERY_DELAY, Running, TestConfig, settle};
use crate::support::{HOUR, MIN, Receiver, advance_to_local, note};

/// Ten hours ahead of UTC all year, seven ahead of the default zone (Moscow).
const ZONE: &str = "Asia/Vladivostok";

const GLOBAL: &str = "[quiet_hours]\nsms = \"21:00-09:00\"\n";

async fn start(name: &str) -> (Running, Receiver) {
    let hooks = Receiver::start().await;
    let cfg = TestConfig::new(name, &hooks.url, GLOBAL, DELIVERY_DELAY);
    cfg.write("policies/sms_only.toml", "[[steps]]\nchannel = \"sms\"\n");
    cfg.write(
        "policies/sms_anytime.toml",
        "[quiet_hours]\nsms = \"off\"\n\n[[steps]]\nchannel = \"sms\"\n",
    );
    cfg.write(
        "policies/sms_late.toml",
        "[quiet_hours]\nsms = \"23:30-07:00\"\n\n[[steps]]\nchannel = \"sms\"\n",
    );
    cfg.write(
        "policies/vk_evening.toml",
        "[quiet_hours]\nvk = \"20:00-23:00\"\n\n[[steps]]\nchannel = \"vk\"\n",
    );
    (Running::start(cfg).await, hooks)
}

fn in_zone(id: &str, policy: &str) -> serde_json::Value {
    note(
        id,
        "c-1",
        policy,
        json!({ "customer": { "timezone": ZONE } }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_quiet_hours_hold_an_sms_until_the_customers_morning() {
    let (run, hooks) = start("quiet-global").await;
    let evening = advance_to_local(&run.clock, ZONE, 22, 0);

    let night = run.id("night");
    run.publish(&in_zone(&night, "sms_only")).await;
    // The same moment is 15:00 in Moscow, the zone of a customer who names none.
    let afternoon = run.id("afternoon");
    run.publish(&note(&afternoon, "c-2", "sms_only", json!({})))
        .await;

    let deferred = run.wait_entry(&night, "deferred", Some(0)).await;
    assert_eq!(deferred.reason.as_deref(), Some("quiet_hours"));
    assert_eq!(
        deferred.until_ms,
        Some(evening + 11 * HOUR),
        "until 09:00 the next morning, Vladivostok time"
    );
    hooks.wait_count("sms", 1).await;
    run.wait_outcome(&afternoon, "exhausted").await;
    settle().await;
    assert_eq!(hooks.ids("sms"), [afternoon.as_str()], "no SMS at night");

    run.clock.advance(11 * HOUR + MIN);
    hooks.wait_count("sms", 2).await;
    run.wait_outcome(&night, "exhausted").await;
    assert_eq!(hooks.ids("sms"), [afternoon, night]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_replaces_or_lifts_the_global_quiet_hours() {
    let (run, hooks) = start("quiet-policy").await;
    let evening = advance_to_local(&run.clock, ZONE, 22, 0);

    let off = run.id("off");
    let late = run.id("late");
    let global = run.id("global");
    let vk = run.id("vk");
    run.publish(&in_zone(&off, "sms_anytime")).await;
    run.publish(&in_zone(&late, "sms_late")).await;
    run.publish(&in_zone(&global, "sms_only")).await;
    run.publish(&in_zone(&vk, "vk_evening")).await;

    // `sms = "off"` lifts the global range; `23:30-07:00` replaces it.
    run.wait_outcome(&off, "exhausted").await;
    run.wait_outcome(&late, "exhausted").await;
    // The global range still holds for the policy without an override, and
    // a policy's own range applies to a channel the global ones leave alone.
    let held = run.wait_entry(&global, "deferred", Some(0)).await;
    assert_eq!(held.until_ms, Some(evening + 11 * HOUR));
    let held = run.wait_entry(&vk, "deferred", Some(0)).await;
    assert_eq!(held.reason.as_deref(), Some("quiet_hours"));
    assert_eq!(held.until_ms, Some(evening + HOUR), "until 23:00");
    settle().await;
    let mut sms = hooks.ids("sms");
    sms.sort();
    let mut want = vec![late.clone(), off.clone()];
    want.sort();
    assert_eq!(sms, want);
    assert_eq!(hooks.count("vk"), 0);

    run.clock.advance(HOUR + MIN);
    hooks.wait_count("vk", 1).await;
    run.wait_outcome(&vk, "exhausted").await;
    assert_eq!(run.outcome(&global).await, None, "still waiting for 09:00");
    assert_eq!(hooks.count("sms"), 2);
}

/// A range set for a channel kind in `cascade.toml` is lifted for one
/// channel of that kind by a policy's `<channel> = "off"`: the channel's own
/// key wins over its kind's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_for_one_channel_lifts_the_range_of_its_kind() {
    let hooks = Receiver::start().await;
    let cfg = TestConfig::new("quiet-kind", &hooks.url, GLOBAL, DELIVERY_DELAY);
    // An SMS gateway of kind `sms`, which the global `sms` range covers.
    cfg.write(
        "channels/texts.toml",
        &format!(
            "kind = \"sms\"\nprovider = \"generic\"\nurl = \"{}/texts\"\ntimeout = \"2s\"\n",
            hooks.url
        ),
    );
    cfg.write("policies/texts.toml", "[[steps]]\nchannel = \"texts\"\n");
    cfg.write(
        "policies/texts_anytime.toml",
        "[quiet_hours]\ntexts = \"off\"\n\n[[steps]]\nchannel = \"texts\"\n",
    );
    let run = Running::start(cfg).await;
    let evening = advance_to_local(&run.clock, ZONE, 22, 0);

    let held = run.id("held");
    let lifted = run.id("lifted");
    run.publish(&in_zone(&held, "texts")).await;
    run.publish(&in_zone(&lifted, "texts_anytime")).await;
    let deferred = run.wait_entry(&held, "deferred", Some(0)).await;
    assert_eq!(deferred.until_ms, Some(evening + 11 * HOUR));
    run.wait_outcome(&lifted, "exhausted").await;
    assert_eq!(hooks.count("texts"), 1);
}
