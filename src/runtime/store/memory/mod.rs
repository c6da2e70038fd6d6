//! The store in memory, for `demo` and `simulate`: the same answers as the
//! Redis store (`tests/store_contract.rs` holds them together), with no
//! I/O. Each method is what its Lua script does, in Rust, on plain maps
//! behind one mutex (never held across an await: nothing here awaits).
//!
//! Time: the answers depend only on the `now_ms` a caller passes, as the
//! scripts' do. How long a key lives (retention, dedup, index and limit
//! keys) runs on the clock given to `MemoryStore::new`, as Redis's TTLs
//! run on Redis's clock: on a virtual clock both move together.
//!
//! The modules follow the concerns: `cascades` (accept, load, commit,
//! status, receipts), `timers`, `limits`, `index` (provider index, dedup).

mod cascades;
mod index;
mod limits;
mod timers;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::cascade_store::CascadeStore;
use super::rates::interval_us;
use super::report_counts::{Counters, ReportBook, SegmentLookup, take_segment};
use super::timers::ClaimedRead;
use super::{
    Accepted, Claimed, Claims, CommitReply, CommitRequest, EVENTS_MAX_LEN, Lease, Loaded, RateTake,
    ReceiptResult, StoreError,
};
use crate::config::ChannelConfig;
use crate::core::{Cascade, Decision, Entry, Policy, Rate};
use crate::notification::Admitted;
use crate::report::{Count, field, hour_of};
use crate::runtime::clock::Clock;
use crate::runtime::record::encode_entry;

/// The store in memory. Cheap to clone: clones share the data.
#[derive(Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
}

/// One entry of the events stream: the notification id ("" for none) and
/// its timeline entries, one per line (as Redis's `cascade:events`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEntry {
    pub id: String,
    pub entries: String,
}

/// Everything the store holds. Its methods (in the modules) are the
/// scripts; `clock_ms` in their arguments is the store's clock, for keys'
/// lifetimes only.
struct State {
    retention_ms: i64,
    shards: u16,
    cascades: HashMap<String, cascades::Stored>,
    receipts: HashMap<String, cascades::Receipts>,
    /// One ordered set per shard (`timers`).
    timers: Vec<timers::TimerSet>,
    limits: limits::Limits,
    /// Per channel: its next free moment for throughput, µs (`rate.lua`).
    rates: HashMap<String, i64>,
    index: index::Index,
    /// Bounded by `EVENTS_MAX_LEN` (exactly; Redis trims approximately).
    events: VecDeque<StreamEntry>,
    report: ReportBook,
    /// The report counters by hour (`add_counts` in wake.lua); one map for
    /// every shard, whose sums the report reads.
    counts: BTreeMap<i64, Counters>,
    /// Per policy: the segments counted on their own (`segment.lua`).
    segments: HashMap<String, HashSet<String>>,
}

/// Whether a key set to expire at `expires_at_ms` still lives at `clock_ms`
/// (Redis: a key expires once its time has passed).
fn alive(expires_at_ms: Option<i64>, clock_ms: i64) -> bool {
    expires_at_ms.is_none_or(|at| clock_ms <= at)
}

impl State {
    /// `segment.lua` behind the book's cache.
    fn segment(&mut self, policy: &str, raw: Option<&str>) -> String {
        match self.report.lookup(policy, raw) {
            SegmentLookup::Known(name) => name,
            SegmentLookup::Ask(name) => {
                let set = self.segments.entry(policy.to_owned()).or_default();
                let answer = take_segment(set, &name, self.report.max_segments());
                self.report.learn(policy, &name, answer)
            }
        }
    }

    /// `add_counts` (wake.lua); hours past their retention are dropped.
    fn add_counts(
        &mut self,
        policy: &str,
        segment: &str,
        counts: &[Count],
        now_ms: i64,
        clock_ms: i64,
    ) {
        if counts.is_empty() {
            return;
        }
        let hour = hour_of(now_ms);
        if !self.counts.contains_key(&hour) {
            let report = self.report.clone();
            self.counts
                .retain(|h, _| report.keep_until_ms(*h) >= clock_ms);
        }
        let hash = self.counts.entry(hour).or_default();
        for c in counts {
            *hash
                .entry(field(policy, c.step, &c.channel, segment, &c.metric))
                .or_default() += c.n;
        }
    }

    fn push_event(&mut self, id: &str, entries: String) {
        if self.events.len() as u64 >= EVENTS_MAX_LEN {
            self.events.pop_front();
        }
        self.events.push_back(StreamEntry {
            id: id.to_owned(),
            entries,
        });
    }
}

