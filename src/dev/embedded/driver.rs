//! The clock driver of `simulate` and `demo`: the daemon's own worker and
//! scheduler sweep on the in-memory store, sending through the real
//! adapters to the provider fakes on loopback, on a virtual clock that
//! jumps from one due moment to the next.
//!
//! What surrounds the worker in the daemon is played by plain calls, one
//! at a time: a message body goes through intake's admission and
//! `Worker::start`; a receipt through the store, as the HTTP callbacks
//! record it; due cascades through `scheduler::wake_due_in_turn`. One at a
//! time is what makes a seed play the same day every time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use jiff::tz::TimeZone;
use tokio_util::sync::CancellationToken;

use super::rig::Rig;
use crate::channels::Outbound;
use crate::config::Catalog;
use crate::core::receipt_data::ReceiptData;
use crate::core::{Cascade, Entry, EntryKind};
use crate::notification::{self, IntakeError, Notification};
use crate::runtime::clock::{Clock, VirtualClock};
use crate::runtime::scheduler::{self, SchedulerConfig};
use crate::runtime::store::{CascadeStore, MemoryStore, StoreError};
use crate::runtime::telemetry::Telemetry;
use crate::runtime::worker::{Started, Worker};

/// The customers: how they react to what reaches them.
pub trait Customers {
    /// A send went out (`entry` is its `sent` line): the receipt the
    /// customer's reaction brings, as (event word, when), if any.
    fn on_sent(&mut self, id: &str, entry: &Entry) -> Option<(String, i64)>;

    /// The data that comes with a receipt `on_sent` brought (what a call
    /// centre's manager typed with `called`); none unless said.
    fn data_for(&mut self, _id: &str, _event: &str) -> ReceiptData {
        ReceiptData::new()
    }
}

/// What intake made of one message body.
pub enum Intake {
    /// A new cascade, started (its first step carried out if due), with
    /// the customer's time zone as admission resolved it.
    Accepted(Box<Notification>, TimeZone),
    /// Its id is known: nothing was recorded.
    Duplicate,
    /// Refused as the daemon would dead-letter it.
    Rejected(IntakeError),
}

/// Why a play stopped.
#[derive(Debug, thiserror::Error)]
pub enum PlayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store said something was due, and a sweep found nothing: a bug
    /// in the store, reported rather than played around forever.
    #[error("the store had a wake-up due at {at_ms} that no claim took")]
    Stuck { at_ms: i64 },
    /// A claim found the lease of an earlier wake-up run out: in one
    /// process, where each wake-up ends before the next sweep, that
    /// wake-up left the cascade claimed (in the daemon, an instance died).
    #[error("the wake-up of {id} left it claimed")]
    LeftClaimed { id: String },
}

/// A receipt the customers will bring: (when, order of arrival, id, event,
/// channel, data), earliest first.
type Pending = Reverse<(i64, u64, String, String, Option<String>, ReceiptData)>;

/// How long a finished cascade stays readable: well past a played day.
const RETENTION_MS: i64 = 30 * 24 * 3_600_000;

/// Timer shards, as the daemon's default.
const SHARDS: u16 = 16;

pub struct Driver {
    pub rig: Rig,
    clock: Arc<VirtualClock>,
    store: MemoryStore,
    worker: Worker<MemoryStore>,
    catalog: Arc<Catalog>,
    pending: BinaryHeap<Pending>,
    arrivals: u64,
    /// Per cascade: how many timeline lines the customers have seen.
    seen: HashMap<String, usize>,
}

