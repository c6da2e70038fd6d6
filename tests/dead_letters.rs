//! `cascade dead list | show | replay` against the real RabbitMQ, through
//! the binary: inspection leaves the dead-letter queue as it was; a replay
//! moves only the selected messages, without their error headers, and
//! removes a dead letter only once its copy was confirmed.

mod common;

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use serde_json::Value;

use common::{
    AT_ONCE, CleanUp, DELIVERY_DELAY, Running, TestConfig, cascade_command, fake_receiver,
    intake_config_of, notification, ready_in, take_messages,
};

/// `cascade --config <cfg> dead <args>`: its standard output, which must succeed.
fn dead(cfg: &TestConfig, args: &[&str]) -> String {
    let out = dead_run(cfg, args);
    assert!(
        out.status.success(),
        "cascade dead {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn dead_run(cfg: &TestConfig, args: &[&str]) -> std::process::Output {
    cascade_command()
        .arg("--config")
        .arg(cfg.path())
        .arg("dead")
        .args(args)
        .output()
        .expect("cascade runs")
}

/// Publishes dead letters as the daemon does (durable queues declared as it
/// declares them): body, `x-cascade-error-code`, `x-cascade-error`, and a
/// header of the producer's own.
async fn dead_letters(cfg: &TestConfig, letters: &[(&str, &str, &str)]) {
    let config = intake_config_of(&cfg.catalog());
    let conn = lapin::Connection::connect(&config.url, Default::default())
        .await
        .unwrap();
    let channel = cascade::runtime::intake::declare(&conn, &config)
        .await
        .unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for (code, error, body) in letters {
        let mut headers = FieldTable::default();
        for (k, v) in [
            ("x-cascade-error-code", *code),
            ("x-cascade-error", *error),
            ("trace", "t-1"),
        ] {
            headers.insert(k.into(), AMQPValue::LongString(LongString::from(v)));
        }
        let confirm = channel
            .basic_publish(
                "".into(),
                config.dead_letter_queue.as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                lapin::BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_headers(headers),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirm.is_ack());
    }
    let _ = conn.close(200, "published".into()).await;
}

/// Declares `queue` durable and classic with `args`, before the commands
/// declare it (they use a queue that exists as it is).
async fn declare_classic(queue: &str, args: FieldTable) {
    let (conn, channel) = common::amqp().await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.into(), durable, args)
        .await
        .unwrap();
    let _ = conn.close(200, "declared".into()).await;
}

/// The bodies `queue` holds, in order (taking them off it).
async fn bodies_in(queue: &str, expected: usize) -> Vec<String> {
    take_messages(queue, expected + 1, Duration::from_secs(1))
        .await
        .iter()
        .map(|m| String::from_utf8(m.data.clone()).unwrap())
        .collect()
}

const LETTERS: [(&str, &str, &str); 4] = [
    (
        "unknown_policy",
        "no policy `nope`",
        r#"{"id":"a","policy":"nope"}"#,
    ),
    ("malformed_json", "expected value at line 1", "{not json"),
    (
        "unknown_policy",
        "no policy `gone`",
        r#"{"id":"c","policy":"gone"}"#,
    ),
    (
        "invalid_contact",
        "sms contact +79161234567 is not a phone number",
        r#"{"id":"d","customer":{"contacts":{"sms":"+79161234567"}}}"#,
    ),
];

