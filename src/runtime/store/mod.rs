//! The Redis store: cascade state, receipts, timelines, timers and
//! per-customer limits. Every change of a cascade is one Lua script, so it is
//! one round trip and atomic (see `scripts/*.lua` for keys and arguments).
//!
//! The protocol has one source of truth per side: every key comes from
//! `Keys` and reaches a script in its KEYS (no script builds a key), and
//! every script has one argument struct here that writes its KEYS and ARGV
//! and one reply type that reads its answer. The modules follow the
//! concerns: `cascades` (accept, load, commit, status), `receipts`,
//! `timers` (claim, touch, give back), `limits`, `provider_index`,
//! `dedup` and `events`; `Store` is the face the daemon sees.
//!
//! `CascadeStore` (`cascade_store`) is what the daemon asks of a store; the
//! other implementation, `MemoryStore` (`memory`), holds the same in
//! memory for `demo` and `simulate`.

mod call;
mod cascade_store;
mod cascades;
mod connection;
mod dedup;
mod error;
mod events;
mod limits;
mod memory;
mod policies;
mod provider_index;
mod rates;
mod receipts;
mod report_counts;
mod timers;

use std::sync::Arc;

use super::keys::Keys;

pub use cascade_store::CascadeStore;
pub use cascades::{
    Accepted, CUSTOMER_INDEX_SIZE, CommitReply, CommitRequest, CustomerNotification, Loaded,
    Timeline, join_entries,
};
pub use connection::{RedisConn, Target};
pub use error::StoreError;
pub use memory::{MemoryStore, StreamEntry};
pub use provider_index::ProviderMessage;
pub use rates::RateTake;
pub use receipts::{MAX_REPLIES, ReceiptResult, receipts_seen};
pub use report_counts::{Counters, ReportBook};
pub use timers::{Claimed, Claims, Lease, TimerCounts};

/// Bounds the events streams together (approximate trimming): each
/// shard's stream keeps its share.
pub const EVENTS_MAX_LEN: u64 = 100_000;

/// The Redis side of the daemon. Cheap to clone: the connections multiplex
/// and reconnect by themselves.
#[derive(Clone)]
pub struct Store {
    conn: RedisConn,
    /// The scheduler's claims only (see `claim`).
    claims: RedisConn,
    /// On a Redis Cluster: each part of an operation is a call of its own
    /// (`scripts/*_whole.lua` run them as one elsewhere), and reads that span
    /// cascades are split by slot.
    split: bool,
    /// Each shard's events stream's bound.
    events_max_len: u64,
    pub keys: Keys,
    retention_ms: i64,
    scripts: Arc<call::Scripts>,
    policies: policies::Snapshots,
    /// Per timer shard: when its far slots were last looked at (`timers`).
    far_checked_ms: Arc<std::sync::Mutex<Vec<i64>>>,
    /// How the report counters are kept (`report_counts`).
    report: ReportBook,
}

impl Store {
    pub async fn connect(
        target: &Target,
        keys: Keys,
        retention_ms: i64,
    ) -> Result<Store, StoreError> {
        Store::connect_trusting(target, None, keys, retention_ms).await
    }

    /// `connect`, trusting only the CA certificates of `ca_pem` for
    /// `rediss://` when given (`redis.ca_file`).
    pub async fn connect_trusting(
        target: &Target,
        ca_pem: Option<&[u8]>,
        keys: Keys,
        retention_ms: i64,
    ) -> Result<Store, StoreError> {
        let shards = usize::from(keys.shards());
        let mut conn = RedisConn::open_trusting(target, ca_pem).await?;
        let claims = RedisConn::open_trusting(target, ca_pem).await?;
        let scripts = call::Scripts::new();
        // Loaded up front: otherwise hundreds of first calls in flight at
        // once each get NOSCRIPT and send the whole script again. (After a
        // Redis restart, a call that gets NOSCRIPT still loads it itself.)
        for script in scripts.all() {
            script.load_async(&mut conn).await?;
        }
        Ok(Store {
            split: conn.is_cluster(),
            conn,
            claims,
            events_max_len: (EVENTS_MAX_LEN / shards.max(1) as u64).max(1_000),
            keys,
            retention_ms,
            scripts: Arc::new(scripts),
            policies: policies::Snapshots::default(),
            far_checked_ms: Arc::new(std::sync::Mutex::new(vec![i64::MIN; shards])),
            report: ReportBook::default(),
        })
    }

    /// The store with the report counters kept as `report` says.
    pub fn with_report(mut self, report: ReportBook) -> Store {
        self.report = report;
        self
    }

    pub fn connection(&self) -> RedisConn {
        self.conn.clone()
    }
}
