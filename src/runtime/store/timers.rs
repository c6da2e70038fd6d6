//! Timers: the wake-up of each cascade in its shard (`scripts/wake.lua`),
//! claimed with a lease by the scheduler (`claim.lua`), set after a stored
//! decision (`settle`), put back by a wake-up that changed nothing
//! (`touch.lua`), given back by one that failed (`give_back.lua`), dropped
//! when the cascade is gone (`forget.lua`).

use std::collections::HashMap;

use futures_util::StreamExt;
use redis::{ParsingError, Value};

use super::call::{Call, FromTagged, Reply, Scripts, Tagged, plain_reply};
use super::cascades::Loaded;
use super::connection::RedisConn;
use super::report_counts::CountsArgs;
use super::{Store, StoreError};
use crate::runtime::keys::{Keys, shard_of};

/// Wake-ups further off than this wait in per-minute lists, not in the
/// sorted set (`scripts/wake.lua`).
const WAKE_HORIZON_MS: i64 = 120_000;
/// The length of one such list's slot.
const WAKE_SLOT_MS: i64 = 60_000;
/// Most far wake-ups one claim moves into the sorted set.
const WAKE_MOVE_BUDGET: usize = 10_000;
/// Most far slots one claim looks at (they are minutes: more than a claim
/// every few seconds ever finds due).
const WAKE_SLOTS_PER_CLAIM: isize = 64;

/// How many claimed cascades a claim reads at once on a cluster.
const CLUSTER_READS_IN_FLIGHT: usize = 64;

/// How long a shard whose far slots had nothing due is not looked at again
/// (a round trip before the claim): short enough that a wake-up written
/// just past the horizon still moves into the set well before it is due
/// (the horizon is two minutes, a slot one), long enough that a busy
/// scheduler's claims cost one round trip for the script and one for the
/// records, not three.
const FAR_CHECK_EVERY_MS: i64 = 10_000;

/// What a script that sets a cascade's wake-up needs (`set_wake` in
/// `wake.lua`): the shard's keys come with the script's own KEYS; this is
/// the slot list of the wake-up and the ARGV.
pub(super) struct WakeArgs {
    /// The wake-up, ms, or "" when the cascade is finished.
    pub due: String,
    /// The list of the slot the wake-up falls in (of `now` when finished:
    /// then untouched).
    pub slot_list: String,
    /// now + the horizon, ms.
    pub far_after: i64,
    pub slot_ms: i64,
    /// The cascade's timer shard (its id hashed once for all its keys).
    pub shard: u16,
}

impl WakeArgs {
    pub fn new(keys: &Keys, id: &str, due: Option<i64>, now_ms: i64) -> Self {
        let slot = due.unwrap_or(now_ms).div_euclid(WAKE_SLOT_MS);
        let shard = shard_of(id, keys.shards());
        WakeArgs {
            due: due.map(|d| d.to_string()).unwrap_or_default(),
            slot_list: keys.later_slot(shard, slot),
            far_after: now_ms + WAKE_HORIZON_MS,
            slot_ms: WAKE_SLOT_MS,
            shard,
        }
    }
}

/// `settle`'s KEYS and ARGV (wake.lua): the timer after a stored decision,
/// and the decision's stream entry and report counts. Its wake-up comes
/// from the decision's stored part (which may bring it forward for a
/// receipt it found).
pub(super) struct Settle<'a> {
    pub id: &'a str,
    pub wake: WakeArgs,
    pub now_ms: i64,
    /// The decision's timeline entries, one per line ("" for none).
    pub entries: &'a str,
    /// The end of the claim's lease the decision was made under, while the
    /// timer still holds it (`None` otherwise).
    pub lease_until_ms: Option<i64>,
    /// The decision's report counts, and their hour's hash.
    pub counts: CountsArgs,
}

