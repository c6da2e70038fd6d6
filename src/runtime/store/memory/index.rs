//! The provider index and callback dedup in memory. Values are kept in the
//! text Redis keeps and read by the same functions, so lookups agree.
//! Redis spreads a day's peers over bucket hashes to save keys; here a
//! (channel, peer, day) is the key itself, with the same lifetime.

use std::collections::HashMap;

use super::alive;
use crate::runtime::store::ProviderMessage;
use crate::runtime::store::provider_index::{
    DAY_MS, index_ttl_s, indexed_value, parse_step_id, peer_days, peer_sends_up_to,
};

/// A value and when it expires.
type Expiring = (String, i64);

#[derive(Default)]
pub(super) struct Index {
    /// (channel, provider message id) -> `<step>\t<notification id>`.
    messages: HashMap<(String, String), Expiring>,
    /// (channel, peer, Unix day) -> `<message id> <step> <id>` triples.
    peers: HashMap<(String, String, i64), Expiring>,
    /// Dedup keys seen, and when each expires.
    seen: HashMap<String, i64>,
}

impl Index {
    /// Keeps a send's provider message id (what `commit.lua` does with KEYS[7]).
    pub fn keep(
        &mut self,
        id: &str,
        m: &ProviderMessage,
        now_ms: i64,
        retention_ms: i64,
        clock_ms: i64,
    ) {
        let value = indexed_value(id, m);
        let expires_at_ms = clock_ms + index_ttl_s(m, retention_ms) * 1000;
        match &m.peer {
            Some(peer) => {
                let key = (m.channel.clone(), peer.clone(), now_ms.div_euclid(DAY_MS));
                let sent = match self.peers.remove(&key) {
                    Some((sent, at)) if alive(Some(at), clock_ms) => format!("{sent} {value}"),
                    _ => value,
                };
                self.peers.insert(key, (sent, expires_at_ms));
            }
            None => {
                let key = (m.channel.clone(), m.provider_message_id.clone());
                self.messages.insert(key, (value, expires_at_ms));
            }
        }
    }

    /// The (notification id, step) a provider message id was sent for.
    pub fn message(
        &self,
        channel: &str,
        provider_message_id: &str,
        clock_ms: i64,
    ) -> Option<(String, u8)> {
        let key = (channel.to_owned(), provider_message_id.to_owned());
        self.messages
            .get(&key)
            .filter(|(_, at)| alive(Some(*at), clock_ms))
            .and_then(|(v, _)| parse_step_id(v))
    }

    /// Every (notification id, step) sent to `peer` with a message id up to
    /// `max_id`, oldest first, over the days a cascade can still be kept.
    pub fn peer_messages_up_to(
        &self,
        channel: &str,
        peer: &str,
        max_id: i64,
        now_ms: i64,
        retention_ms: i64,
        clock_ms: i64,
    ) -> Vec<(String, u8)> {
        let mut sent = Vec::new();
        for day in peer_days(now_ms, retention_ms) {
            let key = (channel.to_owned(), peer.to_owned(), day);
            if let Some((triples, at)) = self.peers.get(&key)
                && alive(Some(*at), clock_ms)
            {
                peer_sends_up_to(triples, max_id, &mut sent);
            }
        }
        sent.sort();
        sent.into_iter().map(|(_, id, step)| (id, step)).collect()
    }

    /// `SET NX EX`: true when `key` was not seen within its time to live.
    pub fn first_time(&mut self, key: &str, ttl_s: u64, clock_ms: i64) -> bool {
        if self
            .seen
            .get(key)
            .is_some_and(|at| alive(Some(*at), clock_ms))
        {
            return false;
        }
        let ttl_ms = i64::try_from(ttl_s.max(1)).unwrap_or(i64::MAX / 2000) * 1000;
        self.seen
            .insert(key.to_owned(), clock_ms.saturating_add(ttl_ms));
        true
    }

    pub fn forget_seen(&mut self, key: &str) {
        self.seen.remove(key);
    }
}
