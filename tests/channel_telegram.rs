//! The `telegram` channel end to end: the daemon (real RabbitMQ and Redis)
//! sends through the fake Bot API, classifies its answers, and records the
//! customer's button presses from signed webhook updates. Step 2 of the
//! policy is the `sms` webhook channel of `common::fake_receiver`, so an
//! escalation shows up there.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

use cascade::core::Entry;
use cascade::dev::fakes::script::Scripted;
use cascade::dev::fakes::telegram::{FakeTelegram, Message};

const MIN: i64 = 60_000;
const SECRET: &str = "tg-webhook-secret";
const TOKEN: &str = "123456:TEST-token";
const CHAT: &str = "5551234";

const POLICY: &str = "stop_on = [\"read\"]\nexpire_after = \"12h\"\n\n[[steps]]\nchannel = \"telegram\"\nwait = \"30m\"\n\n[[steps]]\nchannel = \"sms\"\n";

/// One test's daemon, fake Bot API, fake SMS receiver and clock. Dropping it
/// stops the daemon and deletes the test's queues and keys.
struct Harness {
    run: Running,
    sms: Received,
    tg: FakeTelegram,
}

wraps_running!(Harness);

impl Harness {
    async fn start(name: &str) -> Harness {
        let tg = FakeTelegram::start().await;
        let (url, sms) = fake_receiver(vec![]).await;
        let cfg = TestConfig::new(name, &url, "", POLICY);
        // `max_backoff` also caps Telegram's `retry_after`: 5 s lets the 429
        // test's 3 s through (with 3 attempts, backoff never passes 400 ms).
        cfg.write(
            "channels/telegram.toml",
            &format!(
                "kind = \"telegram\"\nbase_url = \"{}\"\nbot_token = \"{TOKEN}\"\nwebhook_secret = \"{SECRET}\"\n\
                 timeout = \"1s\"\n[retry]\nattempts = 3\nbackoff = \"200ms\"\nmax_backoff = \"5s\"\n",
                tg.base_url()
            ),
        );
        Harness {
            run: Running::start(cfg).await.settle(Settle::Always),
            sms,
            tg,
        }
    }

    fn webhook(&self) -> String {
        self.url("/callbacks/telegram/telegram")
    }

    /// Publishes a notification with a telegram chat, an SMS number and a link.
    async fn publish(&self, id: &str) {
        self.run
            .publish(&json!({
                "id": id,
                "policy": "delivery_delay",
                "customer": { "id": format!("c-{id}"), "contacts": { "telegram": CHAT, "sms": "+79161234567" } },
                "content": { "text": "Заказ 1001 задерживается", "link": "https://shop.example.ru/orders/1001" }
            }))
            .await;
    }

    async fn wait_entry(&self, id: &str, event: &str) -> Entry {
        self.run.wait_entry(id, event, None).await
    }

    /// Waits until the step is recorded as sent, and returns the accepted message.
    async fn sent(&self, id: &str) -> Message {
        self.wait_entry(id, "sent").await;
        self.tg
            .messages()
            .pop()
            .expect("the fake accepted a message")
    }

    async fn receipts(&self, id: &str) -> std::collections::HashMap<String, i64> {
        self.run.receipts(id).await
    }