impl Settle<'_> {
    /// The shard's timer set, far-slot index and events stream; the
    /// wake-up's slot list, the third of `settle`'s keys, is
    /// `wake.slot_list`, and the report hash, the fifth, `counts.key`.
    pub fn keys(&self, keys: &Keys) -> [String; 3] {
        let n = self.wake.shard;
        [keys.timer(n), keys.later(n), keys.events(n)]
    }

    /// `settle`'s parameters after its keys, with the wake-up `due` (""
    /// when finished) as the stored part answered.
    pub fn args(&self, call: &mut Call, due: &str, events_max_len: u64) {
        call.arg(self.id)
            .arg(due)
            .arg(self.now_ms)
            .arg(self.wake.far_after)
            .arg(self.wake.slot_ms)
            .arg(self.entries)
            .arg(events_max_len);
        self.lease_arg(call);
        call.arg(&self.counts.counts).arg(self.counts.keep_until_ms);
    }

    /// The head of a whole commit's ARGV (commit_whole.lua): id, now +
    /// horizon, slot ms, stream bound.
    pub fn head_args(&self, call: &mut Call, events_max_len: u64) {
        call.arg(self.id)
            .arg(self.wake.far_after)
            .arg(self.wake.slot_ms)
            .arg(events_max_len);
    }

    pub fn lease_arg(&self, call: &mut Call) {
        match self.lease_until_ms {
            Some(until) => call.arg(until),
            None => call.arg(""),
        };
    }
}

/// What one claim on a shard took, and when the shard's next cascade can
/// be claimed (`None`: nothing waits in its set), for the scheduler to
/// sleep until then.
pub struct Claims {
    pub due: Vec<Claimed>,
    pub next_ms: Option<i64>,
}

/// A cascade the scheduler claimed, with its record and receipts as read
/// right after the claim: `Store::load_claimed` turns them into a `Loaded`
/// (in the task that wakes it, so the scheduler goes on claiming).
pub struct Claimed {
    pub id: String,
    read: ClaimedRead,
    /// The lease this claim holds.
    pub lease: Lease,
    /// When an earlier claim was made whose lease it was found under, run
    /// out: that claim's holder stopped (died, stalled, lost Redis) without
    /// storing what it did. Taken as the lease's end less this instance's
    /// `claim_lease`: every instance is meant to run with the same.
    pub lapsed_claim_at_ms: Option<i64>,
    /// When it came due (ms): its wake-up, the moment a receipt asked for
    /// it, or the end of the lapsed lease it was found under. `None` for a
    /// wake-up stored as 0, "at once" (`commit.lua`, for a receipt recorded
    /// while its decision was made): when that was is not kept.
    pub due_ms: Option<i64>,
}

/// `Claimed::due_ms` of a score's first claimable ms.
fn due_moment(ms: i64) -> Option<i64> {
    (ms > 0).then_some(ms)
}

/// A claimed cascade's record (`None`: gone) and receipts, as read.
type ClaimedRaw = (Option<String>, HashMap<String, String>);

/// What a claim read of its cascade.
pub(super) enum ClaimedRead {
    /// As Redis gave it: the record (`None`: its keys are gone, retention
    /// ran out) and the receipts hash.
    Raw {
        record: Option<String>,
        receipts: HashMap<String, String>,
    },
    /// Assembled already (the memory store reads with the claim).
    Assembled(Result<Option<Box<Loaded>>, StoreError>),
}

impl Claimed {
    /// A claim whose cascade was read and assembled with it.
    pub(super) fn assembled(
        id: String,
        lease: Lease,
        lapsed_claim_at_ms: Option<i64>,
        due_ms: i64,
        loaded: Result<Option<Loaded>, StoreError>,
    ) -> Claimed {
        Claimed {
            id,
            read: ClaimedRead::Assembled(loaded.map(|l| l.map(Box::new))),
            lease,
            lapsed_claim_at_ms,
            due_ms: due_moment(due_ms),
        }
    }

    /// What the claim read, taken (a second take finds the cascade gone).
    pub(super) fn take_read(&mut self) -> ClaimedRead {
        std::mem::replace(&mut self.read, ClaimedRead::Assembled(Ok(None)))
    }
}

/// What one timer shard holds (`Store::timer_counts`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerCounts {
    /// Every wake-up stored: the sorted set's (claimed ones under their
    /// leases included) and the far lists' entries.
    pub waiting: u64,
    /// Of those, the ones due and not claimed: the sorted set's scores up
    /// to now (a lease only once it has run out) and the entries of far
    /// slots wholly past (which a claim has not moved yet).
    pub due: u64,
}

impl std::ops::Add for TimerCounts {
    type Output = TimerCounts;
    fn add(self, other: TimerCounts) -> TimerCounts {
        TimerCounts {
            waiting: self.waiting + other.waiting,
            due: self.due + other.due,
        }
    }
}

