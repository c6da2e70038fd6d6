//! Per-customer limits: random takes, retries at the moment told, gives
//! back and reloads, played on both stores; every answer must agree.
//! (`tests/limit_script.rs` holds the Redis store to the sliding-window
//! rule itself; agreeing with it, the memory store holds to the rule too.)

use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use cascade::config::ChannelConfig;
use cascade::runtime::store::CascadeStore;

use crate::common::limit_cases::*;
use crate::rig::{NOW, Rig};

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
                limits[0].recount(limit, count);
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
