//! One test per rule of the state machine, with time passed in as `now`.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;

use super::*;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn ms(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

fn rules(kind: ChannelKind, on_uncertain: OnUncertain) -> ChannelRules {
    ChannelRules {
        kind,
        contact_key: kind.default_contact_key().map(str::to_owned),
        retry: RetryPolicy {
            attempts: 3,
            backoff_ms: 1_000,
            max_backoff_ms: 10_000,
        },
        on_uncertain,
    }
}

fn channels() -> BTreeMap<String, ChannelRules> {
    let mut m = BTreeMap::new();
    m.insert("vk".into(), rules(ChannelKind::Vk, OnUncertain::Resend));
    m.insert("sms".into(), rules(ChannelKind::Sms, OnUncertain::Skip));
    m.insert("email".into(), rules(ChannelKind::Email, OnUncertain::Skip));
    m.insert(
        "telegram".into(),
        rules(ChannelKind::Telegram, OnUncertain::Skip),
    );
    m.insert(
        "whatsapp".into(),
        rules(ChannelKind::Whatsapp, OnUncertain::Skip),
    );
    m.insert(
        "call_centre".into(),
        rules(ChannelKind::Webhook, OnUncertain::Skip),
    );
    m
}

fn step(channels: &[&str], wait_min: Option<i64>) -> Step {
    Step {
        channels: channels.iter().map(|s| s.to_string()).collect(),
        wait_ms: wait_min.map(|m| m * MIN),
        wait_clock: WaitClock::Wall,
        on_limit: OnLimit::Defer,
        ..Default::default()
    }
}

fn delivery_delay() -> Policy {
    Policy {
        name: "delivery_delay".into(),
        description: String::new(),
        stop_on: vec!["read".into()],
        expire_after_ms: Some(12 * HOUR),
        steps: vec![step(&["vk"], Some(30)), step(&["sms"], None)],
        limits: Limits::default(),
        quiet_hours: BTreeMap::new(),
        quiet_off: Default::default(),
        answer: None,
        awake_hours: None,
    }
}

fn everyone() -> Recipient {
    let contacts = [
        ("vk", "123"),
        ("sms", "+79161234567"),
        ("email", "a@b.ru"),
        ("telegram", "555"),
        ("whatsapp", "+79161234567"),
    ];
    Recipient {
        contacts: contacts
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        preferences: vec![],
        opt_out: vec![],
        tz: TimeZone::get("Europe/Moscow").unwrap(),
    }
}

/// Drives one cascade by hand and keeps its timeline.
struct H {
    policy: Policy,
    channels: BTreeMap<String, ChannelRules>,
    recipient: Recipient,
    receipts: BTreeMap<String, i64>,
    timing: Timing,
    state: Option<Cascade>,
    now: i64,
    log: Vec<Entry>,
    sends: Vec<(i64, SendOrder)>,
    pending: Option<SendOrder>,
}

impl H {
    fn new(policy: Policy, recipient: Recipient, now: i64) -> H {
        H {
            policy,
            channels: channels(),
            recipient,
            receipts: BTreeMap::new(),
            timing: Timing::default(),
            state: None,
            now,
            log: vec![],
            sends: vec![],
            pending: None,
        }
    }

    fn apply(&mut self, d: Decision) {
        self.log.extend(d.entries);
        if let Some(order) = d.send {
            self.sends.push((self.now, order.clone()));
            self.pending = Some(order);
        }
        self.state = Some(d.cascade);
    }

    fn start(&mut self, send_at: Option<i64>, expires_at: Option<i64>) {
        let ctx = self.ctx();
        let d = Cascade::start(self.now, send_at, expires_at, &ctx);
        self.apply(d);
    }

    fn ctx(&self) -> Context<'_> {
        Context {
            notification_id: "n-1",
            policy: &self.policy,
            channels: &self.channels,
            recipient: &self.recipient,
            receipts: &self.receipts,
            timing: self.timing,
        }
    }

    fn event(&mut self, e: Event) {
        let state = self.state.clone().unwrap();
        let d = decide(state, e, self.now, &self.ctx());
        self.apply(d);
    }

    /// Accepts the notification as intake stores it when it cannot send
    /// at once: due now, its first step not yet decided.
    fn accept(&mut self) {
        let d = Cascade::accept(self.now, None, None, &self.ctx());
        self.apply(d);
    }

    /// Answers the pending send.
    fn reply(&mut self, outcome: SendOutcome) {
        let o = self.pending.take().expect("a send is pending");
        self.event(Event::SendResult {
            step: o.step,
            channel: o.channel,
            outcome,
        });
    }

    fn sent(&mut self) {
        self.reply(SendOutcome::Sent {
            provider_message_id: Some("p-1".into()),
        });
    }

    fn wake(&mut self) {
        let at = self
            .state
            .as_ref()
            .unwrap()
            .wake_at_ms()
            .expect("a wake-up is scheduled");
        self.now = self.now.max(at);
        self.event(Event::TimerDue);
    }

    fn receipt(&mut self, event: &str, at: i64) {
        self.now = at;
        self.receipts.insert(event.into(), at);
        self.event(Event::ReceiptsChanged);
    }

    fn state(&self) -> &Cascade {
        self.state.as_ref().unwrap()
    }

    fn channels_sent(&self) -> Vec<String> {
        self.log
            .iter()
            .filter(|e| e.event == EntryKind::Sent)
            .map(|e| e.channel.clone().unwrap())
            .collect()
    }

    fn events(&self) -> Vec<&'static str> {
        self.log.iter().map(|e| e.event.as_str()).collect()
    }

    fn outcome(&self) -> Option<&Outcome> {
        self.state().outcome()
    }
}

const T0: &str = "2026-11-23T09:00:00Z"; // 12:00 in Moscow

