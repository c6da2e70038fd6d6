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
