//! Property tests over random policies, customers, receipt times, provider
//! answers and limit verdicts. Minutes and days pass through `now` only.
//! Quiet hours, the awake wait clock, expiry and the limit window are judged
//! by `super::reference`, a slow model that shares no code with the core.
//!
//! `cascades_keep_their_invariants`, checked at every decision:
//! - never a send after a stopping receipt is recorded, and any decision made
//!   with one recorded ends the cascade;
//! - never the same step sent twice on one channel (a step moves to its next
//!   alternative only after the previous one failed);
//! - never a send inside the channel's quiet hours, and a step held by quiet
//!   hours is due again at the first open minute;
//! - never a send at or after expiry, and any decision made then ends it;
//! - a step deferred by a limit is tried again, not before the limit's
//!   `not_before`, unless the cascade ends through expiry, a stopping receipt
//!   or cancellation first;
//! - an unread step escalates no sooner than its wait has passed;
//! - every cascade ends, without hitting the transition bound, and only for a
//!   reason it has earned: `completed` or `cancelled` with that receipt
//!   recorded, `expired` at or after expiry, `exhausted` once every step has
//!   been tried;
//! - a send in flight when the cascade ends is still recorded when it goes out;
//! - all of the above also when an instance sends on its claim's lease and
//!   dies before storing anything (`Event::ClaimLapsed`), and such a send
//!   is never made again on a channel that cannot dedupe.
//!
//! `dst_schedules_match_the_reference`: cascades that start within hours of a
//! DST change, with quiet-hours edges in or beside the skipped or repeated
//! minutes, send every step and end exactly when the reference says.

use std::collections::{BTreeMap, BTreeSet};

use jiff::tz::TimeZone;
use proptest::prelude::*;

use super::reference::{self, DstChange};
use super::*;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const CHANNELS: [(&str, ChannelKind, OnUncertain); 6] = [
    ("vk", ChannelKind::Vk, OnUncertain::Resend),
    ("sms", ChannelKind::Sms, OnUncertain::Skip),
    ("email", ChannelKind::Email, OnUncertain::Skip),
    ("telegram", ChannelKind::Telegram, OnUncertain::Skip),
    ("whatsapp", ChannelKind::Whatsapp, OnUncertain::Skip),
    ("call_centre", ChannelKind::Webhook, OnUncertain::Resend),
];
pub(super) const ZONES: [&str; 6] = [
    "Europe/Moscow",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "UTC",
];
const RECEIPTS: [&str; 8] = [
    "read",
    "opened",
    "clicked",
    "replied",
    "called",
    "delivered",
    "failed",
    "cancelled",
];

fn channel_rules() -> BTreeMap<String, ChannelRules> {
    CHANNELS
        .iter()
        .map(|(name, kind, on_uncertain)| {
            let rules = ChannelRules {
                kind: *kind,
                contact_key: kind.default_contact_key().map(str::to_owned),
                retry: RetryPolicy {
                    attempts: 3,
                    backoff_ms: 5_000,
                    max_backoff_ms: 60_000,
                },
                on_uncertain: *on_uncertain,
            };
            (name.to_string(), rules)
        })
        .collect()
}

fn arb_step(last: bool) -> impl Strategy<Value = Step> {
    (
        proptest::sample::subsequence((0..CHANNELS.len()).collect::<Vec<_>>(), 1..=3),
        0i64..=48 * 60,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(chs, wait_min, no_wait, awake, next)| Step {
            channels: chs.into_iter().map(|i| CHANNELS[i].0.to_string()).collect(),
            wait_ms: if last && no_wait {
                None
            } else {
                Some(wait_min * MIN)
            },
            wait_clock: if awake {
                WaitClock::Awake
            } else {
                WaitClock::Wall
            },
            on_limit: if next { OnLimit::Next } else { OnLimit::Defer },
            ..Default::default()
        })
}

fn arb_quiet() -> impl Strategy<Value = QuietHours> {
    (0u16..1440, 1u16..1440).prop_map(|(start, len)| QuietHours {
        start_min: (start / 15) * 15,
        end_min: ((start / 15) * 15 + len.max(15) / 15 * 15) % 1440,
        quiet_days: 0,
    })
}

/// What quiet hours and limits may be keyed by: channel names and kinds.
const KEYS: [&str; 7] = [
    "vk",
    "sms",
    "email",
    "telegram",
    "whatsapp",
    "call_centre",
    "webhook",
];

fn arb_rate() -> impl Strategy<Value = Rate> {
    (1u32..=3, 1i64..=6 * 60).prop_map(|(count, per_min)| Rate {
        count,
        per_ms: per_min * MIN,
    })
}

/// Per-customer limits, the default (none) among them.
fn arb_limits() -> impl Strategy<Value = Limits> {
    (
        proptest::option::of(arb_rate()),
        proptest::collection::btree_map(
            proptest::sample::select(KEYS.to_vec()).prop_map(str::to_owned),
            arb_rate(),
            0..=2,
        ),
    )
        .prop_map(|(per_customer, per_channel)| Limits {
            per_customer,
            per_channel,
        })
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    (
        proptest::collection::vec(arb_step(false), 0..=3),
        arb_step(true),
        proptest::sample::subsequence(
            vec!["read", "opened", "clicked", "replied", "called"],
            1..=5,
        ),
        proptest::option::of(1i64..=72),
        proptest::collection::btree_map(
            proptest::sample::select(KEYS.to_vec()),
            arb_quiet(),
            0..=3,
        ),
        arb_limits(),
    )
        .prop_map(|(mut steps, last, stop_on, expire_h, quiet, limits)| {
            steps.push(last);
            Policy {
                name: "p".into(),
                description: String::new(),
                stop_on: stop_on.into_iter().map(str::to_owned).collect(),
                expire_after_ms: expire_h.map(|h| h * HOUR),
                steps,
                limits,
                quiet_hours: quiet
                    .into_iter()
                    .filter(|(_, q)| q.start_min != q.end_min)
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
                quiet_off: Default::default(),
                answer: None,
                awake_hours: None,
            }
        })
}

