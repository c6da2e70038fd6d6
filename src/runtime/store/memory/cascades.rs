//! Cascades in memory: `accept.lua`, `commit.lua`, `receipt.lua` and the
//! reads of a record and its receipts. A record is kept as its parts
//! rather than one string: nothing but this store writes it, so it cannot
//! be unreadable (no `Corrupt` for a record's layout here).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::State;
use crate::core::policy::FAILED;
use crate::core::receipt_data::{MAX_KEYS, ReceiptData};
use crate::core::{Cascade, Decision, Entry, Policy};
use crate::notification::Admitted;
use crate::runtime::record::{decode_timeline, encode_entry};
use crate::runtime::store::cascades::{
    Parts, assemble, corrupt, count_lines, join_entries, kept_notification, kept_tz,
};
use crate::runtime::store::receipts::receipt_entry;
use crate::runtime::store::{
    Accepted, CommitReply, CommitRequest, Loaded, ReceiptResult, StoreError, receipts_seen,
};

/// One cascade's record: what Redis keeps in `<prefix>:{<id>}:state`.
pub(super) struct Stored {
    /// Bumped by every stored decision (accepted as 1).
    version: i64,
    cascade: Cascade,
    /// The notification as kept (JSON), read back like Redis's.
    notification: String,
    /// The kept zone (`kept_tz`): "" when the notification's own.
    tz: String,
    /// The policy snapshot the cascade runs on.
    policy: Arc<Policy>,
    /// Timeline entries, one per line, as Redis's record holds them.
    timeline: String,
    /// Set once finished: kept for the retention, then gone.
    expires_at_ms: Option<i64>,
}

impl Stored {
    pub fn version(&self) -> i64 {
        self.version
    }
}

/// One cascade's receipts hash: word -> Unix ms; and the data recorded
/// with them (`<prefix>:{<id>}:data`), kept as long.
#[derive(Default)]
pub(super) struct Receipts {
    words: BTreeMap<String, i64>,
    data: ReceiptData,
    expires_at_ms: Option<i64>,
}

/// What `accept` keeps of an admitted notification, made before locking.
pub(super) struct Kept {
    id: String,
    notification: String,
    tz: String,
    snapshot: Arc<Policy>,
}

impl Kept {
    pub fn of(admitted: &Admitted<'_>, policy: &Policy) -> Result<Kept, StoreError> {
        Ok(Kept {
            id: admitted.notification.id.clone(),
            notification: kept_notification(&admitted.notification)?,
            tz: kept_tz(admitted).to_owned(),
            snapshot: Arc::new(policy.clone()),
        })
    }
}

/// A record and its receipts as read under the lock, assembled into a
/// `Loaded` after it (`assemble` parses the notification).
pub(super) struct Read {
    cascade: Cascade,
    version: i64,
    policy: Arc<Policy>,
    notification: String,
    tz: String,
    receipts: BTreeMap<String, i64>,
    receipts_seen: String,
    timeline: String,
    segment: String,
}

impl Read {
    pub fn assemble(self, id: &str) -> Result<Loaded, StoreError> {
        let parts = Parts {
            cascade: self.cascade,
            version: self.version,
            policy: self.policy,
            notification: &self.notification,
            tz: &self.tz,
            timeline: &self.timeline,
        };
        let mut loaded = assemble(id, parts, self.receipts, self.receipts_seen)?;
        loaded.segment = self.segment;
        Ok(loaded)
    }
}

/// Appends timeline `lines` (entries, one per line) to `timeline`.
fn append_lines(timeline: &mut String, lines: &str) {
    if !timeline.is_empty() {
        timeline.push('\n');
    }
    timeline.push_str(lines);
}

impl State {
    /// The live record of `id`; one whose retention ran out is dropped.
    pub(super) fn record_mut(&mut self, id: &str, clock_ms: i64) -> Option<&mut Stored> {
        if let Some(s) = self.cascades.get(id)
            && !super::alive(s.expires_at_ms, clock_ms)
        {
            self.cascades.remove(id);
        }
        self.cascades.get_mut(id)
    }

    /// The live receipts of `id`, if any.
    fn receipts_mut(&mut self, id: &str, clock_ms: i64) -> Option<&mut Receipts> {
        if let Some(r) = self.receipts.get(id)
            && !super::alive(r.expires_at_ms, clock_ms)
        {
            self.receipts.remove(id);
        }
        self.receipts.get_mut(id)
    }