impl Driver {
    /// The fakes started, the channels pointed at them, the clock at `start_ms`.
    pub fn start(catalog: &Catalog, start_ms: i64) -> std::io::Result<Driver> {
        let rig = Rig::start(catalog)?;
        let clock = Arc::new(VirtualClock::new(start_ms));
        let store = MemoryStore::new(clock.clone(), RETENTION_MS, SHARDS).with_report(
            crate::runtime::store::ReportBook::new(&catalog.settings.report),
        );
        let catalog = Arc::new(rig.catalog.clone());
        let worker = Worker {
            store: store.clone(),
            catalog: Arc::new(ArcSwap::new(catalog.clone())),
            outbound: Outbound::new(),
            clock: clock.clone(),
            telemetry: Telemetry::new(),
            shutdown: CancellationToken::new(),
            alarm: Default::default(),
        };
        Ok(Driver {
            rig,
            clock,
            store,
            worker,
            catalog,
            pending: BinaryHeap::new(),
            arrivals: 0,
            seen: HashMap::new(),
        })
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Takes a message body off the (imagined) queue now.
    pub fn intake(
        &mut self,
        body: &[u8],
        customers: &mut dyn Customers,
    ) -> Result<Intake, StoreError> {
        let now = self.now_ms();
        let catalog = self.catalog.clone();
        let admitted = match notification::admit_at(body, &catalog, now) {
            Ok(admitted) => admitted,
            Err(e) => return Ok(Intake::Rejected(e)),
        };
        let notification = Box::new(admitted.notification.clone());
        let tz = admitted.recipient.tz.clone();
        let worker = &self.worker;
        let started = self.rig.block_on(async {
            let started = worker.start(admitted, &catalog, now).await?;
            if let Started::New { first: Some(first) } = started {
                worker.carry_out_first(first).await?;
                return Ok(Started::New { first: None });
            }
            Ok::<_, StoreError>(started)
        })?;
        match started {
            Started::New { .. } => {
                self.observe(&notification.id, customers)?;
                Ok(Intake::Accepted(notification, tz))
            }
            Started::Duplicate => Ok(Intake::Duplicate),
            Started::Refused => Err(StoreError::Corrupt {
                id: notification.id.clone(),
                why: "the store refused a new cascade".into(),
            }),
        }
    }

    /// A receipt (a read, a cancel) that will arrive at `at_ms`.
    pub fn receipt_at(&mut self, id: &str, event: &str, channel: Option<&str>, at_ms: i64) {
        self.receipt_with_data_at(id, event, channel, ReceiptData::new(), at_ms);
    }

    /// A receipt with data (`{"slot": …}`) that will arrive at `at_ms`.
    pub fn receipt_with_data_at(
        &mut self,
        id: &str,
        event: &str,
        channel: Option<&str>,
        data: ReceiptData,
        at_ms: i64,
    ) {
        self.arrivals += 1;
        self.pending.push(Reverse((
            at_ms.max(self.now_ms()),
            self.arrivals,
            id.to_owned(),
            event.to_owned(),
            channel.map(str::to_owned),
            data,
        )));
    }

    /// When the next receipt arrives or the next cascade comes due.
    pub fn next_due_ms(&self) -> Option<i64> {
        let receipt = self.pending.peek().map(|Reverse((at, ..))| *at);
        [receipt, self.store.next_wake_ms()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Moves the clock to `until_ms`, delivering each receipt and waking
    /// each cascade that comes due on the way, at its moment.
    pub fn run_until(
        &mut self,
        until_ms: i64,
        customers: &mut dyn Customers,
    ) -> Result<(), PlayError> {
        while let Some(next) = self.next_due_ms().filter(|at| *at <= until_ms) {
            self.clock.set(next);
            let now = self.now_ms();
            let delivered = self.deliver_receipts(now)?;
            let worker = &self.worker;
            let woken = self.rig.block_on(scheduler::wake_due_in_turn(
                worker,
                SchedulerConfig::default(),
            ))?;
            for (id, lapsed) in &woken {
                if *lapsed {
                    return Err(PlayError::LeftClaimed { id: id.clone() });
                }
                self.observe(id, customers)?;
            }
            if delivered == 0 && woken.is_empty() {
                return Err(PlayError::Stuck { at_ms: now });
            }
        }
        self.clock.set(until_ms);
        Ok(())
    }

    /// Plays on until no receipt is coming and no cascade waits for time.
    pub fn run_to_end(&mut self, customers: &mut dyn Customers) -> Result<(), PlayError> {
        while let Some(at) = self.next_due_ms() {
            self.run_until(at, customers)?;
        }
        Ok(())
    }

    /// A cascade's state and timeline, as `cascade status` reads them.
    pub fn status(&self, id: &str) -> Result<Option<(Cascade, Vec<Entry>)>, StoreError> {
        self.rig.block_on(self.store.status(id))
    }

    /// The report over the day, as `cascade report` reads it.
    pub fn report(
        &self,
        req: &crate::runtime::reports::ReportRequest,
    ) -> Result<crate::report::Report, StoreError> {
        self.rig.block_on(crate::runtime::reports::report(
            &self.store,
            &self.catalog,
            req,
        ))
    }

    /// The what-if for `step` of `policy` over the day, as `cascade what-if` reads it.
    pub fn what_if(
        &self,
        policy: &str,
        step: u8,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<crate::report::what_if::WhatIf, StoreError> {
        self.rig.block_on(crate::runtime::reports::what_if_for(
            &self.store,
            &self.catalog,
            policy,
            step,
            None,
            from_ms,
            to_ms,
        ))
    }

    /// Records every receipt due by `now`, as the HTTP callbacks do.
    fn deliver_receipts(&mut self, now: i64) -> Result<usize, StoreError> {
        let mut delivered = 0;
        while let Some(Reverse((at, ..))) = self.pending.peek()
            && *at <= now
        {
            let Some(Reverse((_, _, id, event, channel, data))) = self.pending.pop() else {
                break;
            };
            self.rig.block_on(self.store.record_receipt_with_data(
                &id,
                &event,
                channel.as_deref(),
                &data,
                now,
            ))?;
            delivered += 1;
        }
        Ok(delivered)
    }

    /// Shows the customers what went out to them since they last looked.
    fn observe(&mut self, id: &str, customers: &mut dyn Customers) -> Result<(), StoreError> {
        let Some((_, timeline)) = self.status(id)? else {
            return Ok(());
        };
        let seen = self.seen.entry(id.to_owned()).or_default();
        let first_new = std::mem::replace(seen, timeline.len());
        for entry in timeline.iter().skip(first_new) {
            if entry.event != EntryKind::Sent {
                continue;
            }
            if let Some((event, at)) = customers.on_sent(id, entry) {
                let data = customers.data_for(id, &event);
                self.receipt_with_data_at(id, &event, entry.channel.as_deref(), data, at);
            }
        }
        Ok(())
    }
}