fn arb_recipient() -> impl Strategy<Value = Recipient> {
    let keys = vec!["vk", "sms", "email", "telegram", "whatsapp"];
    (
        proptest::sample::subsequence(keys.clone(), 0..=5),
        proptest::sample::subsequence(keys.clone(), 0..=2),
        proptest::sample::subsequence(keys, 0..=3).prop_shuffle(),
        proptest::sample::select(ZONES.to_vec()),
    )
        .prop_map(|(contacts, opt_out, prefs, zone)| Recipient {
            contacts: contacts
                .into_iter()
                .map(|k| (k.to_owned(), "x".to_owned()))
                .collect(),
            opt_out: opt_out.into_iter().map(str::to_owned).collect(),
            preferences: prefs.into_iter().map(str::to_owned).collect(),
            tz: TimeZone::get(zone).unwrap(),
        })
}

/// A 2026 DST change, and an instant within six hours of it (on a minute or not).
fn arb_near_dst() -> impl Strategy<Value = (DstChange, i64)> {
    (
        proptest::sample::select(reference::DST_2026.to_vec()),
        -6 * 60i64..=6 * 60,
        prop_oneof![Just(0i64), 0..MIN],
    )
        .prop_map(|(change, minutes, ms)| (change, change.at_ms() + minutes * MIN + ms))
}

/// When a receipt is recorded.
#[derive(Clone, Copy, Debug)]
enum Arrival {
    /// This long after the start.
    After(i64),
    /// At exactly the instant of the `nth` wake-up, before its timer fires
    /// or just after it (while the send it ordered is in flight).
    OnWake { nth: usize, before_timer: bool },
    /// Between the `nth` send order and its answer.
    InFlight { nth: usize },
}

fn arb_arrival() -> impl Strategy<Value = Arrival> {
    prop_oneof![
        2 => (0i64..=96 * HOUR).prop_map(Arrival::After),
        1 => (0usize..6, any::<bool>())
            .prop_map(|(nth, before_timer)| Arrival::OnWake { nth, before_timer }),
        1 => (0usize..4).prop_map(|nth| Arrival::InFlight { nth }),
    ]
}

/// A scripted outside world: how providers answer, what limits say, and when
/// receipts arrive.
#[derive(Clone, Debug)]
struct World {
    start_ms: i64,
    /// When set, the customer lives in this change's zone and `start_ms` is
    /// within hours of it.
    dst: Option<DstChange>,
    send_at_offset_ms: Option<i64>,
    expires_offset_ms: Option<i64>,
    choices: Vec<u8>,
    receipts: Vec<(usize, Arrival)>,
}

fn arb_world() -> impl Strategy<Value = World> {
    (
        prop_oneof![
            // Any moment of 2026, so DST changes are crossed now and then...
            (1_767_225_600_000i64..1_798_761_600_000).prop_map(|t| (None, t)),
            // ...and on purpose.
            arb_near_dst().prop_map(|(change, t)| (Some(change), t)),
        ],
        proptest::option::of(0i64..=48 * HOUR),
        proptest::option::of(0i64..=96 * HOUR),
        proptest::collection::vec(any::<u8>(), 1..64),
        proptest::collection::vec((0..RECEIPTS.len(), arb_arrival()), 0..=3),
    )
        .prop_map(
            |((dst, start_ms), send_at, expires, choices, receipts)| World {
                start_ms,
                dst,
                send_at_offset_ms: send_at,
                expires_offset_ms: expires,
                choices,
                receipts,
            },
        )
}

/// What the shell's limit check and the provider say to one send.
enum Answer {
    Blocked(i64),
    Outcome(SendOutcome),
    /// The instance died mid-send: no outcome ever arrives.
    Silence,
    /// The instance sent on its claim's lease and died before storing
    /// anything: the decision is lost, and the next claim finds the lease
    /// lapsed (a send decided on a timer only; otherwise `Silence`).
    Lapsed,
}

fn answer(choice: u8, extra: u8) -> Answer {
    match choice % 20 {
        0..=2 => Answer::Blocked((extra as i64 + 1) * 17 * MIN),
        3..=4 => Answer::Outcome(SendOutcome::Transient {
            reason: "502".into(),
            retry_after_ms: None,
        }),
        5 => Answer::Outcome(SendOutcome::RateLimited {
            retry_after_ms: extra as i64 * 1_000,
        }),
        6..=7 => Answer::Outcome(SendOutcome::Permanent {
            reason: "invalid recipient".into(),
        }),
        8 => Answer::Outcome(SendOutcome::Misconfigured {
            reason: "bad token".into(),
        }),
        9 => Answer::Outcome(SendOutcome::Ambiguous {
            reason: "timeout".into(),
        }),
        10 => Answer::Silence,
        11 => Answer::Lapsed,
        _ => Answer::Outcome(SendOutcome::Sent {
            provider_message_id: Some(format!("m{extra}")),
        }),
    }
}

