//! Timers in memory: `wake.lua`, `claim.lua`, `touch.lua`, `forget.lua` and
//! `release_claim`, on one ordered set per shard.
//!
//! Redis keeps wake-ups further off than a horizon in per-minute lists and
//! moves them into the shard's sorted set shortly before they come due, only
//! because a list entry costs Redis a third of a set entry. Here every
//! wake-up is in the set: a far one is claimable exactly when Redis's would
//! be (when due), and the only difference is one Redis allows itself — a
//! stale list entry, left behind when a cascade's wake-up moved nearer,
//! may wake it early (the worker then puts its timer back); here the latest
//! write of a wake-up is the only one.

use std::collections::{BTreeSet, HashMap};

use super::State;
use super::cascades::Read;
use crate::runtime::keys::shard_of;
use crate::runtime::store::Lease;

/// A score in a timer set. Redis marks a claim's lease by a fraction
/// (`<end ms>.5`; wake-ups are whole ms); here by `lease`, which orders
/// the same: after the whole ms it ends on, before the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Score {
    ms: i64,
    lease: bool,
}

impl Score {
    /// The first moment it can be claimed: a lease only once it has run
    /// out, after the ms it ends on (`claim.lua`'s `math.ceil`).
    fn claimable_ms(self) -> i64 {
        if self.lease { self.ms + 1 } else { self.ms }
    }

    /// Whether the score is at or before `now_ms` (`ZRANGEBYSCORE -inf now`).
    fn due(self, now_ms: i64) -> bool {
        if self.lease {
            self.ms < now_ms
        } else {
            self.ms <= now_ms
        }
    }
}

/// One id `State::claim` leased.
pub(super) struct ClaimedHere {
    pub id: String,
    /// The end of the lapsed lease it was found under (0 for none).
    pub lapsed_until_ms: i64,
    /// When it came due, as `claim.lua` answers.
    pub due_ms: i64,
    pub read: Option<Read>,
}

/// One shard's wake-ups: a sorted set of ids by score (equal scores by id,
/// as Redis orders them).
#[derive(Default)]
pub(super) struct TimerSet {
    order: BTreeSet<(Score, String)>,
    scores: HashMap<String, Score>,
}

impl TimerSet {
    fn set(&mut self, id: &str, score: Score) {
        if let Some(old) = self.scores.insert(id.to_owned(), score) {
            self.order.remove(&(old, id.to_owned()));
        }
        self.order.insert((score, id.to_owned()));
    }

    /// Sets a whole-ms wake-up (`ZADD`).
    pub fn set_due(&mut self, id: &str, due_ms: i64) {
        self.set(
            id,
            Score {
                ms: due_ms,
                lease: false,
            },
        );
    }

    pub fn remove(&mut self, id: &str) {
        if let Some(old) = self.scores.remove(id) {
            self.order.remove(&(old, id.to_owned()));
        }
    }

    /// Whether `id` is held under a claim's lease.
    pub fn leased(&self, id: &str) -> bool {
        self.scores.get(id).is_some_and(|s| s.lease)
    }

    /// The first moment anything here can be claimed (a lease only once
    /// it has run out: after the ms it ends on).
    pub fn first_claimable_ms(&self) -> Option<i64> {
        self.order.first().map(|(s, _)| s.claimable_ms())
    }

    /// Up to `limit` ids due at `now_ms`, earliest first, with their scores.
    fn due(&self, now_ms: i64, limit: usize) -> Vec<(String, Score)> {
        self.order
            .iter()
            .take_while(|(s, _)| s.due(now_ms))
            .take(limit)
            .map(|(s, id)| (id.clone(), *s))
            .collect()
    }
}

impl State {
    /// The timer set `id` belongs to (its shard, as Redis's `timer_of`).
    pub(super) fn timers_of(&mut self, id: &str) -> &mut TimerSet {
        let shard = shard_of(id, self.shards) as usize;
        &mut self.timers[shard]
    }

    /// `set_wake` in `wake.lua`, the set standing in for the far lists too.
    pub(super) fn set_wake(&mut self, id: &str, due_ms: i64) {
        self.timers_of(id).set_due(id, due_ms);
    }

    /// `claim.lua`, then the read of each claimed id's record and receipts
    /// (`None`: the record is gone; its timer is dropped, as `forget.lua`
    /// does).
    pub(super) fn claim(
        &mut self,
        shard: u16,
        now_ms: i64,
        lease: &Lease,
        limit: usize,
        clock_ms: i64,
    ) -> Vec<ClaimedHere> {
        let set = (shard % self.shards) as usize;
        let due = self.timers[set].due(now_ms, limit);
        let leased = Score {
            ms: lease.until_ms,
            lease: true,
        };
        let mut claimed = Vec::with_capacity(due.len());
        for (id, score) in due {
            self.timers[set].set(&id, leased);
            // A lease run out: its holder stopped before storing what it did.
            let lapsed = if score.lease { score.ms } else { 0 };
            let read = self.read(&id, clock_ms);
            if read.is_none() {
                self.timers[set].remove(&id);
            }
            claimed.push(ClaimedHere {
                id,
                lapsed_until_ms: lapsed,
                due_ms: score.claimable_ms(),
                read,
            });
        }
        claimed
    }

    /// `release_claim`: `ZADD XX LT` the lease's end as a plain wake-up.
    pub(super) fn release_claim(&mut self, id: &str, lease: &Lease) {
        let plain = Score {
            ms: lease.until_ms,
            lease: false,
        };
        let timers = self.timers_of(id);
        if timers.scores.get(id).is_some_and(|s| plain < *s) {
            timers.set(id, plain);
        }
    }

    /// `touch.lua`: nothing when the record moved on or is gone.
    pub(super) fn touch(
        &mut self,
        id: &str,
        version: i64,
        wake_at_ms: Option<i64>,
        receipts_seen: &str,
        now_ms: i64,
        clock_ms: i64,
    ) {
        if self
            .record_mut(id, clock_ms)
            .is_none_or(|s| s.version() != version)
        {
            return;
        }
        // A receipt recorded while the cascade was claimed did not wake it:
        // wake it now — a finished one too, whose next decision counts the
        // receipt for the report.
        if self.receipts_seen(id, clock_ms) != receipts_seen {
            self.set_wake(id, now_ms);
            return;
        }
        match wake_at_ms {
            Some(due) => self.set_wake(id, due),
            None => self.timers_of(id).remove(id),
        }
    }
}
