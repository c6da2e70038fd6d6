//! `cascade status <id> [--json]` and `cascade receipt <id> <event>`, run as
//! an operator would (the binary, a clean environment) against the Redis of
//! a running daemon: the timeline as stored, and a receipt by hand that the
//! daemon acts on at once.

use serde_json::{Value, json};

use crate::common::{DELIVERY_DELAY, Running, TestConfig, cascade_command, settle};
use crate::support::{MIN, Receiver, note};

/// Runs the binary on `cfg` with nothing inherited from the caller's
/// environment: (exit code, stdout, stderr).
fn cascade(cfg: &TestConfig, args: &[&str]) -> (i32, String, String) {
    let out = cascade_command()
        .arg("--config")
        .arg(cfg.path())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_prints_the_timeline_and_receipt_records_one_the_daemon_acts_on() {
    let hooks = Receiver::start().await;
    let cfg = TestConfig::new("commands", &hooks.url, "", DELIVERY_DELAY);
    let run = Running::start(cfg).await;
    let id = run.id("n");
    let customer = json!({ "customer": {
        "timezone": "Asia/Yekaterinburg",
        "segment": "vip",
        "contacts": { "vk": "123456789", "sms": "+79161234567" },
    } });
    run.publish(&note(&id, "c-1", "delivery_delay", customer))
        .await;
    let sent = run.wait_entries(&id, "sent", 1).await[0].at_ms;

    let (code, out, err) = cascade(&run.cfg, &["status", &id]);
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    let utc = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .unwrap()
            .strftime("%Y-%m-%dT%H:%M:%S")
            .to_string()
    };
    // The customer's wall clock, as `cascade simulate` prints it.
    let local = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::get("Asia/Yekaterinburg").unwrap())
            .strftime("%Y-%m-%d %H:%M %Z")
            .to_string()
    };
    let head = lines.next().unwrap();
    assert!(
        head.starts_with(&format!("{id}: running (step 1, next wake-up ")),
        "{out}"
    );
    assert!(
        head.contains(&utc(sent + 30 * MIN)) && head.contains(&local(sent + 30 * MIN)),
        "the wake-up is 30 minutes after the send, local and UTC:\n{out}"
    );
    assert!(
        lines.next().unwrap().starts_with("policy delivery_delay"),
        "{out}"
    );
    assert_eq!(
        lines.next().unwrap(),
        "customer c-1: segment vip; time zone Asia/Yekaterinburg",
        "{out}"
    );
    assert_eq!(
        lines.next().unwrap(),
        "contacts: sms +7916•••4567, vk 12•••89",
        "{out}"
    );
    for clear in ["79161234567", "123456789"] {
        assert!(!out.contains(clear), "a contact in the clear:\n{out}");
    }
    assert_eq!(lines.next(), Some(""), "{out}");
    let rows: Vec<&str> = lines.by_ref().take_while(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows[0].contains("accepted"), "{out}");
    assert!(
        rows[1].contains("sent") && rows[1].contains("step 1") && rows[1].contains("vk"),
        "{out}"
    );
    assert!(
        rows[1].starts_with(&local(sent)) && rows[1].contains(&utc(sent)),
        "each entry in local time and UTC:\n{out}"
    );
    assert_eq!(lines.next(), Some("receipts: none"), "{out}");

    let (code, out, err) = cascade(&run.cfg, &["status", &id, "--json"]);
    assert_eq!(code, 0, "{err}");
    let entries: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 2, "{out}");
    assert_eq!(entries[1]["event"], "sent");
    assert_eq!(entries[1]["channel"], "vk");
    assert_eq!(entries[1]["at_ms"], sent);
    // Steps counted from 1, as the text above and the timeline API say them.
    assert_eq!(entries[1]["step"], 1, "{out}");
    assert!(entries[0]["step"].is_null(), "{out}");

    // A receipt by hand: the waiting cascade completes at once, no SMS.
    let (code, out, err) = cascade(&run.cfg, &["receipt", &id, "read", "--channel", "vk"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("recorded read for {id}"));
    run.wait_outcome(&id, "completed").await;
    let (code, out, _) = cascade(&run.cfg, &["receipt", &id, "read"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("read was already recorded for {id}"));

    let (code, out, _) = cascade(&run.cfg, &["status", &id]);
    assert_eq!(code, 0);
    assert!(out.starts_with(&format!("{id}: completed\n")), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("receipt") && l.contains("read")),
        "{out}"
    );
    let (_, receipts) = out.split_once("\nreceipts:\n").expect(&out);
    let read = receipts.lines().next().unwrap();
    assert!(read.trim_start().starts_with("read "), "{out}");
    assert!(
        read.contains("+05 ") && read.contains("Z ") && read.ends_with(" vk"),
        "the receipt's time, local and UTC, and its channel:\n{out}"
    );

    let unknown = run.id("unknown");
    let (code, _, err) = cascade(&run.cfg, &["receipt", &unknown, "read"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("no notification `{unknown}`")),
        "{err}"
    );
    let (code, _, err) = cascade(&run.cfg, &["status", &unknown]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("no notification `{unknown}`")),
        "{err}"
    );

    run.clock.advance(31 * MIN);
    settle().await;
    assert_eq!(hooks.count("sms"), 0);
}
