//! Cascades: a new one recorded (`accept.lua`), one loaded for a decision,
//! a decision stored (`commit.lua`), and the record read for `status`.
//! The record's layout is `runtime/record.rs` (and `scripts/record.lua`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use redis::{AsyncCommands, ParsingError, Value};

use super::call::{Call, FromTagged, Reply, Tagged, plain_reply};
use super::connection::RedisConn;
use super::provider_index::{IndexEntry, ProviderMessage};
use super::receipts::receipts_seen;
use super::report_counts::CountsArgs;
use super::timers::{Settle, WakeArgs};
use super::{Store, StoreError};
use crate::core::policy::FAILED;
use crate::core::{Cascade, Decision, Entry, Policy, Recipient};
use crate::notification::{Admitted, Notification};
use crate::report::Count;
use crate::runtime::keys::Keys;
use crate::runtime::record::{Record, encode_entry, encode_state};

/// What `accept` found.
#[derive(Debug)]
pub enum Accepted {
    /// Recorded; the policy snapshot it runs on.
    New(Arc<Policy>),
    /// The id is already known.
    Duplicate,
    /// The decision ordered the first send, but a stopping receipt was
    /// recorded before the notification arrived: nothing stored.
    SendRefused,
}

/// A cascade as loaded for a decision.
pub struct Loaded {
    pub cascade: Cascade,
    pub version: i64,
    pub notification: Notification,
    pub policy: Arc<Policy>,
    pub recipient: Recipient,
    pub customer_id: String,
    pub receipts: BTreeMap<String, i64>,
    /// The receipts as read, `<fields>\t<failed value>`: `touch` wakes the
    /// cascade at once when the hash no longer looks like this.
    pub receipts_seen: String,
    /// The stored timeline (entries one per line), for the report's tally.
    pub timeline: String,
    /// How many entries it holds: a commit is refused when the record holds
    /// more by then (a receipt's), so the tally counts what it stored.
    pub lines: usize,
    /// The customer segment the cascade counts under in the report.
    pub segment: String,
}

impl Loaded {
    /// The timeline entries the report has not counted yet (receipts
    /// recorded since the last decision): from the `tallied` the state
    /// says; none for a state stored before counts were kept.
    pub fn untallied(&self) -> usize {
        match self.cascade.tallied {
            Some(n) => self.lines.saturating_sub(n as usize),
            None => 0,
        }
    }

    /// Notes entries stored after the timeline as loaded.
    pub fn stored(&mut self, entries: &[Entry]) {
        for e in entries {
            if !self.timeline.is_empty() {
                self.timeline.push('\n');
            }
            self.timeline.push_str(&encode_entry(e));
        }
        self.lines += entries.len();
    }
}

/// How many entries a stored timeline holds (`count_lines` in record.lua).
pub fn count_lines(timeline: &str) -> usize {
    if timeline.is_empty() {
        0
    } else {
        timeline.bytes().filter(|b| *b == b'\n').count() + 1
    }
}

/// `accept.lua`'s KEYS and ARGV, and those of its timer's `arm` (wake.lua).
struct AcceptArgs<'a> {
    id: &'a str,
    /// The whole record, in the current layout.
    record: String,
    /// Its timeline, for the events stream.
    timeline: String,
    wake: WakeArgs,
    /// The wake-up, ms (`None`: finished).
    due_ms: Option<i64>,
    now_ms: i64,
    retention_ms: i64,
    /// The stopping receipt words when the decision orders the first send
    /// (from the core); empty when it orders none.
    refuse_on: Vec<&'a str>,
    /// The new cascade's report counts.
    counts: CountsArgs,
    /// Its customer's index of recent notifications.
    customer_key: String,
}

/// How many of a customer's latest notifications the customer index keeps.
pub const CUSTOMER_INDEX_SIZE: usize = 100;

