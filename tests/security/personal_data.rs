//! Security tests: personal data (contract §7). A customer's contacts never
//! appear in the clear in what the daemon writes for operators: log lines,
//! the events streams and dead-letter headers; they are masked the
//! same way everywhere. A stored record keeps only the contacts its policy
//! can use.
//!
//! The daemon runs in-process with every channel kind pointed at the
//! provider fakes; the log lines are caught by a JSON subscriber on a shared
//! buffer (one for the whole test binary: lines of other tests land there
//! too, which only makes the check stricter).

use std::collections::BTreeMap;
use std::time::Duration;

use cascade::dev::fakes::smsru::FakeSmsRu;
use cascade::dev::fakes::smtp::{self, Answer};
use cascade::dev::fakes::telegram::FakeTelegram;
use cascade::dev::fakes::vk::FakeVk;
use cascade::dev::fakes::webhook::FakeWebhook;
use cascade::dev::fakes::whatsapp::{FakeWhatsApp, graph_error};
use lapin::types::AMQPValue;
use serde_json::json;

use crate::common::{
    AT_ONCE, ChildDaemon, CleanUp, DELIVERY_DELAY, Running, Settle, TestConfig, fake_receiver,
    intake_config_of, publish_to, redis, take_messages, wait_until,
};
use crate::logs;

// Contacts unlikely to appear anywhere by chance.
const PHONE: &str = "+79857364912";
const EMAIL: &str = "zinaida.k@mail.example.ru";
const VK_ID: &str = "687245913";
const TELEGRAM_ID: &str = "7391846205";
/// A contact no channel reads: it must not even be stored.
const UNUSED_PHONE: &str = "+79264410587";

/// Every raw form a contact could leak in: E.164, the digits WhatsApp and
/// the Russian gateways take, the number without its country code, the
/// address and its local part, the ids.
const RAW: [&str; 9] = [
    "+79857364912",
    "79857364912",
    "9857364912",
    "zinaida.k@mail.example.ru",
    "zinaida",
    "687245913",
    "7391846205",
    "79264410587",
    "9264410587",
];

const MIN: i64 = 60_000;

/// Every channel kind in turn. The fakes refuse the first four for this
/// customer (escalating at once), repeating the contact in their answers;
/// SMS goes out and waits; the call centre is the last resort.
const POLICY: &str = "stop_on = [\"read\"]\nexpire_after = \"1h\"\n\n\
    [[steps]]\nchannel = \"vk\"\nwait = \"1m\"\n\n\
    [[steps]]\nchannel = \"telegram\"\nwait = \"1m\"\n\n\
    [[steps]]\nchannel = \"whatsapp\"\nwait = \"1m\"\n\n\
    [[steps]]\nchannel = \"email\"\nwait = \"1m\"\n\n\
    [[steps]]\nchannel = \"sms\"\nwait = \"1m\"\n\n\
    [[steps]]\nchannel = \"call_centre\"\n";

/// The fakes of one test, one per channel kind.
struct Fakes {
    vk: FakeVk,
    telegram: FakeTelegram,
    whatsapp: FakeWhatsApp,
    smtp: smtp::FakeSmtp,
    smsru: FakeSmsRu,
    call_centre: FakeWebhook,
}

impl Fakes {
    async fn start() -> Fakes {
        Fakes {
            vk: FakeVk::start().await,
            telegram: FakeTelegram::start().await,
            whatsapp: FakeWhatsApp::start().await,
            smtp: smtp::start().await.expect("the SMTP sink starts"),
            smsru: FakeSmsRu::start().await,
            call_centre: FakeWebhook::start().await.expect("the webhook fake starts"),
        }
    }

