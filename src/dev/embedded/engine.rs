//! An in-process cascade runner on a virtual clock: the store, the timers and
//! the per-customer limits of the real daemon, held in memory. `simulate` and
//! `demo` drive the same decision core through it, with no services at all.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

use crate::core::{
    Cascade, ChannelRules, Context, Decision, Entry, EntryKind, Event, Policy, Rate, Recipient,
    SendOrder, SendOutcome, Timing, decide,
};

/// The outside world as the engine sees it: providers answering sends, and
/// customers who read (or not) what reached them.
pub trait Providers<P> {
    fn send(&mut self, now_ms: i64, id: &str, payload: &P, order: &SendOrder) -> SendOutcome;

    /// Receipts the world has decided on since the last call: (id, event, at).
    fn drain_receipts(&mut self) -> Vec<(String, String, i64)> {
        Vec::new()
    }
}

/// One cascade held by the engine.
pub struct Record<P> {
    pub customer_id: String,
    pub policy: Arc<Policy>,
    pub recipient: Recipient,
    pub receipts: BTreeMap<String, i64>,
    pub cascade: Cascade,
    pub timeline: Vec<Entry>,
    pub payload: P,
    /// The wake-up already in the timer queue, so it is queued once.
    scheduled_ms: Option<i64>,
}

