//! Policy snapshots: a cascade keeps the policy it started with (contract
//! §3), stored once per content under its hash and cached here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use redis::AsyncCommands;

use super::{Store, StoreError};
use crate::core::Policy;
use crate::runtime::keys::fnv1a;

/// A policy as last stored, and its snapshot hash.
pub(super) type Snapshot = (Arc<Policy>, String);

/// The snapshots this process has stored or read.
#[derive(Clone, Default)]
pub(super) struct Snapshots {
    /// Policy snapshots by hash: they never change, so they are read once.
    by_hash: Arc<Mutex<HashMap<String, Arc<Policy>>>>,
    /// The latest snapshot hash of each policy by name, so intake does not
    /// encode and hash the policy for every notification.
    hashes: Arc<Mutex<HashMap<String, Snapshot>>>,
}

impl Store {
    /// Stores the policy snapshot (once per content) and returns its hash
    /// and the shared copy the worker decides on.
    pub(super) async fn snapshot_policy(&self, policy: &Policy) -> Result<Snapshot, StoreError> {
        let cached = self
            .policies
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
            .by_hash
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
            if let Ok(mut m) = self.policies.by_hash.lock() {
                m.insert(hash.clone(), Arc::new(policy.clone()));
            }
        }
        let snapshot = (Arc::new(policy.clone()), hash);
        if let Ok(mut m) = self.policies.hashes.lock() {
            m.insert(policy.name.clone(), snapshot.clone());
        }
        Ok(snapshot)
    }

    pub(super) async fn policy(&self, id: &str, hash: &str) -> Result<Arc<Policy>, StoreError> {
        if let Some(p) = self
            .policies
            .by_hash
            .lock()
            .ok()
            .and_then(|m| m.get(hash).cloned())
        {
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
        if let Ok(mut m) = self.policies.by_hash.lock() {
            m.insert(hash.to_owned(), policy.clone());
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Catalog;
    use crate::runtime::keys::fnv1a;

    /// A shipped policy without branches is stored as it always was: its
    /// snapshot, and so the hash running cascades find it by, is pinned.
    #[test]
    fn the_snapshot_of_a_shipped_policy_without_branches_is_pinned() {
        let catalog =
            Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("cascade.toml")).unwrap();
        let json = serde_json::to_string(&catalog.policies["order_followup"]).unwrap();
        assert_eq!(
            json,
            r#"{"name":"order_followup","description":"Order placed: email; a call-centre task after 2 h unopened; SMS after 4 h unless called or read","stop_on":["opened","clicked","read","called"],"expire_after_ms":172800000,"steps":[{"channels":["email"],"wait_ms":7200000,"wait_clock":"wall","on_limit":"defer"},{"channels":["call_centre"],"wait_ms":7200000,"wait_clock":"awake","on_limit":"defer"},{"channels":["sms"],"wait_clock":"wall","on_limit":"defer"}],"limits":{"per_customer":{"count":4,"per_ms":3600000},"per_channel":{"sms":{"count":3,"per_ms":86400000},"vk":{"count":10,"per_ms":86400000}}},"quiet_hours":{"sms":{"start_min":1260,"end_min":540}}}"#
        );
        assert_eq!(
            format!("{:016x}", fnv1a(json.as_bytes())),
            "26331e3add224700"
        );
        // Snapshots stored before branches existed read back the same.
        let back: crate::core::Policy = serde_json::from_str(&json).unwrap();
        assert_eq!(back, catalog.policies["order_followup"]);
    }
}
