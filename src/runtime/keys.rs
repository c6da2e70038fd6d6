//! Redis key names. Everything about one notification shares the hash tag
//! `{<id>}`, so a Redis Cluster keeps it in one slot and a Lua script may
//! touch it all; timers and the events stream are spread over shards with
//! tags of their own (`{<n>}`), and a cascade's shard is reached by a call
//! of its own on a cluster (`scripts/*_whole.lua` run them together on one server).

use std::sync::Arc;

/// Builds the keys under one prefix (`cascade` unless tests isolate themselves).
/// Keys are built for every script call, so they are joined by hand (the
/// formatting machinery costs several times more) and the per-shard and
/// global ones are built once.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
    shards: u16,
    timers: Arc<[String]>,
    laters: Arc<[String]>,
    events: Arc<[String]>,
}

/// The parts, joined.
fn join(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    s
}

impl Keys {
    pub fn new(prefix: &str, shards: u16) -> Self {
        let shards = shards.max(1);
        let per_shard = |kind: &str| -> Arc<[String]> {
            (0..shards)
                .map(|n| format!("{prefix}:{kind}:{{{n}}}"))
                .collect()
        };
        Keys {
            prefix: prefix.to_owned(),
            shards,
            timers: per_shard("timers"),
            laters: per_shard("later"),
            events: per_shard("events"),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn shards(&self) -> u16 {
        self.shards
    }

    /// The cascade's record: version, state, notification, timeline, policy
    /// hash, time zone and customer in one string (see `scripts/accept.lua`).
    pub fn state(&self, id: &str) -> String {
        join(&[&self.prefix, ":{", id, "}:state"])
    }

    /// contract §6: event word → Unix ms; any system may write here.
    pub fn receipts(&self, id: &str) -> String {
        join(&[&self.prefix, ":{", id, "}:receipts"])
    }

    /// The staff cascades customers' replies to a notification opened:
    /// staff cascade id → Unix ms (`core::replies`), for `answered` to reach them.
    pub fn replies(&self, id: &str) -> String {
        join(&[&self.prefix, ":{", id, "}:replies"])
    }

    /// Data recorded with receipts (`{"slot": "Friday 10-14"}`): key →
    /// value, a later write of a key winning; kept as long as the record.
    pub fn data(&self, id: &str) -> String {
        join(&[&self.prefix, ":{", id, "}:data"])
    }

    /// The wake-up sorted set an id belongs to.
    pub fn timer_of(&self, id: &str) -> String {
        self.timer(shard_of(id, self.shards))
    }

    pub fn timer(&self, shard: u16) -> String {
        self.timers[(shard % self.shards) as usize].clone()
    }

    /// The index of a timer shard's far slots; each slot's wake-ups are the
    /// list `<this>:<slot>` (see `scripts/wake.lua`).
    pub fn later(&self, shard: u16) -> String {
        self.laters[(shard % self.shards) as usize].clone()
    }

    /// The list of one far slot of a shard: `<later>:<slot>`.
    pub fn later_slot(&self, shard: u16, slot: i64) -> String {
        let mut key = self.later(shard);
        key.push(':');
        key.push_str(&slot.to_string());
        key
    }

    /// The bounded stream of the lifecycle events (contract §7) of the
    /// cascades of one timer shard: appended in the same call that sets
    /// their timers, so on a Redis Cluster it lives in the shard's slot.
    pub fn events(&self, shard: u16) -> String {
        self.events[(shard % self.shards) as usize].clone()
    }

    pub fn events_of(&self, id: &str) -> String {
        self.events(shard_of(id, self.shards))
    }

    /// A shard's report counts of one hour (hour = Unix ms / 1h): a hash of
    /// counter fields (report/mod.rs), kept for the retention.
    pub fn report(&self, shard: u16, hour: i64) -> String {
        format!("{}:report:{{{}}}:{hour}", self.prefix, shard % self.shards)
    }

    /// A policy's customer segments counted on their own (report/mod.rs):
    /// the first ones seen, up to the configured number.
    pub fn segments(&self, policy: &str) -> String {
        format!("{}:segments:{{{policy}}}", self.prefix)
    }

    /// A customer's recent notifications: id → accepted ms, the newest
    /// kept, for the customer timeline API.
    pub fn customer(&self, customer_id: &str) -> String {
        join(&[&self.prefix, ":customer:{", customer_id, "}"])
    }

    /// A channel's next free moment for its throughput, shared by every
    /// instance (`scripts/rate.lua`).
    pub fn rate(&self, channel: &str) -> String {
        join(&[&self.prefix, ":rate:{", channel, "}"])
    }

    /// A policy snapshot by content hash, shared by the cascades that started on it.
    pub fn policy(&self, hash: &str) -> String {
        format!("{}:policy:{hash}", self.prefix)
    }

    /// A provider's message id → `step<TAB>notification id`.
    pub fn provider_message(&self, channel: &str, provider_message_id: &str) -> String {
        join(&[
            &self.prefix,
            ":pmid:{",
            channel,
            ":",
            provider_message_id,
            "}",
        ])
    }

    /// The messages a channel sent on one day (Unix days), to the peers of
    /// one bucket: a hash of peer → `<message id> <step> <notification id>`
    /// triples. Shared by many peers, so a peer costs a hash field rather
    /// than a key of its own; the day's hash expires as a whole.
    pub fn peer_messages(&self, channel: &str, peer: &str, day: i64) -> String {
        let bucket = fnv1a(peer.as_bytes()) % PEER_BUCKETS;
        format!("{}:peers:{{{channel}:{bucket}}}:{day}", self.prefix)
    }

    /// A callback dedup key seen recently.
    pub fn seen(&self, key: &str) -> String {
        format!("{}:seen:{{{key}}}", self.prefix)
    }

    /// A customer's sliding-window limit: `all` channels, or one channel or kind.
    pub fn limit(&self, customer: &str, scope: &str) -> String {
        format!("{}:limit:{{{customer}}}:{scope}", self.prefix)
    }

    /// The longest window a customer's limit on `scope` has been counted
    /// over lately: how long its sends are kept (`scripts/limit.lua`).
    pub fn limit_keep(&self, customer: &str, scope: &str) -> String {
        format!("{}:limit-keep:{{{customer}}}:{scope}", self.prefix)
    }
}

/// How many hashes a channel's peers are spread over per day: few enough
/// fields each (about 60 at a million peers a day) for Redis to keep every
/// hash in its compact encoding.
const PEER_BUCKETS: u64 = 16_384;

/// FNV-1a of the id, modulo the shard count: stable across instances.
pub fn shard_of(id: &str, shards: u16) -> u16 {
    (fnv1a(id.as_bytes()) % shards.max(1) as u64) as u16
}

pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_key_is_the_documented_one() {
        let k = Keys::new("cascade", 16);
        assert_eq!(
            k.receipts("order-1001:delayed"),
            "cascade:{order-1001:delayed}:receipts"
        );
        assert_eq!(k.timer(3), "cascade:timers:{3}");
        assert_eq!(k.later(15), "cascade:later:{15}");
        assert_eq!(k.later_slot(15, 30_000_000), "cascade:later:{15}:30000000");
        assert_eq!(k.state("a"), "cascade:{a}:state");
        assert_eq!(k.data("a"), "cascade:{a}:data");
        assert_eq!(k.events(2), "cascade:events:{2}");
        assert_eq!(k.provider_message("sms", "m-1"), "cascade:pmid:{sms:m-1}");
        assert!(k.timer_of("x").starts_with("cascade:timers:{"));
        let spread: std::collections::BTreeSet<u16> =
            (0..200).map(|i| shard_of(&format!("n-{i}"), 16)).collect();
        assert_eq!(spread.len(), 16);
    }
}
