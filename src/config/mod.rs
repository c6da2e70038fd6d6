//! Configuration: `cascade.toml`, every `channels/*.toml` and every
//! `policies/*.toml`, loaded into typed, validated values. Loading collects
//! every problem it finds, each with file, line, column and a sentence that
//! says what would be right, so one `cascade check` shows them all.

mod channel;
mod check;
mod error;
mod policy;
mod provider_keys;
mod replies;
pub mod secrets;
mod settings;
mod values;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub use crate::channels::ChannelConfig;
pub use error::{ConfigError, ConfigErrors, Severity, line_col};
pub use replies::{BusinessHours, Replies};
pub use secrets::SecretProblem;
pub use settings::{
    Amqp, DEFAULT_ADMIN_LISTEN, Defaults, ENV_OVERRIDES, Http, LogFormat, QueueType, ReceiptToken,
    Redis, ReportSettings, Settings, admin_listen_alone,
};
pub use values::{duration_ms, interpolate, parse_duration, parse_rate, parse_timezone};

use crate::core::{ChannelRules, Policy, Timing};
use channel::load_channel;
use check::{FileCheck, KnownChannels, parse_toml, plain_toml_message, read, toml_files};
use policy::{PolicyBase, RawPolicy, build_limits, build_policy, build_quiet_hours};
use settings::{RawSettings, build_settings};

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
    /// What works but is likely a mistake, each at its place in its file
    /// (a `stop_on` word nothing sends): `check` warns.
    pub file_warnings: Vec<ConfigError>,
    /// The `cascade.toml` read; `channels/` and `policies/` are beside it.
    pub config_path: PathBuf,
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
        let mut found = Findings::default();

        let settings_src = read(config_path, &mut found.errors);
        let raw_settings: RawSettings = settings_src
            .as_deref()
            .and_then(|src| parse_toml(config_path, src, &mut found.errors))
            .unwrap_or_default();

        let channels = load_channels(&root, env, &mut found);
        let known = KnownChannels::new(&channels);

        let src = settings_src.unwrap_or_default();
        let mut check = found.check(config_path, &src, env);
        let settings = build_settings(&raw_settings, &mut check);
        let base = PolicyBase {
            known: &known,
            limits: build_limits(&raw_settings.limits, &known, &mut check),
            quiet: build_quiet_hours(&raw_settings.quiet_hours, &known, &mut check),
            custom_receipts: raw_settings.receipts.custom_words(),
            replies_sink: raw_settings.replies.sink.is_some()
                || env("CASCADE_REPLIES_SINK").is_some_and(|s| !s.trim().is_empty()),
        };
        let policies = load_policies(&root, env, &base, &mut found);

        if let Some(settings) = &settings {
            check_staff_channels(
                config_path,
                &settings.replies,
                &channels,
                &policies,
                &mut found,
            );
        }
        match (found.errors.is_empty(), settings) {
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
                    secret_problems: found.secret_problems,
                    file_warnings: found.warnings,
                    config_path: config_path.to_owned(),
                })
            }
            _ => Err(ConfigErrors(found.errors)),
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
    /// Each names the file it is about (`cascade.toml` for settings).
    pub fn warnings(&self) -> Vec<ConfigError> {
        let mut out: Vec<ConfigError> = self
            .secret_problems
            .iter()
            .map(SecretProblem::as_config_error)
            .collect();
        out.extend(self.file_warnings.iter().cloned());
        let settings_file = |message: String| ConfigError::whole_file(&self.config_path, message);
        let channel_file = |name: &str, message: String| {
            let root = self.config_path.parent().unwrap_or(Path::new(""));
            ConfigError::whole_file(&root.join("channels").join(format!("{name}.toml")), message)
        };
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
            out.push(settings_file(format!(
                "http.public_url `{}` is plain http or a loopback address, but email tracking is on ({}): customers' mail clients cannot reach the pixel and links over the internet, and plain http exposes them; set an https address that reaches this daemon",
                http.public_url,
                tracking.join(", ")
            )));
        }
        let in_flight = self.settings.defaults.in_flight_timeout_ms;
        for c in self.channels.values().filter(|c| c.timeout_ms > in_flight) {
            out.push(channel_file(&c.name, format!(
                "timeout {} is longer than defaults.in_flight_timeout {}: a send still waiting for its provider would be counted as interrupted",
                fmt_ms(c.timeout_ms),
                fmt_ms(in_flight)
            )));
        }
        let lease = self.settings.defaults.claim_lease_ms;
        if let Some(c) = self.channels.values().max_by_key(|c| c.timeout_ms)
            && lease < c.timeout_ms + 5_000
        {
            out.push(settings_file(format!(
                "defaults.claim_lease {} is shorter than the longest channel timeout ({} on {}) + 5s: that channel's escalations store their in-flight state before each send (a Redis call more); make the lease at least {}",
                fmt_ms(lease),
                fmt_ms(c.timeout_ms),
                c.name,
                fmt_ms(c.timeout_ms + 5_000)
            )));
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

/// The problems found so far while loading; every file adds to them.
#[derive(Default)]
struct Findings {
    errors: Vec<ConfigError>,
    /// Secrets in use that fail `secrets::judge`.
    secret_problems: Vec<SecretProblem>,
    /// What `check` warns about, at its place.
    warnings: Vec<ConfigError>,
}

impl Findings {
    /// Checks one file, reporting here.
    fn check<'a>(&'a mut self, file: &'a Path, src: &'a str, env: Env<'a>) -> FileCheck<'a> {
        FileCheck {
            file,
            src,
            errors: &mut self.errors,
            env,
            secrets: &mut self.secret_problems,
            warnings: &mut self.warnings,
        }
    }
}

/// Every `channels/*.toml`, by name; at least one is needed.
fn load_channels(root: &Path, env: Env, found: &mut Findings) -> BTreeMap<String, ChannelConfig> {
    let mut channels = BTreeMap::new();
    for (name, path) in toml_files(&root.join("channels"), &mut found.errors) {
        let Some(src) = read(&path, &mut found.errors) else {
            continue;
        };
        if let Some(ch) = load_channel(&name, &mut found.check(&path, &src, env)) {
            channels.insert(name, ch);
        }
    }
    if channels.is_empty() && found.errors.is_empty() {
        found.errors.push(ConfigError::whole_file(
            &root.join("channels"),
            "no channels configured; add a file such as channels/sms.toml with `kind = \"sms\"`",
        ));
    }
    channels
}

/// Every `policies/*.toml`, by name; at least one is needed.
fn load_policies(
    root: &Path,
    env: Env,
    base: &PolicyBase,
    found: &mut Findings,
) -> BTreeMap<String, Policy> {
    let mut policies = BTreeMap::new();
    for (name, path) in toml_files(&root.join("policies"), &mut found.errors) {
        let Some(src) = read(&path, &mut found.errors) else {
            continue;
        };
        let mut check = found.check(&path, &src, env);
        let Some(raw) = parse_toml::<RawPolicy>(&path, &src, check.errors) else {
            continue;
        };
        if let Some(p) = build_policy(&name, raw, base, &mut check) {
            policies.insert(name, p);
        }
    }
    if policies.is_empty() && found.errors.is_empty() {
        found.errors.push(ConfigError::whole_file(
            &root.join("policies"),
            "no policies configured; add a file such as policies/delivery_delay.toml with at least one [[steps]]",
        ));
    }
    policies
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

/// The staff channels — `[replies] sink` and every policy's
/// `answer_escalation` — must exist and reach staff: a channel that needs
/// an address finds it in `[replies] staff` under its contact key.
fn check_staff_channels(
    config_path: &Path,
    replies: &Replies,
    channels: &BTreeMap<String, ChannelConfig>,
    policies: &BTreeMap<String, crate::core::Policy>,
    found: &mut Findings,
) {
    let escalations = policies.values().filter_map(|p| {
        let a = p.answer.as_ref()?;
        Some(
            a.escalation
                .iter()
                .map(move |s| (s.channel.as_str(), p.name.as_str())),
        )
    });
    let sink = replies.sink.as_deref().map(|s| (s, "[replies] sink"));
    let mut seen = BTreeSet::new();
    for (channel, used_by) in sink.into_iter().chain(escalations.flatten()) {
        if !seen.insert(channel) {
            continue;
        }
        let Some(config) = channels.get(channel) else {
            found.errors.push(ConfigError::whole_file(
                config_path,
                format!("{used_by} names channel `{channel}`, which has no file in channels/"),
            ));
            continue;
        };
        if let Some(key) = &config.rules.contact_key
            && !replies.staff.contains_key(key)
        {
            found.errors.push(ConfigError::whole_file(
                config_path,
                format!(
                    "staff channel `{channel}` ({used_by}) sends to the contact `{key}`, which [replies] staff does not give; add e.g. [replies] staff = {{ {key} = \"…\" }}"
                ),
            ));
        }
    }
}