/// A claim's lease on a cascade: its score in the timer set ends at
/// `until_ms`; by this process's monotonic clock it ends at `deadline`
/// (measured from before the claim, so it is never later than Redis's).
#[derive(Clone, Copy, Debug)]
pub struct Lease {
    pub until_ms: i64,
    pub deadline: std::time::Instant,
}

/// `claim.lua`'s KEYS and ARGV.
struct ClaimArgs<'a> {
    timers: String,
    later: String,
    /// The far slots due within the horizon, as read from the index.
    slots: &'a [i64],
    slot_lists: Vec<String>,
    now_ms: i64,
    lease_until_ms: i64,
    limit: usize,
}

impl Lease {
    /// A lease of `lease_ms` from `now_ms`, its monotonic end measured from
    /// `started`, taken before the claim. Saturating: an absurd
    /// `claim_lease` must not panic the scheduler.
    pub(super) fn new(now_ms: i64, lease_ms: i64, started: std::time::Instant) -> Lease {
        Lease {
            until_ms: now_ms.saturating_add(lease_ms),
            deadline: started
                .checked_add(std::time::Duration::from_millis(lease_ms.max(0) as u64))
                .unwrap_or(started),
        }
    }
}

impl ClaimArgs<'_> {
    fn call<'s>(&self, scripts: &'s Scripts) -> Call<'s> {
        let mut keys: Vec<&str> = vec![&self.timers, &self.later];
        keys.extend(self.slot_lists.iter().map(String::as_str));
        let mut call = Call::new(&scripts.claim, &keys);
        call.arg(self.now_ms)
            // The half marks the score as a lease (claim.lua).
            .arg(format!("{}.5", self.lease_until_ms))
            .arg(self.limit)
            .arg(self.now_ms + WAKE_HORIZON_MS)
            .arg(WAKE_SLOT_MS)
            .arg(WAKE_MOVE_BUDGET);
        for slot in self.slots {
            call.arg(*slot);
        }
        call
    }
}

/// `claim.lua`'s reply: when the shard's next cascade can be claimed, and
/// each id it leased.
struct ClaimReply(Option<i64>, Vec<ClaimedId>);

/// One id `claim.lua` leased.
struct ClaimedId {
    id: String,
    /// The end of the lapsed lease it was found under (0 for none).
    lapsed_until_ms: i64,
    due_ms: i64,
}

impl redis::FromRedisValue for ClaimReply {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let flat: Vec<Value> = redis::FromRedisValue::from_redis_value(v)?;
        let Some((next, flat)) = flat.split_first() else {
            return Err(ParsingError::from(
                "claim.lua replied with nothing".to_owned(),
            ));
        };
        let next: i64 = redis::FromRedisValue::from_redis_value_ref(next)?;
        let next = (next >= 0).then_some(next);
        flat.chunks(3)
            .map(|triple| match triple {
                [id, lapsed, due] => Ok(ClaimedId {
                    id: redis::FromRedisValue::from_redis_value_ref(id)?,
                    lapsed_until_ms: redis::FromRedisValue::from_redis_value_ref(lapsed)?,
                    due_ms: redis::FromRedisValue::from_redis_value_ref(due)?,
                }),
                _ => Err(ParsingError::from(
                    "claim.lua replied with a list not of triples".to_owned(),
                )),
            })
            .collect::<Result<_, _>>()
            .map(|ids| ClaimReply(next, ids))
    }
}

/// `forget.lua`'s reply.
enum ForgetReply {
    Forgotten,
    Kept,
}

impl FromTagged for ForgetReply {
    fn from_tagged(t: Tagged) -> Result<Self, ParsingError> {
        match t.word.as_str() {
            "forgotten" => Ok(ForgetReply::Forgotten),
            "kept" => Ok(ForgetReply::Kept),
            _ => t.unexpected(),
        }
    }
}
plain_reply!(ForgetReply);

/// `touch.lua`'s KEYS and ARGV.
struct TouchArgs<'a> {
    id: &'a str,
    version: i64,
    receipts_seen: &'a str,
    settle: Settle<'a>,
}

impl TouchArgs<'_> {
    fn record_keys(&self, keys: &Keys) -> [String; 2] {
        [keys.state(self.id), keys.receipts(self.id)]
    }

    /// `touch_record`'s parameters after its keys.
    fn record_args(&self, call: &mut Call) {
        call.arg(self.version)
            .arg(&self.settle.wake.due)
            .arg(self.receipts_seen)
            .arg(self.settle.now_ms);
    }
}

