//! Customers' replies reach a person, with a deadline: the daemon (real
//! RabbitMQ and Redis) hands a customer's Telegram reply to the helpdesk
//! webhook, and when nobody records `answered` within `answer_within`
//! business minutes, escalates to a staff Telegram chat, then to a manager
//! webhook. The clock is the daemon's own, moved by the test.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

use cascade::dev::fakes::telegram::{FakeTelegram, Message};

const MIN: i64 = 60_000;
const SECRET: &str = "tg-webhook-secret";
const CUSTOMER_BOT: &str = "123456:CUSTOMER-token";
const STAFF_BOT: &str = "654321:STAFF-token";
const CUSTOMER_CHAT: &str = "5551234";
const STAFF_CHAT: i64 = -100_200_300;
const LINK_SECRET: &str = "a-replies-link-secret-long-enough";

/// Telegram first; replies must be answered within 15 business minutes,
/// else the support chat is asked, then the manager.
const POLICY: &str = "stop_on = [\"read\"]\nanswer_within = \"15m\"\nanswer_escalation = [\"support_telegram\", \"manager\"]\n\n[[steps]]\nchannel = \"telegram\"\nwait = \"30m\"\n\n[[steps]]\nchannel = \"sms\"\n";

struct Harness {
    run: Running,
    hooks: Received,
    tg: FakeTelegram,
}

wraps_running!(Harness);

impl Harness {
    async fn start(name: &str, policy: &str) -> Harness {
        let tg = FakeTelegram::start().await;
        let (url, hooks) = fake_receiver(vec![]).await;
        let extra = format!(
            "[replies]\nsink = \"helpdesk\"\nlink_secret = \"{LINK_SECRET}\"\nstaff = {{ telegram = \"{STAFF_CHAT}\" }}\n\n\
             [business_hours]\nhours = \"09:00-18:00\"\ndays = \"mon-fri\"\ntimezone = \"Europe/Moscow\"\n"
        );
        let cfg = TestConfig::new(name, &url, &extra, policy);
        for (file, token) in [("telegram", CUSTOMER_BOT), ("support_telegram", STAFF_BOT)] {
            cfg.write(
                &format!("channels/{file}.toml"),
                &format!(
                    "kind = \"telegram\"\nbase_url = \"{}\"\nbot_token = \"{token}\"\nwebhook_secret = \"{SECRET}\"\ntimeout = \"1s\"\n",
                    tg.base_url()
                ),
            );
        }
        for hook in ["helpdesk", "manager"] {
            cfg.write(
                &format!("channels/{hook}.toml"),
                &format!("kind = \"webhook\"\ncontact = \"none\"\nurl = \"{url}/{hook}\"\ntimeout = \"2s\"\n"),
            );
        }
        Harness {
            run: Running::start(cfg).await.settle(Settle::Always),
            hooks,
            tg,
        }
    }

    async fn publish(&self, id: &str) {
        self.run
            .publish(&json!({
                "id": id,
                "policy": "delivery_delay",
                "customer": { "id": "c-42", "segment": "vip", "contacts": { "telegram": CUSTOMER_CHAT, "sms": "+79161234567" } },
                "content": { "text": "Заказ 1001 задерживается" }
            }))
            .await;
    }

    /// The customer's message, once sent.
    async fn customer_message(&self, id: &str) -> Message {
        self.run.wait_entry(id, "sent", None).await;
        self.tg
            .messages()
            .into_iter()
            .find(|m| m.chat_id.to_string() == CUSTOMER_CHAT)
            .expect("the customer's message")
    }

    /// The customer replies in Telegram; the daemon answers the webhook.
    async fn reply(&self, to: &Message, text: &str) -> u16 {
        let mut update = self.tg.reply(to, text);
        // Each of the customer's messages has an id of its own.
        update["message"]["message_id"] = json!(update["update_id"].as_i64().unwrap() + 5000);
        self.tg
            .deliver(
                &self.url("/callbacks/telegram/telegram"),
                Some(SECRET),
                &update,
            )
            .await
    }

