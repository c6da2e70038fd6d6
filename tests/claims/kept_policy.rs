//! "A cascade keeps the policy it started with; edits apply to new
//! notifications" — across a policy edit picked up by the running daemon.

use cascade::core::Phase;
use serde_json::json;

use crate::common::{DELIVERY_DELAY, Running, TestConfig, settle};
use crate::support::{HOUR, MIN, Receiver, note, phase, webhook};

/// The edit: a longer first wait, and `push` instead of SMS after it.
const EDITED: &str = "stop_on = [\"read\"]\nexpire_after = \"12h\"\n\n[[steps]]\nchannel = \"vk\"\nwait = \"2h\"\n\n[[steps]]\nchannel = \"push\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_cascade_keeps_its_policy_across_an_edit_and_a_reload() {
    let hooks = Receiver::start().await;
    let cfg = TestConfig::new("kept", &hooks.url, "", DELIVERY_DELAY);
    cfg.write("channels/push.toml", &webhook(&hooks.url, "push", ""));
    let path = cfg.path();
    let run = Running::start_opts(cfg, |o| o.config_path = Some(path)).await;

    let old = run.id("old");
    run.publish(&note(&old, "c-1", "delivery_delay", json!({})))
        .await;
    run.wait_entries(&old, "sent", 1).await;

    // Rewritten until live: the watcher may miss a write made right after
    // the daemon started.
    run.edit_until("policies/delivery_delay.toml", EDITED, |c| {
        c.policies["delivery_delay"].steps[1].channels == ["push"]
    })
    .await;
    let new = run.id("new");
    run.publish(&note(&new, "c-2", "delivery_delay", json!({})))
        .await;
    let sent = run.wait_entries(&new, "sent", 1).await[0].at_ms;

    // Half an hour on: the old cascade escalates to SMS by its own policy;
    // the new one waits its two hours.
    run.clock.advance(31 * MIN);
    run.wait_outcome(&old, "exhausted").await;
    assert_eq!(hooks.ids("sms"), [old.as_str()]);
    match phase(&run, &new).await {
        Some(Phase::Waiting { until_ms, .. }) => assert_eq!(until_ms, sent + 2 * HOUR),
        other => panic!("the new cascade waits two hours after its send: {other:?}"),
    }

    // Two hours on: the new one escalates to `push`, never to SMS.
    run.clock.advance(2 * HOUR);
    run.wait_outcome(&new, "exhausted").await;
    assert_eq!(hooks.ids("push"), [new.as_str()]);
    settle().await;
    assert_eq!(hooks.ids("sms"), [old], "no SMS for the new cascade");
    assert_eq!(hooks.count("push"), 1, "no push for the old cascade");
}
