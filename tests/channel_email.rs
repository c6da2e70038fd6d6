//! The `email` channel end to end: the daemon (real RabbitMQ and Redis)
//! submits through the loopback SMTP sink, classifies its answers, and
//! records opens and clicks from the signed tracking links found in the
//! stored messages. Step 2 of the policy is the `vk` webhook channel of
//! `common::fake_receiver` (standing in for a messenger), so an escalation
//! shows up there.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

use cascade::channels::email::{Tracked, TrackingToken, sign};
use cascade::core::Entry;
use cascade::dev::fakes::smtp::{self, Answer, FakeSmtp, Mail};

const HOUR: i64 = 3_600_000;
const TRACKING_SECRET: &str = "test-tracking-secret";
const CART: &str = "https://shop.example.ru/cart/7?x=1&y=2";
const ADDRESS: &str = "ivan@example.ru";

/// Email first; the messenger (a webhook here) if not opened within a day.
const POLICY: &str = "stop_on = [\"opened\", \"clicked\", \"read\", \"replied\"]\nexpire_after = \"3d\"\n\n\
                      [[steps]]\nchannel = \"email\"\nwait = \"1d\"\n\n[[steps]]\nchannel = \"vk\"\n";

/// The mail server posts replies with the shared token; `crm` records
/// receipts but may not post replies.
const CALLERS: &str = "inbound_email_callers = [\"shared\"]\n\n[http.receipt_tokens]\ncrm = \"crm-token-0123456789abcdef\"\n\n\
     [replies]\nsink = \"helpdesk\"\nlink_secret = \"a-replies-link-secret-long-enough\"\n";

fn email_channel(port: u16, extra: &str) -> String {
    format!(
        "kind = \"email\"\nhost = \"127.0.0.1\"\nport = \"{port}\"\ntls = \"none\"\n\
         from = \"Shop <noreply@shop.example.ru>\"\n\
         unsubscribe_url = \"https://shop.example.ru/unsubscribe?c={{customer_id}}\"\n\
         tracking_secret = \"{TRACKING_SECRET}\"\ntimeout = \"1s\"\n{extra}\n\
         [retry]\nattempts = 3\nbackoff = \"100ms\"\nmax_backoff = \"200ms\"\n"
    )
}

/// One test's daemon, SMTP sink, messenger receiver and clock. The daemon
/// listens on the port of `http.public_url`, so the links in the stored
/// messages reach it. Its HTTP client follows no redirects, so a 302 can be
/// looked at. Dropping it stops the daemon and deletes the test's queues and
/// keys.
struct Harness {
    run: Running,
    messenger: Received,
    sink: FakeSmtp,
}

wraps_running!(Harness);

impl Harness {
    async fn start(name: &str) -> Harness {
        Self::start_with(name, "").await
    }

    /// `extra` goes into `channels/email.toml` (before its `[retry]`).
    async fn start_with(name: &str, extra: &str) -> Harness {
        Self::start_on(name, |sink_port| email_channel(sink_port, extra)).await
    }

    /// `channel` writes `channels/email.toml` given the sink's port.
    async fn start_on(name: &str, channel: impl FnOnce(u16) -> String) -> Harness {
        let sink = smtp::start().await.expect("the SMTP sink starts");
        let (url, messenger) = fake_receiver(vec![]).await;
        let cfg = TestConfig::new(name, &url, CALLERS, DELIVERY_DELAY);
        cfg.write("policies/abandoned_cart.toml", POLICY);
        cfg.write("channels/email.toml", &channel(sink.port()));
        cfg.write(
            "channels/helpdesk.toml",
            &format!("kind = \"webhook\"\ncontact = \"none\"\nurl = \"{url}/helpdesk\"\ntimeout = \"2s\"\n"),
        );
        let mut run = Running::start(cfg).await;
        // Tracking links point at the port the daemon was given.
        let public_url = format!("http://{}", run.daemon().http_addr);
        run.daemon().catalog.rcu(|c| {
            let mut c = (**c).clone();
            c.settings.http.public_url = public_url.clone();
            c
        });
        run.http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Harness {
            run,
            messenger,
            sink,
        }
    }

