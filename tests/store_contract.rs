//! The two stores hold the same contract: every scenario here runs against
//! the Redis store (the real Redis, a key prefix of its own) and the memory
//! store, and requires the same answers of both — and the right ones.
//! Limits are compared over random operations (`limits` below).

mod common;

#[path = "store_contract/limits.rs"]
mod limits;
#[path = "store_contract/rig.rs"]
mod rig;

use cascade::core::Decision;
use cascade::core::receipt_data::ReceiptData;
use cascade::runtime::record::encode_entry;
use cascade::runtime::store::{CascadeStore, ProviderMessage};

use rig::*;

/// A new cascade, a duplicate, and what load, status and the events
/// stream then say.
async fn accept_and_duplicate<S: CascadeStore + Foreign>(s: &S, rig: &Rig) -> Vec<String> {
    let mut log = Vec::new();
    let first = Decision {
        cascade: waiting(NOW + 30 * MIN),
        send: None,
        entries: vec![entry(NOW, "accepted")],
    };
    let a = rig.admitted("n-1");
    for _ in 0..2 {
        log.push(accepted_word(
            s.accept(&a, &rig.policy, &first, "-", &[], NOW).await,
        ));
    }
    log.push(loaded(s.load("n-1").await));
    log.push(loaded(s.load("unknown").await));
    log.push(format!("{:?}", s.status("n-1").await.unwrap()));
    log.push(format!("{:?}", s.events().await));
    log
}

#[tokio::test]
async fn accept_then_duplicate() {
    let rig = Rig::new("contract-accept").await;
    let log = both!(rig, accept_and_duplicate);
    assert_eq!(log[0], "new delivery_delay");
    assert_eq!(log[1], "duplicate");
    assert!(log[2].starts_with("v1 "), "{}", log[2]);
    assert_eq!(log[3], "none");
}

/// A decision made on an old version conflicts; one for an unknown id finds it gone.
async fn version_conflict<S: CascadeStore + Foreign>(s: &S, rig: &Rig) -> Vec<String> {
    rig.accept(s, "n-1", NOW + MIN, false).await;
    let next = decision(NOW + 2 * MIN, false);
    vec![
        format!("{:?}", rig.commit(s, "n-1", 1, &next).await),
        format!("{:?}", rig.commit(s, "n-1", 1, &next).await),
        format!("{:?}", rig.commit(s, "n-1", 2, &next).await),
        format!("{:?}", rig.commit(s, "gone", 1, &next).await),
    ]
}

#[tokio::test]
async fn a_commit_on_an_old_version_conflicts() {
    let rig = Rig::new("contract-conflict").await;
    assert_eq!(
        both!(rig, version_conflict),
        ["Done(2)", "Conflict", "Done(3)", "Gone"]
    );
}

/// A stopping receipt refuses a send (`cancelled` on every policy), a
/// receipt no policy stops on does not; one written before the
/// notification arrived refuses the first send at accept.
async fn stopping_receipts<S: CascadeStore + Foreign>(s: &S, rig: &Rig) -> Vec<String> {
    let mut log = Vec::new();
    for (id, word) in [
        ("n-read", "read"),
        ("n-cancel", "cancelled"),
        ("n-other", "delivered"),
    ] {
        rig.accept(s, id, NOW + MIN, false).await;
        log.push(format!(
            "{:?}",
            s.record_receipt(id, word, Some("vk"), NOW).await.unwrap()
        ));
        log.push(format!(
            "{:?}",
            rig.commit(s, id, 1, &decision(NOW + MIN, true)).await
        ));
    }
    // `cancelled` stops a policy that stops on nothing else.
    let mut quiet = rig.policy.clone();
    quiet.stop_on.clear();
    rig.accept(s, "n-quiet", NOW + MIN, false).await;
    for (word, version) in [("read", 1), ("cancelled", 2)] {
        s.record_receipt("n-quiet", word, None, NOW).await.unwrap();
        let send = decision(NOW + MIN, true);
        let r = rig.commit_on(s, "n-quiet", version, &send, &quiet).await;
        log.push(format!("{word}: {r:?}"));
    }
    s.put_receipt("n-early", "read").await;
    log.push(rig.accept(s, "n-early", NOW + MIN, true).await);
    log.push(rig.accept(s, "n-early", NOW + MIN, false).await);
    log
}

