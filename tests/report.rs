//! The report's counters against the timelines, end to end: a few hundred
//! notifications through the daemon, VK then SMS, read on VK before the
//! escalation, on VK soon after it (late reads), on SMS, or never; then
//! every sent, read and escalation in the timelines must be in the report,
//! and nothing more. Also the report, what-if and customer APIs over HTTP.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use cascade::core::EntryKind;
use cascade::dev::fakes::{smsru::FakeSmsRu, vk::FakeVk};
use cascade::report::Dimension;
use cascade::runtime::clock::Clock;
use cascade::runtime::reports::{ReportRequest, report, what_if_for};
use common::*;
use serde_json::{Value, json};

const MIN: i64 = 60_000;
const N: usize = 240;

/// Who reads what: 0 reads VK at once, 1 reads VK 5 minutes after the
/// SMS (a late read), 2 reads the SMS (the receipts API names it), 3 reads
/// with no channel named (the latest message: the SMS), 4 and 5 never read.
fn kind(i: usize) -> usize {
    i % 6
}

fn segment(i: usize) -> Option<&'static str> {
    match i % 4 {
        0 => Some("new"),
        1 => Some("vip"),
        2 => None,
        _ => Some("regular"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_counts_what_the_timelines_say_and_nothing_more() {
    let vk = FakeVk::start().await;
    let sms = FakeSmsRu::start().await;
    let cfg = TestConfig::new("report-e2e", "http://127.0.0.1:9", "", DELIVERY_DELAY);
    cfg.vk_and_smsru(&vk.base_url(), sms.base_url(), SMS_PRICE);
    let mut run = Running::start(cfg).await;
    let ids = publish_orders(&run, &vk, N, segment).await;
    for i in (0..N).filter(|i| kind(*i) == 0) {
        vk_reads(&run, &vk, i).await;
    }
    let read_early = N / 6;
    wait_until(
        "the early reads complete",
        Duration::from_secs(30),
        async || {
            let mut done = 0;
            for i in (0..N).filter(|i| kind(*i) == 0) {
                if run.outcome(&ids[i]).await == Some("completed") {
                    done += 1;
                }
            }
            done == read_early
        },
    )
    .await;

    // Half an hour on: the unread ones escalate to SMS.
    run.clock.advance(31 * MIN);
    let escalated = N - read_early;
    wait_until("every SMS", Duration::from_secs(60), async || {
        sms.received().len() == escalated
    })
    .await;
    for i in (0..N).filter(|i| kind(*i) != 0) {
        run.wait_outcome(&ids[i], "exhausted").await;
    }
    run.clock.advance(5 * MIN);
    for i in (0..N).filter(|i| kind(*i) == 1) {
        vk_reads(&run, &vk, i).await;
    }
    let http = reqwest::Client::new();
    for i in (0..N).filter(|i| matches!(kind(*i), 2 | 3)) {
        let mut body = json!({ "id": ids[i], "event": "read" });
        if kind(i) == 2 {
            body["channel"] = json!("sms");
        }
        let r = http
            .post(run.url("/v1/receipts"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    let reads_after = (0..N).filter(|i| matches!(kind(*i), 1..=3)).count();
    wait_until(
        "every late receipt counted",
        Duration::from_secs(30),
        async || {
            let mut counted = 0;
            for i in (0..N).filter(|i| matches!(kind(*i), 1..=3)) {
                let t = run.timeline(&ids[i]).await;
                let receipts = t.iter().filter(|e| e.event == EntryKind::Receipt).count();
                let state = run.daemon().store.status(&ids[i]).await.unwrap().unwrap().0;
                if receipts > 0 && state.tallied == Some(t.len() as u32) {
                    counted += 1;
                }
            }
            counted == reads_after
        },
    )
    .await;

    // What the timelines say.
    let mut sent: BTreeMap<(u8, String), i64> = BTreeMap::new();
    let (mut escalations, mut reads, mut late) = (0, 0, 0);
    for id in &ids {
        let t = run.timeline(id).await;
        for e in &t {
            match e.event {
                EntryKind::Sent => {
                    *sent
                        .entry((e.step.unwrap(), e.channel.clone().unwrap()))
                        .or_default() += 1
                }
                EntryKind::Escalated => escalations += 1,
                EntryKind::LateRead => late += 1,
                _ => {}
            }
        }
        if t.iter().any(|e| {
            e.event == EntryKind::Completed
                || (e.event == EntryKind::Receipt && e.reason.as_deref() == Some("read"))
        }) {
            reads += 1;
        }
    }
    assert_eq!(reads, read_early + reads_after);
    assert_eq!(escalations, escalated);
    assert_eq!(
        late,
        N / 6,
        "the VK reads 5 minutes after the SMS, and only they"
    );

    let catalog = run.daemon().catalog.load_full();
    let now = run.clock.now_ms();
    let req = |by: Vec<Dimension>| ReportRequest {
        from_ms: now - 2 * 3_600_000,
        to_ms: now + 60_000,
        policy: Some("delivery_delay".into()),
        by,
    };
    let store = &run.daemon().store;
    let r = report(
        store,
        &catalog,
        &req(vec![Dimension::Step, Dimension::Channel]),
    )
    .await
    .unwrap();
    let row = |step: u8, ch: &str| {
        r.rows
            .iter()
            .find(|row| row.step == Some(step) && row.channel.as_deref() == Some(ch))
            .unwrap_or_else(|| panic!("no row for step {step} {ch}: {:#?}", r.rows))
    };
    let (v, s) = (row(0, "vk"), row(1, "sms"));
    assert_eq!(v.sent, sent[&(0, "vk".into())]);
    assert_eq!(s.sent, sent[&(1, "sms".into())]);
    assert_eq!(
        r.total.sent,
        sent.values().sum::<i64>(),
        "no sends but the timelines'"
    );
    assert_eq!(r.total.accepted, N as i64);
    assert_eq!(r.total.escalated, escalations as i64);
    assert_eq!(
        v.escalated, escalations as i64,
        "escalations count on the step they left"
    );
    assert_eq!(r.total.read, reads as i64);
    // Reads on the channel of the message they answered.
    assert_eq!(v.read, 2 * (N / 6) as i64);
    assert_eq!(s.read, 2 * (N / 6) as i64);
    assert_eq!(s.late_reads, (N / 6) as i64);
    assert_eq!(r.total.late_reads, late as i64);
    // Immediate VK reads in the first bucket; the late ones 36 minutes
    // after their VK message; SMS reads just over 5 minutes after theirs.
    assert_eq!(v.time_to_read.get("1m"), Some(&((N / 6) as i64)));
    assert_eq!(v.time_to_read.get("1h"), Some(&((N / 6) as i64)));
    assert_eq!(s.time_to_read.get("10m"), Some(&(2 * (N / 6) as i64)));
    // Money: every SMS at 4.20 spent; the SMS of the early reads saved.
    assert!((s.cost - 4.2 * escalated as f64).abs() < 0.01, "{}", s.cost);
    assert!(
        (s.saved - 4.2 * read_early as f64).abs() < 0.01,
        "{}",
        s.saved
    );
    assert_eq!(s.sms_avoided, read_early as i64);
    assert_eq!(r.total.completed, read_early as i64);
    assert_eq!(r.total.exhausted, escalated as i64);

    // By segment: the bounded segments, each notification in one.
    let by_segment = report(store, &catalog, &req(vec![Dimension::Segment]))
        .await
        .unwrap();
    let accepted: BTreeMap<String, i64> = by_segment
        .rows
        .iter()
        .map(|row| (row.segment.clone().unwrap(), row.accepted))
        .collect();
    let quarter = (N / 4) as i64;
    assert_eq!(
        accepted,
        BTreeMap::from([
            ("-".to_owned(), quarter),
            ("new".to_owned(), quarter),
            ("regular".to_owned(), quarter),
            ("vip".to_owned(), quarter),
        ])
    );

    // The what-if at the current wait gives what happened.
    let w = what_if_for(
        store,
        &catalog,
        "delivery_delay",
        0,
        Some(5 * MIN),
        now - 2 * 3_600_000,
        now + 60_000,
    )
    .await
    .unwrap();
    let at_now = w.total.iter().find(|e| e.wait_ms == 30 * MIN).unwrap();
    assert!((at_now.escalations - escalated as f64).abs() < 1e-6);
    let shorter = w.total.iter().find(|e| e.wait_ms == 5 * MIN).unwrap();
    assert!(shorter.escalations >= at_now.escalations);

    // The same report over HTTP, behind the token.
    let url = run.url("/v1/report?policy=delivery_delay&since=3h&by=step,channel");
    let anonymous = http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let body: Value = http
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["total"]["sent"], json!(r.total.sent));
    assert_eq!(body["total"]["read"], json!(r.total.read));
    assert_eq!(body["rows"].as_array().unwrap().len(), r.rows.len());

    // A customer's notifications: c-1 got six (i = 1, 41, 81, …).
    let body: Value = http
        .get(run.url("/v1/customers/c-1/notifications"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = body["notifications"].as_array().unwrap();
    assert_eq!(list.len(), N / 40, "{body}");
    assert!(
        list.iter()
            .all(|n| n["state"] == "exhausted" || n["state"] == "completed")
    );
    let unknown: Value = http
        .get(run.url("/v1/customers/nobody/notifications"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unknown["notifications"], json!([]), "{unknown}");
    run.stop().await;
}
