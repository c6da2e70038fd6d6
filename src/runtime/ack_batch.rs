//! Acknowledges intake deliveries several at a time: one `basic.ack` with
//! `multiple` covers the longest run of finished deliveries at the front, so
//! a delivery is never acknowledged before its own handler said so, even
//! though handlers finish out of order. Batches are handed on in order to one
//! sender: a `multiple` ack overtaken by a later one would name a tag the
//! broker no longer knows, which closes the channel.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::mpsc::UnboundedSender;

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
    /// Where due batches go, in order: the acker to call with `multiple`.
    due: UnboundedSender<A>,
}

impl<A> AckBatch<A> {
    pub fn new(due: UnboundedSender<A>) -> AckBatch<A> {
        AckBatch {
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                ready: None,
            }),
            due,
        }
    }

    /// Notes a delivery as it arrives, before its handler starts.
    pub fn arrived(&self, tag: u64) {
        self.lock().queue.push_back((tag, Slot::Working));
    }

    /// Whether its handler has answered it yet.
    pub fn is_working(&self, tag: u64) -> bool {
        self.lock()
            .queue
            .iter()
            .any(|(t, slot)| *t == tag && matches!(slot, Slot::Working))
    }

    /// Its handler recorded it. A batch is due when enough are held back,
    /// or when none is still at work.
    pub fn done(&self, tag: u64, acker: A) {
        self.finish(tag, Slot::Done(acker))
    }

    /// Its handler answered it on its own (a nack).
    pub fn settled(&self, tag: u64) {
        self.finish(tag, Slot::Settled)
    }

    fn finish(&self, tag: u64, slot: Slot<A>) {
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
        if due && let Some((acker, _)) = inner.ready.take() {
            // Still under the lock, so batches leave in tag order. A closed
            // receiver means the connection is gone: RabbitMQ redelivers.
            let _ = self.due.send(acker);
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
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

    fn batch() -> (AckBatch<u64>, UnboundedReceiver<u64>) {
        let (tx, rx) = unbounded_channel();
        (AckBatch::new(tx), rx)
    }

    fn sent(rx: &mut UnboundedReceiver<u64>) -> Vec<u64> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn acknowledges_only_the_finished_run_at_the_front() {
        let (batch, mut rx) = batch();
        for tag in 1..=3 {
            batch.arrived(tag);
        }
        // 2 and 3 finish first: 1 is still at work, so nothing may go.
        batch.done(3, 3);
        batch.done(2, 2);
        assert_eq!(sent(&mut rx), [0u64; 0]);
        // 1 finishes: one ack, multiple, up to 3.
        batch.done(1, 1);
        assert_eq!(sent(&mut rx), [3]);
    }

    #[test]
    fn a_settled_delivery_is_stepped_over_and_not_acknowledged() {
        let (batch, mut rx) = batch();
        for tag in 1..=3 {
            batch.arrived(tag);
        }
        batch.done(1, 1);
        batch.settled(2);
        assert_eq!(sent(&mut rx), [0u64; 0], "3 is still at work");
        batch.done(3, 3);
        assert_eq!(sent(&mut rx), [3]);

        // A settled delivery alone acknowledges nothing.
        batch.arrived(4);
        batch.settled(4);
        assert_eq!(sent(&mut rx), [0u64; 0]);
    }

    #[test]
    fn a_delivery_still_at_work_is_known() {
        let (batch, _rx) = batch();
        batch.arrived(1);
        batch.arrived(2);
        batch.done(2, 2);
        assert!(batch.is_working(1));
        assert!(!batch.is_working(2));
        batch.settled(1);
        assert!(!batch.is_working(1));
    }

    #[test]
    fn under_load_a_batch_goes_every_so_many_in_order() {
        let (batch, mut rx) = batch();
        for tag in 1..=100 {
            batch.arrived(tag);
        }
        for tag in 1..=100 {
            batch.done(tag, tag);
        }
        assert_eq!(sent(&mut rx), [32, 64, 96, 100]);
    }

    #[test]
    fn batches_from_many_threads_leave_in_tag_order() {
        let (batch, mut rx) = batch();
        let batch = std::sync::Arc::new(batch);
        for tag in 1..=10_000 {
            batch.arrived(tag);
        }
        let threads: Vec<_> = (0..4u64)
            .map(|k| {
                let batch = batch.clone();
                std::thread::spawn(move || {
                    for tag in (1..=10_000).filter(|t| t % 4 == k) {
                        batch.done(tag, tag);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let acks = sent(&mut rx);
        assert!(acks.windows(2).all(|w| w[0] < w[1]), "{acks:?}");
        assert_eq!(acks.last(), Some(&10_000));
    }
}
