use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;

use super::compose::{percent_encode, subject_from_text};
use super::html::{insert_before_body_end, rewrite_links, unescape_html};
use super::tracking::{MAC_CONTEXT_V1, mac_in};
use super::*;

fn reply(code: u16) -> SendOutcome {
    classify(&Failure::Reply {
        code,
        text: format!("{code} text"),
    })
}

#[test]
fn every_row_of_the_table() {
    for code in [530, 534, 535, 538] {
        assert!(
            matches!(reply(code), SendOutcome::Misconfigured { .. }),
            "{code}"
        );
    }
    for code in [550, 551, 552, 553, 554] {
        assert!(
            matches!(reply(code), SendOutcome::Permanent { .. }),
            "{code}"
        );
    }
    for code in [421, 450, 451, 452, 454] {
        assert!(
            matches!(
                reply(code),
                SendOutcome::Transient {
                    retry_after_ms: None,
                    ..
                }
            ),
            "{code}"
        );
    }
    assert!(matches!(
        classify(&Failure::NoConnection("refused".into())),
        SendOutcome::Transient { .. }
    ));
    assert!(matches!(
        classify(&Failure::Handshake("bad certificate".into())),
        SendOutcome::Misconfigured { .. }
    ));
    assert!(matches!(
        classify(&Failure::Unsupported("no STARTTLS".into())),
        SendOutcome::Misconfigured { .. }
    ));
    assert!(matches!(
        classify(&Failure::UnsupportedAddress("no SMTPUTF8".into())),
        SendOutcome::Permanent { .. }
    ));
    assert!(matches!(
        classify(&Failure::Lost("incomplete response".into())),
        SendOutcome::Ambiguous { .. }
    ));
    assert!(matches!(
        classify(&Failure::TimedOut),
        SendOutcome::Ambiguous { .. }
    ));
}

#[test]
fn message_id_is_deterministic_per_step() {
    let a = message_id("order-1", 0, "shop.example");
    assert_eq!(a, message_id("order-1", 0, "shop.example"));
    assert_ne!(a, message_id("order-1", 1, "shop.example"));
    assert_ne!(a, message_id("order-2", 0, "shop.example"));
    assert!(a.starts_with('<') && a.ends_with("@shop.example>"), "{a}");
    assert_eq!(a.len(), "<@shop.example>".len() + 32);
}

fn token(tracked: Tracked) -> TrackingToken {
    TrackingToken {
        channel: "email".into(),
        notification_id: "order-1".into(),
        step: 0,
        tracked,
        until_ms: 1_800_000_000_000,
    }
}

