use std::collections::BTreeMap;

use super::*;
use crate::core::{Limits, OnLimit, Outcome, Step, WaitClock};

const MIN: i64 = 60_000;
const T0: i64 = 1_800_000_000_000;

fn policy() -> Policy {
    let step = |ch: &str, wait: Option<i64>| Step {
        channels: vec![ch.to_owned()],
        wait_ms: wait,
        wait_clock: WaitClock::Wall,
        on_limit: OnLimit::Defer,
        ..Default::default()
    };
    Policy {
        name: "delivery_delay".into(),
        description: String::new(),
        stop_on: vec!["read".into(), "clicked".into()],
        expire_after_ms: None,
        steps: vec![step("vk", Some(30 * MIN)), step("sms", None)],
        limits: Limits::default(),
        quiet_hours: BTreeMap::new(),
        quiet_off: Default::default(),
        answer: None,
        awake_hours: None,
    }
}

fn entry(at_ms: i64, event: EntryKind, step: Option<u8>, channel: Option<&str>) -> Entry {
    Entry {
        at_ms,
        event,
        step,
        channel: channel.map(str::to_owned),
        reason: None,
        until_ms: None,
        provider_message_id: None,
    }
}

fn receipt(at_ms: i64, word: &str, channel: Option<&str>) -> Entry {
    Entry {
        reason: Some(word.into()),
        ..entry(at_ms, EntryKind::Receipt, None, channel)
    }
}

fn completed(at_ms: i64, step: u8, word: &str) -> Entry {
    Entry {
        reason: Some(word.into()),
        ..entry(at_ms, EntryKind::Completed, Some(step), None)
    }
}

/// VK at T0, escalated at T0+30m, SMS out at T0+30m.
fn escalated_to_sms() -> Vec<Entry> {
    vec![
        entry(T0, EntryKind::Accepted, None, None),
        entry(T0, EntryKind::Sent, Some(0), Some("vk")),
        entry(T0 + 30 * MIN, EntryKind::Escalated, Some(1), None),
        entry(T0 + 30 * MIN, EntryKind::Sent, Some(1), Some("sms")),
    ]
}

fn state(step: u8, phase: Phase) -> Cascade {
    Cascade {
        step,
        alt: 0,
        failures: 0,
        phase,
        expires_at_ms: None,
        handled_failed_ms: None,
        transitions: 3,
        tallied: None,
        branch: None,
    }
}

fn done() -> Cascade {
    state(
        1,
        Phase::Done {
            outcome: Outcome::Exhausted,
            at_ms: T0 + 30 * MIN,
        },
    )
}

fn run(counted: &[Entry], fresh: &[Entry], before: &Cascade, receipts: &[(&str, i64)]) -> Tallied {
    run_on(policy(), counted, fresh, before, receipts)
}

fn run_on(
    p: Policy,
    counted: &[Entry],
    fresh: &[Entry],
    before: &Cascade,
    receipts: &[(&str, i64)],
) -> Tallied {
    let receipts: BTreeMap<String, i64> =
        receipts.iter().map(|(w, t)| (w.to_string(), *t)).collect();
    let price = |ch: &str| match ch {
        "sms" => Some(4.2),
        _ => None,
    };
    let would_use = |step: usize| p.steps.get(step).map(|s| s.channels[0].clone());
    Tally {
        policy: &p,
        counted,
        fresh,
        before,
        receipts: &receipts,
        late_read_window_ms: 15 * MIN,
        price: &price,
        would_use: &would_use,
        now_ms: T0 + 40 * MIN,
    }
    .run()
}

fn has(t: &Tallied, step: Option<u8>, channel: &str, metric: &str) -> i64 {
    t.counts
        .iter()
        .filter(|c| c.step == step && c.channel == channel && c.metric == metric)
        .map(|c| c.n)
        .sum()
}

#[test]
fn sends_escalations_and_money_are_counted_where_they_happened() {
    let timeline = escalated_to_sms();
    let t = run(&[], &timeline, &state(0, Phase::Due { at_ms: T0 }), &[]);
    assert_eq!(has(&t, None, "", "accepted"), 1);
    assert_eq!(has(&t, Some(0), "vk", "sent"), 1);
    assert_eq!(has(&t, Some(1), "sms", "sent"), 1);
    assert_eq!(has(&t, Some(1), "sms", "cost"), 4_200);
    // The escalation is counted on the step it left, on that step's channel.
    assert_eq!(has(&t, Some(0), "vk", "escalated"), 1);
    assert!(t.late_reads.is_empty());
}

