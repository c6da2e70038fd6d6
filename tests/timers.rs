//! Wake-ups far ahead wait in per-minute lists and come due on time
//! (`scripts/wake.lua`, `scripts/claim.lua`), against the real Redis.

mod common;

use std::collections::BTreeSet;

use common::*;
use redis::AsyncCommands;

use cascade::runtime::keys::Keys;
use cascade::runtime::store::{CascadeStore, ReceiptResult, Store};

const MIN: i64 = 60_000;
const NOW: i64 = 1_800_000_000_000;
const LEASE: i64 = 10_000;
/// `Loaded::receipts_seen` of a cascade without receipts.
const NONE_SEEN: &str = "0\t";
/// A record as `accept.lua` lays it out (version 1), for scripts that read one.
const RECORD: &str = "1\x1fstate\x1fnotification\x1f\x1fhash\t";

struct Rig {
    keys: Keys,
    store: Store,
    redis: cascade::runtime::store::RedisConn,
    _clean: CleanUp,
}

impl Rig {
    async fn new(name: &str) -> Rig {
        let prefix = unique(name);
        let keys = Keys::new(&prefix, 1);
        let store = Store::connect(&common::redis_target(), keys.clone(), 3_600_000)
            .await
            .unwrap();
        Rig {
            keys,
            store,
            redis: redis().await,
            _clean: CleanUp(prefix),
        }
    }

    fn list(&self, due: i64) -> String {
        format!("{}:{}", self.keys.later(0), due / MIN)
    }

    /// Puts a wake-up in a far slot, as `wake.lua` does.
    async fn far(&mut self, id: &str, due: i64) {
        let _: () = redis::pipe()
            .rpush(self.list(due), format!("{due} {id}"))
            .zadd(self.keys.later(0), due / MIN, due / MIN)
            .query_async(&mut self.redis)
            .await
            .unwrap();
    }

    async fn claim(&self, now: i64) -> BTreeSet<String> {
        self.claim_leasing(now, LEASE).await
    }

    async fn claim_leasing(&self, now: i64, lease: i64) -> BTreeSet<String> {
        let claimed = self.store.claim(0, now, lease, 100_000).await.unwrap();
        claimed.into_iter().map(|c| c.id).collect()
    }

    async fn score(&mut self, id: &str) -> Option<i64> {
        self.redis.zscore(self.keys.timer(0), id).await.unwrap()
    }

    /// A score as stored: a lease's has a fraction.
    async fn raw_score(&mut self, id: &str) -> Option<f64> {
        self.redis.zscore(self.keys.timer(0), id).await.unwrap()
    }
}