    /// A configuration with a channel of every kind pointed at the fakes.
    fn config(&self) -> TestConfig {
        let cfg = TestConfig::new("personal-data", "http://127.0.0.1:9", "", POLICY);
        let limits = "timeout = \"2s\"\n[retry]\nattempts = 2\nbackoff = \"100ms\"\nmax_backoff = \"200ms\"\n";
        cfg.write(
            "channels/vk.toml",
            &format!(
                "kind = \"vk\"\nbase_url = \"{}\"\naccess_token = \"vk-token\"\n{limits}",
                self.vk.base_url()
            ),
        );
        cfg.write(
            "channels/telegram.toml",
            &format!(
                "kind = \"telegram\"\nbase_url = \"{}\"\nbot_token = \"123:tg-token\"\n{limits}",
                self.telegram.base_url()
            ),
        );
        cfg.write(
            "channels/whatsapp.toml",
            &format!(
                "kind = \"whatsapp\"\nbase_url = \"{}\"\napi_version = \"v21.0\"\n\
                 phone_number_id = \"106540352242922\"\naccess_token = \"wa-token\"\n{limits}",
                self.whatsapp.base_url()
            ),
        );
        cfg.write(
            "channels/email.toml",
            &format!(
                "kind = \"email\"\nhost = \"127.0.0.1\"\nport = \"{}\"\ntls = \"none\"\n\
                 from = \"Shop <noreply@shop.example.ru>\"\n{limits}",
                self.smtp.port()
            ),
        );
        cfg.write(
            "channels/sms.toml",
            &format!(
                "kind = \"sms\"\nprovider = \"smsru\"\nbase_url = \"{}\"\napi_id = \"sms-key\"\n{limits}",
                self.smsru.base_url()
            ),
        );
        cfg.write(
            "channels/call_centre.toml",
            &format!(
                "kind = \"webhook\"\nurl = \"{}\"\n{limits}",
                self.call_centre.url()
            ),
        );
        cfg
    }

    /// Each provider refuses its first send for good, saying whom it refused.
    fn refuse_naming_the_customer(&self) {
        self.vk.answer_next(
            200,
            json!({ "error": {
                "error_code": 901,
                "error_msg": format!("Can't send messages for users without permission (peer_id {VK_ID})"),
            } }),
        );
        // A group upgraded to a supergroup: the answer names the new chat id.
        self.telegram.answer_next(
            400,
            json!({
                "ok": false,
                "error_code": 400,
                "description": "Bad Request: group chat was upgraded to a supergroup chat",
                "parameters": { "migrate_to_chat_id": format!("-100{TELEGRAM_ID}").parse::<i64>().unwrap() },
            }),
        );
        self.whatsapp.answer_next(
            400,
            graph_error(
                131026,
                "Message undeliverable",
                &format!("Recipient {} cannot be reached", &PHONE[1..]),
            ),
        );
        // `550 5.1.1 <address>: Recipient address rejected: …`
        self.smtp.then(Answer::RcptPermanent, 1);
    }
}

fn notification(id: &str, contacts: serde_json::Value) -> serde_json::Value {
    json!({
        "id": id,
        "policy": "delivery_delay",
        "customer": { "id": "c-pii", "contacts": contacts },
        "content": { "text": "Заказ 1001 задерживается на 2 дня", "subject": "Заказ 1001" }
    })
}

/// Bad notifications that quote contacts back in their refusals: a phone
/// without its `+`, a phone where an object belongs (serde_json quotes it),
/// JSON cut short around contacts, an id that holds an address.
fn refused(run: &Running) -> Vec<Vec<u8>> {
    let digits = &PHONE[1..];
    vec![
        notification(&run.id("no-plus"), json!({ "sms": digits }))
            .to_string()
            .into_bytes(),
        notification(&run.id("not-an-object"), json!(PHONE))
            .to_string()
            .into_bytes(),
        format!(
            r#"{{"id": "{}", "policy": "delivery_delay", "customer": {{"id": "c-pii", "contacts": {{"sms": "{PHONE}", "email": "{EMAIL}""#,
            run.id("cut-short")
        )
        .into_bytes(),
        notification(&format!("{EMAIL} {digits}"), json!({ "sms": PHONE }))
            .to_string()
            .into_bytes(),
    ]
}

/// Every entry of the test's events streams (one per timer shard), one
/// `field=value` line each.
async fn events_stream(prefix: &str) -> String {
    let mut r = redis().await;
    let mut out = String::new();
    for shard in 0..crate::common::TEST_TIMER_SHARDS {
        let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(format!("{prefix}:events:{{{shard}}}"))
            .arg("-")
            .arg("+")
            .query_async(&mut r)
            .await
            .expect("the events stream reads");
        for (id, fields) in entries {
            out.push_str(&format!("{id} {}\n", fields.join(" ")));
        }
    }
    out
}