#[test]
fn a_read_of_the_earlier_message_soon_after_the_escalation_is_late() {
    let counted = escalated_to_sms();
    let read = [receipt(T0 + 35 * MIN, "read", Some("vk"))];
    let t = run(&counted, &read, &done(), &[("read", T0 + 35 * MIN)]);
    assert_eq!(has(&t, Some(0), "vk", "read"), 1);
    assert_eq!(has(&t, Some(0), "vk", "receipt:read"), 1);
    // 35 minutes after the VK message went out.
    assert_eq!(has(&t, Some(0), "vk", "ttr:1h"), 1);
    assert_eq!(has(&t, Some(1), "sms", "late_read"), 1);
    assert_eq!(t.late_reads.len(), 1);
    assert_eq!(t.late_reads[0].event, EntryKind::LateRead);
    assert_eq!(t.late_reads[0].step, Some(1));
}

#[test]
fn a_read_of_the_escalated_message_itself_is_not_late() {
    let counted = escalated_to_sms();
    for channel in [Some("sms"), None] {
        let read = [receipt(T0 + 35 * MIN, "read", channel)];
        let t = run(&counted, &read, &done(), &[("read", T0 + 35 * MIN)]);
        assert_eq!(has(&t, Some(1), "sms", "read"), 1, "{channel:?}");
        assert_eq!(has(&t, Some(1), "sms", "ttr:5m"), 1, "{channel:?}");
        assert_eq!(has(&t, Some(1), "sms", "late_read"), 0, "{channel:?}");
        assert!(t.late_reads.is_empty());
    }
}

#[test]
fn a_read_after_the_late_read_window_is_not_late() {
    let counted = escalated_to_sms();
    let read = [receipt(T0 + 50 * MIN, "read", Some("vk"))];
    let t = run(&counted, &read, &done(), &[("read", T0 + 50 * MIN)]);
    assert_eq!(has(&t, Some(0), "vk", "read"), 1);
    assert_eq!(has(&t, Some(1), "sms", "late_read"), 0);
}

#[test]
fn a_notification_is_read_once_whatever_receipts_follow() {
    let mut counted = escalated_to_sms();
    counted.push(receipt(T0 + 35 * MIN, "read", Some("sms")));
    let more = [receipt(T0 + 36 * MIN, "clicked", Some("sms"))];
    let t = run(&counted, &more, &done(), &[]);
    assert_eq!(has(&t, Some(1), "sms", "receipt:clicked"), 1);
    assert_eq!(has(&t, Some(1), "sms", "read"), 0);
    // A custom word counts as `other`, and reads nothing.
    let custom = [receipt(T0 + 37 * MIN, "called", None)];
    let t = run(&counted, &custom, &done(), &[]);
    assert_eq!(has(&t, Some(1), "sms", "receipt:other"), 1);
}

#[test]
fn a_read_written_straight_into_the_hash_counts_at_the_completion() {
    let counted = &escalated_to_sms()[..2];
    let waiting = state(
        0,
        Phase::Waiting {
            channel: "vk".into(),
            sent_ms: T0,
            until_ms: T0 + 30 * MIN,
        },
    );
    let fresh = [completed(T0 + 12 * MIN, 0, "read")];
    let t = run(counted, &fresh, &waiting, &[("read", T0 + 9 * MIN)]);
    assert_eq!(has(&t, Some(0), "", "completed"), 1);
    assert_eq!(has(&t, Some(0), "vk", "read"), 1);
    // From the hash's time, not the decision's.
    assert_eq!(has(&t, Some(0), "vk", "ttr:10m"), 1);
    // The SMS step was not needed: its price is saved.
    assert_eq!(has(&t, Some(1), "sms", "avoided"), 1);
    assert_eq!(has(&t, Some(1), "sms", "saved"), 4_200);
}

#[test]
fn a_read_entry_and_its_completion_count_one_read() {
    let counted = &escalated_to_sms()[..2];
    let waiting = state(
        0,
        Phase::Waiting {
            channel: "vk".into(),
            sent_ms: T0,
            until_ms: T0 + 30 * MIN,
        },
    );
    let fresh = [
        receipt(T0 + 3 * MIN, "read", Some("vk")),
        completed(T0 + 3 * MIN, 0, "read"),
    ];
    let t = run(counted, &fresh, &waiting, &[("read", T0 + 3 * MIN)]);
    let reads: i64 = t
        .counts
        .iter()
        .filter(|c| c.metric == "read")
        .map(|c| c.n)
        .sum();
    assert_eq!(reads, 1);
    assert_eq!(has(&t, Some(0), "vk", "ttr:5m"), 1);
}