/// A wake-up less than this far off may be claimed by another instance
/// (its clock a little ahead) between an accept's two calls on a cluster.
const CLAIMABLE_SOON_MS: i64 = 5_000;

impl AcceptArgs<'_> {
    fn finished(&self) -> bool {
        self.wake.due.is_empty()
    }

    fn record_keys(&self, keys: &Keys) -> [String; 2] {
        [keys.state(self.id), keys.receipts(self.id)]
    }

    /// `accept_record`'s parameters after its keys, but the words.
    fn record_args(&self, call: &mut Call) {
        call.arg(&self.record)
            .arg(if self.finished() { "1" } else { "0" })
            .arg(self.retention_ms);
    }

    /// `accept_record`'s last parameters: the words that refuse the send.
    fn word_args(&self, call: &mut Call) {
        for word in &self.refuse_on {
            call.arg(*word);
        }
    }

    /// The shard's timer set and far-slot index; the wake-up's slot list,
    /// the third of `arm`'s keys, is `wake.slot_list`.
    fn arm_keys(&self, keys: &Keys) -> [String; 2] {
        [keys.timer(self.wake.shard), keys.later(self.wake.shard)]
    }

    /// `arm`'s parameters after its keys.
    fn arm_args(&self, call: &mut Call) {
        call.arg(self.id)
            .arg(&self.wake.due)
            .arg(self.wake.far_after)
            .arg(self.wake.slot_ms);
    }
}

/// `accept.lua`'s reply.
enum AcceptReply {
    Recorded,
    Duplicate,
    Refused,
}

impl FromTagged for AcceptReply {
    fn from_tagged(t: Tagged) -> Result<Self, ParsingError> {
        match t.word.as_str() {
            "recorded" => Ok(AcceptReply::Recorded),
            "duplicate" => Ok(AcceptReply::Duplicate),
            "refused" => Ok(AcceptReply::Refused),
            _ => t.unexpected(),
        }
    }
}
plain_reply!(AcceptReply);

/// A notification as the timeline API shows it.
pub struct Timeline {
    pub cascade: Cascade,
    pub entries: Vec<Entry>,
    /// Event word → Unix ms.
    pub receipts: BTreeMap<String, i64>,
    /// Data recorded with receipts (`Keys::data`).
    pub data: BTreeMap<String, String>,
}

/// One decision to store (`Store::commit`).
pub struct CommitRequest<'a> {
    pub id: &'a str,
    /// The version the decision was made on.
    pub version: i64,
    /// The entries of an earlier decision not stored on its own (a send
    /// made on a claim's lease), stored before the decision's.
    pub earlier: &'a [Entry],
    pub decision: &'a Decision,
    /// The policy the cascade runs on: its stop rule refuses a send.
    pub policy: &'a Policy,
    /// The provider's message id of the send this decision records.
    pub sent: Option<&'a ProviderMessage>,
    pub now_ms: i64,
    /// The end of the claim's lease the decision was made under, while the
    /// timer still holds it (the wake-up's first store); `None` otherwise.
    /// The timer is set over no other claim's lease (`settle`, wake.lua).
    pub lease_until_ms: Option<i64>,
    /// What the decision adds to the report (report/tally.rs), counted
    /// under this customer segment.
    pub counts: &'a [Count],
    pub segment: &'a str,
    /// How many timeline entries the decision read: refused (a conflict)
    /// when the record holds more, so nothing goes uncounted. `None`: not
    /// checked.
    pub lines: Option<usize>,
}

/// `commit.lua`'s KEYS and ARGV, and those of the provider index's call
/// (`index.lua`) and of the timer's `settle` (wake.lua).
struct CommitArgs<'a> {
    id: &'a str,
    version: i64,
    state: String,
    settle: Settle<'a>,
    sends: bool,
    retention_ms: i64,
    index: Option<IndexEntry>,
    /// The waking receipt words, the first `stopping` of them stopping.
    words: Vec<&'a str>,
    stopping: usize,
    lines: Option<usize>,
}

