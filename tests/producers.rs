//! The example producers of `examples/producers/` (Python with pika, Node
//! with amqplib), run as a backend team would run them, against the daemon
//! in-process on the real RabbitMQ and Redis, VK and SMS.ru faked
//! (docs/producers.md). What one publishes must wait in the intake queue
//! persistent, as UTF-8 JSON, with its id as the message id, and then be
//! sent through VK; the bad one must come back to it from the dead-letter
//! queue with its error code, leaving others' dead letters in place; and
//! what it POSTs to the HTTP intake must be sent too.
//!
//! `scripts/producer-deps` (run by `scripts/test`) installs their
//! dependencies into git-ignored folders. Without `python3` or `node` a
//! test skips, saying so loudly; with it but without the dependencies, it
//! fails, saying how to install them.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cascade::dev::fakes::{smsru::FakeSmsRu, vk::FakeVk};
use cascade::runtime::intake::IntakeConfig;
use common::*;
use lapin::options::{BasicGetOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use serde_json::Value;

/// What the producers send: the customer's VK peer, and a word of the text.
const VK_PEER: i64 = 123_456_789;
const TEXT: &str = "задерживается";

/// How long one run of a producer may take (it waits at most 10 s for its
/// dead letter).
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_publishes_persistent_json_that_is_sent_and_reads_its_dead_letter() {
    if let Some(python) = Producer::python() {
        publishes_and_reads_its_dead_letter(&python).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_publishes_persistent_json_that_is_sent_and_reads_its_dead_letter() {
    if let Some(node) = Producer::node() {
        publishes_and_reads_its_dead_letter(&node).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_posts_to_the_http_intake_and_it_is_sent() {
    if let Some(python) = Producer::python() {
        posts_to_the_http_intake(&python).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_posts_to_the_http_intake_and_it_is_sent() {
    if let Some(node) = Producer::node() {
        posts_to_the_http_intake(&node).await;
    }
}

/// `publish` before the daemon runs, so the message can be looked at as
/// the producer wrote it; then the daemon sends it; then `dead-letter`.
async fn publishes_and_reads_its_dead_letter(producer: &Producer) {
    let (vk, cfg) = with_fakes(producer.name).await;
    let _clean_up = CleanUp(cfg.name.clone());
    let intake = intake_config_of(&cfg.catalog());
    declare_queues(&intake).await;
    let env = Env {
        intake: intake.clone(),
        api_url: "http://127.0.0.1:9".into(),
    };

    let out = producer.run("publish", &env).await;
    let id = word_after(&out, "published ");
    let queued = peek(&intake.queue).await;
    let p = &queued.properties;
    assert_eq!(p.delivery_mode(), &Some(2), "published persistent");
    assert_eq!(
        p.content_type().as_ref().map(|c| c.as_str()),
        Some("application/json")
    );
    assert_eq!(p.message_id().as_ref().map(|m| m.as_str()), Some(id));
    let text = std::str::from_utf8(&queued.data).expect("the body is UTF-8");
    let body: Value = serde_json::from_str(text).expect("the body is JSON");
    assert_eq!(body["id"], id);

    let run = Running::start(cfg).await.strict();
    let sent = run.wait_entry(id, "sent", Some(0)).await;
    assert_eq!(sent.channel.as_deref(), Some("vk"));
    let messages = vk.messages();
    assert_eq!(messages.len(), 1, "one VK message: {messages:?}");
    assert_eq!(messages[0].peer_id, VK_PEER);
    assert!(messages[0].text.contains(TEXT), "{}", messages[0].text);

    // Someone else's dead letter waits ahead of the producer's.
    let dead = intake.dead_letter_queue.as_str();
    dead_letter_of_another(&intake).await;
    let out = producer.run("dead-letter", &env).await;
    let line = line_after(&out, "dead-lettered ");
    let mut parts = line.splitn(3, ": ");
    let (bad, code, sentence) = (parts.next(), parts.next(), parts.next());
    assert!(bad.is_some_and(|b| b != id), "{line}");
    assert_eq!(code, Some("missing_field"), "{line}");
    assert!(
        sentence.is_some_and(|s| s.contains("customer.id")),
        "{line}"
    );
    // It took its own dead letter and handed the other back.
    let left = take_messages(dead, 2, Duration::from_millis(500)).await;
    let left: Vec<_> = left
        .iter()
        .map(|m| m.properties.message_id().as_ref().map(|i| i.to_string()))
        .collect();
    assert_eq!(left, [Some("someone-else".to_owned())]);
    settle().await;
    assert_eq!(vk.messages().len(), 1, "nothing sent for the bad one");
}

/// `http` against the daemon's public listener.
async fn posts_to_the_http_intake(producer: &Producer) {
    let (vk, cfg) = with_fakes(producer.name).await;
    let run = Running::start(cfg).await.strict();
    let env = Env {
        intake: run.intake.clone(),
        api_url: run.url(""),
    };
    let out = producer.run("http", &env).await;
    let id = word_after(&out, "accepted ");
    let sent = run.wait_entry(id, "sent", Some(0)).await;
    assert_eq!(sent.channel.as_deref(), Some("vk"));
    let messages = vk.messages();
    assert_eq!(messages.len(), 1, "one VK message: {messages:?}");
    assert_eq!(messages[0].peer_id, VK_PEER);
}

/// A test configuration whose `vk` and `sms` channels are the fakes.
async fn with_fakes(name: &str) -> (FakeVk, TestConfig) {
    let vk = FakeVk::start().await;
    let sms = FakeSmsRu::start().await;
    let cfg = TestConfig::new(
        &format!("producers-{name}"),
        "http://127.0.0.1:9",
        "",
        DELIVERY_DELAY,
    );
    cfg.vk_and_smsru(&vk.base_url(), sms.base_url(), "");
    (vk, cfg)
}

/// Declares the test's queues as the daemon does (producers do not declare
/// them: they publish to what the daemon declared).
async fn declare_queues(intake: &IntakeConfig) {
    let conn = cascade::runtime::queues::connect(intake, "test")
        .await
        .unwrap();
    cascade::runtime::intake::declare(&conn, intake)
        .await
        .unwrap();
    let _ = conn.close(200, "declared".into()).await;
}

/// The first message of `queue`, which is handed back to it.
async fn peek(queue: &str) -> lapin::message::Delivery {
    let (conn, channel) = amqp().await;
    let got = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("a message waits in {queue}"));
    let delivery = got.delivery;
    delivery
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let _ = conn.close(200, "bye".into()).await;
    delivery
}

/// A dead letter of another producer's message, as the daemon writes one.
async fn dead_letter_of_another(intake: &IntakeConfig) {
    let (conn, channel) = amqp().await;
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from("x-cascade-error-code"),
        AMQPValue::LongString(LongString::from("unknown_policy")),
    );
    channel
        .basic_publish(
            "".into(),
            intake.dead_letter_queue.as_str().into(),
            BasicPublishOptions::default(),
            b"{}",
            lapin::BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id("someone-else".into())
                .with_headers(headers),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let _ = conn.close(200, "bye".into()).await;
}

/// Where a producer publishes and posts.
struct Env {
    intake: IntakeConfig,
    api_url: String,
}

/// One example producer: its interpreter and program.
struct Producer {
    name: &'static str,
    interpreter: PathBuf,
    program: PathBuf,
}

impl Producer {
    /// The Python producer in the virtualenv `scripts/producer-deps` made.
    fn python() -> Option<Producer> {
        if !installed("python3") {
            skip("python3", "Python");
            return None;
        }
        let interpreter = repo().join(".cache/producers/venv/bin/python");
        assert!(
            interpreter.exists(),
            "the Python producer's requirements are not installed (no {}): run scripts/producer-deps \
             (scripts/test runs it)",
            interpreter.display()
        );
        Some(Producer {
            name: "python",
            interpreter,
            program: repo().join("examples/producers/python/producer.py"),
        })
    }

    /// The Node producer, with the `node_modules` `scripts/producer-deps` installed.
    fn node() -> Option<Producer> {
        if !installed("node") {
            skip("node", "Node");
            return None;
        }
        let dir = repo().join("examples/producers/node");
        assert!(
            dir.join("node_modules/amqplib").exists(),
            "the Node producer's packages are not installed (no {}/node_modules): run \
             scripts/producer-deps (scripts/test runs it)",
            dir.display()
        );
        Some(Producer {
            name: "node",
            interpreter: "node".into(),
            program: dir.join("producer.js"),
        })
    }

    /// Runs `step` with the environment pointing at the test's queues and
    /// listener; its standard output, which must succeed within `RUN_TIMEOUT`.
    async fn run(&self, step: &str, env: &Env) -> String {
        let mut child = Command::new(&self.interpreter)
            .arg(&self.program)
            .arg(step)
            .env("CASCADE_AMQP_URL", &env.intake.url)
            .env("CASCADE_AMQP_QUEUE", &env.intake.queue)
            .env(
                "CASCADE_AMQP_DEAD_LETTER_QUEUE",
                &env.intake.dead_letter_queue,
            )
            .env("CASCADE_API_URL", &env.api_url)
            .env("CASCADE_RECEIPT_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", self.interpreter.display()));
        // Polled, not waited on: the daemon runs on this runtime's threads.
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > RUN_TIMEOUT {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "the {} producer's `{step}` did not finish within {RUN_TIMEOUT:?}: {}",
                    self.name,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success(),
            "the {} producer's `{step}` failed ({}):\n{stdout}\n{stderr}",
            self.name,
            out.status
        );
        stdout.into_owned()
    }
}

/// Whether `program --version` runs.
fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn skip(program: &str, language: &str) {
    // Straight to stderr: the test harness hides `eprintln!` of a test that passes.
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!!!!!\n!!!!!!!! tests/producers.rs: {program} is not installed: the {language} example \
         producer was NOT run.\n!!!!!!!!\n"
    );
}

/// The rest of the line of `out` that starts with `prefix`.
fn line_after<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("a line starting {prefix:?} in:\n{out}"))
}

/// The first word after `prefix` on its line.
fn word_after<'a>(out: &'a str, prefix: &str) -> &'a str {
    line_after(out, prefix).split(' ').next().unwrap()
}
