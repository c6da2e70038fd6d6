//! The whole pipeline in one process, for `simulate` and `demo`: no RabbitMQ,
//! no Redis, no network, and a virtual clock.

pub mod demo;
pub mod engine;
pub mod rig;
pub mod simulate;

pub use engine::{Accept, Engine, Providers, Record};