#[test]
fn retries_and_cancellations_are_not_reads_or_failures() {
    let counted = &escalated_to_sms()[..2];
    let retry = Entry {
        until_ms: Some(T0 + MIN),
        ..entry(T0, EntryKind::SendFailed, Some(0), Some("vk"))
    };
    let cancel = [receipt(T0 + MIN, "cancelled", None), retry];
    let t = run(counted, &cancel, &state(0, Phase::Due { at_ms: T0 }), &[]);
    assert_eq!(has(&t, Some(0), "vk", "receipt:cancelled"), 1);
    assert!(
        t.counts
            .iter()
            .all(|c| c.metric != "read" && c.metric != "failed")
    );
}

#[test]
fn time_to_read_buckets_have_inclusive_upper_bounds() {
    assert_eq!(ttr_bucket(0), "1m");
    assert_eq!(ttr_bucket(60_000), "1m");
    assert_eq!(ttr_bucket(60_001), "2m");
    assert_eq!(ttr_bucket(86_400_000), "1d");
    assert_eq!(ttr_bucket(86_400_001), "more");
}

#[test]
fn a_receipt_recorded_while_its_send_was_out_answers_that_send() {
    // The receipt's line lands before the send's entry: the send's commit
    // was refused for it, and the decision made again.
    let counted = &escalated_to_sms()[..3];
    let fresh = [
        receipt(T0 + 30 * MIN + 200, "read", Some("sms")),
        entry(T0 + 30 * MIN + 300, EntryKind::Sent, Some(1), Some("sms")),
    ];
    let in_flight = state(
        1,
        Phase::InFlight {
            channel: "sms".into(),
            deadline_ms: T0 + 32 * MIN,
        },
    );
    let t = run(
        counted,
        &fresh,
        &in_flight,
        &[("read", T0 + 30 * MIN + 200)],
    );
    assert_eq!(has(&t, Some(1), "sms", "read"), 1);
    assert_eq!(has(&t, Some(1), "sms", "ttr:1m"), 1);
    assert!(t.late_reads.is_empty());
}

#[test]
fn a_receipts_own_channel_word_never_becomes_a_counter() {
    // Before anything went out: no message to answer.
    let fresh = [receipt(T0, "read", Some("vk\n999 x\t1\tsms\tnew\tcost"))];
    let t = run(&[], &fresh, &state(0, Phase::Due { at_ms: T0 }), &[]);
    assert!(
        t.counts.iter().all(|c| c.channel.is_empty()),
        "{:?}",
        t.counts
    );
    assert_eq!(has(&t, Some(0), "", "read"), 1);
}

#[test]
fn a_branch_is_counted_on_the_step_it_left() {
    let timeline = vec![
        entry(T0, EntryKind::Accepted, None, None),
        entry(T0, EntryKind::Sent, Some(0), Some("vk")),
        Entry {
            reason: Some("on called".into()),
            ..entry(T0 + 5 * MIN, EntryKind::Escalated, Some(0), None)
        },
        entry(T0 + 5 * MIN, EntryKind::Sent, Some(1), Some("sms")),
    ];
    let t = run(&[], &timeline, &state(0, Phase::Due { at_ms: T0 }), &[]);
    assert_eq!(has(&t, Some(0), "vk", "escalated"), 1);
    assert_eq!(has(&t, None, "", "escalated"), 0);
}

#[test]
fn a_jump_by_next_is_counted_on_the_step_it_left() {
    // vk (next = sms), a step only a branch leads to, sms.
    let mut p = policy();
    p.steps.insert(1, p.steps[0].clone());
    p.steps[0].next = Some(2);
    p.steps[0].on = [("called".into(), 1)].into();
    let timeline = vec![
        entry(T0, EntryKind::Accepted, None, None),
        entry(T0, EntryKind::Sent, Some(0), Some("vk")),
        Entry {
            reason: Some("unread".into()),
            ..entry(T0 + 30 * MIN, EntryKind::Escalated, Some(2), None)
        },
        entry(T0 + 30 * MIN, EntryKind::Sent, Some(2), Some("sms")),
    ];
    let t = run_on(p, &[], &timeline, &state(0, Phase::Due { at_ms: T0 }), &[]);
    assert_eq!(has(&t, Some(0), "vk", "escalated"), 1);
    assert_eq!(has(&t, Some(1), "", "escalated"), 0);
}