#[test]
fn read_on_the_first_channel_stops_before_the_sms() {
    let mut h = H::new(delivery_delay(), everyone(), ms(T0));
    h.start(None, None);
    assert_eq!(h.pending.as_ref().unwrap().channel, "vk");
    h.sent();
    assert_eq!(h.state().wake_at_ms(), Some(ms(T0) + 30 * MIN));
    h.receipt("read", ms(T0) + 12 * MIN);
    assert_eq!(
        h.outcome(),
        Some(&Outcome::Completed {
            event: "read".into()
        })
    );
    assert_eq!(h.channels_sent(), ["vk"]);
    assert_eq!(h.state().wake_at_ms(), None);
}

#[test]
fn unread_escalates_to_sms_after_the_wait() {
    let mut h = H::new(delivery_delay(), everyone(), ms(T0));
    h.start(None, None);
    h.sent();
    h.wake();
    assert_eq!(h.now, ms(T0) + 30 * MIN);
    assert_eq!(h.pending.as_ref().unwrap().channel, "sms");
    h.sent();
    assert_eq!(h.outcome(), Some(&Outcome::Exhausted));
    assert_eq!(
        h.events(),
        ["accepted", "sent", "escalated", "sent", "exhausted"]
    );
}

#[test]
fn early_timer_changes_nothing() {
    let mut h = H::new(delivery_delay(), everyone(), ms(T0));
    h.start(None, None);
    h.sent();
    let before = h.state().clone();
    h.now += MIN;
    h.event(Event::TimerDue);
    assert_eq!(h.state(), &before);
}

#[test]
fn a_step_without_a_contact_is_skipped_and_recorded() {
    let mut r = everyone();
    r.contacts.remove("vk");
    let mut h = H::new(delivery_delay(), r, ms(T0));
    h.start(None, None);
    assert_eq!(h.pending.as_ref().unwrap().channel, "sms");
    let skip = h
        .log
        .iter()
        .find(|e| e.event == EntryKind::Skipped)
        .unwrap();
    assert_eq!(skip.channel.as_deref(), Some("vk"));
    assert_eq!(skip.reason.as_deref(), Some("no_contact"));
    assert_eq!(h.sends[0].0, ms(T0), "the SMS goes at once");
}

#[test]
fn opt_out_is_a_skip_by_name_kind_or_contact_key() {
    for word in ["vk", "vk_messages"] {
        let mut r = everyone();
        r.opt_out = vec![word.into()];
        let mut p = delivery_delay();
        p.steps[0].channels = vec!["vk_messages".into()];
        let mut h = H::new(p, r, ms(T0));
        // A channel named apart from its kind: opting out of either word counts.
        let vk = h.channels["vk"].clone();
        h.channels.insert("vk_messages".into(), vk);
        h.start(None, None);
        assert_eq!(h.pending.as_ref().unwrap().channel, "sms");
        assert!(
            h.log
                .iter()
                .any(|e| e.reason.as_deref() == Some("opted_out"))
        );
    }
}

fn abandoned_cart() -> Policy {
    Policy {
        name: "abandoned_cart".into(),
        stop_on: vec!["opened".into(), "clicked".into(), "read".into()],
        steps: vec![
            step(&["email"], Some(24 * 60)),
            step(&["telegram", "whatsapp", "vk"], None),
        ],
        expire_after_ms: None,
        ..delivery_delay()
    }
}

#[test]
fn alternatives_follow_the_customer_preferences() {
    let mut r = everyone();
    r.preferences = vec!["vk".into(), "whatsapp".into()];
    let mut h = H::new(abandoned_cart(), r, ms(T0));
    h.start(None, None);
    h.sent();
    h.wake();
    assert_eq!(h.now, ms(T0) + 24 * HOUR);
    assert_eq!(h.pending.as_ref().unwrap().channel, "vk");

    // Without preferences: the policy's order, first reachable.
    let mut r = everyone();
    r.contacts.remove("telegram");
    let mut h = H::new(abandoned_cart(), r, ms(T0));
    h.start(None, None);
    h.sent();
    h.wake();
    assert_eq!(h.pending.as_ref().unwrap().channel, "whatsapp");
}

#[test]
fn a_stopping_receipt_ends_the_cascade_at_any_step() {
    let mut p = delivery_delay();
    p.steps = vec![
        step(&["email"], Some(60)),
        step(&["vk"], Some(60)),
        step(&["sms"], None),
    ];
    let mut h = H::new(p, everyone(), ms(T0));
    h.start(None, None);
    h.sent();
    h.wake();
    h.sent();
    h.receipt("read", h.now + 10 * MIN);
    assert_eq!(
        h.outcome(),
        Some(&Outcome::Completed {
            event: "read".into()
        })
    );
    assert_eq!(h.channels_sent(), ["email", "vk"]);
    // A later timer does nothing.
    h.now += 10 * HOUR;
    h.event(Event::TimerDue);
    assert_eq!(h.channels_sent(), ["email", "vk"]);
}

#[test]
fn a_permanent_error_escalates_at_once() {
    let mut h = H::new(delivery_delay(), everyone(), ms(T0));
    h.start(None, None);
    h.reply(SendOutcome::Permanent {
        reason: "vk 901: no permission".into(),
    });
    let o = h.pending.as_ref().unwrap();
    assert_eq!((o.step, o.channel.as_str()), (1, "sms"));
    assert_eq!(h.sends[1].0, ms(T0));
}

#[test]
fn a_permanent_error_tries_the_next_alternative_first() {
    let mut h = H::new(abandoned_cart(), everyone(), ms(T0));
    h.start(None, None);
    h.sent();
    h.wake();
    assert_eq!(h.pending.as_ref().unwrap().channel, "telegram");
    h.reply(SendOutcome::Permanent {
        reason: "bot was blocked by the user".into(),
    });
    assert_eq!(h.pending.as_ref().unwrap().channel, "whatsapp");
}

