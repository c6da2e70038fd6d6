//! The pair of stores a scenario runs on, and the small helpers the
//! scenarios share.

use std::sync::Arc;

use cascade::config::{Catalog, ReportSettings};
use cascade::core::{Cascade, Decision, Entry, EntryKind, Policy, SendOrder};
use cascade::notification::Admitted;
use cascade::runtime::clock::SystemClock;
use cascade::runtime::keys::Keys;
use cascade::runtime::store::{
    Accepted, CascadeStore, CommitReply, CommitRequest, Loaded, MemoryStore, ProviderMessage,
    ReportBook, Store, StoreError,
};

use crate::common::*;

pub const NOW: i64 = 1_800_000_000_000;

/// Waiting on step 0 (VK) until `until_ms`.
pub fn waiting(until_ms: i64) -> Cascade {
    crate::common::waiting_on_vk(NOW, until_ms)
}
pub const MIN: i64 = 60_000;
pub const DAY: i64 = 86_400_000;
const RETENTION_MS: i64 = 3_600_000;

/// Runs `scenario` on the Redis store, then on the memory store, requires
/// the same answers of both, and returns them.
macro_rules! both {
    ($rig:expr, $scenario:ident) => {{
        let redis = $scenario(&$rig.redis, &$rig).await;
        let memory = $scenario(&$rig.memory, &$rig).await;
        assert_eq!(
            redis, memory,
            "the Redis store (left) and the memory store (right) answered differently"
        );
        redis
    }};
}
pub(crate) use both;

/// What a scenario does to a store from outside the trait: another system
/// writing a receipt (contract §6), and reading the events stream.
pub trait Foreign {
    async fn put_receipt(&self, id: &str, word: &str);
    /// (notification id, entries) per stream entry, by notification id and
    /// oldest first for each (Redis keeps a stream per timer shard, so
    /// only the order within one notification is the same in both stores).
    async fn events(&self) -> Vec<(String, String)>;
}

impl Foreign for Store {
    async fn put_receipt(&self, id: &str, word: &str) {
        let mut c = self.connection();
        let _: () = redis::AsyncCommands::hset(&mut c, self.keys.receipts(id), word, NOW - 1)
            .await
            .unwrap();
    }