#[tokio::test]
async fn a_stopping_receipt_refuses_a_send() {
    let rig = Rig::new("contract-stop").await;
    assert_eq!(
        both!(rig, stopping_receipts),
        [
            "Recorded",
            "StoppedByReceipt",
            "Recorded",
            "StoppedByReceipt",
            "Recorded",
            "Done(2)",
            "read: Done(2)",
            "cancelled: StoppedByReceipt",
            "refused",
            "new delivery_delay",
        ]
    );
}

/// Claimed when due, leased meanwhile, found lapsed when the lease ran
/// out, and given back as a plain wake-up.
async fn claims<S: CascadeStore + Foreign>(s: &S, rig: &Rig) -> Vec<String> {
    const LEASE: i64 = 10_000;
    rig.accept(s, "n-1", NOW + 1_000, false).await;
    let mut log = vec![
        claimed(s, NOW + 999, LEASE).await,
        claimed(s, NOW + 1_000, LEASE).await,
        claimed(s, NOW + 5_000, LEASE).await,
        // The lease ends at NOW + 11 000 (its score half a ms after).
        claimed(s, NOW + 11_000, LEASE).await,
        claimed(s, NOW + 11_001, LEASE).await,
    ];
    let mut taken = s.claim(0, NOW + 30_000, LEASE, 10).await.unwrap();
    log.push(format!(
        "{taken:?}",
        taken = taken.iter().map(|c| &c.id).collect::<Vec<_>>()
    ));
    if let Some(c) = taken.first_mut() {
        log.push(loaded(s.load_claimed(c).await));
        log.push(loaded(s.load_claimed(c).await));
        s.release_claim(&c.id, &c.lease).await.unwrap();
    }
    log.push(claimed(s, NOW + 39_999, LEASE).await);
    log.push(claimed(s, NOW + 40_000, LEASE).await);
    // A receipt under a lease does not wake the cascade; the commit does.
    s.record_receipt("n-1", "read", None, NOW + 40_001)
        .await
        .unwrap();
    log.push(claimed(s, NOW + 40_002, LEASE).await);
    log.push(format!(
        "{:?}",
        rig.commit_under(s, "n-1", 1, &decision(NOW + 9 * MIN, false), NOW + 50_000)
            .await
    ));
    log.push(claimed(s, NOW + 40_002, LEASE).await);
    log
}

#[tokio::test]
async fn a_claim_leases_and_a_lapsed_lease_is_told() {
    let rig = Rig::new("contract-claim").await;
    let log = both!(rig, claims);
    assert_eq!(log[0], "[]");
    assert_eq!(log[1], "[(\"n-1\", None, 1800000011000)]");
    assert_eq!(log[2], "[]");
    assert_eq!(log[3], "[]");
    assert_eq!(log[4], "[(\"n-1\", Some(1800000001000), 1800000021001)]");
    assert!(log[6].starts_with("v1 "), "{}", log[6]);
    assert_eq!(log[7], "none", "a claim's read is taken once");
    assert_eq!(log[8], "[]");
    assert_eq!(log[9], "[(\"n-1\", None, 1800000050000)]");
    assert_eq!(log[10], "[]");
    assert_eq!(log[12], "[(\"n-1\", None, 1800000050002)]");
}

