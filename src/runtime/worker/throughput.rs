//! A channel's throughput, taken in two places: this instance's smoother
//! (`Outbound`, governor) first, then the share every instance takes from
//! the store (`CascadeStore::take_rate`), so that a channel's `rate` is the
//! provider account's limit however many instances run.

use super::*;
use crate::runtime::store::RateTake;

impl<S: CascadeStore> Worker<S> {
    /// Whether a send on `channel` may go out on `lease`: the channel
    /// finishes (or times out) well before the lease ends, and its
    /// throughput is free now, here and fleet-wide (waiting for it could
    /// outlast the lease). Takes that throughput when it says yes. When
    /// the store cannot say, the send does not go on the lease: it is
    /// stored in flight first, like any other.
    pub(super) async fn fits_lease(
        &self,
        lease: &Lease,
        channel: &ChannelConfig,
        now_ms: i64,
    ) -> bool {
        let left = lease.deadline.saturating_duration_since(Instant::now());
        let needs = Duration::from_millis(channel.timeout_ms.max(0) as u64) + LEASE_MARGIN;
        if left < needs || !self.outbound.try_admit(channel, now_ms) {
            return false;
        }
        let Some(rate) = channel
            .rate
            .filter(|_| !self.outbound.is_open(channel, now_ms))
        else {
            return true;
        };
        match self.store.take_rate(&channel.name, rate).await {
            Ok(taken) => taken == RateTake::Taken,
            Err(e) => {
                tracing::warn!(channel = %channel.name, error = %e, "cannot take the channel's shared throughput");
                false
            }
        }
    }

    /// Takes one send's throughput, waiting for it at most `max_wait`:
    /// here first, then fleet-wide. `Now { waited }` says whether it
    /// slept (a receipt may have come meanwhile).
    pub(super) async fn admit_within(
        &self,
        channel: &ChannelConfig,
        max_wait: Duration,
        now_ms: i64,
    ) -> Result<Admission, StoreError> {
        let started = Instant::now();
        let local = self.outbound.admit_within(channel, max_wait, now_ms).await;
        let (Admission::Now { .. }, Some(rate)) = (local, channel.rate) else {
            return Ok(local);
        };
        if self.outbound.is_open(channel, now_ms) {
            // The circuit is open: the send fails at once, without a request.
            return Ok(local);
        }
        let mut slept = matches!(local, Admission::Now { waited } if !waited.is_zero());
        loop {
            let wait = match self.store.take_rate(&channel.name, rate).await? {
                RateTake::Taken => {
                    let waited = if slept {
                        started.elapsed()
                    } else {
                        Duration::ZERO
                    };
                    return Ok(Admission::Now { waited });
                }
                RateTake::Wait(wait) => wait,
            };
            if started.elapsed() + wait > max_wait {
                return Ok(Admission::NoRoom { wait });
            }
            tokio::time::sleep(wait).await;
            slept = true;
        }
    }
}
