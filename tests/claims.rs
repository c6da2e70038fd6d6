//! End-to-end tests of what the docs promise about `cascade run` that no
//! other test would catch if it broke: the policy a cascade keeps, quiet
//! hours, hot reload, limits, expiry and `send_at`, the lease and the
//! channel `rate`, a graceful stop, the `CASCADE_*` overrides, the webhook
//! signature, and the `status` and `receipt` commands. Against the real
//! RabbitMQ and Redis, through loopback fakes, on the injected clock where
//! time matters. One file per claim under `tests/claims/`.

mod common;

#[path = "claims/breaker.rs"]
mod breaker;
#[path = "claims/commands.rs"]
mod commands;
#[path = "claims/env.rs"]
mod env;
#[path = "claims/expiry.rs"]
mod expiry;
#[path = "claims/kept_policy.rs"]
mod kept_policy;
#[path = "claims/lease.rs"]
mod lease;
#[path = "claims/limits.rs"]
mod limits;
#[path = "claims/quiet.rs"]
mod quiet;
#[path = "claims/reload.rs"]
mod reload;
#[path = "claims/stop.rs"]
mod stop;
#[path = "claims/support.rs"]
mod support;
