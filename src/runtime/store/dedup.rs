//! Callback dedup: a provider's redelivered event is applied once.

use redis::AsyncCommands;

use super::{Store, StoreError};

impl Store {
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
}
