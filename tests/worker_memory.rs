//! The daemon's worker on the in-memory store: the same code that runs
//! against Redis starts a notification, sends its first step to a loopback
//! receiver, and — when the clock moves past the wait — claims and escalates
//! it through the daemon's scheduler, with no Redis or RabbitMQ. This is what `demo` and `simulate` will
//! run on.

mod common;

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use cascade::channels::Outbound;
use cascade::runtime::Health;
use cascade::runtime::clock::{Clock, SystemClock};
use cascade::runtime::scheduler::{self, SchedulerConfig};
use cascade::runtime::store::{CascadeStore, MemoryStore};
use cascade::runtime::telemetry::Telemetry;
use cascade::runtime::worker::{Started, Worker};
use tokio::sync::Notify;

use common::{AT_ONCE, DELIVERY_DELAY, TestConfig, fake_receiver, notification, wait_until};

const MIN: i64 = 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_runs_a_cascade_on_the_memory_store() {
    let (url, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("worker-memory", &url, "", DELIVERY_DELAY);
    let catalog = cfg.catalog();
    let clock = Arc::new(SystemClock::default());
    let store = MemoryStore::new(clock.clone(), 3_600_000, 4);
    let worker = Arc::new(Worker {
        store: store.clone(),
        catalog: Arc::new(ArcSwap::from_pointee(catalog)),
        outbound: Outbound::new(),
        clock: clock.clone(),
        telemetry: Telemetry::new(),
        shutdown: CancellationToken::new(),
        alarm: Default::default(),
    });

    let id = format!("{}-n", cfg.name);
    let body = notification(&id, "c-1");
    let catalog = worker.catalog.load_full();
    let admitted = cascade::notification::admit_at(&body, &catalog, clock.now_ms()).unwrap();
    let Started::New { first: Some(first) } = worker
        .start(admitted, &catalog, clock.now_ms())
        .await
        .unwrap()
    else {
        panic!("a new cascade whose first step is due now");
    };
    worker.carry_out_first(first).await.unwrap();
    assert_eq!(received.count("vk"), 1);

    // Nothing is due before the 30-minute wait runs out.
    let nothing = store.claim(0, clock.now_ms(), 30_000, 16).await.unwrap();
    assert!(nothing.is_empty());
    // The daemon's scheduler claims it once the clock has moved past the wait.
    let shutdown = CancellationToken::new();
    let scheduler = tokio::spawn(scheduler::run(
        worker.clone(),
        SchedulerConfig::default(),
        Arc::new(Notify::new()),
        Arc::new(Health::default()),
        shutdown.clone(),
    ));
    clock.advance(31 * MIN);
    wait_until("the escalation", AT_ONCE, async || {
        received.count("sms") == 1
    })
    .await;
    shutdown.cancel();
    scheduler.await.unwrap();
    assert_eq!(received.count("sms"), 1, "escalated to SMS");
    let (cascade, timeline) = store.status(&id).await.unwrap().unwrap();
    let events: Vec<&str> = timeline.iter().map(|e| e.event.as_str()).collect();
    assert!(
        events.ends_with(&["escalated", "sent", "exhausted"]),
        "{events:?}"
    );
    assert!(cascade.is_done());
}
