//! RabbitMQ as operators run it: quorum queues by default (with the
//! broker's own bound on redeliveries), an older classic queue used as it
//! is with a warning that says what to do, and a list of nodes of which the
//! first that answers is used.

mod common;

use std::process::Command;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

use common::{
    AT_ONCE, CleanUp, DELIVERY_DELAY, Running, TestConfig, amqp, fake_receiver, notification,
    publish_to,
};

/// `rabbitmqctl list_queues name type arguments`, the rows of `prefix`'s queues.
fn queues_of(prefix: &str) -> Vec<String> {
    let out = Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "name",
            "type",
            "arguments",
            "-q",
            "--no-table-headers",
        ])
        .output()
        .expect("rabbitmqctl runs");
    let mut rows: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect();
    rows.sort();
    rows
}

/// Publishes one notification to `cfg`'s queue and waits until the child
/// daemon sent its first step.
async fn publish_one_and_see_it_sent(
    daemon: &mut common::ChildDaemon,
    cfg: &TestConfig,
    received: &common::Received,
) {
    let intake = common::intake_config_of(&cfg.catalog());
    publish_to(&intake, &notification(&format!("{}-n", cfg.name), "c-1")).await;
    daemon
        .wait_alive_until("the first send", AT_ONCE * 3, async || {
            received.count("vk") == 1
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_queues_are_quorum_queues_with_a_delivery_limit() {
    let (url, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("quorum", &url, "", DELIVERY_DELAY);
    let name = cfg.name.clone();
    let r = Running::start(cfg).await;
    r.publish_bytes(&notification(&format!("{name}-n"), "c-1"))
        .await;
    common::wait_until("the first send", AT_ONCE, async || {
        received.count("vk") == 1
    })
    .await;

    let rows = queues_of(&name);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (dead, intake) = (&rows[0], &rows[1]);
    assert!(dead.starts_with(&format!("{name}.dead\tquorum")), "{dead}");
    assert!(
        intake.starts_with(&format!("{name}.notifications\tquorum")),
        "{intake}"
    );
    // 20 × amqp.max_deliveries (5), dead-lettered to the daemon's queue.
    assert!(intake.contains("x-delivery-limit"), "{intake}");
    assert!(intake.contains("100"), "{intake}");
    assert!(intake.contains(&format!("{name}.dead")), "{intake}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_classic_queue_is_used_as_it_is_with_a_warning() {
    let (url, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("classic-before", &url, "", DELIVERY_DELAY);
    let name = cfg.name.clone();
    let _clean = CleanUp(name.clone());
    // As an earlier version declared them: classic, no arguments.
    let (conn, channel) = amqp().await;
    for q in [format!("{name}.notifications"), format!("{name}.dead")] {
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(q.as_str().into(), durable, FieldTable::default())
            .await
            .unwrap();
    }
    let _ = conn.close(200, "declared".into()).await;

    let log = std::env::temp_dir().join(format!("{name}.log"));
    let mut daemon = common::ChildDaemon::spawn(&cfg.path(), &log);
    publish_one_and_see_it_sent(&mut daemon, &cfg, &received).await;
    let rows = queues_of(&name);
    assert!(
        rows.iter().all(|r| r.contains("\tclassic")),
        "the queues stay as they were: {rows:?}"
    );
    let said = daemon.log();
    assert!(
        said.contains("already exists with other arguments") && said.contains("amqp.queue_type"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_node_that_answers_is_used() {
    let (url, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("nodes", &url, "", DELIVERY_DELAY);
    let name = cfg.name.clone();
    let _clean = CleanUp(name.clone());
    // Port 1: nothing listens there, as on a node that went away.
    let nodes = format!("amqp://guest:guest@127.0.0.1:1/%2f, {}", common::AMQP_URL);
    let log = std::env::temp_dir().join(format!("{name}.log"));
    let mut daemon =
        common::ChildDaemon::spawn_with(&cfg.path(), &log, "warn", &[("CASCADE_AMQP_URL", &nodes)]);
    publish_one_and_see_it_sent(&mut daemon, &cfg, &received).await;
    let said = daemon.log();
    assert!(said.contains("cannot reach this RabbitMQ node"), "{said}");
    assert!(
        said.contains("amqp://127.0.0.1:1/"),
        "the node without its password: {said}"
    );
    assert!(!said.contains("guest:guest"), "{said}");
}
