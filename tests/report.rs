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
    let body = run
        .get_v1("/v1/report?policy=delivery_delay&since=3h&by=step,channel")
        .await;
    assert_eq!(body["total"]["sent"], json!(r.total.sent));
    assert_eq!(body["total"]["read"], json!(r.total.read));
    assert_eq!(body["rows"].as_array().unwrap().len(), r.rows.len());

    // A customer's notifications: c-1 got six (i = 1, 41, 81, …).
    let body = run.get_v1("/v1/customers/c-1/notifications").await;
    let list = body["notifications"].as_array().unwrap();
    assert_eq!(list.len(), N / 40, "{body}");
    assert!(
        list.iter()
            .all(|n| n["state"] == "exhausted" || n["state"] == "completed")
    );
    let unknown = run.get_v1("/v1/customers/nobody/notifications").await;
    assert_eq!(unknown["notifications"], json!([]), "{unknown}");
    run.stop().await;
}

// ---------------------------------------------------------------------------
// Replies: customers' replies and staff's answers, through the daemon.
// ---------------------------------------------------------------------------

const TG_SECRET: &str = "tg-webhook-secret";
const STAFF_CHAT: i64 = -100_200_300;

/// `delivery_delay` over Telegram, whose replies must be answered within 15
/// minutes (then the support chat, then the manager); `plain`, whose
/// replies are only handed over.
const ANSWERED_POLICY: &str = "stop_on = [\"read\"]\nanswer_within = \"15m\"\nanswer_escalation = [\"support_telegram\", \"manager\"]\n\n[[steps]]\nchannel = \"telegram\"\nwait = \"30m\"\n\n[[steps]]\nchannel = \"sms\"\n";
const PLAIN_POLICY: &str = "stop_on = [\"read\"]\n\n[[steps]]\nchannel = \"telegram\"\nwait = \"30m\"\n\n[[steps]]\nchannel = \"sms\"\n";

/// The helpdesk's task for the reply to `id`: the staff cascade's id.
async fn staff_of(hooks: &Received, id: &str) -> String {
    let mut found = None;
    wait_until(
        &format!("the helpdesk's task for {id}"),
        AT_ONCE,
        async || {
            found = hooks
                .on("helpdesk")
                .into_iter()
                .find(|t| t["reply"]["notification_id"] == id)
                .and_then(|t| t["notification_id"].as_str().map(str::to_owned));
            found.is_some()
        },
    )
    .await;
    found.unwrap()
}

