//! An `email` channel's keys: read once at load into the transport's shape
//! and what composing a message needs.

use std::fmt;

use lettre::message::Mailbox;
use serde::Deserialize;

use crate::channels::settings::{Role, Secret};

/// `tls = "starttls" | "tls" | "none"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Port 587: plain connect, then STARTTLS, required (no downgrade).
    StartTls,
    /// Port 465: TLS from the first byte.
    Wrapper,
    /// No TLS at all: a local sink (Mailpit, a relay on this host); no
    /// credentials unless the host is loopback.
    None,
}

/// What shapes a transport: a reload that changes any of these builds a new
/// one. Holds the password, so its `Debug` leaves it out.
#[derive(Clone, PartialEq, Eq)]
pub struct Shape {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: String,
    pub password: String,
    /// The channel's `timeout`; filled in at each send.
    pub(super) timeout_ms: i64,
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shape")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The provider keys of an `email` channel file, as written. `EmailSettings`
/// reads them into what a send needs.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailFile {
    pub host: String,
    pub from: String,
    #[serde(default)]
    pub port: Option<String>,
    #[serde(default)]
    pub tls: Option<String>,
    /// Empty: no SMTP AUTH.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub reply_to: Option<String>,
    #[serde(default)]
    pub unsubscribe_url: Option<String>,
    /// Signs the open pixel and tracked links; empty: no tracking.
    #[serde(default)]
    pub tracking_secret: Option<String>,
    /// The last part of the bounce address; empty: no endpoint.
    #[serde(default)]
    pub bounce_secret: Option<String>,
}

/// A channel's email settings, read and checked once, at load.
#[derive(Clone, Debug)]
pub struct EmailSettings {
    /// The keys as written: the secrets are judged, and the callbacks
    /// checked, against these.
    pub file: EmailFile,
    pub shape: Shape,
    pub(super) from: Mailbox,
    pub(super) reply_to: Option<Mailbox>,
    pub(super) unsubscribe_url: Option<String>,
    /// `tracking_secret`, trimmed; `None` when blank (no tracking).
    pub(super) tracking_secret: Option<String>,
}

/// The secrets of an `email` channel.
pub const SECRETS: &[Secret<EmailSettings>] = &[
    Secret {
        key: "password",
        role: Role::Credential,
        off_when_empty: true,
        // Used only for AUTH, which needs a username.
        value: |s| {
            let user = s.file.username.as_deref();
            s.file
                .password
                .as_deref()
                .filter(|_| user.is_some_and(|u| !u.is_empty()))
        },
    },
    Secret {
        key: "tracking_secret",
        role: Role::Guard,
        off_when_empty: true,
        value: |s| s.file.tracking_secret.as_deref(),
    },
    Secret {
        key: "bounce_secret",
        role: Role::Guard,
        off_when_empty: true,
        value: |s| s.file.bounce_secret.as_deref(),
    },
];

impl EmailSettings {
    /// Reads how the keys combine; `Err` is a sentence saying what would be right.
    pub fn from_file(file: EmailFile) -> Result<EmailSettings, String> {
        let nonblank = |v: &Option<String>| -> Option<String> {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let host = nonblank(&Some(file.host.clone())).ok_or("the email channel has no `host`")?;
        let tls = match nonblank(&file.tls).as_deref().unwrap_or("starttls") {
            "starttls" => TlsMode::StartTls,
            "tls" => TlsMode::Wrapper,
            "none" => TlsMode::None,
            other => {
                return Err(format!(
                    "tls = \"{other}\" is not a choice; use \"starttls\" (port 587), \"tls\" (port 465) or \"none\" (a local sink)"
                ));
            }
        };
        let port = match nonblank(&file.port) {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("port `{p}` is not a TCP port (1 to 65535)"))?,
            None => match tls {
                TlsMode::StartTls => 587,
                TlsMode::Wrapper => 465,
                TlsMode::None => 25,
            },
        };
        let from_text =
            nonblank(&Some(file.from.clone())).ok_or("the email channel has no `from`")?;
        let from: Mailbox = from_text.parse().map_err(|e| {
            format!(
                "from `{from_text}` is not an address such as \"Shop <noreply@shop.example>\": {e}"
            )
        })?;
        let reply_to = match nonblank(&file.reply_to) {
            Some(r) => Some(
                r.parse::<Mailbox>()
                    .map_err(|e| format!("reply_to `{r}` is not an address: {e}"))?,
            ),
            None => None,
        };
        let unsubscribe_url = nonblank(&file.unsubscribe_url)
            .map(|u| unsubscribe_url(&u))
            .transpose()?;
        let username = file.username.as_deref().unwrap_or("").trim().to_owned();
        if tls == TlsMode::None && !username.is_empty() && !is_loopback(&host) {
            return Err(format!(
                "tls = \"none\" would send the password to `{host}` unencrypted; use \"starttls\" or \"tls\" (\"none\" is for a local sink)"
            ));
        }
        Ok(EmailSettings {
            shape: Shape {
                host,
                port,
                tls,
                username,
                password: file.password.clone().unwrap_or_default(),
                timeout_ms: 0,
            },
            from,
            reply_to,
            unsubscribe_url,
            tracking_secret: nonblank(&file.tracking_secret),
            file,
        })
    }
}

/// `unsubscribe_url`, when it is an address a mail client can use.
fn unsubscribe_url(u: &str) -> Result<String, String> {
    if !(is_http_url(u) || u.starts_with("mailto:")) {
        return Err(format!(
            "unsubscribe_url `{u}` must be an https:// (or mailto:) address"
        ));
    }
    if u.chars()
        .any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
    {
        return Err(format!(
            "unsubscribe_url `{u}` must be plain ASCII without spaces (percent-encode the rest)"
        ));
    }
    Ok(u.to_owned())
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub(super) fn is_http_url(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}
