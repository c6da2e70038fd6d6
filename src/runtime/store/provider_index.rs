//! The provider index: a provider's message id (or, for VK, the peer) back
//! to the notification and step it was sent for, so provider callbacks find
//! the cascade. Written by `commit.lua` with the send's outcome.

use redis::AsyncCommands;

use super::call::Call;
use super::{Store, StoreError};

pub(super) const DAY_MS: i64 = 86_400_000;

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

/// Where and how `index.lua` keeps one send's provider message id.
pub(super) struct IndexEntry {
    /// A key per message id, or the day's hash of a bucket of peers.
    pub key: String,
    /// The peer (its field in that hash), or "" for a key.
    pub field: String,
    /// For a key `<step>\t<notification id>`; for a peer `<message id>
    /// <step> <notification id>`, appended to its field.
    pub value: String,
    pub ttl_s: i64,
}

impl IndexEntry {
    /// `index_send`'s parameters after its key (`key`).
    pub(super) fn args(&self, call: &mut Call) {
        call.arg(&self.field).arg(&self.value).arg(self.ttl_s);
    }
}

impl Store {
    /// How the send `m` of `id` is indexed.
    pub(super) fn index_entry(&self, id: &str, m: &ProviderMessage, now_ms: i64) -> IndexEntry {
        let value = indexed_value(id, m);
        let ttl_s = index_ttl_s(m, self.retention_ms);
        match m.peer.as_deref() {
            Some(peer) => IndexEntry {
                key: self
                    .keys
                    .peer_messages(&m.channel, peer, now_ms.div_euclid(DAY_MS)),
                field: peer.to_owned(),
                value,
                ttl_s,
            },
            None => IndexEntry {
                key: self
                    .keys
                    .provider_message(&m.channel, &m.provider_message_id),
                field: String::new(),
                value,
                ttl_s,
            },
        }
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
        let mut pipe = redis::pipe();
        for day in peer_days(now_ms, self.retention_ms) {
            pipe.hget(self.keys.peer_messages(channel, peer, day), peer);
        }
        let mut c = self.conn.clone();
        let days: Vec<Option<String>> = pipe.query_async(&mut c).await?;
        let mut sent: Vec<(i64, String, u8)> = Vec::new();
        for triples in days.iter().flatten() {
            peer_sends_up_to(triples, max_id, &mut sent);
        }
        sent.sort();
        Ok(sent.into_iter().map(|(_, id, step)| (id, step)).collect())
    }
}

/// VK's callbacks name the peer and a message id watermark, never one
/// message: the peer's messages of the day are all they need, so a send
/// to a peer is kept as `<message id> <step> <notification id>`, appended
/// to the peer's field of the day. Others name one message: a key per
/// message id, holding `<step>\t<notification id>`.
pub(super) fn indexed_value(id: &str, m: &ProviderMessage) -> String {
    match m.peer {
        Some(_) => format!("{} {} {id}", m.provider_message_id, m.step),
        None => format!("{}\t{id}", m.step),
    }
}

/// How long a send stays indexed, seconds: the retention; a day's peers
/// outlive it by a day.
pub(super) fn index_ttl_s(m: &ProviderMessage, retention_ms: i64) -> i64 {
    match m.peer {
        Some(_) => ((retention_ms + DAY_MS) / 1000).max(1),
        None => (retention_ms / 1000).max(1),
    }
}

/// The days `peer_messages_up_to` looks through: those a cascade can
/// still be kept.
pub(super) fn peer_days(now_ms: i64, retention_ms: i64) -> std::ops::RangeInclusive<i64> {
    let today = now_ms.div_euclid(DAY_MS);
    (today - retention_ms / DAY_MS - 1)..=today
}

/// Adds the (message id, notification id, step) of a peer's field of a day
/// whose message id is up to `max_id` to `sent`.
pub(super) fn peer_sends_up_to(triples: &str, max_id: i64, sent: &mut Vec<(i64, String, u8)>) {
    let words: Vec<&str> = triples.split(' ').collect();
    for t in words.chunks_exact(3) {
        if let (Ok(message), Ok(step)) = (t[0].parse::<i64>(), t[1].parse::<u8>())
            && message <= max_id
        {
            sent.push((message, t[2].to_owned(), step));
        }
    }
}

pub(super) fn parse_step_id(v: &str) -> Option<(String, u8)> {
    let (step, id) = v.split_once('\t')?;
    Some((id.to_owned(), step.parse().ok()?))
}
