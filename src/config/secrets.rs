//! Secrets fail closed: the values a daemon must not run on.
//!
//! A secret is either a *guard* — something we check on requests coming in
//! (the receipts API token, provider callback secrets, the tracking key) or
//! sign requests going out with (a webhook's `secret`) — or a *credential*
//! a provider gave us (an access token, an API key, a password). Guards are
//! ours to choose, so they must be long enough not to be guessed (16 bytes
//! or more); a credential's length is the provider's business. Neither may
//! be one of the example values shipped in this repository's files, and
//! neither may be empty where it is in use, except the few keys whose empty
//! value is documented to turn a feature off (`tracking_secret`,
//! `bounce_secret`, an SMTP `password` without a `username`).
//!
//! `cascade run` refuses to start on any problem found here (unless told
//! `--insecure-demo-secrets`); `cascade check` shows them as warnings.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::settings::{RawHttp, ReceiptToken};
use super::{ChannelConfig, ConfigError, FileCheck};
pub use crate::channels::settings::Role;

/// The shortest guard accepted, in bytes.
pub const MIN_GUARD_BYTES: usize = 16;

/// Every secret value shipped in the repository's example files
/// (`cascade.toml`, `channels/*.toml`, `docker-compose.yml`). A unit test
/// reads those files and fails when one of their defaults is missing here.
pub const SHIPPED: &[&str] = &[
    "change-me",
    "demo",
    "demo-access-token",
    "demo-api-id",
    "demo-app-secret",
    "demo-bot-token",
    "demo-helpdesk-secret",
    "demo-call-centre-secret",
    "demo-manager-secret",
    "demo-replies-secret",
    "demo-report-secret",
    "demo-secret",
    "demo-token",
    "demo-tracking-secret",
    "demo-verify-token",
    "demo-webhook-secret",
];

/// Records the problems of the secrets `channel` uses (each adapter lists
/// its kind's secrets: `channels::ChannelSettings::secrets_in_use`);
/// `sources` says where each value came from.
pub(super) fn judge_channel(
    channel: &ChannelConfig,
    mut sources: BTreeMap<String, Source>,
    check: &mut FileCheck,
) {
    for s in channel.settings.secrets_in_use() {
        let source = sources.remove(s.key).unwrap_or(Source::File { var: None });
        if let Some(p) = judge(check.file, s.key, source, s.value, s.role, s.off_when_empty) {
            check.secrets.push(p);
        }
    }
}

/// The receipts API's tokens: the shared one (`receipt_token`, its
/// `_file`, or the `CASCADE_HTTP_RECEIPT_TOKEN[_FILE]` variables) and the
/// named ones of `[http.receipt_tokens]`. Each is judged as a guard; an
/// empty one serves nobody; two callers may not share a token.
pub(super) fn receipt_tokens(raw: &RawHttp, check: &mut FileCheck) -> Vec<ReceiptToken> {
    let mut found: Vec<(String, String, String, Source)> = Vec::new();
    if let Some((token, source)) = shared_receipt_token(raw, check) {
        found.push(("shared".into(), "receipt_token".into(), token, source));
    }
    for (key, v) in &raw.receipt_tokens {
        let (name, token) = match key.strip_suffix("_file") {
            Some(name) => (name, check.secret_file(v)),
            None => (
                key.as_str(),
                check.text(v).map(|t| (t, Source::written(v.get_ref()))),
            ),
        };
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            check.err(
                v.span(),
                format!("`{key}`: a caller's name is letters, digits, `_` and `-`"),
            );
            continue;
        }
        if let Some((token, source)) = token {
            found.push((
                name.to_owned(),
                format!("receipt_tokens.{key}"),
                token,
                source,
            ));
        }
    }
    let mut tokens: Vec<ReceiptToken> = Vec::new();
    for (name, key, token, source) in found {
        if let Some(p) = judge(check.file, &key, source, &token, Role::Guard, false) {
            check.secrets.push(p);
        }
        if token.is_empty() {
            continue;
        }
        // Two callers with one token could not be told apart in the log.
        if let Some(twin) = tokens.iter().find(|t| t.token == token) {
            check.err_file(format!(
                "http: the receipt tokens of `{}` and `{name}` are the same; give each caller its own",
                twin.name
            ));
            continue;
        }
        tokens.push(ReceiptToken { name, token });
    }
    tokens
}

