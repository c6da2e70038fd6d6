//! Intake and the HTTP API end to end: the daemon started in-process against
//! the real RabbitMQ and Redis of this machine, each test with its own queues
//! and key prefix. Bad input must land in the dead-letter queue with its code
//! (contract §2), ids are idempotent, and receipts, cancellation and health answer
//! over HTTP (contract §6, 7).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

use cascade::runtime::clock::Clock;

const MIN: i64 = 60_000;

/// One test's daemon, fake receiver, clock and HTTP client. Dropping it
/// (also when the test panics) stops the daemon and deletes the test's
/// queues and Redis keys.
struct Harness {
    run: Running,
    received: Received,
}

wraps_running!(Harness);

impl Harness {
    async fn start(cfg: TestConfig, received: Received) -> Harness {
        Harness {
            run: Running::start(cfg).await.strict(),
            received,
        }
    }

    async fn publish(&self, body: &[u8]) {
        self.run.publish_bytes(body).await;
    }

    async fn wait_outcome(&self, id: &str, word: &str, timeout: Duration) {
        self.run.wait_outcome_for(id, word, timeout).await;
    }

    /// Waits until the fake receiver got `count` POSTs on `path`.
    async fn wait_received(&self, path: &str, count: usize) {
        wait_until(
            &format!("{count} POST(s) on /{path}"),
            Duration::from_secs(10),
            async || self.received.count(path) >= count,
        )
        .await;
    }

    /// Waits until `id`'s step 1 is recorded as sent (the fake receiver sees
    /// the POST a moment before the daemon records its outcome).
    async fn wait_sent(&self, id: &str) {
        wait_until(&format!("{id} recorded as sent"), AT_ONCE, async || {
            self.events(id).await.iter().any(|e| e == "sent")
        })
        .await;
    }

