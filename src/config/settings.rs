//! `cascade.toml`: the daemon's own settings. Every key has a default, and
//! every scalar setting can be overridden by a `CASCADE_…` environment variable.

use std::collections::{BTreeMap, BTreeSet};

use jiff::tz::TimeZone;
use serde::Deserialize;
use toml::Spanned;

use super::check::FileCheck;
use super::{duration_ms, parse_duration, parse_timezone, secrets};
use crate::core::Timing;
use crate::runtime::store::Target;

/// The daemon's settings, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    pub amqp: Amqp,
    pub redis: Redis,
    pub http: Http,
    pub defaults: Defaults,
    pub report: ReportSettings,
    /// How `cascade run` writes its log lines (`log.format`).
    pub log_format: LogFormat,
    /// `[replies]` and `[business_hours]`: customers' replies to staff.
    pub replies: super::replies::Replies,
}

/// `log.format`: one JSON object a line (the default, for log shippers), or
/// plain text for a person reading a local run. Both carry the same fields,
/// masked the same way: contacts are masked where each line is written,
/// whatever formats it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

/// `[report]`: the counters behind `cascade report`.
#[derive(Clone, Debug)]
pub struct ReportSettings {
    /// How long an hour's counters are kept (default 90 days).
    pub retention_ms: i64,
    /// The customer segments counted on their own; any other is `other`.
    /// `None`: the first `max_segments` seen per policy.
    pub segments: Option<Vec<String>>,
    pub max_segments: usize,
}

/// `report.retention` when unset.
const DEFAULT_REPORT_RETENTION_MS: i64 = 90 * 86_400_000;
/// `report.max_segments` when unset.
const DEFAULT_MAX_SEGMENTS: usize = 20;

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
    /// How the daemon declares its queues when they do not exist yet.
    pub queue_type: QueueType,
}

/// RabbitMQ's kind of queue for intake and dead letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueType {
    /// Replicated over a RabbitMQ cluster (Raft); the default for new
    /// deployments. The broker also bounds redeliveries (`x-delivery-limit`).
    Quorum,
    /// A queue on one node, as before quorum queues.
    Classic,
}

impl QueueType {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Redis {
    /// One server (`redis.url`) or a Redis Cluster (`redis.cluster`).
    pub target: Target,
    /// Every key starts with this (`cascade`); tests isolate themselves with another.
    pub prefix: String,
    /// How long a finished cascade's keys stay for `status` and reports.
    pub retention_ms: i64,
    /// How many sorted sets the wake-up timers are spread over.
    pub timer_shards: u16,
    /// `redis.ca_file`'s certificates (PEM): for `rediss://`, trust these
    /// instead of the system's (a private CA). Read at load, so `check`
    /// reports a missing or empty file.
    pub ca_pem: Option<Vec<u8>>,
}

#[derive(Clone, Debug)]
pub struct Http {
    /// The public listener: provider callbacks, tracking links, `/v1/…`.
    pub listen: String,
    /// The admin listener: `/metrics`, `/healthz`, `/readyz` (loopback by default).
    pub admin_listen: String,
    /// Bearer tokens for the `/v1` API; none disables it.
    pub receipt_tokens: Vec<ReceiptToken>,
    /// The callers (token names; `shared` for `receipt_token`) that may also
    /// submit notifications (`POST /v1/notifications`): a token handed to a
    /// system that records receipts must not be able to send SMS.
    pub intake_callers: BTreeSet<String>,
    /// The callers that may post customers' email replies
    /// (`POST /v1/inbound/email`): what they post is handed to staff as the
    /// customer's words, so only the mail server's token should.
    pub inbound_email_callers: BTreeSet<String>,
    /// Base URL under which customers reach tracking links (pixel, clicks).
    pub public_url: String,
    /// A client must send a request's headers within this long of the
    /// connection waiting for one (the first request, or the next on a
    /// kept-alive connection, so it is also the idle timeout).
    pub header_read_timeout_ms: i64,
    /// The longest one request may take, its body included.
    pub request_timeout_ms: i64,
    /// Connections the public listener serves at once; past it, new ones
    /// wait. (The admin listener's bound is fixed: `ADMIN_MAX_CONNECTIONS`.)
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
    #[serde(default)]
    pub report: RawReport,
    #[serde(default)]
    pub receipts: RawReceipts,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub replies: super::replies::RawReplies,
    pub business_hours: Option<super::replies::RawBusinessHours>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub format: Option<Spanned<String>>,
}

/// `[receipts]`: receipt words of the operator's own systems, which a
/// policy's `stop_on` may name besides the built-in ones.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReceipts {
    #[serde(default)]
    pub custom: Vec<Spanned<String>>,
}

