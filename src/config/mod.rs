//! Configuration: `cascade.toml`, every `channels/*.toml` and every
//! `policies/*.toml`, loaded into typed, validated values. Loading collects
//! every problem it finds, each with file, line, column and a sentence that
//! says what would be right, so one `cascade check` shows them all.

mod channel;
mod error;
mod policy;
mod provider_keys;
pub mod secrets;
mod settings;
mod values;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

pub use crate::channels::ChannelConfig;
pub use error::{ConfigError, ConfigErrors, line_col};
pub use secrets::SecretProblem;
pub use settings::{Amqp, Defaults, ENV_OVERRIDES, Http, ReceiptToken, Redis, Settings};
pub use values::{duration_ms, interpolate, parse_duration, parse_rate, parse_timezone};

use crate::core::policy::DEFAULT_STOP_ON;
use crate::core::{
    ChannelKind, ChannelRules, Limits, OnLimit, OnUncertain, Policy, QuietHours, Rate, RetryPolicy,
    Step, Timing, WaitClock,
};
use channel::{RawChannel, dedupes_by_default, default_max_length};
use policy::{RawPolicy, RawStep};
use settings::{RawLimits, RawSettings};

/// `defaults.claim_lease` when unset. A claimed wake-up sends on its lease
/// when the channel's timeout fits in it with 5 s to spare (runtime/worker.rs):
/// 30 s covers the default 10 s timeout.
const DEFAULT_CLAIM_LEASE_MS: i64 = 30_000;
/// `defaults.send_at_horizon`: 30 days.
const DEFAULT_SEND_AT_HORIZON_MS: i64 = 30 * 86_400_000;

/// Everything the daemon runs on: settings, channels and policies.
#[derive(Clone, Debug)]
pub struct Catalog {
    pub settings: Settings,
    pub channels: BTreeMap<String, ChannelConfig>,
    pub policies: BTreeMap<String, Policy>,
    /// The rules the decision core reads, by channel name.
    pub channel_rules: BTreeMap<String, ChannelRules>,
    /// Secrets in use that a daemon must not run on (`secrets`): `run`
    /// refuses them, `check` warns.
    pub secret_problems: Vec<SecretProblem>,
}

