//! The report's counters in Redis: which segment a notification counts
//! under, the counts a decision adds (written by the decision's own script
//! call on its timer shard: wake.lua `add_counts`), and reading them back
//! by hour for `cascade report`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use redis::Value;

use super::call::Call;
use super::{Store, StoreError};
use crate::config::ReportSettings;
use crate::report::{Count, NO_SEGMENT, OTHER_SEGMENT, clean_segment, field, hour_of};

/// Counters summed by field (report/mod.rs), over the hours read.
pub type Counters = BTreeMap<String, i64>;

/// How the report counters are kept: for how long, and which customer
/// segments count on their own. Shared by a store's clones.
#[derive(Clone)]
pub struct ReportBook(Arc<Book>);

struct Book {
    retention_ms: i64,
    /// The segments configured (`report.segments`), if any.
    configured: Option<HashSet<String>>,
    max: usize,
    /// Per policy: the segments learnt from the store, and whether its set
    /// is full (any other segment is `other` then).
    known: Mutex<HashMap<String, (HashSet<String>, bool)>>,
}

/// A segment as the book knows it.
pub enum SegmentLookup {
    /// Counted under this name.
    Known(String),
    /// Not known yet: ask the store's set of the policy (`segment.lua`).
    Ask(String),
}

impl Default for ReportBook {
    fn default() -> Self {
        ReportBook::new(&ReportSettings {
            retention_ms: 90 * 86_400_000,
            segments: None,
            max_segments: 20,
        })
    }
}

impl ReportBook {
    pub fn new(settings: &ReportSettings) -> ReportBook {
        ReportBook(Arc::new(Book {
            retention_ms: settings.retention_ms,
            configured: settings
                .segments
                .as_ref()
                .map(|l| l.iter().cloned().collect()),
            max: settings.max_segments,
            known: Mutex::default(),
        }))
    }

    pub fn retention_ms(&self) -> i64 {
        self.0.retention_ms
    }

    pub fn max_segments(&self) -> usize {
        self.0.max
    }

    /// When an hour's counters go: the hour's end plus the retention.
    pub fn keep_until_ms(&self, hour: i64) -> i64 {
        (hour + 1) * 3_600_000 + self.0.retention_ms
    }

    /// The segment a notification of `policy` counts under.
    pub fn lookup(&self, policy: &str, raw: Option<&str>) -> SegmentLookup {
        let name = clean_segment(raw.unwrap_or(""));
        // No segment named is a group of its own, outside the bound.
        if name == NO_SEGMENT {
            return SegmentLookup::Known(name);
        }
        if let Some(list) = &self.0.configured {
            return SegmentLookup::Known(if list.contains(&name) {
                name
            } else {
                OTHER_SEGMENT.to_owned()
            });
        }
        let Ok(known) = self.0.known.lock() else {
            return SegmentLookup::Ask(name);
        };
        match known.get(policy) {
            Some((names, _)) if names.contains(&name) => SegmentLookup::Known(name),
            Some((_, true)) => SegmentLookup::Known(OTHER_SEGMENT.to_owned()),
            _ => SegmentLookup::Ask(name),
        }
    }

    /// The store's answer for a segment asked about: counted on its own
    /// (`Taken`), or the policy's set is full, with its members (all of
    /// them: once full it never changes, so any other is `other`).
    pub fn learn(&self, policy: &str, name: &str, answer: SegmentAnswer) -> String {
        let Ok(mut known) = self.0.known.lock() else {
            return match answer {
                SegmentAnswer::Taken => name.to_owned(),
                SegmentAnswer::Full(members) if members.contains(name) => name.to_owned(),
                SegmentAnswer::Full(_) => OTHER_SEGMENT.to_owned(),
            };
        };
        let (names, full) = known.entry(policy.to_owned()).or_default();
        match answer {
            SegmentAnswer::Taken => {
                names.insert(name.to_owned());
            }
            SegmentAnswer::Full(members) => {
                names.extend(members);
                *full = true;
            }
        }
        if names.contains(name) {
            name.to_owned()
        } else {
            OTHER_SEGMENT.to_owned()
        }
    }
}

/// What `segment.lua` answers.
pub enum SegmentAnswer {
    /// The segment is counted on its own.
    Taken,
    /// The policy's set is full: these are counted on their own.
    Full(HashSet<String>),
}

/// `segment.lua` on a set in memory.
pub fn take_segment(set: &mut HashSet<String>, name: &str, max: usize) -> SegmentAnswer {
    if set.contains(name) {
        return SegmentAnswer::Taken;
    }
    if set.len() < max {
        set.insert(name.to_owned());
        return SegmentAnswer::Taken;
    }
    SegmentAnswer::Full(set.clone())
}

/// A decision's counts as `add_counts` reads them: "<n> <field>" lines.
pub fn counts_arg(policy: &str, segment: &str, counts: &[Count]) -> String {
    let mut out = String::with_capacity(48 * counts.len());
    for c in counts {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&c.n.to_string());
        out.push(' ');
        out.push_str(&field(policy, c.step, &c.channel, segment, &c.metric));
    }
    out
}

