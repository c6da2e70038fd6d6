//! The `vk` channel end to end: the daemon (real RabbitMQ and Redis of this
//! machine, own queues and key prefix per test) sends through the fake VK
//! API, and the fake delivers Callback API events back to the daemon.
//! `sms` is a webhook channel to a fake receiver, the next step of
//! `delivery_delay`: VK (wait 30 min) → SMS.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

use cascade::core::Entry;
use cascade::dev::fakes::script::Scripted;
use cascade::dev::fakes::vk::FakeVk;
use cascade::runtime::clock::Clock;

const MIN: i64 = 60_000;
const SECRET: &str = "vk-callback-secret";
const CONFIRMATION: &str = "c0nf1rm-me";
const TOKEN_VK: &str = "vk-community-token";
const LINK: &str = "https://shop.example.ru/orders/1001";
/// The `[retry]` backoff: retries wait 30–60 s of (virtual) time.
const BACKOFF: &str = "1m";

/// One test's daemon, fakes and clock. Dropping it (also when the test
/// panics) stops the daemon and deletes the test's queues and Redis keys.
struct Harness {
    run: Running,
    vk: FakeVk,
    sms: Received,
}

wraps_running!(Harness);

impl Harness {
    /// `delivery_delay` with VK through the fake (`timeout` per send) and
    /// `policy` as the policy file.
    async fn start(name: &str, policy: &str, timeout: &str) -> Harness {
        let vk = FakeVk::start().await.with_group_id(4242);
        let (receiver, sms) = fake_receiver(vec![]).await;
        // Customers' replies go to a helpdesk webhook on the same receiver.
        let replies =
            "[replies]\nsink = \"helpdesk\"\nlink_secret = \"a-replies-link-secret-long-enough\"\n";
        let cfg = TestConfig::new(name, &receiver, replies, policy);
        cfg.write(
            "channels/helpdesk.toml",
            &format!("kind = \"webhook\"\ncontact = \"none\"\nurl = \"{receiver}/helpdesk\"\ntimeout = \"2s\"\n"),
        );
        cfg.write(
            "channels/vk.toml",
            &format!(
                "kind = \"vk\"\nbase_url = \"{}\"\naccess_token = \"{TOKEN_VK}\"\ngroup_id = \"{}\"\n\
                 callback_secret = \"{SECRET}\"\nconfirmation = \"{CONFIRMATION}\"\ntimeout = \"{timeout}\"\n\
                 [retry]\nattempts = 3\nbackoff = \"{BACKOFF}\"\nmax_backoff = \"{BACKOFF}\"\n",
                vk.base_url(),
                vk.group_id()
            ),
        );
        Harness {
            run: Running::start(cfg).await.settle(Settle::Never),
            vk,
            sms,
        }
    }

    /// The daemon's Callback API address for the `vk` channel.
    fn callback_url(&self) -> String {
        self.url("/callbacks/vk/vk")
    }

    /// Publishes a `delivery_delay` notification to VK peer `peer`.
    async fn publish(&self, id: &str, peer: i64) {
        self.run
            .publish(&json!({
                "id": id,
                "policy": "delivery_delay",
                "customer": { "id": format!("c-{peer}"), "contacts": { "vk": peer.to_string(), "sms": "+79161234567" } },
                "content": { "text": "Заказ 1001 задерживается", "link": LINK }
            }))
            .await;
    }

    /// Waits until the timeline of `id` holds `n` entries `event`.
    async fn wait_events(&self, id: &str, event: &str, n: usize) {
        self.wait_entries(id, event, n).await;
    }

    async fn wait_sms(&self, n: usize) {
        wait_until(&format!("{n} SMS"), AT_ONCE, async || {
            self.sms.count("sms") >= n
        })
        .await;
    }

    /// The receipts hash of a notification.
    async fn receipts(&self, id: &str) -> std::collections::HashMap<String, String> {
        self.run.receipts(id).await
    }

    /// The fake's message ids, in order.
    fn message_ids(&self) -> Vec<i64> {
        self.vk.messages().iter().map(|m| m.message_id).collect()
    }

    /// Delivers an event; the daemon's status and body.
    async fn deliver(&self, event: &Value) -> (u16, String) {
        self.vk.deliver(&self.callback_url(), event).await
    }

    /// Stops the daemon gracefully; `Drop` then cleans up.
    async fn stop(mut self) {
        self.run.stop().await;
    }
}