/// Reads an environment variable; injected so tests do not touch the process environment.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Catalog {
    /// Loads `config_path` and the `channels/` and `policies/` folders beside it.
    pub fn load(config_path: &Path) -> Result<Catalog, ConfigErrors> {
        Self::load_with_env(config_path, &process_env)
    }

    pub fn load_with_env(config_path: &Path, env: Env) -> Result<Catalog, ConfigErrors> {
        let root = config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut errors = Vec::new();
        let mut secret_problems = Vec::new();

        let settings_src = read(config_path, &mut errors);
        let raw_settings: RawSettings = settings_src
            .as_deref()
            .and_then(|src| parse_toml(config_path, src, &mut errors))
            .unwrap_or_default();

        let mut channels = BTreeMap::new();
        for (name, path) in toml_files(&root.join("channels"), &mut errors) {
            let Some(src) = read(&path, &mut errors) else {
                continue;
            };
            let mut check = FileCheck {
                file: &path,
                src: &src,
                errors: &mut errors,
                env,
                secrets: &mut secret_problems,
            };
            if let Some(ch) = load_channel(&name, &mut check) {
                channels.insert(name, ch);
            }
        }
        if channels.is_empty() && errors.is_empty() {
            errors.push(ConfigError::whole_file(
                &root.join("channels"),
                "no channels configured; add a file such as channels/sms.toml with `kind = \"sms\"`",
            ));
        }
        let known = KnownChannels::new(&channels);

        let src = settings_src.unwrap_or_default();
        let mut check = FileCheck {
            file: config_path,
            src: &src,
            errors: &mut errors,
            env,
            secrets: &mut secret_problems,
        };
        let settings = build_settings(&raw_settings, &mut check);
        let global_limits = build_limits(&raw_settings.limits, &known, &mut check);
        let global_quiet = build_quiet_hours(&raw_settings.quiet_hours, &known, &mut check);

        let mut policies = BTreeMap::new();
        for (name, path) in toml_files(&root.join("policies"), &mut errors) {
            let Some(src) = read(&path, &mut errors) else {
                continue;
            };
            let mut check = FileCheck {
                file: &path,
                src: &src,
                errors: &mut errors,
                env,
                secrets: &mut secret_problems,
            };
            let Some(raw) = parse_toml::<RawPolicy>(&path, &src, check.errors) else {
                continue;
            };
            if let Some(p) = build_policy(
                &name,
                raw,
                &known,
                &global_limits,
                &global_quiet,
                &mut check,
            ) {
                policies.insert(name, p);
            }
        }
        if policies.is_empty() && errors.is_empty() {
            errors.push(ConfigError::whole_file(
                &root.join("policies"),
                "no policies configured; add a file such as policies/delivery_delay.toml with at least one [[steps]]",
            ));
        }

        match (errors.is_empty(), settings) {
            (true, Some(settings)) => {
                let channel_rules = channels
                    .iter()
                    .map(|(n, c)| (n.clone(), c.rules.clone()))
                    .collect();
                Ok(Catalog {
                    settings,
                    channels,
                    policies,
                    channel_rules,
                    secret_problems,
                })
            }
            _ => Err(ConfigErrors(errors)),
        }
    }

    /// The state machine's tunables from `[defaults]`.
    pub fn timing(&self) -> Timing {
        Timing {
            in_flight_timeout_ms: self.settings.defaults.in_flight_timeout_ms,
            late_read_window_ms: self.settings.defaults.late_read_window_ms,
            ..Timing::default()
        }
    }

    /// What `cascade check` warns about (and `--strict` refuses): the
    /// secrets `cascade run` would refuse, and settings that work but
    /// defeat their purpose.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self.secret_problems.iter().map(|p| p.to_string()).collect();
        let http = &self.settings.http;
        let tracking: Vec<&str> = self
            .channels
            .values()
            .filter(|c| {
                c.settings
                    .as_email()
                    .and_then(|e| e.file.tracking_secret.as_deref())
                    .is_some_and(|s| !s.is_empty())
            })
            .map(|c| c.name.as_str())
            .collect();
        if !tracking.is_empty() && !public_url_reachable(&http.public_url) {
            out.push(format!(
                "http.public_url `{}` is plain http or a loopback address, but email tracking is on ({}): customers' mail clients cannot reach the pixel and links over the internet, and plain http exposes them; set an https address that reaches this daemon",
                http.public_url,
                tracking.join(", ")
            ));
        }
        let in_flight = self.settings.defaults.in_flight_timeout_ms;
        for c in self.channels.values().filter(|c| c.timeout_ms > in_flight) {
            out.push(format!(
                "channels/{}.toml: timeout {} is longer than defaults.in_flight_timeout {}: a send still waiting for its provider would be counted as interrupted",
                c.name,
                fmt_ms(c.timeout_ms),
                fmt_ms(in_flight)
            ));
        }
        let lease = self.settings.defaults.claim_lease_ms;
        if let Some(c) = self.channels.values().max_by_key(|c| c.timeout_ms)
            && lease < c.timeout_ms + 5_000
        {
            out.push(format!(
                "defaults.claim_lease {} is shorter than the longest channel timeout ({} on {}) + 5s: that channel's escalations store their in-flight state before each send (a Redis call more); make the lease at least {}",
                fmt_ms(lease),
                fmt_ms(c.timeout_ms),
                c.name,
                fmt_ms(c.timeout_ms + 5_000)
            ));
        }
        out
    }

    /// One line per policy for `cascade check`.
    pub fn summary(&self) -> Vec<String> {
        self.policies
            .values()
            .map(|p| {
                let steps: Vec<String> = p
                    .steps
                    .iter()
                    .map(|s| {
                        let chans = s.channels.join("|");
                        match s.wait_ms {
                            Some(w) => format!("{chans} (wait {})", fmt_ms(w)),
                            None => chans,
                        }
                    })
                    .collect();
                let mut line = format!(
                    "{}: {}; stop on {}",
                    p.name,
                    steps.join(" → "),
                    p.stop_on.join(", ")
                );
                if let Some(x) = p.expire_after_ms {
                    line.push_str(&format!("; expires after {}", fmt_ms(x)));
                }
                line
            })
            .collect()
    }
}

/// Whether customers on the internet can reach `url` safely: https, and
/// not a loopback host.
fn public_url_reachable(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    !host.is_empty() && !loopback
}