impl CommitArgs<'_> {
    fn record_keys(&self, keys: &Keys) -> [String; 3] {
        [
            keys.state(self.id),
            keys.receipts(self.id),
            keys.data(self.id),
        ]
    }

    /// `commit_record`'s parameters after its keys, but the words.
    fn record_args(&self, call: &mut Call) {
        call.arg(self.version)
            .arg(&self.state)
            .arg(&self.settle.wake.due)
            .arg(if self.sends { "1" } else { "0" })
            .arg(self.retention_ms)
            .arg(self.settle.entries)
            .arg(self.stopping);
        match self.lines {
            Some(n) => call.arg(n),
            None => call.arg(""),
        };
    }

    /// `commit_record`'s last parameters: the waking receipt words.
    fn word_args(&self, call: &mut Call) {
        for word in &self.words {
            call.arg(*word);
        }
    }

    /// Room for the arguments of every part.
    fn room(&self) -> usize {
        self.state.len()
            + self.settle.entries.len()
            + self.settle.counts.counts.len()
            + 16 * self.words.len()
            + 256
    }
}

/// `commit.lua`'s reply, with the wake-up its timer is to be set to.
struct CommitAnswer(CommitReply, String);

impl FromTagged for CommitAnswer {
    fn from_tagged(t: Tagged) -> Result<Self, ParsingError> {
        if t.word == "done" {
            return Ok(CommitAnswer(CommitReply::Done(t.value(0)?), t.value(1)?));
        }
        Ok(CommitAnswer(CommitReply::from_tagged(t)?, String::new()))
    }
}

/// What `commit` found.
#[derive(Debug, PartialEq, Eq)]
pub enum CommitReply {
    /// Stored; the new version.
    Done(i64),
    /// Another decision was stored first: load and decide again.
    Conflict,
    /// A stopping receipt arrived before the send could be claimed: decide again.
    StoppedByReceipt,
    /// The cascade's keys are gone (retention ran out).
    Gone,
}

impl FromTagged for CommitReply {
    fn from_tagged(t: Tagged) -> Result<Self, ParsingError> {
        match t.word.as_str() {
            "done" => Ok(CommitReply::Done(t.value(0)?)),
            "conflict" => Ok(CommitReply::Conflict),
            "stopped" => Ok(CommitReply::StoppedByReceipt),
            "gone" => Ok(CommitReply::Gone),
            _ => t.unexpected(),
        }
    }
}

pub(super) fn corrupt(id: &str) -> impl Fn(String) -> StoreError + '_ {
    move |why| StoreError::Corrupt { id: id.into(), why }
}

