//! contract §9 against the real services of this machine: no accepted notification
//! is lost and no step is sent twice when a daemon is killed (`kill -9`), when
//! two daemons share one queue and one Redis, when RabbitMQ drops every
//! connection, and when Redis restarts.
//!
//! "Sent twice" is judged the way a webhook receiver sees it: every POST
//! carries `Idempotency-Key: <notification id>:<step>`. Every key must arrive,
//! on the right channel; a key that arrives again is a resend of an uncertain
//! send (counted and printed), and the cascade's timeline must say so.
//!
//! The tests run one at a time: the RabbitMQ test closes every connection on
//! the broker, and all of them measure something on a small machine.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;

use cascade::runtime::daemon::{Daemon, DaemonOptions};

/// One test at a time (see the module comment).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// VK (a webhook) first; SMS (a webhook) if unread after two seconds.
const TWO_STEPS: &str = "stop_on = [\"read\"]\n\n[[steps]]\nchannel = \"vk\"\nwait = \"2s\"\n\n[[steps]]\nchannel = \"sms\"\n";

/// A send with no outcome after 3 s counts as interrupted, and a claim is
/// taken over after 10 s, so a crash is recovered from in seconds rather
/// than the defaults' two minutes and 30 s. (The channels' 2 s timeout
/// still fits in the lease with 5 s to spare: sends go out on the lease.)
const FAST_RECOVERY: &str = "[defaults]\nin_flight_timeout = \"3s\"\nclaim_lease = \"10s\"\n";

/// `n` notification ids under a test's name.
fn ids(name: &str, tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{name}-{tag}{i}")).collect()
}

/// Each notification to a customer of its own, so no limit is shared.
fn bodies(ids: &[String]) -> impl Iterator<Item = Vec<u8>> + '_ {
    ids.iter().map(|id| notification(id, &format!("c-{id}")))
}

async fn start(cfg: &TestConfig) -> Daemon {
    let options = DaemonOptions {
        listen: Some("127.0.0.1:0".into()),
        ..Default::default()
    };
    Daemon::start(cfg.catalog(), options)
        .await
        .expect("daemon starts")
}

