//! `POST /v1/notifications` end to end: the daemon started in-process
//! against the real RabbitMQ and Redis of this machine. What it accepts is
//! published to the intake queue and sent by the daemon's own consumer;
//! what it refuses (a whole batch for one bad item) never reaches the queue.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

struct Harness {
    run: Running,
    received: Received,
}

wraps_running!(Harness);

/// An answer: status, `Retry-After`, and the JSON body (`Null` if not JSON).
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

impl Harness {
    async fn start(cfg: TestConfig, received: Received) -> Harness {
        Harness {
            run: Running::start(cfg).await.strict(),
            received,
        }
    }

    /// `POST /v1/notifications` with `body` as it is, a content type and a token.
    async fn submit_raw(&self, body: Vec<u8>, content_type: &str, token: Option<&str>) -> Answer {
        let mut req = self
            .http
            .post(self.url("/v1/notifications"))
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.expect("the daemon answers");
        let status = res.status().as_u16();
        let retry_after = res
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = res.text().await.unwrap_or_default();
        Answer {
            status,
            retry_after,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    async fn submit(&self, body: &Value) -> Answer {
        self.submit_raw(
            body.to_string().into_bytes(),
            "application/json",
            Some(TOKEN),
        )
        .await
    }

    /// Waits until the fake receiver got `count` POSTs on `/vk`.
    async fn wait_vk(&self, count: usize) {
        wait_until(
            &format!("{count} POST(s) on /vk"),
            Duration::from_secs(10),
            async || self.received.count("vk") >= count,
        )
        .await;
    }

    /// Waits until `id`'s step 1 is recorded as sent.
    async fn wait_sent(&self, id: &str) {
        self.wait_entry(id, "sent", Some(0)).await;
    }

    /// The ids the fake VK receiver got a message for, in order.
    fn sent_ids(&self) -> Vec<String> {
        self.received
            .on("vk")
            .iter()
            .map(|b| b["notification_id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The value of `cascade_http_intake_total` or `cascade_intake_total`
    /// for one label set, from the admin listener's `/metrics`.
    async fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

fn good(id: &str) -> Value {
    serde_json::from_slice(&notification(id, "c-1")).unwrap()
}

async fn started(name: &str) -> Harness {
    let (url, received) = fake_receiver(vec![]).await;
    Harness::start(TestConfig::new(name, &url, "", DELIVERY_DELAY), received).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_notification_and_a_batch_are_accepted_and_sent() {
    let h = started("post-ok").await;
    let one = h.id("one");
    let a = h.submit(&good(&one)).await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(a.body, json!({ "accepted": [one] }));
    h.wait_vk(1).await;

    let (two, three) = (h.id("two"), h.id("three"));
    let a = h.submit(&json!([good(&two), good(&three)])).await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(a.body, json!({ "accepted": [two, three] }));
    h.wait_vk(3).await;
    let mut sent = h.sent_ids();
    sent.sort();
    let mut want = vec![one.clone(), two.clone(), three.clone()];
    want.sort();
    assert_eq!(sent, want);
    // Started by the daemon's consumer, as any message on the queue.
    for id in [&one, &two, &three] {
        h.wait_sent(id).await;
    }
    assert_eq!(
        h.metric("cascade_http_intake_total{result=\"accepted\"}")
            .await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_item_refuses_the_whole_batch_and_names_its_field() {
    let h = started("post-bad").await;
    let fine = h.id("fine");
    let mut wrong_type = good(&h.id("wrong-type"));
    wrong_type["customer"]["contacts"]["sms"] = json!([1]);
    let mut unknown_policy = good(&h.id("unknown-policy"));
    unknown_policy["policy"] = json!("no_such_policy");
    let a = h
        .submit(&json!([good(&fine), wrong_type, unknown_policy]))
        .await;
    assert_eq!(a.status, 400, "{}", a.body);
    let b = &a.body;
    assert_eq!(b["code"], "invalid_field", "{b}");
    assert_eq!(b["index"], 1, "{b}");
    assert_eq!(b["field"], "customer.contacts.sms", "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("customer.contacts.sms")
    );
    let errors = b["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{b}");
    assert_eq!(errors[1]["code"], "unknown_policy");
    assert_eq!(errors[1]["index"], 2);
    assert_eq!(errors[1]["field"], "policy");

    // One object: the same error without an index; not JSON: malformed_json.
    let mut no_customer_id = good(&h.id("single"));
    no_customer_id["customer"] = json!({ "contacts": { "vk": "1" } });
    let a = h.submit(&no_customer_id).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["code"], "missing_field", "{}", a.body);
    assert_eq!(a.body["field"], "customer.id", "{}", a.body);
    assert!(a.body.get("index").is_none(), "{}", a.body);
    let a = h
        .submit_raw(b"{\"id\": ".to_vec(), "application/json", Some(TOKEN))
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["code"], "malformed_json", "{}", a.body);
    let a = h
        .submit_raw(b"[{}, ".to_vec(), "application/json", Some(TOKEN))
        .await;
    assert_eq!((a.status, &a.body["code"]), (400, &json!("malformed_json")));

    // A good one submitted after them is sent; the good item of the refused
    // batch never was: nothing of that batch reached the queue.
    let after = h.id("after");
    assert_eq!(h.submit(&good(&after)).await.status, 202);
    h.wait_vk(1).await;
    h.wait_sent(&after).await;
    assert_eq!(h.sent_ids(), [after]);
    assert!(h.timeline(&fine).await.is_empty());
    assert_eq!(
        h.metric("cascade_http_intake_total{result=\"invalid\"}")
            .await,
        4.0
    );
}

/// A token given to a system that records receipts (a CRM) cannot send
/// notifications: only the callers in `http.intake_callers` may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_intake_callers_may_submit() {
    const CRM_TOKEN: &str = "crm-token-for-receipts-only-0123";
    let (url, received) = fake_receiver(vec![]).await;
    let extra = format!("[http.receipt_tokens]\ncrm = \"{CRM_TOKEN}\"\n");
    let h = Harness::start(
        TestConfig::new("post-scope", &url, &extra, DELIVERY_DELAY),
        received,
    )
    .await;
    let body = good(&h.id("from-crm")).to_string().into_bytes();
    let a = h
        .submit_raw(body, "application/json", Some(CRM_TOKEN))
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(
        a.body["error"]
            .as_str()
            .unwrap()
            .contains("http.intake_callers"),
        "{}",
        a.body
    );
    // The CRM's token still records receipts (here: an unknown id, 404 past the token check).
    let receipt = h
        .http
        .post(h.url("/v1/receipts"))
        .bearer_auth(CRM_TOKEN)
        .json(&json!({ "id": h.id("nothing"), "event": "read" }))
        .send()
        .await
        .unwrap();
    assert_eq!(receipt.status(), 404);
    // The shared token is an intake caller: its notification is the only send.
    let shared = h.id("from-shared");
    assert_eq!(h.submit(&good(&shared)).await.status, 202);
    h.wait_vk(1).await;
    assert_eq!(h.sent_ids(), [shared]);
    assert_eq!(
        h.metric("cascade_http_intake_total{result=\"forbidden\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_content_type_and_size_are_checked_first() {
    let h = started("post-guard").await;
    let body = good(&h.id("guarded")).to_string().into_bytes();
    let json = "application/json";

    let a = h.submit_raw(body.clone(), json, None).await;
    assert_eq!(a.status, 401);
    let a = h.submit_raw(body.clone(), json, Some("wrong-token")).await;
    assert_eq!(a.status, 401);
    let a = h.submit_raw(body.clone(), "text/plain", Some(TOKEN)).await;
    assert_eq!(a.status, 415);
    assert_eq!(a.body["code"], "unsupported_media_type");

    // Just over the route's 1 MiB.
    let mut big = good(&h.id("big"));
    big["padding"] = json!("x".repeat(cascade::http::MAX_REQUEST_BYTES));
    let a = h
        .submit_raw(big.to_string().into_bytes(), json, Some(TOKEN))
        .await;
    assert_eq!(a.status, 413);
    assert_eq!(a.body["code"], "body_too_large");

    let too_many: Vec<Value> = (0..=cascade::http::MAX_BATCH)
        .map(|i| good(&h.id(&format!("n{i}"))))
        .collect();
    let a = h.submit(&json!(too_many)).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["code"], "invalid_field", "{}", a.body);

    // None of it was published: a good one afterwards is the only send.
    let after = h.id("after");
    assert_eq!(h.submit(&good(&after)).await.status, 202);
    h.wait_vk(1).await;
    assert_eq!(h.sent_ids(), [after]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_id_is_accepted_again_and_sent_once() {
    let h = started("post-twice").await;
    let id = h.id("twice");
    assert_eq!(h.submit(&good(&id)).await.status, 202);
    h.wait_sent(&id).await;
    let a = h.submit(&good(&id)).await;
    assert_eq!(a.status, 202);
    assert_eq!(a.body, json!({ "accepted": [id] }));
    let series = "cascade_intake_total{result=\"duplicate\",code=\"\"}";
    wait_until("the worker counts a duplicate", AT_ONCE, async || {
        h.metric(series).await == 1.0
    })
    .await;
    assert_eq!(h.sent_ids(), [id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_broker_the_answer_is_503_with_retry_after() {
    let (url, received) = fake_receiver(vec![]).await;
    // Nothing listens on port 1.
    let cfg = TestConfig::with_amqp(
        "post-down",
        &url,
        "url = \"amqp://guest:guest@127.0.0.1:1/%2f\"",
        "",
        DELIVERY_DELAY,
    );
    let h = Harness::start(cfg, received).await;
    for _ in 0..2 {
        let a = h.submit(&good(&h.id("down"))).await;
        assert_eq!(a.status, 503, "{}", a.body);
        assert_eq!(a.body["code"], "broker_unavailable");
        assert!(a.body["message"].as_str().unwrap().contains("RabbitMQ"));
        assert_eq!(
            a.retry_after.as_deref(),
            Some(cascade::http::RETRY_AFTER_SECS.to_string().as_str())
        );
    }
    assert_eq!(
        h.metric("cascade_http_intake_total{result=\"broker_unavailable\"}")
            .await,
        2.0
    );
}

/// This test's publisher connections, as RabbitMQ lists them.
async fn publisher_connections(queue: &str) -> Vec<String> {
    let prefix = format!("cascade http-intake {queue} ");
    tokio::task::spawn_blocking(move || connections_named(&prefix))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publisher_connection_serves_every_request_and_is_opened_again_when_closed() {
    let h = started("post-reopen").await;
    let queue = h.intake.queue.clone();
    for i in 0..3 {
        assert_eq!(
            h.submit(&good(&h.id(&format!("before{i}")))).await.status,
            202
        );
    }
    let open = publisher_connections(&queue).await;
    assert_eq!(open.len(), 1, "one connection for every request: {open:?}");

    let pid = open[0].clone();
    tokio::task::spawn_blocking(move || {
        rabbitmqctl(&["close_connection", &pid, "closed by the test"])
    })
    .await
    .unwrap();
    // The daemon may learn of the close only from the next publish (a 503,
    // retried as a client would); a new connection takes the one after.
    let after = h.id("after");
    let mut answers = Vec::new();
    wait_until(
        "a 202 after the connection was closed",
        AT_ONCE,
        async || {
            let a = h.submit(&good(&after)).await;
            answers.push(a.status);
            a.status == 202
        },
    )
    .await;
    assert!(
        answers.iter().all(|s| *s == 202 || *s == 503),
        "{answers:?}"
    );
    h.wait_vk(4).await;
    h.wait_sent(&after).await;
    let reopened = publisher_connections(&queue).await;
    assert_eq!(reopened.len(), 1, "{reopened:?}");
    assert_ne!(reopened, open);
}