    /// Publishes an abandoned-cart notification with an email address, a VK
    /// id, HTML with the cart link, and the link.
    async fn publish(&self, id: &str) {
        self.run
            .publish(&json!({
                "id": id,
                "policy": "abandoned_cart",
                "customer": { "id": format!("c-{id}"), "contacts": { "email": ADDRESS, "vk": "123456" } },
                "content": {
                    "subject": "Корзина ждёт",
                    "text": "Вы забыли корзину",
                    "html": format!("<html><body><p>Вы забыли <a href=\"{}\">корзину</a></p></body></html>",
                                    CART.replace('&', "&amp;")),
                    "link": CART
                }
            }))
            .await;
    }

    /// Waits for the `n`-th timeline entry of this kind and returns it.
    async fn wait_entries(&self, id: &str, event: &str, n: usize) -> Entry {
        self.run.wait_entries(id, event, n).await.swap_remove(n - 1)
    }

    /// The messages the sink read for this notification (its Message-ID is
    /// per notification and step, so match on the customer in the unsubscribe URL).
    fn mails_of(&self, id: &str) -> Vec<Mail> {
        let marker = format!("c=c-{id}");
        self.sink
            .received()
            .into_iter()
            .filter(|m| {
                m.header("List-Unsubscribe")
                    .is_some_and(|u| u.contains(&marker))
            })
            .collect()
    }

    /// Waits until step 1 went out and returns the accepted message.
    async fn sent_mail(&self, id: &str) -> Mail {
        self.wait_entries(id, "sent", 1).await;
        let mut accepted: Vec<Mail> = self
            .mails_of(id)
            .into_iter()
            .filter(|m| m.reply == 250)
            .collect();
        assert_eq!(accepted.len(), 1, "one accepted message for {id}");
        accepted.remove(0)
    }

    /// POSTs to the messenger for this notification so far.
    fn messenger_posts(&self, id: &str) -> usize {
        self.messenger
            .on("vk")
            .iter()
            .filter(|b| b["notification_id"] == id)
            .count()
    }

    async fn wait_messenger(&self, id: &str) {
        wait_until(
            &format!("the messenger step of {id}"),
            AT_ONCE,
            async || self.messenger_posts(id) == 1,
        )
        .await;
        let post = self
            .messenger
            .on("vk")
            .into_iter()
            .find(|b| b["notification_id"] == id)
            .unwrap();
        assert_eq!(post["step"], 2);
        assert_eq!(post["contact"], "123456");
    }

    /// GET; status, headers and body bytes.
    async fn get(&self, url: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let res = self.http.get(url).send().await.expect("the daemon answers");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.bytes().await.unwrap_or_default().to_vec();
        (status, headers, body)
    }

    /// `cascade_callbacks_total{provider="tracking",result=…}` now.
    async fn tracking_count(&self, result: &str) -> u64 {
        self.metric(
            "cascade_callbacks_total",
            &[("provider", "tracking"), ("result", result)],
        )
        .await
    }

    async fn stop(mut self) {
        self.run.stop().await;
    }
}

/// The URL with one character of its token's MAC changed.
fn tamper_mac(url: &str) -> String {
    let (rest, gif) = match url.strip_suffix(".gif") {
        Some(r) => (r, ".gif"),
        None => (url, ""),
    };
    let (head, mac) = rest.rsplit_once('.').expect("payload.mac");
    let flipped: String = mac
        .char_indices()
        .map(|(i, c)| match (i, c) {
            (2, 'A') => 'B',
            (2, _) => 'A',
            _ => c,
        })
        .collect();
    assert_ne!(flipped, mac);
    format!("{head}.{flipped}{gif}")
}