async fn ready(http: &reqwest::Client, addr: SocketAddr) -> bool {
    http.get(format!("http://{addr}/readyz"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
}

/// Polls `/readyz` every 20 ms for `timeout`: the first moment it was not
/// 200, and the first moment it was 200 again after that (since `t0`).
async fn watch_readiness(
    http: &reqwest::Client,
    addr: SocketAddr,
    t0: Instant,
    timeout: Duration,
) -> (Option<Duration>, Option<Duration>) {
    let mut down = None;
    while t0.elapsed() < timeout {
        let ok = ready(http, addr).await;
        match (ok, down) {
            (false, None) => down = Some(t0.elapsed()),
            (true, Some(_)) => return (down, Some(t0.elapsed())),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (down, None)
}

/// Publishes, retrying the whole batch if the broker drops the connection
/// meanwhile (ids make a repeat harmless: it is counted as a duplicate).
async fn publish_robustly(
    config: &cascade::runtime::intake::IntakeConfig,
    ids: &[String],
) -> usize {
    let mut last = None;
    for _ in 0..10 {
        match publish_many(config, bodies(ids)).await {
            Ok(n) => return n,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("cannot publish: {last:?}");
}

/// Waits until every cascade of `ids` has finished (read from Redis).
async fn wait_all_finished(
    conn: &mut cascade::runtime::store::RedisConn,
    prefix: &str,
    ids: &[String],
    timeout: Duration,
) -> Vec<Stored> {
    wait_until("every cascade is finished in Redis", timeout, async || {
        read_cascades(conn, prefix, ids)
            .await
            .iter()
            .all(|s| s.outcome().is_some())
    })
    .await;
    read_cascades(conn, prefix, ids).await
}

/// The two-step guarantee for `ids` (with both steps due): every
/// (id, step) key arrived, on its step's channel; nothing arrived for ids
/// nobody published (`others` are published but checked by the caller);
/// every repeated key is explained by the timeline as a resend after an
/// interrupted or unanswered send; each cascade is `exhausted` with exactly
/// one `sent` per step. Returns the number of same-key resends.
fn assert_each_step_once(
    deliveries: &Deliveries,
    ids: &[String],
    others: &[String],
    stored: &[Stored],
) -> usize {
    let got = deliveries.snapshot();
    let keys = |ids: &[String]| -> HashSet<String> {
        ids.iter()
            .flat_map(|id| [format!("{id}:0"), format!("{id}:1")])
            .collect()
    };
    let expected = keys(ids);
    let others = keys(others);
    let unexpected: Vec<&String> = got
        .keys()
        .filter(|k| !expected.contains(*k) && !others.contains(*k))
        .collect();
    assert!(
        unexpected.is_empty(),
        "keys nobody published: {:?}",
        &unexpected[..unexpected.len().min(5)]
    );
    let missing: Vec<&String> = expected.iter().filter(|k| !got.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "{} steps never sent (lost), e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let mut resends = 0;
    for (id, s) in ids.iter().zip(stored) {
        assert_eq!(
            s.outcome(),
            Some("exhausted"),
            "{id}: {:?}",
            s.timeline
                .iter()
                .map(|e| e.event.as_str())
                .collect::<Vec<_>>()
        );
        for (step, path) in [(0u8, "vk"), (1, "sms")] {
            let key = format!("{id}:{step}");
            let posts = &got[&key];
            assert!(
                posts.iter().all(|p| p.path == path),
                "{key} went to {posts:?}, not only to {path}"
            );
            assert_eq!(
                s.entries("sent", step).len(),
                1,
                "{id} step {step}: the timeline must record exactly one send: {:?}",
                s.timeline
            );
            let repeats = posts.len() - 1;
            if repeats > 0 {
                // contract §9: where a crash leaves a send uncertain, the timeline says so.
                let explained = s
                    .entries("send_failed", step)
                    .iter()
                    .chain(s.entries("uncertain", step).iter())
                    .filter(|e| {
                        e.reason.as_deref().is_some_and(|r| {
                            r.starts_with("interrupted") || r.starts_with("no answer")
                        })
                    })
                    .count();
                assert!(
                    explained >= repeats,
                    "{key} arrived {} times but the timeline explains {explained} resends: {:?}",
                    posts.len(),
                    s.timeline
                );
                resends += repeats;
            }
        }
    }
    resends
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_nothing_and_repeats_a_step_only_under_its_key_across_a_kill() {
    const N: usize = 3000;
    let _serial = SERIAL.lock().await;
    let (url, deliveries) = keyed_receiver().await;
    let cfg = TestConfig::new("crash", &url, FAST_RECOVERY, TWO_STEPS);
    let _clean = CleanUp(cfg.name.clone());
    let config = intake_config_of(&cfg.catalog());
    let ids = ids(&cfg.name, "n", N);
    let published = Instant::now();
    assert_eq!(publish_many(&config, bodies(&ids)).await.unwrap(), N);
    let publish_s = published.elapsed().as_secs_f64();

    let log = std::env::temp_dir().join(format!("{}-daemon.log", cfg.name));
    let started = Instant::now();
    let mut daemon = ChildDaemon::spawn(&cfg.path(), &log);
    // The first kill comes while intake is still taking the queue in.
    wait_until(
        "a third of the first steps",
        Duration::from_secs(60),
        async || deliveries.distinct_on("vk") >= N / 3,
    )
    .await;
    assert!(daemon.running(), "the daemon died by itself; see {log:?}");
    daemon.kill();
    let mut kills = vec![Instant::now()];
    let first_kill = (
        started.elapsed(),
        deliveries.distinct_on("vk"),
        deliveries.distinct_on("sms"),
    );
    let mut daemon = ChildDaemon::spawn(&cfg.path(), &log);
    // The second once a tenth of the cascades have sent their second step:
    // first and second steps are both in flight then.
    wait_until(
        "a tenth of the second steps",
        Duration::from_secs(60),
        async || deliveries.distinct_on("sms") >= N / 10,
    )
    .await;
    assert!(daemon.running(), "the daemon died by itself; see {log:?}");
    daemon.kill();
    kills.push(Instant::now());
    let second_kill = (
        started.elapsed(),
        deliveries.distinct_on("vk"),
        deliveries.distinct_on("sms"),
    );
    assert!(
        second_kill.2 < N,
        "everything was done before the kill; the test proves nothing"
    );

    let mut daemon = ChildDaemon::spawn(&cfg.path(), &log);
    let restarted = Instant::now();
    wait_until(
        "every step of every notification is delivered",
        Duration::from_secs(75),
        async || deliveries.distinct() >= 2 * N,
    )
    .await;
    let all_delivered = started.elapsed();
    let after_restart = restarted.elapsed();
    let mut r = redis().await;
    // A send made on a lease the kill left behind is stored only when the
    // lease has run out and another claim finds it lapsed.
    let stored = wait_all_finished(&mut r, &cfg.name, &ids, Duration::from_secs(25)).await;
    assert!(daemon.running(), "the restarted daemon died; see {log:?}");
    daemon.kill();

    let resends = assert_each_step_once(&deliveries, &ids, &[], &stored);
    // Resends happen around a kill only: a kill lies between the first POST
    // of a key and its repeat (give or take a request still on the wire when
    // the sender died; a resend comes `in_flight_timeout` later).
    let got = deliveries.snapshot();
    for (key, posts) in got.iter().filter(|(_, posts)| posts.len() > 1) {
        assert!(
            kills
                .iter()
                .any(|k| posts[0].at <= *k + Duration::from_secs(1) && posts[1].at > *k),
            "{key} was sent again with no kill in between: {posts:?}"
        );
    }
    // A key is repeated at most once per kill that lies between its first
    // and its last POST: one interrupted send, one resend.
    for (key, posts) in got.iter().filter(|(_, posts)| posts.len() > 1) {
        let (first, last) = (posts[0].at, posts[posts.len() - 1].at);
        let kills_between = kills
            .iter()
            .filter(|k| first <= **k + Duration::from_secs(1) && last > **k)
            .count();
        assert!(
            posts.len() - 1 <= kills_between,
            "{key} arrived {} times across {kills_between} kills: {posts:?}",
            posts.len()
        );
    }
    let warnings = std::fs::read_to_string(&log)
        .map(|l| l.lines().count())
        .unwrap_or(0);
    // A cascade is complete when its second step arrives. Those the killed
    // daemon had claimed but not yet sent come back only when the claim's
    // lease (`claim_lease`, 10 s here) runs out: count them apart.
    let mut completed: Vec<Instant> = ids
        .iter()
        .filter_map(|id| got.get(&format!("{id}:1")))
        .filter_map(|posts| posts.iter().map(|p| p.at).min())
        .collect();
    completed.sort();
    let lease_bound = completed
        .iter()
        .filter(|at| **at > restarted + Duration::from_secs(7))
        .count();
    let prompt = &completed[..N - lease_bound];
    let prompt_s = (*prompt.last().unwrap() - started).as_secs_f64();
    println!(
        "crash: published {N} in {publish_s:.2} s; kill -9 at +{:.2} s ({} first, {} second \
         steps out) and at +{:.2} s ({} first, {} second steps out), each time restarted at \
         once. {} cascades completed by +{prompt_s:.2} s: {:.0} notifications/s fully completed \
         (2 s wait, both kills and restarts included); the other {lease_bound} waited for the \
         claim lease, so all {} steps were out {:.2} s after the last restart (+{:.2} s, {:.0}/s \
         overall). Same-key resends: {resends}; daemon warnings logged: {warnings}",
        first_kill.0.as_secs_f64(),
        first_kill.1,
        first_kill.2,
        second_kill.0.as_secs_f64(),
        second_kill.1,
        second_kill.2,
        prompt.len(),
        prompt.len() as f64 / prompt_s,
        2 * N,
        after_restart.as_secs_f64(),
        all_delivered.as_secs_f64(),
        N as f64 / all_delivered.as_secs_f64(),
    );
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_share_one_queue_and_one_customer_limit() {
    const N: usize = 1000;
    let _serial = SERIAL.lock().await;
    let (url, deliveries) = keyed_receiver().await;
    let extra = format!("{FAST_RECOVERY}\n[limits]\nper_customer = \"2/1h\"\n");
    let cfg = TestConfig::new("pair", &url, &extra, TWO_STEPS);
    let _clean = CleanUp(cfg.name.clone());
    let config = intake_config_of(&cfg.catalog());
    let a = start(&cfg).await;
    let b = start(&cfg).await;

    // Both consume the one queue.
    wait_until(
        "two consumers on the queue",
        Duration::from_secs(10),
        async || consumers(&config.queue).await == Some(2),
    )
    .await;

    let ids = ids(&cfg.name, "n", N);
    let busy = ids_for_one_customer(&cfg.name);
    let busy_customer = format!("busy-{}", cfg.name);
    let mut all: Vec<Vec<u8>> = bodies(&ids).collect();
    // The busy customer's six arrive in the middle of the stream, together.
    let busy_bodies = busy.iter().map(|id| notification(id, &busy_customer));
    all.splice(N / 2..N / 2, busy_bodies);
    let started = Instant::now();
    publish_many(&config, all).await.unwrap();

    wait_until(
        "every step of every notification is delivered",
        Duration::from_secs(40),
        async || deliveries.distinct() >= 2 * N + 2,
    )
    .await;
    let elapsed = started.elapsed();
    let mut r = redis().await;
    let stored = wait_all_finished(&mut r, &cfg.name, &ids, Duration::from_secs(25)).await;
    let resends = assert_each_step_once(&deliveries, &ids, &busy, &stored);
    assert_eq!(resends, 0, "nothing was killed, yet keys were sent again");

    // The busy customer: two first steps within the hour, across both
    // instances; everything else of theirs waits for the limit.
    wait_until(
        "the busy customer's sends are all deferred by the limit",
        Duration::from_secs(10),
        async || {
            let s = read_cascades(&mut r, &cfg.name, &busy).await;
            let first = s
                .iter()
                .filter(|s| !s.entries("sent", 0).is_empty())
                .count();
            let deferred = |s: &Stored, step| {
                s.entries("deferred", step)
                    .iter()
                    .any(|e| e.reason.as_deref() == Some("limit"))
            };
            first == 2
                && s.iter().all(|s| {
                    deferred(
                        s,
                        if s.entries("sent", 0).is_empty() {
                            0
                        } else {
                            1
                        },
                    )
                })
        },
    )
    .await;
    let stored = read_cascades(&mut r, &cfg.name, &busy).await;
    let busy_sent: usize = busy
        .iter()
        .map(|id| deliveries.times(&format!("{id}:0")) + deliveries.times(&format!("{id}:1")))
        .sum();
    assert_eq!(busy_sent, 2, "per_customer = 2/1h across both daemons");
    for (id, s) in busy.iter().zip(&stored) {
        assert_eq!(s.outcome(), None, "{id} must be waiting for the limit");
        assert!(s.entries("sent", 1).is_empty(), "{id}: no second step");
        let until: Vec<i64> = s
            .timeline
            .iter()
            .filter(|e| e.event.as_str() == "deferred")
            .filter_map(|e| e.until_ms)
            .collect();
        let accepted = s.timeline[0].at_ms;
        assert!(
            until.iter().all(|u| *u >= accepted + 59 * 60_000),
            "{id}: deferred until the hour has passed: {until:?}"
        );
    }
    println!(
        "two daemons: {N} notifications, {} steps delivered in {:.2} s ({:.0} notifications/s \
         with the 2 s wait); same-key resends: {resends}; busy customer: 2 of 6 first steps \
         sent, the rest deferred by the limit",
        2 * N,
        elapsed.as_secs_f64(),
        N as f64 / elapsed.as_secs_f64()
    );
    a.stop(Duration::from_secs(5)).await;
    b.stop(Duration::from_secs(5)).await;
}

fn ids_for_one_customer(name: &str) -> Vec<String> {
    ids(name, "busy", 6)
}

/// How many consumers a queue has (a passive declare), if it exists.
async fn consumers(queue: &str) -> Option<u32> {
    let conn =
        lapin::Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f", Default::default())
            .await
            .ok()?;
    let ch = conn.create_channel().await.ok()?;
    let q = ch
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .ok();
    let _ = conn.close(200, "bye".into()).await;
    q.map(|q| q.consumer_count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_dropping_the_daemons_connection_loses_nothing() {
    const N: usize = 300;
    let _serial = SERIAL.lock().await;
    let (url, deliveries) = keyed_receiver().await;
    let cfg = TestConfig::new("amqpdrop", &url, FAST_RECOVERY, TWO_STEPS);
    let _clean = CleanUp(cfg.name.clone());
    let config = intake_config_of(&cfg.catalog());
    let daemon = start(&cfg).await;
    let http = reqwest::Client::new();
    wait_until("/readyz is 200", Duration::from_secs(10), async || {
        ready(&http, daemon.admin_addr).await
    })
    .await;

    let prefix = format!("cascade intake {} ", config.queue);
    let named = tokio::task::spawn_blocking(move || connections_named(&prefix));
    let named = named.await.unwrap();
    assert_eq!(named.len(), 1, "the daemon names its one intake connection");
    let daemons_connection = named[0].clone();

    // A batch large enough that intake is still taking it in when the
    // connection closes (rabbitmqctl needs about half a second to start).
    let before = ids(&cfg.name, "a", 5 * N);
    publish_robustly(&config, &before).await;
    wait_until(
        "some first steps out",
        Duration::from_secs(20),
        async || deliveries.distinct_on("vk") >= 10,
    )
    .await;

    // The daemon's connection (found by the name it gives it), nobody else's.
    let t0 = Instant::now();
    let close = tokio::task::spawn_blocking(move || {
        rabbitmqctl(&["close_connection", &daemons_connection, "closed by a test"])
    });
    let (down, up) = watch_readiness(&http, daemon.admin_addr, t0, Duration::from_secs(30)).await;
    close.await.unwrap();
    let closed_in = t0.elapsed();
    let first_steps_at_close = deliveries.distinct_on("vk");

    let after = ids(&cfg.name, "b", N);
    publish_robustly(&config, &after).await;
    let everyone: Vec<String> = before.iter().chain(&after).cloned().collect();
    wait_until(
        "every step of every notification is delivered",
        Duration::from_secs(30),
        async || deliveries.distinct() >= 2 * everyone.len(),
    )
    .await;
    let mut r = redis().await;
    let stored = wait_all_finished(&mut r, &cfg.name, &everyone, Duration::from_secs(25)).await;
    let resends = assert_each_step_once(&deliveries, &everyone, &[], &stored);
    assert!(
        ready(&http, daemon.admin_addr).await,
        "ready again at the end"
    );
    let down = down.expect("/readyz never reported the lost RabbitMQ connection");
    let up = up.expect("/readyz never came back to 200");
    println!(
        "rabbitmq: rabbitmqctl close_connection took {:.2} s ({first_steps_at_close} of \
         the first {} first steps out when it returned); /readyz 503 at +{:.2} s, 200 again at \
         +{:.2} s: recovered in {:.2} s; {} notifications, all {} steps delivered; same-key \
         resends: {resends}",
        closed_in.as_secs_f64(),
        before.len(),
        down.as_secs_f64(),
        up.as_secs_f64(),
        (up - down).as_secs_f64(),
        everyone.len(),
        2 * everyone.len()
    );
    daemon.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_while_cascades_wait_loses_nothing() {
    const N: usize = 300;
    let _serial = SERIAL.lock().await;
    let mut redis_server = PrivateRedis::start("restart").await;
    let (url, deliveries) = keyed_receiver().await;
    let cfg = TestConfig::new("redisdown", &url, FAST_RECOVERY, TWO_STEPS);
    cfg.set_redis_url(&redis_server.url());
    let _clean = CleanUp(cfg.name.clone());
    let config = intake_config_of(&cfg.catalog());
    let daemon = start(&cfg).await;
    let http = reqwest::Client::new();
    wait_until("/readyz is 200", Duration::from_secs(10), async || {
        ready(&http, daemon.admin_addr).await
    })
    .await;

    let before = ids(&cfg.name, "a", N);
    publish_many(&config, bodies(&before)).await.unwrap();
    wait_until(
        "every first step out",
        Duration::from_secs(20),
        async || deliveries.distinct_on("vk") >= N,
    )
    .await;
    // Every cascade is waiting for its 2 s to pass: none has a send in flight.
    let mut r = redis_at(&redis_server.url()).await;
    wait_until(
        "every cascade waits for a read",
        Duration::from_secs(5),
        async || {
            read_cascades(&mut r, &cfg.name, &before)
                .await
                .iter()
                .all(|s| {
                    matches!(
                        s.cascade.as_ref().map(|c| &c.phase),
                        Some(cascade::core::Phase::Waiting { .. })
                    )
                })
        },
    )
    .await;

    redis_server.kill();
    let t0 = Instant::now();
    // New notifications arrive while Redis is down; the waits run out meanwhile.
    let during = ids(&cfg.name, "b", N / 3);
    publish_many(&config, bodies(&during)).await.unwrap();
    let (down, _) =
        watch_readiness(&http, daemon.admin_addr, t0, Duration::from_millis(2500)).await;
    let outage = t0.elapsed();
    redis_server.restart().await;
    let restarted = t0.elapsed();
    wait_until(
        "/readyz is 200 after the restart",
        Duration::from_secs(30),
        async || ready(&http, daemon.admin_addr).await,
    )
    .await;
    let up = t0.elapsed();

    let everyone: Vec<String> = before.iter().chain(&during).cloned().collect();
    wait_until(
        "every step of every notification is delivered",
        Duration::from_secs(30),
        async || deliveries.distinct() >= 2 * everyone.len(),
    )
    .await;
    let mut r = redis_at(&redis_server.url()).await;
    let stored = wait_all_finished(&mut r, &cfg.name, &everyone, Duration::from_secs(25)).await;
    let resends = assert_each_step_once(&deliveries, &everyone, &[], &stored);
    assert_eq!(
        resends, 0,
        "nothing was in flight when Redis went down, yet keys were sent again"
    );
    let down = down.expect("/readyz never reported Redis down");
    let events: BTreeMap<&str, usize> =
        stored
            .iter()
            .flat_map(|s| &s.timeline)
            .fold(BTreeMap::new(), |mut m, e| {
                *m.entry(e.event.as_str()).or_default() += 1;
                m
            });
    println!(
        "redis: killed, /readyz 503 at +{:.2} s, restarted at +{:.2} s (down {:.2} s), /readyz \
         200 at +{:.2} s: recovered {:.2} s after the restart; {} notifications ({} published \
         during the outage), all {} steps delivered once; same-key resends: {resends}; \
         timeline events: {events:?}",
        down.as_secs_f64(),
        restarted.as_secs_f64(),
        outage.as_secs_f64(),
        up.as_secs_f64(),
        (up - restarted).as_secs_f64(),
        everyone.len(),
        during.len(),
        2 * everyone.len(),
    );
    daemon.stop(Duration::from_secs(5)).await;
    redis_server.kill();
}
