//! Receipt data end to end through the daemon, Redis and RabbitMQ: a call
//! step's `called` receipt carries what the manager typed
//! (`{"slot": "Friday 10-14"}`), the branch's confirmation quotes it
//! (`{{data.slot}}`) in its Telegram message; a slot never recorded fails
//! that step with the reason instead of sending it half filled; and the
//! receipts API refuses data it must not store.

mod common;

use std::time::Duration;

use cascade::dev::fakes::telegram::FakeTelegram;
use common::*;
use serde_json::{Value, json};

/// A call task (the `vk` webhook of the test configuration) whose `called`
/// leads to a confirmation in Telegram with the policy's own text.
const CALL_THEN_CONFIRM: &str = "\
stop_on = [\"read\"]

[[steps]]
name = \"call\"
channel = \"vk\"
wait = \"4h\"
on = { called = \"confirm\" }
next = \"open_chat\"

[[steps]]
name = \"confirm\"
channel = \"telegram\"
text = \"Policy: your delivery slot is {{ data.slot }}\"
final = true

[[steps]]
name = \"open_chat\"
channel = \"telegram\"
";

async fn start() -> (Running, FakeTelegram, Received) {
    let tg = FakeTelegram::start().await;
    let (receiver, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new(
        "rdata",
        &receiver,
        "[receipts]\ncustom = [\"called\"]\n",
        CALL_THEN_CONFIRM,
    );
    cfg.write(
        "channels/telegram.toml",
        &format!(
            "kind = \"telegram\"\nbase_url = \"{}\"\nbot_token = \"123:tg\"\nwebhook_secret = \"tg-secret\"\n",
            tg.base_url()
        ),
    );
    (Running::start(cfg).await, tg, received)
}

fn body(id: &str, customer: &str, chat: &str, steps: Option<Value>) -> Value {
    let mut content = json!({ "text": "Order 1001: when may we deliver?" });
    if let Some(steps) = steps {
        content["steps"] = steps;
    }
    json!({
        "id": id, "policy": "delivery_delay",
        "customer": { "id": customer, "contacts": { "vk": "111", "telegram": chat } },
        "content": content,
    })
}

async fn post_receipt(run: &Running, body: &Value) -> (u16, Value) {
    let answer = reqwest::Client::new()
        .post(run.url("/v1/receipts"))
        .bearer_auth(TOKEN)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

async fn view(run: &Running, id: &str) -> Value {
    run.get_v1(&format!("/v1/notifications/{id}")).await
}

async fn message_to(tg: &FakeTelegram, chat: i64) -> String {
    let mut text = String::new();
    wait_until(
        &format!("a Telegram message to {chat}"),
        Duration::from_secs(10),
        async || match tg.messages().into_iter().find(|m| m.chat_id == chat) {
            Some(m) => {
                text = m.text;
                true
            }
            None => false,
        },
    )
    .await;
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slot_recorded_with_called_is_quoted_by_the_confirmation() {
    let (mut run, tg, received) = start().await;
    let by_policy = run.id("policy-text");
    let by_notification = run.id("step-text");
    run.publish(&body(&by_policy, "c-1", "5551", None)).await;
    run.publish(&body(
        &by_notification,
        "c-2",
        "5552",
        Some(json!({ "confirm": { "text": "Hello {{customer.id}}, we come {{data.slot}} ({{notification.id}})" } })),
    ))
    .await;
    wait_until("both call tasks", Duration::from_secs(10), async || {
        received.count("vk") == 2
    })
    .await;

    // The call centre reports `called` with the slot the manager agreed.
    let (status, answer) = post_receipt(
        &run,
        &json!({ "id": by_policy, "event": "called", "data": { "slot": "Friday 10-14" } }),
    )
    .await;
    assert_eq!((status, answer), (202, json!({ "status": "recorded" })));
    let (status, _) = post_receipt(
        &run,
        &json!({ "id": by_notification, "event": "called", "data": { "slot": "Monday <9-12>", "floor": 3 } }),
    )
    .await;
    assert_eq!(status, 202);

    assert_eq!(
        message_to(&tg, 5551).await,
        "Policy: your delivery slot is Friday 10-14"
    );
    assert_eq!(
        message_to(&tg, 5552).await,
        format!("Hello c-2, we come Monday <9-12> ({by_notification})")
    );
    run.wait_outcome(&by_policy, "completed").await;

    // The data is shown with the notification; a second `called` with a
    // corrected slot is already recorded, and its data still merged.
    let shown = view(&run, &by_notification).await;
    assert_eq!(
        shown["data"],
        json!({ "slot": "Monday <9-12>", "floor": "3" })
    );
    let (status, answer) = post_receipt(
        &run,
        &json!({ "id": by_notification, "event": "called", "data": { "slot": "Tuesday 9-12" } }),
    )
    .await;
    assert_eq!(
        (status, answer),
        (200, json!({ "status": "already_recorded" }))
    );
    assert_eq!(
        view(&run, &by_notification).await["data"],
        json!({ "slot": "Tuesday 9-12", "floor": "3" })
    );
    // Shown with contacts masked, as reasons are (a text still quotes it).
    let (status, _) = post_receipt(
        &run,
        &json!({ "id": by_notification, "event": "called", "data": { "note": "перезвонить +7 916 123-45-67" } }),
    )
    .await;
    assert_eq!(status, 200);
    let note = view(&run, &by_notification).await["data"]["note"].clone();
    let note = note.as_str().unwrap();
    assert!(
        note.starts_with("перезвонить ") && !note.contains("123-45-67"),
        "{note}"
    );
    // `cascade receipt --data` merges the same way, and `cascade status`
    // shows the data.
    let cli = |args: &[&str]| {
        let out = cascade_command()
            .arg("--config")
            .arg(run.cfg.path())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = cli(&[
        "receipt",
        &by_notification,
        "called",
        "--data",
        "floor=4",
        "--data",
        "door=B",
    ]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = cli(&["status", &by_notification]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("123-45-67"), "{out}");
    for line in ["data.door: B", "data.floor: 4", "data.slot: Tuesday 9-12"] {
        assert!(out.contains(line), "{line}\n---\n{out}");
    }
    // Kept as long as the finished record.
    let mut redis = redis().await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{}:{{{by_policy}}}:data", run.cfg.name))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(ttl > 0, "the data hash expires with its record: {ttl}");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_never_recorded_fails_the_confirmation_with_the_reason() {
    let (mut run, tg, received) = start().await;
    let id = run.id("no-slot");
    run.publish(&body(&id, "c-3", "5553", None)).await;
    wait_until("the call task", Duration::from_secs(10), async || {
        received.count("vk") == 1
    })
    .await;
    let (status, _) = post_receipt(&run, &json!({ "id": id, "event": "called" })).await;
    assert_eq!(status, 202);
    run.wait_outcome(&id, "exhausted").await;
    let failed = run.entries(&id, "send_failed").await;
    assert!(
        failed.iter().any(|e| e.step == Some(1)
            && e.reason.as_deref() == Some("placeholder {{data.slot}} has no value")),
        "{failed:?}"
    );
    assert!(tg.messages().is_empty(), "nothing half filled goes out");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_data_is_refused_naming_the_field() {
    let (mut run, _tg, received) = start().await;
    let id = run.id("hostile");
    run.publish(&body(&id, "c-4", "5554", None)).await;
    wait_until("the call task", Duration::from_secs(10), async || {
        received.count("vk") == 1
    })
    .await;
    let many: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    for (data, field) in [
        (json!("Friday"), "data"),
        (json!(["Friday"]), "data"),
        (Value::Object(many), "data"),
        (json!({ "Slot": "Friday" }), "data.Slot"),
        (json!({ "slot-1": "Friday" }), "data.slot-1"),
        (
            json!({ "a".repeat(41): "x" }),
            "data.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ),
        (json!({ "slot": { "day": "Friday" } }), "data.slot"),
        (json!({ "slot": null }), "data.slot"),
        (json!({ "slot": "x".repeat(501) }), "data.slot"),
        (json!({ "slot": "Friday\r\n<script>" }), "data.slot"),
        (json!({ "slot": "\u{0}" }), "data.slot"),
    ] {
        let (status, answer) =
            post_receipt(&run, &json!({ "id": id, "event": "called", "data": data })).await;
        assert_eq!(status, 400, "{data}: {answer}");
        assert_eq!(answer["field"], field, "{answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    // Nothing of a refused receipt is recorded.
    let shown = view(&run, &id).await;
    assert_eq!(shown["data"], json!({}));
    assert!(shown["receipts"].get("called").is_none(), "{shown}");
    assert_eq!(run.outcome(&id).await, None);

    // 64 keys in all over its receipts; the receipt that would pass it is
    // refused whole.
    for round in 0..4 {
        let data: serde_json::Map<String, Value> = (0..16)
            .map(|i| (format!("k{round}_{i}"), json!("v")))
            .collect();
        let (status, answer) =
            post_receipt(&run, &json!({ "id": id, "event": "noted", "data": data })).await;
        assert!([200, 202].contains(&status), "{answer}");
    }
    let (status, answer) = post_receipt(
        &run,
        &json!({ "id": id, "event": "called", "data": { "slot": "Friday" } }),
    )
    .await;
    assert_eq!(
        (status, &answer["field"]),
        (400, &json!("data")),
        "{answer}"
    );
    let shown = view(&run, &id).await;
    assert_eq!(shown["data"].as_object().unwrap().len(), 64);
    assert!(shown["receipts"].get("called").is_none(), "{shown}");
    run.stop().await;
}
