//! Reading the files and checking one of them: every problem is collected
//! with its file, line and column, so one run reports them all.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::{
    ChannelConfig, ConfigError, Env, SecretProblem, duration_ms, interpolate, parse_duration,
    parse_rate,
};
use crate::core::{ChannelKind, Rate};

/// Channel names and kinds that exist, for validating references.
pub(super) struct KnownChannels {
    pub(super) names: BTreeSet<String>,
    /// Webhook channels that send `"contact": null` without saying so
    /// (no `contact`, and not `contact = "none"`).
    pub(super) webhooks_without_contact: BTreeSet<String>,
}

impl KnownChannels {
    pub(super) fn new(channels: &BTreeMap<String, ChannelConfig>) -> Self {
        KnownChannels {
            names: channels.keys().cloned().collect(),
            webhooks_without_contact: channels
                .values()
                .filter(|c| {
                    c.kind == ChannelKind::Webhook
                        && c.rules.contact_key.is_none()
                        && !c.no_contact_meant
                })
                .map(|c| c.name.clone())
                .collect(),
        }
    }

    /// Why a step on `channel` likely misses the customer's address: a
    /// webhook that sends no contact, named like a call or a task for
    /// people (`call_centre`, `callback`, `phone_task`), whose receiver
    /// needs a way to reach the customer.
    pub(super) fn missing_contact(&self, channel: &str) -> Option<String> {
        const PEOPLE: [&str; 4] = ["call", "task", "callback", "phone"];
        let lower = channel.to_lowercase();
        if !self.webhooks_without_contact.contains(channel)
            || !PEOPLE.iter().any(|w| lower.contains(w))
        {
            return None;
        }
        Some(format!(
            "channel `{channel}` is a webhook with no `contact`, so its tasks carry \"contact\": null and whoever takes them has no way to reach the customer; set `contact = \"sms\"` (the customer's phone) in channels/{channel}.toml, or `contact = \"none\"` if the receiver looks the customer up itself"
        ))
    }

    pub(super) fn list(&self) -> String {
        if self.names.is_empty() {
            "none (add files to channels/)".into()
        } else {
            self.names.iter().cloned().collect::<Vec<_>>().join(", ")
        }
    }

    /// Keys of `[limits.per_channel]` and `[quiet_hours]` may name a channel or a kind.
    pub(super) fn names_channel_or_kind(&self, key: &str) -> bool {
        self.names.contains(key) || ChannelKind::parse(key).is_some()
    }
}

/// One file being validated, collecting errors.
pub(super) struct FileCheck<'a> {
    pub(super) file: &'a Path,
    pub(super) src: &'a str,
    pub(super) errors: &'a mut Vec<ConfigError>,
    pub(super) env: Env<'a>,
    /// Secrets in use that fail `secrets::judge`.
    pub(super) secrets: &'a mut Vec<SecretProblem>,
    /// What works but is likely a mistake: `check` warns, loading goes on.
    pub(super) warnings: &'a mut Vec<ConfigError>,
}

impl FileCheck<'_> {
    pub(super) fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors
            .push(ConfigError::at(self.file, self.src, span.start, message));
    }

    pub(super) fn warn(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.warnings
            .push(ConfigError::at(self.file, self.src, span.start, message));
    }

    pub(super) fn err_file(&mut self, message: impl Into<String>) {
        self.errors
            .push(ConfigError::whole_file(self.file, message));
    }

    /// A string value with `${ENV}` references replaced.
    pub(super) fn text(&mut self, v: &Spanned<String>) -> Option<String> {
        match interpolate(v.get_ref(), self.env) {
            Ok(s) => Some(s),
            Err((offset, msg)) => {
                // +1: the span starts at the opening quote.
                self.err(v.span().start + 1 + offset..v.span().end, msg);
                None
            }
        }
    }

    pub(super) fn parsed<T>(
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

    pub(super) fn duration_ms(&mut self, v: &Spanned<String>) -> Option<i64> {
        self.parsed(v, |s| parse_duration(s).map(duration_ms))
    }

    pub(super) fn rate(&mut self, v: &Spanned<String>) -> Option<Rate> {
        self.parsed(v, parse_rate)
    }

    pub(super) fn choice<T: Copy>(
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

    pub(super) fn positive(&mut self, v: &Spanned<i64>, what: &str, max: i64) -> Option<i64> {
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

pub(super) fn read(path: &Path, errors: &mut Vec<ConfigError>) -> Option<String> {
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

pub(super) fn parse_toml<T: serde::de::DeserializeOwned>(
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
pub(super) fn toml_files(dir: &Path, errors: &mut Vec<ConfigError>) -> Vec<(String, PathBuf)> {
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