fn bodies_of(indices: &[usize]) -> Vec<String> {
    indices.iter().map(|&i| LETTERS[i].2.to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_show_read_the_queue_and_leave_it_as_it_was() {
    let cfg = TestConfig::new("dead-read", "http://127.0.0.1:1", "", DELIVERY_DELAY);
    let _clean = CleanUp(cfg.name.clone());
    dead_letters(&cfg, &LETTERS).await;

    let listed = dead(&cfg, &["list"]);
    let dlq = format!("{}.dead", cfg.name);
    assert_eq!(
        listed,
        format!(
            "invalid_contact  1\nmalformed_json   1\nunknown_policy   2\ntotal            4  ({dlq})\n"
        ),
        "{listed}"
    );
    let json: Value = serde_json::from_str(&dead(&cfg, &["list", "--json"])).unwrap();
    assert_eq!(json["total"], 4);
    assert_eq!(json["by_code"]["unknown_policy"], 2);
    assert_eq!(json["by_code"]["malformed_json"], 1);

    let shown = dead(&cfg, &["show", "4"]);
    assert!(
        shown.starts_with(&format!(
            "message 4 of 4 in {dlq}\ncode:  invalid_contact\n"
        )),
        "{shown}"
    );
    // The sentence masked, in its line and among the headers; the body as sent.
    assert!(
        shown.contains("error: sms contact +7916•••4567 is not a phone number\n"),
        "{shown}"
    );
    assert!(
        shown.contains("  x-cascade-error: sms contact +7916•••4567 is not"),
        "{shown}"
    );
    assert!(shown.contains("  trace: t-1\n"), "{shown}");
    assert!(
        shown.contains("\"contacts\": {\n      \"sms\": \"+79161234567\"\n    }"),
        "{shown}"
    );
    let second = dead(&cfg, &["show", "2"]);
    assert!(second.contains("code:  malformed_json\n"), "{second}");
    assert!(
        second.ends_with("as the producer sent it):\n{not json\n"),
        "{second}"
    );
    let beyond = dead_run(&cfg, &["show", "5"]);
    assert!(!beyond.status.success());
    assert!(
        String::from_utf8_lossy(&beyond.stderr).contains(&format!("{dlq} holds 4 messages")),
        "{beyond:?}"
    );

    // Every read handed back what it took: the same messages, in order.
    assert_eq!(ready_in(&dlq).await, 4);
    assert_eq!(bodies_in(&dlq, 4).await, bodies_of(&[0, 1, 2, 3]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_moves_the_selected_without_their_error_headers_and_keeps_the_rest_in_order() {
    let cfg = TestConfig::new("dead-replay", "http://127.0.0.1:1", "", DELIVERY_DELAY);
    let _clean = CleanUp(cfg.name.clone());
    let (dlq, intake) = (
        format!("{}.dead", cfg.name),
        format!("{}.notifications", cfg.name),
    );
    // A classic intake queue beside the quorum dead-letter queue: a quorum
    // queue would replace an `x-delivery-count` the copies kept by its own.
    declare_classic(&intake, FieldTable::default()).await;
    dead_letters(&cfg, &LETTERS).await;

    let dry = dead(&cfg, &["replay", "--code", "unknown_policy", "--dry-run"]);
    assert_eq!(
        dry,
        format!(
            "would replay 2 to {intake} (dry run: nothing changed)\n  unknown_policy  2\nleft in {dlq}: 2\n"
        )
    );
    assert_eq!(ready_in(&intake).await, 0);
    assert_eq!(ready_in(&dlq).await, 4);

    // Read twice more, as an operator would before replaying.
    dead(&cfg, &["list"]);
    dead(&cfg, &["show", "1"]);
    let done = dead(
        &cfg,
        &[
            "replay",
            "--code",
            "unknown_policy",
            "--code",
            "malformed_json",
        ],
    );
    assert_eq!(
        done,
        format!(
            "replayed 3 to {intake}\n  malformed_json  1\n  unknown_policy  2\nleft in {dlq}: 1\n"
        )
    );
    let replayed = take_messages(&intake, 4, Duration::from_secs(1)).await;
    let bodies: Vec<String> = replayed
        .iter()
        .map(|m| String::from_utf8(m.data.clone()).unwrap())
        .collect();
    assert_eq!(bodies, bodies_of(&[0, 1, 2]));
    for m in &replayed {
        let names: Vec<String> = m
            .properties
            .headers()
            .as_ref()
            .map(|t| t.inner().keys().map(|k| k.as_str().to_owned()).collect())
            .unwrap_or_default();
        assert_eq!(
            names,
            ["trace"],
            "the error headers are gone, the producer's stay"
        );
        assert_eq!(m.properties.delivery_mode(), &Some(2), "persistent");
    }
    assert_eq!(bodies_in(&dlq, 1).await, bodies_of(&[3]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_removes_nothing_the_broker_did_not_confirm() {
    let cfg = TestConfig::new("dead-refused", "http://127.0.0.1:1", "", DELIVERY_DELAY);
    let _clean = CleanUp(cfg.name.clone());
    let (dlq, intake) = (
        format!("{}.dead", cfg.name),
        format!("{}.notifications", cfg.name),
    );
    // An intake queue that refuses every publish (a nack): full at zero.
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(0));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString(LongString::from("reject-publish")),
    );
    declare_classic(&intake, args).await;
    dead_letters(&cfg, &LETTERS).await;

    let out = dead_run(&cfg, &["replay", "--all"]);
    assert!(!out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("was not confirmed"), "{said}");
    assert!(said.contains("stopped after 0 replayed"), "{said}");
    assert_eq!(ready_in(&intake).await, 0);
    assert_eq!(bodies_in(&dlq, 4).await, bodies_of(&[0, 1, 2, 3]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_of_a_running_daemon_are_listed_while_it_runs() {
    let (url, _received) = fake_receiver(vec![]).await;
    let r = Running::start(TestConfig::new("dead-daemon", &url, "", DELIVERY_DELAY)).await;
    let dlq = format!("{}.dead", r.cfg.name);
    r.publish_bytes(b"{not json").await;
    let unknown = String::from_utf8(notification(&r.id("u"), "c-1"))
        .unwrap()
        .replace("delivery_delay", "nope");
    r.publish_bytes(unknown.as_bytes()).await;
    common::wait_until("two dead letters", AT_ONCE, async || {
        ready_in(&dlq).await == 2
    })
    .await;
    let listed = dead(&r.cfg, &["list"]);
    assert_eq!(
        listed,
        format!("malformed_json  1\nunknown_policy  1\ntotal           2  ({dlq})\n")
    );
    let shown = dead(&r.cfg, &["show", "2"]);
    assert!(shown.contains("code:  unknown_policy\n"), "{shown}");
    assert!(shown.contains("\"policy\": \"nope\""), "{shown}");
    assert_eq!(ready_in(&dlq).await, 2);
}

/// A dead letter published while a read holds the others is not lost and
/// the held ones keep their order among themselves. Where it lands depends
/// on the queue: behind them on a classic queue, ahead of them on a quorum
/// queue (the default; a quorum queue puts a returned message at its end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_arriving_during_a_read_is_kept_and_the_held_keep_their_order() {
    let cfg = TestConfig::new("dead-during", "http://127.0.0.1:1", "", DELIVERY_DELAY);
    let _clean = CleanUp(cfg.name.clone());
    dead_letters(&cfg, &LETTERS[..2]).await;
    let config = intake_config_of(&cfg.catalog());
    let held = cascade::runtime::dead_letters::Held::take(&config)
        .await
        .unwrap();
    assert_eq!(held.letters().len(), 2);
    dead_letters(&cfg, &LETTERS[2..3]).await;
    held.give_back().await.unwrap();
    let dlq = format!("{}.dead", cfg.name);
    // Quorum, the default: the one that came meanwhile, then the held ones.
    assert_eq!(bodies_in(&dlq, 3).await, bodies_of(&[2, 0, 1]));
}
