//! Loopback fakes of the providers, speaking their real wire formats, for the
//! tests, `demo` and the benchmark. Each starts on `127.0.0.1:0`, records what
//! it receives, and can be scripted per test: succeed, fail transiently N
//! times, rate-limit with a retry-after, fail permanently, and send callbacks
//! (read, delivered, failed) back to the daemon.

pub mod script;
pub mod smsc;
pub mod smsru;
pub mod smtp;
pub mod telegram;
pub mod vk;
pub mod webhook;
pub mod whatsapp;
