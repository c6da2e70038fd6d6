//! The daemon end to end, against the real RabbitMQ and Redis of this machine.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use redis::AsyncCommands;

use cascade::runtime::clock::SystemClock;
use cascade::runtime::daemon::{Daemon, DaemonOptions};
use cascade::runtime::intake::IntakeConfig;
use cascade::runtime::store::CascadeStore;

const MIN: i64 = 60_000;

async fn start(cfg: &TestConfig, clock: Arc<SystemClock>) -> Daemon {
    require_services().await;
    let options = DaemonOptions {
        clock,
        ..Default::default()
    };
    Daemon::start(cfg.catalog(), options)
        .await
        .expect("daemon starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_stops_the_cascade_and_no_receipt_escalates() {
    let (url, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("e2e", &url, "", DELIVERY_DELAY);
    let clock = Arc::new(SystemClock::default());
    let daemon = start(&cfg, clock.clone()).await;
    let catalog = cfg.catalog();
    let config = IntakeConfig::from(&catalog.settings.amqp);

    let read_id = format!("{}-read", cfg.name);
    let unread_id = format!("{}-unread", cfg.name);
    publish_to(&config, &notification(&read_id, "c-1")).await;
    publish_to(&config, &notification(&unread_id, "c-2")).await;

    wait_until(
        "step 1 of both on the VK-like webhook",
        Duration::from_secs(10),
        async || received.count("vk") == 2,
    )
    .await;
    let first = received.on("vk");
    assert!(
        first
            .iter()
            .any(|b| b["notification_id"] == read_id.as_str()
                && b["step"] == 1
                && b["contact"] == "123456")
    );

    // The provider answered; wait until both sends are committed, so the
    // wait is counted from before the clock moves.
    let store = daemon.store.clone();
    for id in [&read_id, &unread_id] {
        wait_until("the send is recorded", Duration::from_secs(10), async || {
            matches!(store.status(id).await.unwrap(), Some((_, t)) if t.iter().any(|e| e.event.as_str() == "sent"))
        })
        .await;
    }

    // Any system may write a stopping receipt straight into Redis (contract §6).
    let mut r = redis().await;
    let receipts = format!("{}:{{{read_id}}}:receipts", cfg.name);
    let _: () = r
        .hset(&receipts, "read", clock.now_ms_for_tests())
        .await
        .unwrap();

    // Half an hour later (virtual): the unread one escalates to SMS, the read one completes.
    clock.advance(31 * MIN);
    wait_until(
        "the SMS for the unread notification",
        Duration::from_secs(10),
        async || received.count("sms") == 1,
    )
    .await;
    let sms = received.on("sms");
    assert_eq!(sms[0]["notification_id"], unread_id.as_str());
    assert_eq!(sms[0]["step"], 2);

    wait_until("the read cascade completes", Duration::from_secs(10), async || {
        matches!(store.status(&read_id).await.unwrap(), Some((c, _)) if c.outcome().map(|o| o.word()) == Some("completed"))
    })
    .await;
    let (unread, timeline) = store.status(&unread_id).await.unwrap().unwrap();
    assert_eq!(unread.outcome().map(|o| o.word()), Some("exhausted"));
    let words: Vec<&str> = timeline.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        words,
        ["accepted", "sent", "escalated", "sent", "exhausted"]
    );
    // Nothing more went out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((received.count("vk"), received.count("sms")), (2, 1));

    daemon.stop(Duration::from_secs(5)).await;
    clean_redis(&cfg.name).await;
    clean_queues(&cfg.name).await;
}

trait NowForTests {
    fn now_ms_for_tests(&self) -> i64;
}

impl NowForTests for SystemClock {
    fn now_ms_for_tests(&self) -> i64 {
        use cascade::runtime::clock::Clock;
        self.now_ms()
    }
}

/// An instance claimed the due SMS step and died before storing anything:
/// once its lease runs out, the daemon takes the cascade over and, since the
/// SMS may already have gone out, counts it uncertain (`on_uncertain`)
/// rather than sending it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_lapses_makes_its_send_uncertain_and_sends_nothing_twice() {
    use cascade::runtime::clock::Clock;
    use cascade::runtime::keys::shard_of;
    let (url, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("lapsed", &url, "", DELIVERY_DELAY);
    cfg.write(
        "channels/sms.toml",
        &format!(
            "kind = \"webhook\"\ncontact = \"sms\"\nurl = \"{url}/sms\"\ntimeout = \"2s\"\non_uncertain = \"skip\"\n"
        ),
    );
    let run = Running::start(cfg).await;
    let id = run.id("n");
    run.publish_bytes(&notification(&id, "c-1")).await;
    run.wait_entries(&id, "sent", 1).await;

    // The other instance: claims the wake-up 31 minutes on, then is gone.
    let at = run.clock.now_ms() + 31 * MIN;
    let lease_ms = 30_000;
    let claimed = run
        .daemon()
        .store
        .claim(shard_of(&id, 4), at, lease_ms, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].lapsed_claim_at_ms, None);

    // Its lease holds: the daemon leaves the cascade alone meanwhile.
    run.clock.advance(31 * MIN);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(received.count("sms"), 0);
    assert_eq!(
        run.events(&id).await.last().map(String::as_str),
        Some("sent")
    );

    run.clock.advance(lease_ms + 1_000);
    run.wait_outcome(&id, "exhausted").await;
    assert_eq!(
        received.count("sms"),
        0,
        "the SMS the dead instance may have sent goes out no second time"
    );
    let uncertain = run.entries(&id, "uncertain").await;
    assert_eq!(uncertain.len(), 1);
    assert_eq!(uncertain[0].step, Some(1));
    assert!(
        uncertain[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("claim ran out")),
        "{uncertain:?}"
    );
}

