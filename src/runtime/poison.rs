//! Poison messages: a message whose handling fails in its own right again
//! and again is dead-lettered with the code `poison` after
//! `amqp.max_deliveries` deliveries, instead of going round the queue for
//! ever. This file only reads headers and decides; `intake.rs` publishes.
//!
//! **What counts.** A failure that belongs to the message: the handler
//! panicked on it, left it unanswered (a bug either way), or Redis answered
//! with an error about the keys it touched (a key of the wrong type, a
//! script that failed on its data). An outage never counts — Redis or
//! RabbitMQ unreachable, a timeout, a failover's `READONLY` or `LOADING`,
//! `OOM`: such a message is handed back (nack, requeue) as before, however
//! often, since the next try may well succeed.
//!
//! **Where the count lives.** Classic queues count nothing, so a failed
//! message is published again to the intake queue with its count in a header
//! of the daemon's own, `x-cascade-deliveries`, under a publisher confirm,
//! and the original is acknowledged only after the confirm. Quorum queues
//! also count returns in `x-delivery-count`, but of every cause: an instance
//! that died or lost its connection with the message in hand (and, before
//! RabbitMQ 4.3, the daemon's own hand-backs during an outage). That count
//! alone cannot tell a poison message from a bad day — in a crash every
//! message in hand is returned alike — so it never dead-letters a message on
//! its own; when the message also fails in its own right, its earlier
//! returns are added (they were likely the same failure).

use std::fmt;

use lapin::types::{AMQPValue, FieldTable, ShortString};

/// The daemon's own count of a message's failures.
pub const DELIVERIES_HEADER: &str = "x-cascade-deliveries";
/// Quorum queues' count of a message's returns.
pub const BROKER_COUNT_HEADER: &str = "x-delivery-count";

/// Why handling one message failed in its own right (counted toward
/// `amqp.max_deliveries`). The text goes into a dead letter's
/// `x-cascade-error`, so it never quotes the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The handler panicked (the panic's own text is in the daemon's log).
    Panicked,
    /// The handler returned without acknowledging, rejecting or returning it.
    Unanswered,
    /// Redis answered with an error about the data (`StoreError::about_the_data`).
    Store(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Panicked => f.write_str("the daemon panicked while handling it"),
            Failure::Unanswered => f.write_str("the daemon left it unanswered"),
            Failure::Store(why) => write!(f, "{why}"),
        }
    }
}

/// A message's failures before this delivery, as its headers tell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Earlier {
    /// Failures counted by the daemon (`x-cascade-deliveries`).
    pub failures: u32,
    /// Returns of this copy counted by a quorum queue (`x-delivery-count`).
    pub returns: u32,
}

/// What to do with a message that just failed in its own right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Publish it again with `failed` in `x-cascade-deliveries`.
    Retry { failed: u32 },
    /// Dead-letter it as `poison`: it failed `failed` times.
    Poison { failed: u32 },
}

impl Earlier {
    /// Reads both counts. Anyone can publish these headers, so any integer
    /// type (or a string of digits) is read, a negative value is 0 and a
    /// huge one saturates: a forged count can only make a failing message
    /// go to the dead-letter queue sooner, never keep it going round.
    pub fn read(headers: Option<&FieldTable>) -> Earlier {
        let get = |name: &str| {
            headers
                .and_then(|h| h.inner().get(name))
                .and_then(count)
                .unwrap_or(0)
        };
        Earlier {
            failures: get(DELIVERIES_HEADER),
            returns: get(BROKER_COUNT_HEADER),
        }
    }

    /// How long to hold a delivery before handing it back during an
    /// outage: half a second at first, doubling with each return the
    /// broker counted, up to 30 s. A quorum queue counts these returns
    /// toward its `x-delivery-limit` (before RabbitMQ 4.3), so a long
    /// outage must not use them up quickly.
    pub fn hand_back_pause(&self) -> std::time::Duration {
        let doublings = self.returns.min(6);
        std::time::Duration::from_millis(500 << doublings).min(std::time::Duration::from_secs(30))
    }

    /// After this delivery failed: published again while fewer than
    /// `max_deliveries` failures are counted, dead-lettered at the bound.
    pub fn after_failure(self, max_deliveries: u32) -> Verdict {
        let failed = self.failures.saturating_add(self.returns).saturating_add(1);
        if failed >= max_deliveries.max(1) {
            Verdict::Poison { failed }
        } else {
            Verdict::Retry { failed }
        }
    }
}

/// The sentence of a poison dead letter: how often, the bound, the last
/// error. No personal data: `Failure` never quotes the message.
pub fn sentence(failed: u32, max_deliveries: u32, earlier: Earlier, last: &Failure) -> String {
    let returns = match earlier.returns {
        0 => String::new(),
        n => format!(", {n} of them returns counted by RabbitMQ (x-delivery-count)"),
    };
    format!(
        "handling it failed {failed} times{returns} (amqp.max_deliveries = {max_deliveries}); the last time: {last}"
    )
}

/// The headers of a copy the daemon publishes (sent round again, or a poison
/// dead letter): the count, and no `x-delivery-count` (it is folded into the
/// count already, and a copy on a quorum queue starts its own).
pub fn counted_headers(headers: Option<&FieldTable>, failed: u32) -> FieldTable {
    let mut table = headers.map(|h| h.inner().clone()).unwrap_or_default();
    table.remove(BROKER_COUNT_HEADER);
    table.insert(
        ShortString::from(DELIVERIES_HEADER),
        AMQPValue::LongLongInt(i64::from(failed)),
    );
    FieldTable::from(table)
}

