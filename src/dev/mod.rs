//! Not the daemon: what `cascade demo`, `simulate`, `bench` and `fakes`
//! and the tests are made of. The daemon (`cascade run`) never calls into
//! this folder.
//!
//! - `fakes`: loopback servers that speak each provider's wire format
//!   (VK, SMS.ru, SMSC, SMTP, Telegram, WhatsApp, a webhook receiver).
//! - `embedded`: the whole pipeline in one process on a fast virtual clock
//!   (`demo`, `simulate`).
//! - `bench`: `cascade bench`, throughput against a real RabbitMQ and Redis.

pub mod bench;
pub mod dice;
pub mod embedded;
pub mod fakes;