impl Store {
    /// Records a newly accepted cascade, unless its id is known (a duplicate).
    /// `decision` may already include the first step's (the accept decision
    /// and the first step's, merged); when it orders a send, a stopping
    /// receipt recorded before the notification arrived refuses it.
    pub async fn accept(
        &self,
        admitted: &Admitted<'_>,
        policy: &Policy,
        decision: &Decision,
        segment: &str,
        counts: &[Count],
        now_ms: i64,
    ) -> Result<Accepted, StoreError> {
        let n = &admitted.notification;
        let (snapshot, hash) = self.snapshot_policy(policy).await?;
        let notification = kept_notification(n)?;
        let tz = kept_tz(admitted);
        let timeline = join_entries(&[], &decision.entries);
        let record = Record {
            version: "1",
            state: &encode_state(&decision.cascade),
            notification: &notification,
            timeline: &timeline,
            meta: &format!("{hash}\t{tz}"),
        }
        .encode();
        let args = AcceptArgs {
            id: &n.id,
            record,
            timeline,
            wake: WakeArgs::new(&self.keys, &n.id, decision.cascade.wake_at_ms(), now_ms),
            due_ms: decision.cascade.wake_at_ms(),
            now_ms,
            retention_ms: self.retention_ms,
            refuse_on: match decision.send {
                Some(_) => policy.stopping_receipts(),
                None => Vec::new(),
            },
            counts: self.counts_args(&n.id, &policy.name, segment, counts, now_ms),
            customer_key: self.keys.customer(&n.customer.id),
        };
        let reply = if self.split {
            self.accept_in_parts(&args).await?
        } else {
            // accept_whole.lua's layout.
            let [record, receipts] = args.record_keys(&self.keys);
            let [timers, later] = args.arm_keys(&self.keys);
            let events = self.keys.events(args.wake.shard);
            let slot_list = &args.wake.slot_list;
            let report = &args.counts.key;
            let keys = [
                &record[..],
                &receipts,
                &timers,
                &later,
                slot_list,
                &events,
                report,
                &args.customer_key,
            ];
            let room = args.record.len() + args.timeline.len() + args.counts.counts.len() + 256;
            let mut call = Call::with_room(&self.scripts.accept, &keys, 20, room);
            args.arm_args(&mut call);
            call.arg(&args.timeline).arg(self.events_max_len);
            args.record_args(&mut call);
            call.arg(&args.counts.counts)
                .arg(args.counts.keep_until_ms)
                .arg(now_ms)
                .arg(CUSTOMER_INDEX_SIZE);
            args.word_args(&mut call);
            call.invoke(&mut self.conn.clone()).await?
        };
        Ok(match reply {
            AcceptReply::Recorded => Accepted::New(snapshot),
            AcceptReply::Refused => Accepted::SendRefused,
            AcceptReply::Duplicate => Accepted::Duplicate,
        })
    }

    /// `accept` on a cluster: the timer first, then the record, then (for a
    /// wake-up due within seconds) the timer again, and the stream entry. A
    /// crash after the first leaves a timer without a record, which the
    /// claim that finds it forgets (`forget.lua`). The second covers a claim
    /// that took the first timer and found no record yet: it may have
    /// forgotten it just before the record was written (arming again keeps
    /// a timer that is there, and marks a lease); a wake-up further off is
    /// not claimable in between. Once the record is written the cascade is accepted:
    /// a failure after that is logged, not returned, or intake would take
    /// the message back and find it a duplicate.
    async fn accept_in_parts(&self, args: &AcceptArgs<'_>) -> Result<AcceptReply, StoreError> {
        let started = std::time::Instant::now();
        let mut c = self.conn.clone();
        let arm = |c: &mut RedisConn| {
            let [timers, later] = args.arm_keys(&self.keys);
            let mut c = c.clone();
            async move {
                let keys = [&timers[..], &later, &args.wake.slot_list];
                let mut arm = Call::new(&self.scripts.arm, &keys);
                args.arm_args(&mut arm);
                arm.invoke::<Value>(&mut c).await.map(|_| ())
            }
        };
        if !args.finished() {
            arm(&mut c).await?;
        }
        let keys = args.record_keys(&self.keys);
        let room = args.record.len() + 64;
        let mut record =
            Call::with_room(&self.scripts.accept_record, &[&keys[0], &keys[1]], 8, room);
        args.record_args(&mut record);
        args.word_args(&mut record);
        let reply: AcceptReply = record.invoke(&mut c).await?;
        if let AcceptReply::Recorded = reply {
            // Claimable by now (or soon, by a clock a little ahead): judged
            // after the record, however long its call took.
            let now_ms = args.now_ms + started.elapsed().as_millis() as i64;
            let wakes_soon = args
                .due_ms
                .is_some_and(|at| at <= now_ms + CLAIMABLE_SOON_MS);
            if wakes_soon && let Err(e) = arm(&mut c).await {
                tracing::warn!(notification_id = args.id, error = %e, "cannot arm a new cascade's timer a second time; the first stands unless a claim forgot it in between");
            }
            if let Err(e) = self
                .accepted_on_shard(args.id, &args.timeline, &args.counts)
                .await
            {
                tracing::warn!(notification_id = args.id, error = %e, "cannot append an accepted cascade's entries to the events stream and its counts to the report");
            }
            let index = Call::new(&self.scripts.customer, &[&args.customer_key])
                .arg(args.id)
                .arg(args.now_ms)
                .arg(CUSTOMER_INDEX_SIZE)
                .arg(args.retention_ms)
                .invoke::<Value>(&mut c)
                .await;
            if let Err(e) = index {
                tracing::warn!(notification_id = args.id, error = %e, "cannot add an accepted cascade to its customer's index");
            }
        }
        Ok(reply)
    }

