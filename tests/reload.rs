//! Hot reload: a valid change applies to new notifications; a broken one is
//! refused as a whole and the last good set stays.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_reload_on_change_and_bad_changes_are_refused() {
    let logs = logs("warn");
    let (url, _received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("reload", &url, "", DELIVERY_DELAY);
    let path = cfg.path();
    let mut run = Running::start_opts(cfg, |o| o.config_path = Some(path)).await;
    let wait_of = |c: &cascade::config::Catalog| c.policies["delivery_delay"].steps[0].wait_ms;
    assert_eq!(wait_of(&run.daemon().catalog.load()), Some(30 * 60_000));

    // Rewritten until live: the file watcher starts in the background.
    let policy = "policies/delivery_delay.toml";
    run.edit_until(policy, &DELIVERY_DELAY.replace("30m", "45m"), |c| {
        wait_of(c) == Some(45 * 60_000)
    })
    .await;

    // A broken edit: refused whole, the 45-minute policy stays.
    run.cfg.write(
        policy,
        &DELIVERY_DELAY.replace("45m", "soon").replace("30m", "soon"),
    );
    run.cfg
        .write("policies/extra.toml", "[[steps]]\nchannel = \"vk\"\n");
    logs.wait_line(&[
        "configuration change refused",
        &run.cfg.dir.join(policy).display().to_string(),
    ])
    .await;
    // Any reload the two writes still cause has its chance to apply.
    settle().await;
    assert_eq!(wait_of(&run.daemon().catalog.load()), Some(45 * 60_000));
    assert!(!run.daemon().catalog.load().policies.contains_key("extra"));
    let page = run.metrics().await;
    assert!(
        metric_sum(&page, "cascade_reload_failures_total", &[]) >= 1,
        "{page}"
    );
    assert_eq!(
        metric_sum(&page, "cascade_config_last_reload_successful", &[]),
        0
    );

    // Fixed again: both changes apply together.
    run.cfg.write(policy, &DELIVERY_DELAY.replace("30m", "50m"));
    wait_until(
        "the fixed set is live",
        Duration::from_secs(10),
        async || {
            let c = run.daemon().catalog.load();
            wait_of(&c) == Some(50 * 60_000) && c.policies.contains_key("extra")
        },
    )
    .await;
    assert_eq!(
        run.metric("cascade_config_last_reload_successful", &[])
            .await,
        1
    );
    run.stop().await;
}
