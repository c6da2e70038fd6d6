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
        let needs = Duration::from_millis(channel.timeout_ms.max(0) as u64) + LEASE_MARGIN;
        let fits = || lease.deadline.saturating_duration_since(Instant::now()) >= needs;
        if !fits() || !self.outbound.try_admit(channel, now_ms) {
            return false;
        }
        let Some(rate) = channel
            .rate
            .filter(|_| !self.outbound.is_open(channel, now_ms))
        else {
            return true;
        };
        match self
            .store
            .take_rate(&channel.name, rate, Duration::ZERO)
            .await
        {
            // The lease went on meanwhile: it must still fit (a share
            // taken and not used only slows the channel a little).
            Ok(RateTake::Taken(_)) => fits(),
            Ok(RateTake::Wait(_)) => false,
            Err(e) => {
                tracing::warn!(channel = %channel.name, error = %e, "cannot take the channel's shared throughput");
                false
            }
        }
    }

    /// Takes one send's throughput, waiting for it at most `max_wait`:
    /// here first, then fleet-wide (a share reserved at the channel's next
    /// free moment, slept for once). `Now { waited }` says whether it
    /// slept (a receipt may have come meanwhile). When the store cannot
    /// say, there is no room: the send is deferred and its limit given
    /// back, rather than left in flight to count as interrupted.
    pub(super) async fn admit_within(
        &self,
        channel: &ChannelConfig,
        max_wait: Duration,
        now_ms: i64,
    ) -> Admission {
        let started = Instant::now();
        let local = self.outbound.admit_within(channel, max_wait, now_ms).await;
        let (Admission::Now { waited }, Some(rate)) = (local, channel.rate) else {
            return local;
        };
        if self.outbound.is_open(channel, now_ms) {
            // The circuit is open: the send fails at once, without a request.
            return local;
        }
        let left = max_wait.saturating_sub(started.elapsed());
        match self.store.take_rate(&channel.name, rate, left).await {
            Ok(RateTake::Taken(delay)) if delay.is_zero() && waited.is_zero() => Admission::Now {
                waited: Duration::ZERO,
            },
            Ok(RateTake::Taken(delay)) => {
                tokio::time::sleep(delay).await;
                Admission::Now {
                    waited: started.elapsed(),
                }
            }
            Ok(RateTake::Wait(wait)) => Admission::NoRoom { wait },
            Err(e) => {
                tracing::warn!(channel = %channel.name, error = %e, "cannot take the channel's shared throughput; deferring the send");
                Admission::NoRoom {
                    wait: Duration::from_secs(1),
                }
            }
        }
    }
}