/// `touch` puts the wake-up back, wakes at once when the receipts changed
/// since the decision read them, and leaves a state that moved on alone.
async fn touches<S: CascadeStore + Foreign>(s: &S, rig: &Rig) -> Vec<String> {
    const LEASE: i64 = 10_000;
    rig.accept(s, "n-1", NOW, false).await;
    let mut log = vec![claimed(s, NOW, LEASE).await];
    let seen = s
        .load("n-1")
        .await
        .unwrap()
        .map(|l| l.receipts_seen)
        .unwrap_or_default();
    // The claim's lease is in the timer: the touch sets it over it.
    s.touch("n-1", 1, Some(NOW + 5 * MIN), &seen, NOW, Some(NOW + LEASE))
        .await
        .unwrap();
    log.push(claimed(s, NOW + 5 * MIN - 1, LEASE).await);
    log.push(claimed(s, NOW + 5 * MIN, LEASE).await);
    // An old version: moved on, nothing set.
    s.touch("n-1", 7, Some(NOW), &seen, NOW, None)
        .await
        .unwrap();
    log.push(claimed(s, NOW + 5 * MIN + 1, LEASE).await);
    // A receipt came under the lease (no wake-up): touch wakes it now.
    s.record_receipt("n-1", "delivered", None, NOW + 5 * MIN)
        .await
        .unwrap();
    let lease = Some(NOW + 5 * MIN + LEASE);
    s.touch("n-1", 1, Some(NOW + 60 * MIN), &seen, NOW + 5 * MIN, lease)
        .await
        .unwrap();
    log.push(claimed(s, NOW + 5 * MIN, LEASE).await);
    // Finished, but a receipt came since the decision read them: woken
    // now all the same, so that its next decision counts the receipt.
    s.touch("n-1", 1, None, &seen, NOW + 6 * MIN, lease)
        .await
        .unwrap();
    log.push(claimed(s, NOW + 6 * MIN, LEASE).await);
    // Finished, the receipts as read: no wake-up left.
    let fresh = s.load("n-1").await.unwrap().unwrap().receipts_seen;
    let lease = Some(NOW + 6 * MIN + LEASE);
    s.touch("n-1", 1, None, &fresh, NOW + 6 * MIN, lease)
        .await
        .unwrap();
    log.push(claimed(s, NOW + 600 * MIN, LEASE).await);
    log
}

#[tokio::test]
async fn touch_puts_the_timer_back_or_wakes_at_once() {
    let rig = Rig::new("contract-touch").await;
    let log = both!(rig, touches);
    assert_eq!(log[1], "[]");
    assert_eq!(log[2], "[(\"n-1\", None, 1800000310000)]");
    assert_eq!(log[3], "[]");
    assert_eq!(log[4], "[(\"n-1\", None, 1800000310000)]");
    assert_eq!(log[5], "[(\"n-1\", None, 1800000370000)]");
    assert_eq!(log[6], "[]");
}

/// Receipts are recorded once (`failed` again each time), unknown ids are
/// told, and a recorded receipt wakes the cascade at once.
async fn receipts<S: CascadeStore + Foreign>(s: &S, rig: &Rig) -> Vec<String> {
    rig.accept(s, "n-1", NOW + 60 * MIN, false).await;
    let mut log = Vec::new();
    for (id, word, at) in [
        ("nobody", "read", NOW),
        ("n-1", "delivered", NOW),
        ("n-1", "delivered", NOW + 1),
        ("n-1", "failed", NOW + 2),
        ("n-1", "failed", NOW + 3),
    ] {
        let r = s.record_receipt(id, word, Some("sms"), at).await.unwrap();
        log.push(format!("{word}: {r:?}"));
    }
    log.push(loaded(s.load("n-1").await));
    log.push(claimed(s, NOW + 3, 1_000).await);
    log.push(format!("{:?}", s.status("n-1").await.unwrap()));
    log.push(format!("{:?}", s.events().await));
    log
}

#[tokio::test]
async fn a_receipt_is_recorded_once_and_wakes_the_cascade() {
    let rig = Rig::new("contract-receipt").await;
    let log = both!(rig, receipts);
    assert_eq!(
        log[..5],
        [
            "read: UnknownNotification",
            "delivered: Recorded",
            "delivered: AlreadyRecorded",
            "failed: Recorded",
            "failed: Recorded",
        ]
    );
    assert!(
        log[5].contains("{\"delivered\": 1800000000000, \"failed\": 1800000000003}"),
        "{}",
        log[5]
    );
    assert!(log[5].contains("seen=\"2\\t1800000000003\""), "{}", log[5]);
    assert_eq!(log[6], "[(\"n-1\", None, 1800000001003)]");
}