/// `5_400_000` → `1h 30m`, in the units policy files use.
pub fn fmt_ms(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    if secs == 0 {
        return "0s".into();
    }
    let parts = [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3600, "h"),
        (secs % 3600 / 60, "m"),
        (secs % 60, "s"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Channel names and kinds that exist, for validating references.
struct KnownChannels {
    names: BTreeSet<String>,
}

impl KnownChannels {
    fn new(channels: &BTreeMap<String, ChannelConfig>) -> Self {
        KnownChannels {
            names: channels.keys().cloned().collect(),
        }
    }

    fn list(&self) -> String {
        if self.names.is_empty() {
            "none (add files to channels/)".into()
        } else {
            self.names.iter().cloned().collect::<Vec<_>>().join(", ")
        }
    }

    /// Keys of `[limits.per_channel]` and `[quiet_hours]` may name a channel or a kind.
    fn names_channel_or_kind(&self, key: &str) -> bool {
        self.names.contains(key) || ChannelKind::parse(key).is_some()
    }
}

/// One file being validated, collecting errors.
struct FileCheck<'a> {
    file: &'a Path,
    src: &'a str,
    errors: &'a mut Vec<ConfigError>,
    env: Env<'a>,
    /// Secrets in use that fail `secrets::judge`.
    secrets: &'a mut Vec<SecretProblem>,
}

impl FileCheck<'_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors
            .push(ConfigError::at(self.file, self.src, span.start, message));
    }

    fn err_file(&mut self, message: impl Into<String>) {
        self.errors
            .push(ConfigError::whole_file(self.file, message));
    }

    /// A string value with `${ENV}` references replaced.
    fn text(&mut self, v: &Spanned<String>) -> Option<String> {
        match interpolate(v.get_ref(), self.env) {
            Ok(s) => Some(s),
            Err((offset, msg)) => {
                // +1: the span starts at the opening quote.
                self.err(v.span().start + 1 + offset..v.span().end, msg);
                None
            }
        }
    }

    fn parsed<T>(
        &mut self,
        v: &Spanned<String>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let s = self.text(v)?;
        match parse(&s) {
            Ok(t) => Some(t),
            Err(msg) => {
                self.err(v.span(), msg);
                None
            }
        }
    }

    fn duration_ms(&mut self, v: &Spanned<String>) -> Option<i64> {
        self.parsed(v, |s| parse_duration(s).map(duration_ms))
    }

    fn rate(&mut self, v: &Spanned<String>) -> Option<Rate> {
        self.parsed(v, parse_rate)
    }

    fn choice<T: Copy>(
        &mut self,
        v: &Spanned<String>,
        what: &str,
        options: &[(&str, T)],
    ) -> Option<T> {
        let found = options
            .iter()
            .find(|(k, _)| *k == v.get_ref())
            .map(|(_, t)| *t);
        if found.is_none() {
            let names: Vec<String> = options.iter().map(|(k, _)| format!("\"{k}\"")).collect();
            self.err(
                v.span(),
                format!(
                    "`{}` is not a {what}; use one of {}",
                    v.get_ref(),
                    names.join(", ")
                ),
            );
        }
        found
    }

    fn positive(&mut self, v: &Spanned<i64>, what: &str, max: i64) -> Option<i64> {
        let n = *v.get_ref();
        if n < 1 || n > max {
            self.err(
                v.span(),
                format!("{what} must be between 1 and {max}, not {n}"),
            );
            return None;
        }
        Some(n)
    }
}

fn read(path: &Path, errors: &mut Vec<ConfigError>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) => {
            errors.push(ConfigError::whole_file(
                path,
                format!("cannot read the file: {e}"),
            ));
            None
        }
    }
}

fn parse_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    src: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    match toml::from_str::<T>(src) {
        Ok(v) => Some(v),
        Err(e) => {
            let offset = e.span().map_or(0, |s| s.start);
            let msg = e.message().trim().replace('\n', " ");
            errors.push(ConfigError::at(path, src, offset, plain_toml_message(&msg)));
            None
        }
    }
}

