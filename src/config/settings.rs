//! `cascade.toml`: the daemon's own settings. Every key has a default, and
//! every scalar setting can be overridden by a `CASCADE_…` environment variable.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The daemon's settings, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    pub amqp: Amqp,
    pub redis: Redis,
    pub http: Http,
    pub defaults: Defaults,
}

#[derive(Clone, Debug)]
pub struct Amqp {
    pub url: String,
    pub queue: String,
    pub dead_letter_queue: String,
    pub prefetch: u16,
    pub max_body_bytes: usize,
    /// How many times a message may fail in its own right (a panic, an
    /// error Redis answers about its keys) before it is dead-lettered as
    /// `poison`. Outages never count.
    pub max_deliveries: u32,
}

#[derive(Clone, Debug)]
pub struct Redis {
    pub url: String,
    /// Every key starts with this (`cascade`); tests isolate themselves with another.
    pub prefix: String,
    /// How long a finished cascade's keys stay for `status` and reports.
    pub retention_ms: i64,
    /// How many sorted sets the wake-up timers are spread over.
    pub timer_shards: u16,
}

#[derive(Clone, Debug)]
pub struct Http {
    /// The public listener: provider callbacks, tracking links, `/v1/…`.
    pub listen: String,
    /// The admin listener: `/metrics`, `/healthz`, `/readyz` (loopback by default).
    pub admin_listen: String,
    /// Bearer tokens for `POST /v1/receipts` and `/cancel`; none disables them.
    pub receipt_tokens: Vec<ReceiptToken>,
    /// Base URL under which customers reach tracking links (pixel, clicks).
    pub public_url: String,
    /// A client must send a request's headers within this long of the
    /// connection waiting for one (the first request, or the next on a
    /// kept-alive connection, so it is also the idle timeout).
    pub header_read_timeout_ms: i64,
    /// The longest one request may take, its body included.
    pub request_timeout_ms: i64,
    /// Connections served at once per listener; past it, new ones wait.
    pub max_connections: usize,
}

/// One caller of the receipts API: its name is logged with each receipt it records.
#[derive(Clone)]
pub struct ReceiptToken {
    pub name: String,
    pub token: String,
}

impl std::fmt::Debug for ReceiptToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReceiptToken({}, ••••)", self.name)
    }
}

#[derive(Clone, Debug)]
pub struct Defaults {
    pub timezone: jiff::tz::TimeZone,
    pub timezone_name: String,
    pub late_read_window_ms: i64,
    pub in_flight_timeout_ms: i64,
    /// How long a claimed cascade is one instance's before another may take it.
    pub claim_lease_ms: i64,
    /// A `send_at` further ahead than this is refused (`send_at_too_far`).
    pub send_at_horizon_ms: i64,
}

/// `cascade.toml` as written. Strings stay spanned so later validation can
/// point at them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    #[serde(default)]
    pub amqp: RawAmqp,
    #[serde(default)]
    pub redis: RawRedis,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub defaults: RawDefaults,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub quiet_hours: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAmqp {
    pub url: Option<Spanned<String>>,
    pub queue: Option<Spanned<String>>,
    pub dead_letter_queue: Option<Spanned<String>>,
    pub prefetch: Option<Spanned<i64>>,
    pub max_body_bytes: Option<Spanned<i64>>,
    pub max_deliveries: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedis {
    pub url: Option<Spanned<String>>,
    pub prefix: Option<Spanned<String>>,
    pub retention: Option<Spanned<String>>,
    pub timer_shards: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub listen: Option<Spanned<String>>,
    pub admin_listen: Option<Spanned<String>>,
    pub receipt_token: Option<Spanned<String>>,
    pub receipt_token_file: Option<Spanned<String>>,
    /// Named tokens, one per calling system: `crm = "${CRM_TOKEN}"`, or
    /// `crm_file = "/run/secrets/crm"`.
    #[serde(default)]
    pub receipt_tokens: BTreeMap<String, Spanned<String>>,
    pub public_url: Option<Spanned<String>>,
    pub header_read_timeout: Option<Spanned<String>>,
    pub request_timeout: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub timezone: Option<Spanned<String>>,
    pub late_read_window: Option<Spanned<String>>,
    pub in_flight_timeout: Option<Spanned<String>>,
    pub claim_lease: Option<Spanned<String>>,
    pub send_at_horizon: Option<Spanned<String>>,
}

/// `[limits]`, in `cascade.toml` and in policy files.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub per_customer: Option<Spanned<String>>,
    #[serde(default)]
    pub per_channel: BTreeMap<String, Spanned<String>>,
}

/// The environment variables that override settings, with the setting each
/// replaces. Listed once so `--help` text, the README and the code agree.
pub const ENV_OVERRIDES: [(&str, &str); 17] = [
    ("CASCADE_AMQP_URL", "amqp.url"),
    ("CASCADE_AMQP_QUEUE", "amqp.queue"),
    ("CASCADE_AMQP_DEAD_LETTER_QUEUE", "amqp.dead_letter_queue"),
    ("CASCADE_AMQP_PREFETCH", "amqp.prefetch"),
    ("CASCADE_AMQP_MAX_BODY_BYTES", "amqp.max_body_bytes"),
    ("CASCADE_AMQP_MAX_DELIVERIES", "amqp.max_deliveries"),
    ("CASCADE_REDIS_URL", "redis.url"),
    ("CASCADE_REDIS_PREFIX", "redis.prefix"),
    ("CASCADE_REDIS_RETENTION", "redis.retention"),
    ("CASCADE_REDIS_TIMER_SHARDS", "redis.timer_shards"),
    ("CASCADE_HTTP_LISTEN", "http.listen"),
    ("CASCADE_HTTP_ADMIN_LISTEN", "http.admin_listen"),
    ("CASCADE_HTTP_RECEIPT_TOKEN", "http.receipt_token"),
    ("CASCADE_HTTP_RECEIPT_TOKEN_FILE", "http.receipt_token_file"),
    ("CASCADE_HTTP_MAX_CONNECTIONS", "http.max_connections"),
    ("CASCADE_HTTP_PUBLIC_URL", "http.public_url"),
    ("CASCADE_DEFAULTS_TIMEZONE", "defaults.timezone"),
];