#[test]
fn a_failed_receipt_escalates_at_once_and_only_once() {
    let mut p = delivery_delay();
    p.steps = vec![
        step(&["vk"], Some(30)),
        step(&["sms"], Some(60)),
        step(&["email"], None),
    ];
    let mut h = H::new(p, everyone(), ms(T0));
    h.start(None, None);
    h.sent();
    h.receipt("failed", ms(T0) + MIN);
    assert_eq!(h.pending.as_ref().unwrap().channel, "sms");
    h.sent();
    // The same failed receipt, seen again, does not skip the SMS's wait.
    h.event(Event::ReceiptsChanged);
    assert!(h.pending.is_none());
    assert_eq!(h.state().wake_at_ms(), Some(ms(T0) + MIN + HOUR));
}

#[test]
fn a_failed_receipt_seen_by_the_due_timer_orders_one_clean_send() {
    // `failed` recorded at the very instant the VK wait runs out, and first
    // seen by that wake-up: the SMS goes out, and the same timer does not
    // also take the SMS for an interrupted send.
    let mut h = H::new(delivery_delay(), everyone(), ms(T0));
    h.start(None, None);
    h.sent();
    h.now = ms(T0) + 30 * MIN;
    h.receipts.insert("failed".into(), h.now);
    h.event(Event::TimerDue);
    assert_eq!(h.pending.as_ref().unwrap().channel, "sms");
    assert!(matches!(h.state().phase, Phase::InFlight { .. }));
    assert!(!h.events().contains(&"uncertain"), "{:?}", h.events());
}

#[test]
fn transient_errors_retry_with_backoff_then_escalate() {
    let mut h = H::new(delivery_delay(), everyone(), ms(T0));
    h.start(None, None);
    h.reply(SendOutcome::Transient {
        reason: "502".into(),
        retry_after_ms: None,
    });
    let due = h.state().wake_at_ms().unwrap();
    assert!((ms(T0) + 500..=ms(T0) + 1_000).contains(&due), "{due}");
    h.wake();
    assert_eq!(h.pending.as_ref().unwrap().attempt, 2);
    h.reply(SendOutcome::RateLimited {
        retry_after_ms: 5_000,
    });
    assert!(
        h.state().wake_at_ms().unwrap() >= h.now + 5_000,
        "retry_after is honoured"
    );
    h.wake();
    assert_eq!(h.pending.as_ref().unwrap().attempt, 3);
    h.reply(SendOutcome::Transient {
        reason: "timeout".into(),
        retry_after_ms: None,
    });
    // Three attempts used: escalate to SMS now.
    let o = h.pending.as_ref().unwrap();
    assert_eq!((o.channel.as_str(), o.attempt), ("sms", 1));
}

#[test]
fn a_retry_that_succeeds_continues_normally() {
    let mut h = H::new(delivery_delay(), everyone(), ms(T0));
    h.start(None, None);
    h.reply(SendOutcome::Transient {
        reason: "503".into(),
        retry_after_ms: None,
    });
    h.wake();
    h.sent();
    let sent_at = h.now;
    assert_eq!(h.state().wake_at_ms(), Some(sent_at + 30 * MIN));
}

#[test]
fn send_at_delays_the_first_step() {
    let mut h = H::new(delivery_delay(), everyone(), ms(T0));
    h.start(Some(ms(T0) + 2 * HOUR), None);
    assert!(h.pending.is_none());
    h.wake();
    assert_eq!(h.sends[0].0, ms(T0) + 2 * HOUR);
}

#[test]
fn expiry_ends_an_unread_cascade() {
    let mut p = delivery_delay();
    p.steps[0].wait_ms = Some(20 * HOUR);
    let mut h = H::new(p, everyone(), ms(T0));
    h.start(None, Some(ms(T0) + 3 * HOUR));
    h.sent();
    h.wake();
    assert_eq!(h.now, ms(T0) + 3 * HOUR);
    assert_eq!(h.outcome(), Some(&Outcome::Expired));
    assert_eq!(h.channels_sent(), ["vk"]);

    // expire_after from the policy when the notification names none.
    let mut p = delivery_delay();
    p.steps[0].wait_ms = Some(20 * HOUR);
    let mut h = H::new(p, everyone(), ms(T0));
    h.start(None, None);
    h.sent();
    h.wake();
    assert_eq!(h.now, ms(T0) + 12 * HOUR);
    assert_eq!(h.outcome(), Some(&Outcome::Expired));
}

#[test]
fn a_failed_receipt_at_expiry_does_not_exhaust_it() {
    // The last step's `failed` receipt is first seen by the wake-up at the
    // expiry instant: the cascade has expired, as it would have without the
    // receipt; there is no next step to escalate to, and no time for one.
    let mut p = delivery_delay();
    p.steps = vec![step(&["vk"], Some(20 * 60))];
    let mut h = H::new(p, everyone(), ms(T0));
    h.start(None, None);
    h.sent();
    h.receipts.insert("failed".into(), ms(T0) + HOUR);
    h.wake();
    assert_eq!(h.now, ms(T0) + 12 * HOUR);
    assert_eq!(h.outcome(), Some(&Outcome::Expired));
}

#[test]
fn quiet_hours_hold_a_night_sms_until_morning() {
    let mut p = delivery_delay();
    p.expire_after_ms = None;
    p.quiet_hours
        .insert("sms".into(), QuietHours::parse("21:00-09:00").unwrap());
    // VK at 20:50 Moscow; its 30-minute wall wait ends at 21:20, inside quiet hours.
    let mut h = H::new(p, everyone(), ms("2026-11-23T17:50:00Z"));
    h.start(None, None);
    h.sent();
    h.wake();
    assert!(h.pending.is_none());
    let deferred = h
        .log
        .iter()
        .find(|e| e.event == EntryKind::Deferred)
        .unwrap();
    assert_eq!(deferred.reason.as_deref(), Some("quiet_hours"));
    h.wake();
    assert_eq!(h.now, ms("2026-11-24T06:00:00Z"), "09:00 Moscow");
    assert_eq!(h.pending.as_ref().unwrap().channel, "sms");
}