fn kind_of(channel: &str) -> ChannelKind {
    CHANNELS
        .iter()
        .find(|c| c.0 == channel)
        .map(|c| c.1)
        .expect("a channel of the table")
}

/// Does this receipt word end a cascade under `policy` (contract §3)?
fn stops(policy: &Policy, word: &str) -> bool {
    word == "cancelled" || policy.stop_on.iter().any(|w| w == word)
}

/// The send the core ordered, with what the test knows about it.
struct Pending {
    order: SendOrder,
    /// Ordered by the latest decision, made on a wake-up or a receipt (so
    /// on a claim): a lapsed claim can lose it.
    fresh: bool,
}

fn check_cascade(
    policy: Policy,
    mut recipient: Recipient,
    world: World,
) -> Result<(), TestCaseError> {
    if let Some(change) = world.dst {
        recipient.tz = change.tz();
    }
    let channels = channel_rules();
    let timing = Timing::default();
    let mut receipts: BTreeMap<String, i64> = BTreeMap::new();
    let mut timed: Vec<(String, i64)> = Vec::new();
    // (word, nth, before_timer) and (word, nth), as in `Arrival`.
    let mut on_wake: Vec<(String, usize, bool)> = Vec::new();
    let mut in_flight: Vec<(String, usize)> = Vec::new();
    for (i, arrival) in &world.receipts {
        let word = RECEIPTS[*i].to_owned();
        match *arrival {
            Arrival::After(off) => timed.push((word, world.start_ms + off)),
            Arrival::OnWake { nth, before_timer } => on_wake.push((word, nth, before_timer)),
            Arrival::InFlight { nth } => in_flight.push((word, nth)),
        }
    }
    timed.sort_by_key(|r| r.1);
    timed.reverse();

    let mut now = world.start_ms;
    let send_at = world.send_at_offset_ms.map(|o| world.start_ms + o);
    let expires_at = world.expires_offset_ms.map(|o| world.start_ms + o);
    let expiry = reference::expiry(world.start_ms, policy.expire_after_ms, expires_at);
    let wait_of = |step: u8| policy.steps[step as usize].wait_ms.unwrap_or(0);

    let mut decision = {
        let c = Context {
            notification_id: "prop",
            policy: &policy,
            channels: &channels,
            recipient: &recipient,
            receipts: &receipts,
            timing,
        };
        Cascade::start(now, send_at, expires_at, &c)
    };
    // Every timeline entry stored so far.
    let mut log: Vec<Entry> = Vec::new();
    let mut sent_steps: BTreeSet<(u8, String)> = BTreeSet::new();
    let mut deferred: Option<u8> = None;
    // The last limit verdict: the step and channel it blocked, and until when.
    let mut blocked: Option<(u8, String, i64)> = None;
    // Sends the shell let through, for the limit window.
    let mut sends: Vec<(String, i64)> = Vec::new();
    let mut pending: Option<Pending> = None;
    let mut turn = 0usize;
    let mut wakes = 0usize;
    let mut orders = 0usize;
    // The state and time the current decision was made on, when it was made
    // on a claimed wake-up, for `Answer::Lapsed`.
    let mut before: Option<(Cascade, i64)> = None;
    // Sends a lapsed holder may have made, on channels that cannot dedupe.
    let mut maybe_sent: BTreeSet<(u8, String)> = BTreeSet::new();

    for _ in 0..2_000 {
        let mut state = decision.cascade.clone();
        let stored = log.len();
        let mut added = Vec::new();
        for e in &decision.entries {
            log.push(e.clone());
            match e.event {
                EntryKind::Sent | EntryKind::Uncertain
                    if e.reason.as_deref() != Some("after_done") =>
                {
                    let key = (e.step.unwrap(), e.channel.clone().unwrap());
                    prop_assert!(
                        sent_steps.insert(key.clone()),
                        "{key:?} sent twice: {:?}",
                        decision.entries
                    );
                    added.push(key);
                }
                EntryKind::Deferred if e.reason.as_deref() == Some("limit") => deferred = e.step,
                EntryKind::Deferred if e.reason.as_deref() == Some("quiet_hours") => {
                    let channel = e.channel.as_deref().unwrap();
                    let q = reference::quiet_hours(&policy, channel, kind_of(channel));
                    prop_assert!(q.is_some(), "{channel} held by quiet hours it has not");
                    let q = q.unwrap();
                    prop_assert!(
                        reference::is_quiet(q, e.at_ms, &recipient.tz),
                        "{channel} held at {} outside its quiet hours {q}",
                        e.at_ms
                    );
                    let open = reference::first_open(q, e.at_ms, &recipient.tz);
                    prop_assert_eq!(
                        e.until_ms,
                        Some(open),
                        "{} held by quiet hours {} from {}: due again at the first open minute",
                        channel,
                        q,
                        e.at_ms
                    );
                }
                EntryKind::Escalated | EntryKind::Exhausted
                    if e.reason.as_deref() == Some("unread") =>
                {
                    // The step left unread is the one before an escalation,
                    // or the last one when the cascade is exhausted.
                    let left = match e.event {
                        EntryKind::Escalated => e.step.unwrap() - 1,
                        _ => e.step.unwrap(),
                    };
                    let out = log.iter().rev().find(|o| {
                        matches!(o.event, EntryKind::Sent | EntryKind::Uncertain)
                            && o.step == Some(left)
                    });
                    prop_assert!(out.is_some(), "step {left} left unread but never sent");
                    let out_ms = out.unwrap().at_ms;
                    prop_assert!(
                        e.at_ms >= out_ms + wait_of(left),
                        "step {left} out at {out_ms} left unread at {} before its wait",
                        e.at_ms
                    );
                }
                _ => {}
            }
            if e.event == EntryKind::Exhausted {
                prop_assert_ne!(e.reason.as_deref(), Some("transition_limit"));
                prop_assert!(deferred.is_none(), "deferred step {deferred:?} dropped");
            }
        }
        // A decision made with a stopping receipt recorded, or at or after
        // expiry, ends the cascade.
        if let Some(word) = receipts.keys().find(|w| stops(&policy, w)) {
            prop_assert!(state.is_done(), "still running at {now} after `{word}`");
        }
        if let Some(x) = expiry {
            prop_assert!(
                now < x || state.is_done(),
                "still running at {now}, expired at {x}"
            );
        }
        if decision.send.is_none()
            && let Some(p) = &mut pending
        {
            // Another decision was stored since the send was ordered.
            p.fresh = false;
        }
        if let Some(order) = &decision.send {
            // The invariants, at the moment the core orders a send.
            prop_assert!(
                !receipts.keys().any(|k| stops(&policy, k)),
                "send after a stopping receipt"
            );
            let key = (order.step, order.channel.clone());
            prop_assert!(
                !sent_steps.contains(&key),
                "{key:?} ordered again after it went out"
            );
            prop_assert!(
                !maybe_sent.contains(&key),
                "{key:?} ordered again after a lapsed claim may have sent it"
            );
            if let Some(q) =
                reference::quiet_hours(&policy, &order.channel, kind_of(&order.channel))
            {
                prop_assert!(
                    !reference::is_quiet(q, now, &recipient.tz),
                    "send inside quiet hours {q} at {now}"
                );
            }
            if let Some(x) = expiry {
                prop_assert!(now < x, "send at {now}, at or after expiry at {x}");
            }
            if let Some((step, channel, not_before)) = blocked.take()
                && (step, channel.as_str()) == (order.step, order.channel.as_str())
            {
                prop_assert!(
                    now >= not_before,
                    "step {step} on {channel} retried at {now}, blocked until {not_before}"
                );
            }
            if deferred == Some(order.step) {
                deferred = None;
            }
            orders += 1;
            pending = Some(Pending {
                order: order.clone(),
                fresh: before.is_some(),
            });
        }
        if state.is_done() {
            if matches!(
                state.outcome(),
                Some(Outcome::Expired | Outcome::Completed { .. } | Outcome::Cancelled)
            ) {
                deferred = None;
            }
            prop_assert!(deferred.is_none(), "deferred step {deferred:?} dropped");
            outcome_is_earned(&policy, &state, &log, &receipts, expiry)?;
            // A send in flight as the cascade ended still goes out, and is
            // still recorded.
            if let Some(Pending { order, .. }) = pending.take() {
                let c = world.choices[turn % world.choices.len()];
                let extra = world.choices[(turn + 1) % world.choices.len()];
                turn += 1;
                if let Answer::Outcome(outcome @ SendOutcome::Sent { .. }) =
                    answer(c.wrapping_add(turn as u8), extra)
                {
                    let ctx = Context {
                        notification_id: "prop",
                        policy: &policy,
                        channels: &channels,
                        recipient: &recipient,
                        receipts: &receipts,
                        timing,
                    };
                    let event = Event::SendResult {
                        step: order.step,
                        channel: order.channel.clone(),
                        outcome,
                    };
                    let after = decide(state.clone(), event, now, &ctx);
                    prop_assert_eq!(&after.cascade.phase, &state.phase);
                    prop_assert!(
                        after.entries.iter().any(|e| e.event == EntryKind::Sent
                            && e.step == Some(order.step)
                            && e.channel.as_deref() == Some(&order.channel)),
                        "the send of step {} on {} in flight at the end was not recorded",
                        order.step,
                        order.channel
                    );
                }
            }
            return Ok(());
        }
        prop_assert!(
            state.wake_at_ms().is_some(),
            "a running cascade must have a wake-up"
        );

        let mut record = |word: String, now: i64| {
            receipts.entry(word).or_insert(now);
            Event::ReceiptsChanged
        };
        let mut event = None;
        // A receipt at the instant of a wake-up whose timer has fired.
        if let Some(i) = on_wake
            .iter()
            .position(|(_, nth, before_timer)| !before_timer && *nth < wakes)
        {
            event = Some(record(on_wake.remove(i).0, now));
        }
        // A receipt while the send is in flight.
        if event.is_none()
            && pending.is_some()
            && let Some(i) = in_flight.iter().position(|(_, nth)| *nth < orders)
        {
            event = Some(record(in_flight.remove(i).0, now));
        }
        // The answer to the send: the limit check, then the provider.
        if event.is_none()
            && let Some(Pending { order, fresh }) = pending.take()
        {
            let kind = kind_of(&order.channel);
            let not_before = reference::rates(&policy)
                .into_iter()
                .filter(|(key, _)| reference::rate_covers(*key, &order.channel, kind))
                .filter_map(|(key, rate)| {
                    let earlier: Vec<i64> = sends
                        .iter()
                        .filter(|(ch, _)| reference::rate_covers(key, ch, kind_of(ch)))
                        .map(|(_, at)| *at)
                        .collect();
                    reference::limit_not_before(rate, &earlier, now)
                })
                .max();
            let c = world.choices[turn % world.choices.len()];
            let extra = world.choices[(turn + 1) % world.choices.len()];
            turn += 1;
            let verdict = match not_before {
                Some(at) => Answer::Blocked(at - now),
                None => answer(c.wrapping_add(turn as u8), extra),
            };
            if !matches!(verdict, Answer::Blocked(_)) {
                sends.push((order.channel.clone(), now));
            }
            event = match verdict {
                Answer::Blocked(d) => {
                    blocked = Some((order.step, order.channel.clone(), now + d));
                    Some(Event::LimitBlocked {
                        step: order.step,
                        channel: order.channel.clone(),
                        not_before_ms: now + d,
                    })
                }
                Answer::Outcome(outcome) => Some(Event::SendResult {
                    step: order.step,
                    channel: order.channel.clone(),
                    outcome,
                }),
                Answer::Silence => None,
                Answer::Lapsed => match before.take().filter(|_| fresh) {
                    Some((was, decided_at)) => {
                        // Never stored: what it recorded did not happen
                        // (but its send was tried, as far as a deferred
                        // step goes: it may have gone out).
                        log.truncate(stored);
                        for key in &added {
                            sent_steps.remove(key);
                        }
                        if channels[&order.channel].on_uncertain == OnUncertain::Skip {
                            maybe_sent.insert((order.step, order.channel.clone()));
                        }
                        state = was;
                        now += 30_000;
                        Some(Event::ClaimLapsed {
                            claimed_at_ms: decided_at,
                        })
                    }
                    None => None,
                },
            };
        }
        // Otherwise the next receipt or wake-up, whichever comes first.
        let event = match event {
            Some(e) => e,
            None => {
                let wake = state.wake_at_ms().unwrap();
                match timed.last() {
                    Some((_, at)) if *at <= wake => {
                        let (word, at) = timed.pop().unwrap();
                        now = now.max(at);
                        record(word, now)
                    }
                    _ => {
                        now = now.max(wake);
                        match on_wake
                            .iter()
                            .position(|(_, nth, before_timer)| *before_timer && *nth <= wakes)
                        {
                            Some(i) => record(on_wake.remove(i).0, now),
                            None => {
                                wakes += 1;
                                Event::TimerDue
                            }
                        }
                    }
                }
            }
        };
        let c = Context {
            notification_id: "prop",
            policy: &policy,
            channels: &channels,
            recipient: &recipient,
            receipts: &receipts,
            timing,
        };
        before =
            matches!(event, Event::TimerDue | Event::ReceiptsChanged).then(|| (state.clone(), now));
        decision = decide(state, event, now, &c);
    }
    prop_assert!(false, "the cascade did not end");
    Ok(())
}