/// Takes `want` messages off the dead-letter queue; how many it got, and
/// their headers as `name: value` lines (whatever their AMQP type).
async fn dead_letter_headers(queue: &str, want: usize) -> (usize, String) {
    let taken = take_messages(queue, want, AT_ONCE * 2).await;
    let mut out = String::new();
    for message in &taken {
        let headers = message.properties.headers().clone().unwrap_or_default();
        for (name, value) in headers.inner() {
            let value = match value {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                other => format!("{other:?}"),
            };
            out.push_str(&format!("{}: {value}\n", name.as_str()));
        }
    }
    (taken.len(), out)
}

/// The lines of `text` that hold `needle`, to show in a failure.
fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

#[track_caller]
fn assert_no_raw_contact(place: &str, text: &str) {
    for raw in RAW {
        let found = lines_with(text, raw);
        assert!(
            found.is_empty(),
            "{place} holds the raw contact {raw:?}:\n{}",
            found.join("\n")
        );
    }
}

#[track_caller]
fn assert_shows(place: &str, text: &str, masked: &[&str]) {
    for m in masked {
        assert!(
            text.contains(m),
            "{place} should show {m:?}; it holds:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_contact_appears_raw_in_logs_events_or_dead_letters() {
    let logs = logs();
    let fakes = Fakes::start().await;
    fakes.refuse_naming_the_customer();
    let run = Running::start(fakes.config()).await.settle(Settle::Always);
    let prefix = run.cfg.name.clone();

    // One cascade through all six channel kinds.
    let id = run.id("cascade");
    run.publish(&notification(
        &id,
        json!({
            "vk": VK_ID, "telegram": TELEGRAM_ID, "whatsapp": PHONE,
            "email": EMAIL, "sms": PHONE, "viber": UNUSED_PHONE
        }),
    ))
    .await;
    for bad in refused(&run) {
        run.publish_bytes(&bad).await;
    }

    let sms_sent = run.wait_entry(&id, "sent", Some(4)).await;
    assert_eq!(sms_sent.channel.as_deref(), Some("sms"));
    run.clock.advance(2 * MIN);
    run.wait_outcome_for(&id, "exhausted", AT_ONCE * 2).await;

    // It went through every fake: four refusals, then the SMS and the call centre.
    let failed: Vec<String> = run
        .entries(&id, "send_failed")
        .await
        .into_iter()
        .filter_map(|e| e.channel)
        .collect();
    assert_eq!(failed, ["vk", "telegram", "whatsapp", "email"]);
    assert_eq!(fakes.vk.received_count(), 1);
    assert_eq!(fakes.telegram.calls("sendMessage").len(), 1);
    assert_eq!(fakes.whatsapp.received().len(), 1);
    assert!(fakes.smtp.connections() >= 1);
    assert_eq!(fakes.smsru.received().len(), 1);
    assert_eq!(fakes.call_centre.received_count(), 1);

    // A Telegram message that goes out: its provider message id, in the
    // log, the timeline and the events stream, names the chat by a pseudonym.
    let sent_id = run.id("telegram-sent");
    run.publish(&notification(&sent_id, json!({ "telegram": TELEGRAM_ID })))
        .await;
    let tg_sent = run.wait_entry(&sent_id, "sent", Some(1)).await;
    assert_eq!(tg_sent.channel.as_deref(), Some("telegram"));
    assert_eq!(fakes.telegram.calls("sendMessage").len(), 2);

    let (dead, headers) = dead_letter_headers(&format!("{prefix}.dead"), 4).await;
    assert_eq!(dead, 4, "four notifications are dead-lettered:\n{headers}");
    let mut events = String::new();
    wait_until(
        "the four rejections in the events stream",
        AT_ONCE,
        async || {
            events = events_stream(&prefix).await;
            events.matches("rejected").count() >= 4
        },
    )
    .await;
    let logs = logs.text();

    assert_no_raw_contact("the log", &logs);
    assert_no_raw_contact("the events stream", &events);
    assert_no_raw_contact("the dead-letter headers", &headers);

    // The masked forms are there: the checks above did not pass on nothing.
    // Each provider's answer, as its reason (timeline, events stream, log):
    let reasons = [
        "(peer_id 68•••13)",
        "its new chat id is -1007•••6205",
        "(Recipient 7985•••4912 cannot be reached)",
        "<zi•••@mail.example.ru>: Recipient address rejected",
    ];
    assert_shows("the events stream", &events, &reasons);
    assert_shows("the log", &logs, &reasons);
    // The SMS attempt names the phone; the rejections quote what they refused.
    assert_shows("the log", &logs, &["\"phone\":\"+7985•••4912\""]);
    let refusals = [
        "customer.contacts.sms `7985•••4912` is not a phone number",
        "customer.contacts must be an object, not string \"+7985•••4912\"",
        "id `zi•••@mail.example.ru 7985•••4912` contains a space",
    ];
    assert_shows("the dead-letter headers", &headers, &refusals);
    assert_shows("the events stream", &events, &refusals[..1]);
    assert_shows("the log", &logs.replace("\\\"", "\""), &refusals);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_record_keeps_only_the_contacts_its_policy_reads() {
    // `delivery_delay` of the test configuration: `vk`, then `sms` (webhooks).
    let (receiver, _received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new(
        "kept-contacts",
        &receiver,
        "",
        crate::common::DELIVERY_DELAY,
    );
    let run = Running::start(cfg).await;
    let id = run.id("kept");
    run.publish(&notification(
        &id,
        json!({ "vk": VK_ID, "sms": PHONE, "email": EMAIL, "telegram": TELEGRAM_ID, "viber": UNUSED_PHONE }),
    ))
    .await;
    run.wait_entry(&id, "sent", Some(0)).await;

    let key = format!("{}:{{{id}}}:state", run.cfg.name);
    let record: String = redis::AsyncCommands::get(&mut redis().await, &key)
        .await
        .expect("the record is stored");
    // The record keeps the contacts its channels send to, as they are…
    for used in [VK_ID, PHONE] {
        assert!(record.contains(used), "{used} should be kept: {record:?}");
    }
    // …and no other.
    for unused in [EMAIL, TELEGRAM_ID, UNUSED_PHONE, "viber"] {
        assert!(!record.contains(unused), "{unused} is kept: {record:?}");
    }
    let contacts: BTreeMap<String, String> = run
        .daemon()
        .store
        .load(&id)
        .await
        .unwrap()
        .expect("the cascade loads")
        .notification
        .customer
        .contacts;
    assert_eq!(
        contacts,
        BTreeMap::from([
            ("sms".to_owned(), PHONE.to_owned()),
            ("vk".to_owned(), VK_ID.to_owned())
        ])
    );
}

/// `log.format = "text"` (here by its variable, `CASCADE_LOG_FORMAT`) writes
/// the values the JSON lines carry, masked alike: a child daemon refusing
/// a notification whose refusal quotes the phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_log_lines_mask_contacts_as_json_ones_do() {
    let cfg = TestConfig::new("pii-text-log", "http://127.0.0.1:9", "", DELIVERY_DELAY);
    let _clean = CleanUp(cfg.name.clone());
    let log = std::env::temp_dir().join(format!("{}-daemon.log", cfg.name));
    let mut daemon =
        ChildDaemon::spawn_with(&cfg.path(), &log, "info", &[("CASCADE_LOG_FORMAT", "text")]);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    daemon
        .wait_alive_until("its start-up line", Duration::from_secs(20), async || {
            read_log().contains("cascade is running")
        })
        .await;
    // Refused at intake, the refusal quoting the value it refused.
    let body = notification(&cfg.name, json!(PHONE)).to_string();
    publish_to(&intake_config_of(&cfg.catalog()), body.as_bytes()).await;
    daemon
        .wait_alive_until("the refusal's line", Duration::from_secs(20), async || {
            read_log().contains("must be an object")
        })
        .await;
    let text = read_log();
    let refusal = lines_with(&text, "must be an object")[0];
    assert!(
        !refusal.trim_start().starts_with('{') && refusal.contains("INFO"),
        "a text line, not JSON: {refusal}"
    );
    assert_shows(
        "the text log",
        &text,
        &["customer.contacts must be an object, not string \\\"+7985•••4912\\\""],
    );
    assert_no_raw_contact("the text log", &text);
    daemon.kill();
    let _ = std::fs::remove_file(&log);
}