/// The `send_failed` reasons of a timeline.
fn failures(timeline: &[Entry]) -> Vec<String> {
    timeline
        .iter()
        .filter(|e| e.event.as_str() == "send_failed")
        .filter_map(|e| e.reason.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_goes_out_with_peer_text_link_and_a_stable_random_id() {
    let h = Harness::start("vk-ok", DELIVERY_DELAY, "5s").await;
    // A fixed id (the queue and key prefix are this test's own), so the
    // random_id can be a fixed vector: see tests/provider_ids.rs.
    let id = "order-1001".to_owned();
    h.publish(&id, 123456).await;
    h.wait_events(&id, "sent", 1).await;

    let requests = h.vk.received();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.access_token.as_deref(), Some(TOKEN_VK));
    assert_eq!(r.v.as_deref(), Some("5.199"));
    assert_eq!(r.peer_id, Some(123456));
    assert_eq!(
        r.message.as_deref(),
        Some(format!("Заказ 1001 задерживается\n{LINK}").as_str())
    );
    assert_eq!(
        r.random_id,
        Some(1_898_531_390),
        "SHA-256 of \"order-1001:0\""
    );

    let sent: Vec<Entry> = h
        .timeline(&id)
        .await
        .into_iter()
        .filter(|e| e.event.as_str() == "sent")
        .collect();
    assert_eq!(sent[0].provider_message_id.as_deref(), Some("1001"));
    assert_eq!(sent[0].channel.as_deref(), Some("vk"));
    // VK callbacks find it again by peer and message id watermark; no
    // per-message key is kept for VK (it would only cost Redis memory).
    let store = &h.daemon().store;
    assert_eq!(store.provider_message("vk", "1001").await.unwrap(), None);
    let now = h.clock.now_ms();
    let read_up_to =
        |watermark: i64, at: i64| store.peer_messages_up_to("vk", "123456", watermark, at);
    assert_eq!(read_up_to(1001, now).await.unwrap(), vec![(id.clone(), 0)]);
    assert_eq!(
        read_up_to(1000, now).await.unwrap(),
        vec![],
        "below the watermark"
    );
    // Kept by the day it was sent, and looked for as long as the cascade is
    // kept (this test's retention is 1 h: today and the day before).
    const DAY: i64 = 86_400_000;
    assert_eq!(
        read_up_to(1001, now + DAY).await.unwrap(),
        vec![(id.clone(), 0)]
    );
    assert_eq!(
        read_up_to(1001, now + 3 * DAY).await.unwrap(),
        vec![],
        "past the retention"
    );
    settle().await;
    assert_eq!(h.sms.count("sms"), 0, "VK went out: no SMS before the wait");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_escalate_to_sms_at_once() {
    let h = Harness::start("vk-perm", DELIVERY_DELAY, "5s").await;
    // 901: the user never wrote to the community; 902: privacy; 18: deleted.
    for (n, code) in [901, 902, 18].into_iter().enumerate() {
        h.vk.error_next(code);
        let id = h.id(&format!("perm-{code}"));
        h.publish(&id, 100 + code).await;
        h.wait_sms(n + 1).await;
        let timeline = h.timeline(&id).await;
        let reasons = failures(&timeline);
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(
            reasons[0].starts_with(&format!("VK error {code}: ")),
            "{reasons:?}"
        );
        let sms = h.sms.on("sms");
        assert_eq!(sms[n]["notification_id"], id.as_str());
        assert_eq!(sms[n]["step"], 2);
    }
    assert_eq!(h.vk.messages().len(), 0);
    assert_eq!(h.vk.received().len(), 3, "no retries of a permanent error");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_escalates_and_stops_the_channel_for_everyone() {
    let h = Harness::start("vk-conf", DELIVERY_DELAY, "5s").await;
    h.vk.error_next(27); // group authorization failed
    let first = h.id("conf-1");
    h.publish(&first, 201).await;
    h.wait_sms(1).await;
    let reasons = failures(&h.timeline(&first).await);
    assert!(
        reasons[0].starts_with("misconfigured: VK error 27"),
        "{reasons:?}"
    );

    // The circuit is open: the next notification goes to SMS without a VK call.
    let second = h.id("conf-2");
    h.publish(&second, 202).await;
    h.wait_sms(2).await;
    let reasons = failures(&h.timeline(&second).await);
    assert!(reasons[0].contains("circuit open"), "{reasons:?}");
    assert_eq!(h.vk.received().len(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_wait_then_send() {
    let h = Harness::start("vk-rate", DELIVERY_DELAY, "5s").await;
    h.vk.script()
        .then(Scripted::RateLimited(Duration::from_secs(1)), 1);
    let id = h.id("rate");
    h.publish(&id, 301).await;
    h.wait_events(&id, "send_failed", 1).await;
    let timeline = h.timeline(&id).await;
    assert_eq!(failures(&timeline), ["rate_limited"]);
    settle().await;
    assert_eq!(h.vk.received().len(), 1, "no retry before the backoff");

    h.clock.advance(MIN + 1_000);
    h.wait_events(&id, "sent", 1).await;
    let requests = h.vk.received();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].random_id, requests[1].random_id);
    assert_eq!(h.vk.messages().len(), 1);
    assert_eq!(h.sms.count("sms"), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_retry_with_the_same_random_id_then_send() {
    let h = Harness::start("vk-trans", DELIVERY_DELAY, "5s").await;
    h.vk.script().then(Scripted::Transient, 1); // VK error 10
    h.vk.answer_next(502, json!({ "error": "Bad Gateway" })); // before the script
    let id = "order-1002".to_owned(); // fixed, as in the test above
    h.publish(&id, 401).await;

    h.wait_events(&id, "send_failed", 1).await;
    h.clock.advance(MIN + 1_000);
    h.wait_events(&id, "send_failed", 2).await;
    h.clock.advance(MIN + 1_000);
    h.wait_events(&id, "sent", 1).await;

    let reasons = failures(&h.timeline(&id).await);
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0], "HTTP 502");
    assert!(
        reasons[1].starts_with("VK error 10: Internal server error"),
        "{reasons:?}"
    );
    let requests = h.vk.received();
    assert_eq!(requests.len(), 3);
    let random_ids: Vec<Option<i64>> = requests.iter().map(|r| r.random_id).collect();
    // SHA-256 of "order-1002:0", on every attempt.
    assert_eq!(random_ids, vec![Some(1_821_871_158); 3]);
    assert_eq!(h.vk.messages().len(), 1, "VK keeps one message");
    assert_eq!(h.sms.count("sms"), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_used_up_escalate_to_sms() {
    let h = Harness::start("vk-exh", DELIVERY_DELAY, "5s").await;
    h.vk.script().then(Scripted::Transient, 3); // attempts = 3
    let id = h.id("exh");
    h.publish(&id, 501).await;
    for n in 1..=2 {
        h.wait_events(&id, "send_failed", n).await;
        h.clock.advance(MIN + 1_000);
    }
    h.wait_sms(1).await;
    let reasons = failures(&h.timeline(&id).await);
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[2].ends_with("gave up after 3 attempts"),
        "{reasons:?}"
    );
    assert_eq!(h.vk.received().len(), 3);
    assert_eq!(h.vk.messages().len(), 0);
    assert_eq!(h.sms.on("sms")[0]["notification_id"], id.as_str());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncertain_send_is_resent_and_vk_keeps_one_message() {
    // VK keeps the message but answers after the 1 s timeout.
    let h = Harness::start("vk-amb", DELIVERY_DELAY, "1s").await;
    h.vk.script()
        .then(Scripted::Slow(Duration::from_millis(2_500)), 1);
    let id = h.id("amb");
    h.publish(&id, 601).await;
    h.wait_events(&id, "send_failed", 1).await;
    let reasons = failures(&h.timeline(&id).await);
    assert!(
        reasons[0].starts_with("no answer after sending"),
        "{reasons:?}"
    );
    h.clock.advance(MIN + 1_000);
    h.wait_events(&id, "sent", 1).await;

    let requests = h.vk.received();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].random_id, requests[1].random_id);
    let messages = h.vk.messages();
    assert_eq!(messages.len(), 1, "the resend made no second message");
    let sent: Vec<Entry> = h
        .timeline(&id)
        .await
        .into_iter()
        .filter(|e| e.event.as_str() == "sent")
        .collect();
    assert_eq!(
        sent[0].provider_message_id,
        Some(messages[0].message_id.to_string())
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_stops_the_cascade_and_without_it_the_sms_goes_after_the_wait() {
    let h = Harness::start("vk-e2e", DELIVERY_DELAY, "5s").await;
    let read = h.id("read");
    let unread = h.id("unread");
    h.publish(&read, 701).await;
    h.wait_events(&read, "sent", 1).await;
    h.publish(&unread, 702).await;
    h.wait_events(&unread, "sent", 1).await;
    let sent = h.vk.messages();
    let to_701 = sent.iter().find(|m| m.peer_id == 701).unwrap();

    // The customer of 701 reads everything up to our message.
    let event = h.vk.message_read(SECRET, 701, to_701.message_id);
    assert_eq!(h.deliver(&event).await, (200, "ok".to_owned()));
    h.wait_outcome(&read, "completed").await;
    let receipts = h.receipts(&read).await;
    assert!(receipts.contains_key("read"), "{receipts:?}");
    let receipt = h
        .timeline(&read)
        .await
        .into_iter()
        .find(|e| e.event.as_str() == "receipt")
        .unwrap();
    assert_eq!(receipt.reason.as_deref(), Some("read"));
    assert_eq!(receipt.channel.as_deref(), Some("vk"));
    assert!(h.receipts(&unread).await.is_empty(), "another peer's read");

    h.clock.advance(31 * MIN);
    h.wait_sms(1).await;
    h.wait_outcome(&unread, "exhausted").await;
    settle().await;
    let sms = h.sms.on("sms");
    assert_eq!(sms.len(), 1, "only the unread one escalates");
    assert_eq!(sms[0]["notification_id"], unread.as_str());
    assert_eq!(h.outcome(&read).await, Some("completed"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watermark_reads_every_earlier_message_to_the_peer() {
    let h = Harness::start("vk-mark", DELIVERY_DELAY, "5s").await;
    let (a, b, c) = (h.id("a"), h.id("b"), h.id("c"));
    for id in [&a, &b, &c] {
        h.publish(id, 801).await;
        h.wait_events(id, "sent", 1).await;
    }
    let ids = h.message_ids();
    // Read up to the second message: the first two are read, the third is not.
    let event = h.vk.message_read(SECRET, 801, ids[1]);
    assert_eq!(h.deliver(&event).await.0, 200);
    h.wait_outcome(&a, "completed").await;
    h.wait_outcome(&b, "completed").await;
    settle().await;
    assert_eq!(h.outcome(&c).await, None, "a later message stays unread");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_callback_is_refused_and_changes_nothing() {
    let h = Harness::start("vk-forge", DELIVERY_DELAY, "5s").await;
    let id = h.id("forge");
    h.publish(&id, 901).await;
    h.wait_events(&id, "sent", 1).await;
    let message_id = h.message_ids()[0];

    let wrong = h.vk.message_read("not-the-secret", 901, message_id);
    assert_eq!(h.deliver(&wrong).await.0, 403);
    let mut missing = h.vk.message_read(SECRET, 901, message_id);
    missing.as_object_mut().unwrap().remove("secret");
    assert_eq!(h.deliver(&missing).await.0, 403);
    let other = FakeVk::start().await.with_group_id(777);
    let other_community = other.message_read(SECRET, 901, message_id);
    assert_eq!(h.deliver(&other_community).await.0, 403);
    let (status, _) =
        h.vk.deliver(
            &h.url("/callbacks/vk/nope"),
            &h.vk.message_read(SECRET, 901, message_id),
        )
        .await;
    assert_eq!(
        status, 403,
        "no such channel: answered as a wrong secret is"
    );

    settle().await;
    assert!(h.receipts(&id).await.is_empty());
    assert!(!h.events(&id).await.contains(&"receipt".to_owned()));
    // The cascade goes on as if nothing came.
    h.clock.advance(31 * MIN);
    h.wait_sms(1).await;
    h.wait_outcome(&id, "exhausted").await;

    // A forged event was not remembered: the authentic one with the same
    // event_id still counts (late, after the SMS).
    missing["secret"] = json!(SECRET);
    assert_eq!(h.deliver(&missing).await, (200, "ok".to_owned()));
    let receipts = h.receipts(&id).await;
    assert!(receipts.contains_key("read"), "{receipts:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_event_id_is_ignored() {
    let h = Harness::start("vk-dup", DELIVERY_DELAY, "5s").await;
    // An event that would read anything up to message 5000 of peer 1001,
    // delivered before anything was sent to that peer.
    let early = h.vk.message_read(SECRET, 1001, 5_000);
    assert_eq!(h.deliver(&early).await, (200, "ok".to_owned()));

    let id = h.id("dup");
    h.publish(&id, 1001).await;
    h.wait_events(&id, "sent", 1).await;
    // VK redelivers the same event: acknowledged, and nothing is recorded.
    assert_eq!(h.deliver(&early).await, (200, "ok".to_owned()));
    settle().await;
    assert!(h.receipts(&id).await.is_empty());

    // A new event (new event_id) with the same content is applied.
    let fresh = h.vk.message_read(SECRET, 1001, 5_000);
    assert_eq!(h.deliver(&fresh).await, (200, "ok".to_owned()));
    h.wait_outcome(&id, "completed").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_reply_records_replied() {
    let policy = "stop_on = [\"read\", \"replied\"]\n\n[[steps]]\nchannel = \"vk\"\nwait = \"30m\"\n\n[[steps]]\nchannel = \"sms\"\n";
    let h = Harness::start("vk-reply", policy, "5s").await;
    let (first, second) = (h.id("first"), h.id("second"));
    for id in [&first, &second] {
        h.publish(id, 1101).await;
        h.wait_events(id, "sent", 1).await;
    }
    // The community's own message (out = 1) is no reply.
    let mut own = h.vk.message_new(SECRET, 1101, "Мы на связи");
    own["object"]["message"]["out"] = json!(1);
    own["object"]["message"]["from_id"] = json!(-h.vk.group_id());
    assert_eq!(h.deliver(&own).await, (200, "ok".to_owned()));
    settle().await;
    assert!(h.receipts(&second).await.is_empty());

    let reply = h.vk.message_new(SECRET, 1101, "Спасибо, жду");
    assert_eq!(h.deliver(&reply).await, (200, "ok".to_owned()));
    h.wait_outcome(&second, "completed").await;
    let receipts = h.receipts(&second).await;
    assert!(receipts.contains_key("replied"), "{receipts:?}");
    assert!(
        h.receipts(&first).await.is_empty(),
        "only the latest message is replied to"
    );
    // The helpdesk has the customer's words, and nothing of the
    // community's own message.
    wait_until("the helpdesk's task", AT_ONCE, async || {
        h.sms.count("helpdesk") == 1
    })
    .await;
    let task = h.sms.on("helpdesk").remove(0);
    assert_eq!(task["reply"]["notification_id"], second.as_str(), "{task}");
    assert_eq!(task["reply"]["channel"], "vk");
    assert_eq!(task["reply"]["text"], "Спасибо, жду");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmation_unknown_messages_and_unknown_events_are_answered() {
    let h = Harness::start("vk-misc", DELIVERY_DELAY, "5s").await;
    assert_eq!(
        h.deliver(&h.vk.confirmation()).await,
        (200, CONFIRMATION.to_owned())
    );
    // A read of messages this daemon never sent.
    let stranger = h.vk.message_read(SECRET, 1201, 99_999);
    assert_eq!(h.deliver(&stranger).await, (200, "ok".to_owned()));
    // An event kind the daemon does not use.
    let typing = h.vk.event(
        "message_typing_state",
        json!({ "state": "typing", "from_id": 1201, "to_id": -h.vk.group_id() }),
        SECRET,
    );
    assert_eq!(h.deliver(&typing).await, (200, "ok".to_owned()));
    // An authentic event with an unreadable object is acknowledged too.
    let broken =
        h.vk.event("message_read", json!({ "peer_id": "x" }), SECRET);
    assert_eq!(h.deliver(&broken).await, (200, "ok".to_owned()));
    // Not an event at all.
    let res = h
        .http
        .post(h.callback_url())
        .body("not json")
        .send()
        .await
        .unwrap();
    // Unauthenticated (the secret is inside the event): refused.
    assert_eq!(res.status().as_u16(), 403);

    let metrics = h
        .http
        .get(h.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for result in ["confirmation", "unknown", "ignored", "malformed"] {
        let line = format!("cascade_callbacks_total{{provider=\"vk\",result=\"{result}\"}}");
        assert!(
            metrics.lines().any(|l| l.starts_with(&line)),
            "{line} in\n{metrics}"
        );
    }
    h.stop().await;
}
