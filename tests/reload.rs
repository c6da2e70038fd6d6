//! Hot reload: a valid change applies to new notifications; a broken one is
//! refused as a whole and the last good set stays.

mod common;

use std::time::Duration;

use cascade::runtime::daemon::{Daemon, DaemonOptions};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_reload_on_change_and_bad_changes_are_refused() {
    let (url, _received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("reload", &url, "", DELIVERY_DELAY);
    let options = DaemonOptions {
        config_path: Some(cfg.path()),
        ..Default::default()
    };
    let daemon = Daemon::start(cfg.catalog(), options).await.unwrap();
    let wait_of = |d: &Daemon| d.catalog.load().policies["delivery_delay"].steps[0].wait_ms;
    assert_eq!(wait_of(&daemon), Some(30 * 60_000));

    // The file watcher starts asynchronously: give it a moment, then edit.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let policy = cfg.dir.join("policies/delivery_delay.toml");
    std::fs::write(&policy, DELIVERY_DELAY.replace("30m", "45m")).unwrap();
    wait_until(
        "the edited policy is live",
        Duration::from_secs(10),
        async || wait_of(&daemon) == Some(45 * 60_000),
    )
    .await;

    // A broken edit: refused whole, the 45-minute policy stays.
    std::fs::write(
        &policy,
        DELIVERY_DELAY.replace("45m", "soon").replace("30m", "soon"),
    )
    .unwrap();
    std::fs::write(
        cfg.dir.join("policies/extra.toml"),
        "[[steps]]\nchannel = \"vk\"\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(wait_of(&daemon), Some(45 * 60_000));
    assert!(!daemon.catalog.load().policies.contains_key("extra"));

    // Fixed again: both changes apply together.
    std::fs::write(&policy, DELIVERY_DELAY.replace("30m", "50m")).unwrap();
    wait_until(
        "the fixed set is live",
        Duration::from_secs(10),
        async || {
            wait_of(&daemon) == Some(50 * 60_000)
                && daemon.catalog.load().policies.contains_key("extra")
        },
    )
    .await;

    daemon.stop(Duration::from_secs(5)).await;
    clean_redis(&cfg.name).await;
    clean_queues(&cfg.name).await;
}
