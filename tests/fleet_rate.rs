//! A channel's `rate` is the provider account's limit, shared by every
//! instance: three daemons on one queue and one Redis send on a channel at
//! `20/1s`, and the provider, which notes when each request arrives, never
//! sees more than that.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;

use common::{
    AT_ONCE, ChildDaemon, CleanUp, TestConfig, intake_config_of, notification, publish_many,
    queue_counts, wait_until,
};

/// Sends published; at 20 a second they take five seconds at the least.
const N: usize = 100;
const RATE: usize = 20;

const ONE_STEP: &str = "stop_on = [\"read\"]\n\n[[steps]]\nchannel = \"vk\"\n";

/// A provider that answers 200 and notes when each request arrived.
async fn timed_provider() -> (String, Arc<Mutex<Vec<Instant>>>) {
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let noted = arrivals.clone();
    let app = Router::new().route(
        "/vk",
        post(move || {
            let noted = noted.clone();
            async move {
                noted.lock().unwrap().push(Instant::now());
                axum::Json(serde_json::json!({ "id": "task" }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), arrivals)
}

/// The most arrivals within any span shorter than `window`.
fn most_within(arrivals: &[Instant], window: Duration) -> usize {
    let mut most = 0;
    let mut first = 0;
    for (last, at) in arrivals.iter().enumerate() {
        while at.duration_since(arrivals[first]) >= window {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_send_at_the_channels_rate_together() {
    let (url, arrivals) = timed_provider().await;
    let cfg = TestConfig::new("fleet-rate", &url, "", ONE_STEP);
    std::fs::write(
        cfg.dir.join("channels/vk.toml"),
        format!(
            "kind = \"webhook\"\ncontact = \"vk\"\nurl = \"{url}/vk\"\ntimeout = \"2s\"\nrate = \"{RATE}/1s\"\n"
        ),
    )
    .unwrap();
    let _clean = CleanUp(cfg.name.clone());

    // Three instances, each consuming, before anything is published: the
    // queue hands the notifications out among them.
    let mut daemons = Vec::new();
    for n in 0..3 {
        let log = std::env::temp_dir().join(format!("{}-{n}.log", cfg.name));
        let mut daemon = ChildDaemon::spawn_with(&cfg.path(), &log, "info", &[]);
        daemon.wait_listening().await;
        daemons.push((daemon, log));
    }
    let queue = format!("{}.notifications", cfg.name);
    wait_until("three consumers on the queue", AT_ONCE * 3, async || {
        queue_counts(&queue).await.is_some_and(|c| c.consumers == 3)
    })
    .await;
    let bodies = (0..N).map(|n| notification(&format!("{}-{n}", cfg.name), &format!("c-{n}")));
    assert_eq!(
        publish_many(&intake_config_of(&cfg.catalog()), bodies)
            .await
            .unwrap(),
        N
    );
    wait_until("every send", AT_ONCE * 10, async || {
        arrivals.lock().unwrap().len() >= N
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), N, "each notification sent once");
    let span = arrivals[N - 1].duration_since(arrivals[0]);
    let most = most_within(&arrivals, Duration::from_secs(1));
    let per_instance: Vec<usize> = daemons
        .iter()
        .map(|(_, log)| {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("\"event\":\"sent\""))
                .count()
        })
        .collect();
    println!(
        "{N} sends at {RATE}/1s by three instances ({per_instance:?}): {span:?} first to last, at most {most} within any second"
    );
    assert!(
        per_instance.iter().all(|n| *n > 0),
        "every instance sent: {per_instance:?}"
    );
    // Evenly spaced, N sends take (N - 1) / RATE seconds at the least.
    let least = Duration::from_millis(((N - 1) * 1000 / RATE) as u64);
    assert!(
        span >= least * 90 / 100,
        "{span:?} for {N} sends at {RATE}/1s"
    );
    // Shares are spaced exactly 1/RATE apart on Redis's clock, so RATE + 1
    // of them span exactly one second; each request arrives a few
    // milliseconds after its moment, with the jitter of a busy machine, so
    // one or two more can fall inside a second at the provider. Three
    // instances on their own limits would put all 100 inside one.
    assert!(most <= RATE + 2, "{most} sends within one second");
}
