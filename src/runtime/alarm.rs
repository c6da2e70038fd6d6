//! How this instance's worker tells its scheduler about a wake-up it just
//! stored sooner than the scheduler planned to look: the scheduler sleeps
//! until the next due moment it knows, and a new cascade (or a retry in a
//! few seconds) would otherwise wait for its next idle poll.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::Notify;

/// Wake-ups noted since the scheduler last looked, by timer shard.
#[derive(Default)]
pub struct Alarm {
    /// Per shard: the soonest wake-up noted.
    noted: Mutex<Vec<Option<i64>>>,
    /// When the scheduler means to look next (ms, the daemon's clock);
    /// `i64::MIN` while it is busy (it looks at the notes before sleeping).
    planned_ms: AtomicI64,
    rung: Notify,
}

impl Alarm {
    /// Notes a wake-up stored at `at_ms` in `shard`; rings when it is
    /// sooner than the scheduler means to look.
    pub fn note(&self, shard: u16, at_ms: i64) {
        if let Ok(mut noted) = self.noted.lock() {
            let shard = shard as usize;
            if noted.len() <= shard {
                noted.resize(shard + 1, None);
            }
            if noted[shard].is_some_and(|known| known <= at_ms) {
                return;
            }
            noted[shard] = Some(at_ms);
        }
        if at_ms < self.planned_ms.load(Ordering::Acquire) {
            self.rung.notify_one();
        }
    }

    /// The notes since the last call, by shard, cleared.
    pub(super) fn take(&self) -> Vec<Option<i64>> {
        self.noted
            .lock()
            .map(|mut n| std::mem::take(&mut *n))
            .unwrap_or_default()
    }

    /// The scheduler means to look at `at_ms` (`i64::MIN`: it is looking).
    pub(super) fn plan(&self, at_ms: i64) {
        self.planned_ms.store(at_ms, Ordering::Release);
    }

    /// Resolves when a sooner wake-up was noted.
    pub(super) async fn rung(&self) {
        self.rung.notified().await;
    }
}