    /// `POST path` with an optional bearer token and JSON body; the status
    /// and the JSON answer (`Null` when the answer is not JSON).
    async fn post(&self, path: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Value) {
        let mut req = self.http.post(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.expect("the daemon answers");
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `GET path` with an optional bearer token: the status and the JSON
    /// answer (`Null` when it is not JSON).
    async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.expect("the daemon answers");
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn receipt(&self, id: &str, event: &str) -> (u16, Value) {
        let body = json!({ "id": id, "event": event, "channel": "vk" });
        self.post("/v1/receipts", Some(TOKEN), Some(&body)).await
    }

    /// Stops the daemon gracefully; `Drop` then cleans up.
    async fn stop(mut self) {
        self.run.stop().await;
    }
}

/// A notification for `delivery_delay` with the given customer object.
fn with_customer(id: &str, customer: Value) -> Vec<u8> {
    json!({
        "id": id,
        "policy": "delivery_delay",
        "customer": customer,
        "content": { "text": "Заказ задерживается" }
    })
    .to_string()
    .into_bytes()
}

/// A policy whose only step is a real SMS channel, so intake checks the
/// phone number's form (the webhook channels of `TestConfig` take any contact).
const PHONE_CHECK_POLICY: &str = "stop_on = [\"read\"]\n\n[[steps]]\nchannel = \"sms_gateway\"\n";
const SMS_GATEWAY_CHANNEL: &str =
    "kind = \"sms\"\nprovider = \"smsc\"\nlogin = \"test\"\npassword = \"test\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_dead_lettered_with_its_code_and_intake_keeps_consuming() {
    let (url, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::with_amqp(
        "bad-input",
        &url,
        "max_body_bytes = 4096",
        "",
        DELIVERY_DELAY,
    );
    cfg.write("channels/sms_gateway.toml", SMS_GATEWAY_CHANNEL);
    cfg.write("policies/phone_check.toml", PHONE_CHECK_POLICY);
    let h = Harness::start(cfg, received).await;
    let id = |s: &str| h.id(s);

    let bytes = |v: Value| v.to_string().into_bytes();
    let cut_short = format!(r#"{{"id": "{}", "policy": "delivery_delay", "#, id("cut"));
    let wrong_type = json!({
        "id": id("wrong-type"), "policy": "delivery_delay", "customer": 5,
        "content": { "text": "hi" }
    });
    let no_policy = json!({
        "id": id("no-policy"), "customer": { "id": "c-1", "contacts": { "vk": "1" } },
        "content": { "text": "hi" }
    });
    let unknown_policy = json!({
        "id": id("unknown-policy"), "policy": "no_such_policy",
        "customer": { "id": "c-1", "contacts": { "vk": "1" } },
        "content": { "text": "hi" }
    });
    let oversized = bytes(json!({
        "id": id("oversized"), "policy": "delivery_delay",
        "customer": { "id": "c-1", "contacts": { "vk": "123456" } },
        "content": { "text": "x".repeat(5000) }
    }));
    assert!(oversized.len() > 4096);
    let mut invalid_utf8 = format!(r#"{{"id": "{}", "policy": ""#, id("utf8")).into_bytes();
    invalid_utf8.extend_from_slice(b"delivery_delay\xff\xfe\", \"customer\": {\"id\": \"c-1\"}}");
    let no_contacts = with_customer(&id("no-contacts"), json!({ "id": "c-1", "contacts": {} }));
    let bad_phone = json!({
        "id": id("bad-phone"), "policy": "phone_check",
        "customer": { "id": "c-1", "contacts": { "sms": "8-916-CALL-ME" } },
        "content": { "text": "hi" }
    });
    // Each with its code and the field at fault (none for the body as a whole).
    let corpus: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
        ("malformed_json", None, cut_short.into_bytes()),
        ("invalid_field", Some("customer"), bytes(wrong_type)),
        ("missing_field", Some("policy"), bytes(no_policy)),
        ("unknown_policy", Some("policy"), bytes(unknown_policy)),
        ("body_too_large", None, oversized),
        ("invalid_utf8", None, invalid_utf8),
        (
            "no_reachable_channel",
            Some("customer.contacts"),
            no_contacts,
        ),
        (
            "invalid_contact",
            Some("customer.contacts.sms"),
            bytes(bad_phone),
        ),
    ];
    for (_, _, body) in &corpus {
        h.publish(body).await;
    }
    // The daemon keeps consuming after all that.
    let good = id("good");
    h.publish(&notification(&good, "c-1")).await;
    h.wait_received("vk", 1).await;
    let first = &h.received.on("vk")[0];
    assert_eq!(first["notification_id"], good.as_str());
    assert_eq!(first["step"], 1);

    let dead_letter_queue = h.intake.dead_letter_queue.clone();
    let mut dead = take_messages(&dead_letter_queue, corpus.len(), Duration::from_secs(10)).await;
    assert_eq!(
        dead.len(),
        corpus.len(),
        "every bad message is dead-lettered, once"
    );
    for (code, field, body) in &corpus {
        let at = dead
            .iter()
            .position(|d| &d.data == body)
            .unwrap_or_else(|| {
                panic!("the {code} message is in the dead-letter queue, byte for byte")
            });
        let headers = string_headers(&dead.remove(at));
        assert_eq!(
            headers.get("x-cascade-error-code").map(String::as_str),
            Some(*code),
            "headers of the {code} message: {headers:?}"
        );
        let sentence = headers.get("x-cascade-error").map(String::as_str);
        assert!(
            sentence.is_some_and(|s| !s.trim().is_empty()),
            "the {code} message says why: {headers:?}"
        );
        assert_eq!(
            headers.get("x-cascade-error-field").map(String::as_str),
            *field,
            "the field the {code} message names: {headers:?}"
        );
    }
    let extra = take_messages(&dead_letter_queue, 1, Duration::from_millis(300)).await;
    assert!(extra.is_empty(), "nothing else is dead-lettered");
    // Nothing bad was recorded or sent, and nothing was left in the intake queue.
    for suffix in ["no-contacts", "bad-phone", "oversized", "unknown-policy"] {
        assert!(
            h.daemon()
                .store
                .status(&id(suffix))
                .await
                .unwrap()
                .is_none(),
            "{suffix}"
        );
    }
    assert_eq!(h.received.count("vk") + h.received.count("sms"), 1);
    assert_eq!(ready_in(&h.intake.queue).await, 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_id_is_accepted_and_sent_once() {
    let (url, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("duplicate", &url, "", DELIVERY_DELAY);
    let mut h = Harness::start(cfg, received).await;
    let id = h.id("twice");
    let body = notification(&id, "c-1");

    h.publish(&body).await;
    h.publish(&body).await;
    h.wait_received("vk", 1).await;
    h.wait_sent(&id).await;
    // Once step 1 is out, the same id again.
    h.publish(&body).await;
    // A message published after the duplicates is handled after they were
    // delivered; the graceful stop then waits for every delivery in hand.
    let later = h.id("later");
    h.publish(&notification(&later, "c-2")).await;
    h.wait_received("vk", 2).await;
    let queue = h.intake.queue.clone();
    let store = h.daemon().store.clone();
    h.run.stop().await;

    let to_twice: Vec<Value> = h
        .received
        .on("vk")
        .into_iter()
        .filter(|b| b["notification_id"] == id.as_str())
        .collect();
    assert_eq!(to_twice.len(), 1, "step 1 went out once: {to_twice:?}");
    assert_eq!(to_twice[0]["step"], 1);
    let (_, timeline) = store.status(&id).await.unwrap().expect("recorded");
    let accepted = timeline
        .iter()
        .filter(|e| e.event.as_str() == "accepted")
        .count();
    assert_eq!(accepted, 1, "{timeline:?}");
    assert_eq!(
        timeline
            .iter()
            .filter(|e| e.event.as_str() == "sent")
            .count(),
        1
    );
    // All three copies were acknowledged, none handed back.
    assert_eq!(ready_in(&queue).await, 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receipts_api_refuses_what_it_must() {
    let (url, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("receipts-api", &url, "", DELIVERY_DELAY);
    let h = Harness::start(cfg, received).await;
    let id = h.id("n");
    h.publish(&notification(&id, "c-1")).await;
    h.wait_received("vk", 1).await;
    h.wait_sent(&id).await;

    let read = json!({ "id": id, "event": "read", "channel": "vk" });
    let (status, body) = h.post("/v1/receipts", None, Some(&read)).await;
    assert_eq!(status, 401, "no token: {body}");
    assert!(body["error"].is_string());
    let (status, _) = h
        .post("/v1/receipts", Some("not-the-token"), Some(&read))
        .await;
    assert_eq!(status, 401, "wrong token");
    let (status, _) = h
        .post(
            &format!("/v1/notifications/{id}/cancel"),
            Some("not-the-token"),
            None,
        )
        .await;
    assert_eq!(status, 401, "cancel with a wrong token");

    let (status, body) = h.receipt(&h.id("nobody"), "read").await;
    assert_eq!(status, 404, "unknown id: {body}");
    let (status, body) = h
        .post(
            &format!("/v1/notifications/{}/cancel", h.id("nobody")),
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 404, "cancel of an unknown id: {body}");
    for bad in ["Read", "", "read receipt", "прочитано", &"x".repeat(65)] {
        let (status, body) = h.receipt(&id, bad).await;
        assert_eq!(status, 400, "event {bad:?}: {body}");
        assert!(body["error"].is_string());
    }
    let (status, _) = h
        .post("/v1/receipts", Some(TOKEN), Some(&json!({ "id": id })))
        .await;
    assert_eq!(status, 400, "no event");

    // None of that was recorded: the cascade still waits on step 1.
    assert_eq!(h.outcome(&id).await, None);
    assert_eq!(h.events(&id).await, ["accepted", "sent"]);

    let (status, body) = h.receipt(&id, "delivered").await;
    assert_eq!((status, &body["status"]), (202, &json!("recorded")));
    let (status, body) = h.receipt(&id, "delivered").await;
    assert_eq!((status, &body["status"]), (200, &json!("already_recorded")));
    // `delivered` does not stop `delivery_delay` (stop_on = ["read"]).
    assert_eq!(h.outcome(&id).await, None);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_receipt_and_a_cancel_over_http_prevent_the_escalation() {
    let (url, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("receipts-stop", &url, "", DELIVERY_DELAY);
    let h = Harness::start(cfg, received).await;
    let read = h.id("read");
    let cancelled = h.id("cancelled");
    h.publish(&notification(&read, "c-1")).await;
    h.publish(&notification(&cancelled, "c-2")).await;
    h.wait_received("vk", 2).await;
    h.wait_sent(&read).await;
    h.wait_sent(&cancelled).await;

    let (status, body) = h.receipt(&read, "read").await;
    assert_eq!((status, &body["status"]), (202, &json!("recorded")));
    let (status, body) = h.receipt(&read, "read").await;
    assert_eq!((status, &body["status"]), (200, &json!("already_recorded")));
    let (status, body) = h
        .post(
            &format!("/v1/notifications/{cancelled}/cancel"),
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!((status, &body["status"]), (202, &json!("recorded")));

    // Past the 30 minutes, at the latest, both end, and no SMS goes out.
    h.clock.advance(31 * MIN);
    h.wait_outcome(&read, "completed", AT_ONCE).await;
    h.wait_outcome(&cancelled, "cancelled", AT_ONCE).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.received.count("sms"), 0);
    assert_eq!(h.received.count("vk"), 2);
    let words = h.events(&read).await;
    assert_eq!(
        words.iter().filter(|w| *w == "receipt").count(),
        1,
        "{words:?}"
    );
    assert_eq!(
        words.last().map(String::as_str),
        Some("completed"),
        "{words:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn a_read_receipt_completes_a_waiting_cascade_at_once() {
    let (url, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("read-at-once", &url, "", DELIVERY_DELAY);
    let h = Harness::start(cfg, received).await;
    let id = h.id("n");
    h.publish(&notification(&id, "c-1")).await;
    h.wait_received("vk", 1).await;
    h.wait_sent(&id).await;

    let (status, _) = h.receipt(&id, "read").await;
    assert_eq!(status, 202);
    // Without moving the clock: the receipt alone ends the cascade.
    h.wait_outcome(&id, "completed", AT_ONCE).await;
    assert_eq!(
        h.events(&id).await,
        ["accepted", "sent", "receipt", "completed"]
    );

    h.clock.advance(31 * MIN);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.received.count("sms"), 0, "no SMS after a read");
    let (status, body) = h.receipt(&id, "read").await;
    assert_eq!((status, &body["status"]), (200, &json!("already_recorded")));
    h.stop().await;
}

/// `GET /v1/notifications/<id>`: the state, the timeline and the receipts
/// as JSON, behind the `/v1` token, with contacts masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_api_shows_a_notification() {
    let (url, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("timeline-api", &url, "", DELIVERY_DELAY);
    let h = Harness::start(cfg, received).await;
    let id = h.id("n");
    h.publish(&notification(&id, "c-1")).await;
    h.wait_sent(&id).await;
    let path = format!("/v1/notifications/{id}");

    let (status, body) = h.get(&path, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], json!(id));
    assert_eq!(body["state"], json!("running"));
    assert_eq!(body["step"], json!(1));
    let sent = &body["timeline"][1];
    assert_eq!(
        (&sent["event"], &sent["step"], &sent["channel"]),
        (&json!("sent"), &json!(1), &json!("vk")),
        "{body}"
    );
    assert!(body["next_wake_up_ms"].as_i64().unwrap() > sent["at_ms"].as_i64().unwrap());
    assert!(
        body["next_wake_up"].as_str().unwrap().ends_with('Z'),
        "{body}"
    );

    let (status, _) = h.receipt(&id, "read").await;
    assert_eq!(status, 202);
    h.wait_outcome(&id, "completed", AT_ONCE).await;
    let (_, body) = h.get(&path, Some(TOKEN)).await;
    assert_eq!(body["state"], json!("completed"));
    assert!(body["receipts"]["read"].is_i64(), "{body}");
    assert_eq!(body["next_wake_up"], Value::Null);
    let events: Vec<&str> = body["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["accepted", "sent", "receipt", "completed"]);
    // The customer's contacts are not in it.
    assert!(!body.to_string().contains("9161234567"), "{body}");

    assert_eq!(h.get(&path, None).await.0, 401);
    assert_eq!(h.get(&path, Some("not-the-token")).await.0, 401);
    assert_eq!(h.get("/v1/notifications/nobody", Some(TOKEN)).await.0, 404);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_written_before_the_notification_arrives_prevents_every_send() {
    let (url, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("cancel-first", &url, "", DELIVERY_DELAY);
    let h = Harness::start(cfg, received).await;
    let (cancelled, read) = (h.id("cancelled"), h.id("read"));
    // The order was delivered before the delay notice was even enqueued.
    let mut r = redis().await;
    for (id, word) in [(&cancelled, "cancelled"), (&read, "read")] {
        let _: () = redis::cmd("HSET")
            .arg(format!("{}:{{{id}}}:receipts", h.cfg.name))
            .arg(word)
            .arg(1)
            .query_async(&mut r)
            .await
            .unwrap();
    }
    h.publish(&notification(&cancelled, "c-1")).await;
    h.publish(&notification(&read, "c-2")).await;
    h.wait_outcome(&cancelled, "cancelled", AT_ONCE).await;
    h.wait_outcome(&read, "completed", AT_ONCE).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.received.count("vk"), 0, "nothing is sent");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_cascade_expires_and_a_late_receipt_keeps_it_expiring() {
    let (url, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("expiry", &url, "", DELIVERY_DELAY);
    let h = Harness::start(cfg, received).await;
    let id = h.id("n");
    h.publish(&notification(&id, "c-1")).await;
    h.wait_sent(&id).await;
    let mut r = redis().await;
    let record = format!("{}:{{{id}}}:state", h.cfg.name);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&record)
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(ttl, -1, "a running cascade does not expire");
    // Stored compactly once the send's outcome is committed: tab-separated
    // state and entries, the notification without the id and policy name.
    let raw: String = redis::cmd("GET")
        .arg(&record)
        .query_async(&mut r)
        .await
        .unwrap();
    let stored = cascade::runtime::record::Record::parse(&raw).unwrap();
    assert!(stored.state.starts_with("0\t0\t0\t"), "{raw:?}");
    assert!(
        stored.timeline.lines().all(|l| !l.starts_with('{')),
        "{raw:?}"
    );
    assert!(!stored.notification.contains(&id), "{raw:?}");

    let (status, _) = h.receipt(&id, "read").await;
    assert_eq!(status, 202);
    h.wait_outcome(&id, "completed", AT_ONCE).await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&record)
        .query_async(&mut r)
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 3_600_000,
        "kept for the retention (1h): {ttl}"
    );

    // A receipt after the end is still recorded in the timeline, and the
    // record keeps expiring.
    let (status, _) = h.receipt(&id, "clicked").await;
    assert_eq!(status, 202);
    wait_until("the late receipt is in the timeline", AT_ONCE, async || {
        h.events(&id)
            .await
            .iter()
            .filter(|e| *e == "receipt")
            .count()
            == 2
    })
    .await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&record)
        .query_async(&mut r)
        .await
        .unwrap();
    assert!(ttl > 0, "still expiring after a late receipt: {ttl}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn a_cancel_ends_a_waiting_cascade_at_once() {
    let (url, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("cancel-at-once", &url, "", DELIVERY_DELAY);
    let h = Harness::start(cfg, received).await;
    let id = h.id("n");
    h.publish(&notification(&id, "c-1")).await;
    h.wait_received("vk", 1).await;
    h.wait_sent(&id).await;

    let (status, _) = h
        .post(&format!("/v1/notifications/{id}/cancel"), Some(TOKEN), None)
        .await;
    assert_eq!(status, 202);
    h.wait_outcome(&id, "cancelled", AT_ONCE).await;

    h.clock.advance(31 * MIN);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.received.count("sms"), 0, "no SMS after a cancel");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn a_failed_receipt_escalates_at_once() {
    let (url, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("failed-receipt", &url, "", DELIVERY_DELAY);
    let h = Harness::start(cfg, received).await;
    let id = h.id("n");
    h.publish(&notification(&id, "c-1")).await;
    h.wait_received("vk", 1).await;
    h.wait_sent(&id).await;

    let (status, _) = h.receipt(&id, "failed").await;
    assert_eq!(status, 202);
    // Without moving the clock: step 2 (SMS) goes out now.
    wait_until("the SMS step", AT_ONCE, async || {
        h.received.count("sms") == 1
    })
    .await;
    let sms = &h.received.on("sms")[0];
    assert_eq!(sms["notification_id"], id.as_str());
    assert_eq!(sms["step"], 2);
    assert_eq!(sms["contact"], "+79161234567");
    h.wait_outcome(&id, "exhausted", AT_ONCE).await;
    let words = h.events(&id).await;
    assert!(words.contains(&"send_failed".to_owned()), "{words:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_answer() {
    let (url, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("health", &url, "", DELIVERY_DELAY);
    let h = Harness::start(cfg, received).await;

    let res = h.http.get(h.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.text().await.unwrap(), "ok");

    wait_until("readiness", Duration::from_secs(10), async || {
        match h.http.get(h.admin_url("/readyz")).send().await {
            Ok(res) => res.status().as_u16() == 200,
            Err(_) => false,
        }
    })
    .await;
    let res = h.http.get(h.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, json!({ "rabbitmq": true, "redis": true }));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_customer_limit_defers_a_second_notification() {
    // One notification an hour per customer; step 1 waits longer than the
    // hour so that no escalation competes for the limit.
    let policy = "stop_on = [\"read\"]\nexpire_after = \"12h\"\n\n[limits]\nper_customer = \"1/1h\"\n\n\
                  [[steps]]\nchannel = \"vk\"\nwait = \"3h\"\n\n[[steps]]\nchannel = \"sms\"\n";
    let (url, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("limit", &url, "", policy);
    let h = Harness::start(cfg, received).await;
    let customer = format!("{}-customer", h.cfg.name);
    let first = h.id("first");
    let second = h.id("second");

    h.publish(&notification(&first, &customer)).await;
    h.wait_received("vk", 1).await;
    h.wait_sent(&first).await;
    let sent_at = h.clock.now_ms();
    h.publish(&notification(&second, &customer)).await;
    wait_until("the second one is deferred", AT_ONCE, async || {
        h.events(&second).await.contains(&"deferred".to_owned())
    })
    .await;
    let timeline = h.timeline(&second).await;
    let deferred = timeline
        .iter()
        .find(|e| e.event.as_str() == "deferred")
        .expect("deferred");
    assert_eq!(deferred.reason.as_deref(), Some("limit"), "{timeline:?}");
    let until = deferred.until_ms.expect("a deferral says until when");
    assert!(
        until >= sent_at + 59 * MIN && until <= sent_at + 61 * MIN,
        "deferred for about an hour: {} min",
        (until - sent_at) / MIN
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.received.count("vk"), 1, "the second waits for the limit");

    h.clock.advance(61 * MIN);
    h.wait_received("vk", 2).await;
    let vk = h.received.on("vk");
    assert_eq!(vk[1]["notification_id"], second.as_str());
    assert_eq!(vk[1]["step"], 1);
    // The fake saw the request; the send's outcome is committed just after.
    h.wait_sent(&second).await;
    let words = h.events(&second).await;
    assert_eq!(words, ["accepted", "deferred", "sent"]);
    assert_eq!(h.received.count("sms"), 0);
    h.stop().await;
}