fn ids(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn far_wake_ups_move_into_the_set_before_they_are_due() {
    let mut r = Rig::new("timers-far").await;
    let due = NOW + 30 * MIN;
    r.far("waits", due).await;
    // Poked by a receipt: due now in the set, its far entry left behind.
    r.far("poked", due).await;
    let _: () = r.redis.zadd(r.keys.timer(0), "poked", NOW).await.unwrap();
    let _: () = r.redis.set(r.keys.state("poked"), "1").await.unwrap();
    // Written late into a slot already past, by an instance whose clock is behind.
    r.far("late", NOW - MIN).await;
    // Not written by `wake.lua`: skipped, and the shard goes on.
    let _: () = r.redis.rpush(r.list(NOW - MIN), "garbage").await.unwrap();

    assert_eq!(r.claim(NOW).await, ids(&["poked", "late"]));
    assert_eq!(
        r.score("waits").await,
        None,
        "30 minutes ahead: still in its list"
    );
    assert_eq!(
        r.score("late").await,
        None,
        "claimed without a record: removed"
    );

    // Within the horizon (2 minutes) of its slot it moves, with its exact
    // time. The poked one keeps its lease (`NX`: what is in the set is
    // newer), so it is claimed again now that nobody stored a decision.
    assert_eq!(
        r.claim_leasing(due - 2 * MIN, 5 * MIN).await,
        ids(&["poked"])
    );
    assert_eq!(r.score("waits").await, Some(due));
    let lists: Vec<String> = r.redis.zrange(r.keys.later(0), 0, -1).await.unwrap();
    assert!(
        lists.is_empty(),
        "every moved slot leaves the index: {lists:?}"
    );
    let left: bool = r.redis.exists(r.list(due)).await.unwrap();
    assert!(!left);

    assert_eq!(r.claim(due - 1).await, ids(&[]));
    assert_eq!(r.claim(due).await, ids(&["waits"]));
}

#[tokio::test]
async fn a_large_slot_moves_in_parts() {
    let mut r = Rig::new("timers-large").await;
    let due = NOW + 30 * MIN;
    let n = 25_000;
    let entries: Vec<String> = (0..n).map(|i| format!("{due} n-{i}")).collect();
    let _: () = redis::pipe()
        .rpush(r.list(due), &entries)
        .zadd(r.keys.later(0), due / MIN, due / MIN)
        .query_async(&mut r.redis)
        .await
        .unwrap();
    // Each claim moves at most 10,000 (one script call must stay short).
    let mut moved = Vec::new();
    for _ in 0..3 {
        r.claim(due - MIN).await;
        let in_set: usize = r.redis.zcard(r.keys.timer(0)).await.unwrap();
        moved.push(in_set);
    }
    assert_eq!(moved, [10_000, 20_000, 25_000]);
    assert_eq!(r.claim(due).await.len(), n);
}

#[tokio::test]
async fn touch_puts_a_far_wake_up_in_its_list_and_a_near_one_in_the_set() {
    let mut r = Rig::new("timers-touch").await;
    let _: () = r.redis.set(r.keys.state("c"), RECORD).await.unwrap();
    // Claimed: leased in the set. Nothing to do yet, and the wake-up is far.
    let _: () = r
        .redis
        .zadd(r.keys.timer(0), "c", NOW + LEASE)
        .await
        .unwrap();
    let due = NOW + 30 * MIN;
    r.store
        .touch("c", 1, Some(due), NONE_SEEN, NOW, None)
        .await
        .unwrap();
    assert_eq!(
        r.score("c").await,
        None,
        "out of the set, or the lease would wake it"
    );
    let listed: Vec<String> = r.redis.lrange(r.list(due), 0, -1).await.unwrap();
    assert_eq!(listed, [format!("{due} c")]);

    let near = NOW + MIN;
    r.store
        .touch("c", 1, Some(near), NONE_SEEN, NOW, None)
        .await
        .unwrap();
    assert_eq!(r.score("c").await, Some(near));
    // A stale version changes nothing.
    r.store
        .touch("c", 0, Some(due), NONE_SEEN, NOW, None)
        .await
        .unwrap();
    assert_eq!(r.score("c").await, Some(near));
}

#[tokio::test]
async fn a_lease_that_runs_out_is_found_lapsed_and_a_receipt_leaves_it_alone() {
    let mut r = Rig::new("timers-lease").await;
    let _: () = r.redis.set(r.keys.state("c"), RECORD).await.unwrap();
    let _: () = r.redis.zadd(r.keys.timer(0), "c", NOW).await.unwrap();

    let claimed = r.store.claim(0, NOW, LEASE, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        claimed[0].lapsed_claim_at_ms, None,
        "first claim of a plain wake-up"
    );
    assert_eq!(claimed[0].lease.until_ms, NOW + LEASE);
    let lease = (NOW + LEASE) as f64 + 0.5;
    assert_eq!(r.raw_score("c").await, Some(lease));

    // A receipt while it is claimed: recorded, but no poke, which would let
    // a second claim take it while the first may be sending; the lease is
    // marked instead (its holder wakes the cascade when it stores).
    let recorded = r
        .store
        .record_receipt("c", "delivered", None, NOW + 1_000)
        .await
        .unwrap();
    assert_eq!(recorded, ReceiptResult::Recorded);
    assert_eq!(r.raw_score("c").await, Some(lease + 0.25));
    assert!(r.claim(NOW + LEASE - 1).await.is_empty());

    // Nobody stored a decision before the lease ran out.
    let claimed = r.store.claim(0, NOW + LEASE + 1, LEASE, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        claimed[0].lapsed_claim_at_ms,
        Some(NOW),
        "found under a lease that ran out, claimed at NOW"
    );

    // A claim given back (its wake-up failed before it stored or sent
    // anything) comes back as a plain wake-up when its lease would end.
    let lease = claimed[0].lease;
    r.store.release_claim("c", &lease).await.unwrap();
    assert_eq!(r.raw_score("c").await, Some(lease.until_ms as f64));
    let claimed = r.store.claim(0, lease.until_ms, LEASE, 10).await.unwrap();
    assert_eq!(claimed[0].lapsed_claim_at_ms, None);

    // A receipt on a cascade nobody holds pokes it at once.
    let _: () = r
        .redis
        .zadd(r.keys.timer(0), "c", NOW + 30 * MIN)
        .await
        .unwrap();
    r.store
        .record_receipt("c", "opened", None, NOW + 2 * LEASE)
        .await
        .unwrap();
    assert_eq!(
        r.raw_score("c").await,
        Some((NOW + 2 * LEASE) as f64 - 0.75),
        "claimable now, marked as asked for"
    );
    assert_eq!(r.claim(NOW + 2 * LEASE).await, ids(&["c"]));
}

#[tokio::test]
async fn a_marked_lease_wakes_the_cascade_when_its_holder_stores() {
    let mut r = Rig::new("timers-marked").await;
    let _: () = r.redis.set(r.keys.state("c"), RECORD).await.unwrap();
    // Within the horizon: in the set, not in a far slot's list.
    let due = NOW + MIN;
    // Held under a lease that a receipt (or an accept of the same id) marked
    // after the holder read the receipts: on a cluster the holder's stored
    // decision and its timer are two calls, and the receipt came between.
    let marked = (NOW + LEASE) as f64 + 0.75;
    let _: () = r.redis.zadd(r.keys.timer(0), "c", marked).await.unwrap();
    r.store
        .touch("c", 1, Some(due), NONE_SEEN, NOW, Some(NOW + LEASE))
        .await
        .unwrap();
    assert_eq!(
        r.score("c").await,
        Some(NOW),
        "woken now, not at its wake-up"
    );
    // Unmarked, the wake-up is the decision's.
    let _: () = r
        .redis
        .zadd(r.keys.timer(0), "c", (NOW + LEASE) as f64 + 0.5)
        .await
        .unwrap();
    // Another claim's lease is left alone: the cascade is its holder's.
    r.store
        .touch("c", 1, Some(due), NONE_SEEN, NOW, Some(NOW + LEASE - 1))
        .await
        .unwrap();
    assert_eq!(r.raw_score("c").await, Some((NOW + LEASE) as f64 + 0.5));
    r.store
        .touch("c", 1, Some(due), NONE_SEEN, NOW, Some(NOW + LEASE))
        .await
        .unwrap();
    assert_eq!(r.score("c").await, Some(due));

    // A state that moved on (version 1 read, 2 stored) under this claim's
    // lease: woken now to be decided afresh; a newer writer's wake-up stays.
    let _: () = r
        .redis
        .set(
            r.keys.state("c"),
            "2\x1fstate\x1fnotification\x1f\x1fhash\t",
        )
        .await
        .unwrap();
    r.store
        .touch("c", 1, Some(due), NONE_SEEN, NOW, Some(NOW + LEASE))
        .await
        .unwrap();
    assert_eq!(r.score("c").await, Some(due), "not this claim's lease");
    let _: () = r
        .redis
        .zadd(r.keys.timer(0), "c", (NOW + LEASE) as f64 + 0.5)
        .await
        .unwrap();
    r.store
        .touch("c", 1, Some(due), NONE_SEEN, NOW, Some(NOW + LEASE))
        .await
        .unwrap();
    assert_eq!(r.score("c").await, Some(NOW), "its own lease: woken now");
}

#[tokio::test]
async fn touch_wakes_at_once_when_the_receipts_changed_since_they_were_read() {
    let mut r = Rig::new("timers-touch-receipts").await;
    let _: () = r.redis.set(r.keys.state("c"), RECORD).await.unwrap();
    let _: () = r
        .redis
        .hset(r.keys.receipts("c"), "delivered", NOW)
        .await
        .unwrap();
    let due = NOW + 30 * MIN;
    // Read with no receipts; one arrived since (while the cascade was claimed).
    r.store
        .touch("c", 1, Some(due), NONE_SEEN, NOW, None)
        .await
        .unwrap();
    assert_eq!(r.score("c").await, Some(NOW), "woken now, to act on it");
    // Read with that receipt: nothing new, back to its wake-up.
    r.store
        .touch("c", 1, Some(due), "1\t", NOW, None)
        .await
        .unwrap();
    assert_eq!(r.score("c").await, None);
    let listed: Vec<String> = r.redis.lrange(r.list(due), 0, -1).await.unwrap();
    assert_eq!(listed, [format!("{due} c")]);
    // A `failed` report is overwritten in place: its value tells.
    let _: () = r
        .redis
        .hset(r.keys.receipts("c"), "failed", NOW)
        .await
        .unwrap();
    let seen = format!("2\t{NOW}");
    r.store
        .touch("c", 1, Some(due), &seen, NOW, None)
        .await
        .unwrap();
    assert_eq!(r.score("c").await, None);
    let _: () = r
        .redis
        .hset(r.keys.receipts("c"), "failed", NOW + 1)
        .await
        .unwrap();
    r.store
        .touch("c", 1, Some(due), &seen, NOW + 5, None)
        .await
        .unwrap();
    assert_eq!(r.score("c").await, Some(NOW + 5));
}

#[tokio::test]
async fn timer_counts_say_what_waits_and_what_is_due_and_claims_say_since_when() {
    let mut r = Rig::new("timers-counts").await;
    let timers = r.keys.timer(0);
    // In the set: due by each kind of score (wake.lua), and not yet due.
    let scores: [(&str, f64); 8] = [
        ("due", (NOW - 5) as f64),
        // A commit's "at once" (commit.lua).
        ("at-once", 0.0),
        ("poked", (NOW - 1) as f64 + 0.25),
        ("lapsed", (NOW - 1_000) as f64 + 0.5),
        ("lapsed-marked", (NOW - 2_000) as f64 + 0.75),
        ("soon", (NOW + MIN) as f64),
        ("leased", (NOW + LEASE) as f64 + 0.5),
        ("marked", (NOW + LEASE) as f64 + 0.75),
    ];
    for (id, score) in scores {
        let _: () = r.redis.zadd(&timers, id, score).await.unwrap();
    }
    // Far lists: two in one slot half an hour ahead, one two hours ahead,
    // and one in a slot already past that no claim has moved yet.
    r.far("far-1", NOW + 30 * MIN).await;
    r.far("far-2", NOW + 30 * MIN + 1).await;
    r.far("far-3", NOW + 120 * MIN).await;
    r.far("overdue", NOW - 5 * MIN).await;

    let counts = r.store.timer_counts(0, NOW).await.unwrap();
    assert_eq!(counts.waiting, 12, "8 in the set, 4 in far lists");
    assert_eq!(
        counts.due, 6,
        "due, at once, poked, both lapsed leases and the overdue far one; not the running leases"
    );
    // The gauges sum the shards; an empty shard counts nothing.
    let empty = Store::connect(
        &common::redis_target(),
        Keys::new(&unique("timers-counts-empty"), 2),
        3_600_000,
    )
    .await
    .unwrap();
    for shard in 0..2 {
        let counts = empty.timer_counts(shard, NOW).await.unwrap();
        assert_eq!((counts.waiting, counts.due), (0, 0));
    }

    // A claim says when each came due, for the lateness histogram: a
    // wake-up at its time, a poke at the moment it asked for (the ms after
    // its score), a lapsed lease the ms after it ended, a far one at its
    // time; a commit's "at once" does not keep when.
    let claimed = r.store.claim(0, NOW, LEASE, 100).await.unwrap();
    let due: std::collections::BTreeMap<String, Option<i64>> =
        claimed.iter().map(|c| (c.id.clone(), c.due_ms)).collect();
    let expected: std::collections::BTreeMap<String, Option<i64>> = [
        ("due", Some(NOW - 5)),
        ("at-once", None),
        ("poked", Some(NOW)),
        ("lapsed", Some(NOW - 999)),
        ("lapsed-marked", Some(NOW - 1_999)),
        ("overdue", Some(NOW - 5 * MIN)),
    ]
    .into_iter()
    .map(|(id, at)| (id.to_owned(), at))
    .collect();
    assert_eq!(due, expected);
    // Claimed (and, without records, forgotten): nothing is due any more.
    let counts = r.store.timer_counts(0, NOW).await.unwrap();
    assert_eq!((counts.waiting, counts.due), (6, 0));
}
