//! Reload: `channels/` and the limits of `cascade.toml` reload on file
//! change, a channel secret read from a file on SIGHUP; a set that does not
//! validate is refused whole and the last good one keeps serving — seen by
//! the notifications that follow, once the daemon has logged the refusal.

use std::time::{Duration, Instant};

use cascade::runtime::intake::IntakeConfig;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::common::{
    AT_ONCE, ChildDaemon, CleanUp, DELIVERY_DELAY, Running, TestConfig, publish_to, settle, unique,
};
use crate::support::{Receiver, Removed, logs, note, webhook};

/// Starts the daemon watching its configuration, as `cascade run` does.
async fn start_watching(cfg: TestConfig) -> Running {
    let path = cfg.path();
    Running::start_opts(cfg, |o| o.config_path = Some(path)).await
}

/// Waits until the daemon has refused the configuration, naming `relative`.
async fn refused(run: &Running, relative: &str) {
    let file = run.cfg.dir.join(relative);
    logs()
        .wait_line(&["configuration change refused", &file.display().to_string()])
        .await;
}

fn url_of(catalog: &cascade::config::Catalog, channel: &str) -> String {
    catalog.channels[channel]
        .settings
        .as_webhook()
        .map(|w| w.url.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_edit_applies_and_a_broken_one_leaves_the_old_channel_serving() {
    logs();
    let hooks = Receiver::start().await;
    let cfg = TestConfig::new("reload-channel", &hooks.url, "", DELIVERY_DELAY);
    let run = start_watching(cfg).await;
    let send = async |suffix: &str| {
        let id = run.id(suffix);
        run.publish(&note(
            &id,
            &format!("c-{suffix}"),
            "delivery_delay",
            json!({}),
        ))
        .await;
        run.wait_entries(&id, "sent", 1).await;
        id
    };

    let first = send("1").await;
    assert_eq!(hooks.ids("vk"), [first]);

    let moved = webhook(&hooks.url, "vk2", "contact = \"vk\"");
    run.edit_until("channels/vk.toml", &moved, |c| {
        url_of(c, "vk").ends_with("/vk2")
    })
    .await;
    let second = send("2").await;
    assert_eq!(hooks.ids("vk2"), [second.as_str()]);

    // Broken: a timeout that is no duration, next to a new URL.
    let broken = webhook(&hooks.url, "vk3", "contact = \"vk\"").replace("\"2s\"", "\"soon\"");
    run.cfg.write("channels/vk.toml", &broken);
    refused(&run, "channels/vk.toml").await;
    let third = send("3").await;
    assert_eq!(hooks.ids("vk2"), [second, third]);

    let fixed = webhook(&hooks.url, "vk3", "contact = \"vk\"");
    run.edit_until("channels/vk.toml", &fixed, |c| {
        url_of(c, "vk").ends_with("/vk3")
    })
    .await;
    let fourth = send("4").await;
    assert_eq!(hooks.ids("vk3"), [fourth]);
    assert_eq!(hooks.count("vk"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_of_cascade_toml_reload_and_a_broken_edit_keeps_the_old_limits() {
    logs();
    let hooks = Receiver::start().await;
    let cfg = TestConfig::new("reload-limits", &hooks.url, "", DELIVERY_DELAY);
    let settings = std::fs::read_to_string(cfg.path()).unwrap();
    let run = start_watching(cfg).await;
    let publish = async |suffix: &str, customer: &str| {
        let id = run.id(suffix);
        run.publish(&note(&id, customer, "delivery_delay", json!({})))
            .await;
        id
    };

    // No limit yet: two for one customer both go out.
    for suffix in ["a1", "a2"] {
        let id = publish(suffix, "a").await;
        run.wait_entries(&id, "sent", 1).await;
    }

    let limited = format!("{settings}\n[limits]\nper_customer = \"1/1h\"\n");
    run.edit_until("cascade.toml", &limited, |c| {
        c.policies["delivery_delay"].limits.per_customer.is_some()
    })
    .await;
    let b1 = publish("b1", "b").await;
    run.wait_entries(&b1, "sent", 1).await;
    let b2 = publish("b2", "b").await;
    let deferred = run.wait_entry(&b2, "deferred", Some(0)).await;
    assert_eq!(deferred.reason.as_deref(), Some("limit"));

    // Broken: the limit lifted, next to quiet hours that cannot be.
    let broken = format!(
        "{settings}\n[limits]\nper_customer = \"100/1h\"\n\n[quiet_hours]\nsms = \"25:00-26:00\"\n"
    );
    run.cfg.write("cascade.toml", &broken);
    refused(&run, "cascade.toml").await;
    let b3 = publish("b3", "b").await;
    let deferred = run.wait_entry(&b3, "deferred", Some(0)).await;
    assert_eq!(deferred.reason.as_deref(), Some("limit"));
    settle().await;
    assert_eq!(hooks.ids("vk").len(), 3, "a1, a2 and b1 only");
    assert!(!hooks.ids("vk").contains(&b3));
}

fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// The signature header on real requests, and a secret rotated by changing
/// its file (outside the watched folders) and sending SIGHUP to `cascade
/// run` (a child process: a SIGHUP to this test binary would reload the
/// daemons of the other tests too, hiding a watcher that missed a change).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_rotated_signing_secret_and_every_post_is_signed() {
    const OLD: &str = "old-signing-secret-0123456789abcdef";
    const NEW: &str = "new-signing-secret-fedcba9876543210";
    let hooks = Receiver::start().await;
    let cfg = TestConfig::new("reload-hup", &hooks.url, "", DELIVERY_DELAY);
    let _clean = CleanUp(cfg.name.clone());
    // Outside the watched folders: only SIGHUP reloads it.
    let secrets = Removed(std::env::temp_dir().join(format!("{}-secrets", cfg.name)));
    std::fs::create_dir_all(&secrets.0).unwrap();
    let secret_file = secrets.0.join("vk_secret");
    std::fs::write(&secret_file, format!("{OLD}\n")).unwrap();
    cfg.write(
        "channels/vk.toml",
        &webhook(
            &hooks.url,
            "vk",
            &format!(
                "contact = \"vk\"\nsecret_file = \"{}\"",
                secret_file.display()
            ),
        ),
    );
    let intake = IntakeConfig::from(&cfg.catalog().settings.amqp);
    let log = std::env::temp_dir().join(format!("{}.log", unique("reload-hup")));
    let mut child = ChildDaemon::spawn(&cfg.path(), &log);
    let mut sent = 0;
    let mut send = async |child: &mut ChildDaemon| {
        sent += 1;
        let id = format!("{}-{sent}", cfg.name);
        let body = note(&id, &format!("c-{sent}"), "delivery_delay", json!({}));
        publish_to(&intake, body.to_string().as_bytes()).await;
        child
            .wait_alive_until("the POST", Duration::from_secs(15), async || {
                hooks.count("vk") == sent
            })
            .await;
        let hook = hooks.hooks("vk").pop().unwrap();
        assert_eq!(hook.notification_id(), id);
        let signed = hook.headers.get("x-cascade-signature-256").cloned();
        let signed = signed.expect("every POST is signed");
        if signed == signature(OLD, &hook.body).as_str() {
            OLD
        } else {
            assert_eq!(signed, signature(NEW, &hook.body).as_str());
            NEW
        }
    };

    assert_eq!(send(&mut child).await, OLD);
    std::fs::write(&secret_file, format!("{NEW}\n")).unwrap();
    let start = Instant::now();
    loop {
        child.signal("HUP");
        tokio::time::sleep(Duration::from_millis(300)).await;
        if send(&mut child).await == NEW {
            break;
        }
        assert!(
            start.elapsed() < AT_ONCE,
            "SIGHUP did not reload the secret"
        );
    }
    let _ = std::fs::remove_file(&log);
}