/// `touch.lua`'s reply.
enum TouchReply {
    /// The timer is to be set (a whole call has set it) to this wake-up.
    Set(String),
    /// The state moved on (its newer writer set the timer) or is gone.
    MovedOn,
}

impl FromTagged for TouchReply {
    fn from_tagged(t: Tagged) -> Result<Self, ParsingError> {
        match t.word.as_str() {
            "set" => Ok(TouchReply::Set(t.value(0)?)),
            "moved_on" => Ok(TouchReply::MovedOn),
            _ => t.unexpected(),
        }
    }
}

impl Store {
    /// Claims up to `limit` due cascades of one shard, leasing them for
    /// `lease_ms`, and reads each right after (one pipelined round trip for
    /// all). Claims go over a connection of their own, so they do not queue
    /// behind the commits of the wake-ups in progress (the scheduler waits
    /// for each claim, and workers would sit idle meanwhile).
    /// Also says when the shard's next cascade can be claimed.
    pub async fn claim_due(
        &self,
        shard: u16,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Claims, StoreError> {
        let mut c = self.claims.clone();
        let lease = Lease::new(now_ms, lease_ms, std::time::Instant::now());
        let slots = self.far_slots_due(shard, now_ms).await?;
        let args = ClaimArgs {
            timers: self.keys.timer(shard),
            later: self.keys.later(shard),
            slot_lists: slots
                .iter()
                .map(|s| self.keys.later_slot(shard, *s))
                .collect(),
            slots: &slots,
            now_ms,
            lease_until_ms: lease.until_ms,
            limit,
        };
        let ClaimReply(next_ms, ids) = args.call(&self.scripts).invoke(&mut c).await?;
        if ids.is_empty() {
            return Ok(Claims {
                due: Vec::new(),
                next_ms,
            });
        }
        let reads = self.read_claimed(&mut c, &ids).await?;
        let mut claimed = Vec::with_capacity(ids.len());
        for (
            ClaimedId {
                id,
                lapsed_until_ms,
                due_ms,
            },
            read,
        ) in ids.into_iter().zip(reads)
        {
            let read = match read {
                Ok((None, _)) => {
                    if let Err(e) = self.forget(&id, now_ms).await {
                        tracing::warn!(notification_id = id, error = %e, "cannot forget a claimed cascade whose record is gone; its lease brings it back");
                    }
                    ClaimedRead::Raw {
                        record: None,
                        receipts: HashMap::new(),
                    }
                }
                Ok((record, receipts)) => ClaimedRead::Raw { record, receipts },
                // The wake-up gives the lease back.
                Err(e) => ClaimedRead::Assembled(Err(e)),
            };
            claimed.push(Claimed {
                id,
                read,
                lease,
                lapsed_claim_at_ms: (lapsed_until_ms > 0).then(|| lapsed_until_ms - lease_ms),
                due_ms: due_moment(due_ms),
            });
        }
        Ok(Claims {
            due: claimed,
            next_ms,
        })
    }

    /// The far slots of `shard` that come within the horizon, oldest first
    /// (`claim.lua` moves their lists into the set); none without a look
    /// when the shard was looked at less than `FAR_CHECK_EVERY_MS` ago.
    async fn far_slots_due(&self, shard: u16, now_ms: i64) -> Result<Vec<i64>, StoreError> {
        let index = usize::from(shard);
        let checked_ms = self
            .far_checked_ms
            .lock()
            .ok()
            .and_then(|c| c.get(index).copied())
            .unwrap_or(i64::MIN);
        // A clock that went back looks again at once.
        if (0..FAR_CHECK_EVERY_MS).contains(&now_ms.saturating_sub(checked_ms)) {
            return Ok(Vec::new());
        }
        let upto = (now_ms + WAKE_HORIZON_MS).div_euclid(WAKE_SLOT_MS);
        let mut c = self.claims.clone();
        let slots: Vec<i64> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.keys.later(shard))
            .arg("-inf")
            .arg(upto)
            .arg("LIMIT")
            .arg(0)
            .arg(WAKE_SLOTS_PER_CLAIM)
            .query_async(&mut c)
            .await?;
        // Only when nothing is due: a slot the claim moves in parts, or a
        // full page, leaves more for the next claim to move.
        if slots.is_empty()
            && let Ok(mut checked) = self.far_checked_ms.lock()
            && let Some(at) = checked.get_mut(index)
        {
            *at = now_ms;
        }
        Ok(slots)
    }

