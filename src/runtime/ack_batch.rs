//! Acknowledges intake deliveries several at a time: one `basic.ack` with
//! `multiple` covers the longest run of finished deliveries at the front, so
//! a delivery is never acknowledged before its own handler said so, even
//! though handlers finish out of order.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Most finished deliveries held back for one `basic.ack`.
const MOST_AT_ONCE: usize = 32;

enum Slot<A> {
    /// Its handler is still at work.
    Working,
    /// Recorded: may be acknowledged.
    Done(A),
    /// Answered on its own (nacked back to the queue): nothing to acknowledge.
    Settled,
}

struct Inner<A> {
    /// Deliveries in tag order (the order the channel delivers them).
    queue: VecDeque<(u64, Slot<A>)>,
    /// The newest acknowledgeable delivery at the front, and how many it covers.
    ready: Option<(A, usize)>,
}

/// The deliveries of one channel, from delivery to acknowledgement. `A` is
/// what acknowledges one delivery (`lapin::Acker`).
pub struct AckBatch<A> {
    inner: Mutex<Inner<A>>,
}

impl<A> Default for AckBatch<A> {
    fn default() -> Self {
        AckBatch {
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                ready: None,
            }),
        }
    }
}

impl<A> AckBatch<A> {
    /// Notes a delivery as it arrives, before its handler starts.
    pub fn arrived(&self, tag: u64) {
        self.lock().queue.push_back((tag, Slot::Working));
    }

    /// Its handler recorded it. Returns the acker to call with `multiple`
    /// when a batch is due: enough are held back, or none is still at work.
    #[must_use]
    pub fn done(&self, tag: u64, acker: A) -> Option<A> {
        self.finish(tag, Slot::Done(acker))
    }

    /// Its handler answered it on its own (a nack). Returns a batch that
    /// became due, as `done` does.
    #[must_use]
    pub fn settled(&self, tag: u64) -> Option<A> {
        self.finish(tag, Slot::Settled)
    }

    fn finish(&self, tag: u64, slot: Slot<A>) -> Option<A> {
        let mut inner = self.lock();
        if let Some(entry) = inner.queue.iter_mut().find(|(t, _)| *t == tag) {
            entry.1 = slot;
        }
        while matches!(
            inner.queue.front(),
            Some((_, Slot::Done(_) | Slot::Settled))
        ) {
            let Some((_, slot)) = inner.queue.pop_front() else {
                break;
            };
            if let Slot::Done(acker) = slot {
                let covered = inner.ready.take().map_or(0, |(_, n)| n);
                inner.ready = Some((acker, covered + 1));
            }
        }
        let due = inner
            .ready
            .as_ref()
            .is_some_and(|(_, n)| *n >= MOST_AT_ONCE || inner.queue.is_empty());
        if due {
            inner.ready.take().map(|(acker, _)| acker)
        } else {
            None
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<A>> {
        // A panic elsewhere cannot leave the queue half-changed: recover it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledges_only_the_finished_run_at_the_front() {
        let batch = AckBatch::default();
        for tag in 1..=3 {
            batch.arrived(tag);
        }
        // 2 and 3 finish first: 1 is still at work, so nothing may go.
        assert_eq!(batch.done(3, 3), None);
        assert_eq!(batch.done(2, 2), None);
        // 1 finishes: one ack, multiple, up to 3.
        assert_eq!(batch.done(1, 1), Some(3));
        assert_eq!(batch.done(1, 1), None, "nothing left");
    }

    #[test]
    fn a_settled_delivery_is_stepped_over_and_not_acknowledged() {
        let batch = AckBatch::default();
        for tag in 1..=3 {
            batch.arrived(tag);
        }
        assert_eq!(batch.done(1, 1), None, "2 and 3 are still at work");
        assert_eq!(batch.settled(2), None);
        assert_eq!(batch.done(3, 3), Some(3));

        // A settled delivery alone acknowledges nothing.
        batch.arrived(4);
        assert_eq!(batch.settled(4), None);
    }

    #[test]
    fn under_load_a_batch_goes_every_so_many() {
        let batch = AckBatch::default();
        for tag in 1..=100 {
            batch.arrived(tag);
        }
        let sent: Vec<u64> = (1..=100).filter_map(|t| batch.done(t, t)).collect();
        assert_eq!(sent, [32, 64, 96, 100]);
    }
}