#[test]
fn the_awake_wait_clock_gives_thirty_waking_minutes() {
    let mut p = delivery_delay();
    p.expire_after_ms = None;
    p.quiet_hours
        .insert("sms".into(), QuietHours::parse("21:00-09:00").unwrap());
    p.steps[0].wait_clock = WaitClock::Awake;
    let mut h = H::new(p, everyone(), ms("2026-11-23T17:50:00Z"));
    h.start(None, None);
    h.sent();
    h.wake();
    assert_eq!(h.now, ms("2026-11-24T06:20:00Z"), "09:20 Moscow");
    assert_eq!(h.pending.as_ref().unwrap().channel, "sms");
}

#[test]
fn quiet_hours_follow_the_customer_time_zone_across_dst() {
    let mut p = delivery_delay();
    p.steps = vec![step(&["sms"], None)];
    p.quiet_hours
        .insert("sms".into(), QuietHours::parse("22:00-08:00").unwrap());
    p.expire_after_ms = None;
    let mut r = everyone();
    r.tz = TimeZone::get("Europe/Berlin").unwrap();
    // 00:30 CET on the night clocks go back: 08:00 CET is 07:00Z.
    let mut h = H::new(p, r, ms("2026-10-24T22:30:00Z"));
    h.start(None, None);
    h.wake();
    assert_eq!(h.sends[0].0, ms("2026-10-25T07:00:00Z"));
}

#[test]
fn a_limit_defers_the_step_and_never_drops_it() {
    let mut h = H::new(delivery_delay(), everyone(), ms(T0));
    h.start(None, None);
    h.sent();
    h.wake();
    let until = h.now + 3 * HOUR;
    h.event(Event::LimitBlocked {
        step: 1,
        channel: "sms".into(),
        not_before_ms: until,
    });
    assert_eq!(h.state().wake_at_ms(), Some(until));
    h.wake();
    assert_eq!(h.pending.as_ref().unwrap().channel, "sms");
    assert_eq!(h.now, until);
}

#[test]
fn on_limit_next_moves_on_at_once() {
    let mut p = delivery_delay();
    p.steps = vec![step(&["vk"], Some(30)), step(&["email"], None)];
    p.steps[0].on_limit = OnLimit::Next;
    let mut h = H::new(p, everyone(), ms(T0));
    h.start(None, None);
    h.event(Event::LimitBlocked {
        step: 0,
        channel: "vk".into(),
        not_before_ms: ms(T0) + 10 * HOUR,
    });
    assert_eq!(h.pending.as_ref().unwrap().channel, "email");
    assert_eq!(h.sends[1].0, ms(T0));
}

#[test]
fn a_throttled_send_waits_even_where_a_limit_would_move_on() {
    let mut p = delivery_delay();
    p.steps = vec![step(&["vk"], Some(30)), step(&["email"], None)];
    p.steps[0].on_limit = OnLimit::Next;
    let mut h = H::new(p, everyone(), ms(T0));
    h.start(None, None);
    let until = ms(T0) + 2_000;
    h.event(Event::Throttled {
        step: 0,
        channel: "vk".into(),
        not_before_ms: until,
    });
    assert_eq!(h.state().wake_at_ms(), Some(until));
    assert_eq!(h.state().failures, 0, "our own rate is not a failure");
    h.wake();
    assert_eq!(h.pending.as_ref().unwrap().channel, "vk");
    assert_eq!(h.now, until);
}

#[test]
fn an_ambiguous_send_is_resent_only_where_the_provider_dedupes() {
    // VK dedupes by random_id: retry.
    let mut h = H::new(delivery_delay(), everyone(), ms(T0));
    h.start(None, None);
    h.reply(SendOutcome::Ambiguous {
        reason: "timeout after write".into(),
    });
    h.wake();
    assert_eq!(h.pending.as_ref().unwrap().channel, "vk");
    // SMS does not: recorded as uncertain, and the cascade moves on by its timer.
    let mut p = delivery_delay();
    p.steps = vec![step(&["sms"], Some(30)), step(&["email"], None)];
    let mut h = H::new(p, everyone(), ms(T0));
    h.start(None, None);
    h.reply(SendOutcome::Ambiguous {
        reason: "timeout after write".into(),
    });
    assert!(h.pending.is_none());
    assert!(h.events().contains(&"uncertain"));
    h.wake();
    assert_eq!(h.now, ms(T0) + 30 * MIN);
    assert_eq!(h.pending.as_ref().unwrap().channel, "email");
    assert_eq!(
        h.sends.iter().filter(|(_, o)| o.channel == "sms").count(),
        1
    );
}

#[test]
fn an_interrupted_send_follows_the_same_rule() {
    let mut p = delivery_delay();
    p.steps = vec![step(&["sms"], Some(30)), step(&["email"], None)];
    let mut h = H::new(p, everyone(), ms(T0));
    h.start(None, None);
    h.pending = None; // the instance died before the outcome was known
    h.wake();
    assert_eq!(h.now, ms(T0) + h.timing.in_flight_timeout_ms);
    assert!(h.events().contains(&"uncertain"));
}