    async fn events(&self) -> Vec<(String, String)> {
        let mut c = self.connection();
        let mut all = Vec::new();
        for shard in 0..self.keys.shards() {
            let raw: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
                .arg(self.keys.events(shard))
                .arg("-")
                .arg("+")
                .query_async(&mut c)
                .await
                .unwrap();
            all.extend(
                raw.into_iter()
                    .map(|(_, fields)| (fields[1].clone(), fields[3].clone())),
            );
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

impl Foreign for MemoryStore {
    async fn put_receipt(&self, id: &str, word: &str) {
        MemoryStore::put_receipt(self, id, word, NOW - 1);
    }

    async fn events(&self) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = MemoryStore::events(self)
            .into_iter()
            .map(|e| (e.id, e.entries))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// Both stores, empty, and the policy `delivery_delay` (stops on `read`).
pub struct Rig {
    pub redis: Store,
    pub memory: MemoryStore,
    pub policy: Policy,
    catalog: Catalog,
    _config: TestConfig,
    _clean: CleanUp,
}

impl Rig {
    pub async fn new(name: &str) -> Rig {
        require_services().await;
        let config = TestConfig::new(name, "http://127.0.0.1:9", "", DELIVERY_DELAY);
        let catalog = config.catalog();
        let policy = catalog.policies["delivery_delay"].clone();
        let keys = Keys::new(&config.name, 1);
        // Two segments counted on their own per policy, so a scenario
        // reaches the bound.
        let report = ReportBook::new(&ReportSettings {
            retention_ms: 86_400_000,
            segments: None,
            max_segments: 2,
        });
        let redis = Store::connect(&crate::common::redis_target(), keys, RETENTION_MS)
            .await
            .unwrap()
            .with_report(report.clone());
        let memory = MemoryStore::new(Arc::new(SystemClock::default()), RETENTION_MS, 1)
            .with_report(ReportBook::new(&ReportSettings {
                retention_ms: 86_400_000,
                segments: None,
                max_segments: 2,
            }));
        Rig {
            redis,
            memory,
            policy,
            catalog,
            _clean: CleanUp(config.name.clone()),
            _config: config,
        }
    }

    pub fn admitted(&self, id: &str) -> Admitted<'_> {
        cascade::notification::admit_at(&notification(id, "c-1"), &self.catalog, NOW).unwrap()
    }

    /// Accepts `id` waiting until `wake_ms`, ordering a send when `sends`.
    pub async fn accept<S: CascadeStore>(
        &self,
        s: &S,
        id: &str,
        wake_ms: i64,
        sends: bool,
    ) -> String {
        let first = decision(wake_ms, sends);
        accepted_word(
            s.accept(&self.admitted(id), &self.policy, &first, "-", &[], NOW)
                .await,
        )
    }

    pub async fn commit<S: CascadeStore>(
        &self,
        s: &S,
        id: &str,
        version: i64,
        d: &Decision,
    ) -> CommitReply {
        self.commit_on(s, id, version, d, &self.policy).await
    }

    pub async fn commit_on<S: CascadeStore>(
        &self,
        s: &S,
        id: &str,
        version: i64,
        decision: &Decision,
        policy: &Policy,
    ) -> CommitReply {
        let request = self.request(id, version, decision, policy);
        s.commit(request).await.unwrap()
    }

    /// Commits a decision made under a claim whose lease ends at
    /// `lease_until_ms` and is still in the timer.
    pub async fn commit_under<S: CascadeStore>(
        &self,
        s: &S,
        id: &str,
        version: i64,
        decision: &Decision,
        lease_until_ms: i64,
    ) -> CommitReply {
        let request = CommitRequest {
            lease_until_ms: Some(lease_until_ms),
            ..self.request(id, version, decision, &self.policy)
        };
        s.commit(request).await.unwrap()
    }

    /// Commits a decision that records the send `sent`.
    pub async fn commit_sent<S: CascadeStore>(
        &self,
        s: &S,
        id: &str,
        version: i64,
        decision: &Decision,
        sent: &ProviderMessage,
    ) -> CommitReply {
        let request = CommitRequest {
            sent: Some(sent),
            ..self.request(id, version, decision, &self.policy)
        };
        s.commit(request).await.unwrap()
    }

    /// A commit of `decision` on `version` at `NOW`, recording no send.
    fn request<'a>(
        &self,
        id: &'a str,
        version: i64,
        decision: &'a Decision,
        policy: &'a Policy,
    ) -> CommitRequest<'a> {
        CommitRequest {
            id,
            version,
            earlier: &[],
            decision,
            policy,
            sent: None,
            now_ms: NOW,
            lease_until_ms: None,
            counts: &[],
            segment: "-",
            lines: None,
        }
    }
}

/// A decision waiting until `wake_ms`, ordering step 1 on SMS when `sends`.
pub fn decision(wake_ms: i64, sends: bool) -> Decision {
    Decision {
        cascade: waiting(wake_ms),
        send: sends.then(|| SendOrder {
            step: 1,
            channel: "sms".into(),
            attempt: 1,
        }),
        entries: vec![entry(NOW, "decided")],
    }
}

/// A timeline entry carrying `reason`.
pub fn entry(at_ms: i64, reason: &str) -> Entry {
    Entry {
        at_ms,
        event: EntryKind::Receipt,
        step: Some(0),
        channel: Some("vk".into()),
        reason: Some(reason.to_owned()),
        until_ms: None,
        provider_message_id: None,
    }
}

pub fn accepted_word(a: Result<Accepted, StoreError>) -> String {
    match a {
        Ok(Accepted::New(policy)) => format!("new {}", policy.name),
        Ok(Accepted::Duplicate) => "duplicate".into(),
        Ok(Accepted::SendRefused) => "refused".into(),
        Err(e) => format!("error {e}"),
    }
}

/// Everything a `Loaded` holds, as text.
pub fn loaded(l: Result<Option<Loaded>, StoreError>) -> String {
    match l {
        Err(e) => format!("error {e}"),
        Ok(None) => "none".into(),
        Ok(Some(l)) => format!(
            "v{} {:?} customer={} receipts={:?} seen={:?} tz={:?} policy={:?} notification={:?} contacts={:?}",
            l.version,
            l.cascade,
            l.customer_id,
            l.receipts,
            l.receipts_seen,
            l.recipient.tz.iana_name(),
            l.policy,
            l.notification,
            l.recipient.contacts,
        ),
    }
}

/// What a claim of shard 0 at `now_ms` took: (id, lapsed claim, lease end).
pub async fn claimed<S: CascadeStore>(s: &S, now_ms: i64, lease_ms: i64) -> String {
    let claimed = s.claim(0, now_ms, lease_ms, 100).await.unwrap();
    let seen: Vec<_> = claimed
        .iter()
        .map(|c| (c.id.clone(), c.lapsed_claim_at_ms, c.lease.until_ms))
        .collect();
    format!("{seen:?}")
}