    /// Counts what waits in one timer shard at `now_ms`, for the gauges:
    /// one pipelined round trip (ZCARD and ZCOUNT of the sorted set, the far
    /// slots from the index), and one more with an LLEN per far slot when
    /// there are any. Every key is the shard's (`{<n>}`), so on a cluster
    /// both stay in one slot. A stale far entry (left behind when its
    /// cascade's wake-up moved nearer) counts too: Redis cannot tell it
    /// from a live one without reading it.
    pub async fn timer_counts(&self, shard: u16, now_ms: i64) -> Result<TimerCounts, StoreError> {
        let mut c = self.conn.clone();
        let timers = self.keys.timer(shard);
        let (in_set, due_in_set, slots): (u64, u64, Vec<i64>) = redis::pipe()
            .zcard(&timers)
            .zcount(&timers, "-inf", now_ms)
            .zrange(self.keys.later(shard), 0, -1)
            .query_async(&mut c)
            .await?;
        let mut counts = TimerCounts {
            waiting: in_set,
            due: due_in_set,
        };
        if slots.is_empty() {
            return Ok(counts);
        }
        let mut pipe = redis::pipe();
        for slot in &slots {
            pipe.llen(self.keys.later_slot(shard, *slot));
        }
        let lengths: Vec<u64> = pipe.query_async(&mut c).await?;
        let current_slot = now_ms.div_euclid(WAKE_SLOT_MS);
        for (slot, n) in slots.iter().zip(lengths) {
            counts.waiting += n;
            if *slot < current_slot {
                counts.due += n;
            }
        }
        Ok(counts)
    }

    /// The records (MGET) and receipts (HGETALL each) of claimed ids, in one
    /// pipelined round trip (on a cluster, one per id, all at once: a
    /// pipeline there stays in one slot). Read after the claim, so a receipt
    /// recorded before the lease was taken is seen (one recorded after it
    /// marks the lease, and the holder wakes the cascade at once when it
    /// stores what it did: `wake.lua`).
    async fn read_claimed(
        &self,
        c: &mut RedisConn,
        ids: &[ClaimedId],
    ) -> Result<Vec<Result<ClaimedRaw, StoreError>>, StoreError> {
        if self.split {
            let reads: Vec<_> = ids
                .iter()
                .map(|ClaimedId { id, .. }| {
                    let mut pipe = redis::pipe();
                    pipe.get(self.keys.state(id))
                        .hgetall(self.keys.receipts(id));
                    let mut c = c.clone();
                    async move {
                        pipe.query_async::<ClaimedRaw>(&mut c)
                            .await
                            .map_err(StoreError::from)
                    }
                })
                .collect();
            // A bounded number in flight: a large claim must not queue
            // thousands of requests behind each other's response timeouts.
            // Each read stands alone: a node that fails costs its cascades
            // their wake-up (they give their leases back), not the batch.
            return Ok(futures_util::stream::iter(reads)
                .buffered(CLUSTER_READS_IN_FLIGHT)
                .collect()
                .await);
        }
        let mut pipe = redis::pipe();
        let states: Vec<String> = ids.iter().map(|c| self.keys.state(&c.id)).collect();
        pipe.cmd("MGET").arg(&states);
        for c in ids {
            pipe.hgetall(self.keys.receipts(&c.id));
        }
        let mut answers: Vec<Value> = pipe.query_async(c).await?;
        let records: Vec<Option<String>> =
            redis::FromRedisValue::from_redis_value(answers.remove(0))
                .map_err(redis::RedisError::from)?;
        let receipts = answers
            .into_iter()
            .map(|v| redis::FromRedisValue::from_redis_value(v).map_err(redis::RedisError::from))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(records.into_iter().zip(receipts).map(Ok).collect())
    }

    /// Takes a claimed id whose record is gone out of its timer shard.
    async fn forget(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        let mut c = self.claims.clone();
        let _: ForgetReply = Call::new(&self.scripts.forget, &[&self.keys.timer_of(id)])
            .arg(id)
            .arg(now_ms)
            .invoke(&mut c)
            .await?;
        Ok(())
    }

