//! The `sms` channel end to end: the daemon (real RabbitMQ and Redis) sends
//! through the fake SMS.ru and SMSC gateways, classifies their answers,
//! fails over from one to the other, and records their delivery reports.
//! Step 2 of the policy is a webhook channel (`call_centre`) on
//! `common::fake_receiver`, so an escalation shows up there.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;

use cascade::core::Entry;
use cascade::dev::fakes::script::Scripted;
use cascade::dev::fakes::smsc::FakeSmsc;
use cascade::dev::fakes::smsru::{FakeSmsRu, ReceivedSms, Status};

const MIN: i64 = 60_000;
const SECRET: &str = "sms-report-secret";
const PHONE: &str = "+79161234567";
const DIGITS: &str = "79161234567";
const TEXT: &str = "Заказ 1001 задерживается";

/// SMS first; the call centre if it was not read in 30 minutes or failed.
const POLICY: &str = "stop_on = [\"read\"]\nexpire_after = \"12h\"\n\n[[steps]]\nchannel = \"gateway\"\nwait = \"30m\"\n\n[[steps]]\nchannel = \"call_centre\"\n";

/// The call centre first, SMS second.
const SMS_SECOND: &str = "stop_on = [\"read\"]\n\n[[steps]]\nchannel = \"call_centre\"\nwait = \"30m\"\n\n[[steps]]\nchannel = \"gateway\"\n";

/// What every test channel has beyond its provider keys. `max_backoff` also
/// caps a provider's own delay: 2m lets SMS.ru's and SMSC's minute through
/// (with 3 attempts, backoff never passes 400 ms).
const COMMON: &str = "sender = \"SHOP\"\nreport_secret = \"sms-report-secret\"\ntimeout = \"1s\"\nmax_segments = 3\n\
                      [retry]\nattempts = 3\nbackoff = \"200ms\"\nmax_backoff = \"2m\"\n";

/// One test's daemon, fake gateways, fake call centre and clock. Dropping it
/// stops the daemon and deletes the test's queues and keys.
struct Harness {
    run: Running,
    smsru: FakeSmsRu,
    smsc: FakeSmsc,
    received: Received,
}

wraps_running!(Harness);

/// Provider keys of the `gateway` channel, given the fakes' base URLs.
type Gateway = fn(&str, &str, &str) -> String;

fn smsru_only(smsru: &str, _smsc: &str, _receiver: &str) -> String {
    format!(
        "kind = \"sms\"\nprovider = \"smsru\"\nbase_url = \"{smsru}\"\napi_id = \"test-api-id\"\n{COMMON}"
    )
}

fn smsc_only(_smsru: &str, smsc: &str, _receiver: &str) -> String {
    format!(
        "kind = \"sms\"\nprovider = \"smsc\"\nbase_url = \"{smsc}\"\nlogin = \"shop\"\npassword = \"secret\"\n{COMMON}"
    )
}

impl Harness {
    async fn start(name: &str, gateway: Gateway) -> Harness {
        // Logs show only when a test fails.
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn,cascade=info")
            .with_test_writer()
            .try_init();
        let smsru = FakeSmsRu::start().await;
        let smsc = FakeSmsc::start().await;
        let (receiver_url, received) = fake_receiver(vec![]).await;
        let cfg = TestConfig::new(name, &receiver_url, "", POLICY);
        cfg.write(
            "channels/gateway.toml",
            &gateway(smsru.base_url(), smsc.base_url(), &receiver_url),
        );
        cfg.write(
            "channels/call_centre.toml",
            &format!(
                "kind = \"webhook\"\nurl = \"{receiver_url}/call_centre\"\ntimeout = \"2s\"\n"
            ),
        );
        cfg.write("policies/sms_second.toml", SMS_SECOND);

        Harness {
            // Gauges sampled often: a test waits for the breaker's.
            run: Running::start_opts(cfg, |o| o.sample_every = Duration::from_millis(100))
                .await
                .settle(Settle::Always),
            smsru,
            smsc,
            received,
        }
    }

    /// The delivery-report URL of the `gateway` channel with `secret`.
    fn reports(&self, secret: &str) -> String {
        self.url(&format!("/callbacks/sms/gateway/{secret}"))
    }