/// Where a decision's counts go: its shard's hash of the hour of `now_ms`,
/// kept until the hour's end plus the retention.
pub struct CountsArgs {
    pub key: String,
    pub counts: String,
    pub keep_until_ms: i64,
}

impl Store {
    /// The segment a notification of `policy` counts under: a configured
    /// one, one of the first seen for the policy, or `other`.
    pub async fn segment(&self, policy: &str, raw: Option<&str>) -> Result<String, StoreError> {
        let name = match self.report.lookup(policy, raw) {
            SegmentLookup::Known(name) => return Ok(name),
            SegmentLookup::Ask(name) => name,
        };
        let answer: Value = Call::new(&self.scripts.segment, &[&self.keys.segments(policy)])
            .arg(&name)
            .arg(self.report.max_segments())
            .invoke(&mut self.conn.clone())
            .await?;
        let answer = match answer {
            Value::Int(1) => SegmentAnswer::Taken,
            other => SegmentAnswer::Full(
                redis::from_redis_value(other).map_err(redis::RedisError::from)?,
            ),
        };
        Ok(self.report.learn(policy, &name, answer))
    }

    /// The arguments that add `counts` to the report of `id`'s shard.
    pub(super) fn counts_args(
        &self,
        id: &str,
        policy: &str,
        segment: &str,
        counts: &[Count],
        now_ms: i64,
    ) -> CountsArgs {
        let hour = hour_of(now_ms);
        let shard = super::super::keys::shard_of(id, self.keys.shards());
        CountsArgs {
            key: self.keys.report(shard, hour),
            counts: counts_arg(policy, segment, counts),
            keep_until_ms: self.report.keep_until_ms(hour),
        }
    }

    /// No counts, for a call that adds none (its report key is declared all the same).
    pub(super) fn no_counts(&self, id: &str, now_ms: i64) -> CountsArgs {
        self.counts_args(id, "", "", &[], now_ms)
    }

    /// The counters of hours `from..to` (hour = Unix ms / 1h), summed over
    /// the timer shards.
    pub async fn report_counts(&self, from: i64, to: i64) -> Result<Counters, StoreError> {
        let mut out = Counters::new();
        let mut c = self.conn.clone();
        let shards = self.keys.shards();
        let keys: Vec<String> = (from..to)
            .flat_map(|h| (0..shards).map(move |s| (s, h)))
            .map(|(s, h)| self.keys.report(s, h))
            .collect();
        if self.split {
            // Each hour's hash of each shard is its own slot's: read them
            // 32 at a time.
            let mut reads = futures_util::stream::iter(keys)
                .map(|key| {
                    let mut c = c.clone();
                    async move {
                        redis::cmd("HGETALL")
                            .arg(key)
                            .query_async::<HashMap<String, i64>>(&mut c)
                            .await
                    }
                })
                .buffer_unordered(32);
            while let Some(hash) = reads.next().await {
                for (k, v) in hash? {
                    *out.entry(k).or_default() += v;
                }
            }
            return Ok(out);
        }
        // A pipeline per 256 keys.
        for chunk in keys.chunks(256) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.hgetall(key);
            }
            let hashes: Vec<HashMap<String, i64>> = pipe.query_async(&mut c).await?;
            for hash in hashes {
                for (k, v) in hash {
                    *out.entry(k).or_default() += v;
                }
            }
        }
        Ok(out)
    }

    /// Adds a new cascade's counts and stream entry on its shard (the
    /// accept's last call on a cluster).
    pub(super) async fn accepted_on_shard(
        &self,
        id: &str,
        entries: &str,
        counts: &CountsArgs,
    ) -> Result<(), StoreError> {
        let events = self.keys.events_of(id);
        let _: Value = Call::new(&self.scripts.accepted, &[&events, &counts.key])
            .arg(id)
            .arg(entries)
            .arg(self.events_max_len)
            .arg(&counts.counts)
            .arg(counts.keep_until_ms)
            .invoke(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_set_learnt_from_the_store_keeps_its_members_on_their_own() {
        // A new instance: nothing cached; the store says the set is full.
        let book = ReportBook::new(&ReportSettings {
            retention_ms: 86_400_000,
            segments: None,
            max_segments: 2,
        });
        let members: HashSet<String> = ["a".to_owned(), "b".to_owned()].into();
        assert_eq!(book.learn("p", "zz", SegmentAnswer::Full(members)), "other");
        for (raw, counted) in [("a", "a"), ("b", "b"), ("zz", "other"), ("", "-")] {
            match book.lookup("p", Some(raw)) {
                SegmentLookup::Known(name) => assert_eq!(name, counted, "{raw}"),
                SegmentLookup::Ask(_) => panic!("{raw}: asked again"),
            }
        }
        // Another policy knows nothing yet.
        assert!(matches!(book.lookup("q", Some("a")), SegmentLookup::Ask(_)));
    }
}