/// The shared receipts token and where it came from: an environment
/// variable wins over the file's `receipt_token` or `receipt_token_file`.
fn shared_receipt_token(raw: &RawHttp, check: &mut FileCheck) -> Option<(String, Source)> {
    const VAR: &str = "CASCADE_HTTP_RECEIPT_TOKEN";
    const FILE_VAR: &str = "CASCADE_HTTP_RECEIPT_TOKEN_FILE";
    if let Some(v) = (check.env)(VAR) {
        return Some((v, Source::Env(VAR.into())));
    }
    if let Some(path) = (check.env)(FILE_VAR) {
        return match read_secret_file(Path::new(&path)) {
            Ok(token) => Some((token, Source::SecretFile(PathBuf::from(path)))),
            Err(msg) => {
                check.err_file(format!("{FILE_VAR}: {msg}"));
                None
            }
        };
    }
    match (&raw.receipt_token, &raw.receipt_token_file) {
        (Some(_), Some(f)) => {
            check.err(
                f.span(),
                "set `receipt_token` or `receipt_token_file`, not both",
            );
            None
        }
        (Some(v), None) => check.text(v).map(|t| (t, Source::written(v.get_ref()))),
        (None, Some(f)) => check.secret_file(f),
        (None, None) => None,
    }
}

impl FileCheck<'_> {
    /// A secret read from the file a `*_file` setting names (its path may
    /// use `${VAR}`), with its source; a file that cannot be read is an
    /// error at the setting.
    pub(super) fn secret_file(&mut self, path: &Spanned<String>) -> Option<(String, Source)> {
        let resolved = self.text(path)?;
        match read_secret_file(Path::new(&resolved)) {
            Ok(secret) => Some((secret, Source::SecretFile(PathBuf::from(resolved)))),
            Err(msg) => {
                self.err(path.span(), msg);
                None
            }
        }
    }
}

/// Where a secret's value came from, to name it in a refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Written in the file, possibly through `${VAR}` references (the first named).
    File { var: Option<String> },
    /// Read from a `*_file` (Docker/Kubernetes secrets).
    SecretFile(PathBuf),
    /// An environment variable that overrides the file (`CASCADE_…`).
    Env(String),
}

impl Source {
    /// The source of a value written as `raw` in a file.
    pub fn written(raw: &str) -> Source {
        Source::File {
            var: first_variable(raw),
        }
    }
}

/// What is wrong with a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    Empty,
    Short { bytes: usize },
    Shipped,
}

/// One secret a daemon must not run on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretProblem {
    pub file: PathBuf,
    /// As written in the file: `receipt_token`, `callback_secret`, `receipt_tokens.crm`.
    pub key: String,
    pub source: Source,
    pub problem: Problem,
}

impl SecretProblem {
    /// The environment variable (or file) to fix, in words.
    fn where_to_fix(&self) -> String {
        match &self.source {
            Source::File { var: Some(v) } => format!("set {v}"),
            Source::File { var: None } => format!(
                "write `{}` as \"${{SOME_VAR}}\" and set that variable",
                self.key
            ),
            Source::SecretFile(p) => format!("put the secret in {}", p.display()),
            Source::Env(v) => format!("set {v}"),
        }
    }
}

impl fmt::Display for SecretProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message())
    }
}

impl SecretProblem {
    /// What is wrong and how to fix it, without the file.
    pub fn message(&self) -> String {
        let origin = match &self.source {
            Source::File { var: Some(v) } => format!(" (from {v})"),
            Source::File { var: None } => " (written in the file)".to_owned(),
            Source::SecretFile(p) => format!(" (from {})", p.display()),
            Source::Env(v) => format!(" (from {v})"),
        };
        let what = match self.problem {
            Problem::Empty => "is empty".to_owned(),
            Problem::Short { bytes } => format!(
                "is {bytes} bytes long; use a random value of at least {MIN_GUARD_BYTES} bytes"
            ),
            Problem::Shipped => {
                "is the example value shipped in the repository, which anyone can read".to_owned()
            }
        };
        format!("`{}`{origin} {what}; {}", self.key, self.where_to_fix())
    }

    /// The problem as a warning about its file (`cascade check`).
    pub fn as_config_error(&self) -> ConfigError {
        ConfigError::whole_file(&self.file, self.message())
    }
}