#[test]
fn a_final_step_reached_by_a_branch_completes_without_a_read_or_a_saving() {
    // vk (on called → sms, final); the cascade completes with `called`
    // once the sms is out: a verdict that led to the follow-up, not a read.
    let mut p = policy();
    p.steps[0].on = [("called".into(), 1)].into();
    p.steps[1].is_final = true;
    let timeline = vec![
        entry(T0, EntryKind::Accepted, None, None),
        entry(T0, EntryKind::Sent, Some(0), Some("vk")),
        receipt(T0 + 5 * MIN, "called", None),
        Entry {
            reason: Some("on called".into()),
            ..entry(T0 + 5 * MIN, EntryKind::Escalated, Some(0), None)
        },
        entry(T0 + 5 * MIN, EntryKind::Sent, Some(1), Some("sms")),
        Entry {
            reason: Some("called".into()),
            ..entry(T0 + 5 * MIN, EntryKind::Completed, Some(1), None)
        },
    ];
    let t = run_on(
        p,
        &[],
        &timeline,
        &state(0, Phase::Due { at_ms: T0 }),
        &[("called", T0 + 5 * MIN)],
    );
    assert_eq!(has(&t, Some(1), "", "completed"), 1);
    let reads: i64 = t
        .counts
        .iter()
        .filter(|c| c.metric == "read")
        .map(|c| c.n)
        .sum();
    assert_eq!(reads, 0, "{:?}", t.counts);
    assert!(
        !t.counts.iter().any(|c| c.metric == "avoided"),
        "{:?}",
        t.counts
    );
}

#[test]
fn a_read_saves_the_steps_a_wait_would_have_led_to_not_those_only_a_branch_reaches() {
    // vk (on called → confirm, next = chat), confirm (final), chat.
    let mut p = policy();
    let mut confirm = p.steps[1].clone();
    confirm.is_final = true;
    p.steps.insert(1, confirm);
    p.steps[0].on = [("called".into(), 1)].into();
    p.steps[0].next = Some(2);
    let waiting = Phase::Waiting {
        channel: "vk".into(),
        sent_ms: T0,
        until_ms: T0 + 30 * MIN,
    };
    let read = [
        receipt(T0 + 5 * MIN, "read", Some("vk")),
        Entry {
            reason: Some("read".into()),
            ..entry(T0 + 5 * MIN, EntryKind::Completed, Some(0), None)
        },
    ];
    let t = run_on(p, &[], &read, &state(0, waiting), &[("read", T0 + 5 * MIN)]);
    let avoided: Vec<Option<u8>> = t
        .counts
        .iter()
        .filter(|c| c.metric == "avoided")
        .map(|c| c.step)
        .collect();
    assert_eq!(avoided, [Some(2)], "{:?}", t.counts);
}

#[test]
fn a_staff_answer_counts_its_time_from_the_reply() {
    let mut p = policy();
    p.name = "delivery_delay:answer".into();
    p.stop_on = vec!["answered".into()];
    // Handed over at T0, the support chat asked at T0+15m, answered at T0+20m.
    let counted = escalated_to_sms();
    let fresh = [
        receipt(T0 + 35 * MIN, "answered", None),
        completed(T0 + 35 * MIN, 1, "answered"),
    ];
    let t = run_on(p, &counted, &fresh, &done(), &[("answered", T0 + 35 * MIN)]);
    assert_eq!(has(&t, Some(1), "sms", "read"), 1);
    assert_eq!(has(&t, Some(1), "sms", "ttr:5m"), 1, "{:?}", t.counts);
    assert_eq!(has(&t, None, "", "answer:1h"), 1, "{:?}", t.counts);
    // A customer's policy counts no answer time.
    let t = run(
        &counted,
        &[receipt(T0 + 35 * MIN, "read", None)],
        &done(),
        &[("read", T0 + 35 * MIN)],
    );
    assert!(t.counts.iter().all(|c| !c.metric.starts_with("answer:")));
}

#[test]
fn a_staff_answer_after_the_escalation_ran_out_says_so() {
    let mut p = policy();
    p.name = "delivery_delay:answer".into();
    p.stop_on = vec!["answered".into()];
    let mut counted = escalated_to_sms();
    // The last staff channel asked ends the staff cascade.
    counted.push(entry(T0 + 30 * MIN, EntryKind::Exhausted, Some(1), None));
    let fresh = [receipt(T0 + 50 * MIN, "answered", None)];
    let t = run_on(p.clone(), &counted, &fresh, &done(), &[]);
    assert_eq!(has(&t, Some(1), "sms", "read"), 1);
    assert_eq!(
        has(&t, Some(1), "sms", ANSWERED_AFTER_END),
        1,
        "{:?}",
        t.counts
    );
    assert_eq!(has(&t, None, "", "answer:1h"), 1);
    // Answered while the staff were being asked: not after the end.
    let t = run_on(p, &counted[..4], &fresh, &done(), &[]);
    assert_eq!(has(&t, Some(1), "sms", "read"), 1);
    assert!(
        t.counts.iter().all(|c| c.metric != ANSWERED_AFTER_END),
        "{:?}",
        t.counts
    );
}
