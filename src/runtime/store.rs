//! The Redis store: cascade state, receipts, timelines, timers and
//! per-customer limits. Every change of a cascade is one Lua script, so it is
//! one round trip and atomic (see `scripts/*.lua` for keys and arguments).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

use super::keys::{Keys, fnv1a};
use super::record::{Record, encode_entry, encode_state};
use crate::config::ChannelConfig;
use crate::core::policy::FAILED;
use crate::core::{Cascade, Decision, Entry, EntryKind, Policy, Recipient};
use crate::notification::{Admitted, Notification};

/// Bounds the `cascade:events` stream (approximate trimming).
pub const EVENTS_MAX_LEN: u64 = 100_000;

/// Wake-ups further off than this wait in per-minute lists, not in the
/// sorted set (`scripts/wake.lua`).
const WAKE_HORIZON_MS: i64 = 120_000;
/// The length of one such list's slot.
const WAKE_SLOT_MS: i64 = 60_000;
/// Most far wake-ups one claim moves into the sorted set.
const WAKE_MOVE_BUDGET: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// `why` may be serde_json's text, which quotes the stored values.
    #[error("stored data for {id} is unreadable: {}", crate::pii::scrub(why))]
    Corrupt { id: String, why: String },
}

impl StoreError {
    /// Whether Redis answered with an error about the data a call touched —
    /// a key of the wrong type (`WRONGTYPE`), a script that failed on it —
    /// rather than failed to answer: the sentence to give, or `None`. Only
    /// such an answer counts against an intake message (`poison.rs`); an
    /// outage never does, so anything not known to be about the data is an
    /// outage: I/O, timeouts, `LOADING`, `READONLY`, `MASTERDOWN`,
    /// `TRYAGAIN`, `CLUSTERDOWN`, `BUSY`, `OOM`, `MISCONF`… (Redis before 7
    /// wraps an error inside a script in `ERR Error running script`, hence
    /// the look at its words.) The sentence names the error code and says no
    /// more: Redis's own detail could quote a value.
    pub fn about_the_data(&self) -> Option<String> {
        const OUTAGES: [&str; 9] = [
            "OOM",
            "READONLY",
            "LOADING",
            "MASTERDOWN",
            "CLUSTERDOWN",
            "TRYAGAIN",
            "BUSY",
            "MISCONF",
            "NOREPLICAS",
        ];
        let StoreError::Redis(e) = self else {
            return None;
        };
        let code = e.code()?;
        let detail = e.detail().unwrap_or("");
        let outage = detail
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|word| OUTAGES.contains(&word));
        let in_script = detail.contains("script");
        match code {
            "WRONGTYPE" => Some(
                "Redis answered WRONGTYPE: a key of this notification holds the wrong kind of value"
                    .to_owned(),
            ),
            "ERR" if in_script && !outage => {
                let wrapped = if detail.contains("WRONGTYPE") {
                    " (WRONGTYPE: a key of this notification holds the wrong kind of value)"
                } else {
                    ""
                };
                Some(format!("a Redis script failed on its data{wrapped}"))
            }
            _ => None,
        }
    }
}

/// What `commit` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Commit {
    /// Stored; the new version.
    Done(i64),
    /// Another decision was stored first: load and decide again.
    Conflict,
    /// A stopping receipt arrived before the send could be claimed: decide again.
    StoppedByReceipt,
    /// The cascade's keys are gone (retention ran out).
    Gone,
}

/// A provider's message id for a send, to find the notification again
/// when the provider's callback names it.
#[derive(Clone, Debug)]
pub struct ProviderMessage {
    pub channel: String,
    pub provider_message_id: String,
    /// The recipient, for providers whose callbacks name a peer and a
    /// watermark rather than a message (VK).
    pub peer: Option<String>,
    pub step: u8,
}

const DAY_MS: i64 = 86_400_000;

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