fn send_failed_reasons(timeline: &[Entry]) -> Vec<String> {
    timeline
        .iter()
        .filter(|e| e.event.as_str() == "send_failed")
        .map(|e| e.reason.clone().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_goes_out_with_its_ids_unsubscribe_both_parts_and_tracking() {
    let h = Harness::start("email-sent").await;
    let id = h.id("n");
    h.publish(&id).await;
    let mail = h.sent_mail(&id).await;

    assert_eq!(mail.mail_from, "noreply@shop.example.ru");
    assert_eq!(mail.rcpt_to, [ADDRESS]);
    let message_id = mail.header("Message-ID").expect("a Message-ID");
    assert!(
        message_id.starts_with('<') && message_id.ends_with("@shop.example.ru>"),
        "{message_id}"
    );
    let sent = h.wait_entries(&id, "sent", 1).await;
    assert_eq!(
        sent.provider_message_id.as_deref(),
        Some(message_id.as_str()),
        "the provider message id is our Message-ID"
    );
    assert_eq!(
        mail.header("List-Unsubscribe").as_deref(),
        Some(format!("<https://shop.example.ru/unsubscribe?c=c-{id}>").as_str())
    );
    assert_eq!(
        mail.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    assert!(mail.header("Subject").is_some() && mail.header("Date").is_some());
    assert_eq!(mail.header("Reply-To"), None, "no reply_to, no Reply-To");
    let content_type = mail.header("Content-Type").unwrap();
    assert!(
        content_type.starts_with("multipart/alternative"),
        "{content_type}"
    );
    let text = mail.text().expect("a text part");
    let html = mail.html().expect("an HTML part");
    assert!(text.starts_with("Вы забыли корзину"), "{text}");
    assert!(html.contains("Вы забыли"), "{html}");
    // The cart link is tracked in both parts; the original is nowhere as a link.
    let public = h.url("");
    assert!(text.contains(&format!("{public}/t/c/")), "{text}");
    let links = mail.links();
    assert_eq!(links.len(), 1, "{links:?}");
    assert!(links[0].starts_with(&format!("{public}/t/c/")), "{links:?}");
    let pixel = mail.pixel_url().expect("an open pixel");
    assert!(pixel.starts_with(&format!("{public}/t/o/")), "{pixel}");
    assert_eq!(h.events(&id).await, ["accepted", "sent"]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_refusal_is_retried_with_the_same_message_id() {
    let h = Harness::start("email-retry").await;
    h.sink.then(Answer::DataTransient, 1);
    let id = h.id("n");
    h.publish(&id).await;
    let failed = h.wait_entries(&id, "send_failed", 1).await;
    assert!(
        failed.until_ms.is_some(),
        "a retry is scheduled: {failed:?}"
    );
    assert!(
        failed.reason.as_deref().unwrap_or("").contains("451"),
        "{failed:?}"
    );
    h.clock.advance(1_000);
    let mail = h.sent_mail(&id).await;
    let all = h.mails_of(&id);
    assert_eq!(
        all.iter().map(|m| m.reply).collect::<Vec<_>>(),
        [451, 250],
        "refused once, then taken"
    );
    assert_eq!(
        all[0].header("Message-ID"),
        mail.header("Message-ID"),
        "the retry carries the same Message-ID"
    );
    assert_eq!(h.events(&id).await, ["accepted", "send_failed", "sent"]);
    assert_eq!(h.messenger_posts(&id), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_refusals_until_the_attempts_run_out_escalate() {
    let h = Harness::start("email-exhausted").await;
    h.sink.then(Answer::RcptTransient, 3);
    let id = h.id("n");
    h.publish(&id).await;
    for n in 1..=2 {
        let failed = h.wait_entries(&id, "send_failed", n).await;
        assert!(failed.until_ms.is_some(), "retry {n} scheduled: {failed:?}");
        h.clock.advance(1_000);
    }
    h.wait_messenger(&id).await;
    let reasons = send_failed_reasons(&h.timeline(&id).await);
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons.iter().all(|r| r.contains("450")), "{reasons:?}");
    assert!(
        reasons[2].contains("gave up after 3 attempts"),
        "{reasons:?}"
    );
    assert!(h.events(&id).await.contains(&"escalated".to_owned()));
    // RCPT was refused: no message data ever reached the sink.
    assert!(h.mails_of(&id).is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_for_the_recipient_escalate_at_once() {
    let h = Harness::start("email-permanent").await;
    // 550 on RCPT (user unknown), then 554 after the data (spam).
    for (suffix, answer, code) in [
        ("rcpt", Answer::RcptPermanent, "550"),
        ("data", Answer::DataPermanent, "554"),
    ] {
        h.sink.then(answer, 1);
        let id = h.id(suffix);
        h.publish(&id).await;
        // No clock moves: the messenger step goes out now.
        h.wait_messenger(&id).await;
        let timeline = h.timeline(&id).await;
        let reasons = send_failed_reasons(&timeline);
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].contains(code), "{reasons:?}");
        let failed = timeline
            .iter()
            .find(|e| e.event.as_str() == "send_failed")
            .unwrap();
        assert_eq!(failed.until_ms, None, "no retry");
        h.wait_outcome(&id, "exhausted").await;
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_misconfigured_and_escalate_at_once() {
    let h = Harness::start_with(
        "email-auth",
        "username = \"shop\"\npassword = \"not-the-password\"",
    )
    .await;
    h.sink.require_auth("shop", "the-password");
    let id = h.id("n");
    h.publish(&id).await;
    h.wait_messenger(&id).await;
    let reasons = send_failed_reasons(&h.timeline(&id).await);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].starts_with("misconfigured") && reasons[0].contains("535"),
        "{reasons:?}"
    );
    assert!(h.sink.received().is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_cannot_be_reached_is_retried_then_escalated() {
    // Bound (so no other test can take the port) but never listening:
    // connections to it are refused for as long as the test runs.
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = closed.local_addr().unwrap().port();
    let h = Harness::start_on("email-down", |_| email_channel(port, "")).await;
    let id = h.id("n");
    h.publish(&id).await;
    for n in 1..=2 {
        h.wait_entries(&id, "send_failed", n).await;
        h.clock.advance(1_000);
    }
    h.wait_messenger(&id).await;
    let reasons = send_failed_reasons(&h.timeline(&id).await);
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons.iter().all(|r| r.contains("cannot connect")),
        "{reasons:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_after_the_data_is_uncertain_and_not_resent() {
    let h = Harness::start("email-dropped").await;
    h.sink.then(Answer::DropAfterData, 1);
    let id = h.id("n");
    h.publish(&id).await;
    let uncertain = h.wait_entries(&id, "uncertain", 1).await;
    assert!(
        uncertain.reason.as_deref().unwrap_or("").contains("lost"),
        "{uncertain:?}"
    );
    h.clock.advance(HOUR);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.mails_of(&id).len(), 1, "no blind resend");
    assert_eq!(h.messenger_posts(&id), 0, "it waits: the email may be out");
    // A day later nobody opened it: the messenger.
    h.clock.advance(24 * HOUR);
    h.wait_messenger(&id).await;
    assert_eq!(h.mails_of(&id).len(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_answers_too_late_is_uncertain_and_not_resent() {
    let h = Harness::start("email-slow").await;
    h.sink.then(Answer::Slow(Duration::from_millis(1_500)), 1);
    let id = h.id("n");
    h.publish(&id).await;
    let uncertain = h.wait_entries(&id, "uncertain", 1).await;
    assert!(
        uncertain
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("timeout"),
        "{uncertain:?}"
    );
    h.clock.advance(HOUR);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.mails_of(&id).len(), 1, "no blind resend");
    assert_eq!(h.events(&id).await, ["accepted", "uncertain"]);
    // The channel still works for the next notification.
    let next = h.id("next");
    h.publish(&next).await;
    h.sent_mail(&next).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_the_email_stops_the_cascade_before_the_messenger() {
    let h = Harness::start("email-opened").await;
    let id = h.id("n");
    h.publish(&id).await;
    let mail = h.sent_mail(&id).await;
    let pixel = mail.pixel_url().expect("the pixel is in the stored email");
    let duplicates_before = h.tracking_count("duplicate").await;

    let (status, headers, body) = h.get(&pixel).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "image/gif");
    assert!(
        headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("no-store")
    );
    assert!(body.starts_with(b"GIF89a") && body.len() == 43);
    h.wait_outcome(&id, "completed").await;
    let receipt = h.wait_entries(&id, "receipt", 1).await;
    assert_eq!(receipt.reason.as_deref(), Some("opened"));
    assert_eq!(receipt.channel.as_deref(), Some("email"));

    // The same pixel again (the client re-renders): acknowledged, counted, ignored.
    let (status, _, again) = h.get(&pixel).await;
    assert_eq!((status, &again), (200, &body));
    wait_until("the duplicate open is counted", AT_ONCE, async || {
        h.tracking_count("duplicate").await > duplicates_before
    })
    .await;

    // Past the day's wait: no messenger send.
    h.clock.advance(25 * HOUR);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.messenger_posts(&id), 0, "no messenger after an open");
    let events = h.events(&id).await;
    assert_eq!(events, ["accepted", "sent", "receipt", "completed"]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracked_click_redirects_to_the_original_url_and_records_clicked() {
    let h = Harness::start("email-clicked").await;
    let id = h.id("n");
    h.publish(&id).await;
    let mail = h.sent_mail(&id).await;
    let link = mail.links().pop().expect("a tracked link");

    // A `u=` in the query must not steer the redirect.
    let (status, headers, _) = h.get(&format!("{link}?u=https://evil.example/")).await;
    assert_eq!(status, 302);
    assert_eq!(headers["location"], CART);
    h.wait_outcome(&id, "completed").await;
    let receipt = h.wait_entries(&id, "receipt", 1).await;
    assert_eq!(receipt.reason.as_deref(), Some("clicked"));
    // A second click still takes the customer to the shop; nothing new is recorded.
    let (status, headers, _) = h.get(&link).await;
    assert_eq!(
        (status, &headers["location"]),
        (302, &CART.parse().unwrap())
    );
    assert_eq!(
        h.events(&id).await,
        ["accepted", "sent", "receipt", "completed"]
    );
    h.clock.advance(25 * HOUR);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.messenger_posts(&id), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_or_forged_tokens_are_refused_and_change_nothing() {
    let h = Harness::start("email-forged").await;
    let id = h.id("n");
    h.publish(&id).await;
    let mail = h.sent_mail(&id).await;
    let pixel = mail.pixel_url().unwrap();
    let link = mail.links().pop().unwrap();
    let forged_before = h.tracking_count("forged").await;
    let public = h.url("");

    let secret_of_another = |tracked| {
        sign(
            "not-the-secret",
            &TrackingToken {
                channel: "email".into(),
                notification_id: id.clone(),
                step: 0,
                tracked,
                until_ms: i64::MAX,
            },
        )
    };
    let bad_pixels = [
        tamper_mac(&pixel),
        format!("{public}/t/o/{}.gif", secret_of_another(Tracked::Open)),
        format!("{public}/t/o/garbage.gif"),
        format!(
            "{public}/t/o/{}",
            pixel.rsplit('/').next().unwrap().trim_end_matches(".gif")
        ),
    ];
    let mut answers = Vec::new();
    for url in &bad_pixels {
        let (status, headers, body) = h.get(url).await;
        answers.push((status, headers["content-type"].clone(), body));
    }
    let bad_links = [
        tamper_mac(&link),
        format!(
            "{public}/t/c/{}",
            secret_of_another(Tracked::Click {
                url: "https://evil.example/".into()
            })
        ),
        // An open token is no link.
        format!(
            "{public}/t/c/{}",
            pixel.rsplit('/').next().unwrap().trim_end_matches(".gif")
        ),
    ];
    for url in &bad_links {
        let (status, headers, _) = h.get(url).await;
        assert_eq!(status, 404, "{url}");
        assert!(headers.get("location").is_none(), "no redirect for {url}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h.events(&id).await,
        ["accepted", "sent"],
        "nothing recorded"
    );
    assert_eq!(h.tracking_count("forged").await, forged_before + 7);

    // A bad pixel looks exactly like a good one.
    let (status, headers, good_body) = h.get(&pixel).await;
    for (s, ct, body) in &answers {
        assert_eq!(
            (*s, ct, body),
            (status, &headers["content-type"], &good_body)
        );
    }
    h.wait_outcome(&id, "completed").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authentic_token_for_an_unknown_notification_is_answered_and_counted() {
    let h = Harness::start("email-unknown").await;
    let unknown_before = h.tracking_count("unknown").await;
    let token = |tracked| {
        sign(
            TRACKING_SECRET,
            &TrackingToken {
                channel: "email".into(),
                notification_id: h.id("never-sent"),
                step: 0,
                tracked,
                until_ms: i64::MAX,
            },
        )
    };
    let (status, headers, body) = h
        .get(&h.url(&format!("/t/o/{}.gif", token(Tracked::Open))))
        .await;
    assert_eq!(
        (status, &headers["content-type"]),
        (200, &"image/gif".parse().unwrap())
    );
    assert_eq!(body.len(), 43);
    let click = token(Tracked::Click { url: CART.into() });
    let (status, headers, _) = h.get(&h.url(&format!("/t/c/{click}"))).await;
    assert_eq!(
        (status, &headers["location"]),
        (302, &CART.parse().unwrap())
    );
    wait_until("both are counted as unknown", AT_ONCE, async || {
        h.tracking_count("unknown").await >= unknown_before + 2
    })
    .await;
    assert!(
        h.daemon()
            .store
            .status(&h.id("never-sent"))
            .await
            .unwrap()
            .is_none()
    );
    h.stop().await;
}

/// A hard bounce as an MTA returns it (RFC 3464), about `message_id`.
fn bounce_about(message_id: &str, action: &str, status: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.example.ru\r\nMessage-ID: <bounce@mx.example.ru>\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.ru\r\n\r\n\
         Final-Recipient: rfc822; {ADDRESS}\r\nAction: {action}\r\nStatus: {status}\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\
         --B\r\nContent-Type: text/rfc822-headers\r\n\r\n\
         From: Shop <noreply@shop.example.ru>\r\nMessage-ID: {message_id}\r\n--B--\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_bounce_escalates_at_once_and_a_forged_or_soft_one_does_not() {
    let h = Harness::start_with("email-bounce", "bounce_secret = \"b-secret\"").await;
    let id = h.id("n");
    h.publish(&id).await;
    let mail = h.sent_mail(&id).await;
    let message_id = mail.header("Message-ID").expect("a Message-ID");
    let post = |secret: &str, body: String| {
        h.http
            .post(h.url(&format!("/callbacks/email/email/{secret}")))
            .body(body)
            .send()
    };

    // A wrong secret is refused; a delay and a soft failure record nothing.
    let forged = post("wrong", bounce_about(&message_id, "failed", "5.1.1"))
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let delayed = post("b-secret", bounce_about(&message_id, "delayed", "4.4.7"))
        .await
        .unwrap();
    assert_eq!(delayed.status(), 200);
    let not_a_bounce = post("b-secret", "Subject: hi\r\n\r\nhello".into())
        .await
        .unwrap();
    assert_eq!(not_a_bounce.status(), 400);
    let unknown = post(
        "b-secret",
        bounce_about("<nope@shop.example.ru>", "failed", "5.1.1"),
    )
    .await
    .unwrap();
    assert_eq!(unknown.status(), 200, "acknowledged, counted as unknown");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.messenger_posts(&id), 0, "nothing escalated yet");

    // The hard bounce: the messenger step goes out now, not in a day.
    let hard = post("b-secret", bounce_about(&message_id, "failed", "5.1.1"))
        .await
        .unwrap();
    assert_eq!(hard.status(), 200);
    wait_until("the messenger step after the bounce", AT_ONCE, async || {
        h.messenger_posts(&id) == 1
    })
    .await;
    let failed = h.wait_entries(&id, "send_failed", 1).await;
    assert_eq!(
        failed.reason.as_deref(),
        Some("failed receipt"),
        "{failed:?}"
    );
}

/// A customer's reply as Gmail writes it: multipart/alternative, the text
/// quoted-printable, answering `message_id` (and an older message), with
/// the quoted original and a signature.
fn reply_to(message_id: &str) -> String {
    format!(
        "Return-Path: <{ADDRESS}>\r\nFrom: =?UTF-8?B?0JjQstCw0L0=?= <{ADDRESS}>\r\n\
         To: Shop replies <replies@shop.example.ru>\r\n\
         Subject: Re: =?UTF-8?B?0JrQvtGA0LfQuNC90LAg0LbQtNGR0YI=?=\r\n\
         Date: Sat, 5 Dec 2026 17:50:00 +0300\r\n\
         Message-ID: <CAFreply-{n}@mail.gmail.com>\r\n\
         In-Reply-To: {message_id}\r\n\
         References: <older@shop.example.ru> {message_id}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"000000000000a1b2\"\r\n\r\n\
         --000000000000a1b2\r\n\
         Content-Type: text/plain; charset=\"UTF-8\"\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n\
         =D0=97=D0=B0=D0=B1=D0=B5=D1=80=D1=83 =D0=B7=D0=B0=D0=B2=D1=82=D1=80=D0=B0, =\r\n\
         =D1=81=D0=BF=D0=B0=D1=81=D0=B8=D0=B1=D0=BE!\r\n\r\n\
         -- \r\n=D0=98=D0=B2=D0=B0=D0=BD\r\n\r\n\
         On Sat, Dec 5, 2026 at 5:43 PM Shop <noreply@shop.example.ru> wrote:\r\n\r\n\
         > =D0=92=D1=8B =D0=B7=D0=B0=D0=B1=D1=8B=D0=BB=D0=B8 =D0=BA=D0=BE=D1=80=D0=B7=\r\n\
         > =D0=B8=D0=BD=D1=83\r\n\r\n\
         --000000000000a1b2\r\n\
         Content-Type: text/html; charset=\"UTF-8\"\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n\
         <div dir=3D\"ltr\">=D0=97=D0=B0=D0=B1=D0=B5=D1=80=D1=83</div><div class=3D\"gmail_quote\">=\r\n\
         <blockquote>=D0=9A=D0=BE=D1=80=D0=B7=D0=B8=D0=BD=D0=B0</blockquote></div>\r\n\r\n\
         --000000000000a1b2--\r\n",
        n = message_id.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_by_email_is_recorded_as_replied_and_stops_the_cascade() {
    let h = Harness::start_with(
        "email-reply",
        "reply_to = \"Shop replies <replies@shop.example.ru>\"",
    )
    .await;
    let id = h.id("n");
    h.publish(&id).await;
    let mail = h.sent_mail(&id).await;
    assert_eq!(
        mail.header("Reply-To").as_deref(),
        Some("\"Shop replies\" <replies@shop.example.ru>"),
        "reply_to sets the Reply-To of every message"
    );
    let message_id = mail.header("Message-ID").expect("a Message-ID");
    // What the reply hook is handed: the customer's words only.
    let read = cascade::channels::email::inbound::parse(reply_to(&message_id).as_bytes()).unwrap();
    assert_eq!(read.text, "Заберу завтра, спасибо!");
    assert_eq!(read.answers[0], message_id);
    let inbound = |token: Option<&str>, body: String| {
        let mut request = h
            .http
            .post(h.url("/v1/inbound/email"))
            .header("Content-Type", "message/rfc822")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let counted = async |result: &str| {
        h.metric(
            "cascade_callbacks_total",
            &[("provider", "email_inbound"), ("result", result)],
        )
        .await
    };

    // No token, a wrong one: refused like the rest of the API.
    let anonymous = inbound(None, reply_to(&message_id)).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = inbound(Some("not-the-token"), reply_to(&message_id))
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // A token of the API that is not the mail server's.
    let crm = inbound(Some("crm-token-0123456789abcdef"), reply_to(&message_id))
        .await
        .unwrap();
    assert_eq!(crm.status(), 403);
    // Not an email at all.
    let garbage = inbound(Some(TOKEN), "{\"id\": 1}".into()).await.unwrap();
    assert_eq!(garbage.status(), 400);
    // An email that answers none of our messages: acknowledged, counted.
    let stranger = inbound(Some(TOKEN), reply_to("<someone-else@example.org>"))
        .await
        .unwrap();
    assert_eq!(stranger.status(), 202);
    let answer: serde_json::Value = stranger.json().await.unwrap();
    assert_eq!(answer["status"], "unmapped");
    assert_eq!(counted("unmapped").await, 1);
    assert!(
        h.entries(&id, "receipt").await.is_empty(),
        "nothing recorded"
    );

    // Someone else copying the Message-ID, and an out-of-office answer:
    // acknowledged, counted, nothing recorded.
    let forged = reply_to(&message_id).replace(
        &format!("From: =?UTF-8?B?0JjQstCw0L0=?= <{ADDRESS}>"),
        "From: Mallory <mallory@evil.example>",
    );
    let answer = inbound(Some(TOKEN), forged).await.unwrap();
    assert_eq!(answer.status(), 202);
    assert_eq!(
        answer.json::<serde_json::Value>().await.unwrap()["status"],
        "foreign_sender"
    );
    let away = reply_to(&message_id).replace(
        "MIME-Version",
        "Auto-Submitted: auto-replied\r\nMIME-Version",
    );
    let answer = inbound(Some(TOKEN), away).await.unwrap();
    assert_eq!(
        answer.json::<serde_json::Value>().await.unwrap()["status"],
        "ignored"
    );
    assert_eq!(counted("foreign_sender").await, 1);
    assert_eq!(counted("automatic").await, 1);
    assert!(h.receipts::<i64>(&id).await.is_empty(), "nothing recorded");

    // The customer's reply.
    let reply = inbound(Some(TOKEN), reply_to(&message_id)).await.unwrap();
    assert_eq!(reply.status(), 202);
    let answer: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(answer["status"], "recorded");
    assert_eq!(counted("recorded").await, 1);
    h.wait_outcome(&id, "completed").await;
    let view = h.get_v1(&format!("/v1/notifications/{id}")).await;
    assert_eq!(view["state"], "completed", "{view}");
    assert!(view["receipts"]["replied"].is_i64(), "{view}");
    let receipt = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "receipt")
        .cloned()
        .expect("a receipt entry");
    assert_eq!(receipt["reason"], "replied", "{view}");
    assert_eq!(receipt["channel"], "email", "{view}");

    // The helpdesk is handed the customer's words, without the quote.
    wait_until("the helpdesk's task", AT_ONCE, async || {
        h.messenger.count("helpdesk") == 1
    })
    .await;
    let task = h.messenger.on("helpdesk").remove(0);
    assert_eq!(task["reply"]["notification_id"], id.as_str(), "{task}");
    assert_eq!(task["reply"]["channel"], "email");
    assert_eq!(task["reply"]["text"], "Заберу завтра, спасибо!");

    // The MTA delivers it again: known, not recorded twice.
    let again = inbound(Some(TOKEN), reply_to(&message_id)).await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(counted("already_recorded").await, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.messenger.count("helpdesk"), 1, "handed over once");

    // Past the day's wait: the cascade stopped, no messenger.
    h.clock.advance(25 * HOUR);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.messenger_posts(&id), 0, "no messenger after a reply");
    assert_eq!(
        h.events(&id).await,
        ["accepted", "sent", "receipt", "completed"]
    );
    h.stop().await;
}
