//! Per-customer limits: random takes, retries at the moment told, gives
//! back and reloads, played on both stores; every answer must agree.
//! (`tests/limit_script.rs` holds the Redis store to the sliding-window
//! rule itself; agreeing with it, the memory store holds to the rule too.)

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use cascade::channels::ChannelSettings;
use cascade::channels::webhook::WebhookSettings;
use cascade::config::ChannelConfig;
use cascade::core::{ChannelKind, ChannelRules, Limits, OnUncertain, Policy, Rate};
use cascade::runtime::store::CascadeStore;

use crate::rig::{MIN, NOW, Rig};

const CHANNELS: [(&str, ChannelKind); 3] = [
    ("sms", ChannelKind::Sms),
    ("vk", ChannelKind::Vk),
    ("email", ChannelKind::Email),
];
const MEMBERS: [&str; 4] = ["n1:0", "n1:1", "n2:0", "n3:0"];

/// A policy's limits: all channels, SMS, VK (count, window).
type CaseLimits = [Option<(u32, i64)>; 3];

#[derive(Clone, Debug)]
enum Op {
    Take {
        after_ms: i64,
        member: usize,
        channel: usize,
        policy: usize,
    },
    /// At the moment the last blocked take was told (a deferred retry).
    TakeWhenTold {
        member: usize,
        channel: usize,
        policy: usize,
    },
    Release {
        member: usize,
        channel: usize,
        policy: usize,
    },
    /// A reload changes the first policy's count of one limit.
    Recount { limit: usize, count: u32 },
}

fn limits() -> impl Strategy<Value = CaseLimits> {
    let window = (1u32..=3, 1i64..=4).prop_map(|(count, minutes)| (count, minutes * MIN));
    let maybe = move || proptest::option::weighted(0.85, window.clone());
    [maybe(), maybe(), maybe()]
}

fn op() -> impl Strategy<Value = Op> {
    // Half minutes land on window edges; a millisecond either side probes them.
    let after_ms = prop_oneof![
        (0i64..=4).prop_map(|n| n * MIN / 2),
        (1i64..=4, prop_oneof![Just(-1i64), Just(1)]).prop_map(|(n, e)| n * MIN / 2 + e),
        0i64..3 * MIN,
    ];
    let (member, channel, policy) = (0..MEMBERS.len(), 0..CHANNELS.len(), 0..2usize);
    prop_oneof![
        6 => (after_ms, member.clone(), channel.clone(), policy.clone()).prop_map(
            |(after_ms, member, channel, policy)| Op::Take { after_ms, member, channel, policy }
        ),
        2 => (member.clone(), channel.clone(), policy.clone())
            .prop_map(|(member, channel, policy)| Op::TakeWhenTold { member, channel, policy }),
        1 => (member, channel, policy)
            .prop_map(|(member, channel, policy)| Op::Release { member, channel, policy }),
        2 => (0usize..3, 1u32..=3).prop_map(|(limit, count)| Op::Recount { limit, count }),
    ]
}

fn policy(limits: &CaseLimits) -> Policy {
    let rate = |(count, per_ms): (u32, i64)| Rate { count, per_ms };
    let per_channel = [("sms", limits[1]), ("vk", limits[2])]
        .into_iter()
        .filter_map(|(k, w)| Some((k.to_owned(), rate(w?))))
        .collect();
    Policy {
        name: "limited".into(),
        description: String::new(),
        stop_on: vec![],
        expire_after_ms: None,
        steps: vec![],
        limits: Limits {
            per_customer: limits[0].map(rate),
            per_channel,
        },
        quiet_hours: BTreeMap::new(),
        quiet_off: Default::default(),
    }
}

fn channel(name: &str, kind: ChannelKind) -> ChannelConfig {
    ChannelConfig {
        name: name.into(),
        kind,
        description: String::new(),
        rules: ChannelRules {
            kind,
            contact_key: None,
            retry: Default::default(),
            on_uncertain: OnUncertain::Skip,
        },
        cost: None,
        cost_per_segment: false,
        timeout_ms: 1_000,
        rate: None,
        max_length: None,
        max_segments: None,
        settings: ChannelSettings::Webhook(WebhookSettings {
            url: "http://127.0.0.1:9/unused".into(),
            secret: None,
        }),
    }
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

/// Plays `ops` for `customer` on both stores, comparing every answer.
async fn play(
    rig: &Rig,
    customer: &str,
    limits: [CaseLimits; 2],
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let mut limits = limits;
    let mut policies = [policy(&limits[0]), policy(&limits[1])];
    let channels: Vec<ChannelConfig> = CHANNELS.iter().map(|(n, k)| channel(n, *k)).collect();
    let (mut now, mut told) = (NOW, None::<i64>);
    for (i, op) in ops.iter().enumerate() {
        match *op {
            Op::Take {
                member,
                channel,
                policy,
                ..
            }
            | Op::TakeWhenTold {
                member,
                channel,
                policy,
            } => {
                now = match *op {
                    Op::Take { after_ms, .. } => now + after_ms,
                    _ => now.max(told.unwrap_or(now)),
                };
                let (ch, m, p) = (&channels[channel], MEMBERS[member], &policies[policy]);
                let redis = rig
                    .redis
                    .take_limit(customer, p, ch, m, now)
                    .await
                    .map_err(fail)?;
                let memory = rig
                    .memory
                    .take_limit(customer, p, ch, m, now)
                    .await
                    .map_err(fail)?;
                prop_assert_eq!(
                    redis,
                    memory,
                    "op {} ({:?}) at NOW + {} ms",
                    i,
                    op,
                    now - NOW
                );
                told = redis.or(told);
            }
            Op::Release {
                member,
                channel,
                policy,
            } => {
                let (ch, m, p) = (&channels[channel], MEMBERS[member], &policies[policy]);
                rig.redis
                    .release_limit(customer, p, ch, m)
                    .await
                    .map_err(fail)?;
                rig.memory
                    .release_limit(customer, p, ch, m)
                    .await
                    .map_err(fail)?;
            }
            Op::Recount { limit, count } => {
                if let Some(w) = &mut limits[0][limit] {
                    w.0 = count;
                }
                policies[0] = policy(&limits[0]);
            }
        }
    }
    Ok(())
}

#[test]
fn both_stores_take_and_refuse_alike() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rig = runtime.block_on(Rig::new("contract-limits"));
    let mut runner = TestRunner::new(Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    });
    let case = AtomicU64::new(0);
    let scenario = ((limits(), limits()), proptest::collection::vec(op(), 1..40));
    let result = runner.run(&scenario, |((first, second), ops)| {
        // A customer of its own per case (and per shrinking step).
        let customer = format!("c{}", case.fetch_add(1, Ordering::Relaxed));
        runtime.block_on(play(&rig, &customer, [first, second], &ops))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