fn cells(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_shows_how_staff_answered_customers_replies() {
    use cascade::dev::fakes::telegram::FakeTelegram;
    let tg = FakeTelegram::start().await;
    let (url, hooks) = fake_receiver(vec![]).await;
    let extra = format!(
        "[replies]\nsink = \"helpdesk\"\nlink_secret = \"a-replies-link-secret-long-enough\"\nstaff = {{ telegram = \"{STAFF_CHAT}\" }}\n"
    );
    let cfg = TestConfig::new("report-replies", &url, &extra, ANSWERED_POLICY);
    cfg.write("policies/plain.toml", PLAIN_POLICY);
    for (file, token) in [
        ("telegram", "123456:CUSTOMER-token"),
        ("support_telegram", "654321:STAFF-token"),
    ] {
        cfg.write(
            &format!("channels/{file}.toml"),
            &format!(
                "kind = \"telegram\"\nbase_url = \"{}\"\nbot_token = \"{token}\"\nwebhook_secret = \"{TG_SECRET}\"\ntimeout = \"1s\"\n",
                tg.base_url()
            ),
        );
    }
    for hook in ["helpdesk", "manager"] {
        cfg.write(
            &format!("channels/{hook}.toml"),
            &format!(
                "kind = \"webhook\"\ncontact = \"none\"\nurl = \"{url}/{hook}\"\ntimeout = \"2s\"\n"
            ),
        );
    }
    let run = Running::start(cfg).await.settle(Settle::Always);
    let http = reqwest::Client::new();
    let hook = run.url("/callbacks/telegram/telegram");

    // Six customers, each in a chat of their own: a, b, c, d, f reply to
    // delivery_delay, e to plain.
    let who = [
        ("a", "delivery_delay", Some("vip")),
        ("b", "delivery_delay", Some("new")),
        ("c", "delivery_delay", Some("new")),
        ("d", "delivery_delay", Some("vip")),
        ("e", "plain", None),
        ("f", "delivery_delay", Some("new")),
    ];
    let mut ids = BTreeMap::new();
    let mut messages = BTreeMap::new();
    for (i, (name, policy, segment)) in who.iter().enumerate() {
        let id = run.id(name);
        let chat = 5_551_000 + i as i64;
        let mut customer =
            json!({ "id": format!("c-{name}"), "contacts": { "telegram": chat.to_string() } });
        if let Some(s) = segment {
            customer["segment"] = json!(s);
        }
        run.publish(&json!({
            "id": id, "policy": policy, "customer": customer,
            "content": { "text": "Заказ задерживается" }
        }))
        .await;
        run.wait_entry(&id, "sent", Some(0)).await;
        let message = tg
            .messages()
            .into_iter()
            .find(|m| m.chat_id == chat)
            .expect("the customer's message");
        ids.insert(*name, id);
        messages.insert(*name, message);
    }
    let reply = async |name: &str| {
        let update = tg.reply(&messages[name], "Когда привезёте?");
        assert_eq!(tg.deliver(&hook, Some(TG_SECRET), &update).await, 200);
        let staff = staff_of(&hooks, &ids[name]).await;
        run.wait_entry(&staff, "sent", Some(0)).await;
        staff
    };
    let answer = async |name: &str| {
        let r = http
            .post(run.url("/v1/receipts"))
            .bearer_auth(TOKEN)
            .json(&json!({ "id": ids[name], "event": "answered" }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    };
    let (a, b, c) = (reply("a").await, reply("b").await, reply("c").await);
    let f = reply("f").await;
    // a is answered in 5 minutes; b, c and f are not: staff are asked.
    run.clock.advance(5 * MIN);
    answer("a").await;
    run.wait_outcome(&a, "completed").await;
    run.clock.advance(11 * MIN);
    run.wait_entry(&b, "sent", Some(1)).await;
    run.wait_entry(&c, "sent", Some(1)).await;
    run.wait_entry(&f, "sent", Some(1)).await;
    // b is answered after the support chat was asked, 20 minutes in.
    run.clock.advance(4 * MIN);
    answer("b").await;
    run.wait_outcome(&b, "completed").await;
    // Nobody answers c: the manager is asked last, and that is the end.
    // f is answered only then, 36 minutes in.
    run.clock.advance(16 * MIN);
    run.wait_outcome(&c, "exhausted").await;
    run.wait_outcome(&f, "exhausted").await;
    answer("f").await;
    wait_until("f's late answer counted", AT_ONCE, async || {
        let (state, t) = run.daemon().store.status(&f).await.unwrap().unwrap();
        t.iter().any(|e| e.event == EntryKind::Receipt) && state.tallied == Some(t.len() as u32)
    })
    .await;
    // d is still within its deadline; e's reply is only handed over.
    let _d = reply("d").await;
    let e = reply("e").await;
    run.wait_outcome(&e, "exhausted").await;

    let now = run.clock.now_ms();
    let range = [
        "--from".to_owned(),
        jiff::Timestamp::from_millisecond(now - 2 * 3_600_000)
            .unwrap()
            .to_string(),
        "--to".to_owned(),
        jiff::Timestamp::from_millisecond(now + 3_600_000)
            .unwrap()
            .to_string(),
    ];
    let cli = |args: &[&str]| {
        let out = cascade_command()
            .arg("--config")
            .arg(run.cfg.path())
            .arg("report")
            .args(args)
            .args(&range)
            .output()
            .expect("cascade report runs");
        assert!(
            out.status.success(),
            "cascade report: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };

    // The text: the customers' table, then the replies.
    let text = cli(&[]);
    let (main, replies) = text
        .split_once("\nReplies\n\n")
        .unwrap_or_else(|| panic!("no Replies section:\n{text}"));
    assert!(
        !main.contains(":answer"),
        "staff rows are not customers':\n{main}"
    );
    assert!(main.contains("6 notifications accepted"), "{main}");
    let line = |policy: &str| {
        replies
            .lines()
            .find(|l| l.starts_with(&format!("{policy} ")))
            .map(cells)
            .unwrap_or_else(|| panic!("no replies row of {policy}:\n{replies}"))
    };
    // received, handed over, answered (a, b, f), in time (a), escalated
    // (b, c, f), after escalation (b, f), unanswered (c), open (d), answer
    // p50 (the middle of a's 5m, b's 20m and f's 36m: in the 30m bucket,
    // 15m + 0.5 × 15m) and p90 (in the 1h bucket: 30m + 0.7 × 30m),
    // in-time rate (a of a, b, c, f).
    let want = "delivery_delay 5 5 3 1 3 2 1 1 22m 51m 25.0%";
    assert_eq!(line("delivery_delay"), cells(want), "{replies}");
    assert_eq!(
        line("plain"),
        [
            "plain", "1", "1", "0", "–", "–", "–", "–", "–", "–", "–", "–"
        ],
        "a reply with no deadline is only handed over:\n{replies}"
    );
    // The staff cascades' own rows, when asked for by name.
    let staff = cli(&["--policy", "delivery_delay:answer"]);
    assert!(staff.contains("delivery_delay:answer"), "{staff}");
    assert!(staff.contains("helpdesk"), "{staff}");

    // The JSON, by segment.
    let json: Value = serde_json::from_str(&cli(&["--json", "--by", "policy,segment"])).unwrap();
    let replies = json["replies"].as_array().unwrap();
    let of = |policy: &str, segment: &str| {
        replies
            .iter()
            .find(|r| r["policy"] == policy && r["segment"] == segment)
            .unwrap_or_else(|| panic!("no {policy}/{segment} in {json:#}"))
    };
    let new = of("delivery_delay", "new");
    assert_eq!(
        (
            &new["received"],
            &new["answered_in_time"],
            &new["escalated"]
        ),
        (&json!(3), &json!(0), &json!(3)),
        "{new}"
    );
    assert_eq!(new["answered_after_escalation"], 2);
    assert_eq!(new["unanswered"], 1);
    assert_eq!(new["open"], 0);
    let vip = of("delivery_delay", "vip");
    assert_eq!((&vip["received"], &vip["open"]), (&json!(2), &json!(1)));
    assert_eq!(vip["in_time_rate"], 1.0);
    assert_eq!(vip["answer_time"], json!({ "10m": 1 }));
    let plain = of("plain", "-");
    assert_eq!(plain["deadline"], false);
    assert_eq!(plain["unanswered"], Value::Null);
    assert!(
        json["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| !r["policy"].as_str().unwrap().ends_with(":answer")),
        "{json:#}"
    );

    // The same over HTTP.
    let body = run.get_v1("/v1/report?since=3h&by=policy").await;
    let dd = body["replies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["policy"] == "delivery_delay")
        .unwrap_or_else(|| panic!("{body:#}"));
    assert_eq!(
        (
            &dd["received"],
            &dd["answered"],
            &dd["answer_p50_ms"],
            &dd["answer_p90_ms"]
        ),
        (&json!(5), &json!(3), &json!(1_350_000), &json!(3_060_000)),
        "{dd}"
    );
    assert!(dd.get("segment").is_none(), "{dd}");

    // The console's overview has the replies table too.
    let html = text_of(&http, run.admin_url("/console?since=3h")).await;
    let section = html
        .split_once("id=\"replies\"")
        .map(|(_, rest)| rest.split("</section>").next().unwrap())
        .unwrap_or_else(|| panic!("no replies card on the console:\n{html}"));
    for (k, v) in [
        ("received", "5"),
        ("unanswered", "1"),
        ("in-time rate", "25.0%"),
    ] {
        let cell = format!("data-k=\"{k}\">{v}</td>");
        assert!(section.contains(&cell), "{cell} in {section}");
    }
}
