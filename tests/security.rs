//! The security suite (against a live daemon on the local RabbitMQ and
//! Redis): secrets that fail closed, the hardened HTTP edge, tracking tokens,
//! masked personal data, dead letters and poison messages. One file per
//! concern under `tests/security/`.

mod common;

/// The security binary's captured log: everything the daemon says at
/// `info` and up, its own `trace` too (personal data must not leak at any
/// level).
fn logs() -> &'static common::Logs {
    common::logs("info,cascade=trace")
}

#[path = "security/dead_letters.rs"]
mod dead_letters;
#[path = "security/edge.rs"]
mod edge;
#[path = "security/personal_data.rs"]
mod personal_data;
#[path = "security/secrets.rs"]
mod secrets;