/// A new cascade for `Engine::accept`.
pub struct Accept<P> {
    pub id: String,
    pub customer_id: String,
    pub policy: Arc<Policy>,
    pub recipient: Recipient,
    pub send_at_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
    pub payload: P,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Wake {
    Timer(String),
    Receipt(String, String),
}

/// The in-memory store, timers and limits.
pub struct Engine<P> {
    pub channels: BTreeMap<String, ChannelRules>,
    pub timing: Timing,
    pub records: HashMap<String, Record<P>>,
    /// Per customer: (sent at, channel) of every send that went out.
    sends_by_customer: HashMap<String, Vec<(i64, String)>>,
    queue: BinaryHeap<Reverse<(i64, u64, Wake)>>,
    seq: u64,
    now_ms: i64,
}

impl<P> Engine<P> {
    pub fn new(channels: BTreeMap<String, ChannelRules>, timing: Timing, now_ms: i64) -> Self {
        Engine {
            channels,
            timing,
            records: HashMap::new(),
            sends_by_customer: HashMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            now_ms,
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Starts a cascade now. Returns false (and changes nothing) for a known id.
    pub fn accept(&mut self, a: Accept<P>, providers: &mut dyn Providers<P>) -> bool {
        if self.records.contains_key(&a.id) {
            return false;
        }
        let receipts = BTreeMap::new();
        let decision = {
            let ctx = Context {
                notification_id: &a.id,
                policy: &a.policy,
                channels: &self.channels,
                recipient: &a.recipient,
                receipts: &receipts,
                timing: self.timing,
            };
            Cascade::start(self.now_ms, a.send_at_ms, a.expires_at_ms, &ctx)
        };
        let record = Record {
            customer_id: a.customer_id,
            policy: a.policy,
            recipient: a.recipient,
            receipts,
            cascade: decision.cascade.clone(),
            timeline: Vec::new(),
            payload: a.payload,
            scheduled_ms: None,
        };
        self.records.insert(a.id.clone(), record);
        self.apply(&a.id, decision, providers);
        true
    }

    /// Schedules a receipt (the customer reads, clicks, …) at `at_ms`.
    pub fn receipt(&mut self, id: &str, event: &str, at_ms: i64) {
        self.push(
            at_ms.max(self.now_ms),
            Wake::Receipt(id.to_owned(), event.to_owned()),
        );
    }

    /// When the next timer or receipt is due, if any.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.queue.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Moves the clock to `until_ms`, handling every timer and receipt due by then.
    pub fn run_until(&mut self, until_ms: i64, providers: &mut dyn Providers<P>) {
        while let Some(Reverse((at, _, _))) = self.queue.peek() {
            if *at > until_ms {
                break;
            }
            let Some(Reverse((at, _, wake))) = self.queue.pop() else {
                break;
            };
            self.now_ms = self.now_ms.max(at);
            match wake {
                Wake::Timer(id) => {
                    let due = self.records.get(&id).and_then(|r| r.cascade.wake_at_ms());
                    // A superseded timer (the cascade moved on) is dropped here,
                    // as the Redis scheduler drops a stale sorted-set entry.
                    if due == Some(at) {
                        if let Some(r) = self.records.get_mut(&id) {
                            r.scheduled_ms = None;
                        }
                        self.step(&id, Event::TimerDue, providers);
                    }
                }
                Wake::Receipt(id, event) => {
                    if let Some(r) = self.records.get_mut(&id)
                        && !r.receipts.contains_key(&event)
                    {
                        r.receipts.insert(event.clone(), self.now_ms);
                        r.timeline.push(Entry {
                            at_ms: self.now_ms,
                            event: EntryKind::Receipt,
                            step: None,
                            channel: None,
                            reason: Some(event),
                            until_ms: None,
                            provider_message_id: None,
                        });
                        self.step(&id, Event::ReceiptsChanged, providers);
                    }
                }
            }
        }
        self.now_ms = self.now_ms.max(until_ms);
    }

    /// Runs until nothing is scheduled (every cascade has ended).
    pub fn run_to_end(&mut self, providers: &mut dyn Providers<P>) {
        while let Some(at) = self.next_due_ms() {
            self.run_until(at, providers);
        }
    }

    fn push(&mut self, at_ms: i64, wake: Wake) {
        self.seq += 1;
        self.queue.push(Reverse((at_ms, self.seq, wake)));
    }

    fn step(&mut self, id: &str, event: Event, providers: &mut dyn Providers<P>) {
        let Some(r) = self.records.get(id) else {
            return;
        };
        let ctx = Context {
            notification_id: id,
            policy: &r.policy,
            channels: &self.channels,
            recipient: &r.recipient,
            receipts: &r.receipts,
            timing: self.timing,
        };
        let decision = decide(r.cascade.clone(), event, self.now_ms, &ctx);
        self.apply(id, decision, providers);
    }

    /// Stores a decision, performs its send (limits first), and feeds the
    /// outcome back until the cascade waits for time to pass.
    fn apply(&mut self, id: &str, decision: Decision, providers: &mut dyn Providers<P>) {
        let Some(r) = self.records.get_mut(id) else {
            return;
        };
        r.cascade = decision.cascade;
        r.timeline.extend(decision.entries);
        let after = r.cascade.wake_at_ms();
        let scheduled = r.scheduled_ms;
        if let Some(order) = decision.send {
            let event = match self.limit_verdict(id, &order) {
                Some(not_before_ms) => Event::LimitBlocked {
                    step: order.step,
                    channel: order.channel.clone(),
                    not_before_ms,
                },
                None => {
                    let Some(r) = self.records.get(id) else {
                        return;
                    };
                    let outcome = providers.send(self.now_ms, id, &r.payload, &order);
                    if matches!(
                        outcome,
                        SendOutcome::Sent { .. } | SendOutcome::Ambiguous { .. }
                    ) {
                        let customer = r.customer_id.clone();
                        self.sends_by_customer
                            .entry(customer)
                            .or_default()
                            .push((self.now_ms, order.channel.clone()));
                    }
                    for (rid, event, at) in providers.drain_receipts() {
                        self.receipt(&rid, &event, at);
                    }
                    Event::SendResult {
                        step: order.step,
                        channel: order.channel,
                        outcome,
                    }
                }
            };
            self.step(id, event, providers);
            return;
        }
        if let Some(at) = after
            && after != scheduled
        {
            if let Some(r) = self.records.get_mut(id) {
                r.scheduled_ms = after;
            }
            self.push(at, Wake::Timer(id.to_owned()));
        }
    }

    /// When the customer's limits let this send go, if not now.
    fn limit_verdict(&self, id: &str, order: &SendOrder) -> Option<i64> {
        let r = self.records.get(id)?;
        let history = self.sends_by_customer.get(&r.customer_id)?;
        let kind_of = |ch: &str| self.channels.get(ch).map(|c| c.kind);
        let kind = kind_of(&order.channel)?;
        let checks: Vec<(Rate, Vec<i64>)> = r
            .policy
            .limits
            .applying_to(&order.channel, kind)
            .into_iter()
            .map(|(key, rate)| {
                let times = history
                    .iter()
                    .filter(|(_, ch)| {
                        key.is_none_or(|k| {
                            kind_of(ch).is_some_and(|kd| crate::core::Limits::covers(k, ch, kd))
                        })
                    })
                    .map(|(t, _)| *t)
                    .collect();
                (rate, times)
            })
            .collect();
        checks
            .iter()
            .filter_map(|(rate, times)| rate.not_before(times, self.now_ms))
            .max()
    }
}
