//! The `whatsapp` channel end to end: the daemon (real RabbitMQ and Redis)
//! sends through the fake Cloud API, classifies its answers, and records
//! delivered / read / failed from signed status webhooks. Step 2 of the
//! policies is the `sms` webhook channel of `common::fake_receiver`, so an
//! escalation shows up there.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

use cascade::dev::fakes::script::Scripted;
use cascade::dev::fakes::whatsapp::{FakeWhatsApp, Message, graph_error};

const MIN: i64 = 60_000;
const APP_SECRET: &str = "wa-app-secret";
const VERIFY_TOKEN: &str = "wa-verify-token";
const ACCESS_TOKEN: &str = "wa-access-token";
const PHONE_NUMBER_ID: &str = "106540352242922";

fn policy(first: &str, second: &str) -> String {
    format!(
        "stop_on = [\"read\"]\nexpire_after = \"12h\"\n\n[[steps]]\nchannel = \"{first}\"\nwait = \"30m\"\n\n[[steps]]\nchannel = \"{second}\"\n"
    )
}

/// One test's daemon, fake Cloud API, fake SMS receiver and clock. Dropping
/// it stops the daemon and deletes the test's queues and keys.
struct Harness {
    run: Running,
    sms: Received,
    wa: FakeWhatsApp,
}

wraps_running!(Harness);

impl Harness {
    async fn start(name: &str) -> Harness {
        let wa = FakeWhatsApp::start().await;
        let (url, sms) = fake_receiver(vec![]).await;
        // `delivery_delay`: free-form whatsapp, then SMS.
        // Customers' replies go to a helpdesk webhook on the same receiver.
        let replies =
            "[replies]\nsink = \"helpdesk\"\nlink_secret = \"a-replies-link-secret-long-enough\"\n";
        let cfg = TestConfig::new(name, &url, replies, &policy("whatsapp", "sms"));
        cfg.write(
            "channels/helpdesk.toml",
            &format!("kind = \"webhook\"\ncontact = \"none\"\nurl = \"{url}/helpdesk\"\ntimeout = \"2s\"\n"),
        );
        // `max_backoff` also caps a rate limit's cool-down: 2m lets Meta's
        // through (with 3 attempts, backoff never passes 400 ms).
        let channel = |extra: &str| {
            format!(
                "kind = \"whatsapp\"\nbase_url = \"{}\"\napi_version = \"v21.0\"\nphone_number_id = \"{PHONE_NUMBER_ID}\"\n\
                 access_token = \"{ACCESS_TOKEN}\"\napp_secret = \"{APP_SECRET}\"\nverify_token = \"{VERIFY_TOKEN}\"\n{extra}\
                 timeout = \"1s\"\n[retry]\nattempts = 3\nbackoff = \"200ms\"\nmax_backoff = \"2m\"\n",
                wa.base_url()
            )
        };
        cfg.write("channels/whatsapp.toml", &channel(""));
        cfg.write(
            "channels/whatsapp_tpl.toml",
            &channel("template = \"order_update\"\ntemplate_language = \"ru\"\n"),
        );
        cfg.write("policies/templated.toml", &policy("whatsapp_tpl", "sms"));
        // Both steps wait, so the second is still waiting when a late status comes.
        cfg.write(
            "policies/two_whatsapp.toml",
            &(policy("whatsapp", "whatsapp_tpl") + "wait = \"30m\"\n"),
        );
        Harness {
            run: Running::start(cfg).await.settle(Settle::Always),
            sms,
            wa,
        }
    }

    fn webhook(&self, channel: &str) -> String {
        self.url(&format!("/callbacks/whatsapp/{channel}"))
    }

    async fn publish(&self, id: &str, policy: &str) {
        self.run
            .publish(&json!({
                "id": id,
                "policy": policy,
                "customer": { "id": format!("c-{id}"), "contacts": { "whatsapp": "+7 916 123-45-67", "sms": "+79161234567" } },
                "content": { "text": "Заказ 1001 задерживается", "link": "https://shop.example.ru/orders/1001" }
            }))
            .await;
    }