    /// The helpdesk's POSTs, waiting for the `n`th.
    async fn helpdesk(&self, n: usize) -> Vec<Value> {
        wait_until("the helpdesk's task", AT_ONCE, async || {
            self.hooks.count("helpdesk") >= n
        })
        .await;
        self.hooks.on("helpdesk")
    }

    fn staff_messages(&self) -> Vec<Message> {
        self.tg
            .messages()
            .into_iter()
            .filter(|m| m.chat_id == STAFF_CHAT)
            .collect()
    }
}

/// Moves the daemon's clock to the next `weekday` (1 = Monday) at
/// `hh:mm` Moscow time, at least a day ahead.
fn move_to(run: &Running, weekday: i8, hh: i8, mm: i8) {
    use jiff::civil::Weekday;
    use jiff::tz::TimeZone;
    let now = jiff::Timestamp::from_millisecond(cascade::runtime::clock::Clock::now_ms(
        run.clock.as_ref(),
    ))
    .unwrap();
    let tz = TimeZone::get("Europe/Moscow").unwrap();
    let mut date = now.to_zoned(tz.clone()).date().tomorrow().unwrap();
    let want = Weekday::from_monday_one_offset(weekday).unwrap();
    while date.weekday() != want {
        date = date.tomorrow().unwrap();
    }
    let target = date
        .at(hh, mm, 0, 0)
        .to_zoned(tz)
        .unwrap()
        .timestamp()
        .as_millisecond();
    run.clock.advance(target - now.as_millisecond());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_reply_escalates_to_staff_in_business_hours() {
    let h = Harness::start("replies-deadline", POLICY).await;
    // Friday 17:50 in Moscow: the deadline runs into the weekend.
    move_to(&h, 5, 17, 50);
    let id = h.id("n");
    h.publish(&id).await;
    let message = h.customer_message(&id).await;
    assert_eq!(
        h.reply(&message, "Когда привезёте? Я дома до 19:00").await,
        200
    );

    // The helpdesk gets the reply at once, with what it needs to answer.
    let task = h.helpdesk(1).await.remove(0);
    let reply = &task["reply"];
    assert_eq!(reply["notification_id"], id.as_str(), "{task}");
    assert_eq!(reply["policy"], "delivery_delay");
    assert_eq!(reply["customer_id"], "c-42");
    assert_eq!(reply["channel"], "telegram");
    assert_eq!(reply["text"], "Когда привезёте? Я дома до 19:00");
    assert_eq!(task["customer"]["segment"], "vip");
    let staff_id = task["notification_id"].as_str().unwrap().to_owned();
    assert!(staff_id.starts_with(&format!("{id}}}reply-")), "{staff_id}");
    let answer_url = reply["answer_url"].as_str().unwrap().to_owned();
    assert!(answer_url.contains("/answer/"), "{answer_url}");
    assert_eq!(task["link"], answer_url.as_str());
    // The reply stays recorded on the notification.
    assert!(h.receipts::<i64>(&id).await.contains_key("replied"));

    // The hand-over is stored before the clock moves on.
    h.run.wait_entry(&staff_id, "sent", Some(0)).await;
    // By 18:10 ten business minutes have passed; the other five run on
    // Monday from 09:00, and nobody is asked over the weekend.
    h.clock.advance(20 * MIN);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(h.staff_messages().is_empty(), "nobody is asked at night");
    // Monday 09:02: the chat is open, but only two of the five business
    // minutes left have passed (a wall-clock wait would have ended).
    move_to(&h, 1, 9, 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(h.staff_messages().is_empty(), "the deadline is 09:05");

    // 09:06: the support chat is asked, with the reply and the link.
    h.clock.advance(4 * MIN);
    wait_until("the support chat's message", AT_ONCE, async || {
        !h.staff_messages().is_empty()
    })
    .await;
    h.run.wait_entry(&staff_id, "sent", Some(1)).await;
    let asked = h.staff_messages().remove(0);
    assert!(asked.text.contains("Когда привезёте?"), "{}", asked.text);
    assert!(asked.text.contains(&answer_url), "{}", asked.text);
    assert_eq!(h.hooks.count("manager"), 0);

    // Another 15 business minutes: the manager.
    h.clock.advance(16 * MIN);
    wait_until("the manager's task", AT_ONCE, async || {
        h.hooks.count("manager") == 1
    })
    .await;
    let manager = h.hooks.on("manager").remove(0);
    assert_eq!(manager["reply"]["notification_id"], id.as_str());

    // Everybody was asked: nobody answered in time.
    h.wait_outcome(&staff_id, "exhausted").await;
    // A late answer through the link is still recorded (the link names
    // http.public_url; the test's daemon listens elsewhere).
    let answer_url = h.url(&answer_url[answer_url.find("/answer/").unwrap()..]);
    let page = text_of(&h.http, &answer_url).await;
    assert!(page.contains("Mark answered"), "{page}");
    let marked = h.http.post(&answer_url).send().await.unwrap();
    assert_eq!(marked.status(), 200);
    assert!(h.receipts::<i64>(&staff_id).await.contains_key("answered"));
    assert!(h.receipts::<i64>(&id).await.contains_key("answered"));
    let page = text_of(&h.http, &answer_url).await;
    assert!(page.contains("Already marked answered"), "{page}");
    // A forged link is refused and changes nothing.
    let forged = format!("{answer_url}x");
    assert_eq!(h.http.post(&forged).send().await.unwrap().status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_in_time_asks_no_staff_and_each_reply_is_handed_over_once() {
    let h = Harness::start("replies-answered", POLICY).await;
    move_to(&h, 2, 11, 0); // Tuesday 11:00
    let id = h.id("n");
    h.publish(&id).await;
    let message = h.customer_message(&id).await;
    // The customer reads (the cascade completes), then writes twice; one
    // update is delivered twice by Telegram.
    assert_eq!(
        h.tg.press_button(&h.url("/callbacks/telegram/telegram"), SECRET, &message)
            .await,
        200
    );
    h.wait_outcome(&id, "completed").await;
    let mut first = h.tg.reply(&message, "Спасибо! А можно вечером?");
    first["message"]["message_id"] = json!(4000);
    let hook = h.url("/callbacks/telegram/telegram");
    assert_eq!(h.tg.deliver(&hook, Some(SECRET), &first).await, 200);
    assert_eq!(h.tg.deliver(&hook, Some(SECRET), &first).await, 200);
    assert_eq!(h.reply(&message, "После 18:00").await, 200);
    let tasks = h.helpdesk(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.hooks.count("helpdesk"), 2, "each reply once: {tasks:?}");
    let staff: Vec<String> = tasks
        .iter()
        .map(|t| t["notification_id"].as_str().unwrap().to_owned())
        .collect();
    assert_ne!(staff[0], staff[1]);

    // The helpdesk answers through the API, naming the notification.
    h.clock.advance(5 * MIN);
    let answered = h
        .http
        .post(h.url("/v1/receipts"))
        .bearer_auth(TOKEN)
        .json(&json!({ "id": id, "event": "answered" }))
        .send()
        .await
        .unwrap();
    assert!(answered.status().is_success(), "{}", answered.status());
    for s in &staff {
        h.wait_outcome(s, "completed").await;
    }
    // The deadline passes: nobody is asked.
    h.clock.advance(40 * MIN);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(h.staff_messages().is_empty());
    assert_eq!(h.hooks.count("manager"), 0);

    // A later reply opens a new deadline: the earlier answer does not cover it.
    assert_eq!(h.reply(&message, "И ещё вопрос: {{data.slot}}?").await, 200);
    let third = h.helpdesk(3).await.remove(2);
    let third_id = third["notification_id"].as_str().unwrap().to_owned();
    h.run.wait_entry(&third_id, "sent", Some(0)).await;
    h.clock.advance(16 * MIN);
    wait_until("the support chat's message", AT_ONCE, async || {
        !h.staff_messages().is_empty()
    })
    .await;
    assert_eq!(
        h.outcome(&third_id).await,
        None,
        "still waiting for an answer"
    );
    // The customer's words are quoted as written, braces and all.
    let asked = h.staff_messages().remove(0);
    assert!(
        asked.text.contains("И ещё вопрос: {{data.slot}}?"),
        "{}",
        asked.text
    );
    // The support chat marks it answered through the link: the manager is
    // never asked.
    let link = third["reply"]["answer_url"].as_str().unwrap();
    let link = h.url(&link[link.find("/answer/").unwrap()..]);
    assert_eq!(h.http.post(&link).send().await.unwrap().status(), 200);
    h.wait_outcome(&third_id, "completed").await;
    h.clock.advance(60 * MIN);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.hooks.count("manager"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_deadline_a_reply_is_only_handed_over() {
    let policy = "stop_on = [\"read\"]\n\n[[steps]]\nchannel = \"telegram\"\nwait = \"30m\"\n\n[[steps]]\nchannel = \"sms\"\n";
    let h = Harness::start("replies-sink-only", policy).await;
    let id = h.id("n");
    h.publish(&id).await;
    let message = h.customer_message(&id).await;
    assert_eq!(h.reply(&message, "ok").await, 200);
    let task = h.helpdesk(1).await.remove(0);
    let staff_id = task["notification_id"].as_str().unwrap().to_owned();
    h.wait_outcome(&staff_id, "exhausted").await;
    // Support staff find it through the API like any notification.
    let encoded = staff_id.replace('}', "%7D");
    let view = h.get_v1(&format!("/v1/notifications/{encoded}")).await;
    assert_eq!(view["id"], staff_id.as_str(), "{view}");
    assert_eq!(view["state"], "exhausted", "{view}");
    h.clock.advance(24 * 60 * MIN);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(h.staff_messages().is_empty());
    assert_eq!(h.hooks.count("manager"), 0);
}

/// The replies hash in Redis: an `answered` that comes while a staff
/// cascade is noted but not yet stored marks it, for its start to see;
/// and one notification opens at most `MAX_REPLIES` staff cascades.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_racing_a_start_is_kept_and_replies_are_bounded() {
    use cascade::runtime::store::MAX_REPLIES;
    let h = Harness::start("replies-store", POLICY).await;
    let id = h.id("n");
    h.publish(&id).await;
    let message = h.customer_message(&id).await;
    assert_eq!(h.reply(&message, "Вопрос").await, 200);
    let stored = h.helpdesk(1).await.remove(0)["notification_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let store = &h.daemon().store;
    let now = cascade::runtime::clock::Clock::now_ms(h.clock.as_ref());
    let starting = format!("{id}}}reply-0000000000000001");
    assert!(store.note_reply(&id, &starting, now).await.unwrap());
    assert_eq!(
        store.spread_answer(&id, now).await.unwrap(),
        1,
        "the stored one"
    );
    assert!(store.answered_before_start(&id, &starting).await.unwrap());
    assert!(!store.answered_before_start(&id, &stored).await.unwrap());
    h.wait_outcome(&stored, "completed").await;

    let mut noted = 2;
    for n in 2..30 {
        let staff = format!("{id}}}reply-{n:016x}");
        if store.note_reply(&id, &staff, now).await.unwrap() {
            noted += 1;
        }
    }
    assert_eq!(noted, MAX_REPLIES);
    // One noted before is still noted (a provider delivering it again).
    assert!(store.note_reply(&id, &starting, now).await.unwrap());
}