#[test]
fn a_lapsed_claim_makes_the_send_it_orders_uncertain() {
    // SMS does not dedupe (`skip`): the SMS the dead instance may have sent
    // is not sent again; the cascade waits on it as if it had gone out.
    let mut h = H::new(delivery_delay(), everyone(), ms(T0));
    h.start(None, None);
    h.sent();
    let claimed_at_ms = h.now + 30 * MIN;
    h.now = claimed_at_ms + 30_000;
    h.event(Event::ClaimLapsed { claimed_at_ms });
    assert!(h.pending.is_none(), "nothing is sent again");
    let events = h.events();
    assert_eq!(
        events[events.len() - 3..],
        ["escalated", "uncertain", "exhausted"]
    );
    assert_eq!(h.outcome(), Some(&Outcome::Exhausted));
    // VK dedupes by random_id (`resend`): tried again after the backoff, as
    // the second attempt.
    let mut h = H::new(delivery_delay(), everyone(), ms(T0));
    h.accept();
    let claimed_at_ms = h.now;
    h.now += 30_000;
    h.event(Event::ClaimLapsed { claimed_at_ms });
    assert!(h.pending.is_none());
    assert!(matches!(h.state().phase, Phase::Due { .. }));
    h.wake();
    let order = h.pending.clone().expect("resent after the backoff");
    assert_eq!((order.channel.as_str(), order.attempt), ("vk", 2));
}

#[test]
fn a_lapsed_claim_that_orders_no_send_is_a_plain_wake_up() {
    let mut h = H::new(delivery_delay(), everyone(), ms(T0));
    h.start(None, None);
    h.sent();
    h.receipts.insert("read".into(), ms(T0) + MIN);
    h.now += 30 * MIN;
    h.event(Event::ClaimLapsed {
        claimed_at_ms: h.now - 30_000,
    });
    assert!(matches!(h.outcome(), Some(Outcome::Completed { .. })));
    assert!(!h.events().contains(&"uncertain"));
}

#[test]
fn a_lapsed_claim_replays_the_holders_decision_at_its_claim_time() {
    // SMS quiet hours from 21:00 Moscow (18:00 UTC). The holder claimed at
    // 20:59:50, when the SMS could go out, and died: by now (21:00:25) it is
    // quiet, but the SMS may have gone, so it is not sent again at 09:00.
    let mut p = delivery_delay();
    p.quiet_hours
        .insert("sms".into(), QuietHours::parse("21:00-09:00").unwrap());
    let sent_vk = ms("2026-11-23T17:29:50Z");
    let mut h = H::new(p, everyone(), sent_vk);
    h.start(None, None);
    h.sent();
    let claimed_at_ms = ms("2026-11-23T17:59:50Z");
    h.now = ms("2026-11-23T18:00:25Z");
    h.event(Event::ClaimLapsed { claimed_at_ms });
    assert!(h.pending.is_none());
    let events = h.events();
    assert_eq!(
        events[events.len() - 3..],
        ["escalated", "uncertain", "exhausted"],
        "{events:?}"
    );
    // The other way round: the holder's claim was early (nothing to send
    // then); the wait ran out since. Nothing was sent: send now.
    let mut h = H::new(delivery_delay(), everyone(), ms(T0));
    h.start(None, None);
    h.sent();
    let due = h.state().wake_at_ms().unwrap();
    h.now = due + 10_000;
    h.event(Event::ClaimLapsed {
        claimed_at_ms: due - 20_000,
    });
    assert_eq!(h.pending.as_ref().map(|o| o.channel.as_str()), Some("sms"));
    assert!(!h.events().contains(&"uncertain"));
}

#[test]
fn cancelled_ends_it_whatever_stop_on_says() {
    let mut h = H::new(delivery_delay(), everyone(), ms(T0));
    h.start(None, None);
    h.sent();
    h.receipt("cancelled", ms(T0) + MIN);
    assert_eq!(h.outcome(), Some(&Outcome::Cancelled));
    // A non-stopping receipt does nothing.
    let mut h = H::new(delivery_delay(), everyone(), ms(T0));
    h.start(None, None);
    h.sent();
    h.receipt("delivered", ms(T0) + MIN);
    assert!(!h.state().is_done());
}

#[test]
fn a_send_in_flight_when_a_read_arrives_is_still_recorded() {
    let mut h = H::new(delivery_delay(), everyone(), ms(T0));
    h.start(None, None);
    h.receipts.insert("read".into(), ms(T0));
    h.sent();
    assert_eq!(h.channels_sent(), ["vk"]);
    assert!(h.state().is_done());
}

#[test]
fn transitions_are_bounded() {
    // A limit that always says "a minute from now" defers the VK step for
    // ever: no expiry, no receipt and no failure count ends the cascade.
    // Only the bound on transitions does.
    let mut p = delivery_delay();
    p.expire_after_ms = None;
    let mut h = H::new(p, everyone(), ms(T0));
    h.timing.max_transitions = 5;
    h.start(None, None);
    for _ in 0..100 {
        let Some(order) = h.pending.take() else {
            break;
        };
        h.event(Event::LimitBlocked {
            step: order.step,
            channel: order.channel,
            not_before_ms: h.now + MIN,
        });
        if h.state().is_done() {
            break;
        }
        h.wake();
    }
    assert!(h.state().is_done(), "{:?}", h.events());
    assert_eq!(h.outcome(), Some(&Outcome::Exhausted));
    assert_eq!(
        h.log.last().unwrap().reason.as_deref(),
        Some("transition_limit")
    );
    assert!(h.state().transitions <= 6, "{}", h.state().transitions);
}

#[test]
fn state_serialises_compactly() {
    let mut h = H::new(delivery_delay(), everyone(), ms(T0));
    h.start(None, None);
    h.sent();
    let json = serde_json::to_string(h.state()).unwrap();
    assert!(json.len() < 120, "{} bytes: {json}", json.len());
    let back: Cascade = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, h.state());
}