    /// Waits until step 1 is recorded as sent; the accepted message.
    async fn sent(&self, id: &str) -> Message {
        self.wait_entry(id, "sent", Some(0)).await;
        self.wa
            .messages()
            .pop()
            .expect("the fake accepted a message")
    }

    async fn receipts(&self, id: &str) -> std::collections::HashMap<String, i64> {
        self.run.receipts(id).await
    }

    /// `cascade_callbacks_total{provider="whatsapp",result=…}` now.
    async fn callbacks(&self, result: &str) -> u64 {
        self.metric(
            "cascade_callbacks_total",
            &[("provider", "whatsapp"), ("result", result)],
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_message_goes_out_and_a_read_status_stops_the_cascade() {
    let h = Harness::start("wa-read").await;
    let id = h.id("n");
    h.publish(&id, "delivery_delay").await;
    let message = h.sent(&id).await;

    // What went to the Cloud API.
    let request = &h.wa.received()[0];
    assert_eq!(request.api_version, "v21.0");
    assert_eq!(request.phone_number_id, PHONE_NUMBER_ID);
    assert_eq!(
        request.authorization.as_deref(),
        Some(format!("Bearer {ACCESS_TOKEN}").as_str())
    );
    let body = &request.body;
    assert_eq!(body["messaging_product"], "whatsapp");
    assert_eq!(body["to"], "79161234567");
    assert_eq!(body["type"], "text");
    let text = body["text"]["body"].as_str().unwrap();
    assert!(text.starts_with("Заказ 1001 задерживается"));
    assert!(text.contains("https://shop.example.ru/orders/1001"));
    assert_eq!(body["biz_opaque_callback_data"], format!("{id}:0"));
    // The wamid is the provider message id.
    let sent = h.wait_entry(&id, "sent", Some(0)).await;
    assert_eq!(
        sent.provider_message_id.as_deref(),
        Some(message.wamid.as_str())
    );

    let hook = h.webhook("whatsapp");
    assert_eq!(
        h.wa.send_status(&hook, APP_SECRET, &message, "delivered")
            .await,
        200
    );
    wait_until("delivered", AT_ONCE, async || {
        h.receipts(&id).await.contains_key("delivered")
    })
    .await;
    assert_eq!(h.outcome(&id).await, None, "delivered does not stop it");
    assert_eq!(
        h.wa.send_status(&hook, APP_SECRET, &message, "read").await,
        200
    );
    h.wait_outcome(&id, "completed").await;

    h.clock.advance(31 * MIN);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(h.sms.count("sms"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_template_is_used() {
    let h = Harness::start("wa-template").await;
    let id = h.id("n");
    h.publish(&id, "templated").await;
    let message = h.sent(&id).await;
    assert_eq!(message.kind, "template");
    let t = &message.body["template"];
    assert_eq!(t["name"], "order_update");
    assert_eq!(t["language"]["code"], "ru");
    assert_eq!(t["components"][0]["type"], "body");
    assert_eq!(
        t["components"][0]["parameters"][0],
        json!({ "type": "text", "text": "Заказ 1001 задерживается" })
    );
    assert!(message.body.get("text").is_none());
    assert_eq!(message.body["biz_opaque_callback_data"], format!("{id}:0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verification_get_answers_the_challenge_only_to_the_right_token() {
    let h = Harness::start("wa-verify").await;
    let hook = h.webhook("whatsapp");
    assert_eq!(
        h.wa.verify(&hook, VERIFY_TOKEN, "1158201444").await,
        (200, "1158201444".to_owned())
    );
    assert_eq!(h.wa.verify(&hook, "guess", "1158201444").await.0, 403);
    let wrong_mode = h
        .http
        .get(&hook)
        .query(&[
            ("hub.mode", "unsubscribe"),
            ("hub.verify_token", VERIFY_TOKEN),
            ("hub.challenge", "1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_mode.status().as_u16(), 403);
    // Not a whatsapp channel.
    let other = format!("http://{}/callbacks/whatsapp/sms", h.daemon().http_addr);
    assert_eq!(h.wa.verify(&other, VERIFY_TOKEN, "1").await.0, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signature_is_refused_and_changes_nothing() {
    let h = Harness::start("wa-forged").await;
    let id = h.id("n");
    h.publish(&id, "delivery_delay").await;
    let message = h.sent(&id).await;
    let hook = h.webhook("whatsapp");
    let body = FakeWhatsApp::envelope(vec![FakeWhatsApp::status(&message, "read")]);
    let bytes = body.to_string().into_bytes();

    // Signed with another secret, not signed, or signed over other bytes.
    let forged = FakeWhatsApp::signature("not-the-secret", &bytes);
    assert_eq!(
        h.wa.deliver_raw(&hook, Some(&forged), bytes.clone()).await,
        403
    );
    assert_eq!(h.wa.deliver_raw(&hook, None, bytes.clone()).await, 403);
    let other = FakeWhatsApp::signature(APP_SECRET, b"{}");
    assert_eq!(
        h.wa.deliver_raw(&hook, Some(&other), bytes.clone()).await,
        403
    );
    let mut tampered = bytes.clone();
    tampered.push(b' ');
    let original = FakeWhatsApp::signature(APP_SECRET, &bytes);
    assert_eq!(
        h.wa.deliver_raw(&hook, Some(&original), tampered).await,
        403
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(h.receipts(&id).await.is_empty());
    assert_eq!(h.outcome(&id).await, None);

    // The same bytes, rightly signed, count.
    assert_eq!(h.wa.deliver_raw(&hook, Some(&original), bytes).await, 200);
    h.wait_outcome(&id, "completed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_out_of_order_and_unknown_wamids_are_handled() {
    let h = Harness::start("wa-order").await;
    let id = h.id("n");
    h.publish(&id, "delivery_delay").await;
    let message = h.sent(&id).await;
    let hook = h.webhook("whatsapp");

    // `read` overtakes `delivered`; then `read` comes again.
    let duplicates = h.callbacks("duplicate").await;
    assert_eq!(
        h.wa.send_status(&hook, APP_SECRET, &message, "read").await,
        200
    );
    h.wait_outcome(&id, "completed").await;
    assert_eq!(
        h.wa.send_status(&hook, APP_SECRET, &message, "delivered")
            .await,
        200
    );
    assert_eq!(
        h.wa.send_status(&hook, APP_SECRET, &message, "read").await,
        200
    );
    assert!(h.callbacks("duplicate").await > duplicates);
    let receipts = h.receipts(&id).await;
    assert!(receipts.contains_key("read") && receipts.contains_key("delivered"));
    // A `failed` after `read` of the same message is stale.
    assert_eq!(
        h.wa.send_status(&hook, APP_SECRET, &message, "failed")
            .await,
        200
    );
    assert!(!h.receipts(&id).await.contains_key("failed"));
    let events: Vec<String> = h
        .timeline(&id)
        .await
        .iter()
        .map(|e| e.event.as_str().to_owned())
        .collect();
    assert_eq!(
        events.iter().filter(|e| *e == "receipt").count(),
        2,
        "{events:?}"
    );

    // A wamid this daemon never sent, alone and in a batch with a known one.
    let unknown = h.callbacks("unknown").await;
    let stranger = Message {
        wamid: "wamid.NEVER-SENT".into(),
        body: json!({}),
        ..message.clone()
    };
    assert_eq!(
        h.wa.send_status(&hook, APP_SECRET, &stranger, "read").await,
        200
    );
    let batch = FakeWhatsApp::envelope(vec![
        FakeWhatsApp::status(&stranger, "delivered"),
        FakeWhatsApp::status(&message, "sent"),
    ]);
    assert_eq!(h.wa.deliver(&hook, APP_SECRET, &batch).await, 200);
    assert!(h.callbacks("unknown").await >= unknown + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_status_escalates_at_once() {
    let h = Harness::start("wa-failed").await;
    let id = h.id("n");
    h.publish(&id, "delivery_delay").await;
    let message = h.sent(&id).await;
    assert_eq!(
        h.wa.send_status(&h.webhook("whatsapp"), APP_SECRET, &message, "failed")
            .await,
        200
    );
    // No clock movement: the SMS goes at once.
    wait_until("the SMS step", AT_ONCE, async || h.sms.count("sms") == 1).await;
    let failed = h.wait_entry(&id, "send_failed", Some(0)).await;
    assert_eq!(failed.reason.as_deref(), Some("failed receipt"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_failure_of_an_earlier_step_does_not_skip_the_current_one() {
    let h = Harness::start("wa-stale").await;
    let id = h.id("n");
    h.publish(&id, "two_whatsapp").await;
    let first = h.sent(&id).await;
    h.clock.advance(31 * MIN);
    h.wait_entry(&id, "sent", Some(1)).await;
    let second = h.wa.messages().pop().unwrap();
    assert_ne!(first.wamid, second.wamid);
    assert_eq!(second.kind, "template");

    // Step 1's message is reported failed after step 2 went out.
    assert_eq!(
        h.wa.send_status(&h.webhook("whatsapp"), APP_SECRET, &first, "failed")
            .await,
        200
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(h.outcome(&id).await, None, "step 2 is still waiting");
    assert!(
        !h.timeline(&id)
            .await
            .iter()
            .any(|e| e.event.as_str() == "send_failed")
    );
    // Step 2's own failure counts: the cascade runs out of steps. Meta posts
    // every status of the app to one URL, so it arrives at the first
    // channel's webhook although the template channel sent it.
    assert_eq!(
        h.wa.send_status(&h.webhook("whatsapp"), APP_SECRET, &second, "failed")
            .await,
        200
    );
    h.wait_outcome(&id, "exhausted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_error_is_retried_then_sent() {
    let h = Harness::start("wa-transient").await;
    h.wa.script().then(Scripted::Transient, 1);
    let id = h.id("n");
    h.publish(&id, "delivery_delay").await;
    let failed = h.wait_entry(&id, "send_failed", Some(0)).await;
    assert!(
        failed.reason.as_deref().unwrap().contains("131000"),
        "{failed:?}"
    );
    h.clock.advance(1_000);
    h.sent(&id).await;
    assert_eq!(h.wa.received().len(), 2);
    assert_eq!(h.sms.count("sms"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_throughput_limit_is_retried_after_a_pause() {
    let h = Harness::start("wa-throughput").await;
    h.wa.script()
        .then(Scripted::RateLimited(Duration::from_secs(1)), 1);
    let id = h.id("n");
    h.publish(&id, "delivery_delay").await;
    let failed = h.wait_entry(&id, "send_failed", Some(0)).await;
    assert_eq!(failed.reason.as_deref(), Some("rate_limited"));
    assert!(
        failed.until_ms.unwrap() - failed.at_ms >= 1_000,
        "{failed:?}"
    );
    h.clock.advance(2_000);
    h.sent(&id).await;
    assert_eq!(h.wa.received().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_escalate_to_the_next_step() {
    let h = Harness::start("wa-exhausted").await;
    h.wa.script().then(Scripted::Transient, 3);
    let id = h.id("n");
    h.publish(&id, "delivery_delay").await;
    wait_until("the SMS step", Duration::from_secs(10), async || {
        h.clock.advance(500);
        h.sms.count("sms") == 1
    })
    .await;
    assert_eq!(h.wa.received().len(), 3);
    assert!(h.timeline(&id).await.iter().any(|e| {
        e.event.as_str() == "send_failed"
            && e.reason
                .as_deref()
                .unwrap_or("")
                .contains("gave up after 3")
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeliverable_number_escalates_at_once() {
    let h = Harness::start("wa-undeliverable").await;
    h.wa.script().then(Scripted::Permanent, 1);
    let id = h.id("n");
    h.publish(&id, "delivery_delay").await;
    wait_until("the SMS step", AT_ONCE, async || h.sms.count("sms") == 1).await;
    let failed = h.wait_entry(&id, "send_failed", Some(0)).await;
    assert!(
        failed.reason.as_deref().unwrap().contains("131026"),
        "{failed:?}"
    );
    assert_eq!(h.wa.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_engagement_without_a_template_escalates_and_says_why() {
    let h = Harness::start("wa-reengage").await;
    h.wa.answer_next(
        400,
        graph_error(
            131047,
            "Re-engagement message",
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
        ),
    );
    let id = h.id("n");
    h.publish(&id, "delivery_delay").await;
    wait_until("the SMS step", AT_ONCE, async || h.sms.count("sms") == 1).await;
    let failed = h.wait_entry(&id, "send_failed", Some(0)).await;
    let reason = failed.reason.unwrap();
    assert!(
        reason.contains("131047") && reason.contains("template"),
        "{reason}"
    );
    // Permanent, not misconfigured: the channel stays open for others.
    assert!(!reason.starts_with("misconfigured"), "{reason}");
    let second = h.id("second");
    h.publish(&second, "delivery_delay").await;
    h.sent(&second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_escalates_and_stops_the_channel() {
    let h = Harness::start("wa-token").await;
    h.wa.script().then(Scripted::Misconfigured, 1);
    let first = h.id("first");
    h.publish(&first, "delivery_delay").await;
    wait_until("the SMS step", AT_ONCE, async || h.sms.count("sms") == 1).await;
    let failed = h.wait_entry(&first, "send_failed", Some(0)).await;
    let reason = failed.reason.unwrap();
    assert!(
        reason.starts_with("misconfigured") && reason.contains("190"),
        "{reason}"
    );
    assert!(!reason.contains(ACCESS_TOKEN));
    // The circuit breaker keeps the next one away from the provider.
    let second = h.id("second");
    h.publish(&second, "delivery_delay").await;
    wait_until("the second SMS", AT_ONCE, async || h.sms.count("sms") == 2).await;
    assert_eq!(h.wa.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_after_sending_is_uncertain_and_not_resent() {
    let h = Harness::start("wa-timeout").await;
    h.wa.script()
        .then(Scripted::Slow(Duration::from_secs(3)), 1);
    let id = h.id("n");
    h.publish(&id, "delivery_delay").await;
    h.wait_entry(&id, "uncertain", Some(0)).await;
    h.clock.advance(2_000);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(h.wa.received().len(), 1);
    assert_eq!(h.sms.count("sms"), 0);
    assert_eq!(h.outcome(&id).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_reply_is_recorded_and_handed_to_the_helpdesk() {
    let h = Harness::start("wa-reply").await;
    let id = h.id("n");
    h.publish(&id, "delivery_delay").await;
    let sent = h.sent(&id).await;
    let inbound = |wamid: &str, context: Option<&str>, text: &str| {
        let mut message = json!({
            "from": sent.to, "id": wamid, "timestamp": "1763900100",
            "type": "text", "text": { "body": text },
        });
        if let Some(to) = context {
            message["context"] = json!({ "from": "15550783881", "id": to });
        }
        let mut body = FakeWhatsApp::envelope(vec![]);
        let value = &mut body["entry"][0]["changes"][0]["value"];
        value.as_object_mut().unwrap().remove("statuses");
        value["messages"] = json!([message]);
        body
    };
    // A message quoting nothing of ours: acknowledged, counted, not recorded.
    let stray = inbound("wamid.IN-stray", None, "Привет");
    assert_eq!(
        h.wa.deliver(&h.webhook("whatsapp"), APP_SECRET, &stray)
            .await,
        200
    );
    wait_until("the unmapped count", AT_ONCE, async || {
        h.callbacks("unmapped").await == 1
    })
    .await;
    // The reply to our message, delivered twice by Meta.
    let reply = inbound("wamid.IN-1", Some(&sent.wamid), "Можно завтра после обеда?");
    for _ in 0..2 {
        assert_eq!(
            h.wa.deliver(&h.webhook("whatsapp"), APP_SECRET, &reply)
                .await,
            200
        );
    }
    wait_until("the helpdesk's task", AT_ONCE, async || {
        h.sms.count("helpdesk") == 1
    })
    .await;
    assert!(h.receipts(&id).await.contains_key("replied"));
    let task = h.sms.on("helpdesk").remove(0);
    assert_eq!(task["reply"]["notification_id"], id.as_str(), "{task}");
    assert_eq!(task["reply"]["channel"], "whatsapp");
    assert_eq!(task["reply"]["text"], "Можно завтра после обеда?");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(h.sms.count("helpdesk"), 1, "handed over once");
}