    async fn publish_to(&self, id: &str, policy: &str, text: &str) {
        self.run
            .publish(&json!({
                "id": id,
                "policy": policy,
                "customer": { "id": format!("c-{id}"), "contacts": { "sms": PHONE } },
                "content": { "text": text }
            }))
            .await;
    }

    async fn publish(&self, id: &str) {
        self.publish_to(id, "delivery_delay", TEXT).await;
    }

    async fn wait_entry(&self, id: &str, event: &str) -> Entry {
        self.wait_entries(id, event, 1).await.remove(0)
    }

    /// Waits until the call centre got the notification (the escalation).
    async fn wait_call_centre(&self, id: &str) {
        wait_until(
            &format!("{id} reaches the call centre"),
            AT_ONCE,
            async || {
                self.received
                    .on("call_centre")
                    .iter()
                    .any(|b| b["notification_id"] == id)
            },
        )
        .await;
    }

    fn call_centre_got(&self, id: &str) -> bool {
        self.received
            .on("call_centre")
            .iter()
            .any(|b| b["notification_id"] == id)
    }

    async fn receipts(&self, id: &str) -> HashMap<String, i64> {
        self.run.receipts(id).await
    }

    /// `cascade_callbacks_total{provider="sms",result=…}` now (shared by
    /// every test in this process, so compare before and after).
    async fn callbacks(&self, result: &str) -> u64 {
        self.metric(
            "cascade_callbacks_total",
            &[("provider", "sms"), ("result", result)],
        )
        .await
    }

    /// Waits until the SMS.ru fake accepted `n` messages; returns them.
    async fn smsru_received(&self, n: usize) -> Vec<ReceivedSms> {
        wait_until(&format!("SMS.ru accepts {n}"), AT_ONCE, async || {
            self.smsru.received().len() >= n
        })
        .await;
        self.smsru.received()
    }
}

