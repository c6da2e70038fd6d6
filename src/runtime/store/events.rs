//! The bounded streams of lifecycle events (contract §7), one per timer
//! shard. The scripts append a stored decision's entries themselves (with
//! the cascade's timer); this is for the rest.

use super::{Store, StoreError};
use crate::core::Entry;
use crate::runtime::record::encode_entry;

impl Store {
    /// Appends an intake event (`duplicate`, `rejected`) that belongs to no
    /// stored cascade to the events stream.
    pub async fn append_event(&self, id: Option<&str>, entry: &Entry) -> Result<(), StoreError> {
        self.append_entries(id.unwrap_or(""), &encode_entry(entry))
            .await
    }

    /// Appends timeline entries (one per line) of `id` to its shard's stream,
    /// in their stored form (`record::encode_entry`, steps indexed from 0).
    pub(super) async fn append_entries(&self, id: &str, entries: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: String = redis::cmd("XADD")
            .arg(self.keys.events_of(id))
            .arg("MAXLEN")
            .arg("~")
            .arg(self.events_max_len)
            .arg("*")
            .arg("id")
            .arg(id)
            .arg("e")
            .arg(entries)
            .query_async(&mut c)
            .await?;
        Ok(())
    }
}