impl RawReceipts {
    /// The declared words, trimmed; empty ones are reported by `build_settings`.
    pub(super) fn custom_words(&self) -> Vec<String> {
        self.custom
            .iter()
            .map(|w| w.get_ref().trim().to_owned())
            .filter(|w| !w.is_empty())
            .collect()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReport {
    pub retention: Option<Spanned<String>>,
    pub segments: Option<Vec<Spanned<String>>>,
    pub max_segments: Option<Spanned<i64>>,
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
    pub queue_type: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedis {
    pub url: Option<Spanned<String>>,
    /// Some nodes of a Redis Cluster, instead of `url`.
    pub cluster: Option<Spanned<Vec<Spanned<String>>>>,
    pub prefix: Option<Spanned<String>>,
    pub retention: Option<Spanned<String>>,
    pub timer_shards: Option<Spanned<i64>>,
    pub ca_file: Option<Spanned<String>>,
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
    /// The token names allowed to `POST /v1/notifications`.
    #[serde(default)]
    pub intake_callers: Vec<Spanned<String>>,
    /// The token names allowed to `POST /v1/inbound/email`.
    #[serde(default)]
    pub inbound_email_callers: Vec<Spanned<String>>,
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
/// replaces. Listed once so `--help` text, docs/configuration.md and the code agree.
pub const ENV_OVERRIDES: [(&str, &str); 23] = [
    ("CASCADE_AMQP_URL", "amqp.url"),
    ("CASCADE_AMQP_QUEUE", "amqp.queue"),
    ("CASCADE_AMQP_DEAD_LETTER_QUEUE", "amqp.dead_letter_queue"),
    ("CASCADE_AMQP_PREFETCH", "amqp.prefetch"),
    ("CASCADE_AMQP_MAX_BODY_BYTES", "amqp.max_body_bytes"),
    ("CASCADE_AMQP_MAX_DELIVERIES", "amqp.max_deliveries"),
    ("CASCADE_AMQP_QUEUE_TYPE", "amqp.queue_type"),
    ("CASCADE_REDIS_URL", "redis.url"),
    ("CASCADE_REDIS_CLUSTER", "redis.cluster"),
    ("CASCADE_REDIS_PREFIX", "redis.prefix"),
    ("CASCADE_REDIS_RETENTION", "redis.retention"),
    ("CASCADE_REDIS_TIMER_SHARDS", "redis.timer_shards"),
    ("CASCADE_REDIS_CA_FILE", "redis.ca_file"),
    ("CASCADE_HTTP_LISTEN", "http.listen"),
    ("CASCADE_HTTP_ADMIN_LISTEN", "http.admin_listen"),
    ("CASCADE_HTTP_RECEIPT_TOKEN", "http.receipt_token"),
    ("CASCADE_HTTP_RECEIPT_TOKEN_FILE", "http.receipt_token_file"),
    ("CASCADE_HTTP_MAX_CONNECTIONS", "http.max_connections"),
    ("CASCADE_HTTP_PUBLIC_URL", "http.public_url"),
    ("CASCADE_DEFAULTS_TIMEZONE", "defaults.timezone"),
    ("CASCADE_LOG_FORMAT", "log.format"),
    ("CASCADE_REPLIES_SINK", "replies.sink"),
    ("CASCADE_REPLIES_LINK_SECRET", "replies.link_secret"),
];

/// `defaults.claim_lease` when unset. A claimed wake-up sends on its lease
/// when the channel's timeout fits in it with 5 s to spare (runtime/worker.rs):
/// 30 s covers the default 10 s timeout.
const DEFAULT_CLAIM_LEASE_MS: i64 = 30_000;
/// `defaults.send_at_horizon`: 30 days.
const DEFAULT_SEND_AT_HORIZON_MS: i64 = 30 * 86_400_000;

/// Reads `cascade.toml` over the environment's `CASCADE_…` overrides; `None`
/// when any setting is wrong (each one reported to `check`).
pub(super) fn build_settings(raw: &RawSettings, check: &mut FileCheck) -> Option<Settings> {
    let before = check.errors.len();
    // The order of the reads is the order problems are reported in.
    let text = read_texts(raw, check);
    let receipt_tokens = secrets::receipt_tokens(&raw.http, check);
    let intake_callers = read_callers(&raw.http, &raw.http.intake_callers, check);
    let inbound_email_callers = read_callers(&raw.http, &raw.http.inbound_email_callers, check);
    let number = read_numbers(raw, check);
    let retention_ms = read_retention(raw, text.retention.as_deref(), check);
    let target = read_redis_target(raw, text.redis_url.as_deref(), check);
    let ca_pem = read_redis_ca(raw, target.as_ref(), check);
    let timezone = read_timezone(raw, text.tz_name.as_deref(), check);
    let time = read_durations(raw, check);
    let report = read_report(&raw.report, check);
    let log_format = read_log_format(raw, text.log_format.as_deref(), check);
    let replies = super::replies::read_replies(
        &raw.replies,
        raw.business_hours.as_ref(),
        text.tz_name.as_deref().unwrap_or("Europe/Moscow"),
        check,
    );
    for w in raw
        .receipts
        .custom
        .iter()
        .filter(|w| w.get_ref().trim().is_empty())
    {
        check.err(
            w.span(),
            "an empty receipt word in [receipts] custom; remove it",
        );
    }
    if check.errors.len() > before {
        return None;
    }
    Some(Settings {
        amqp: Amqp {
            url: text.amqp_url?,
            queue: text.queue?,
            dead_letter_queue: text.dead?,
            prefetch: number.prefetch? as u16,
            max_body_bytes: number.max_body? as usize,
            max_deliveries: number.max_deliveries? as u32,
            queue_type: read_queue_type(raw, text.queue_type.as_deref(), check)?,
        },
        redis: Redis {
            target: target?,
            prefix: text.prefix?,
            retention_ms: retention_ms?,
            timer_shards: number.shards? as u16,
            ca_pem: ca_pem?,
        },
        http: Http {
            listen: text.listen?,
            admin_listen: text.admin_listen?,
            receipt_tokens,
            intake_callers,
            inbound_email_callers,
            public_url: text.public_url?,
            header_read_timeout_ms: time.header_read_timeout?.max(1),
            request_timeout_ms: time.request_timeout?.max(1),
            max_connections: number.max_connections? as usize,
        },
        defaults: Defaults {
            timezone: timezone?,
            timezone_name: text.tz_name?,
            late_read_window_ms: time.late_read?,
            in_flight_timeout_ms: time.in_flight?,
            claim_lease_ms: time.claim_lease?.max(1_000),
            send_at_horizon_ms: time.send_at_horizon?,
        },
        report: report?,
        log_format: log_format?,
        replies: replies?,
    })
}

/// `[report]`.
fn read_report(raw: &RawReport, check: &mut FileCheck) -> Option<ReportSettings> {
    let retention_ms = duration_or(check, &raw.retention, DEFAULT_REPORT_RETENTION_MS);
    let max_segments = match &raw.max_segments {
        Some(v) if !(1..=1000).contains(v.get_ref()) => {
            check.err(v.span(), "max_segments must be between 1 and 1000");
            None
        }
        Some(v) => Some(*v.get_ref() as usize),
        None => Some(DEFAULT_MAX_SEGMENTS),
    };
    let segments = raw.segments.as_ref().map(|list| {
        list.iter()
            .map(|s| crate::report::clean_segment(s.get_ref()))
            .collect::<Vec<_>>()
    });
    if let (Some(list), Some(raw_list)) = (&segments, &raw.segments)
        && let Some(v) = raw_list.get(1000)
    {
        check.err(
            v.span(),
            format!("{} segments are too many (at most 1000)", list.len()),
        );
        return None;
    }
    Some(ReportSettings {
        // An hour at least; ten years at most (an hour's expiry is its end
        // plus the retention, which must stay a time Redis can hold).
        retention_ms: retention_ms?.clamp(3_600_000, 3650 * 86_400_000),
        segments,
        max_segments: max_segments?,
    })
}

/// `http.intake_callers`, `http.inbound_email_callers`: each must name a
/// token of this file (`shared`, or a key of `[http.receipt_tokens]`), so a
/// typo cannot leave a route shut while it looks open, or name a caller
/// that does not exist.
fn read_callers(
    raw: &RawHttp,
    listed: &[Spanned<String>],
    check: &mut FileCheck,
) -> BTreeSet<String> {
    let mut known: BTreeSet<&str> = raw
        .receipt_tokens
        .keys()
        .map(|k| k.strip_suffix("_file").unwrap_or(k))
        .collect();
    known.insert("shared");
    let mut callers = BTreeSet::new();
    for name in listed {
        if known.contains(name.get_ref().as_str()) {
            callers.insert(name.get_ref().clone());
        } else {
            check.err(
                name.span(),
                format!(
                    "`{}` names no token: the callers are {} (`shared` is receipt_token)",
                    name.get_ref(),
                    known.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
    callers
}

/// `http.admin_listen` when neither the file nor the environment sets it.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";

/// `http.admin_listen` read on its own — the environment, else the file,
/// else the default — without loading (and validating) the configuration:
/// `cascade health` must not call a running daemon unhealthy because a live
/// edit of channels/ or policies/ is invalid (the daemon keeps its last
/// good set).
pub fn admin_listen_alone(config: &std::path::Path) -> String {
    if let Ok(listen) = std::env::var("CASCADE_HTTP_ADMIN_LISTEN") {
        return listen;
    }
    std::fs::read_to_string(config)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| {
            t.get("http")?
                .get("admin_listen")?
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.to_owned())
}

/// The string settings as given (`None`: the problem is reported).
struct Texts {
    amqp_url: Option<String>,
    queue_type: Option<String>,
    queue: Option<String>,
    dead: Option<String>,
    redis_url: Option<String>,
    prefix: Option<String>,
    retention: Option<String>,
    listen: Option<String>,
    public_url: Option<String>,
    tz_name: Option<String>,
    admin_listen: Option<String>,
    log_format: Option<String>,
}

fn read_texts(raw: &RawSettings, check: &mut FileCheck) -> Texts {
    let mut text =
        |var: &str, v: &Option<Spanned<String>>, default: &str| env_or_text(check, var, v, default);
    Texts {
        amqp_url: text(
            "CASCADE_AMQP_URL",
            &raw.amqp.url,
            "amqp://guest:guest@127.0.0.1:5672/%2f",
        ),
        queue_type: text("CASCADE_AMQP_QUEUE_TYPE", &raw.amqp.queue_type, "quorum"),
        queue: text(
            "CASCADE_AMQP_QUEUE",
            &raw.amqp.queue,
            "cascade.notifications",
        ),
        dead: text(
            "CASCADE_AMQP_DEAD_LETTER_QUEUE",
            &raw.amqp.dead_letter_queue,
            "cascade.dead",
        ),
        redis_url: text(
            "CASCADE_REDIS_URL",
            &raw.redis.url,
            "redis://127.0.0.1:6379",
        ),
        prefix: text("CASCADE_REDIS_PREFIX", &raw.redis.prefix, "cascade"),
        retention: text("CASCADE_REDIS_RETENTION", &raw.redis.retention, "7d"),
        listen: text("CASCADE_HTTP_LISTEN", &raw.http.listen, "127.0.0.1:8080"),
        public_url: text(
            "CASCADE_HTTP_PUBLIC_URL",
            &raw.http.public_url,
            "http://127.0.0.1:8080",
        ),
        tz_name: text(
            "CASCADE_DEFAULTS_TIMEZONE",
            &raw.defaults.timezone,
            "Europe/Moscow",
        ),
        admin_listen: text(
            "CASCADE_HTTP_ADMIN_LISTEN",
            &raw.http.admin_listen,
            DEFAULT_ADMIN_LISTEN,
        ),
        log_format: text("CASCADE_LOG_FORMAT", &raw.log.format, "json"),
    }
}

/// A setting: the CASCADE_… variable if set, else the file's value, else the default.
fn env_or_text(
    check: &mut FileCheck,
    var: &str,
    v: &Option<Spanned<String>>,
    default: &str,
) -> Option<String> {
    if let Some(val) = (check.env)(var) {
        return Some(val);
    }
    match v {
        Some(v) => check.text(v),
        None => Some(default.to_owned()),
    }
}

/// Where Redis is: `redis.cluster` (a TOML list, or the environment's
/// comma-separated `CASCADE_REDIS_CLUSTER`) names some nodes of a Redis
/// Cluster; else `redis.url` one server. The environment beats the file,
/// as for every setting; both in one place is a mistake.
fn read_redis_target(
    raw: &RawSettings,
    url: Option<&str>,
    check: &mut FileCheck,
) -> Option<Target> {
    let env_url = (check.env)("CASCADE_REDIS_URL").is_some();
    let (nodes, span) = if let Some(list) = (check.env)("CASCADE_REDIS_CLUSTER") {
        if env_url {
            check.err_file("environment variables CASCADE_REDIS_URL and CASCADE_REDIS_CLUSTER: set one (one server, or a Redis Cluster), not both");
            return None;
        }
        let nodes: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        (nodes, None)
    } else if let (Some(list), false) = (&raw.redis.cluster, env_url) {
        if raw.redis.url.is_some() {
            check.err(
                list.span(),
                "set either redis.url (one server) or redis.cluster (a Redis Cluster), not both",
            );
            return None;
        }
        let nodes: Option<Vec<String>> = list.get_ref().iter().map(|n| check.text(n)).collect();
        (nodes?, Some(list.span()))
    } else {
        return url.map(Target::from);
    };
    let problem = if nodes.is_empty() {
        Some(
            "redis.cluster names no node: list some of the cluster's nodes, e.g. [\"redis://10.0.0.1:6379\"]",
        )
    } else if nodes
        .iter()
        .any(|n| !n.starts_with("redis://") && !n.starts_with("rediss://"))
    {
        Some("redis.cluster: each node is a redis:// or rediss:// URL")
    } else {
        None
    };
    if let Some(problem) = problem {
        match span {
            Some(span) => check.err(span, problem),
            None => check.err_file(format!(
                "environment variable CASCADE_REDIS_CLUSTER: {problem}"
            )),
        }
        return None;
    }
    Some(Target::Cluster(nodes))
}

/// The whole-number settings, each between 1 and its maximum.
/// `redis.ca_file` (or `CASCADE_REDIS_CA_FILE`): `Some(None)` when unset,
/// `None` when it is wrong (reported). A CA for a connection without TLS is
/// a mistake that would leave Redis traffic in the clear while the file
/// says otherwise, so it is an error, not a warning.
fn read_redis_ca(
    raw: &RawSettings,
    target: Option<&Target>,
    check: &mut FileCheck,
) -> Option<Option<Vec<u8>>> {
    let (path, span) = match ((check.env)("CASCADE_REDIS_CA_FILE"), &raw.redis.ca_file) {
        (Some(path), _) => (path, None),
        (None, Some(v)) => (check.text(v)?, Some(v.span())),
        (None, None) => return Some(None),
    };
    let problem = match std::fs::read(&path) {
        Err(e) => format!("cannot read the CA file {path}: {e}"),
        Ok(pem) if !pem.windows(CERTIFICATE.len()).any(|w| w == CERTIFICATE) => {
            format!("the CA file {path} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)")
        }
        Ok(_) if target.is_some_and(|t| !t.uses_tls()) => format!(
            "a CA file is set but Redis is reached without TLS: write its URL{} as rediss://",
            if target.is_some_and(Target::is_cluster) {
                "s"
            } else {
                ""
            }
        ),
        Ok(pem) => return Some(Some(pem)),
    };
    match span {
        Some(span) => check.err(span, problem),
        None => check.err_file(format!(
            "environment variable CASCADE_REDIS_CA_FILE: {problem}"
        )),
    }
    None
}

const CERTIFICATE: &[u8] = b"-----BEGIN CERTIFICATE-----";

struct Numbers {
    prefetch: Option<i64>,
    max_body: Option<i64>,
    max_deliveries: Option<i64>,
    shards: Option<i64>,
    max_connections: Option<i64>,
}

fn read_numbers(raw: &RawSettings, check: &mut FileCheck) -> Numbers {
    let mut int = |var: &str, v: &Option<Spanned<i64>>, what: &str, default: i64, max: i64| {
        env_or_int(check, var, v, Bounds { what, default, max })
    };
    Numbers {
        prefetch: int(
            "CASCADE_AMQP_PREFETCH",
            &raw.amqp.prefetch,
            "amqp.prefetch",
            256,
            65_535,
        ),
        max_body: int(
            "CASCADE_AMQP_MAX_BODY_BYTES",
            &raw.amqp.max_body_bytes,
            "amqp.max_body_bytes",
            256 * 1024,
            64 << 20,
        ),
        max_deliveries: int(
            "CASCADE_AMQP_MAX_DELIVERIES",
            &raw.amqp.max_deliveries,
            "amqp.max_deliveries",
            5,
            1_000,
        ),
        shards: int(
            "CASCADE_REDIS_TIMER_SHARDS",
            &raw.redis.timer_shards,
            "redis.timer_shards",
            16,
            1024,
        ),
        max_connections: int(
            "CASCADE_HTTP_MAX_CONNECTIONS",
            &raw.http.max_connections,
            "http.max_connections",
            1024,
            65_535,
        ),
    }
}

/// What a whole-number setting is called, its default and its maximum.
struct Bounds<'a> {
    what: &'a str,
    default: i64,
    max: i64,
}

/// A whole-number setting: the CASCADE_… variable if set, else the file's
/// value, else the default.
fn env_or_int(
    check: &mut FileCheck,
    var: &str,
    v: &Option<Spanned<i64>>,
    Bounds { what, default, max }: Bounds,
) -> Option<i64> {
    if let Some(val) = (check.env)(var) {
        return match val.trim().parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Some(n),
            _ => {
                check.err_file(format!("environment variable {var}=`{val}`: {what} must be a whole number between 1 and {max}"));
                None
            }
        };
    }
    match v {
        Some(v) => check.positive(v, what, max),
        None => Some(default),
    }
}

/// `redis.retention`, reported where it was given (the file or the environment).
fn read_retention(
    raw: &RawSettings,
    retention: Option<&str>,
    check: &mut FileCheck,
) -> Option<i64> {
    let env = check.env;
    retention.and_then(|r| match parse_duration(r) {
        Ok(d) => Some(duration_ms(d)),
        Err(msg) => {
            match &raw.redis.retention {
                Some(v) if env("CASCADE_REDIS_RETENTION").is_none() => check.err(v.span(), msg),
                _ => check.err_file(format!("redis.retention: {msg}")),
            }
            None
        }
    })
}

/// `amqp.queue_type`, reported where it was given (the file or the environment).
fn read_queue_type(
    raw: &RawSettings,
    name: Option<&str>,
    check: &mut FileCheck,
) -> Option<QueueType> {
    match name? {
        "quorum" => Some(QueueType::Quorum),
        "classic" => Some(QueueType::Classic),
        other => {
            let msg = format!("`{other}` is not a queue type; write \"quorum\" or \"classic\"");
            match &raw.amqp.queue_type {
                Some(v) if (check.env)("CASCADE_AMQP_QUEUE_TYPE").is_none() => {
                    check.err(v.span(), msg)
                }
                _ => check.err_file(format!("amqp.queue_type: {msg}")),
            }
            None
        }
    }
}

/// `log.format`, reported where it was given (the file or the environment).
fn read_log_format(
    raw: &RawSettings,
    name: Option<&str>,
    check: &mut FileCheck,
) -> Option<LogFormat> {
    match name? {
        "json" => Some(LogFormat::Json),
        "text" => Some(LogFormat::Text),
        other => {
            let msg = format!("`{other}` is not a log format; write \"json\" or \"text\"");
            match &raw.log.format {
                Some(v) if (check.env)("CASCADE_LOG_FORMAT").is_none() => check.err(v.span(), msg),
                _ => check.err_file(format!("log.format: {msg}")),
            }
            None
        }
    }
}

/// `defaults.timezone`, reported where it was given (the file or the environment).
fn read_timezone(
    raw: &RawSettings,
    tz_name: Option<&str>,
    check: &mut FileCheck,
) -> Option<TimeZone> {
    let env = check.env;
    tz_name.and_then(|name| match parse_timezone(name) {
        Ok(tz) => Some(tz),
        Err(msg) => {
            match &raw.defaults.timezone {
                Some(v) if env("CASCADE_DEFAULTS_TIMEZONE").is_none() => check.err(v.span(), msg),
                _ => check.err_file(format!("defaults.timezone: {msg}")),
            }
            None
        }
    })
}

/// The duration settings, in milliseconds.
struct Durations {
    header_read_timeout: Option<i64>,
    request_timeout: Option<i64>,
    send_at_horizon: Option<i64>,
    late_read: Option<i64>,
    claim_lease: Option<i64>,
    in_flight: Option<i64>,
}

fn read_durations(raw: &RawSettings, check: &mut FileCheck) -> Durations {
    let timing = Timing::default();
    let header_read_timeout = duration_or(check, &raw.http.header_read_timeout, 10_000);
    let request_timeout = duration_or(check, &raw.http.request_timeout, 30_000);
    let send_at_horizon = match &raw.defaults.send_at_horizon {
        // Zero would refuse every send_at ahead of now: say so rather than let it.
        Some(v) => match check.duration_ms(v) {
            Some(ms) if ms < 1_000 => {
                check.err(
                    v.span(),
                    "send_at_horizon must be 1s or longer, e.g. \"30d\"",
                );
                None
            }
            ms => ms,
        },
        None => Some(DEFAULT_SEND_AT_HORIZON_MS),
    };
    Durations {
        header_read_timeout,
        request_timeout,
        send_at_horizon,
        late_read: duration_or(
            check,
            &raw.defaults.late_read_window,
            timing.late_read_window_ms,
        ),
        claim_lease: duration_or(check, &raw.defaults.claim_lease, DEFAULT_CLAIM_LEASE_MS),
        in_flight: duration_or(
            check,
            &raw.defaults.in_flight_timeout,
            timing.in_flight_timeout_ms,
        ),
    }
}

/// A duration setting from the file, else its default.
fn duration_or(check: &mut FileCheck, v: &Option<Spanned<String>>, default_ms: i64) -> Option<i64> {
    match v {
        Some(v) => check.duration_ms(v),
        None => Some(default_ms),
    }
}