#[test]
fn an_early_wake_up_still_applies_receipts() {
    // The daemon wakes a cascade early when a receipt is recorded.
    let mut h = H::new(delivery_delay(), everyone(), ms(T0));
    h.start(None, None);
    h.sent();
    h.now += 5 * MIN;
    h.receipts.insert("read".into(), h.now);
    h.event(Event::TimerDue);
    assert_eq!(
        h.outcome(),
        Some(&Outcome::Completed {
            event: "read".into()
        })
    );

    let mut h = H::new(delivery_delay(), everyone(), ms(T0));
    h.start(None, None);
    h.sent();
    h.now += 5 * MIN;
    h.receipts.insert("failed".into(), h.now);
    h.event(Event::TimerDue);
    assert_eq!(h.pending.as_ref().unwrap().channel, "sms");
}

// ---------------------------------------------------------------------------
// Hostile times: `send_at`, `expires_at`, receipt times and provider delays
// come from outside; config durations may be absurd. No arithmetic on them
// may overflow (tests run with overflow checks, so an overflow panics here),
// and a provider's delay never reaches past the channel's `max_backoff`.
// ---------------------------------------------------------------------------

/// The year 9999, the last instant RFC 3339 can name.
const YEAR_9999_MS: i64 = 253_402_300_799_999;

/// A policy that uses every timed feature at once: waits, the awake clock,
/// quiet hours, expiry.
fn every_clock(wait_ms: i64, expire_after_ms: i64) -> Policy {
    let mut p = delivery_delay();
    p.expire_after_ms = Some(expire_after_ms);
    p.steps[0].wait_ms = Some(wait_ms);
    p.steps[0].wait_clock = WaitClock::Awake;
    p.quiet_hours
        .insert("sms".into(), QuietHours::parse("21:00-09:00").unwrap());
    p
}

#[test]
fn a_huge_retry_after_is_capped_by_max_backoff() {
    // `Retry-After: 99999999999` (seconds), Telegram's `retry_after` of
    // i64::MAX, and a negative one: at most `max_backoff` (10 s), never
    // before now.
    for retry_after_ms in [99_999_999_999_000, i64::MAX, -1, i64::MIN] {
        for outcome in [
            SendOutcome::RateLimited { retry_after_ms },
            SendOutcome::Transient {
                reason: "503".into(),
                retry_after_ms: Some(retry_after_ms),
            },
        ] {
            let mut h = H::new(delivery_delay(), everyone(), ms(T0));
            h.start(None, None);
            h.reply(outcome.clone());
            let due = h.state().wake_at_ms().unwrap();
            assert!(
                (h.now..=h.now + 10_000).contains(&due),
                "{outcome:?}: due {} ms from now",
                due - h.now
            );
            let failed = h.log.last().unwrap();
            assert_eq!(failed.event, EntryKind::SendFailed);
            assert_eq!(failed.until_ms, Some(due));
        }
    }
    // Within the cap, the provider's delay is honoured.
    let mut h = H::new(delivery_delay(), everyone(), ms(T0));
    h.start(None, None);
    h.reply(SendOutcome::RateLimited {
        retry_after_ms: 9_000,
    });
    assert!(h.state().wake_at_ms().unwrap() >= h.now + 9_000);
}

#[test]
fn retry_after_caps_at_max_backoff_and_never_goes_negative() {
    let p = RetryPolicy {
        attempts: 3,
        backoff_ms: 1_000,
        max_backoff_ms: 300_000,
    };
    assert_eq!(p.cap_retry_after(3_000), 3_000);
    assert_eq!(p.cap_retry_after(99_999_999_999_000), 300_000);
    assert_eq!(p.cap_retry_after(i64::MAX), 300_000);
    assert_eq!(p.cap_retry_after(-5_000), 0);
    assert_eq!(p.cap_retry_after(i64::MIN), 0);
    let broken = RetryPolicy {
        max_backoff_ms: -1,
        ..p
    };
    assert_eq!(broken.cap_retry_after(i64::MAX), 0);
}

#[test]
fn backoff_and_rates_saturate_at_absurd_durations() {
    let p = RetryPolicy {
        attempts: 50,
        backoff_ms: i64::MAX,
        max_backoff_ms: i64::MAX,
    };
    for failures in [0, 1, 31, 255] {
        for seed in [0, 1, u64::MAX] {
            let b = p.backoff(failures, seed);
            assert!(b >= i64::MAX / 2, "{failures} {seed}: {b}");
        }
    }
    let rate = Rate {
        count: 1,
        per_ms: i64::MAX,
    };
    assert_eq!(rate.not_before(&[i64::MAX - 1], i64::MAX), Some(i64::MAX));
    assert_eq!(rate.not_before(&[i64::MIN + 1], i64::MIN + 1), Some(0));
    assert_eq!(rate.not_before(&[], i64::MIN), None);
}

#[test]
fn times_at_the_ends_of_the_range_never_overflow() {
    for now in [i64::MIN + 1, -YEAR_9999_MS, 0, YEAR_9999_MS, i64::MAX - 1] {
        for (wait, expire) in [(30 * MIN, 12 * HOUR), (i64::MAX, i64::MAX)] {
            for send_at in [None, Some(i64::MIN), Some(YEAR_9999_MS), Some(i64::MAX)] {
                let mut h = H::new(every_clock(wait, expire), everyone(), now);
                h.timing.in_flight_timeout_ms = i64::MAX;
                h.timing.late_read_window_ms = i64::MAX;
                h.start(send_at, Some(i64::MAX));
                // Drive it as far as it goes: sent, rate-limited, woken, read.
                for _ in 0..6 {
                    if h.pending.is_some() {
                        h.reply(SendOutcome::RateLimited {
                            retry_after_ms: i64::MAX,
                        });
                    }
                    if h.state().wake_at_ms().is_none() {
                        break;
                    }
                    h.wake();
                    if h.pending.is_some() {
                        h.sent();
                    }
                }
                let at = h.now;
                h.receipt("read", at);
                h.receipt("read", i64::MAX);
                assert!(h.outcome().is_some(), "a read ends it: {:?}", h.state());
            }
        }
    }
}

