//! The mission's two escalations end to end through the daemon, with the real
//! adapters against the provider fakes: VK → SMS (SMS.ru) and email →
//! messenger (SMTP sink → Telegram), each stopped by the provider's own
//! receipt, or escalating without one.

mod common;

use std::time::Duration;

use cascade::dev::fakes::{smsru::FakeSmsRu, smtp, telegram::FakeTelegram, vk::FakeVk};
use cascade::runtime::daemon::Daemon;
use common::*;
use serde_json::json;

const MIN: i64 = 60_000;

async fn events(daemon: &Daemon, id: &str) -> Vec<(String, Option<String>)> {
    let (_, timeline) = daemon.store.status(id).await.unwrap().unwrap();
    timeline
        .iter()
        .map(|e| (e.event.as_str().to_owned(), e.reason.clone()))
        .collect()
}

fn body(id: &str, customer: &str, policy: &str, contacts: serde_json::Value) -> Vec<u8> {
    json!({
        "id": id, "policy": policy,
        "customer": { "id": customer, "contacts": contacts },
        "content": { "text": "Заказ 1001 задерживается на 2 дня", "subject": "Заказ 1001" }
    })
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vk_then_sms_stopped_by_message_read_or_sent_by_sms_ru_with_a_delivery_report() {
    let vk = FakeVk::start().await;
    let sms = FakeSmsRu::start().await;
    let cfg = TestConfig::new("vk-sms", "http://127.0.0.1:9", "", DELIVERY_DELAY);
    cfg.vk_and_smsru(&vk.base_url(), sms.base_url(), "");
    let mut run = Running::start(cfg).await;
    let base = run.url("");

    let read = run.id("read");
    let unread = run.id("unread");
    let contacts = |peer: &str, phone: &str| json!({ "vk": peer, "sms": phone });
    run.publish_bytes(&body(
        &read,
        "c-1",
        "delivery_delay",
        contacts("111", "+79160000001"),
    ))
    .await;
    run.publish_bytes(&body(
        &unread,
        "c-2",
        "delivery_delay",
        contacts("222", "+79160000002"),
    ))
    .await;
    wait_until("both VK messages", Duration::from_secs(10), async || {
        vk.messages().len() == 2
    })
    .await;

    // The customer reads the VK message: VK's Callback API says so.
    let msg = vk
        .messages()
        .into_iter()
        .find(|m| m.peer_id == 111)
        .unwrap();
    let event = vk.message_read("vk-secret", 111, msg.message_id);
    let (status, answer) = vk.deliver(&format!("{base}/callbacks/vk/vk"), &event).await;
    assert_eq!((status, answer.as_str()), (200, "ok"));
    wait_until(
        "the read cascade completes",
        Duration::from_secs(10),
        async || run.outcome(&read).await == Some("completed"),
    )
    .await;

    // Half an hour later only the unread one goes out by SMS.
    run.wait_entries(&unread, "sent", 1).await;
    run.clock.advance(31 * MIN);
    wait_until("the SMS", Duration::from_secs(10), async || {
        sms.received().len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = sms.received();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].phone, "79160000002");

    // SMS.ru reports delivery; the report is recorded on the timeline.
    let (status, answer) = sms
        .report(
            &format!("{base}/callbacks/sms/sms/sms-secret"),
            &sent[0].id,
            103,
        )
        .await;
    assert_eq!((status, answer.as_str()), (200, "100"));
    wait_until("the delivery report", Duration::from_secs(10), async || {
        events(run.daemon(), &unread)
            .await
            .contains(&("receipt".into(), Some("delivered".into())))
    })
    .await;
    assert_eq!(run.outcome(&unread).await, Some("exhausted"));

    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_then_telegram_stopped_by_the_open_pixel() {
    let sink = smtp::start().await.unwrap();
    let tg = FakeTelegram::start().await;
    let policy = "stop_on = [\"opened\", \"read\"]\n\n[[steps]]\nchannel = \"email\"\nwait = \"1d\"\n\n[[steps]]\nchannel = \"telegram\"\n";
    let cfg = TestConfig::new("mail-tg", "http://127.0.0.1:9", "", policy);
    std::fs::remove_file(cfg.dir.join("policies/delivery_delay.toml")).unwrap();
    cfg.write("policies/abandoned_cart.toml", policy);
    cfg.write(
        "channels/email.toml",
        &format!(
            "kind = \"email\"\nhost = \"{}\"\nport = \"{}\"\ntls = \"none\"\nfrom = \"Shop <noreply@shop.example.ru>\"\ntracking_secret = \"track-secret\"\n",
            sink.host(),
            sink.port()
        ),
    );
    cfg.write(
        "channels/telegram.toml",
        &format!("kind = \"telegram\"\nbase_url = \"{}\"\nbot_token = \"123:tg\"\nwebhook_secret = \"tg-secret\"\n", tg.base_url()),
    );
    let mut run = Running::start(cfg).await;
    let base = run.url("");

    let opened = run.id("opened");
    let unopened = run.id("unopened");
    let contacts = |mail: &str, chat: &str| json!({ "email": mail, "telegram": chat });
    run.publish_bytes(&body(
        &opened,
        "c-1",
        "abandoned_cart",
        contacts("a@example.ru", "5551"),
    ))
    .await;
    run.publish_bytes(&body(
        &unopened,
        "c-2",
        "abandoned_cart",
        contacts("b@example.ru", "5552"),
    ))
    .await;
    wait_until("both emails", Duration::from_secs(10), async || {
        sink.accepted().len() == 2
    })
    .await;
    let mail_to = |who: &str| {
        sink.accepted()
            .into_iter()
            .find(|m| m.rcpt_to.iter().any(|r| r.contains(who)))
            .unwrap()
    };
    let path_of = |url: String| url[url.find("/t/").unwrap()..].to_owned();
    let http = reqwest::Client::new();

    // A tampered pixel token records nothing.
    let pixel_b = path_of(mail_to("b@example.ru").pixel_url().unwrap());
    let mut forged = pixel_b.clone().into_bytes();
    let at = forged.len() - 8;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(
        http.get(format!("{base}{forged}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // The customer opens the first email: its cascade completes.
    let pixel_a = path_of(mail_to("a@example.ru").pixel_url().unwrap());
    assert_eq!(
        http.get(format!("{base}{pixel_a}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    wait_until(
        "the opened cascade completes",
        Duration::from_secs(10),
        async || run.outcome(&opened).await == Some("completed"),
    )
    .await;

    // A day later only the unopened one goes to Telegram.
    run.wait_entries(&unopened, "sent", 1).await;
    run.clock.advance(25 * 60 * MIN);
    wait_until(
        "the Telegram message",
        Duration::from_secs(10),
        async || tg.messages().len() == 1,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let messages = tg.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].chat_id, 5552);
    assert!(
        !events(run.daemon(), &unopened)
            .await
            .iter()
            .any(|(e, r)| e == "receipt" && r.as_deref() == Some("opened"))
    );

    // The customer presses the button: read.
    let status = tg
        .press_button(
            &format!("{base}/callbacks/telegram/telegram"),
            "tg-secret",
            &messages[0],
        )
        .await;
    assert_eq!(status, 200);
    wait_until("the read receipt", Duration::from_secs(10), async || {
        events(run.daemon(), &unopened)
            .await
            .contains(&("receipt".into(), Some("read".into())))
    })
    .await;

    run.stop().await;
}

/// A read of the VK message branches to an SMS (`on = { read = … }`,
/// `final`), through the Redis store: `read` is also a stop word, and the
/// store must not refuse the branch's own send for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_branches_to_a_final_sms_through_the_store() {
    const BRANCHING: &str = "stop_on = [\"read\"]\n\n[[steps]]\nchannel = \"vk\"\nwait = \"30m\"\non = { read = \"thanks\" }\n\n[[steps]]\nchannel = \"vk\"\n\n[[steps]]\nname = \"thanks\"\nchannel = \"sms\"\nfinal = true\n";
    let vk = FakeVk::start().await;
    let sms = FakeSmsRu::start().await;
    let cfg = TestConfig::new("branch", "http://127.0.0.1:9", "", BRANCHING);
    cfg.vk_and_smsru(&vk.base_url(), sms.base_url(), "");
    let mut run = Running::start(cfg).await;
    let base = run.url("");

    let id = run.id("branch");
    run.publish_bytes(&body(
        &id,
        "c-1",
        "delivery_delay",
        json!({ "vk": "111", "sms": "+79160000001" }),
    ))
    .await;
    wait_until("the VK message", Duration::from_secs(10), async || {
        vk.messages().len() == 1
    })
    .await;
    let msg = vk.messages().remove(0);
    let event = vk.message_read("vk-secret", 111, msg.message_id);
    let (status, answer) = vk.deliver(&format!("{base}/callbacks/vk/vk"), &event).await;
    assert_eq!((status, answer.as_str()), (200, "ok"));

    wait_until(
        "the SMS the read leads to",
        Duration::from_secs(10),
        async || run.outcome(&id).await == Some("completed"),
    )
    .await;
    assert_eq!(sms.received().len(), 1);
    assert_eq!(vk.messages().len(), 1, "the second VK step is skipped");
    let timeline = events(run.daemon(), &id).await;
    assert!(
        timeline.contains(&("escalated".into(), Some("on read".into()))),
        "{timeline:?}"
    );
    assert_eq!(
        timeline.last(),
        Some(&("completed".into(), Some("read".into())))
    );
    run.stop().await;
}