#[test]
fn tokens_carry_their_expiry_and_first_version_tokens_read_as_expired() {
    let secret = || Some("s3cret".to_owned());
    let t = token(Tracked::Open);
    let verified = verify(&sign("s3cret", &t), |_| secret()).unwrap();
    assert!(verified.records_at(1_800_000_000_000));
    assert!(!verified.records_at(1_800_000_000_001));
    // A token of the first version: the same fields, no expiry, the old context.
    let payload = URL_SAFE_NO_PAD.encode(br#"{"c":"email","n":"order-1","s":0}"#);
    let tag = mac_in(MAC_CONTEXT_V1, "s3cret", &payload).unwrap();
    let old = format!(
        "{payload}.{}",
        URL_SAFE_NO_PAD.encode(tag.finalize().into_bytes())
    );
    let verified = verify(&old, |_| secret()).unwrap();
    assert_eq!(verified.notification_id, "order-1");
    assert!(!verified.records_at(0));
    // The expiry is signed: raising it breaks the token.
    let signed = sign("s3cret", &t);
    let (_, tag) = signed.split_once('.').unwrap();
    let later = URL_SAFE_NO_PAD.encode(br#"{"c":"email","n":"order-1","s":0,"x":9999999999999}"#);
    assert_eq!(verify(&format!("{later}.{tag}"), |_| secret()), None);
    assert_eq!(tracking_until(Some(1_000), 5, 7), 1_007);
    assert_eq!(tracking_until(None, 5, 7), 5 + 30 * 24 * 3_600_000 + 7);
    assert_eq!(tracking_until(Some(i64::MAX - 1), 0, 7), i64::MAX);
}

#[test]
fn tokens_verify_only_with_the_right_secret_and_untouched() {
    let secret = || Some("s3cret".to_owned());
    let open = sign("s3cret", &token(Tracked::Open));
    assert_eq!(verify(&open, |_| secret()), Some(token(Tracked::Open)));
    let click = token(Tracked::Click {
        url: "https://shop.example/cart?a=1&b=2".into(),
    });
    let signed = sign("s3cret", &click);
    assert_eq!(verify(&signed, |_| secret()), Some(click));
    assert!(
        signed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    );

    assert_eq!(verify(&open, |_| Some("other".into())), None);
    assert_eq!(verify(&open, |_| None), None, "unknown channel");
    // Any change to payload or tag breaks it.
    let (payload, tag) = signed.split_once('.').unwrap();
    let mut flipped = tag.as_bytes().to_vec();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    let forged = format!("{payload}.{}", String::from_utf8(flipped).unwrap());
    assert_eq!(verify(&forged, |_| secret()), None);
    let other_url =
        URL_SAFE_NO_PAD.encode(br#"{"c":"email","n":"order-1","s":0,"u":"https://evil.example/"}"#);
    assert_eq!(verify(&format!("{other_url}.{tag}"), |_| secret()), None);
    for junk in [
        "",
        ".",
        "abc",
        "abc.def",
        "!!.??",
        &"a".repeat(MAX_TOKEN_BYTES + 1),
    ] {
        assert_eq!(verify(junk, |_| secret()), None, "{junk:?}");
    }
    // Signed, but not a web address: never a redirect target.
    let js = sign(
        "s3cret",
        &token(Tracked::Click {
            url: "javascript:alert(1)".into(),
        }),
    );
    assert_eq!(verify(&js, |_| secret()), None);
}

#[test]
fn links_are_rewritten_and_others_left_alone() {
    let html = r#"<p><a href="https://shop.example/a?x=1&amp;y=2">A</a>
<a class=b HREF = 'http://shop.example/b'>B</a> <a href=https://shop.example/c>C</a>
<a href="mailto:help@shop.example">mail</a> <a href="/relative">rel</a>
<img src="https://shop.example/logo.png"> data-href="https://x.example/"</p>"#;
    let (out, seen) = rewrite_links(html, |u| Some(format!("T[{u}]")));
    assert_eq!(
        seen,
        [
            "https://shop.example/a?x=1&y=2",
            "http://shop.example/b",
            "https://shop.example/c"
        ]
    );
    assert!(
        out.contains(r#"href="T[https://shop.example/a?x=1&amp;y=2]""#),
        "{out}"
    );
    // The attribute keeps its name as written (HTML does not mind the case).
    assert!(
        out.contains(r#"HREF="T[http://shop.example/b]">B"#),
        "{out}"
    );
    assert!(
        out.contains(r#"href="T[https://shop.example/c]">C"#),
        "{out}"
    );
    assert!(out.contains(r#"href="mailto:help@shop.example""#));
    assert!(out.contains(r#"href="/relative""#));
    assert!(out.contains(r#"src="https://shop.example/logo.png""#));
    assert!(out.contains(r#"data-href="https://x.example/""#));
    // Nothing tracked: unchanged.
    let (same, _) = rewrite_links(html, |_| None);
    assert_eq!(same, html);
    // Cyrillic around links survives byte slicing.
    let (ru, _) = rewrite_links(
        "<p>Заказ <a href=\"https://x.example/\">тут</a></p>",
        |_| Some("https://t.example/".into()),
    );
    assert_eq!(ru, "<p>Заказ <a href=\"https://t.example/\">тут</a></p>");
}

/// Only what a person clicks is tracked: an image map's areas, never a
/// stylesheet a mail client loads by itself (that would record a click and
/// stop an abandoned-cart cascade), the base, or text that looks like one.
#[test]
fn only_links_a_person_clicks_are_tracked() {
    let page = r#"<html><head><base href="https://shop.example/">
<link rel="stylesheet" href="https://shop.example/mail.css"></head>
<body><map name="m"><area shape="rect" coords="0,0,9,9" href="https://shop.example/d"></map>
<p title='a href="https://x.example/"'>text mentioning href=https://y.example/</p></body></html>"#;
    let (out, seen) = rewrite_links(page, |u| Some(format!("T[{u}]")));
    assert_eq!(seen, ["https://shop.example/d"], "{out}");
    assert!(out.contains(r#"href="T[https://shop.example/d]""#), "{out}");
    assert!(out.contains(r#"<link rel="stylesheet" href="https://shop.example/mail.css">"#));
    assert!(out.contains(r#"<base href="https://shop.example/">"#));
    assert!(out.contains(r#"title='a href="https://x.example/"'"#));
    assert!(out.contains("href=https://y.example/"));
}

#[test]
fn html_helpers() {
    assert_eq!(
        escape_html("<a href=\"x\">&'"),
        "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
    );
    assert_eq!(
        unescape_html("a&amp;b&#38;c&#x26;d&lt;&bogus;&"),
        "a&b&c&d<&bogus;&"
    );
    assert_eq!(
        insert_before_body_end("<html><BODY>x</BODY></html>", "P"),
        "<html><BODY>xP\n</BODY></html>"
    );
    assert_eq!(insert_before_body_end("<p>x</p>", "P"), "<p>x</p>\nP");
    assert_eq!(
        subject_from_text("\n  Заказ задерживается \nвторая"),
        "Заказ задерживается"
    );
    assert_eq!(subject_from_text(&"я".repeat(200)).chars().count(), 151);
    assert_eq!(percent_encode("order 1/ё"), "order%201%2F%D1%91");
}

/// The settings these keys make, or why they cannot work.
fn read_settings(pairs: &[(&str, &str)]) -> Result<EmailSettings, String> {
    let kind = crate::core::ChannelKind::Email;
    crate::channels::settings::from_pairs(kind, pairs).map(|s| s.as_email().expect("email").clone())
}

fn channel(pairs: &[(&str, &str)]) -> crate::channels::ChannelConfig {
    let kind = crate::core::ChannelKind::Email;
    let settings = crate::channels::settings::from_pairs(kind, pairs).expect("test settings");
    let mut channel = crate::channels::settings::test_channel(kind, settings);
    channel.timeout_ms = 5_000;
    channel
}

#[test]
fn settings_that_cannot_work_are_refused_with_a_reason() {
    let compose_sink = [
        ("host", "mailpit"),
        ("tls", "none"),
        ("from", "a@b.example"),
    ];
    assert!(read_settings(&compose_sink).is_ok());
    let ok = [
        ("host", "127.0.0.1"),
        ("tls", "none"),
        ("from", "Shop <a@shop.example>"),
    ];
    assert!(read_settings(&ok).is_ok());
    let s = read_settings(&ok).unwrap();
    assert_eq!(s.shape.port, 25);
    let relay = [("host", "smtp.example"), ("from", "a@shop.example")];
    let s = read_settings(&relay).unwrap();
    assert_eq!((s.shape.tls, s.shape.port), (TlsMode::StartTls, 587));
    let wrapped = [
        ("host", "smtp.example"),
        ("tls", "tls"),
        ("from", "a@shop.example"),
    ];
    assert_eq!(read_settings(&wrapped).unwrap().shape.port, 465);

    for (bad, says) in [
        (
            vec![
                ("host", "smtp.example"),
                ("tls", "none"),
                ("username", "shop"),
                ("from", "a@b.example"),
            ],
            "unencrypted",
        ),
        (
            vec![
                ("host", "localhost"),
                ("tls", "ssl"),
                ("from", "a@b.example"),
            ],
            "starttls",
        ),
        (
            vec![
                ("host", "localhost"),
                ("port", "99999"),
                ("from", "a@b.example"),
            ],
            "port",
        ),
        (
            vec![("host", "localhost"), ("from", "not an address")],
            "from",
        ),
        (vec![("host", "localhost")], "from"),
        (vec![("from", "a@b.example")], "host"),
        (
            vec![
                ("host", "localhost"),
                ("from", "a@b.example"),
                ("unsubscribe_url", "ftp://x"),
            ],
            "unsubscribe_url",
        ),
    ] {
        let err = read_settings(&bad).unwrap_err();
        assert!(err.contains(says), "{bad:?}: {err}");
    }
}

// -- lettre's real errors against the loopback sink ---------------------

use crate::dev::fakes::smtp::{self, Answer};

const SINK_FROM: &str = "Shop <noreply@shop.example>";

async fn send_via(
    transports: &Transports,
    port: u16,
    extra: &[(&str, &str)],
    contact: &str,
    content: serde_json::Value,
) -> SendOutcome {
    let port = port.to_string();
    let mut settings = vec![
        ("host", "127.0.0.1"),
        ("port", port.as_str()),
        ("tls", "none"),
        ("from", SINK_FROM),
        ("tracking_secret", "unit-secret"),
        ("unsubscribe_url", "https://shop.example/u/{customer_id}"),
    ];
    for (k, v) in extra {
        settings.retain(|(key, _)| key != k);
        settings.push((k, v));
    }
    let mut ch = channel(&settings);
    ch.timeout_ms = 1_000;
    let body = serde_json::json!({
        "id": "order-7:cart",
        "policy": "abandoned_cart",
        "customer": { "id": "c 42", "contacts": { "email": contact } },
        "content": content,
    });
    let notification = crate::notification::parse(body.to_string().as_bytes(), 1 << 20).unwrap();
    let order = crate::core::SendOrder {
        step: 0,
        channel: "email".into(),
        attempt: 1,
    };
    let texts = notification.step_texts(None, &ch.name, ch.kind);
    let texts = crate::channels::texts::render(
        &texts,
        &notification,
        &crate::core::receipt_data::ReceiptData::new(),
    )
    .unwrap();
    let out = Outgoing {
        notification: &notification,
        order: &order,
        channel: &ch,
        contact: Some(contact),
        public_url: "http://127.0.0.1:8080/",
        tracking_until_ms: i64::MAX,
        now_ms: 0,
        texts: &texts,
    };
    send(transports, &out).await
}

fn text(t: &str) -> serde_json::Value {
    serde_json::json!({ "text": t })
}

fn is(outcome: &SendOutcome, word: &str) -> bool {
    let w = match outcome {
        SendOutcome::Sent { .. } => "sent",
        SendOutcome::Transient { .. } => "transient",
        SendOutcome::RateLimited { .. } => "rate_limited",
        SendOutcome::Permanent { .. } => "permanent",
        SendOutcome::Misconfigured { .. } => "misconfigured",
        SendOutcome::Ambiguous { .. } => "ambiguous",
    };
    w == word
}

#[tokio::test]
async fn lettre_errors_map_to_the_table() {
    let sink = smtp::start().await.unwrap();
    let t = Transports::default();
    let port = sink.port();
    let to = "ivan@example.ru";

    let sent = send_via(&t, port, &[], to, text("Hi")).await;
    let expected = message_id("order-7:cart", 0, "shop.example");
    assert_eq!(
        sent,
        SendOutcome::Sent {
            provider_message_id: Some(expected)
        }
    );
    for (answer, word, code) in [
        (Answer::RcptTransient, "transient", "450"),
        (Answer::RcptPermanent, "permanent", "550"),
        (Answer::DataTransient, "transient", "451"),
        (Answer::DataPermanent, "permanent", "554"),
        (Answer::AuthFailed, "misconfigured", "530"),
        (Answer::DropAfterData, "ambiguous", "incomplete response"),
    ] {
        sink.then(answer.clone(), 1);
        let o = send_via(&t, port, &[], to, text("Hi")).await;
        assert!(is(&o, word), "{answer:?}: {o:?}");
        assert!(format!("{o:?}").contains(code), "{answer:?}: {o:?}");
    }
    // A wrong password: 535 on AUTH.
    sink.require_auth("shop", "right");
    let o = send_via(
        &t,
        port,
        &[("username", "shop"), ("password", "wrong")],
        to,
        text("Hi"),
    )
    .await;
    assert!(
        is(&o, "misconfigured") && format!("{o:?}").contains("535"),
        "{o:?}"
    );
    let o = send_via(
        &t,
        port,
        &[("username", "shop"), ("password", "right")],
        to,
        text("Hi"),
    )
    .await;
    assert!(is(&o, "sent"), "{o:?}");
    // Slow past the timeout: uncertain, and the pool is discarded.
    sink.then(Answer::Slow(Duration::from_millis(1_500)), 1);
    let o = send_via(
        &t,
        port,
        &[("username", "shop"), ("password", "right")],
        to,
        text("Hi"),
    )
    .await;
    assert_eq!(
        o,
        SendOutcome::Ambiguous {
            reason: "no answer from the relay within the timeout".into()
        }
    );
    assert!(t.cache.lock().unwrap().0.is_empty(), "the pool was dropped");

    // Nothing listens: refused before anything was sent.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let o = send_via(&t, closed_port, &[], to, text("Hi")).await;
    assert!(
        is(&o, "transient") && format!("{o:?}").contains("cannot connect"),
        "{o:?}"
    );
    // TLS from the first byte against a plain-text port.
    let o = send_via(&t, port, &[("tls", "tls")], to, text("Hi")).await;
    assert!(
        is(&o, "misconfigured") && format!("{o:?}").contains("TLS handshake"),
        "{o:?}"
    );
    // STARTTLS required, the sink does not offer it.
    let o = send_via(&t, port, &[("tls", "starttls")], to, text("Hi")).await;
    assert!(
        is(&o, "misconfigured") && format!("{o:?}").contains("STARTTLS"),
        "{o:?}"
    );
    // A non-ASCII address, the sink lacks SMTPUTF8.
    let o = send_via(&t, port, &[], "иван@example.ru", text("Hi")).await;
    assert!(
        is(&o, "permanent") && format!("{o:?}").contains("SMTPUTF8"),
        "{o:?}"
    );
    // Not an address at all.
    let o = send_via(&t, port, &[], "nobody", text("Hi")).await;
    assert!(is(&o, "permanent"), "{o:?}");
    // Settings that cannot work are refused when read, before any send.
    let port = port.to_string();
    let nobody = [
        ("host", "127.0.0.1"),
        ("port", port.as_str()),
        ("from", "nobody"),
    ];
    assert!(read_settings(&nobody).unwrap_err().contains("from"));
}

#[tokio::test]
async fn the_message_carries_ids_unsubscribe_and_tracking() {
    let sink = smtp::start().await.unwrap();
    let t = Transports::default();
    let content = serde_json::json!({
        "text": "Вы забыли корзину\nЗагляните: https://shop.example/cart?id=7&x=1",
        "link": "https://shop.example/cart?id=7&x=1",
    });
    let o = send_via(&t, sink.port(), &[], "ivan@example.ru", content.clone()).await;
    assert!(is(&o, "sent"), "{o:?}");
    let o = send_via(&t, sink.port(), &[], "ivan@example.ru", content).await;
    assert!(is(&o, "sent"), "{o:?}");
    let mails = sink.accepted();
    let mail = &mails[0];
    assert_eq!(mail.rcpt_to, ["ivan@example.ru"]);
    assert_eq!(mail.mail_from, "noreply@shop.example");
    let id = message_id("order-7:cart", 0, "shop.example");
    assert_eq!(mail.header("Message-ID").as_deref(), Some(id.as_str()));
    assert_eq!(mails[1].header("Message-ID").as_deref(), Some(id.as_str()));
    assert_eq!(
        mail.header("List-Unsubscribe").as_deref(),
        Some("<https://shop.example/u/c%2042>")
    );
    assert_eq!(
        mail.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    assert!(mail.header("Subject").is_some());
    assert!(mail.header("Date").is_some());
    let plain = mail.text().unwrap();
    let html = mail.html().unwrap();
    assert!(plain.starts_with("Вы забыли корзину"), "{plain}");
    assert!(
        !plain.contains("https://shop.example/cart"),
        "the text's link is tracked: {plain}"
    );
    assert!(plain.contains("http://127.0.0.1:8080/t/c/"), "{plain}");
    assert!(html.contains("Вы забыли корзину<br>"), "{html}");
    assert!(
        html.contains("Загляните: <a href=\"http://127.0.0.1:8080/t/c/"),
        "the link in the text became a tracked anchor: {html}"
    );
    assert_eq!(
        html.matches("https://shop.example/cart").count(),
        1,
        "{html}"
    );
    assert!(
        html.contains(">https://shop.example/cart?id=7&amp;x=1</a>"),
        "{html}"
    );
    let pixel = mail.pixel_url().unwrap();
    let token = pixel
        .strip_prefix("http://127.0.0.1:8080/t/o/")
        .and_then(|p| p.strip_suffix(".gif"))
        .unwrap();
    let secret = |_: &str| Some("unit-secret".to_owned());
    assert_eq!(
        verify(token, secret).unwrap(),
        TrackingToken {
            channel: "email".into(),
            notification_id: "order-7:cart".into(),
            step: 0,
            tracked: Tracked::Open,
            until_ms: i64::MAX,
        }
    );
    let links = mail.links();
    assert_eq!(links.len(), 1, "{links:?}");
    let click = links[0].strip_prefix("http://127.0.0.1:8080/t/c/").unwrap();
    assert_eq!(
        verify(click, secret).unwrap().tracked,
        Tracked::Click {
            url: "https://shop.example/cart?id=7&x=1".into()
        }
    );
    // Without a tracking secret: no pixel, links as they are.
    let o = send_via(
        &t,
        sink.port(),
        &[("tracking_secret", "")],
        "ivan@example.ru",
        serde_json::json!({ "text": "Hi", "subject": "S",
            "html": "<html><body><a href=\"https://shop.example/x\">x</a></body></html>" }),
    )
    .await;
    assert!(is(&o, "sent"), "{o:?}");
    let mail = sink.accepted().pop().unwrap();
    assert_eq!(mail.pixel_url(), None);
    assert_eq!(mail.links(), ["https://shop.example/x"]);
}

#[tokio::test]
async fn a_transport_is_kept_until_its_settings_change() {
    let transports = Transports::default();
    let ch = channel(&[
        ("host", "127.0.0.1"),
        ("tls", "none"),
        ("port", "2525"),
        ("from", "a@b.example"),
    ]);
    let shape = ch.settings.as_email().unwrap().shape.clone();
    transports.get("email", &shape).unwrap();
    transports.get("email", &shape).unwrap();
    assert_eq!(transports.cache.lock().unwrap().0.len(), 1);
    let first = transports.cache.lock().unwrap().0["email"].shape.port;
    let mut moved = shape.clone();
    moved.port = 2526;
    transports.get("email", &moved).unwrap();
    let cache = transports.cache.lock().unwrap();
    assert_eq!(cache.0.len(), 1, "replaced, not added");
    assert_eq!((first, cache.0["email"].shape.port), (2525, 2526));
}