impl MemoryStore {
    /// An empty store whose cascades are kept `retention_ms` once finished,
    /// its timers spread over `shards` like Redis's, its keys' lifetimes on
    /// `clock`.
    pub fn new(clock: Arc<dyn Clock>, retention_ms: i64, shards: u16) -> MemoryStore {
        let shards = shards.max(1);
        let state = State {
            retention_ms,
            shards,
            cascades: HashMap::new(),
            receipts: HashMap::new(),
            timers: (0..shards).map(|_| timers::TimerSet::default()).collect(),
            limits: limits::Limits::default(),
            rates: HashMap::new(),
            index: index::Index::default(),
            events: VecDeque::new(),
            report: ReportBook::default(),
            counts: BTreeMap::new(),
            segments: HashMap::new(),
        };
        MemoryStore {
            state: Arc::new(Mutex::new(state)),
            clock,
        }
    }

    /// The data and the store's clock. A panic while locked (a bug) leaves
    /// the data as it was at the panic; later calls still get it.
    fn lock(&self) -> (MutexGuard<'_, State>, i64) {
        let clock_ms = self.clock.now_ms();
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (state, clock_ms)
    }

    /// The store with the report counters kept as `report` says.
    pub fn with_report(self, report: ReportBook) -> MemoryStore {
        self.lock().0.report = report;
        self
    }

    /// The events stream, oldest first.
    pub fn events(&self) -> Vec<StreamEntry> {
        self.lock().0.events.iter().cloned().collect()
    }

    /// The first moment a claim would find something due, on any shard:
    /// what a virtual clock jumps to next.
    pub fn next_wake_ms(&self) -> Option<i64> {
        let (state, _) = self.lock();
        state
            .timers
            .iter()
            .filter_map(timers::TimerSet::first_claimable_ms)
            .min()
    }

    /// A receipt written straight into the receipts hash by another system
    /// (contract §6: any system may write there), as `HSET` would: no
    /// timeline entry, no wake-up. What `accept` finds from before the
    /// notification arrived.
    pub fn put_receipt(&self, id: &str, event: &str, at_ms: i64) {
        let (mut state, clock_ms) = self.lock();
        state.put_receipt(id, event, at_ms, clock_ms);
    }
}

use crate::core::receipt_data::ReceiptData;

impl CascadeStore for MemoryStore {
    fn shards(&self) -> u16 {
        self.lock().0.shards
    }

    async fn accept(
        &self,
        admitted: &Admitted<'_>,
        policy: &Policy,
        decision: &Decision,
        segment: &str,
        counts: &[Count],
        now_ms: i64,
    ) -> Result<Accepted, StoreError> {
        let kept = cascades::Kept::of(admitted, policy)?;
        let (mut state, clock_ms) = self.lock();
        let accepted = state.accept(kept, policy, decision, clock_ms);
        if matches!(accepted, Accepted::New(_)) {
            state.add_counts(&policy.name, segment, counts, now_ms, clock_ms);
        }
        Ok(accepted)
    }

    async fn segment(&self, policy: &str, raw: Option<&str>) -> Result<String, StoreError> {
        Ok(self.lock().0.segment(policy, raw))
    }

    async fn report_counts(&self, from: i64, to: i64) -> Result<Counters, StoreError> {
        let (state, _) = self.lock();
        let mut out = Counters::new();
        for (_, hash) in state.counts.range(from..to) {
            for (k, v) in hash {
                *out.entry(k.clone()).or_default() += v;
            }
        }
        Ok(out)
    }

    async fn load(&self, id: &str) -> Result<Option<Loaded>, StoreError> {
        let read = {
            let (mut state, clock_ms) = self.lock();
            state.read(id, clock_ms)
        };
        read.map(|r| r.assemble(id)).transpose()
    }

    async fn commit(&self, request: CommitRequest<'_>) -> Result<CommitReply, StoreError> {
        let (mut state, clock_ms) = self.lock();
        Ok(state.commit(request, clock_ms))
    }

    async fn status(&self, id: &str) -> Result<Option<(Cascade, Vec<Entry>)>, StoreError> {
        let (mut state, clock_ms) = self.lock();
        state.status(id, clock_ms)
    }