    /// Loads a cascade and its receipts in one round trip.
    pub async fn load(&self, id: &str) -> Result<Option<Loaded>, StoreError> {
        let mut c = self.conn.clone();
        let (state, receipts): (Option<String>, HashMap<String, String>) = redis::pipe()
            .get(self.keys.state(id))
            .hgetall(self.keys.receipts(id))
            .query_async(&mut c)
            .await?;
        self.loaded(id, state, receipts).await
    }

    /// A cascade from its stored record (`None` when unknown) and receipts.
    pub(super) async fn loaded(
        &self,
        id: &str,
        record: Option<String>,
        receipts: HashMap<String, String>,
    ) -> Result<Option<Loaded>, StoreError> {
        let Some(record) = record else {
            return Ok(None);
        };
        let mut loaded = self.assembled(id, &record, receipts).await?;
        let segment = loaded.notification.customer.segment.as_deref();
        loaded.segment = self.segment(&loaded.policy.name, segment).await?;
        Ok(Some(loaded))
    }

    /// A cascade from its stored record and receipts, its report segment
    /// left empty: finding it may register the segment (`segment.lua`),
    /// which a read-only command must not.
    async fn assembled(
        &self,
        id: &str,
        record: &str,
        receipts: HashMap<String, String>,
    ) -> Result<Loaded, StoreError> {
        let corrupt = corrupt(id);
        let r = Record::parse(record).map_err(&corrupt)?;
        let cascade = r.cascade().map_err(&corrupt)?;
        let version: i64 = r
            .version
            .parse()
            .map_err(|_| corrupt("bad version".into()))?;
        // `<policy hash>\t<zone>`; records of earlier versions add `\t<customer>`.
        let mut meta = r.meta.split('\t');
        let (Some(hash), tz) = (meta.next(), meta.next().unwrap_or("")) else {
            return Err(corrupt("the meta field has no policy hash".into()));
        };
        let policy = self.policy(id, hash).await?;
        let (receipts, receipts_seen) = read_receipts(receipts);
        let parts = Parts {
            cascade,
            version,
            policy,
            notification: r.notification,
            tz,
            timeline: r.timeline,
        };
        assemble(id, parts, receipts, receipts_seen)
    }