#[test]
fn awake_deadlines_saturate() {
    let q = QuietHours::parse("21:00-09:00").unwrap();
    let tz = TimeZone::get("Europe/Moscow").unwrap();
    for from in [i64::MIN, -YEAR_9999_MS, 0, ms(T0), YEAR_9999_MS, i64::MAX] {
        for wait in [0, 1, 30 * MIN, i64::MAX] {
            let due = q.awake_deadline(from, wait, &tz);
            assert!(due >= from, "{from} + {wait} → {due}");
        }
        assert!(q.next_open(from, &tz) >= from);
    }
}

mod hostile_times {
    use proptest::prelude::*;

    use super::*;

    /// Any i64, often close to either end, where sums overflow.
    fn instant() -> impl Strategy<Value = i64> {
        prop_oneof![
            any::<i64>(),
            (i64::MAX - MIN)..=i64::MAX,
            i64::MIN..=(i64::MIN + MIN),
            -YEAR_9999_MS..=YEAR_9999_MS,
        ]
    }

    proptest! {
        /// Whatever a provider says, a retry is due within `max_backoff`
        /// of now (and not before now).
        #[test]
        fn a_retry_is_due_within_max_backoff(
            now in -YEAR_9999_MS..=YEAR_9999_MS,
            retry_after_ms in prop_oneof![any::<i64>(), 0..=3_600_000_i64],
            max_backoff_ms in prop_oneof![1..=i64::MAX, 1..=600_000_i64],
            rate_limited in any::<bool>(),
        ) {
            // No expiry, so the wake-up is the retry's own.
            let mut policy = delivery_delay();
            policy.expire_after_ms = None;
            let mut h = H::new(policy, everyone(), now);
            for rules in h.channels.values_mut() {
                rules.retry.max_backoff_ms = max_backoff_ms;
            }
            h.start(None, None);
            h.reply(if rate_limited {
                SendOutcome::RateLimited { retry_after_ms }
            } else {
                SendOutcome::Transient { reason: "503".into(), retry_after_ms: Some(retry_after_ms) }
            });
            let due = h.state().wake_at_ms().unwrap();
            prop_assert!(due >= now);
            prop_assert!(due <= now.saturating_add(max_backoff_ms), "{} past the cap", due - now);
        }

        /// Any instant, delay and duration: accepting, waking and answering
        /// a cascade never overflows (an overflow panics in tests).
        #[test]
        fn no_time_overflows(
            now in instant(),
            send_at in proptest::option::of(instant()),
            expires_at in proptest::option::of(instant()),
            wait in instant(),
            expire_after in instant(),
            retry_after_ms in instant(),
            in_flight in instant(),
        ) {
            let mut h = H::new(every_clock(wait.max(0), expire_after.max(0)), everyone(), now);
            h.timing.in_flight_timeout_ms = in_flight.max(0);
            h.start(send_at, expires_at);
            for _ in 0..4 {
                if h.pending.is_some() {
                    h.reply(SendOutcome::RateLimited { retry_after_ms });
                }
                if h.state().wake_at_ms().is_none() {
                    break;
                }
                h.wake();
            }
            let at = h.now;
            h.receipt("read", at);
        }
    }
}

/// `policies/order_call.toml` as the core sees it: email; a call; on
/// `called` a confirmation (`final`), on `no_answer` or when the call's
/// wait ends, a chat.
fn order_call() -> Policy {
    let named = |name: &str, s: Step| Step {
        name: Some(name.into()),
        ..s
    };
    Policy {
        name: "order_call".into(),
        description: String::new(),
        stop_on: vec!["opened".into(), "clicked".into(), "read".into()],
        expire_after_ms: None,
        steps: vec![
            step(&["email"], Some(120)),
            Step {
                on: [("called".into(), 2), ("no_answer".into(), 3)].into(),
                next: Some(3),
                ..named("call", step(&["call_centre"], Some(240)))
            },
            Step {
                is_final: true,
                ..named("confirm", step(&["telegram", "whatsapp", "sms"], None))
            },
            named("open_chat", step(&["whatsapp", "telegram"], None)),
        ],
        limits: Limits::default(),
        quiet_hours: BTreeMap::new(),
        quiet_off: Default::default(),
        answer: None,
        awake_hours: None,
    }
}

/// Email sent and unopened, the call sent: the cascade waits on step 1.
fn at_the_call() -> H {
    let mut h = H::new(order_call(), everyone(), ms("2026-03-10T10:00:00Z"));
    h.start(None, None);
    h.sent();
    h.wake();
    h.sent();
    assert_eq!(h.channels_sent(), ["email", "call_centre"]);
    h
}

#[test]
fn a_branch_word_moves_to_its_step_at_once_and_a_final_step_completes() {
    let mut h = at_the_call();
    let at = h.now + 30 * MIN;
    h.receipt("called", at);
    let left = h.log.iter().rev().find(|e| e.event == EntryKind::Escalated);
    assert_eq!(left.unwrap().step, Some(1), "noted on the step left");
    assert_eq!(left.unwrap().reason.as_deref(), Some("on called"));
    assert_eq!(h.pending.as_ref().unwrap().step, 2, "due at once");
    h.sent();
    assert_eq!(h.channels_sent(), ["email", "call_centre", "telegram"]);
    assert_eq!(
        h.state().outcome(),
        Some(&Outcome::Completed {
            event: "called".into()
        })
    );
}

#[test]
fn another_branch_word_leads_elsewhere() {
    let mut h = at_the_call();
    let at = h.now + MIN;
    h.receipt("no_answer", at);
    h.sent();
    assert_eq!(h.channels_sent(), ["email", "call_centre", "whatsapp"]);
    assert_eq!(h.state().outcome(), Some(&Outcome::Exhausted));
}

