//! The daemon: intake from RabbitMQ, state and timers in Redis, the
//! scheduler that wakes cascades, and the HTTP server for receipts.

mod ack_batch;
pub mod alarm;
pub mod clock;
pub mod daemon;
pub mod dead_letters;
pub mod gauges;
pub mod intake;
pub mod internal_events;
pub mod keys;
pub mod poison;
pub mod publisher;
pub mod queues;
pub mod record;
pub mod reload;
pub mod reports;
mod republish;
pub mod scheduler;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod worker;

use std::sync::atomic::{AtomicBool, Ordering};

/// What `/readyz` reports: both services reachable.
#[derive(Default)]
pub struct Health {
    pub amqp: AtomicBool,
    pub redis: AtomicBool,
}

impl Health {
    pub fn ready(&self) -> bool {
        self.amqp.load(Ordering::Relaxed) && self.redis.load(Ordering::Relaxed)
    }
}