    /// Stores a decision made on `request.version`, after the entries of an
    /// `earlier` one not stored on its own (a send made on a claim's lease).
    /// When it orders a send, a stopping receipt recorded meanwhile refuses
    /// it (contract §6). `sent` maps the provider's message id of the send this
    /// decision records back to the notification and step, for callbacks;
    /// it expires with the retention.
    pub async fn commit(&self, request: CommitRequest<'_>) -> Result<CommitReply, StoreError> {
        let CommitRequest {
            id,
            decision,
            policy,
            now_ms,
            ..
        } = request;
        let (words, stopping) = policy.receipt_words();
        let entries = join_entries(request.earlier, &decision.entries);
        let args = CommitArgs {
            id,
            version: request.version,
            state: encode_state(&decision.cascade),
            settle: Settle {
                id,
                wake: WakeArgs::new(&self.keys, id, decision.cascade.wake_at_ms(), now_ms),
                now_ms,
                entries: &entries,
                lease_until_ms: request.lease_until_ms,
                counts: self.counts_args(id, &policy.name, request.segment, request.counts, now_ms),
            },
            sends: decision.send.is_some(),
            retention_ms: self.retention_ms,
            index: request.sent.map(|m| self.index_entry(id, m, now_ms)),
            words,
            stopping,
            lines: request.lines,
        };
        if self.split {
            return self.commit_in_parts(&args).await;
        }
        // commit_whole.lua's layout.
        let [record, receipts, data] = args.record_keys(&self.keys);
        let [timers, later, events] = args.settle.keys(&self.keys);
        let slot_list = &args.settle.wake.slot_list;
        let report = &args.settle.counts.key;
        let mut keys = vec![
            &record[..],
            &receipts,
            &data,
            &timers,
            &later,
            slot_list,
            &events,
            report,
        ];
        if let Some(i) = &args.index {
            keys.push(&i.key);
        }
        let mut call = Call::with_room(
            &self.scripts.commit,
            &keys,
            20 + args.words.len(),
            args.room(),
        );
        args.settle.head_args(&mut call, self.events_max_len);
        match &args.index {
            Some(i) => i.args(&mut call),
            None => {
                call.arg("").arg("").arg("");
            }
        }
        args.record_args(&mut call);
        call.arg(&args.settle.counts.counts)
            .arg(args.settle.counts.keep_until_ms);
        args.word_args(&mut call);
        let reply: Reply<CommitReply> = call.invoke(&mut self.conn.clone()).await?;
        reply.about(id)
    }

    /// `commit` on a cluster: the provider index first (the send went out
    /// whatever happens next), then the record, then the timer and the
    /// stream entry. A crash before the timer leaves the claim's lease in
    /// place: the next claim finds it run out and the state moved on, a
    /// plain wake-up (the worker's `load`).
    async fn commit_in_parts(&self, args: &CommitArgs<'_>) -> Result<CommitReply, StoreError> {
        let mut c = self.conn.clone();
        if let Some(i) = &args.index {
            let mut index = Call::new(&self.scripts.index, &[&i.key]);
            i.args(&mut index);
            let _: Value = index.invoke(&mut c).await?;
        }
        let keys = args.record_keys(&self.keys);
        let mut record = Call::with_room(
            &self.scripts.commit_record,
            &[&keys[0], &keys[1], &keys[2]],
            9 + args.words.len(),
            args.room(),
        );
        args.record_args(&mut record);
        args.word_args(&mut record);
        let reply: Reply<CommitAnswer> = record.invoke(&mut c).await?;
        let CommitAnswer(reply, due) = reply.about(args.id)?;
        // The decision is stored: a failure to set the timer now leaves the
        // claim's lease to run out (and the next claim to take it as
        // lapsed). Reporting it as a failed commit would have the caller
        // commit again, refused by its own write.
        if let CommitReply::Done(_) = reply
            && let Err(e) = self.settle(&args.settle, &due).await
        {
            tracing::warn!(notification_id = args.id, error = %e, "a decision is stored but its timer could not be set; its lease will run out and another claim will take it");
        }
        Ok(reply)
    }

    /// A cascade's stored record and its receipts hash, in one round trip
    /// (the keys share the cascade's slot); `None` when no record exists.
    async fn record_and_receipts(
        &self,
        id: &str,
    ) -> Result<Option<(String, HashMap<String, String>)>, StoreError> {
        let mut c = self.conn.clone();
        let (record, receipts): (Option<String>, HashMap<String, String>) = redis::pipe()
            .get(self.keys.state(id))
            .hgetall(self.keys.receipts(id))
            .query_async(&mut c)
            .await?;
        Ok(record.map(|r| (r, receipts)))
    }

    /// The data recorded with a notification's receipts (`Keys::data`).
    pub async fn receipt_data(&self, id: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let mut c = self.conn.clone();
        Ok(c.hgetall(self.keys.data(id)).await?)
    }