    /// Whether one of `words` is recorded for `id` (`stopped` in record.lua).
    pub(super) fn receipts_hold(&mut self, id: &str, words: &[&str], clock_ms: i64) -> bool {
        self.receipts_mut(id, clock_ms)
            .is_some_and(|r| words.iter().any(|w| r.words.contains_key(*w)))
    }

    /// `<fields>\t<failed value>` of `id`'s receipts, as `touch.lua` builds it.
    pub(super) fn receipts_seen(&mut self, id: &str, clock_ms: i64) -> String {
        match self.receipts_mut(id, clock_ms) {
            Some(r) => {
                let failed = r.words.get(FAILED).map(i64::to_string);
                receipts_seen(r.words.len(), failed.as_deref())
            }
            None => receipts_seen(0, None),
        }
    }

    /// Once finished, receipts are kept as long as the record (`PEXPIRE`,
    /// which does nothing to a hash that does not exist).
    fn expire_receipts(&mut self, id: &str, at_ms: i64, clock_ms: i64) {
        if let Some(r) = self.receipts_mut(id, clock_ms) {
            r.expires_at_ms = Some(at_ms);
        }
    }

    /// `accept.lua`.
    pub(super) fn accept(
        &mut self,
        kept: Kept,
        policy: &Policy,
        decision: &Decision,
        clock_ms: i64,
    ) -> Accepted {
        let id = kept.id;
        if self.record_mut(&id, clock_ms).is_some() {
            return Accepted::Duplicate;
        }
        if decision.send.is_some() && self.receipts_hold(&id, &policy.stopping_receipts(), clock_ms)
        {
            return Accepted::SendRefused;
        }
        let timeline = join_entries(&[], &decision.entries);
        self.push_event(&id, timeline.clone());
        let wake = decision.cascade.wake_at_ms();
        let expires_at_ms = match wake {
            Some(_) => None,
            None => Some(clock_ms + self.retention_ms),
        };
        let stored = Stored {
            version: 1,
            cascade: decision.cascade.clone(),
            notification: kept.notification,
            tz: kept.tz,
            policy: kept.snapshot.clone(),
            timeline,
            expires_at_ms,
        };
        self.cascades.insert(id.clone(), stored);
        match (wake, expires_at_ms) {
            (Some(due), _) => self.set_wake(&id, due),
            (None, Some(at)) => self.expire_receipts(&id, at, clock_ms),
            (None, None) => {}
        }
        Accepted::New(kept.snapshot)
    }

    /// A record and its receipts, for a decision.
    pub(super) fn read(&mut self, id: &str, clock_ms: i64) -> Option<Read> {
        let s = self.record_mut(id, clock_ms)?;
        let (cascade, version, policy) = (s.cascade.clone(), s.version, s.policy.clone());
        let (notification, tz) = (s.notification.clone(), s.tz.clone());
        let timeline = s.timeline.clone();
        let raw_segment = serde_json::from_str::<serde_json::Value>(&notification)
            .ok()
            .and_then(|n| n["customer"]["segment"].as_str().map(str::to_owned));
        let segment = self.segment(&policy.name, raw_segment.as_deref());
        let receipts_seen = self.receipts_seen(id, clock_ms);
        let receipts = self
            .receipts_mut(id, clock_ms)
            .map(|r| r.words.clone())
            .unwrap_or_default();
        Some(Read {
            cascade,
            version,
            policy,
            notification,
            tz,
            receipts,
            receipts_seen,
            timeline,
            segment,
        })
    }