    /// A claimed cascade as loaded for a decision; `None` when its keys are
    /// gone. A cascade that cannot be read comes with its error (its lease
    /// brings it back).
    pub async fn load_claimed(&self, claimed: &mut Claimed) -> Result<Option<Loaded>, StoreError> {
        match claimed.take_read() {
            ClaimedRead::Raw { record, receipts } => {
                self.loaded(&claimed.id, record, receipts).await
            }
            ClaimedRead::Assembled(loaded) => loaded.map(|l| l.map(|l| *l)),
        }
    }

    /// Gives back a claim's lease on `id` that nothing was stored under (a
    /// wake-up that failed before it could send or store): the cascade is
    /// woken again when the lease would have ended, as a plain wake-up, not
    /// as a lapsed claim, whose send would count as uncertain
    /// (`give_back.lua`).
    pub async fn release_claim(&self, id: &str, lease: &Lease) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: Value = Call::new(&self.scripts.give_back, &[&self.keys.timer_of(id)])
            .arg(id)
            .arg(lease.until_ms)
            .invoke(&mut c)
            .await?;
        Ok(())
    }

    /// Sets a cascade's timer after a decision was stored on a cluster
    /// (`settle` in wake.lua), at `due` as the stored part answered.
    pub(super) async fn settle(&self, settle: &Settle<'_>, due: &str) -> Result<(), StoreError> {
        let [timers, later, events] = settle.keys(&self.keys);
        let room = settle.entries.len() + 128;
        let keys = [
            &timers[..],
            &later,
            &settle.wake.slot_list,
            &events,
            &settle.counts.key,
        ];
        let room = room + settle.counts.counts.len();
        let mut call = Call::with_room(&self.scripts.settle, &keys, 10, room);
        settle.args(&mut call, due, self.events_max_len);
        let _: Value = call.invoke(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Puts the timer back at the state's wake-up after a decision that
    /// changed nothing (claiming moved it to the lease's end), or wakes it
    /// now if the receipts changed since `receipts_seen` (`Loaded`).
    /// `lease_until_ms`: the claim's lease, while the timer holds it. A
    /// state that moved on under it is woken now, to be decided afresh.
    pub async fn touch(
        &self,
        id: &str,
        version: i64,
        wake_at_ms: Option<i64>,
        receipts_seen: &str,
        now_ms: i64,
        lease_until_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let args = TouchArgs {
            id,
            version,
            receipts_seen,
            settle: Settle {
                id,
                wake: WakeArgs::new(&self.keys, id, wake_at_ms, now_ms),
                now_ms,
                entries: "",
                lease_until_ms,
                counts: self.no_counts(id, now_ms),
            },
        };
        let mut c = self.conn.clone();
        let record = args.record_keys(&self.keys);
        if self.split {
            let mut call = Call::new(&self.scripts.touch_record, &[&record[0], &record[1]]);
            args.record_args(&mut call);
            let reply: Reply<TouchReply> = call.invoke(&mut c).await?;
            match reply.about(id)? {
                TouchReply::Set(due) => self.settle(&args.settle, &due).await?,
                TouchReply::MovedOn => {
                    if let Some(lease) = lease_until_ms {
                        let _: Value =
                            Call::new(&self.scripts.wake_held, &[&self.keys.timer_of(id)])
                                .arg(id)
                                .arg(lease)
                                .arg(now_ms)
                                .invoke(&mut c)
                                .await?;
                    }
                }
            }
            return Ok(());
        }
        // touch_whole.lua's layout.
        let [timers, later, events] = args.settle.keys(&self.keys);
        let keys = [
            &record[0][..],
            &record[1],
            &timers,
            &later,
            &args.settle.wake.slot_list,
            &events,
            &args.settle.counts.key,
        ];
        let mut call = Call::new(&self.scripts.touch, &keys);
        call.arg(id);
        args.record_args(&mut call);
        call.arg(args.settle.wake.far_after)
            .arg(args.settle.wake.slot_ms)
            .arg(self.events_max_len);
        args.settle.lease_arg(&mut call);
        let reply: Reply<TouchReply> = call.invoke(&mut c).await?;
        match reply.about(id)? {
            TouchReply::Set(_) | TouchReply::MovedOn => Ok(()),
        }
    }
}