/// The liveness oracle: a cascade ends only for a reason it has earned.
fn outcome_is_earned(
    policy: &Policy,
    state: &Cascade,
    log: &[Entry],
    receipts: &BTreeMap<String, i64>,
    expiry: Option<i64>,
) -> Result<(), TestCaseError> {
    let Phase::Done { outcome, at_ms } = &state.phase else {
        return Ok(());
    };
    // The first stopping receipt recorded; `cancelled` beats the others.
    let stopper = receipts
        .get_key_value("cancelled")
        .or_else(|| {
            receipts
                .iter()
                .filter(|(w, _)| stops(policy, w))
                .min_by_key(|(w, at)| (**at, w.as_str()))
        })
        .map(|(w, _)| w.as_str());
    match outcome {
        Outcome::Cancelled => prop_assert_eq!(stopper, Some("cancelled")),
        Outcome::Completed { event } => prop_assert_eq!(stopper, Some(event.as_str())),
        Outcome::Expired => {
            prop_assert_eq!(stopper, None, "expired with a stopping receipt recorded");
            prop_assert!(
                expiry.is_some_and(|x| x <= *at_ms),
                "expired at {at_ms}, expiry {expiry:?}"
            );
        }
        Outcome::Exhausted => {
            prop_assert_eq!(stopper, None, "exhausted with a stopping receipt recorded");
            prop_assert!(
                expiry.is_none_or(|x| *at_ms < x),
                "exhausted at {at_ms}, after expiry {expiry:?}"
            );
            for step in 0..policy.steps.len() as u8 {
                prop_assert!(
                    log.iter().any(|e| e.step == Some(step)
                        && matches!(
                            e.event,
                            EntryKind::Sent
                                | EntryKind::Uncertain
                                | EntryKind::SendFailed
                                | EntryKind::Skipped
                        )),
                    "exhausted without trying step {step}: {log:?}"
                );
            }
        }
    }
    Ok(())
}