    /// `cascade_callbacks_total{provider="telegram",result=…}` now.
    async fn callbacks(&self, result: &str) -> u64 {
        self.metric(
            "cascade_callbacks_total",
            &[("provider", "telegram"), ("result", result)],
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_carries_the_buttons_and_a_press_stops_the_cascade() {
    let h = Harness::start("tg-press").await;
    let id = h.id("n");
    h.publish(&id).await;
    let message = h.sent(&id).await;

    // What went to Telegram.
    let call = &h.tg.calls("sendMessage")[0];
    assert_eq!(call.token, TOKEN);
    assert_eq!(call.body["chat_id"], json!(5551234));
    assert_eq!(call.body["text"], "Заказ 1001 задерживается");
    let keyboard = &call.body["reply_markup"]["inline_keyboard"];
    let data = keyboard[0][0]["callback_data"].as_str().unwrap();
    assert!((1..=64).contains(&data.len()));
    assert_eq!(keyboard[1][0]["url"], "https://shop.example.ru/orders/1001");
    // The provider message id is `<message_id>@<a keyed pseudonym of the
    // chat>`: the customer's chat id is not in it.
    let sent = h.wait_entry(&id, "sent").await;
    let pmid = sent.provider_message_id.unwrap();
    let (message_id, pseudonym) = pmid.split_once('@').unwrap();
    assert_eq!(message_id, message.message_id.to_string());
    assert_eq!(pseudonym.len(), 16);
    assert!(!pmid.contains(CHAT));

    // The customer presses the button.
    assert_eq!(h.tg.press_button(&h.webhook(), SECRET, &message).await, 200);
    h.wait_outcome(&id, "completed").await;
    assert!(h.receipts(&id).await.contains_key("read"));
    let answers = h.tg.calls("answerCallbackQuery");
    assert_eq!(answers.len(), 1);
    assert_eq!(
        answers[0].body["callback_query_id"],
        format!("cbq{}", message.message_id)
    );

    // Half an hour later nothing escalates.
    h.clock.advance(31 * MIN);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(h.sms.count("sms"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_refuse_forgeries_ignore_duplicates_and_count_unknown_messages() {
    let h = Harness::start("tg-callbacks").await;
    let id = h.id("n");
    h.publish(&id).await;
    let message = h.sent(&id).await;
    let press = h.tg.button_press(&message);

    // Forged: a wrong secret, or none.
    assert_eq!(h.tg.deliver(&h.webhook(), Some("guess"), &press).await, 403);
    assert_eq!(h.tg.deliver(&h.webhook(), None, &press).await, 403);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(h.receipts(&id).await.is_empty());
    assert_eq!(h.outcome(&id).await, None);
    assert!(h.tg.calls("answerCallbackQuery").is_empty());

    // Authentic, then the same update again.
    let duplicates = h.callbacks("duplicate").await;
    assert_eq!(h.tg.deliver(&h.webhook(), Some(SECRET), &press).await, 200);
    h.wait_outcome(&id, "completed").await;
    assert_eq!(h.tg.deliver(&h.webhook(), Some(SECRET), &press).await, 200);
    assert!(h.callbacks("duplicate").await > duplicates);
    assert_eq!(h.tg.calls("answerCallbackQuery").len(), 1);
    let receipts = h
        .timeline(&id)
        .await
        .iter()
        .filter(|e| e.event.as_str() == "receipt")
        .count();
    assert_eq!(receipts, 1);

    // A press under a message this daemon never sent: acknowledged, counted.
    let unknown = h.callbacks("unknown").await;
    let stranger = Message {
        message_id: 999_999,
        ..message.clone()
    };
    assert_eq!(
        h.tg.press_button(&h.webhook(), SECRET, &stranger).await,
        200
    );
    assert!(h.callbacks("unknown").await > unknown);
    // Its query is answered all the same.
    assert_eq!(h.tg.calls("answerCallbackQuery").len(), 2);

    // A channel that is not a telegram channel has no webhook; it answers
    // as a wrong secret does, so channel names cannot be probed.
    let other = format!("http://{}/callbacks/telegram/sms", h.daemon().http_addr);
    assert_eq!(h.tg.deliver(&other, Some(SECRET), &press).await, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_to_the_message_is_recorded_as_replied() {
    let h = Harness::start("tg-reply").await;
    let id = h.id("n");
    h.publish(&id).await;
    let message = h.sent(&id).await;
    let reply = h.tg.reply(&message, "Спасибо, понял");
    assert_eq!(h.tg.deliver(&h.webhook(), Some(SECRET), &reply).await, 200);
    wait_until("the replied receipt", AT_ONCE, async || {
        h.receipts(&id).await.contains_key("replied")
    })
    .await;
    // `replied` does not stop this policy (stop_on = ["read"]).
    assert_eq!(h.outcome(&id).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_quoting_nothing_is_a_reply_to_the_newest_message_before_it() {
    let h = Harness::start("tg-unquoted").await;
    let (near, far) = (h.id("near"), h.id("far"));
    h.publish(&near).await;
    let message = h.sent(&near).await;
    // A few messages later in the same chat, quoting nothing.
    let plain = h.tg.unquoted(&message, 3, "А когда привезут?");
    assert_eq!(h.tg.deliver(&h.webhook(), Some(SECRET), &plain).await, 200);
    wait_until("the replied receipt", AT_ONCE, async || {
        h.receipts(&near).await.contains_key("replied")
    })
    .await;

    // Far beyond the look-back: acknowledged, not attributed.
    h.publish(&far).await;
    let other = h.sent(&far).await;
    let late = h.tg.unquoted(&other, 1_000, "ещё вопрос");
    assert_eq!(h.tg.deliver(&h.webhook(), Some(SECRET), &late).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!h.receipts(&far).await.contains_key("replied"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_look_back_for_a_message_quoting_nothing_ends_at_twenty_ids() {
    let h = Harness::start("tg-lookback").await;
    let id = h.id("n");
    h.publish(&id).await;
    let message = h.sent(&id).await;
    // 21 ids later: one past the look-back, not attributed. The webhook
    // answers after handling the update, so nothing is still on its way.
    let unmapped = h.callbacks("unmapped").await;
    let past = h.tg.unquoted(&message, 21, "вопрос");
    assert_eq!(h.tg.deliver(&h.webhook(), Some(SECRET), &past).await, 200);
    assert!(!h.receipts(&id).await.contains_key("replied"));
    assert!(
        h.callbacks("unmapped").await > unmapped,
        "counted as unmapped"
    );
    // 20 ids later: the edge, attributed.
    let edge = h.tg.unquoted(&message, 20, "ещё вопрос");
    assert_eq!(h.tg.deliver(&h.webhook(), Some(SECRET), &edge).await, 200);
    assert!(h.receipts(&id).await.contains_key("replied"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_waits_the_retry_after_then_sends() {
    let h = Harness::start("tg-429").await;
    h.tg.script()
        .then(Scripted::RateLimited(Duration::from_secs(3)), 1);
    let id = h.id("n");
    h.publish(&id).await;
    let failed = h.wait_entry(&id, "send_failed").await;
    assert_eq!(failed.reason.as_deref(), Some("rate_limited"));
    // The retry is scheduled no earlier than `retry_after` (virtual time).
    let until = failed.until_ms.expect("a retry time");
    assert!(until - failed.at_ms >= 3_000, "{failed:?}");

    h.clock.advance(4_000);
    h.sent(&id).await;
    assert_eq!(h.tg.calls("sendMessage").len(), 2);
    assert_eq!(h.tg.messages().len(), 1);
    assert_eq!(h.sms.count("sms"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_error_is_retried_then_sent() {
    let h = Harness::start("tg-transient").await;
    h.tg.script().then(Scripted::Transient, 1);
    let id = h.id("n");
    h.publish(&id).await;
    let failed = h.wait_entry(&id, "send_failed").await;
    assert!(
        failed.reason.as_deref().unwrap().contains("502"),
        "{failed:?}"
    );
    h.clock.advance(1_000);
    h.sent(&id).await;
    assert_eq!(h.tg.calls("sendMessage").len(), 2);
    assert_eq!(h.sms.count("sms"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_escalate_to_the_next_step() {
    let h = Harness::start("tg-exhausted").await;
    h.tg.script().then(Scripted::Transient, 3);
    let id = h.id("n");
    h.publish(&id).await;
    wait_until("the SMS step", Duration::from_secs(10), async || {
        h.clock.advance(500);
        h.sms.count("sms") == 1
    })
    .await;
    assert_eq!(h.tg.calls("sendMessage").len(), 3);
    let timeline = h.timeline(&id).await;
    assert!(timeline.iter().any(|e| {
        e.event.as_str() == "send_failed"
            && e.reason
                .as_deref()
                .unwrap_or("")
                .contains("gave up after 3")
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_bot_escalates_at_once() {
    let h = Harness::start("tg-blocked").await;
    h.tg.script().then(Scripted::Permanent, 1);
    let id = h.id("n");
    h.publish(&id).await;
    // No clock movement: the SMS goes at once.
    wait_until("the SMS step", AT_ONCE, async || h.sms.count("sms") == 1).await;
    let failed = h.wait_entry(&id, "send_failed").await;
    assert!(
        failed
            .reason
            .as_deref()
            .unwrap()
            .contains("bot was blocked by the user"),
        "{failed:?}"
    );
    assert_eq!(h.tg.calls("sendMessage").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrated_group_escalates_naming_the_new_chat_id() {
    let h = Harness::start("tg-migrated").await;
    h.tg.answer_next(
        400,
        json!({"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1001234567890_i64}}),
    );
    let id = h.id("n");
    h.publish(&id).await;
    wait_until("the SMS step", AT_ONCE, async || h.sms.count("sms") == 1).await;
    let failed = h.wait_entry(&id, "send_failed").await;
    // Named masked, like every messenger id in a reason (contract §7).
    let reason = failed.reason.as_deref().unwrap();
    assert!(
        reason.contains("new chat id is -1001•••7890") && !reason.contains("1234567890"),
        "{failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_escalates_and_stops_the_channel() {
    let h = Harness::start("tg-token").await;
    h.tg.script().then(Scripted::Misconfigured, 1);
    let first = h.id("first");
    h.publish(&first).await;
    wait_until("the SMS step", AT_ONCE, async || h.sms.count("sms") == 1).await;
    let failed = h.wait_entry(&first, "send_failed").await;
    assert!(
        failed
            .reason
            .as_deref()
            .unwrap()
            .starts_with("misconfigured"),
        "{failed:?}"
    );
    // The circuit breaker: the next notification does not reach Telegram.
    let second = h.id("second");
    h.publish(&second).await;
    wait_until("the second SMS", AT_ONCE, async || h.sms.count("sms") == 2).await;
    assert_eq!(h.tg.calls("sendMessage").len(), 1);
    let failed = h.wait_entry(&second, "send_failed").await;
    assert!(
        failed.reason.as_deref().unwrap().contains("circuit open"),
        "{failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_after_sending_is_uncertain_and_not_resent() {
    let h = Harness::start("tg-timeout").await;
    h.tg.script()
        .then(Scripted::Slow(Duration::from_secs(3)), 1);
    let id = h.id("n");
    h.publish(&id).await;
    let uncertain = h.wait_entry(&id, "uncertain").await;
    assert!(uncertain.reason.is_some());
    // The Bot API cannot dedupe: on_uncertain defaults to "skip", so the
    // step waits for a press instead of sending again.
    h.clock.advance(2_000);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(h.tg.calls("sendMessage").len(), 1);
    assert_eq!(h.sms.count("sms"), 0);
    assert_eq!(h.outcome(&id).await, None);
    // The token never shows in the recorded reason.
    assert!(!uncertain.reason.unwrap().contains(TOKEN));
}