/// Data recorded with receipts is merged into the notification's data in
/// the receipt's own call: for an unknown id nothing is kept; a later value
/// of a key wins, also when its event was recorded before; a receipt
/// without data leaves it alone.
async fn receipt_data<S: CascadeStore + Foreign>(s: &S, rig: &Rig) -> Vec<String> {
    rig.accept(s, "n-1", NOW + 60 * MIN, false).await;
    let data = |pairs: &[(&str, &str)]| -> ReceiptData {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let mut log = Vec::new();
    for (id, word, given) in [
        ("nobody", "called", data(&[("slot", "Friday 10-14")])),
        (
            "n-1",
            "called",
            data(&[("slot", "Friday 10-14"), ("floor", "3")]),
        ),
        ("n-1", "called", data(&[("slot", "Monday 9-12")])),
        ("n-1", "delivered", data(&[])),
    ] {
        let r = s
            .record_receipt_with_data(id, word, None, &given, NOW)
            .await
            .unwrap();
        log.push(format!("{word}: {r:?}"));
        log.push(format!("{:?}", s.receipt_data("n-1").await.unwrap()));
    }
    log.push(format!("{:?}", s.receipt_data("nobody").await.unwrap()));
    // At most 64 keys in all: the receipt that would pass it is refused
    // whole; one that only replaces keys held is not.
    for round in 0..4 {
        let given: ReceiptData = (0..16)
            .map(|i| (format!("k{round}_{i}"), "v".to_owned()))
            .collect();
        let r = s
            .record_receipt_with_data("n-1", "noted", None, &given, NOW)
            .await
            .unwrap();
        log.push(format!("{r:?}"));
    }
    let fourteen: ReceiptData = (0..14).map(|i| (format!("f{i}"), "v".to_owned())).collect();
    for given in [
        fourteen,
        data(&[("one_more", "v")]),
        data(&[("slot", "Sunday")]),
    ] {
        let r = s
            .record_receipt_with_data("n-1", "paid", None, &given, NOW)
            .await
            .unwrap();
        log.push(format!("{r:?}"));
    }
    let held = s.receipt_data("n-1").await.unwrap();
    log.push(format!("{} {:?}", held.len(), held.get("slot")));
    log
}

#[tokio::test]
async fn receipt_data_is_merged_in_the_receipts_call() {
    let rig = Rig::new("contract-data").await;
    let log = both!(rig, receipt_data);
    assert_eq!(
        log,
        [
            "called: UnknownNotification",
            "{}",
            "called: Recorded",
            "{\"floor\": \"3\", \"slot\": \"Friday 10-14\"}",
            "called: AlreadyRecorded",
            "{\"floor\": \"3\", \"slot\": \"Monday 9-12\"}",
            "delivered: Recorded",
            "{\"floor\": \"3\", \"slot\": \"Monday 9-12\"}",
            "{}",
            // 2 + 16 × 3 = 50 keys, then 16 more would make 66.
            "Recorded",
            "AlreadyRecorded",
            "AlreadyRecorded",
            "DataFull(50)",
            "Recorded",
            "DataFull(64)",
            "AlreadyRecorded",
            "64 Some(\"Sunday\")",
        ]
    );
}

/// A send's provider message id leads back to its notification and step.
async fn provider_index<S: CascadeStore + Foreign>(s: &S, rig: &Rig) -> Vec<String> {
    let sms = |m: &str, step| ProviderMessage {
        channel: "sms".into(),
        provider_message_id: m.into(),
        peer: None,
        step,
    };
    let vk = |m: &str, step| ProviderMessage {
        channel: "vk".into(),
        provider_message_id: m.into(),
        peer: Some("42".into()),
        step,
    };
    rig.accept(s, "n-1", NOW + MIN, false).await;
    rig.accept(s, "n-2", NOW + MIN, false).await;
    let next = decision(NOW + 2 * MIN, false);
    rig.commit_sent(s, "n-1", 1, &next, &sms("m-1", 0)).await;
    rig.commit_sent(s, "n-1", 2, &next, &vk("101", 1)).await;
    rig.commit_sent(s, "n-2", 1, &next, &vk("100", 0)).await;
    let known = |ids: &[&str]| ids.iter().map(|m| m.to_string()).collect::<Vec<_>>();
    vec![
        format!("{:?}", s.provider_message("sms", "m-1").await.unwrap()),
        format!("{:?}", s.provider_message("sms", "m-2").await.unwrap()),
        format!("{:?}", s.provider_message("vk", "m-1").await.unwrap()),
        format!(
            "{:?}",
            s.newest_known_provider_message("sms", &known(&["m-9", "m-1"]))
                .await
                .unwrap()
        ),
        format!(
            "{:?}",
            s.newest_known_provider_message("sms", &known(&["m-9"]))
                .await
                .unwrap()
        ),
        format!(
            "{:?}",
            s.peer_messages_up_to("vk", "42", 100, NOW).await.unwrap()
        ),
        format!(
            "{:?}",
            s.peer_messages_up_to("vk", "42", 101, NOW).await.unwrap()
        ),
        format!(
            "{:?}",
            s.peer_messages_up_to("vk", "43", 101, NOW).await.unwrap()
        ),
        format!(
            "{:?}",
            s.peer_messages_up_to("vk", "42", 101, NOW + 3 * DAY)
                .await
                .unwrap()
        ),
    ]
}

#[tokio::test]
async fn a_provider_message_id_leads_back_to_its_send() {
    let rig = Rig::new("contract-index").await;
    assert_eq!(
        both!(rig, provider_index),
        [
            "Some((\"n-1\", 0))",
            "None",
            "None",
            "Some((\"n-1\", 0))",
            "None",
            "[(\"n-2\", 0)]",
            "[(\"n-2\", 0), (\"n-1\", 1)]",
            "[]",
            "[]",
        ]
    );
}

/// A callback's dedup key is new once, until forgotten.
async fn dedup<S: CascadeStore + Foreign>(s: &S, _rig: &Rig) -> Vec<String> {
    let mut log = Vec::new();
    for _ in 0..2 {
        log.push(s.first_time("vk:1", 60).await.unwrap());
    }
    log.push(s.first_time("vk:2", 60).await.unwrap());
    s.forget_seen("vk:1").await;
    log.push(s.first_time("vk:1", 60).await.unwrap());
    log.into_iter().map(|b| b.to_string()).collect()
}

#[tokio::test]
async fn a_dedup_key_is_new_once_until_forgotten() {
    let rig = Rig::new("contract-dedup").await;
    assert_eq!(both!(rig, dedup), ["true", "false", "true", "true"]);
}

/// Intake's own events reach the stream beside the decisions'.
async fn events<S: CascadeStore + Foreign>(s: &S, _rig: &Rig) -> Vec<String> {
    s.append_event(Some("n-1"), &entry(NOW, "duplicate"))
        .await
        .unwrap();
    s.append_event(None, &entry(NOW + 1, "rejected"))
        .await
        .unwrap();
    vec![format!("{:?}", s.events().await)]
}

#[tokio::test]
async fn events_are_appended_in_order() {
    let rig = Rig::new("contract-events").await;
    let log = both!(rig, events);
    // By notification id (`Foreign::events`): the one without comes first.
    let want = [
        (String::new(), encode_entry(&entry(NOW + 1, "rejected"))),
        ("n-1".to_owned(), encode_entry(&entry(NOW, "duplicate"))),
    ];
    assert_eq!(log[0], format!("{want:?}"));
}

/// A channel's shared throughput: one share at a time, the next one an
/// interval later, reserved for a caller that will wait that long (and
/// the one after it then further off); channels do not share. (Redis reads its own clock here,
/// the memory store its injected one: only the shape of the answers, and
/// a wait no longer than the interval, are compared.)
async fn channel_rates<S: CascadeStore + Foreign>(s: &S, _rig: &Rig) -> Vec<String> {
    use cascade::core::Rate;
    use cascade::runtime::store::RateTake;
    use std::time::Duration;
    let rate = Rate {
        count: 1,
        per_ms: 60_000,
    };
    let about_a_minute = |d: Duration| d > Duration::from_secs(59) && d <= Duration::from_secs(60);
    let mut log = Vec::new();
    for (channel, wait) in [("sms", 0), ("sms", 0), ("sms", 120), ("sms", 0), ("vk", 0)] {
        let taken = s
            .take_rate(channel, rate, Duration::from_secs(wait))
            .await
            .unwrap();
        log.push(match taken {
            RateTake::Taken(d) if d.is_zero() => format!("{channel}: taken now"),
            RateTake::Taken(d) if about_a_minute(d) => format!("{channel}: taken in a minute"),
            RateTake::Wait(d) if about_a_minute(d) => format!("{channel}: wait a minute"),
            RateTake::Wait(d) if d > Duration::from_secs(119) => format!("{channel}: wait two"),
            other => format!("{channel}: {other:?}"),
        });
    }
    log
}

#[tokio::test]
async fn a_channels_rate_is_taken_one_share_at_a_time() {
    let rig = Rig::new("contract-rate").await;
    assert_eq!(
        both!(rig, channel_rates),
        [
            "sms: taken now",
            "sms: wait a minute",
            "sms: taken in a minute",
            "sms: wait two",
            "vk: taken now",
        ]
    );
}

/// The report counters: a new cascade's and a decision's counts add up by
/// hour; a commit made on fewer timeline entries than the record holds (a
/// receipt came meanwhile) is refused, so nothing goes uncounted; segments
/// past the bound count as `other`.
async fn report_counters<S: CascadeStore + Foreign>(s: &S, rig: &Rig) -> Vec<String> {
    use cascade::report::Count;
    let count = |step: Option<u8>, channel: &str, metric: &str| Count {
        step,
        channel: channel.into(),
        metric: metric.into(),
        n: 1,
    };
    let mut log = Vec::new();
    for raw in [Some("new"), Some("vip"), Some("regular"), Some("new"), None] {
        log.push(s.segment("delivery_delay", raw).await.unwrap());
    }
    let first = decision(NOW + MIN, false);
    let a = rig.admitted("n-1");
    let accepted = [count(None, "", "accepted")];
    s.accept(&a, &rig.policy, &first, "new", &accepted, NOW)
        .await
        .unwrap();
    let lines = s.load("n-1").await.unwrap().unwrap().lines;
    log.push(format!("lines {lines}"));
    s.record_receipt("n-1", "delivered", Some("vk"), NOW + 1)
        .await
        .unwrap();
    let next = decision(NOW + 2 * MIN, false);
    let sent = [count(Some(0), "vk", "sent")];
    let request = |lines| cascade::runtime::store::CommitRequest {
        id: "n-1",
        version: 1,
        earlier: &[],
        decision: &next,
        policy: &rig.policy,
        sent: None,
        now_ms: NOW,
        lease_until_ms: None,
        counts: &sent,
        segment: "new",
        lines: Some(lines),
    };
    log.push(format!("{:?}", s.commit(request(lines)).await.unwrap()));
    log.push(format!("{:?}", s.commit(request(lines + 1)).await.unwrap()));
    let hour = cascade::report::hour_of(NOW);
    log.push(format!(
        "{:?}",
        s.report_counts(hour, hour + 1).await.unwrap()
    ));
    log.push(format!(
        "{:?}",
        s.report_counts(hour + 1, hour + 2).await.unwrap()
    ));
    log
}

#[tokio::test]
async fn report_counters_add_up_and_a_receipt_since_the_decision_conflicts() {
    let rig = Rig::new("contract-report").await;
    let log = both!(rig, report_counters);
    assert_eq!(log[..5], ["new", "vip", "other", "new", "-"]);
    assert_eq!(log[5..8], ["lines 1", "Conflict", "Done(2)"]);
    assert_eq!(
        log[8],
        "{\"delivery_delay\\t-\\t\\tnew\\taccepted\": 1, \"delivery_delay\\t0\\tvk\\tnew\\tsent\": 1}"
    );
    assert_eq!(log[9], "{}");
}