/// Quiet hours with an edge in, or a minute beside, the minutes a DST
/// change skips or repeats.
fn arb_quiet_near(change: DstChange) -> impl Strategy<Value = QuietHours> {
    let (lo, hi) = change.odd_minutes();
    let edge = move || prop_oneof![3 => (lo - 1)..=(hi + 1), 1 => 0u16..1440];
    (edge(), edge())
        // At least four open hours a day, so a six-hour awake wait ends within days.
        .prop_filter("a range of at most 20 hours", |(start, end)| {
            start != end && (end + 1440 - start) % 1440 <= 20 * 60
        })
        .prop_map(|(start_min, end_min)| QuietHours {
            start_min,
            end_min,
            quiet_days: 0,
        })
}

/// A cascade next to a DST change: one channel a step, every channel
/// reachable, quiet hours on some, waits (wall or awake) of up to six hours.
#[derive(Clone, Debug)]
struct DstCase {
    change: DstChange,
    start_ms: i64,
    send_at_ms: Option<i64>,
    expires_at_ms: Option<i64>,
    policy: Policy,
}

fn arb_dst_case() -> impl Strategy<Value = DstCase> {
    arb_near_dst().prop_flat_map(|(change, start_ms)| {
        let step = (
            0..CHANNELS.len(),
            0i64..=6 * 60,
            prop_oneof![Just(0i64), 0..MIN],
            any::<bool>(),
        )
            .prop_map(|(ch, wait_min, wait_ms, awake)| Step {
                channels: vec![CHANNELS[ch].0.to_owned()],
                wait_ms: Some(wait_min * MIN + wait_ms),
                wait_clock: if awake {
                    WaitClock::Awake
                } else {
                    WaitClock::Wall
                },
                on_limit: OnLimit::Defer,
                ..Default::default()
            });
        (
            proptest::collection::vec(step, 1..=3),
            any::<bool>(),
            proptest::collection::btree_map(
                proptest::sample::select(KEYS.to_vec()).prop_map(str::to_owned),
                arb_quiet_near(change),
                1..=4,
            ),
            proptest::option::of(0i64..=3 * HOUR),
            proptest::option::of(1i64..=12 * HOUR),
            proptest::option::of(0i64..=12 * HOUR),
        )
            .prop_map(
                move |(mut steps, last_no_wait, quiet_hours, send_at, after, expires)| {
                    if last_no_wait {
                        steps.last_mut().unwrap().wait_ms = None;
                    }
                    DstCase {
                        change,
                        start_ms,
                        send_at_ms: send_at.map(|o| start_ms + o),
                        expires_at_ms: expires.map(|o| start_ms + o),
                        policy: Policy {
                            name: "dst".into(),
                            description: String::new(),
                            stop_on: vec!["read".into()],
                            expire_after_ms: after,
                            steps,
                            limits: Limits::default(),
                            quiet_hours,
                            quiet_off: Default::default(),
                            answer: None,
                            awake_hours: None,
                        },
                    }
                },
            )
    })
}