    /// `commit.lua`.
    pub(super) fn commit(&mut self, r: CommitRequest<'_>, clock_ms: i64) -> CommitReply {
        let id = r.id;
        let Some(stored) = self.record_mut(id, clock_ms) else {
            return CommitReply::Gone;
        };
        if stored.version != r.version
            || r.lines.is_some_and(|n| count_lines(&stored.timeline) != n)
        {
            return CommitReply::Conflict;
        }
        let sends = r.decision.send.is_some();
        if sends && self.receipts_hold(id, &r.policy.stopping_receipts(), clock_ms) {
            return CommitReply::StoppedByReceipt;
        }
        let wakes_now = self.receipts_hold(id, &r.policy.waking_receipts(), clock_ms);
        self.add_counts(&r.policy.name, r.segment, r.counts, r.now_ms, clock_ms);
        let lines = join_entries(r.earlier, &r.decision.entries);
        if !lines.is_empty() {
            self.push_event(id, lines.clone());
        }
        if let Some(m) = r.sent {
            let retention_ms = self.retention_ms;
            self.index.keep(id, m, r.now_ms, retention_ms, clock_ms);
        }
        let retention_ms = self.retention_ms;
        let Some(stored) = self.record_mut(id, clock_ms) else {
            return CommitReply::Gone;
        };
        if !lines.is_empty() {
            append_lines(&mut stored.timeline, &lines);
        }
        stored.version += 1;
        stored.cascade = r.decision.cascade.clone();
        let version = stored.version;
        match r.decision.cascade.wake_at_ms() {
            // A waking receipt recorded while this decision was made (its
            // wake-up left to this commit, or undone by it): wake at once.
            Some(due) => self.set_wake(id, if wakes_now { 0 } else { due }),
            None => {
                // Finished: kept for `status` and late receipts until the
                // retention ends (from when it first finished: a late
                // receipt's decision keeps the end).
                if stored.expires_at_ms.is_none() {
                    let at = clock_ms + retention_ms;
                    stored.expires_at_ms = Some(at);
                    self.expire_receipts(id, at, clock_ms);
                }
                self.timers_of(id).remove(id);
            }
        }
        CommitReply::Done(version)
    }

    /// The record's state and timeline, for `status`.
    pub(super) fn status(
        &mut self,
        id: &str,
        clock_ms: i64,
    ) -> Result<Option<(Cascade, Vec<Entry>)>, StoreError> {
        let Some(s) = self.record_mut(id, clock_ms) else {
            return Ok(None);
        };
        let entries = decode_timeline(&s.timeline).map_err(corrupt(id))?;
        Ok(Some((s.cascade.clone(), entries)))
    }

    /// `receipt.lua`.
    pub(super) fn record_receipt(
        &mut self,
        id: &str,
        event: &str,
        channel: Option<&str>,
        data: &ReceiptData,
        now_ms: i64,
        clock_ms: i64,
    ) -> ReceiptResult {
        let Some(stored) = self.record_mut(id, clock_ms) else {
            return ReceiptResult::UnknownNotification;
        };
        let expires_at_ms = stored.expires_at_ms;
        self.receipts_mut(id, clock_ms);
        let receipts = self.receipts.entry(id.to_owned()).or_default();
        let added = data
            .keys()
            .filter(|k| !receipts.data.contains_key(*k))
            .count();
        if receipts.data.len() + added > MAX_KEYS {
            return ReceiptResult::DataFull(receipts.data.len());
        }
        // Data is merged whenever the notification exists, also with an
        // event recorded before (a second `called` may correct a slot).
        receipts
            .data
            .extend(data.iter().map(|(k, v)| (k.clone(), v.clone())));
        if !data.is_empty() && expires_at_ms.is_some() {
            receipts.expires_at_ms = expires_at_ms;
        }
        // The first time of an event is kept, except `failed`, whose latest
        // time counts (it escalates the step current when it arrives).
        if event != FAILED && receipts.words.contains_key(event) {
            return ReceiptResult::AlreadyRecorded;
        }
        receipts.words.insert(event.to_owned(), now_ms);
        if expires_at_ms.is_some() {
            receipts.expires_at_ms = expires_at_ms;
        }
        let line = encode_entry(&receipt_entry(event, channel, now_ms));
        if let Some(stored) = self.cascades.get_mut(id) {
            append_lines(&mut stored.timeline, &line);
        }
        self.push_event(id, line);
        // Not under a claim's lease: its holder may be sending on it, and
        // its commit wakes the cascade itself.
        let timers = self.timers_of(id);
        if !timers.leased(id) {
            timers.set_due(id, now_ms);
        }
        ReceiptResult::Recorded
    }

    /// The data recorded with `id`'s receipts.
    pub(super) fn receipt_data(&mut self, id: &str, clock_ms: i64) -> ReceiptData {
        self.receipts_mut(id, clock_ms)
            .map(|r| r.data.clone())
            .unwrap_or_default()
    }

    /// A receipt written by another system (`HSET`): no entry, no wake-up.
    pub(super) fn put_receipt(&mut self, id: &str, event: &str, at_ms: i64, clock_ms: i64) {
        self.receipts_mut(id, clock_ms);
        let receipts = self.receipts.entry(id.to_owned()).or_default();
        receipts.words.insert(event.to_owned(), at_ms);
    }
}