/// Judges one secret in use. `off_when_empty`: an empty value turns the
/// feature off (and so is no problem).
pub fn judge(
    file: &Path,
    key: &str,
    source: Source,
    value: &str,
    role: Role,
    off_when_empty: bool,
) -> Option<SecretProblem> {
    let problem = if value.is_empty() {
        if off_when_empty {
            return None;
        }
        Problem::Empty
    } else if SHIPPED.contains(&value) {
        Problem::Shipped
    } else if role == Role::Guard && value.len() < MIN_GUARD_BYTES {
        Problem::Short { bytes: value.len() }
    } else {
        return None;
    };
    Some(SecretProblem {
        file: file.to_path_buf(),
        key: key.to_owned(),
        source,
        problem,
    })
}

/// The first `${NAME}` (or `${NAME:-default}`) referenced in `raw`.
fn first_variable(raw: &str) -> Option<String> {
    let start = raw.find("${")? + 2;
    let inner = &raw[start..];
    let end = inner.find(['}', ':'])?;
    let name = &inner[..end];
    (!name.is_empty()).then(|| name.to_owned())
}

/// Reads a secret from a file (`receipt_token_file = "/run/secrets/…"`):
/// the whole file, less one trailing newline, as `echo` and editors leave.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the secret file {}: {e}", path.display()))?;
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(value: &str, role: Role) -> Option<Problem> {
        judge(
            Path::new("cascade.toml"),
            "receipt_token",
            Source::written("${T}"),
            value,
            role,
            false,
        )
        .map(|p| p.problem)
    }

    #[test]
    fn guards_must_be_long_and_not_shipped() {
        assert_eq!(problem("", Role::Guard), Some(Problem::Empty));
        assert_eq!(problem("change-me", Role::Guard), Some(Problem::Shipped));
        assert_eq!(
            problem("fifteen-bytes!!", Role::Guard),
            Some(Problem::Short { bytes: 15 })
        );
        assert_eq!(problem("sixteen-bytes!!!", Role::Guard), None);
    }

    #[test]
    fn credentials_need_only_be_set_and_not_shipped() {
        assert_eq!(problem("", Role::Credential), Some(Problem::Empty));
        assert_eq!(problem("demo", Role::Credential), Some(Problem::Shipped));
        assert_eq!(problem("short", Role::Credential), None);
    }

    #[test]
    fn empty_may_mean_off() {
        let off = judge(
            Path::new("channels/email.toml"),
            "bounce_secret",
            Source::written(""),
            "",
            Role::Guard,
            true,
        );
        assert_eq!(off, None);
    }

    #[test]
    fn a_problem_names_file_key_and_variable() {
        let p = judge(
            Path::new("channels/vk.toml"),
            "callback_secret",
            Source::written("${VK_CALLBACK_SECRET:-demo-secret}"),
            "demo-secret",
            Role::Guard,
            false,
        )
        .unwrap();
        assert_eq!(
            p.to_string(),
            "channels/vk.toml: `callback_secret` (from VK_CALLBACK_SECRET) is the example value shipped in the repository, which anyone can read; set VK_CALLBACK_SECRET"
        );
    }

    #[test]
    fn secret_files_lose_one_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("cascade-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "s3cret-from-a-file\n").unwrap();
        assert_eq!(read_secret_file(&path).unwrap(), "s3cret-from-a-file");
        std::fs::write(&path, "a b\r\n").unwrap();
        assert_eq!(read_secret_file(&path).unwrap(), "a b");
        assert!(
            read_secret_file(&dir.join("missing"))
                .unwrap_err()
                .contains("cannot read")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Every `${VAR:-default}` default of a secret key in the shipped files
    /// is in `SHIPPED`, so a new example value cannot slip past the check.
    #[test]
    fn every_shipped_default_is_known() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = vec![root.join("cascade.toml"), root.join("docker-compose.yml")];
        for entry in std::fs::read_dir(root.join("channels")).unwrap() {
            files.push(entry.unwrap().path());
        }
        let secret_words = [
            "token",
            "secret",
            "password",
            "api_id",
            "apikey",
            "authorization",
        ];
        let mut seen = 0;
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
                let lower = line.to_ascii_lowercase();
                if !secret_words.iter().any(|w| lower.contains(w)) {
                    continue;
                }
                let mut rest = line;
                while let Some(at) = rest.find(":-") {
                    let after = &rest[at + 2..];
                    let end = after.find('}').unwrap_or(after.len());
                    let default = &after[..end];
                    if !default.is_empty() {
                        seen += 1;
                        assert!(
                            SHIPPED.contains(&default),
                            "{}: the default `{default}` in `{line}` is missing from secrets::SHIPPED",
                            file.display()
                        );
                    }
                    rest = &after[end..];
                }
            }
        }
        assert!(seen >= 10, "found only {seen} shipped secret defaults");
    }
}