    /// One notification's state, timeline and receipts, for the timeline
    /// API (one round trip: the keys share the cascade's slot).
    pub async fn timeline(&self, id: &str) -> Result<Option<Timeline>, StoreError> {
        let Some((record, receipts)) = self.record_and_receipts(id).await? else {
            return Ok(None);
        };
        let corrupt = corrupt(id);
        let r = Record::parse(&record).map_err(&corrupt)?;
        Ok(Some(Timeline {
            cascade: r.cascade().map_err(&corrupt)?,
            entries: r.entries().map_err(&corrupt)?,
            receipts: read_receipts(receipts).0,
            data: self.receipt_data(id).await?,
        }))
    }

    /// Everything `cascade status` shows of one notification: the cascade
    /// as a decision would load it (its notification, policy, zone and
    /// receipts) and its timeline. Reads only.
    pub async fn details(&self, id: &str) -> Result<Option<(Loaded, Vec<Entry>)>, StoreError> {
        let Some((record, receipts)) = self.record_and_receipts(id).await? else {
            return Ok(None);
        };
        let loaded = self.assembled(id, &record, receipts).await?;
        let entries =
            crate::runtime::record::decode_timeline(&loaded.timeline).map_err(corrupt(id))?;
        Ok(Some((loaded, entries)))
    }

    /// The stored timeline and state of one notification.
    pub async fn status(&self, id: &str) -> Result<Option<(Cascade, Vec<Entry>)>, StoreError> {
        let mut c = self.conn.clone();
        let record: Option<String> = c.get(self.keys.state(id)).await?;
        let Some(record) = record else {
            return Ok(None);
        };
        let corrupt = corrupt(id);
        let record = Record::parse(&record).map_err(&corrupt)?;
        Ok(Some((
            record.cascade().map_err(&corrupt)?,
            record.entries().map_err(&corrupt)?,
        )))
    }
}

/// Timeline entries, one per line (`runtime/record.rs`).
pub fn join_entries(earlier: &[Entry], entries: &[Entry]) -> String {
    let mut lines = String::with_capacity(96 * (earlier.len() + entries.len()));
    for (n, entry) in earlier.iter().chain(entries).enumerate() {
        if n > 0 {
            lines.push('\n');
        }
        lines.push_str(&encode_entry(entry));
    }
    lines
}

/// The notification as a record keeps it (JSON).
pub(super) fn kept_notification(n: &Notification) -> Result<String, StoreError> {
    n.to_kept_json().map_err(|e| corrupt(&n.id)(e.to_string()))
}

/// The zone a cascade runs in, as a record keeps it: only when it is not
/// the notification's own (a default from the configuration, which may
/// change), else "".
pub(super) fn kept_tz<'a>(admitted: &'a Admitted<'_>) -> &'a str {
    let tz = admitted.recipient.tz.iana_name().unwrap_or("UTC");
    if admitted.notification.customer.timezone.as_deref() == Some(tz) {
        ""
    } else {
        tz
    }
}

/// A receipts hash as read (word -> Unix ms, as text): the receipts a
/// decision reads, and `Loaded::receipts_seen`.
pub(super) fn read_receipts(raw: HashMap<String, String>) -> (BTreeMap<String, i64>, String) {
    let seen = receipts_seen(raw.len(), raw.get(FAILED).map(String::as_str));
    // Values a foreign writer got wrong are read as "now-ish" rather than dropped:
    // a stopping receipt must stop, whatever its timestamp looks like.
    let receipts = raw
        .into_iter()
        .map(|(k, v)| (k, v.trim().parse::<i64>().unwrap_or(0)))
        .collect();
    (receipts, seen)
}

