//! The HTTP edge against a live daemon: bearer tokens, forged callbacks of
//! every provider (an unknown channel answered exactly as a wrong secret),
//! tracking tokens that are foreign, altered or expired, body limits, and
//! clients that trickle their headers or bodies.

use std::time::{Duration, Instant};

use cascade::channels::email::{Tracked, TrackingToken, sign};
use cascade::runtime::clock::Clock;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{
    AT_ONCE, DELIVERY_DELAY, Running, TOKEN, TestConfig, fake_receiver, wait_until,
};

const VK_SECRET: &str = "vk-callback-secret-0123456789";
const TG_SECRET: &str = "telegram-webhook-secret-0123456789";
const WA_SECRET: &str = "whatsapp-app-secret-0123456789";
const SMS_SECRET: &str = "sms-report-secret-0123456789";
const BOUNCE_SECRET: &str = "email-bounce-secret-0123456789";
const TRACKING_SECRET: &str = "email-tracking-secret-0123456789";

/// A daemon whose config also has one channel of every callback kind
/// (pointing nowhere: only their callbacks are exercised here).
async fn start(name: &str, http_extra: &str, policy: &str) -> (Running, crate::common::Received) {
    let (url, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new(name, &url, http_extra, policy);
    cfg.write(
        "channels/vkc.toml",
        &format!("kind = \"vk\"\naccess_token = \"vk-access-token\"\ncallback_secret = \"{VK_SECRET}\"\nconfirmation = \"abc123\"\nbase_url = \"http://127.0.0.1:9/method\"\n"),
    );
    cfg.write(
        "channels/tg.toml",
        &format!("kind = \"telegram\"\nbot_token = \"123:bot-token\"\nwebhook_secret = \"{TG_SECRET}\"\nbase_url = \"http://127.0.0.1:9\"\n"),
    );
    cfg.write(
        "channels/wa.toml",
        &format!("kind = \"whatsapp\"\nphone_number_id = \"1\"\naccess_token = \"wa-token\"\napp_secret = \"{WA_SECRET}\"\nverify_token = \"wa-verify-token-0123456789\"\nbase_url = \"http://127.0.0.1:9\"\n"),
    );
    cfg.write(
        "channels/sms_gw.toml",
        &format!("kind = \"sms\"\nprovider = \"smsru\"\napi_id = \"smsru-api-id\"\nreport_secret = \"{SMS_SECRET}\"\nsmsru_base_url = \"http://127.0.0.1:9\"\n"),
    );
    cfg.write(
        "channels/mail.toml",
        &format!("kind = \"email\"\nhost = \"127.0.0.1\"\nport = \"9\"\ntls = \"none\"\nfrom = \"Shop <noreply@shop.example>\"\ntracking_secret = \"{TRACKING_SECRET}\"\nbounce_secret = \"{BOUNCE_SECRET}\"\n"),
    );
    (Running::start(cfg).await, received)
}

/// `cascade_http_rejected_total{route=…,reason=…}` now.
async fn rejected(run: &Running, route: &str, reason: &str) -> u64 {
    run.metric(
        "cascade_http_rejected_total",
        &[("route", route), ("reason", reason)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receipts_api_refuses_wrong_missing_and_shipped_tokens_and_records_nothing() {
    let (run, _) = start(
        "sec-bearer",
        "[http.receipt_tokens]\ncrm = \"crm-token-0123456789abcdef\"\n",
        DELIVERY_DELAY,
    )
    .await;
    let id = run.id("n");
    run.publish_bytes(&crate::common::notification(&id, "c-1"))
        .await;
    run.wait_entry(&id, "sent", Some(0)).await;
    let wrong_before = rejected(&run, "v1", "wrong_token").await;
    let missing_before = rejected(&run, "v1", "missing_token").await;

    let post = |auth: Option<String>| {
        let mut req = run
            .http
            .post(run.url("/v1/receipts"))
            .json(&json!({ "id": id, "event": "read" }));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        req.send()
    };
    for auth in [
        Some("Bearer change-me".to_owned()),
        Some("Bearer test-token".to_owned()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Basic {TOKEN}")),
        Some(TOKEN.to_owned()),
        Some("Bearer ".to_owned()),
    ] {
        let res = post(auth.clone()).await.unwrap();
        assert_eq!(res.status().as_u16(), 401, "{auth:?}");
        assert_eq!(res.headers()["www-authenticate"], "Bearer");
    }
    assert_eq!(post(None).await.unwrap().status().as_u16(), 401);
    let cancel = run
        .http
        .post(run.url(&format!("/v1/notifications/{id}/cancel")))
        .header("Authorization", "Bearer change-me")
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status().as_u16(), 401);
    assert!(
        run.receipts::<String>(&id).await.is_empty(),
        "nothing recorded"
    );
    assert_eq!(run.outcome(&id).await, None);
    assert!(rejected(&run, "v1", "wrong_token").await >= wrong_before + 4);
    assert!(rejected(&run, "v1", "missing_token").await >= missing_before + 4);

    // The scheme is case-insensitive (RFC 9110), the token is not.
    let res = run
        .http
        .post(run.url("/v1/receipts"))
        .header("Authorization", format!("bearer {TOKEN}"))
        .json(&json!({ "id": id, "event": "delivered" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);

    // Each named caller's token works; so does the shared one.
    let res = post(Some("Bearer crm-token-0123456789abcdef".into()))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    run.wait_outcome(&id, "completed").await;
}

/// The answers to a forged request and to the same request for a channel
/// that does not exist are byte for byte the same.
async fn same_answer(a: reqwest::RequestBuilder, b: reqwest::RequestBuilder) -> u16 {
    let a = a.send().await.unwrap();
    let b = b.send().await.unwrap();
    let status = a.status().as_u16();
    assert_eq!(status, b.status().as_u16());
    assert_eq!(a.bytes().await.unwrap(), b.bytes().await.unwrap());
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_callbacks_of_every_provider_are_refused_alike_and_record_nothing() {
    let (run, _) = start("sec-forged", "", DELIVERY_DELAY).await;
    let id = run.id("n");
    run.publish_bytes(&crate::common::notification(&id, "c-1"))
        .await;
    run.wait_entry(&id, "sent", Some(0)).await;
    let http = &run.http;

    // VK: the secret is in the body.
    let event = |secret: &str| {
        json!({ "type": "message_read", "group_id": 1, "event_id": "e1", "secret": secret,
                "object": { "from_id": 123456, "peer_id": 123456, "read_message_id": 99 } })
    };
    let status = same_answer(
        http.post(run.url("/callbacks/vk/vkc"))
            .json(&event("wrong-secret")),
        http.post(run.url("/callbacks/vk/nope"))
            .json(&event(VK_SECRET)),
    )
    .await;
    assert_eq!(status, 403);
    // Not even JSON: the same answer.
    let junk = http
        .post(run.url("/callbacks/vk/vkc"))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(junk.status().as_u16(), 403);

    // Telegram: the secret-token header.
    let update = json!({ "update_id": 1, "callback_query": { "id": "q", "data": "read" } });
    let status = same_answer(
        http.post(run.url("/callbacks/telegram/tg"))
            .header("X-Telegram-Bot-Api-Secret-Token", "wrong")
            .json(&update),
        http.post(run.url("/callbacks/telegram/nope"))
            .header("X-Telegram-Bot-Api-Secret-Token", TG_SECRET)
            .json(&update),
    )
    .await;
    assert_eq!(status, 403);

    // WhatsApp: an HMAC of the body; signed with another secret, over other
    // bytes, or not at all.
    let body = json!({ "object": "whatsapp_business_account", "entry": [] }).to_string();
    let forged = cascade::http::callbacks::whatsapp::signature("not-the-secret", body.as_bytes());
    let right = cascade::http::callbacks::whatsapp::signature(WA_SECRET, body.as_bytes());
    let status = same_answer(
        http.post(run.url("/callbacks/whatsapp/wa"))
            .header("X-Hub-Signature-256", forged)
            .body(body.clone()),
        http.post(run.url("/callbacks/whatsapp/nope"))
            .header("X-Hub-Signature-256", right.clone())
            .body(body.clone()),
    )
    .await;
    assert_eq!(status, 403);
    let unsigned = http
        .post(run.url("/callbacks/whatsapp/wa"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 403);
    let verify = same_answer(
        http.get(run.url(
            "/callbacks/whatsapp/wa?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1",
        )),
        http.get(run.url(
            "/callbacks/whatsapp/nope?hub.mode=subscribe&hub.verify_token=wa-verify-token-0123456789&hub.challenge=1",
        )),
    )
    .await;
    assert_eq!(verify, 403);

    // SMS gateways and email bounces: the secret is a path segment.
    let report = "data[0]=sms_status%0A000-1%0A103%0A1700000000";
    let status = same_answer(
        http.post(run.url("/callbacks/sms/sms_gw/guess"))
            .body(report),
        http.post(run.url(&format!("/callbacks/sms/nope/{SMS_SECRET}")))
            .body(report),
    )
    .await;
    assert_eq!(status, 403);
    let status = same_answer(
        http.post(run.url("/callbacks/email/mail/guess")).body("x"),
        http.post(run.url(&format!("/callbacks/email/nope/{BOUNCE_SECRET}")))
            .body("x"),
    )
    .await;
    assert_eq!(status, 403);

    // A replayed authentic VK event is taken once.
    let authentic = event(VK_SECRET);
    for _ in 0..2 {
        let res = http
            .post(run.url("/callbacks/vk/vkc"))
            .json(&authentic)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
    }
    assert!(
        run.receipts::<String>(&id).await.is_empty(),
        "nothing recorded"
    );
    assert_eq!(run.outcome(&id).await, None);
    for (route, reason) in [
        ("callbacks/vk", "unknown_channel"),
        ("callbacks/vk", "wrong_secret"),
        ("callbacks/telegram", "wrong_secret"),
        ("callbacks/whatsapp", "wrong_signature"),
        ("callbacks/whatsapp", "missing_signature"),
        ("callbacks/sms", "wrong_secret"),
        ("callbacks/email", "wrong_secret"),
    ] {
        assert!(
            rejected(&run, route, reason).await >= 1,
            "{route} {reason} is counted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_altered_and_expired_tracking_tokens_record_nothing() {
    let (run, _) = start("sec-tracking", "", DELIVERY_DELAY).await;
    let id = run.id("n");
    run.publish_bytes(&crate::common::notification(&id, "c-1"))
        .await;
    run.wait_entry(&id, "sent", Some(0)).await;
    let now = run.clock.now_ms();
    let token = |secret: &str, tracked: Tracked, until_ms: i64| {
        sign(
            secret,
            &TrackingToken {
                channel: "mail".into(),
                notification_id: id.clone(),
                step: 0,
                tracked,
                until_ms,
            },
        )
    };
    let shop = "https://shop.example/orders/1".to_owned();
    let click = Tracked::Click { url: shop.clone() };
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: String| no_redirect.get(run.url(&path)).send();

    // Foreign (another secret) and altered (a flipped MAC) tokens.
    let foreign = token("another-deployments-secret", click.clone(), now + 60_000);
    let good = token(TRACKING_SECRET, click.clone(), now + 60_000);
    let (payload, mac) = good.split_once('.').unwrap();
    let mut flipped = mac.as_bytes().to_vec();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let altered = format!("{payload}.{}", String::from_utf8(flipped).unwrap());
    for bad in [&foreign, &altered] {
        let res = get(format!("/t/c/{bad}")).await.unwrap();
        assert_eq!(res.status().as_u16(), 404);
        assert!(res.headers().get("location").is_none());
        let res = get(format!("/t/o/{bad}.gif")).await.unwrap();
        assert_eq!(res.status().as_u16(), 200, "the pixel always answers");
    }
    // Expired: the redirect still goes to the URL it signs; nothing is recorded.
    let expired = token(TRACKING_SECRET, click, now - 1);
    let res = get(format!("/t/c/{expired}")).await.unwrap();
    assert_eq!(res.status().as_u16(), 302);
    assert_eq!(res.headers()["location"], shop.as_str());
    let res = get(format!(
        "/t/o/{}.gif",
        token(TRACKING_SECRET, Tracked::Open, now - 1)
    ))
    .await
    .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        run.receipts::<String>(&id).await.is_empty(),
        "nothing recorded"
    );

    // A live token records.
    let res = get(format!("/t/c/{good}")).await.unwrap();
    assert_eq!(res.status().as_u16(), 302);
    wait_until("the click is recorded", AT_ONCE, async || {
        run.receipts::<String>(&id).await.contains_key("clicked")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413() {
    let (run, _) = start("sec-413", "", DELIVERY_DELAY).await;
    let big = |n: usize| "x".repeat(n);
    // The server closes a connection whose body it refused unread: a new
    // connection per request, so no request goes out on a closed one.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for (path, limit) in [
        ("/v1/receipts".to_owned(), 16 * 1024),
        ("/callbacks/vk/vkc".to_owned(), 64 * 1024),
        ("/callbacks/telegram/tg".to_owned(), 64 * 1024),
        (format!("/callbacks/sms/sms_gw/{SMS_SECRET}"), 64 * 1024),
        ("/callbacks/whatsapp/wa".to_owned(), 256 * 1024),
        (format!("/callbacks/email/mail/{BOUNCE_SECRET}"), 256 * 1024),
    ] {
        let res = http
            .post(run.url(&path))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .header("X-Telegram-Bot-Api-Secret-Token", TG_SECRET)
            .body(big(limit + 1))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 413, "{path}");
    }
    // The same route takes a body within its limit (refused for its content instead).
    let res = http
        .post(run.url("/v1/receipts"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .body(big(1000))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
}

/// Opens a connection and sends `head` (an unfinished request), then one
/// byte every `every` until the server closes it; returns how long it lived.
async fn trickle(addr: std::net::SocketAddr, head: &'static str, every: Duration) -> Duration {
    let start = Instant::now();
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return start.elapsed();
    };
    if stream.write_all(head.as_bytes()).await.is_err() {
        return start.elapsed();
    }
    let mut buf = [0u8; 512];
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                // Closed, or answered (a 408) and then closed.
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => {}
            },
            _ = tokio::time::sleep(every) => {
                if stream.write_all(b"a").await.is_err() {
                    return start.elapsed();
                }
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            return start.elapsed();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_while_health_answers_and_cascades_escalate() {
    let policy = "stop_on = [\"read\"]\n\n[[steps]]\nchannel = \"vk\"\nwait = \"3s\"\n\n[[steps]]\nchannel = \"sms\"\n";
    let (run, received) = start(
        "sec-slow",
        "header_read_timeout = \"1s\"\nrequest_timeout = \"2s\"\nmax_connections = 500\n",
        policy,
    )
    .await;
    let addr = run.daemon().http_addr;
    let id = run.id("n");
    run.publish_bytes(&crate::common::notification(&id, "c-1"))
        .await;
    let sent = run.wait_entry(&id, "sent", Some(0)).await;

    // 1,500 clients trickling headers and 500 trickling a body they
    // promised: four times the connection cap. They run on a runtime of
    // their own, as an attacker's would, so the daemon's threads are not
    // also the attacker's.
    let attack = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut slow = Vec::new();
            for _ in 0..1_500 {
                slow.push(tokio::spawn(trickle(
                    addr,
                    "GET /t/o/x.gif HTTP/1.1\r\nHost: x\r\nX-Slow: ",
                    Duration::from_millis(200),
                )));
            }
            for _ in 0..500 {
                slow.push(tokio::spawn(trickle(
                    addr,
                    "POST /v1/receipts HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{",
                    Duration::from_millis(200),
                )));
            }
            let mut longest = Duration::ZERO;
            for s in slow {
                longest = longest.max(s.await.unwrap());
            }
            longest
        })
    });
    // Meanwhile the admin listener answers at once, again and again.
    let probes = Instant::now();
    while probes.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        let res = run
            .http
            .get(run.admin_url("/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .expect("/healthz answers while the public listener is flooded");
        assert_eq!(res.status().as_u16(), 200);
        assert!(t.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every slow client was cut off: the first 500 after about a second
    // (headers) or two (bodies); the rest as slots freed up.
    let longest = tokio::task::spawn_blocking(move || attack.join().unwrap())
        .await
        .unwrap();
    assert!(
        longest < Duration::from_secs(15),
        "a slow client lived {longest:?}"
    );
    eprintln!("2,000 slow clients against a cap of 500: the longest lived {longest:?}");
    // And the cascade escalated on time: the SMS 3 s after the VK message.
    wait_until("the SMS goes out", AT_ONCE, async || {
        received.count("sms") == 1
    })
    .await;
    let sms = run.wait_entry(&id, "sent", Some(1)).await;
    let late_ms = sms.at_ms - (sent.at_ms + 3_000);
    assert!(late_ms < 2_000, "the escalation was {late_ms} ms late");
    // The public listener serves again.
    let res = run
        .http
        .get(run.url("/t/o/x.gif"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_listener_serves_no_metrics_or_probes() {
    let (run, _) = start("sec-admin", "", DELIVERY_DELAY).await;
    for path in ["/metrics", "/healthz", "/readyz"] {
        let public = run.http.get(run.url(path)).send().await.unwrap();
        assert_eq!(
            public.status().as_u16(),
            404,
            "{path} on the public listener"
        );
        let admin = run.http.get(run.admin_url(path)).send().await.unwrap();
        assert_ne!(admin.status().as_u16(), 404, "{path} on the admin listener");
    }
}