// ---------------------------------------------------------------------------
// SMS.ru
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smsru_sends_and_its_delivery_reports_are_recorded() {
    let h = Harness::start("sms-ok", smsru_only).await;
    let id = h.id("ok");
    h.publish(&id).await;

    let sent = h.wait_entry(&id, "sent").await;
    let got = h.smsru_received(1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].phone, DIGITS, "SMS.ru takes the number without +");
    assert_eq!(got[0].text, TEXT);
    assert_eq!(got[0].sender.as_deref(), Some("SHOP"));
    assert_eq!(
        sent.provider_message_id.as_deref(),
        Some(got[0].id.as_str())
    );
    let sms_id = got[0].id.clone();

    // An authentic report: acknowledged with `100`, recorded in the timeline.
    let recorded_before = h.callbacks("recorded").await;
    assert_eq!(
        h.smsru.report(&h.reports(SECRET), &sms_id, 103).await,
        (200, "100".into())
    );
    let receipt = h.wait_entry(&id, "receipt").await;
    assert_eq!(receipt.reason.as_deref(), Some("delivered"));
    assert_eq!(receipt.channel.as_deref(), Some("gateway"));
    assert!(h.receipts(&id).await.contains_key("delivered"));
    assert_eq!(h.callbacks("recorded").await, recorded_before + 1);
    // Delivered is not read: the step still waits.
    assert_eq!(h.outcome(&id).await, None);

    // A forged report (wrong secret) is refused and changes nothing, even
    // about a failure that would escalate.
    let forbidden_before = h.callbacks("forbidden").await;
    let (status, _) = h.smsru.report(&h.reports("guessed"), &sms_id, 104).await;
    assert_eq!(status, 403);
    let (status, _) = h
        .smsru
        .report(
            &format!(
                "http://{}/callbacks/sms/nope/{SECRET}",
                h.daemon().http_addr
            ),
            &sms_id,
            104,
        )
        .await;
    assert_eq!(status, 403, "an unknown channel is refused too");
    assert_eq!(h.callbacks("forbidden").await, forbidden_before + 2);

    // The same report again is acknowledged and ignored.
    let duplicate_before = h.callbacks("duplicate").await;
    assert_eq!(
        h.smsru.report(&h.reports(SECRET), &sms_id, 103).await,
        (200, "100".into())
    );
    assert_eq!(h.callbacks("duplicate").await, duplicate_before + 1);

    // A report about a message nobody knows: acknowledged and counted.
    let unknown_before = h.callbacks("unknown").await;
    assert_eq!(
        h.smsru
            .report(&h.reports(SECRET), "999999-99999999", 103)
            .await,
        (200, "100".into())
    );
    assert_eq!(h.callbacks("unknown").await, unknown_before + 1);

    // A report that is not final (in transit) is acknowledged and not recorded.
    assert_eq!(
        h.smsru.report(&h.reports(SECRET), &sms_id, 102).await,
        (200, "100".into())
    );

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.entries(&id, "receipt").await.len(), 1);
    assert!(!h.receipts(&id).await.contains_key("failed"));
    assert_eq!(h.outcome(&id).await, None);
    assert!(!h.call_centre_got(&id));

    // Unread after 30 minutes: the call centre. A failed report about the
    // SMS arriving now is stale: it must not touch the call-centre step.
    h.clock.advance(31 * MIN);
    h.wait_call_centre(&id).await;
    h.wait_outcome(&id, "exhausted").await;
    let stale_before = h.callbacks("stale").await;
    assert_eq!(
        h.smsru.report(&h.reports(SECRET), &sms_id, 104).await,
        (200, "100".into())
    );
    assert_eq!(h.callbacks("stale").await, stale_before + 1);
    assert!(!h.receipts(&id).await.contains_key("failed"));
    assert_eq!(h.smsru.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_report_escalates_the_waiting_sms_step_at_once() {
    let h = Harness::start("sms-failed", smsru_only).await;
    let id = h.id("failed");
    h.publish(&id).await;
    h.wait_entry(&id, "sent").await;
    let sms_id = h.smsru_received(1).await[0].id.clone();
    assert!(!h.call_centre_got(&id));

    // No clock advance: the 30-minute wait is cut short by the report.
    assert_eq!(
        h.smsru.report(&h.reports(SECRET), &sms_id, 104).await,
        (200, "100".into())
    );
    h.wait_call_centre(&id).await;
    let failed = h.wait_entry(&id, "send_failed").await;
    assert_eq!(failed.step, Some(0));
    assert_eq!(failed.reason.as_deref(), Some("failed receipt"));
    let escalated = h.wait_entry(&id, "escalated").await;
    assert_eq!(escalated.reason.as_deref(), Some("failed"));
    assert!(h.receipts(&id).await.contains_key("failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smsru_transient_error_is_retried_then_succeeds() {
    let h = Harness::start("sms-retry", smsru_only).await;
    h.smsru.script().then(Scripted::Transient, 1); // request status 220
    let id = h.id("retry");
    h.publish(&id).await;

    let failed = h.wait_entry(&id, "send_failed").await;
    assert!(
        failed
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("SMS.ru 220"),
        "{failed:?}"
    );
    assert!(failed.until_ms.is_some(), "a retry is scheduled");
    h.clock.advance(1_000); // past the backoff
    let sent = h.wait_entry(&id, "sent").await;
    let got = h.smsru_received(1).await;
    assert_eq!(
        sent.provider_message_id.as_deref(),
        Some(got[0].id.as_str())
    );
    assert_eq!(h.smsru.requests(), 2);
    assert!(!h.call_centre_got(&id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smsru_rate_limit_waits_a_minute_then_succeeds() {
    let h = Harness::start("sms-rate", smsru_only).await;
    h.smsru
        .script()
        .then(Scripted::RateLimited(Duration::from_secs(60)), 1); // number status 231
    let id = h.id("rate");
    h.publish(&id).await;

    let limited = h.wait_entry(&id, "send_failed").await;
    assert_eq!(limited.reason.as_deref(), Some("rate_limited"));
    let wait_ms = limited.until_ms.unwrap() - limited.at_ms;
    assert!(
        wait_ms >= MIN,
        "waits SMS.ru's minute, not the backoff: {wait_ms}"
    );
    h.clock.advance(MIN + 1_000);
    h.wait_entry(&id, "sent").await;
    assert_eq!(h.smsru_received(1).await.len(), 1);
    assert_eq!(h.smsru.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smsru_retries_exhausted_escalate_to_the_next_step() {
    let h = Harness::start("sms-exhaust", smsru_only).await;
    h.smsru.then_status(Status::Request(500), 3);
    let id = h.id("exhaust");
    h.publish(&id).await;

    for n in 1..=2 {
        h.wait_entries(&id, "send_failed", n).await;
        h.clock.advance(1_000);
    }
    h.wait_call_centre(&id).await;
    let failed = h.wait_entries(&id, "send_failed", 3).await;
    assert!(
        failed[2]
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("gave up after 3 attempts"),
        "{:?}",
        failed[2]
    );
    assert_eq!(h.smsru.requests(), 3);
    assert!(h.smsru.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smsru_permanent_error_escalates_at_once() {
    let h = Harness::start("sms-perm", smsru_only).await;
    h.smsru.script().then(Scripted::Permanent, 1); // number status 202
    let id = h.id("perm");
    h.publish(&id).await;

    h.wait_call_centre(&id).await;
    let failed = h.wait_entry(&id, "send_failed").await;
    assert!(
        failed
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("SMS.ru 202"),
        "{failed:?}"
    );
    assert!(failed.until_ms.is_none(), "no retry");
    assert_eq!(h.smsru.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smsru_misconfiguration_escalates_and_stops_the_channel() {
    let h = Harness::start("sms-config", smsru_only).await;
    h.smsru.script().then(Scripted::Misconfigured, 1); // request status 200
    let first = h.id("config-1");
    h.publish(&first).await;
    h.wait_call_centre(&first).await;
    let failed = h.wait_entry(&first, "send_failed").await;
    assert!(
        failed
            .reason
            .as_deref()
            .unwrap_or("")
            .starts_with("misconfigured: SMS.ru 200"),
        "{failed:?}"
    );

    // The circuit is open: the next notification escalates without a request.
    let second = h.id("config-2");
    h.publish(&second).await;
    h.wait_call_centre(&second).await;
    let failed = h.wait_entry(&second, "send_failed").await;
    assert!(
        failed
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("circuit open"),
        "{failed:?}"
    );
    assert_eq!(h.smsru.requests(), 1);
    wait_until("the breaker gauge says open", AT_ONCE, async || {
        h.metric("cascade_breaker_open", &[("channel", "gateway")])
            .await
            == 1
    })
    .await;
    assert_eq!(
        h.metric("cascade_breaker_open", &[("channel", "call_centre")])
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smsru_timeout_after_sending_is_uncertain_and_never_resent() {
    let h = Harness::start("sms-ambiguous", smsru_only).await;
    h.smsru
        .script()
        .then(Scripted::Slow(Duration::from_secs(2)), 1);
    let id = h.id("ambiguous");
    h.publish(&id).await;

    let uncertain = h.wait_entry(&id, "uncertain").await;
    assert!(
        uncertain.reason.as_deref().unwrap_or("").contains("SMS.ru"),
        "{uncertain:?}"
    );
    // SMS.ru cannot dedupe: no resend, the step's wait runs instead.
    h.clock.advance(1_000);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(h.smsru.requests(), 1);
    assert_eq!(h.smsru.received().len(), 1, "the fake did take it");
    assert!(h.entries(&id, "sent").await.is_empty());
    assert!(!h.call_centre_got(&id));
}

// ---------------------------------------------------------------------------
// SMSC
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smsc_sends_with_our_id_and_its_reports_are_recorded() {
    let h = Harness::start("smsc-ok", smsc_only).await;
    // A fixed id (the queue and key prefix are this test's own), so SMSC's
    // id can be a fixed vector: see tests/provider_ids.rs.
    let id = "order-1001".to_owned();
    h.publish(&id).await;

    let sent = h.wait_entry(&id, "sent").await;
    let got = h.smsc.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].phone, DIGITS);
    assert_eq!(got[0].text, TEXT, "sent as UTF-8");
    assert_eq!(got[0].sender.as_deref(), Some("SHOP"));
    // Our own id, derived from the notification and step ("order-1001:0").
    let ours = "1898531391";
    assert_eq!(got[0].id, ours);
    assert_eq!(sent.provider_message_id.as_deref(), Some(ours));

    // Delivered, then a forged and a duplicate report, then failed.
    assert_eq!(
        h.smsc.report(&h.reports(SECRET), ours, DIGITS, 1).await,
        (200, "OK".into())
    );
    let receipt = h.wait_entry(&id, "receipt").await;
    assert_eq!(receipt.reason.as_deref(), Some("delivered"));
    assert_eq!(
        h.smsc
            .report(&h.reports("forged"), ours, DIGITS, 20)
            .await
            .0,
        403
    );
    assert_eq!(
        h.smsc.report(&h.reports(SECRET), ours, DIGITS, 1).await,
        (200, "OK".into())
    );
    assert_eq!(
        h.smsc.report(&h.reports(SECRET), "12345", DIGITS, 20).await,
        (200, "OK".into()),
        "unknown ids are acknowledged"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.entries(&id, "receipt").await.len(), 1);
    assert!(!h.call_centre_got(&id));

    assert_eq!(
        h.smsc.report(&h.reports(SECRET), ours, DIGITS, 20).await,
        (200, "OK".into())
    );
    h.wait_call_centre(&id).await;
    assert!(h.receipts(&id).await.contains_key("failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smsc_timeout_is_resent_with_the_same_id_and_error_9_means_sent() {
    let h = Harness::start("smsc-resend", smsc_only).await;
    h.smsc
        .script()
        .then(Scripted::Slow(Duration::from_secs(2)), 1);
    let id = "order-1002".to_owned(); // fixed, as in the test above
    h.publish(&id).await;

    // The first answer times out; SMSC dedupes by our id, so it is resent…
    let failed = h.wait_entry(&id, "send_failed").await;
    assert!(
        failed.reason.as_deref().unwrap_or("").contains("SMSC"),
        "{failed:?}"
    );
    h.clock.advance(1_000);
    // …and SMSC refuses the identical request (error 9): it already has it.
    let sent = h.wait_entry(&id, "sent").await;
    // Our own id for "order-1002:0".
    assert_eq!(sent.provider_message_id.as_deref(), Some("1821871159"));
    assert_eq!(h.smsc.requests(), 2);
    assert_eq!(
        h.smsc.received().len(),
        1,
        "one message reached the customer"
    );
    assert!(!h.call_centre_got(&id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smsc_error_classes() {
    let h = Harness::start("smsc-errors", smsc_only).await;
    // Error 4 (IP blocked for a while): rate-limited, then accepted.
    h.smsc
        .script()
        .then(Scripted::RateLimited(Duration::from_secs(60)), 1);
    let limited = h.id("limited");
    h.publish(&limited).await;
    let entry = h.wait_entry(&limited, "send_failed").await;
    assert_eq!(entry.reason.as_deref(), Some("rate_limited"));
    h.clock.advance(MIN + 1_000);
    h.wait_entry(&limited, "sent").await;

    // Error 8 (cannot deliver to this number): escalates at once.
    h.smsc.script().then(Scripted::Permanent, 1);
    let bad = h.id("bad-number");
    h.publish(&bad).await;
    h.wait_call_centre(&bad).await;
    let entry = h.wait_entry(&bad, "send_failed").await;
    assert!(
        entry
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("SMSC error 8"),
        "{entry:?}"
    );

    // HTTP 503: transient, retried.
    h.smsc.script().then(Scripted::Transient, 1);
    let flaky = h.id("flaky");
    h.publish(&flaky).await;
    let entry = h.wait_entry(&flaky, "send_failed").await;
    assert!(
        entry.reason.as_deref().unwrap_or("").contains("503"),
        "{entry:?}"
    );
    h.clock.advance(1_000);
    h.wait_entry(&flaky, "sent").await;

    // Error 2 (wrong login or password): misconfigured, escalates at once.
    h.smsc.then_error(2, 1);
    let config = h.id("config");
    h.publish(&config).await;
    h.wait_call_centre(&config).await;
    let entry = h.wait_entry(&config, "send_failed").await;
    assert!(
        entry
            .reason
            .as_deref()
            .unwrap_or("")
            .starts_with("misconfigured: SMSC error 2"),
        "{entry:?}"
    );
    assert_eq!(h.smsc.received().len(), 2);
}

// ---------------------------------------------------------------------------
// Failover, the generic provider, segments
// ---------------------------------------------------------------------------

fn smsru_then_smsc(smsru: &str, smsc: &str, _receiver: &str) -> String {
    format!(
        "kind = \"sms\"\nproviders = \"smsru,smsc\"\nsmsru_base_url = \"{smsru}\"\napi_id = \"test-api-id\"\n\
         smsc_base_url = \"{smsc}\"\napikey = \"smsc-key\"\n\
         sender = \"SHOP\"\nreport_secret = \"{SECRET}\"\ntimeout = \"1s\"\n\
         [retry]\nattempts = 4\nbackoff = \"200ms\"\nmax_backoff = \"400ms\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_smsru_hands_over_to_smsc() {
    let h = Harness::start("sms-failover", smsru_then_smsc).await;
    h.smsru.script().then(Scripted::Transient, 100);
    let id = h.id("failover");
    h.publish(&id).await;

    // Attempts 1 and 2 go to SMS.ru, 3 and 4 to SMSC.
    for n in 1..=2 {
        h.wait_entries(&id, "send_failed", n).await;
        h.clock.advance(1_000);
    }
    let sent = h.wait_entry(&id, "sent").await;
    assert_eq!(h.smsru.requests(), 2);
    assert!(h.smsru.received().is_empty());
    let got = h.smsc.received();
    assert_eq!(got.len(), 1, "SMSC took the message");
    assert_eq!(got[0].text, TEXT);
    assert_eq!(
        sent.provider_message_id.as_deref(),
        Some(got[0].id.as_str())
    );
    assert!(!h.call_centre_got(&id));

    // SMSC's report comes to the same channel and is recorded.
    assert_eq!(
        h.smsc
            .report(&h.reports(SECRET), &got[0].id, DIGITS, 1)
            .await,
        (200, "OK".into())
    );
    let receipt = h.wait_entry(&id, "receipt").await;
    assert_eq!(receipt.reason.as_deref(), Some("delivered"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_smsru_answer_does_not_fail_over() {
    let h = Harness::start("sms-no-failover", smsru_then_smsc).await;
    h.smsru
        .script()
        .then(Scripted::Slow(Duration::from_secs(2)), 1);
    let id = h.id("no-failover");
    h.publish(&id).await;

    h.wait_entry(&id, "uncertain").await;
    h.clock.advance(1_000);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(h.smsru.requests(), 1);
    assert_eq!(
        h.smsc.requests(),
        0,
        "never sent twice through another gateway"
    );
}

fn generic(_smsru: &str, _smsc: &str, receiver: &str) -> String {
    format!(
        "kind = \"sms\"\nprovider = \"generic\"\nurl = \"{receiver}/gw\"\n\
         body = '{{\"to\":\"{{phone}}\",\"message\":\"{{text}}\",\"from\":\"{{sender}}\",\"ref\":\"{{id}}\"}}'\n{COMMON}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generic_provider_fills_its_template() {
    let h = Harness::start("sms-generic", generic).await;
    let id = h.id("generic");
    h.publish(&id).await;
    let sent = h.wait_entry(&id, "sent").await;
    let posts = h.received.on("gw");
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0],
        json!({ "to": PHONE, "message": TEXT, "from": "SHOP", "ref": format!("{id}:0") })
    );
    // The receiver answered `{"id": "task-1"}`.
    assert_eq!(sent.provider_message_id.as_deref(), Some("task-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cyrillic_counts_ucs2_segments_and_too_many_are_refused_at_send() {
    let h = Harness::start("sms-segments", smsru_only).await;
    // 71 Cyrillic letters: two UCS-2 segments; 150 Latin letters: one GSM-7 segment.
    let cyrillic = "ж".repeat(71);
    let latin = "a".repeat(150);
    let (ru, en) = (h.id("ru"), h.id("en"));
    h.publish_to(&ru, "sms_second", &cyrillic).await;
    h.publish_to(&en, "sms_second", &latin).await;
    h.wait_call_centre(&ru).await;
    h.wait_call_centre(&en).await;
    h.wait_entry(&ru, "sent").await;
    h.wait_entry(&en, "sent").await;

    // The channel now allows one segment (a reload between intake and send).
    let mut catalog = (**h.daemon().catalog.load()).clone();
    catalog
        .channels
        .get_mut("gateway")
        .expect("the gateway channel")
        .max_segments = Some(1);
    h.daemon().catalog.store(Arc::new(catalog));

    h.clock.advance(31 * MIN);
    h.wait_outcome(&ru, "exhausted").await;
    let refused = h.wait_entry(&ru, "send_failed").await;
    let reason = refused.reason.unwrap_or_default();
    assert!(
        reason.contains("2 SMS segments") && reason.contains("UTF-16"),
        "{reason}"
    );
    h.wait_entry(&en, "sent").await;
    let got = h.smsru_received(1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].text, latin);
    assert_eq!(
        h.smsru.requests(),
        1,
        "the refused text never reached SMS.ru"
    );
}
