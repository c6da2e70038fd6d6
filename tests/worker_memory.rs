//! The daemon's worker on the in-memory store: the same code that runs
//! against Redis starts a notification, sends its first step to a loopback
//! receiver, and — when the clock moves past the wait — claims and escalates
//! it, with no Redis or RabbitMQ. This is what `demo` and `simulate` will
//! run on.

mod common;

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use cascade::channels::Outbound;
use cascade::runtime::clock::{Clock, SystemClock};
use cascade::runtime::store::{CascadeStore, MemoryStore};
use cascade::runtime::telemetry::Telemetry;
use cascade::runtime::worker::{Started, Worker};

use common::{DELIVERY_DELAY, TestConfig, fake_receiver, notification};

const MIN: i64 = 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_runs_a_cascade_on_the_memory_store() {
    let (url, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("worker-memory", &url, "", DELIVERY_DELAY);
    let catalog = cfg.catalog();
    let clock = Arc::new(SystemClock::default());
    let store = MemoryStore::new(clock.clone(), 3_600_000, 4);
    let worker = Worker {
        store: store.clone(),
        catalog: Arc::new(ArcSwap::from_pointee(catalog)),
        outbound: Outbound::new(),
        clock: clock.clone(),
        telemetry: Telemetry::new(),
        shutdown: CancellationToken::new(),
    };

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
    clock.advance(31 * MIN);
    let mut due = Vec::new();
    for shard in 0..store.shards() {
        due.extend(
            store
                .claim(shard, clock.now_ms(), 30_000, 16)
                .await
                .unwrap(),
        );
    }
    assert_eq!(due.len(), 1);
    for claimed in due {
        worker.wake_claimed(claimed).await.unwrap();
    }
    assert_eq!(received.count("sms"), 1, "escalated to SMS");
    let (cascade, timeline) = store.status(&id).await.unwrap().unwrap();
    let events: Vec<&str> = timeline.iter().map(|e| e.event.as_str()).collect();
    assert!(
        events.ends_with(&["escalated", "sent", "exhausted"]),
        "{events:?}"
    );
    assert!(cascade.is_done());
}
