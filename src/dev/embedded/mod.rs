//! The whole pipeline in one process, for `simulate` and `demo`: the
//! daemon's worker on the memory store, the provider fakes on loopback,
//! no RabbitMQ, no Redis, and a virtual clock.

pub mod demo;
pub mod driver;
pub mod rig;
pub mod simulate;

pub use driver::{Customers, Driver, Intake};