/// What `record_receipt` found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReceiptResult {
    Recorded,
    AlreadyRecorded,
    UnknownNotification,
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
}

/// A cascade the scheduler claimed, with its record and receipts as read in
/// the same round trip: `Store::load_claimed` turns them into a `Loaded`
/// (in the task that wakes it, so the scheduler goes on claiming).
pub struct Claimed {
    pub id: String,
    /// `None`: its keys are gone (retention ran out).
    record: Option<String>,
    receipts: HashMap<String, String>,
    /// The lease this claim holds.
    pub lease: Lease,
    /// When an earlier claim was made whose lease it was found under, run
    /// out: that claim's holder stopped (died, stalled, lost Redis) without
    /// storing what it did. Taken as the lease's end less this instance's
    /// `claim_lease`: every instance is meant to run with the same.
    pub lapsed_claim_at_ms: Option<i64>,
}

/// A claim's lease on a cascade: its score in the timer set ends at
/// `until_ms`; by this process's monotonic clock it ends at `deadline`
/// (measured from before the claim, so it is never later than Redis's).
#[derive(Clone, Copy, Debug)]
pub struct Lease {
    pub until_ms: i64,
    pub deadline: std::time::Instant,
}

/// One cascade as `claim.lua` returns it: id, record, receipts, the end of a
/// lapsed lease (or 0).
type ClaimRow = (String, Option<String>, HashMap<String, String>, i64);

/// A policy as last stored, and its snapshot hash.
type Snapshot = (Arc<Policy>, String);

struct Scripts {
    accept: Script,
    claim: Script,
    commit: Script,
    receipt: Script,
    limit: Script,
    touch: Script,
}

/// One script call: `EVALSHA` with its keys and arguments written straight
/// into the command (redis-rs's `ScriptInvocation` keeps each in a buffer of
/// its own and copies them all again to send: this runs for every
/// decision). A Redis that lost its scripts (a restart) gets the script
/// loaded and the call made again.
struct Call<'s> {
    script: &'s Script,
    cmd: redis::Cmd,
}

impl<'s> Call<'s> {
    fn new(script: &'s Script, keys: &[&str]) -> Self {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash()).arg(keys.len());
        for k in keys {
            cmd.arg(*k);
        }
        Call { script, cmd }
    }

    fn arg(&mut self, arg: impl redis::ToRedisArgs) -> &mut Self {
        self.cmd.arg(arg);
        self
    }

    async fn invoke<T: redis::FromRedisValue>(
        &self,
        conn: &mut ConnectionManager,
    ) -> redis::RedisResult<T> {
        match self.cmd.query_async(conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.script.load_async(conn).await?;
                self.cmd.query_async(conn).await
            }
            answer => answer,
        }
    }
}

/// The Redis side of the daemon. Cheap to clone: the connection manager
/// multiplexes one connection and reconnects by itself.
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    /// The scheduler's claims only (see `claim`).
    claims: ConnectionManager,
    pub keys: Keys,
    retention_ms: i64,
    scripts: Arc<Scripts>,
    /// Policy snapshots by hash: they never change, so they are read once.
    policies: Arc<Mutex<HashMap<String, Arc<Policy>>>>,
    /// The latest snapshot hash of each policy by name, so intake does not
    /// encode and hash the policy for every notification.
    hashes: Arc<Mutex<HashMap<String, Snapshot>>>,
}