/// What a stored cascade is made of, however a store keeps it.
pub(super) struct Parts<'a> {
    pub cascade: Cascade,
    pub version: i64,
    pub policy: Arc<Policy>,
    /// The kept notification (JSON).
    pub notification: &'a str,
    /// The kept zone (`kept_tz`).
    pub tz: &'a str,
    /// The stored timeline.
    pub timeline: &'a str,
}

/// A cascade as loaded for a decision, from its parts and receipts (both
/// stores build it here, so they load alike).
pub(super) fn assemble(
    id: &str,
    parts: Parts<'_>,
    receipts: BTreeMap<String, i64>,
    receipts_seen: String,
) -> Result<Loaded, StoreError> {
    let Parts {
        cascade,
        version,
        policy,
        notification,
        tz,
        timeline,
    } = parts;
    let notification = Notification::from_kept(id, &policy.name, notification)
        .map_err(|e| corrupt(id)(e.to_string()))?;
    let tz = match tz {
        "" => notification.customer.timezone.as_deref().unwrap_or("UTC"),
        tz => tz,
    };
    let tz = jiff::tz::TimeZone::get(tz).unwrap_or(jiff::tz::TimeZone::UTC);
    let recipient = Recipient {
        contacts: notification.customer.contacts.clone(),
        preferences: notification.customer.preferences.clone(),
        opt_out: notification.customer.opt_out.clone(),
        tz,
    };
    Ok(Loaded {
        cascade,
        version,
        customer_id: notification.customer.id.clone(),
        notification,
        policy,
        recipient,
        receipts,
        receipts_seen,
        lines: count_lines(timeline),
        timeline: timeline.to_owned(),
        segment: String::new(),
    })
}

/// One of a customer's recent notifications, as the customer timeline API
/// lists it.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CustomerNotification {
    pub id: String,
    pub accepted_ms: i64,
    /// `running`, or how it ended.
    pub state: &'static str,
    /// The current step, counted from 1.
    pub step: u8,
    /// Its latest timeline entry: event word, when, and its channel.
    pub last_event: Option<String>,
    pub last_event_ms: Option<i64>,
    pub last_channel: Option<String>,
}

impl Store {
    /// A customer's notifications accepted since `since_ms`, newest first
    /// (at most `CUSTOMER_INDEX_SIZE`); those whose record is gone are left out.
    pub async fn customer_notifications(
        &self,
        customer_id: &str,
        since_ms: i64,
    ) -> Result<Vec<CustomerNotification>, StoreError> {
        let mut c = self.conn.clone();
        let ids: Vec<(String, i64)> = c
            .zrevrangebyscore_withscores(self.keys.customer(customer_id), "+inf", since_ms)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let records: Vec<Option<String>> = if self.split {
            let mut all = Vec::with_capacity(ids.len());
            for (id, _) in &ids {
                all.push(c.get(self.keys.state(id)).await?);
            }
            all
        } else {
            let mut pipe = redis::pipe();
            for (id, _) in &ids {
                pipe.get(self.keys.state(id));
            }
            pipe.query_async(&mut c).await?
        };
        let mut out = Vec::new();
        for ((id, accepted_ms), record) in ids.into_iter().zip(records) {
            let Some(record) = record else { continue };
            let (r, cascade) = {
                let corrupt = corrupt(&id);
                let r = Record::parse(&record).map_err(&corrupt)?;
                let cascade = r.cascade().map_err(&corrupt)?;
                (r, cascade)
            };
            let last = r
                .timeline
                .rsplit('\n')
                .next()
                .and_then(|l| crate::runtime::record::decode_timeline(l).ok())
                .and_then(|mut v| v.pop());
            out.push(CustomerNotification {
                state: cascade.outcome().map_or("running", |o| o.word()),
                step: cascade.step + 1,
                last_event: last.as_ref().map(|e| e.event.as_str().to_owned()),
                last_event_ms: last.as_ref().map(|e| e.at_ms),
                last_channel: last.and_then(|e| e.channel),
                id,
                accepted_ms,
            });
        }
        Ok(out)
    }
}