/// Each step's send `(step, channel, at)`, then how and when the cascade ends.
type Schedule = (Vec<(u8, String, i64)>, &'static str, i64);

/// The reference's schedule of a `DstCase` where every send goes out at once
/// and nobody reads.
fn reference_schedule(case: &DstCase) -> Schedule {
    let tz = case.change.tz();
    let policy = &case.policy;
    let quiet = |step: usize| {
        let channel = &policy.steps[step].channels[0];
        reference::quiet_hours(policy, channel, kind_of(channel))
    };
    let expiry = reference::expiry(case.start_ms, policy.expire_after_ms, case.expires_at_ms);
    let expired = |at: i64| expiry.is_some_and(|x| x <= at);
    let mut sends = Vec::new();
    // When the next step is due.
    let mut due = case
        .send_at_ms
        .map_or(case.start_ms, |s| s.max(case.start_ms));
    for (i, step) in policy.steps.iter().enumerate() {
        let at = quiet(i).map_or(due, |q| reference::first_open(q, due, &tz));
        if expired(at) {
            return (sends, "expired", expiry.unwrap().max(case.start_ms));
        }
        sends.push((i as u8, step.channels[0].clone(), at));
        let wait = step.wait_ms.unwrap_or(0);
        // The awake clock counts the quiet hours of the channel escalated to.
        let next_quiet = policy.steps.get(i + 1).and_then(|_| quiet(i + 1));
        due = match (step.wait_clock, next_quiet) {
            (WaitClock::Awake, Some(q)) => reference::awake_deadline(q, at, wait, &tz),
            _ => at + wait,
        };
    }
    if expired(due) {
        return (sends, "expired", expiry.unwrap());
    }
    (sends, "exhausted", due)
}

/// Runs a `DstCase` through the core: every send goes out at once, nobody
/// reads, each wake-up comes on time.
fn core_schedule(case: &DstCase) -> Result<Schedule, TestCaseError> {
    let channels = channel_rules();
    let recipient = Recipient {
        contacts: ["vk", "sms", "email", "telegram", "whatsapp"]
            .iter()
            .map(|k| (k.to_string(), "x".to_string()))
            .collect(),
        preferences: vec![],
        opt_out: vec![],
        tz: case.change.tz(),
    };
    let receipts = BTreeMap::new();
    let ctx = Context {
        notification_id: "dst",
        policy: &case.policy,
        channels: &channels,
        recipient: &recipient,
        receipts: &receipts,
        timing: Timing::default(),
    };
    let mut now = case.start_ms;
    let mut sends = Vec::new();
    let mut decision = Cascade::start(now, case.send_at_ms, case.expires_at_ms, &ctx);
    for _ in 0..100 {
        if let Some(order) = decision.send.take() {
            sends.push((order.step, order.channel.clone(), now));
            let sent = Event::SendResult {
                step: order.step,
                channel: order.channel,
                outcome: SendOutcome::Sent {
                    provider_message_id: None,
                },
            };
            decision = decide(decision.cascade, sent, now, &ctx);
            continue;
        }
        if let Phase::Done { outcome, at_ms } = &decision.cascade.phase {
            return Ok((sends, outcome.word(), *at_ms));
        }
        let wake = decision.cascade.wake_at_ms().unwrap();
        prop_assert!(wake >= now, "a wake-up at {wake}, before {now}");
        now = wake;
        decision = decide(decision.cascade, Event::TimerDue, now, &ctx);
    }
    Err(TestCaseError::fail("the cascade did not end"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn cascades_keep_their_invariants(policy in arb_policy(), recipient in arb_recipient(), world in arb_world()) {
        check_cascade(policy, recipient, world)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn dst_schedules_match_the_reference(case in arb_dst_case()) {
        let expected = reference_schedule(&case);
        let actual = core_schedule(&case)?;
        prop_assert_eq!(actual, expected);
    }
}

// Branches (`name`, `on`, `next`, `final`).
//
// `branching_cascades_end_within_bounds`: random branching policies, valid
// as `cascade check` would have them (targets exist, never the step itself,
// a `final` step has no wait, next or branch, the waits' way on never comes
// round), and random receipts and send answers:
// - every cascade ends within a bounded number of decisions;
// - the transition count never passes the maximum by more than the one
//   decision that ends the cascade for it;
// - a `final` step that went out is never followed by another send;
// - a cascade that reached a `final` step by a branch completes with the
//   branch's word.
//
// `plain_policies_decide_as_before`: a policy written without branches
// decides exactly as the same policy with every step named and every wait's
// way on spelt out as `next` (the following step): the default way on is
// the old straight line, and names change nothing.

const BRANCH_WORDS: [&str; 4] = ["called", "no_answer", "read", "paid"];

/// The waits' way on from every step ends (what `cascade check` demands).
fn way_on_ends(policy: &Policy) -> bool {
    (0..policy.steps.len()).all(|start| {
        let mut at = start;
        for _ in 0..=policy.steps.len() {
            if policy.steps[at].is_final {
                return true;
            }
            match policy.after_wait(at) {
                Some(next) => at = next,
                None => return true,
            }
        }
        false
    })
}

fn arb_branching_policy() -> impl Strategy<Value = Policy> {
    let step = (
        0..CHANNELS.len(),
        1i64..=6 * 60,
        proptest::collection::btree_map(
            proptest::sample::select(BRANCH_WORDS.to_vec()),
            0u8..6,
            0..=2,
        ),
        proptest::option::of(0u8..6),
        proptest::bool::weighted(0.3),
    );
    (
        proptest::collection::vec(step, 1..=6),
        proptest::sample::subsequence(vec!["read", "opened", "paid"], 1..=2),
    )
        .prop_map(|(raw, stop_on)| {
            let n = raw.len() as u8;
            let steps = raw
                .into_iter()
                .enumerate()
                .map(|(i, (ch, wait_min, on, next, is_final))| {
                    let valid = |t: u8| (t % n != i as u8).then_some(t % n);
                    let on: BTreeMap<String, u8> = on
                        .into_iter()
                        .filter_map(|(w, t)| Some((w.to_owned(), valid(t)?)))
                        .collect();
                    let is_final = is_final && i > 0;
                    Step {
                        channels: vec![CHANNELS[ch].0.to_owned()],
                        wait_ms: (!is_final).then_some(wait_min * MIN),
                        name: Some(format!("s{i}")),
                        on: if is_final { BTreeMap::new() } else { on },
                        next: if is_final { None } else { next.and_then(valid) },
                        is_final,
                        ..Default::default()
                    }
                })
                .collect();
            Policy {
                name: "branchy".into(),
                description: String::new(),
                stop_on: stop_on.into_iter().map(str::to_owned).collect(),
                expire_after_ms: None,
                steps,
                limits: Limits::default(),
                quiet_hours: BTreeMap::new(),
                quiet_off: Default::default(),
                answer: None,
                awake_hours: None,
            }
        })
        .prop_filter("the way on must end", way_on_ends)
}

fn reach_everyone() -> Recipient {
    Recipient {
        contacts: ["vk", "sms", "email", "telegram", "whatsapp"]
            .into_iter()
            .map(|k| (k.to_owned(), "x".to_owned()))
            .collect(),
        preferences: vec![],
        opt_out: vec![],
        tz: TimeZone::UTC,
    }
}

/// Receipts to record (word, minutes after the previous one) and, for each
/// send in turn, whether the provider takes it (else it fails for good).
type Script = (Vec<(&'static str, i64)>, Vec<bool>);

fn arb_script() -> impl Strategy<Value = Script> {
    let word = prop_oneof![
        8 => proptest::sample::select(BRANCH_WORDS.to_vec()),
        1 => Just("opened"),
        1 => Just("failed"),
        1 => Just("cancelled"),
    ];
    (
        proptest::collection::vec((word, 0i64..=300), 0..=12),
        proptest::collection::vec(proptest::bool::weighted(0.85), 0..=40),
    )
}

/// Plays `script` against `policy`: every decision, in order, with the
/// receipts recorded so far. Errors if the cascade does not end.
fn play(
    policy: &Policy,
    script: &Script,
    timing: Timing,
) -> Result<Vec<(i64, Decision)>, TestCaseError> {
    let channels = channel_rules();
    let recipient = reach_everyone();
    let mut receipts: BTreeMap<String, i64> = BTreeMap::new();
    let (words, answers) = script;
    let mut words = words.iter();
    let mut answers = answers.iter();
    let mut now = 1_780_000_000_000;
    let mut next_receipt = words.next().map(|&(w, after)| (w, now + after * MIN));
    macro_rules! context {
        ($receipts:expr) => {
            Context {
                notification_id: "n-b",
                policy,
                channels: &channels,
                recipient: &recipient,
                receipts: $receipts,
                timing,
            }
        };
    }
    let mut decision = Cascade::start(now, None, None, &context!(&receipts));
    let mut log = vec![(now, decision.clone())];
    for _ in 0..2_000 {
        if decision.cascade.is_done() {
            return Ok(log);
        }
        let event = if let Some(order) = decision.send.clone() {
            let outcome = if *answers.next().unwrap_or(&true) {
                SendOutcome::Sent {
                    provider_message_id: None,
                }
            } else {
                SendOutcome::Permanent {
                    reason: "no".into(),
                }
            };
            Event::SendResult {
                step: order.step,
                channel: order.channel,
                outcome,
            }
        } else {
            let wake = decision.cascade.wake_at_ms().unwrap();
            match next_receipt {
                Some((w, at)) if at < wake => {
                    now = now.max(at);
                    receipts.insert(w.to_owned(), now);
                    next_receipt = words.next().map(|&(w, after)| (w, now + after * MIN));
                    Event::ReceiptsChanged
                }
                _ => {
                    now = now.max(wake);
                    Event::TimerDue
                }
            }
        };
        decision = decide(decision.cascade, event, now, &context!(&receipts));
        log.push((now, decision.clone()));
    }
    Err(TestCaseError::fail(
        "the cascade did not end in 2000 decisions",
    ))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn branching_cascades_end_within_bounds(
        policy in arb_branching_policy(),
        script in arb_script(),
        max_transitions in 4u16..=64,
    ) {
        let timing = Timing { max_transitions, ..Timing::default() };
        let log = play(&policy, &script, timing)?;
        let mut final_sent = false;
        for (_, d) in &log {
            prop_assert!(d.cascade.transitions <= max_transitions.saturating_add(1));
            if d.cascade.transitions > max_transitions {
                prop_assert!(d.cascade.is_done());
            }
            prop_assert!(!(final_sent && d.send.is_some()), "a send after a final step went out");
            for e in &d.entries {
                let step = e.step.map(|s| &policy.steps[s as usize]);
                if e.event == EntryKind::Sent && step.is_some_and(|s| s.is_final) {
                    final_sent = true;
                    prop_assert!(d.cascade.is_done(), "a final step that went out ends the cascade");
                }
            }
        }
        let last = &log.last().unwrap().1.cascade;
        prop_assert!(last.is_done());
        if let (Some(b), true) = (&last.branch, final_sent)
            && b.here
            && last.transitions <= max_transitions
        {
            prop_assert_eq!(last.outcome(), Some(&Outcome::Completed { event: b.word.clone() }));
        }
    }

    #[test]
    fn plain_policies_decide_as_before(policy in arb_policy(), script in arb_script()) {
        let mut spelt = policy.clone();
        let n = spelt.steps.len();
        for (i, s) in spelt.steps.iter_mut().enumerate() {
            s.name = Some(format!("step_{i}"));
            s.next = (i + 1 < n).then_some(i as u8 + 1);
        }
        let plain = play(&policy, &script, Timing::default())?;
        let named = play(&spelt, &script, Timing::default())?;
        prop_assert_eq!(plain, named);
        // And the plain policy's snapshot has no trace of the new fields.
        let json = serde_json::to_string(&policy).unwrap();
        for field in ["\"name\":\"step", "\"on\":", "\"next\":", "\"final\":"] {
            prop_assert!(!json.contains(field), "{}", json);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Business hours with days off (`QuietHours::outside_business`): the
    /// next open moment is open and every minute before it is quiet, and
    /// an awake wait ends on an open moment having counted exactly its
    /// open minutes, in a zone with DST.
    #[test]
    fn business_hours_with_days_off_open_and_count_right(
        open in 0u16..1380,
        len in 60u16..1000,
        working in 1u8..0x7f,
        start in 1_780_000_000_000i64..1_800_000_000_000,
        wait_min in 0i64..600,
    ) {
        let close = (open + len).min(1439);
        let hhmm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        let days: Vec<&str> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .iter()
            .enumerate()
            .filter(|(i, _)| working & (1 << i) != 0)
            .map(|(_, d)| *d)
            .collect();
        let q = QuietHours::outside_business(&format!("{}-{}", hhmm(open), hhmm(close)), &days.join(","))
            .map_err(|e| TestCaseError::fail(e.0))?;
        let tz = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        let start = start - start % MIN;
        let next = q.next_open(start, &tz);
        prop_assert!(!q.is_quiet(next, &tz));
        let mut t = start;
        while t < next {
            prop_assert!(q.is_quiet(t, &tz), "open at {t} before {next}");
            t += MIN;
        }
        let end = q.awake_deadline(start, wait_min * MIN, &tz);
        // It ends in an open minute, or right as one closes.
        prop_assert!(wait_min == 0 || !q.is_quiet(end - 1, &tz));
        let mut counted = 0;
        let mut t = start;
        while t < end {
            if !q.is_quiet(t, &tz) {
                counted += 1;
            }
            t += MIN;
        }
        prop_assert_eq!(counted, wait_min, "open minutes between {} and {}", start, end);
    }
}