    async fn claim_due(
        &self,
        shard: u16,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Claims, StoreError> {
        let lease = Lease::new(now_ms, lease_ms, std::time::Instant::now());
        let (reads, next_ms) = {
            let (mut state, clock_ms) = self.lock();
            let reads = state.claim(shard, now_ms, &lease, limit, clock_ms);
            let set = (shard % state.shards) as usize;
            (reads, state.timers[set].first_claimable_ms())
        };
        // Assembled out of the lock: it parses the notification.
        let due = reads
            .into_iter()
            .map(|c| {
                let loaded = c.read.map(|r| r.assemble(&c.id)).transpose();
                let lapsed = (c.lapsed_until_ms > 0).then(|| c.lapsed_until_ms - lease_ms);
                Claimed::assembled(c.id, lease, lapsed, c.due_ms, loaded)
            })
            .collect();
        Ok(Claims { due, next_ms })
    }

    async fn load_claimed(&self, claimed: &mut Claimed) -> Result<Option<Loaded>, StoreError> {
        match claimed.take_read() {
            ClaimedRead::Assembled(loaded) => loaded.map(|l| l.map(|l| *l)),
            ClaimedRead::Raw { .. } => Err(StoreError::Corrupt {
                id: claimed.id.clone(),
                why: "claimed from another store".into(),
            }),
        }
    }

    async fn release_claim(&self, id: &str, lease: &Lease) -> Result<(), StoreError> {
        self.lock().0.release_claim(id, lease);
        Ok(())
    }

    async fn touch(
        &self,
        id: &str,
        version: i64,
        wake_at_ms: Option<i64>,
        receipts_seen: &str,
        now_ms: i64,
        // One process holds every claim here: no other claim's lease to spare.
        _lease_until_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let (mut state, clock_ms) = self.lock();
        state.touch(id, version, wake_at_ms, receipts_seen, now_ms, clock_ms);
        Ok(())
    }

    async fn take_limit(
        &self,
        customer: &str,
        policy: &Policy,
        channel: &ChannelConfig,
        member: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let scopes = super::limits::limit_scopes(policy, channel);
        let (mut state, clock_ms) = self.lock();
        Ok(state
            .limits
            .take(customer, &scopes, member, now_ms, clock_ms))
    }

    async fn release_limit(
        &self,
        customer: &str,
        policy: &Policy,
        channel: &ChannelConfig,
        member: &str,
    ) -> Result<(), StoreError> {
        let scopes = super::limits::limit_scopes(policy, channel);
        let (mut state, clock_ms) = self.lock();
        state.limits.release(customer, &scopes, member, clock_ms);
        Ok(())
    }

    async fn take_rate(
        &self,
        channel: &str,
        rate: Rate,
        max_wait: Duration,
    ) -> Result<RateTake, StoreError> {
        // `rate.lua` on the store's clock (Redis's own there).
        let (mut state, clock_ms) = self.lock();
        let now = clock_ms * 1000;
        let slot = state.rates.get(channel).copied().unwrap_or(0).max(now);
        let delay = Duration::from_micros((slot - now) as u64);
        if delay > max_wait {
            return Ok(RateTake::Wait(delay));
        }
        state
            .rates
            .insert(channel.to_owned(), slot + interval_us(rate) as i64);
        Ok(RateTake::Taken(delay))
    }

    async fn record_receipt_with_data(
        &self,
        id: &str,
        event: &str,
        channel: Option<&str>,
        data: &ReceiptData,
        now_ms: i64,
    ) -> Result<ReceiptResult, StoreError> {
        let (mut state, clock_ms) = self.lock();
        Ok(state.record_receipt(id, event, channel, data, now_ms, clock_ms))
    }

    async fn receipt_data(&self, id: &str) -> Result<ReceiptData, StoreError> {
        let (mut state, clock_ms) = self.lock();
        Ok(state.receipt_data(id, clock_ms))
    }

    async fn provider_message(
        &self,
        channel: &str,
        provider_message_id: &str,
    ) -> Result<Option<(String, u8)>, StoreError> {
        let (state, clock_ms) = self.lock();
        Ok(state.index.message(channel, provider_message_id, clock_ms))
    }

    async fn newest_known_provider_message(
        &self,
        channel: &str,
        provider_message_ids: &[String],
    ) -> Result<Option<(String, u8)>, StoreError> {
        let (state, clock_ms) = self.lock();
        Ok(provider_message_ids
            .iter()
            .find_map(|m| state.index.message(channel, m, clock_ms)))
    }

    async fn peer_messages_up_to(
        &self,
        channel: &str,
        peer: &str,
        max_id: i64,
        now_ms: i64,
    ) -> Result<Vec<(String, u8)>, StoreError> {
        let (state, clock_ms) = self.lock();
        let retention_ms = state.retention_ms;
        Ok(state
            .index
            .peer_messages_up_to(channel, peer, max_id, now_ms, retention_ms, clock_ms))
    }

    async fn first_time(&self, key: &str, ttl_s: u64) -> Result<bool, StoreError> {
        let (mut state, clock_ms) = self.lock();
        Ok(state.index.first_time(key, ttl_s, clock_ms))
    }

    async fn forget_seen(&self, key: &str) {
        self.lock().0.index.forget_seen(key);
    }

    async fn append_event(&self, id: Option<&str>, entry: &Entry) -> Result<(), StoreError> {
        self.lock()
            .0
            .push_event(id.unwrap_or(""), encode_entry(entry));
        Ok(())
    }
}
