//! The copies that must agree, held together against the real Redis:
//! - the scripts' stop check (`commit.lua`, `accept.lua` refusing a send,
//!   `commit.lua` waking a running cascade) and the core's stop rule
//!   (`Policy::stops_on`);
//! - the record layout as Rust writes it (`runtime/record.rs`) and as every
//!   script that reads or rewrites it sees it (`scripts/record.lua`).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use redis::AsyncCommands;

use cascade::core::{Cascade, Decision, Entry, EntryKind, Policy, SendOrder};
use cascade::runtime::keys::Keys;
use cascade::runtime::record::{Record, encode_entry, encode_state};
use cascade::runtime::store::{CommitReply, CommitRequest, ReceiptResult, Store, StoreError};

const NOW: i64 = 1_800_000_000_000;

fn waiting(until_ms: i64) -> Cascade {
    common::waiting_on_vk(NOW, until_ms)
}
/// Receipt words a case draws from: stopping ones, `cancelled`, `failed`
/// and words no policy stops on.
const WORDS: [&str; 7] = [
    "read",
    "opened",
    "clicked",
    "cancelled",
    "failed",
    "delivered",
    "seen",
];

struct Rig {
    runtime: tokio::runtime::Runtime,
    store: Store,
    keys: Keys,
    redis: cascade::runtime::store::RedisConn,
    case: AtomicU64,
    _clean: CleanUp,
}

impl Rig {
    fn new(name: &str) -> Rig {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let prefix = unique(name);
        let keys = Keys::new(&prefix, 1);
        let store = runtime
            .block_on(Store::connect(
                &common::redis_target(),
                keys.clone(),
                3_600_000,
            ))
            .unwrap();
        let redis = runtime.block_on(redis());
        Rig {
            runtime,
            store,
            keys,
            redis,
            case: AtomicU64::new(0),
            _clean: CleanUp(prefix),
        }
    }

    /// An id of its own per case.
    fn id(&self) -> String {
        format!("n{}", self.case.fetch_add(1, Ordering::Relaxed))
    }

    fn set(&self, key: String, value: &str) {
        let mut r = self.redis.clone();
        let _: () = self.runtime.block_on(r.set(key, value)).unwrap();
    }

    fn get(&self, key: String) -> Option<String> {
        let mut r = self.redis.clone();
        self.runtime.block_on(r.get(key)).unwrap()
    }

    fn receipts(&self, id: &str, words: &[&str]) {
        let mut r = self.redis.clone();
        for w in words {
            let _: () = self
                .runtime
                .block_on(r.hset(self.keys.receipts(id), *w, NOW - 1))
                .unwrap();
        }
    }

    fn commit(&self, id: &str, version: i64, decision: &Decision, policy: &Policy) -> CommitReply {
        self.try_commit(id, version, decision, policy).unwrap()
    }

    fn try_commit(
        &self,
        id: &str,
        version: i64,
        decision: &Decision,
        policy: &Policy,
    ) -> Result<CommitReply, StoreError> {
        self.runtime.block_on(self.store.commit(CommitRequest {
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
        }))
    }
}

fn policy(stop_on: Vec<String>) -> Policy {
    Policy {
        name: "p".into(),
        description: String::new(),
        stop_on,
        expire_after_ms: None,
        steps: vec![],
        limits: Default::default(),
        quiet_hours: BTreeMap::new(),
        quiet_off: Default::default(),
        answer: None,
        awake_hours: None,
    }
}

fn entry(at_ms: i64, reason: &str) -> Entry {
    Entry {
        at_ms,
        event: EntryKind::Receipt,
        step: Some(0),
        channel: Some("vk".into()),
        reason: (!reason.is_empty()).then(|| reason.to_owned()),
        until_ms: None,
        provider_message_id: None,
    }
}

