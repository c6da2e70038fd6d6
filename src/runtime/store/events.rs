//! The bounded stream of lifecycle events (contract §7). The scripts append
//! a stored decision's entries themselves; this is for the rest.

use super::{EVENTS_MAX_LEN, Store, StoreError};
use crate::core::Entry;
use crate::runtime::record::encode_entry;

impl Store {
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
}