#[test]
fn the_wait_s_end_follows_next_and_a_plain_fall_through_skips_branch_targets() {
    let mut h = at_the_call();
    h.wake();
    let e = h.log.iter().rev().find(|e| e.event == EntryKind::Escalated);
    assert_eq!(e.unwrap().step, Some(3));
    h.sent();
    assert_eq!(h.channels_sent(), ["email", "call_centre", "whatsapp"]);
    // Without `next`, the call's wait falls through past the steps its
    // branches target: none is left, so the wait's end exhausts it.
    let mut p = order_call();
    p.steps[1].next = None;
    assert_eq!(p.after_wait(1), None);
    assert_eq!(p.after_wait(0), Some(1));
    p.steps[1].on.remove("no_answer");
    assert_eq!(p.after_wait(1), Some(3), "past `confirm` only");
}

#[test]
fn a_final_step_reached_without_a_branch_ends_exhausted() {
    let mut p = order_call();
    p.steps[1].on.clear();
    p.steps[1].next = Some(2);
    let mut h = H::new(p, everyone(), ms("2026-03-10T10:00:00Z"));
    h.start(None, None);
    h.sent();
    h.wake();
    h.sent();
    h.wake();
    h.sent();
    assert_eq!(h.channels_sent(), ["email", "call_centre", "telegram"]);
    assert_eq!(h.state().outcome(), Some(&Outcome::Exhausted));
    assert!(h.state().wake_at_ms().is_none());
}

#[test]
fn a_branch_word_before_the_step_went_out_does_not_branch() {
    let mut h = H::new(order_call(), everyone(), ms("2026-03-10T10:00:00Z"));
    h.start(None, None);
    h.sent();
    let at = h.now + MIN;
    h.receipt("called", at);
    h.wake();
    h.sent();
    assert_eq!(h.channels_sent(), ["email", "call_centre"]);
    assert!(!h.state().is_done(), "waits on the call");
}

#[test]
fn a_stop_word_a_step_branches_on_branches_there_and_stops_elsewhere() {
    let mut p = order_call();
    p.steps[1].on = [("read".into(), 3)].into();
    p.steps[3].wait_ms = Some(HOUR);
    let mut h = H::new(p, everyone(), ms("2026-03-10T10:00:00Z"));
    h.start(None, None);
    h.sent();
    h.wake();
    h.sent();
    let at = h.now + MIN;
    h.receipt("read", at);
    // The read that branched is spent: it does not stop the chat.
    h.sent();
    assert_eq!(h.channels_sent(), ["email", "call_centre", "whatsapp"]);
    assert!(!h.state().is_done());
    // A later read stops it as `stop_on` says.
    let at = h.now + MIN;
    h.receipt("read", at);
    assert_eq!(
        h.state().outcome(),
        Some(&Outcome::Completed {
            event: "read".into()
        })
    );
    assert!(!order_call().stopping_receipts().contains(&"called"));
    let p = &h.policy;
    assert_eq!(p.stopping_receipts(), ["cancelled", "opened", "clicked"]);
    assert!(p.waking_receipts().contains(&"read"));
}

#[test]
fn cancelled_beats_a_branch() {
    let mut h = at_the_call();
    let at = h.now + MIN;
    h.receipts.insert("called".into(), at);
    h.receipt("cancelled", at);
    assert_eq!(h.state().outcome(), Some(&Outcome::Cancelled));
}

#[test]
fn branch_moves_count_against_the_transition_limit() {
    // Two steps that branch to each other on one word, recorded afresh.
    let mut p = order_call();
    p.steps[1].on = [("called".into(), 3)].into();
    p.steps[3].on = [("called".into(), 1)].into();
    p.steps[3].wait_ms = Some(HOUR);
    p.steps[0].next = Some(1);
    let mut h = H::new(p, everyone(), ms("2026-03-10T10:00:00Z"));
    h.timing.max_transitions = 12;
    h.start(None, None);
    h.sent();
    h.wake();
    h.sent();
    assert_eq!(h.channels_sent(), ["email", "call_centre"]);
    // The move counts on its own, besides the decision that made it.
    let before = h.state().transitions;
    let at = h.now + MIN;
    h.receipt("called", at);
    assert_eq!(h.state().transitions, before + 2);
    h.sent();
    for _ in 0..20 {
        if h.state().is_done() {
            break;
        }
        let at = h.now + MIN;
        h.receipt("called", at);
        if h.pending.is_some() {
            h.sent();
        }
    }
    assert_eq!(h.state().outcome(), Some(&Outcome::Exhausted));
    assert!(h.state().transitions <= 13, "{}", h.state().transitions);
}

#[test]
fn a_policy_without_branches_serialises_as_before() {
    // What the store keys policy snapshots by: unchanged for a policy that
    // names no branch, so running cascades keep their snapshot.
    let json = serde_json::to_string(&delivery_delay()).unwrap();
    assert_eq!(
        json,
        r#"{"name":"delivery_delay","stop_on":["read"],"expire_after_ms":43200000,"steps":[{"channels":["vk"],"wait_ms":1800000,"wait_clock":"wall","on_limit":"defer"},{"channels":["sms"],"wait_clock":"wall","on_limit":"defer"}],"limits":{},"quiet_hours":{}}"#
    );
    let back: Policy = serde_json::from_str(&json).unwrap();
    assert_eq!(back, delivery_delay());
    let branching = serde_json::to_string(&order_call()).unwrap();
    assert_eq!(
        serde_json::from_str::<Policy>(&branching).unwrap(),
        order_call()
    );
}

#[test]
fn a_step_text_is_kept_in_the_snapshot_only_when_given() {
    let mut p = order_call();
    p.steps[2].text = Some("Agreed: {{data.slot}}".into());
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(json.matches("\"text\"").count(), 1, "{json}");
    assert!(!json.contains("\"subject\""), "{json}");
    assert_eq!(serde_json::from_str::<Policy>(&json).unwrap(), p);
}