fn words() -> impl Strategy<Value = Vec<&'static str>> {
    proptest::sample::subsequence(WORDS.to_vec(), 0..=WORDS.len())
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// A send is refused by `commit.lua` exactly when the core's rule says a
/// recorded receipt stops the cascade; a running cascade is woken at once
/// exactly when a recorded receipt stops it or is `failed`.
#[test]
fn the_scripts_stop_where_the_core_stops() {
    let rig = Rig::new("stop-rule");
    let result = runner(96).run(&(words(), words()), |(stop_on, recorded)| {
        let policy = policy(stop_on.iter().map(|w| w.to_string()).collect());
        let stops = recorded.iter().any(|w| policy.stops_on(w));
        let wakes = stops || recorded.contains(&"failed");
        let state = encode_state(&waiting(NOW + 60_000));
        let record = |version: &'static str| {
            Record {
                version,
                state: &state,
                notification: "{}",
                timeline: "",
                meta: "h\t",
            }
            .encode()
        };

        // A decision that orders a send.
        let id = rig.id();
        rig.set(rig.keys.state(&id), &record("1"));
        rig.receipts(&id, &recorded);
        let send = Decision {
            cascade: waiting(NOW + 60_000),
            send: Some(SendOrder {
                step: 1,
                channel: "sms".into(),
                attempt: 1,
            }),
            entries: vec![],
        };
        let got = rig.commit(&id, 1, &send, &policy);
        let want = if stops {
            CommitReply::StoppedByReceipt
        } else {
            CommitReply::Done(2)
        };
        prop_assert_eq!(got, want, "stop_on {:?}, recorded {:?}", stop_on, recorded);

        // A decision that only waits: woken at once or at its time.
        let id = rig.id();
        rig.set(rig.keys.state(&id), &record("1"));
        rig.receipts(&id, &recorded);
        let wait = Decision {
            cascade: waiting(NOW + 60_000),
            send: None,
            entries: vec![],
        };
        prop_assert_eq!(rig.commit(&id, 1, &wait, &policy), CommitReply::Done(2));
        let mut r = rig.redis.clone();
        let score: Option<i64> = rig
            .runtime
            .block_on(r.zscore(rig.keys.timer_of(&id), &id))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let want = if wakes { 0 } else { NOW + 60_000 };
        prop_assert_eq!(
            score,
            Some(want),
            "stop_on {:?}, recorded {:?}",
            stop_on,
            recorded
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Text a record's fields may hold: anything but the field separator,
/// which the forms escape (the timeline is lines of encoded entries).
fn text() -> impl Strategy<Value = String> {
    "[a-z{}\":,\\t а-я]{0,24}"
}

/// A record written by Rust reads back through each script that reads it,
/// and what a script rewrites reads back in Rust: the version, state and
/// timeline it changed, the notification and meta as they were.
#[test]
fn a_record_written_by_rust_reads_back_through_every_script() {
    let rig = Rig::new("record-trip");
    let legacy = any::<bool>();
    let strategy = (
        text(),
        text(),
        proptest::collection::vec(text(), 0..3),
        legacy,
    );
    let result = runner(64).run(&strategy, |(notification, meta, reasons, legacy)| {
        let id = rig.id();
        let timeline: Vec<String> = reasons
            .iter()
            .enumerate()
            .map(|(i, r)| encode_entry(&entry(NOW - 100 + i as i64, r)))
            .collect();
        let timeline = timeline.join("\n");
        let state = encode_state(&waiting(NOW + 60_000));
        let written = Record {
            version: "7",
            state: &state,
            notification: &notification,
            timeline: &timeline,
            meta: &meta,
        };
        let stored = if legacy {
            // The first layout: untagged, read and rewritten in the current one.
            ["7", &state, &notification, &timeline, &meta].join("\x1f")
        } else {
            written.encode()
        };
        rig.set(rig.keys.state(&id), &stored);
        let raw = rig.get(rig.keys.state(&id)).unwrap();
        prop_assert_eq!(Record::parse(&raw).unwrap(), written.clone());

        // touch.lua reads the version: a stale one leaves the timer alone.
        let touch = |version| {
            rig.runtime.block_on(
                rig.store
                    .touch(&id, version, Some(NOW + 5_000), "0\t", NOW, None),
            )
        };
        touch(6).unwrap();
        let mut r = rig.redis.clone();
        let score = |r: &mut cascade::runtime::store::RedisConn| -> Option<i64> {
            rig.runtime
                .block_on(r.zscore(rig.keys.timer_of(&id), &id))
                .unwrap()
        };
        prop_assert_eq!(score(&mut r), None);
        touch(7).unwrap();
        prop_assert_eq!(score(&mut r), Some(NOW + 5_000));

        // receipt.lua appends to the timeline and keeps the rest.
        let got = rig
            .runtime
            .block_on(rig.store.record_receipt(&id, "delivered", None, NOW))
            .unwrap();
        prop_assert_eq!(got, ReceiptResult::Recorded);
        let raw = rig.get(rig.keys.state(&id)).unwrap();
        let after = Record::parse(&raw).unwrap();
        prop_assert!(raw.starts_with("r2\x1f"));
        prop_assert_eq!(after.version, "7");
        prop_assert_eq!(after.state, state.as_str());
        prop_assert_eq!(after.notification, notification.as_str());
        prop_assert_eq!(after.meta, meta.as_str());
        let mut entries = Record::parse(&stored).unwrap().entries().unwrap();
        prop_assert_eq!(&after.entries().unwrap()[..entries.len()], &entries[..]);
        entries = after.entries().unwrap();

        // commit.lua: a stale version conflicts; the right one stores.
        let next = waiting(NOW + 90_000);
        let decision = Decision {
            cascade: next.clone(),
            send: None,
            entries: vec![entry(NOW, "decided")],
        };
        let p = policy(vec!["read".into()]);
        prop_assert_eq!(rig.commit(&id, 6, &decision, &p), CommitReply::Conflict);
        prop_assert_eq!(rig.commit(&id, 7, &decision, &p), CommitReply::Done(8));
        let raw = rig.get(rig.keys.state(&id)).unwrap();
        let after = Record::parse(&raw).unwrap();
        prop_assert_eq!(after.version, "8");
        prop_assert_eq!(after.cascade().unwrap(), next.clone());
        prop_assert_eq!(after.notification, notification.as_str());
        prop_assert_eq!(after.meta, meta.as_str());
        entries.push(entry(NOW, "decided"));
        prop_assert_eq!(after.entries().unwrap(), entries.clone());
        // And `status` reads what the scripts wrote.
        let (cascade, timeline) = rig
            .runtime
            .block_on(rig.store.status(&id))
            .unwrap()
            .unwrap();
        prop_assert_eq!(&cascade, &next);
        prop_assert_eq!(timeline, entries);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A record of a layout this daemon does not know is reported by every
/// script that reads it, and by Rust, and left as it is.
#[test]
fn an_unknown_layout_is_reported_not_misread() {
    let rig = Rig::new("record-unknown");
    let id = rig.id();
    let future = "r9\x1f1\x1fstate\x1f{}\x1f\x1fh\t";
    rig.set(rig.keys.state(&id), future);
    let unreadable =
        |e: StoreError| matches!(e, StoreError::Corrupt { why, .. } if why.contains("layout"));
    let decision = Decision {
        cascade: waiting(NOW + 60_000),
        send: None,
        entries: vec![],
    };
    let p = policy(vec![]);
    assert!(unreadable(
        rig.try_commit(&id, 1, &decision, &p).unwrap_err()
    ));
    let receipt = rig
        .runtime
        .block_on(rig.store.record_receipt(&id, "read", None, NOW));
    assert!(unreadable(receipt.unwrap_err()));
    let touch = rig
        .runtime
        .block_on(rig.store.touch(&id, 1, Some(NOW), "0\t", NOW, None));
    assert!(unreadable(touch.unwrap_err()));
    assert!(unreadable(
        rig.runtime.block_on(rig.store.status(&id)).unwrap_err()
    ));
    assert_eq!(rig.get(rig.keys.state(&id)).as_deref(), Some(future));
}
