//! What the daemon asks of a store, as a trait with two implementations:
//! Redis (`Store`, the daemon's) and memory (`MemoryStore`, for `demo` and
//! `simulate` on a virtual clock). `tests/store_contract.rs` plays the same
//! scenarios on both and requires the same answers.
//!
//! The methods are those of `Store` the worker, intake, scheduler and the
//! HTTP receipts and callbacks call. Redis-only helpers stay off it:
//! `Store::connection` and `Store::keys` (the WhatsApp callbacks still read
//! seen keys through them directly, `http/callbacks/whatsapp.rs`).
//! Futures are `Send`: the scheduler spawns the wake-ups that call them.

use std::future::Future;
use std::time::Duration;

use super::{
    Accepted, Claimed, Claims, CommitReply, CommitRequest, Counters, Lease, Loaded, RateTake,
    ReceiptResult, Store, StoreError,
};
use crate::config::ChannelConfig;
use crate::core::receipt_data::ReceiptData;
use crate::core::{Cascade, Decision, Entry, Policy, Rate};
use crate::notification::Admitted;
use crate::report::Count;

/// Cascade state, timers, receipts, per-customer limits, the provider
/// index, callback dedup and the events stream. Every call that changes a
/// cascade is atomic. Times passed as `now_ms` are the caller's clock;
/// how long keys are kept runs on the store's own.
pub trait CascadeStore: Clone + Send + Sync + 'static {
    /// How many timer shards `claim` takes from (`0..shards`).
    fn shards(&self) -> u16;

    /// Records a new cascade, unless its id is known. When `decision`
    /// orders a send, a stopping receipt already recorded refuses it.
    /// `counts`: what it adds to the report (report/tally.rs), under the
    /// customer `segment` (`segment`).
    fn accept(
        &self,
        admitted: &Admitted<'_>,
        policy: &Policy,
        decision: &Decision,
        segment: &str,
        counts: &[Count],
        now_ms: i64,
    ) -> impl Future<Output = Result<Accepted, StoreError>> + Send;

    /// The segment a notification of `policy` counts under in the report:
    /// a configured one, one of the first seen for the policy, or `other`.
    fn segment(
        &self,
        policy: &str,
        raw: Option<&str>,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// The report counters of hours `from..to` (Unix ms / 1h), summed.
    fn report_counts(
        &self,
        from: i64,
        to: i64,
    ) -> impl Future<Output = Result<Counters, StoreError>> + Send;

    /// A cascade and its receipts, for a decision; `None` when unknown.
    fn load(&self, id: &str) -> impl Future<Output = Result<Option<Loaded>, StoreError>> + Send;

    /// Stores a decision made on `request.version` (refused when the
    /// version moved on, or when it orders a send and a stopping receipt is
    /// recorded), and sets the cascade's wake-up.
    fn commit(
        &self,
        request: CommitRequest<'_>,
    ) -> impl Future<Output = Result<CommitReply, StoreError>> + Send;

    /// The state and timeline of a cascade, for `cascade status`.
    fn status(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<(Cascade, Vec<Entry>)>, StoreError>> + Send;

    /// Up to `limit` due cascades of `shard`, each leased for `lease_ms`;
    /// one found under a lease that ran out says so (`lapsed_claim_at_ms`).
    /// Also when the shard's next cascade can be claimed.
    fn claim_due(
        &self,
        shard: u16,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Claims, StoreError>> + Send;

    /// `claim_due`, the due cascades only.
    fn claim(
        &self,
        shard: u16,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Claimed>, StoreError>> + Send {
        async move { Ok(self.claim_due(shard, now_ms, lease_ms, limit).await?.due) }
    }

    /// A claimed cascade as loaded for a decision; `None` when it is gone.
    fn load_claimed(
        &self,
        claimed: &mut Claimed,
    ) -> impl Future<Output = Result<Option<Loaded>, StoreError>> + Send;

    /// Gives back a lease nothing was stored under: the cascade wakes when
    /// the lease would have ended, as a plain wake-up.
    fn release_claim(
        &self,
        id: &str,
        lease: &Lease,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Puts the wake-up back after a decision that changed nothing, or
    /// wakes the cascade now if its receipts changed since `receipts_seen`.
    /// `lease_until_ms`: the claim's lease while the timer holds it (a
    /// state that moved on under it is woken now).
    fn touch(
        &self,
        id: &str,
        version: i64,
        wake_at_ms: Option<i64>,
        receipts_seen: &str,
        now_ms: i64,
        lease_until_ms: Option<i64>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Takes one send from the customer's limits on `channel`, or tells
    /// when it would fit (`Some(ms)`).
    fn take_limit(
        &self,
        customer: &str,
        policy: &Policy,
        channel: &ChannelConfig,
        member: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;

    /// Gives back a send `take_limit` took.
    fn release_limit(
        &self,
        customer: &str,
        policy: &Policy,
        channel: &ChannelConfig,
        member: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reserves one send's share of `channel`'s throughput, shared by
    /// every instance on this store, if it comes within `max_wait`; or
    /// says how long until the next is free.
    fn take_rate(
        &self,
        channel: &str,
        rate: Rate,
        max_wait: Duration,
    ) -> impl Future<Output = Result<RateTake, StoreError>> + Send;

    /// Records a receipt and wakes the cascade (unless it is under a lease:
    /// its holder's commit wakes it).
    fn record_receipt(
        &self,
        id: &str,
        event: &str,
        channel: Option<&str>,
        now_ms: i64,
    ) -> impl Future<Output = Result<ReceiptResult, StoreError>> + Send {
        async move {
            self.record_receipt_with_data(id, event, channel, &ReceiptData::new(), now_ms)
                .await
        }
    }

    /// `record_receipt`, with `data` merged into the notification's data in
    /// the same atomic step, whenever the notification exists (also when
    /// the event was recorded before); a later write of a key wins.
    fn record_receipt_with_data(
        &self,
        id: &str,
        event: &str,
        channel: Option<&str>,
        data: &ReceiptData,
        now_ms: i64,
    ) -> impl Future<Output = Result<ReceiptResult, StoreError>> + Send;

    /// The data recorded with a notification's receipts (empty when none,
    /// or when the notification is unknown).
    fn receipt_data(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<ReceiptData, StoreError>> + Send;

    /// The (notification id, step) a provider message id was sent for.
    fn provider_message(
        &self,
        channel: &str,
        provider_message_id: &str,
    ) -> impl Future<Output = Result<Option<(String, u8)>, StoreError>> + Send;

    /// The (notification id, step) of the first known of
    /// `provider_message_ids` (newest first).
    fn newest_known_provider_message(
        &self,
        channel: &str,
        provider_message_ids: &[String],
    ) -> impl Future<Output = Result<Option<(String, u8)>, StoreError>> + Send;

    /// Every (notification id, step) sent to `peer` with a message id up to
    /// `max_id`, oldest first.
    fn peer_messages_up_to(
        &self,
        channel: &str,
        peer: &str,
        max_id: i64,
        now_ms: i64,
    ) -> impl Future<Output = Result<Vec<(String, u8)>, StoreError>> + Send;

    /// True the first time a callback's dedup key is seen within `ttl_s`.
    fn first_time(
        &self,
        key: &str,
        ttl_s: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Forgets a dedup key (best effort).
    fn forget_seen(&self, key: &str) -> impl Future<Output = ()> + Send;

    /// Appends an event that belongs to no stored decision to the events stream.
    fn append_event(
        &self,
        id: Option<&str>,
        entry: &Entry,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Redis: each method is `Store`'s own.
impl CascadeStore for Store {
    fn shards(&self) -> u16 {
        self.keys.shards()
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
        Store::accept(self, admitted, policy, decision, segment, counts, now_ms).await
    }

    async fn segment(&self, policy: &str, raw: Option<&str>) -> Result<String, StoreError> {
        Store::segment(self, policy, raw).await
    }

    async fn report_counts(&self, from: i64, to: i64) -> Result<Counters, StoreError> {
        Store::report_counts(self, from, to).await
    }

    async fn load(&self, id: &str) -> Result<Option<Loaded>, StoreError> {
        Store::load(self, id).await
    }

    async fn commit(&self, request: CommitRequest<'_>) -> Result<CommitReply, StoreError> {
        Store::commit(self, request).await
    }

    async fn status(&self, id: &str) -> Result<Option<(Cascade, Vec<Entry>)>, StoreError> {
        Store::status(self, id).await
    }

    async fn claim_due(
        &self,
        shard: u16,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Claims, StoreError> {
        Store::claim_due(self, shard, now_ms, lease_ms, limit).await
    }

    async fn load_claimed(&self, claimed: &mut Claimed) -> Result<Option<Loaded>, StoreError> {
        Store::load_claimed(self, claimed).await
    }

    async fn release_claim(&self, id: &str, lease: &Lease) -> Result<(), StoreError> {
        Store::release_claim(self, id, lease).await
    }

    async fn touch(
        &self,
        id: &str,
        version: i64,
        wake_at_ms: Option<i64>,
        receipts_seen: &str,
        now_ms: i64,
        lease_until_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        Store::touch(
            self,
            id,
            version,
            wake_at_ms,
            receipts_seen,
            now_ms,
            lease_until_ms,
        )
        .await
    }

    async fn take_limit(
        &self,
        customer: &str,
        policy: &Policy,
        channel: &ChannelConfig,
        member: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        Store::take_limit(self, customer, policy, channel, member, now_ms).await
    }

    async fn release_limit(
        &self,
        customer: &str,
        policy: &Policy,
        channel: &ChannelConfig,
        member: &str,
    ) -> Result<(), StoreError> {
        Store::release_limit(self, customer, policy, channel, member).await
    }

    async fn take_rate(
        &self,
        channel: &str,
        rate: Rate,
        max_wait: Duration,
    ) -> Result<RateTake, StoreError> {
        Store::take_rate(self, channel, rate, max_wait).await
    }

    async fn record_receipt_with_data(
        &self,
        id: &str,
        event: &str,
        channel: Option<&str>,
        data: &ReceiptData,
        now_ms: i64,
    ) -> Result<ReceiptResult, StoreError> {
        Store::record_receipt_with_data(self, id, event, channel, data, now_ms).await
    }

    async fn receipt_data(&self, id: &str) -> Result<ReceiptData, StoreError> {
        Store::receipt_data(self, id).await
    }

    async fn provider_message(
        &self,
        channel: &str,
        provider_message_id: &str,
    ) -> Result<Option<(String, u8)>, StoreError> {
        Store::provider_message(self, channel, provider_message_id).await
    }

    async fn newest_known_provider_message(
        &self,
        channel: &str,
        provider_message_ids: &[String],
    ) -> Result<Option<(String, u8)>, StoreError> {
        Store::newest_known_provider_message(self, channel, provider_message_ids).await
    }

    async fn peer_messages_up_to(
        &self,
        channel: &str,
        peer: &str,
        max_id: i64,
        now_ms: i64,
    ) -> Result<Vec<(String, u8)>, StoreError> {
        Store::peer_messages_up_to(self, channel, peer, max_id, now_ms).await
    }

    async fn first_time(&self, key: &str, ttl_s: u64) -> Result<bool, StoreError> {
        Store::first_time(self, key, ttl_s).await
    }

    async fn forget_seen(&self, key: &str) {
        Store::forget_seen(self, key).await
    }

    async fn append_event(&self, id: Option<&str>, entry: &Entry) -> Result<(), StoreError> {
        Store::append_event(self, id, entry).await
    }
}
