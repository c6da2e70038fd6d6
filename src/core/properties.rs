//! Property tests over random policies, customers, receipt times, provider
//! answers and limit verdicts. Minutes and days pass through `now` only.
//!
//! The invariants (checked at every send the core orders):
//! - never a send after a stopping receipt is recorded;
//! - never the same step sent twice on one channel (a step moves to its next
//!   alternative only after the previous one failed);
//! - never a send inside the channel's quiet hours;
//! - never a send at or after expiry;
//! - a step deferred by a limit is tried again, unless the cascade ends
//!   through expiry, a stopping receipt or cancellation first;
//! - every cascade ends, without hitting the transition bound;
//! - all of the above also when an instance sends on its claim's lease and
//!   dies before storing anything (`Event::ClaimLapsed`), and such a send
//!   is never made again on a channel that cannot dedupe.

use std::collections::{BTreeMap, BTreeSet};

use jiff::tz::TimeZone;
use proptest::prelude::*;

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
const ZONES: [&str; 6] = [
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
        })
}

fn arb_quiet() -> impl Strategy<Value = QuietHours> {
    (0u16..1440, 1u16..1440).prop_map(|(start, len)| QuietHours {
        start_min: (start / 15) * 15,
        end_min: ((start / 15) * 15 + len.max(15) / 15 * 15) % 1440,
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
            proptest::sample::select(CHANNELS.iter().map(|c| c.0).collect::<Vec<_>>()),
            arb_quiet(),
            0..=3,
        ),
    )
        .prop_map(|(mut steps, last, stop_on, expire_h, quiet)| {
            steps.push(last);
            Policy {
                name: "p".into(),
                description: String::new(),
                stop_on: stop_on.into_iter().map(str::to_owned).collect(),
                expire_after_ms: expire_h.map(|h| h * HOUR),
                steps,
                limits: Limits::default(),
                quiet_hours: quiet
                    .into_iter()
                    .filter(|(_, q)| q.start_min != q.end_min)
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
                quiet_off: Default::default(),
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

/// A scripted outside world: how providers answer, what limits say, and when
/// receipts arrive.
#[derive(Clone, Debug)]
struct World {
    start_ms: i64,
    send_at_offset_ms: Option<i64>,
    expires_offset_ms: Option<i64>,
    choices: Vec<u8>,
    receipts: Vec<(usize, i64)>,
}

fn arb_world() -> impl Strategy<Value = World> {
    (
        // Any moment of 2026, so DST changes are crossed.
        1_767_225_600_000i64..1_798_761_600_000,
        proptest::option::of(0i64..=48 * HOUR),
        proptest::option::of(0i64..=96 * HOUR),
        proptest::collection::vec(any::<u8>(), 1..64),
        proptest::collection::vec((0..RECEIPTS.len(), 0i64..=96 * HOUR), 0..=3),
    )
        .prop_map(|(start_ms, send_at, expires, choices, receipts)| World {
            start_ms,
            send_at_offset_ms: send_at,
            expires_offset_ms: expires,
            choices,
            receipts,
        })
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

fn check_cascade(policy: Policy, recipient: Recipient, world: World) -> Result<(), TestCaseError> {
    let channels = channel_rules();
    let timing = Timing::default();
    let mut receipts: BTreeMap<String, i64> = BTreeMap::new();
    let mut pending_receipts: Vec<(String, i64)> = world
        .receipts
        .iter()
        .map(|(i, off)| (RECEIPTS[*i].to_owned(), world.start_ms + off))
        .collect();
    pending_receipts.sort_by_key(|r| r.1);
    pending_receipts.reverse();

    let mut now = world.start_ms;
    let send_at = world.send_at_offset_ms.map(|o| world.start_ms + o);
    let expires_at = world.expires_offset_ms.map(|o| world.start_ms + o);

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
    let mut sent_steps: BTreeSet<(u8, String)> = BTreeSet::new();
    let mut deferred: Option<u8> = None;
    let mut turn = 0usize;
    // The state and time the current decision was made on, when it was made
    // on a claimed wake-up, for `Answer::Lapsed`.
    let mut before: Option<(Cascade, i64)> = None;
    // Sends a lapsed holder may have made, on channels that cannot dedupe.
    let mut maybe_sent: BTreeSet<(u8, String)> = BTreeSet::new();

    for _ in 0..2_000 {
        let mut state = decision.cascade.clone();
        let mut added = Vec::new();
        for e in &decision.entries {
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
                EntryKind::Exhausted => {
                    prop_assert_ne!(e.reason.as_deref(), Some("transition_limit"));
                    prop_assert!(deferred.is_none(), "deferred step {deferred:?} dropped");
                }
                _ => {}
            }
        }
        if let Some(order) = &decision.send {
            // The invariants, at the moment the core orders a send.
            prop_assert!(
                !receipts.keys().any(|k| policy.stops_on(k)),
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
            let ch = &channels[&order.channel];
            if let Some(q) = policy.quiet_hours_for(&order.channel, Some(ch.kind)) {
                prop_assert!(
                    !q.is_quiet(now, &recipient.tz),
                    "send inside quiet hours {q} at {now}"
                );
            }
            if let Some(x) = state.expires_at_ms {
                prop_assert!(now < x, "send at or after expiry");
            }
            if deferred == Some(order.step) {
                deferred = None;
            }
        }
        if state.is_done() {
            if matches!(
                state.outcome(),
                Some(Outcome::Expired | Outcome::Completed { .. } | Outcome::Cancelled)
            ) {
                deferred = None;
            }
            prop_assert!(deferred.is_none(), "deferred step {deferred:?} dropped");
            return Ok(());
        }
        prop_assert!(
            state.wake_at_ms().is_some(),
            "a running cascade must have a wake-up"
        );

        let event = match &decision.send {
            Some(order) => {
                let c = world.choices[turn % world.choices.len()];
                let extra = world.choices[(turn + 1) % world.choices.len()];
                turn += 1;
                match answer(c.wrapping_add(turn as u8), extra) {
                    Answer::Blocked(d) => Some(Event::LimitBlocked {
                        step: order.step,
                        channel: order.channel.clone(),
                        not_before_ms: now + d,
                    }),
                    Answer::Outcome(outcome) => Some(Event::SendResult {
                        step: order.step,
                        channel: order.channel.clone(),
                        outcome,
                    }),
                    Answer::Silence => None,
                    Answer::Lapsed => match before.take() {
                        Some((was, decided_at)) => {
                            // Never stored: what it recorded did not happen
                            // (but its send was tried, as far as a deferred
                            // step goes: it may have gone out).
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
                }
            }
            None => None,
        };
        let event = match event {
            Some(e) => e,
            None => {
                let wake = state.wake_at_ms().unwrap();
                match pending_receipts.last() {
                    Some((_, at)) if *at <= wake => {
                        let (word, at) = pending_receipts.pop().unwrap();
                        now = now.max(at);
                        receipts.insert(word, now);
                        Event::ReceiptsChanged
                    }
                    _ => {
                        now = now.max(wake);
                        Event::TimerDue
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn cascades_keep_their_invariants(policy in arb_policy(), recipient in arb_recipient(), world in arb_world()) {
        check_cascade(policy, recipient, world)?;
    }
}