/// Two daemons in one process (as in these tests) keep their own metrics:
/// what one counts never shows on the other's `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_in_one_process_count_apart() {
    let (url, _received) = fake_receiver(vec![]).await;
    let one = Running::start(TestConfig::new("metrics-one", &url, "", DELIVERY_DELAY)).await;
    let two = Running::start(TestConfig::new("metrics-two", &url, "", DELIVERY_DELAY)).await;
    let refused = [("route", "v1")];

    let http = reqwest::Client::new();
    for _ in 0..3 {
        let answer = http
            .post(one.url("/v1/receipts"))
            .bearer_auth("not-the-token-of-this-daemon")
            .json(&serde_json::json!({"id": "x", "event": "read"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401);
    }
    assert_eq!(one.metric("cascade_http_rejected_total", &refused).await, 3);
    assert_eq!(two.metric("cascade_http_rejected_total", &refused).await, 0);
}

/// The scheduler sleeps until the next cascade it knows is due, not until
/// its next idle poll: with polls 5 s apart, a step due 1 s after the
/// first send still goes out about 1 s after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_goes_out_when_due_not_at_the_next_poll() {
    let (url, received) = fake_receiver(vec![]).await;
    let policy = "stop_on = [\"read\"]\n\n[[steps]]\nchannel = \"vk\"\nwait = \"1s\"\n\n[[steps]]\nchannel = \"sms\"\n";
    let cfg = TestConfig::new("on-time", &url, "", policy);
    let id = format!("{}-n", cfg.name);
    let r = Running::start_opts(cfg, |o| {
        o.scheduler.idle_poll = Duration::from_secs(5);
    })
    .await;
    r.publish_bytes(&notification(&id, "c-1")).await;
    wait_until("the first send", AT_ONCE, async || {
        received.count("vk") == 1
    })
    .await;
    let first = std::time::Instant::now();
    wait_until("the escalation", Duration::from_secs(8), async || {
        received.count("sms") == 1
    })
    .await;
    let after = first.elapsed();
    assert!(
        after >= Duration::from_millis(850) && after < Duration::from_millis(2500),
        "the SMS came {after:?} after the first send"
    );
}