impl Store {
    pub async fn connect(url: &str, keys: Keys, retention_ms: i64) -> Result<Store, StoreError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
            .set_response_timeout(Some(std::time::Duration::from_secs(5)))
            .set_number_of_retries(2)
            .set_max_delay(std::time::Duration::from_secs(2));
        let mut conn = ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
        let claims = ConnectionManager::new_with_config(client, config).await?;
        let scripts = Scripts {
            accept: Script::new(concat!(
                include_str!("scripts/wake.lua"),
                include_str!("scripts/accept.lua")
            )),
            claim: Script::new(concat!(
                include_str!("scripts/wake.lua"),
                include_str!("scripts/claim.lua")
            )),
            commit: Script::new(concat!(
                include_str!("scripts/record.lua"),
                include_str!("scripts/wake.lua"),
                include_str!("scripts/commit.lua")
            )),
            receipt: Script::new(concat!(
                include_str!("scripts/record.lua"),
                include_str!("scripts/wake.lua"),
                include_str!("scripts/receipt.lua")
            )),
            limit: Script::new(include_str!("scripts/limit.lua")),
            touch: Script::new(concat!(
                include_str!("scripts/wake.lua"),
                include_str!("scripts/touch.lua")
            )),
        };
        // Loaded up front: otherwise hundreds of first calls in flight at
        // once each get NOSCRIPT and send the whole script again. (After a
        // Redis restart, a call that gets NOSCRIPT still loads it itself.)
        for script in [
            &scripts.accept,
            &scripts.claim,
            &scripts.commit,
            &scripts.receipt,
            &scripts.limit,
            &scripts.touch,
        ] {
            script.load_async(&mut conn).await?;
        }
        Ok(Store {
            conn,
            claims,
            keys,
            retention_ms,
            scripts: Arc::new(scripts),
            policies: Arc::new(Mutex::new(HashMap::new())),
            hashes: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Stores the policy snapshot (once per content) and returns its hash
    /// and the shared copy the worker decides on.
    async fn snapshot_policy(&self, policy: &Policy) -> Result<Snapshot, StoreError> {
        let cached = self
            .hashes
            .lock()
            .ok()
            .and_then(|m| m.get(&policy.name).filter(|(p, _)| **p == *policy).cloned());
        if let Some(snapshot) = cached {
            return Ok(snapshot);
        }
        let json = serde_json::to_string(policy).map_err(|e| StoreError::Corrupt {
            id: policy.name.clone(),
            why: e.to_string(),
        })?;
        let hash = format!("{:016x}", fnv1a(json.as_bytes()));
        let known = self
            .policies
            .lock()
            .map(|m| m.contains_key(&hash))
            .unwrap_or(false);
        if !known {
            let mut c = self.conn.clone();
            let _: () = redis::cmd("SET")
                .arg(self.keys.policy(&hash))
                .arg(&json)
                .arg("NX")
                .query_async(&mut c)
                .await?;
            if let Ok(mut m) = self.policies.lock() {
                m.insert(hash.clone(), Arc::new(policy.clone()));
            }
        }
        let snapshot = (Arc::new(policy.clone()), hash);
        if let Ok(mut m) = self.hashes.lock() {
            m.insert(policy.name.clone(), snapshot.clone());
        }
        Ok(snapshot)
    }

    async fn policy(&self, id: &str, hash: &str) -> Result<Arc<Policy>, StoreError> {
        if let Some(p) = self.policies.lock().ok().and_then(|m| m.get(hash).cloned()) {
            return Ok(p);
        }
        let mut c = self.conn.clone();
        let json: Option<String> = c.get(self.keys.policy(hash)).await?;
        let json = json.ok_or_else(|| StoreError::Corrupt {
            id: id.into(),
            why: format!("policy snapshot {hash} is missing"),
        })?;
        let policy: Policy = serde_json::from_str(&json).map_err(|e| StoreError::Corrupt {
            id: id.into(),
            why: e.to_string(),
        })?;
        let policy = Arc::new(policy);
        if let Ok(mut m) = self.policies.lock() {
            m.insert(hash.to_owned(), policy.clone());
        }
        Ok(policy)
    }

    /// Records a newly accepted cascade, unless its id is known (a duplicate).
    /// `decision` may already include the first step's (the accept decision
    /// and the first step's, merged); when it orders a send, a stopping
    /// receipt recorded before the notification arrived refuses it.
    pub async fn accept(
        &self,
        admitted: &Admitted,
        policy: &Policy,
        decision: &Decision,
        now_ms: i64,
    ) -> Result<Accepted, StoreError> {
        let n = &admitted.notification;
        let (snapshot, hash) = self.snapshot_policy(policy).await?;
        let state = encode_state(&decision.cascade);
        let notification = n.to_kept_json().map_err(|e| StoreError::Corrupt {
            id: n.id.clone(),
            why: e.to_string(),
        })?;
        // The zone the cascade runs in is kept only when it is not the
        // notification's own (a default from the configuration, which may change).
        let tz = admitted.recipient.tz.iana_name().unwrap_or("UTC");
        let tz = if n.customer.timezone.as_deref() == Some(tz) {
            ""
        } else {
            tz
        };
        let wake = decision
            .cascade
            .wake_at_ms()
            .map(|w| w.to_string())
            .unwrap_or_default();
        let mut inv = Call::new(
            &self.scripts.accept,
            &[
                &self.keys.state(&n.id),
                &self.keys.receipts(&n.id),
                &self.keys.timer_of(&n.id),
                &self.keys.events(),
                &self.keys.later_of(&n.id),
            ],
        );
        inv.arg(&n.id)
            .arg(state)
            .arg(notification)
            .arg(format!("{hash}\t{tz}"))
            .arg(wake)
            .arg(self.retention_ms)
            .arg(EVENTS_MAX_LEN);
        if decision.send.is_some() {
            inv.arg(policy.stop_on.join(","));
        } else {
            inv.arg("");
        }
        inv.arg(now_ms + WAKE_HORIZON_MS).arg(WAKE_SLOT_MS);
        for e in &decision.entries {
            inv.arg(encode_entry(e));
        }
        let mut c = self.conn.clone();
        let answer: i64 = inv.invoke(&mut c).await?;
        Ok(match answer {
            1 => Accepted::New(snapshot),
            2 => Accepted::SendRefused,
            _ => Accepted::Duplicate,
        })
    }

    /// Claims up to `limit` due cascades of one shard, leasing them for
    /// `lease_ms`, and reads each in the same round trip. Claims go over a
    /// connection of their own, so they do not queue behind the commits of
    /// the wake-ups in progress (the scheduler waits for each claim, and
    /// workers would sit idle meanwhile).
    pub async fn claim(
        &self,
        shard: u16,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        let mut c = self.claims.clone();
        // Saturating: an absurd `claim_lease` must not panic the scheduler.
        let started = std::time::Instant::now();
        let lease = Lease {
            until_ms: now_ms.saturating_add(lease_ms),
            deadline: started
                .checked_add(std::time::Duration::from_millis(lease_ms.max(0) as u64))
                .unwrap_or(started),
        };
        let lease_until_ms = lease.until_ms;
        let rows: Vec<ClaimRow> = Call::new(
            &self.scripts.claim,
            &[&self.keys.timer(shard), &self.keys.later(shard)],
        )
        .arg(now_ms)
        // The half marks the score as a lease (claim.lua).
        .arg(format!("{lease_until_ms}.5"))
        .arg(limit)
        .arg(self.keys.prefix())
        .arg(now_ms + WAKE_HORIZON_MS)
        .arg(WAKE_SLOT_MS)
        .arg(WAKE_MOVE_BUDGET)
        .invoke(&mut c)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, record, receipts, lapsed_until_ms)| Claimed {
                id,
                record,
                receipts,
                lease,
                lapsed_claim_at_ms: (lapsed_until_ms > 0).then(|| lapsed_until_ms - lease_ms),
            })
            .collect())
    }

    /// A claimed cascade as loaded for a decision; `None` when its keys are
    /// gone. A cascade that cannot be read comes with its error (its lease
    /// brings it back).
    pub async fn load_claimed(&self, claimed: &mut Claimed) -> Result<Option<Loaded>, StoreError> {
        let record = claimed.record.take();
        let receipts = std::mem::take(&mut claimed.receipts);
        self.loaded(&claimed.id, record, receipts).await
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
    async fn loaded(
        &self,
        id: &str,
        record: Option<String>,
        receipts: HashMap<String, String>,
    ) -> Result<Option<Loaded>, StoreError> {
        let Some(record) = record else {
            return Ok(None);
        };
        let corrupt = |why: String| StoreError::Corrupt { id: id.into(), why };
        let r = Record::parse(&record).map_err(corrupt)?;
        let cascade = r.cascade().map_err(corrupt)?;
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
        let notification = Notification::from_kept(id, &policy.name, r.notification)
            .map_err(|e| corrupt(e.to_string()))?;
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
        let receipts_seen = receipts_seen(receipts.len(), receipts.get(FAILED).map(String::as_str));
        // Values a foreign writer got wrong are read as "now-ish" rather than dropped:
        // a stopping receipt must stop, whatever its timestamp looks like.
        let receipts = receipts
            .into_iter()
            .map(|(k, v)| {
                let at = v.trim().parse::<i64>().unwrap_or(0);
                (k, at)
            })
            .collect();
        Ok(Some(Loaded {
            cascade,
            version,
            customer_id: notification.customer.id.clone(),
            notification,
            policy,
            recipient,
            receipts,
            receipts_seen,
        }))
    }

    /// Stores a decision made on `version`, after the entries of an
    /// `earlier` one not stored on its own (a send made on a claim's lease).
    /// When it orders a send, a stopping receipt recorded meanwhile refuses
    /// it (contract §6). `sent` maps the provider's message id of the send this
    /// decision records back to the notification and step, for callbacks;
    /// it expires with the retention.
    #[allow(clippy::too_many_arguments)]
    pub async fn commit(
        &self,
        id: &str,
        version: i64,
        earlier: &[Entry],
        decision: &Decision,
        stop_on: &[String],
        sent: Option<&ProviderMessage>,
        now_ms: i64,
    ) -> Result<Commit, StoreError> {
        let state = encode_state(&decision.cascade);
        let wake = decision
            .cascade
            .wake_at_ms()
            .map(|w| w.to_string())
            .unwrap_or_default();
        let mut inv = Call::new(
            &self.scripts.commit,
            &[
                &self.keys.state(id),
                &self.keys.receipts(id),
                &self.keys.timer_of(id),
                &self.keys.events(),
                &self.keys.later_of(id),
            ],
        );
        inv.arg(id)
            .arg(version)
            .arg(state)
            .arg(wake)
            .arg(if decision.send.is_some() { "1" } else { "0" })
            .arg(stop_on.join(","))
            .arg(self.retention_ms)
            .arg(EVENTS_MAX_LEN);
        match sent {
            Some(m) => match m.peer.as_deref() {
                // VK's callbacks name the peer and a message id watermark,
                // never one message: the peer's messages of the day are all
                // they need. The day's hash outlives the retention by a day.
                // (This commit stores the send's outcome, just after it.)
                Some(peer) => {
                    let day = now_ms.div_euclid(DAY_MS);
                    inv.arg(self.keys.peer_messages(&m.channel, peer, day))
                        .arg(peer)
                        .arg(format!("{} {} {id}", m.provider_message_id, m.step))
                        .arg(((self.retention_ms + DAY_MS) / 1000).max(1));
                }
                // Others name one message: a key per message id.
                None => {
                    inv.arg(
                        self.keys
                            .provider_message(&m.channel, &m.provider_message_id),
                    )
                    .arg("")
                    .arg(format!("{}\t{id}", m.step))
                    .arg((self.retention_ms / 1000).max(1));
                }
            },
            None => {
                inv.arg("").arg("").arg("").arg("");
            }
        }
        inv.arg(now_ms + WAKE_HORIZON_MS).arg(WAKE_SLOT_MS);
        for e in earlier.iter().chain(&decision.entries) {
            inv.arg(encode_entry(e));
        }
        let mut c = self.conn.clone();
        let v: i64 = inv.invoke(&mut c).await?;
        Ok(match v {
            -1 => Commit::Conflict,
            -2 => Commit::StoppedByReceipt,
            -3 => Commit::Gone,
            v => Commit::Done(v),
        })
    }

    /// Gives back a claim's lease on `id` that nothing was stored under (a
    /// wake-up that failed before it could send or store): the cascade is
    /// woken again when the lease would have ended, as a plain wake-up, not
    /// as a lapsed claim, whose send would count as uncertain. `LT`: a
    /// score someone wrote meanwhile stays, unless it is later, which at
    /// worst wakes the cascade early.
    pub async fn release_claim(&self, id: &str, lease: &Lease) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: i64 = redis::cmd("ZADD")
            .arg(self.keys.timer_of(id))
            .arg("XX")
            .arg("LT")
            .arg(lease.until_ms)
            .arg(id)
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    /// Puts the timer back at the state's wake-up after a decision that
    /// changed nothing (claiming moved it to the lease's end), or wakes it
    /// now if the receipts changed since `receipts_seen` (`Loaded`).
    pub async fn touch(
        &self,
        id: &str,
        version: i64,
        wake_at_ms: Option<i64>,
        receipts_seen: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: i64 = Call::new(
            &self.scripts.touch,
            &[
                &self.keys.state(id),
                &self.keys.timer_of(id),
                &self.keys.later_of(id),
                &self.keys.receipts(id),
            ],
        )
        .arg(id)
        .arg(version)
        .arg(wake_at_ms.map(|w| w.to_string()).unwrap_or_default())
        .arg(now_ms + WAKE_HORIZON_MS)
        .arg(WAKE_SLOT_MS)
        .arg(receipts_seen)
        .arg(now_ms)
        .invoke(&mut c)
        .await?;
        Ok(())
    }

    /// Records a receipt (contract §6) and wakes the cascade to decide at once.
    pub async fn record_receipt(
        &self,
        id: &str,
        event: &str,
        channel: Option<&str>,
        now_ms: i64,
    ) -> Result<ReceiptResult, StoreError> {
        let entry = Entry {
            at_ms: now_ms,
            event: EntryKind::Receipt,
            step: None,
            channel: channel.map(str::to_owned),
            reason: Some(event.to_owned()),
            until_ms: None,
            provider_message_id: None,
        };
        let mut c = self.conn.clone();
        let r: i64 = Call::new(
            &self.scripts.receipt,
            &[
                &self.keys.state(id),
                &self.keys.receipts(id),
                &self.keys.timer_of(id),
                &self.keys.events(),
            ],
        )
        .arg(id)
        .arg(event)
        .arg(now_ms)
        .arg(encode_entry(&entry))
        .arg(EVENTS_MAX_LEN)
        .invoke(&mut c)
        .await?;
        Ok(match r {
            1 => ReceiptResult::Recorded,
            2 => ReceiptResult::AlreadyRecorded,
            _ => ReceiptResult::UnknownNotification,
        })
    }

    /// Takes one send from the customer's limits that apply to `channel`, or
    /// returns when it would fit. `member` makes a repeated take idempotent.
    pub async fn take_limit(
        &self,
        customer: &str,
        policy: &Policy,
        channel: &ChannelConfig,
        member: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let scopes = limit_scopes(policy, channel);
        if scopes.is_empty() {
            return Ok(None);
        }
        let keys: Vec<String> = scopes
            .iter()
            .map(|(scope, _)| self.keys.limit(customer, scope))
            .collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut inv = Call::new(&self.scripts.limit, &keys);
        inv.arg(now_ms).arg(member);
        for (_, rate) in &scopes {
            inv.arg(rate.count).arg(rate.per_ms);
        }
        let mut c = self.conn.clone();
        let not_before: i64 = inv.invoke(&mut c).await?;
        Ok((not_before > 0).then_some(not_before))
    }

    /// Gives back a send taken by `take_limit` that did not reach the customer.
    pub async fn release_limit(
        &self,
        customer: &str,
        policy: &Policy,
        channel: &ChannelConfig,
        member: &str,
    ) -> Result<(), StoreError> {
        let scopes = limit_scopes(policy, channel);
        if scopes.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (scope, _) in &scopes {
            pipe.zrem(self.keys.limit(customer, scope), member).ignore();
        }
        let mut c = self.conn.clone();
        let _: () = pipe.query_async(&mut c).await?;
        Ok(())
    }

    /// The (notification id, step) a provider message id was sent for.
    pub async fn provider_message(
        &self,
        channel: &str,
        provider_message_id: &str,
    ) -> Result<Option<(String, u8)>, StoreError> {
        let mut c = self.conn.clone();
        let v: Option<String> = c
            .get(self.keys.provider_message(channel, provider_message_id))
            .await?;
        Ok(v.as_deref().and_then(parse_step_id))
    }

    /// The (notification id, step) of the first of `provider_message_ids`
    /// (newest first) that this daemon sent, in one round trip.
    pub async fn newest_known_provider_message(
        &self,
        channel: &str,
        provider_message_ids: &[String],
    ) -> Result<Option<(String, u8)>, StoreError> {
        let keys: Vec<String> = provider_message_ids
            .iter()
            .map(|m| self.keys.provider_message(channel, m))
            .collect();
        let mut c = self.conn.clone();
        let found: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut c).await?;
        Ok(found.into_iter().flatten().find_map(|v| parse_step_id(&v)))
    }

    /// Every (notification id, step) sent to `peer` with a message id up to
    /// `max_id`, oldest first: what a VK `message_read` watermark marks as
    /// read. Looks through the days a cascade can still be kept.
    pub async fn peer_messages_up_to(
        &self,
        channel: &str,
        peer: &str,
        max_id: i64,
        now_ms: i64,
    ) -> Result<Vec<(String, u8)>, StoreError> {
        let today = now_ms.div_euclid(DAY_MS);
        let mut pipe = redis::pipe();
        for day in (today - self.retention_ms / DAY_MS - 1)..=today {
            pipe.hget(self.keys.peer_messages(channel, peer, day), peer);
        }
        let mut c = self.conn.clone();
        let days: Vec<Option<String>> = pipe.query_async(&mut c).await?;
        let mut sent: Vec<(i64, String, u8)> = Vec::new();
        for triples in days.iter().flatten() {
            let words: Vec<&str> = triples.split(' ').collect();
            for t in words.chunks_exact(3) {
                if let (Ok(message), Ok(step)) = (t[0].parse::<i64>(), t[1].parse::<u8>())
                    && message <= max_id
                {
                    sent.push((message, t[2].to_owned(), step));
                }
            }
        }
        sent.sort();
        Ok(sent.into_iter().map(|(_, id, step)| (id, step)).collect())
    }

    /// True the first time a callback's dedup key is seen within `ttl_s`
    /// (VK `event_id`, Telegram `update_id`, (wamid, status), …).
    pub async fn first_time(&self, key: &str, ttl_s: u64) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys.seen(key))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(ttl_s.max(1))
            .query_async(&mut c)
            .await?;
        Ok(set.is_some())
    }

    /// Forgets a callback's dedup key, so the provider's redelivery of an
    /// event that could not be recorded gets through (best effort: called
    /// right after the store failed).
    pub async fn forget_seen(&self, key: &str) {
        let mut c = self.conn.clone();
        let _: Result<(), _> = c.del(self.keys.seen(key)).await;
    }

    /// Appends an intake event (`duplicate`, `rejected`) that belongs to no
    /// stored cascade to the events stream.
    pub async fn append_event(&self, id: Option<&str>, entry: &Entry) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: String = redis::cmd("XADD")
            .arg(self.keys.events())
            .arg("MAXLEN")
            .arg("~")
            .arg(EVENTS_MAX_LEN)
            .arg("*")
            .arg("id")
            .arg(id.unwrap_or(""))
            .arg("e")
            .arg(encode_entry(entry))
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    /// The stored timeline and state of one notification, for `cascade status`.
    pub async fn status(&self, id: &str) -> Result<Option<(Cascade, Vec<Entry>)>, StoreError> {
        let mut c = self.conn.clone();
        let record: Option<String> = c.get(self.keys.state(id)).await?;
        let Some(record) = record else {
            return Ok(None);
        };
        let corrupt = |why: String| StoreError::Corrupt { id: id.into(), why };
        let record = Record::parse(&record).map_err(corrupt)?;
        Ok(Some((
            record.cascade().map_err(corrupt)?,
            record.entries().map_err(corrupt)?,
        )))
    }
}