/// serde's wording names Rust types; say it in the file's terms.
pub(super) fn plain_toml_message(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        return format!("unknown key {rest}");
    }
    if let Some(rest) = msg.strip_prefix("missing field ") {
        return format!("missing key {rest}");
    }
    msg.replace("invalid type: ", "wrong type: ")
}

/// `(name, path)` of every `*.toml` in `dir`, sorted by name.
fn toml_files(dir: &Path, errors: &mut Vec<ConfigError>) -> Vec<(String, PathBuf)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(ConfigError::whole_file(
                dir,
                format!("cannot read the folder: {e}"),
            ));
            return Vec::new();
        }
    };
    let mut files: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter_map(|p| Some((p.file_stem()?.to_str()?.to_owned(), p)))
        .collect();
    files.sort();
    files.retain(|(name, path)| {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            errors.push(ConfigError::whole_file(
                path,
                "file names become channel and policy names: use letters, digits, `_` and `-` only",
            ));
        }
        ok
    });
    files
}

fn build_settings(raw: &RawSettings, check: &mut FileCheck) -> Option<Settings> {
    let before = check.errors.len();
    let env = check.env;
    // A setting: the CASCADE_… variable if set, else the file's value, else the default.
    let mut text = |var: &str, v: &Option<Spanned<String>>, default: &str| -> Option<String> {
        if let Some(val) = env(var) {
            return Some(val);
        }
        match v {
            Some(v) => check.text(v),
            None => Some(default.to_owned()),
        }
    };
    let amqp_url = text(
        "CASCADE_AMQP_URL",
        &raw.amqp.url,
        "amqp://guest:guest@127.0.0.1:5672/%2f",
    );
    let queue = text(
        "CASCADE_AMQP_QUEUE",
        &raw.amqp.queue,
        "cascade.notifications",
    );
    let dead = text(
        "CASCADE_AMQP_DEAD_LETTER_QUEUE",
        &raw.amqp.dead_letter_queue,
        "cascade.dead",
    );
    let redis_url = text(
        "CASCADE_REDIS_URL",
        &raw.redis.url,
        "redis://127.0.0.1:6379",
    );
    let prefix = text("CASCADE_REDIS_PREFIX", &raw.redis.prefix, "cascade");
    let retention = text("CASCADE_REDIS_RETENTION", &raw.redis.retention, "7d");
    let listen = text("CASCADE_HTTP_LISTEN", &raw.http.listen, "127.0.0.1:8080");
    let public_url = text(
        "CASCADE_HTTP_PUBLIC_URL",
        &raw.http.public_url,
        "http://127.0.0.1:8080",
    );
    let tz_name = text(
        "CASCADE_DEFAULTS_TIMEZONE",
        &raw.defaults.timezone,
        "Europe/Moscow",
    );
    let admin_listen = text(
        "CASCADE_HTTP_ADMIN_LISTEN",
        &raw.http.admin_listen,
        "127.0.0.1:9090",
    );
    let receipt_tokens = secrets::receipt_tokens(&raw.http, check);

    let mut int = |var: &str,
                   v: &Option<Spanned<i64>>,
                   what: &str,
                   default: i64,
                   max: i64|
     -> Option<i64> {
        if let Some(val) = env(var) {
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
    };
    let prefetch = int(
        "CASCADE_AMQP_PREFETCH",
        &raw.amqp.prefetch,
        "amqp.prefetch",
        256,
        65_535,
    );
    let max_body = int(
        "CASCADE_AMQP_MAX_BODY_BYTES",
        &raw.amqp.max_body_bytes,
        "amqp.max_body_bytes",
        256 * 1024,
        64 << 20,
    );
    let max_deliveries = int(
        "CASCADE_AMQP_MAX_DELIVERIES",
        &raw.amqp.max_deliveries,
        "amqp.max_deliveries",
        5,
        1_000,
    );
    let shards = int(
        "CASCADE_REDIS_TIMER_SHARDS",
        &raw.redis.timer_shards,
        "redis.timer_shards",
        16,
        1024,
    );
    let max_connections = int(
        "CASCADE_HTTP_MAX_CONNECTIONS",
        &raw.http.max_connections,
        "http.max_connections",
        1024,
        65_535,
    );

    let retention_ms = retention.and_then(|r| match parse_duration(&r) {
        Ok(d) => Some(duration_ms(d)),
        Err(msg) => {
            match &raw.redis.retention {
                Some(v) if env("CASCADE_REDIS_RETENTION").is_none() => check.err(v.span(), msg),
                _ => check.err_file(format!("redis.retention: {msg}")),
            }
            None
        }
    });
    let timezone = tz_name
        .as_ref()
        .and_then(|name| match parse_timezone(name) {
            Ok(tz) => Some(tz),
            Err(msg) => {
                match &raw.defaults.timezone {
                    Some(v) if env("CASCADE_DEFAULTS_TIMEZONE").is_none() => {
                        check.err(v.span(), msg)
                    }
                    _ => check.err_file(format!("defaults.timezone: {msg}")),
                }
                None
            }
        });
    let timing = Timing::default();
    let header_read_timeout = match &raw.http.header_read_timeout {
        Some(v) => check.duration_ms(v),
        None => Some(10_000),
    };
    let request_timeout = match &raw.http.request_timeout {
        Some(v) => check.duration_ms(v),
        None => Some(30_000),
    };
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
    let late_read = match &raw.defaults.late_read_window {
        Some(v) => check.duration_ms(v),
        None => Some(timing.late_read_window_ms),
    };
    let claim_lease = match &raw.defaults.claim_lease {
        Some(v) => check.duration_ms(v),
        None => Some(DEFAULT_CLAIM_LEASE_MS),
    };
    let in_flight = match &raw.defaults.in_flight_timeout {
        Some(v) => check.duration_ms(v),
        None => Some(timing.in_flight_timeout_ms),
    };
    if check.errors.len() > before {
        return None;
    }
    Some(Settings {
        amqp: settings::Amqp {
            url: amqp_url?,
            queue: queue?,
            dead_letter_queue: dead?,
            prefetch: prefetch? as u16,
            max_body_bytes: max_body? as usize,
            max_deliveries: max_deliveries? as u32,
        },
        redis: settings::Redis {
            url: redis_url?,
            prefix: prefix?,
            retention_ms: retention_ms?,
            timer_shards: shards? as u16,
        },
        http: settings::Http {
            listen: listen?,
            admin_listen: admin_listen?,
            receipt_tokens,
            public_url: public_url?,
            header_read_timeout_ms: header_read_timeout?.max(1),
            request_timeout_ms: request_timeout?.max(1),
            max_connections: max_connections? as usize,
        },
        defaults: settings::Defaults {
            timezone: timezone?,
            timezone_name: tz_name?,
            late_read_window_ms: late_read?,
            in_flight_timeout_ms: in_flight?,
            claim_lease_ms: claim_lease?.max(1_000),
            send_at_horizon_ms: send_at_horizon?,
        },
    })
}

fn build_limits(raw: &RawLimits, known: &KnownChannels, check: &mut FileCheck) -> Limits {
    let per_customer = raw.per_customer.as_ref().and_then(|v| check.rate(v));
    let mut per_channel = BTreeMap::new();
    for (key, v) in &raw.per_channel {
        if !known.names_channel_or_kind(key) {
            check.err(
                v.span(),
                format!(
                    "`{key}` in [limits] per_channel is not a channel; channels: {}",
                    known.list()
                ),
            );
            continue;
        }
        if let Some(rate) = check.rate(v) {
            per_channel.insert(key.clone(), rate);
        }
    }
    Limits {
        per_customer,
        per_channel,
    }
}

/// `[quiet_hours]`: channel (or kind) → range, or `"off"` to lift a global range.
fn build_quiet_hours(
    raw: &BTreeMap<String, Spanned<String>>,
    known: &KnownChannels,
    check: &mut FileCheck,
) -> BTreeMap<String, Option<QuietHours>> {
    let mut out = BTreeMap::new();
    for (key, v) in raw {
        if !known.names_channel_or_kind(key) {
            check.err(
                v.span(),
                format!(
                    "`{key}` in [quiet_hours] is not a channel; channels: {}",
                    known.list()
                ),
            );
            continue;
        }
        if v.get_ref().trim() == "off" {
            out.insert(key.clone(), None);
        } else if let Some(q) = check.parsed(v, |s| QuietHours::parse(s).map_err(|e| e.0)) {
            out.insert(key.clone(), Some(q));
        }
    }
    out
}

fn load_channel(name: &str, check: &mut FileCheck) -> Option<ChannelConfig> {
    let raw: RawChannel = parse_toml(check.file, check.src, check.errors)?;
    let before = check.errors.len();
    let kinds: Vec<&str> = ChannelKind::ALL.iter().map(|k| k.as_str()).collect();
    let kind = ChannelKind::parse(raw.kind.get_ref());
    let Some(kind) = kind else {
        check.err(
            raw.kind.span(),
            format!(
                "`{}` is not a channel kind; use one of {}",
                raw.kind.get_ref(),
                kinds.join(", ")
            ),
        );
        return None;
    };

    // Provider keys, read into the kind's settings type.
    let provider = provider_keys::read(kind, check);
    let contact_key = match &raw.contact {
        Some(v) => check.text(v).filter(|s| !s.is_empty() && s != "none"),
        None => kind.default_contact_key().map(str::to_owned),
    };
    let cost_per_segment = match &raw.cost_per {
        Some(v) => check
            .choice(v, "cost unit", &[("message", false), ("segment", true)])
            .unwrap_or(false),
        None => false,
    };
    let cost = raw.cost.as_ref().and_then(|v| {
        let c = *v.get_ref();
        if c.is_finite() && c >= 0.0 {
            Some(c)
        } else {
            check.err(v.span(), "cost must be a price of zero or more, e.g. 4.20");
            None
        }
    });
    let timeout_ms = match &raw.timeout {
        Some(v) => check.duration_ms(v).unwrap_or(10_000),
        None => 10_000,
    };
    let rate = raw.rate.as_ref().and_then(|v| check.rate(v));
    let mut retry = RetryPolicy::default();
    if let Some(r) = &raw.retry {
        if let Some(a) = &r.attempts {
            retry.attempts = check.positive(a, "retry.attempts", 50).unwrap_or(1) as u8;
        }
        if let Some(b) = &r.backoff {
            retry.backoff_ms = check.duration_ms(b).unwrap_or(retry.backoff_ms);
        }
        if let Some(m) = &r.max_backoff {
            retry.max_backoff_ms = check.duration_ms(m).unwrap_or(retry.max_backoff_ms);
        }
    }
    let on_uncertain = match &raw.on_uncertain {
        Some(v) => check
            .choice(
                v,
                "choice for an uncertain send",
                &[("skip", OnUncertain::Skip), ("resend", OnUncertain::Resend)],
            )
            .unwrap_or_default(),
        None if provider
            .as_ref()
            .is_some_and(|(s, _)| dedupes_by_default(s)) =>
        {
            OnUncertain::Resend
        }
        None => OnUncertain::Skip,
    };
    let max_length = match &raw.max_length {
        Some(v) => check.positive(v, "max_length", 1 << 20).map(|n| n as usize),
        None => default_max_length(kind),
    };
    let max_segments = match &raw.max_segments {
        Some(v) if kind == ChannelKind::Sms => {
            check.positive(v, "max_segments", 255).map(|n| n as u32)
        }
        Some(v) => {
            check.err(v.span(), "max_segments applies to sms channels only");
            None
        }
        None => None,
    };
    let (settings, sources) = provider?;
    if check.errors.len() > before {
        return None;
    }
    let channel = ChannelConfig {
        name: name.to_owned(),
        kind,
        description: raw.description.clone().unwrap_or_default(),
        rules: ChannelRules {
            kind,
            contact_key,
            retry,
            on_uncertain,
        },
        cost,
        cost_per_segment,
        timeout_ms,
        rate,
        max_length,
        max_segments,
        settings,
    };
    secrets::judge_channel(&channel, sources, check);
    Some(channel)
}

fn build_policy(
    name: &str,
    raw: RawPolicy,
    known: &KnownChannels,
    global_limits: &Limits,
    global_quiet: &BTreeMap<String, Option<QuietHours>>,
    check: &mut FileCheck,
) -> Option<Policy> {
    let before = check.errors.len();
    let clocks = [("wall", WaitClock::Wall), ("awake", WaitClock::Awake)];
    let on_limits = [("defer", OnLimit::Defer), ("next", OnLimit::Next)];
    let default_clock = raw
        .wait_clock
        .as_ref()
        .and_then(|v| check.choice(v, "wait clock", &clocks))
        .unwrap_or_default();
    let default_on_limit = raw
        .on_limit
        .as_ref()
        .and_then(|v| check.choice(v, "limit behaviour", &on_limits))
        .unwrap_or_default();
    let stop_on: Vec<String> = match &raw.stop_on {
        Some(list) => {
            if list.get_ref().is_empty() {
                check.err(list.span(), "stop_on is empty, so nothing would ever end the cascade early; name at least one receipt, e.g. [\"read\"]");
            }
            list.get_ref()
                .iter()
                .map(|s| s.get_ref().trim().to_owned())
                .collect()
        }
        None => DEFAULT_STOP_ON.iter().map(|s| s.to_string()).collect(),
    };
    let expire_after_ms = raw.expire_after.as_ref().and_then(|v| check.duration_ms(v));

    let raw_steps: Vec<Spanned<RawStep>> = match raw.steps {
        Some(s) if !s.get_ref().is_empty() => s.into_inner(),
        Some(s) => {
            check.err(
                s.span(),
                "steps is empty; add at least one [[steps]] table with a channel",
            );
            Vec::new()
        }
        None => {
            check.err_file("the policy has no steps; add at least one [[steps]] table, e.g. [[steps]] channel = \"vk\" wait = \"30m\"");
            Vec::new()
        }
    };
    if raw_steps.len() > 32 {
        check.err_file("a policy may have at most 32 steps");
    }
    let count = raw_steps.len();
    let mut steps = Vec::with_capacity(count);
    for (i, spanned) in raw_steps.into_iter().enumerate() {
        let span = spanned.span();
        let s = spanned.into_inner();
        let Some(channel) = s.channel else {
            check.err(
                span,
                format!(
                    "step {} has no channel; add `channel = \"…\"` naming one of: {}",
                    i + 1,
                    known.list()
                ),
            );
            continue;
        };
        let ch_span = channel.span();
        let channels = channel.into_inner().into_vec();
        if channels.is_empty() {
            check.err(
                ch_span.clone(),
                format!(
                    "step {} lists no channel; name at least one of: {}",
                    i + 1,
                    known.list()
                ),
            );
        }
        for ch in &channels {
            if !known.names.contains(ch) {
                check.err(
                    ch_span.clone(),
                    format!(
                        "unknown channel `{ch}`; channels configured: {}",
                        known.list()
                    ),
                );
            }
        }
        let wait_ms = match &s.wait {
            Some(w) => check.duration_ms(w),
            None if i + 1 < count => {
                check.err(span, format!(
                    "step {} has no `wait`; say how long to wait for a stopping receipt before step {}, e.g. wait = \"30m\"",
                    i + 1,
                    i + 2
                ));
                None
            }
            None => None,
        };
        let wait_clock = s
            .wait_clock
            .as_ref()
            .and_then(|v| check.choice(v, "wait clock", &clocks))
            .unwrap_or(default_clock);
        let on_limit = s
            .on_limit
            .as_ref()
            .and_then(|v| check.choice(v, "limit behaviour", &on_limits))
            .unwrap_or(default_on_limit);
        steps.push(Step {
            channels,
            wait_ms,
            wait_clock,
            on_limit,
        });
    }

    // Overrides merge over the global [limits] and [quiet_hours].
    let own = raw
        .limits
        .as_ref()
        .map(|l| build_limits(l, known, check))
        .unwrap_or_default();
    let mut limits = global_limits.clone();
    if own.per_customer.is_some() {
        limits.per_customer = own.per_customer;
    }
    limits.per_channel.extend(own.per_channel);
    let mut quiet = global_quiet.clone();
    if let Some(q) = &raw.quiet_hours {
        quiet.extend(build_quiet_hours(q, known, check));
    }
    // `<channel> = "off"` lifts a range set for the channel's kind too.
    let quiet_off = quiet
        .iter()
        .filter(|(k, v)| v.is_none() && known.names.contains(*k))
        .map(|(k, _)| k.clone())
        .collect();
    let quiet_hours = quiet
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();

    if check.errors.len() > before {
        return None;
    }
    Some(Policy {
        name: name.to_owned(),
        description: raw.description.unwrap_or_default(),
        stop_on,
        expire_after_ms,
        steps,
        limits,
        quiet_hours,
        quiet_off,
    })
}