/// A count from a header value.
fn count(value: &AMQPValue) -> Option<u32> {
    let n: i128 = match value {
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => (*n).into(),
        AMQPValue::ShortString(s) => s.as_str().trim().parse().ok()?,
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes())
            .ok()?
            .trim()
            .parse()
            .ok()?,
        _ => return None,
    };
    Some(n.clamp(0, u32::MAX.into()) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::LongString;

    fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in entries {
            t.insert(ShortString::from(*k), v.clone());
        }
        t
    }

    #[test]
    fn a_message_without_counts_has_failed_never() {
        assert_eq!(Earlier::read(None), Earlier::default());
        assert_eq!(
            Earlier::read(Some(&table(&[("x-other", AMQPValue::LongInt(7))]))),
            Earlier::default()
        );
    }

    #[test]
    fn the_bound_is_max_deliveries_failures() {
        let mut earlier = Earlier::default();
        let mut verdicts = Vec::new();
        for _ in 0..10 {
            let v = earlier.after_failure(5);
            verdicts.push(v);
            match v {
                Verdict::Retry { failed } => {
                    let headers = counted_headers(None, failed);
                    earlier = Earlier::read(Some(&headers));
                }
                Verdict::Poison { .. } => break,
            }
        }
        assert_eq!(
            verdicts,
            [
                Verdict::Retry { failed: 1 },
                Verdict::Retry { failed: 2 },
                Verdict::Retry { failed: 3 },
                Verdict::Retry { failed: 4 },
                Verdict::Poison { failed: 5 },
            ]
        );
        // 1 (or 0, read as 1) means: the first failure dead-letters it.
        assert_eq!(
            Earlier::default().after_failure(1),
            Verdict::Poison { failed: 1 }
        );
        assert_eq!(
            Earlier::default().after_failure(0),
            Verdict::Poison { failed: 1 }
        );
    }

    #[test]
    fn hand_backs_slow_down_as_the_broker_counts_them() {
        let pause = |returns: i64| {
            let mut h = FieldTable::default();
            h.insert(BROKER_COUNT_HEADER.into(), AMQPValue::LongLongInt(returns));
            Earlier::read(Some(&h)).hand_back_pause().as_millis()
        };
        assert_eq!(Earlier::read(None).hand_back_pause().as_millis(), 500);
        assert_eq!([pause(1), pause(2), pause(5)], [1_000, 2_000, 16_000]);
        assert_eq!([pause(6), pause(100)], [30_000, 30_000]);
    }

    #[test]
    fn quorum_returns_add_only_to_a_failure_of_its_own() {
        let headers = table(&[
            (BROKER_COUNT_HEADER, AMQPValue::LongLongInt(3)),
            (DELIVERIES_HEADER, AMQPValue::LongLongInt(1)),
        ]);
        let earlier = Earlier::read(Some(&headers));
        assert_eq!(
            earlier,
            Earlier {
                failures: 1,
                returns: 3
            }
        );
        // Returns alone decide nothing: the verdict is asked for only after a
        // failure of the message's own, and then they count.
        assert_eq!(earlier.after_failure(5), Verdict::Poison { failed: 5 });
        assert_eq!(earlier.after_failure(10), Verdict::Retry { failed: 5 });
        // The copy published again carries the sum and no stale broker count.
        let again = counted_headers(Some(&headers), 5);
        assert_eq!(
            Earlier::read(Some(&again)),
            Earlier {
                failures: 5,
                returns: 0
            }
        );
        assert!(!again.contains_key(BROKER_COUNT_HEADER));
    }

    #[test]
    fn forged_counts_saturate_and_never_go_negative() {
        for (value, expected) in [
            (AMQPValue::LongLongInt(-5), 0),
            (AMQPValue::LongLongInt(i64::MIN), 0),
            (AMQPValue::LongLongInt(i64::MAX), u32::MAX),
            (AMQPValue::LongUInt(u32::MAX), u32::MAX),
            (AMQPValue::ShortShortInt(-1), 0),
            (AMQPValue::LongString(LongString::from("42")), 42),
            (AMQPValue::LongString(LongString::from("-42")), 0),
            (AMQPValue::LongString(LongString::from("many")), 0),
            (AMQPValue::Boolean(true), 0),
            (AMQPValue::Double(3.0), 0),
        ] {
            let headers = table(&[(DELIVERIES_HEADER, value.clone())]);
            assert_eq!(
                Earlier::read(Some(&headers)).failures,
                expected,
                "{value:?}"
            );
        }
        let most = Earlier {
            failures: u32::MAX,
            returns: u32::MAX,
        };
        assert_eq!(most.after_failure(5), Verdict::Poison { failed: u32::MAX });
        assert_eq!(
            most.after_failure(u32::MAX),
            Verdict::Poison { failed: u32::MAX }
        );
    }

    #[test]
    fn the_sentence_says_how_often_and_the_last_error() {
        let last = Failure::Store("Redis answered WRONGTYPE".into());
        let s = sentence(5, 5, Earlier::default(), &last);
        assert_eq!(
            s,
            "handling it failed 5 times (amqp.max_deliveries = 5); the last time: Redis answered WRONGTYPE"
        );
        let s = sentence(
            5,
            5,
            Earlier {
                failures: 1,
                returns: 3,
            },
            &Failure::Panicked,
        );
        assert!(s.contains("3 of them returns counted by RabbitMQ"), "{s}");
        assert!(s.ends_with("the daemon panicked while handling it"), "{s}");
    }
}