/// The limit keys (`all`, `ch:<key>`) and rates a send on `channel` counts against.
fn limit_scopes(policy: &Policy, channel: &ChannelConfig) -> Vec<(String, crate::core::Rate)> {
    policy
        .limits
        .applying_to(&channel.name, channel.kind)
        .into_iter()
        .map(|(key, rate)| {
            (
                key.map_or_else(|| "all".into(), |k| format!("ch:{k}")),
                rate,
            )
        })
        .collect()
}

/// `Loaded::receipts_seen` of a receipts hash with `fields` fields and this
/// `failed` value (touch.lua builds the same from the hash it reads).
pub fn receipts_seen(fields: usize, failed: Option<&str>) -> String {
    format!("{fields}\t{}", failed.unwrap_or(""))
}

fn parse_step_id(v: &str) -> Option<(String, u8)> {
    let (step, id) = v.split_once('\t')?;
    Some((id.to_owned(), step.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::{ErrorKind, RedisError, ServerErrorKind};

    fn err(detail: &str) -> StoreError {
        StoreError::Redis(RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "An error was signalled by the server",
            detail.to_owned(),
        )))
    }

    fn coded(code: &str, detail: &str) -> StoreError {
        StoreError::Redis(redis::make_extension_error(
            code.to_owned(),
            Some(detail.to_owned()),
        ))
    }

    #[test]
    fn errors_about_the_data_are_told_from_outages() {
        let about = [
            coded(
                "WRONGTYPE",
                "Operation against a key holding the wrong kind of value script: 3f2a, on @user_script:25.",
            ),
            // Redis 6 wraps an error inside a script.
            err(
                "Error running script (call to f_3f2a): @user_script:25: WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            err(
                "user_script:7: attempt to compare nil with number script: 3f2a, on @user_script:7.",
            ),
        ];
        for e in &about {
            let sentence = e.about_the_data();
            assert!(sentence.is_some(), "{e}");
        }
        let outages = [
            StoreError::Redis(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "refused",
            ))),
            StoreError::Redis(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "timed out",
            ))),
            coded("OOM", "command not allowed when used memory > 'maxmemory'."),
            coded("BUSY", "Redis is busy running a script."),
            StoreError::Redis(RedisError::from((
                ErrorKind::Server(ServerErrorKind::ReadOnly),
                "You can't write against a read only replica.",
            ))),
            StoreError::Redis(RedisError::from((
                ErrorKind::Server(ServerErrorKind::BusyLoading),
                "Redis is loading the dataset in memory",
            ))),
            err(
                "Error running script (call to f_3f2a): @user_script:12: -OOM command not allowed when used memory > 'maxmemory'",
            ),
            err("max number of clients reached"),
            StoreError::Corrupt {
                id: "n-1".into(),
                why: "policy".into(),
            },
        ];
        for e in &outages {
            assert_eq!(e.about_the_data(), None, "{e}");
        }
    }
}
