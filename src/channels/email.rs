//! `email` channels: SMTP submission through lettre, with one pooled
//! transport per channel. Each step goes out as a multipart/alternative
//! message (text + HTML) with a deterministic `Message-ID` (the same on every
//! retry of a step, so a receiving client can fold duplicates), optional
//! `List-Unsubscribe` headers, and open/click tracking: a 1×1 pixel and every
//! http(s) link rewritten to the daemon's `/t/o/…` and `/t/c/…` routes
//! (`http::callbacks::tracking`) through tokens signed with the channel's
//! `tracking_secret`, so nobody can forge an `opened` or `clicked` receipt or
//! turn the redirect into an open one.
//!
//! SMTP has no idempotency key: a connection lost after the message went out
//! leaves the send uncertain, and email's `on_uncertain` stays `skip` (the
//! escalation timer moves on instead of a blind resend).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Outgoing;
use super::settings::{ChannelSettings, Role, Secret};
use crate::core::SendOutcome;

/// Most SMTP connections one channel keeps open per instance.
const POOL_MAX_SIZE: u32 = 10;
/// An idle pooled connection is closed after this long.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// Longest subject taken from the first line of the text, in characters.
const SUBJECT_FROM_TEXT_CHARS: usize = 150;
/// Longest tracking token accepted, in bytes (a 2 KiB link makes ~2.9 KiB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Reply codes that mean the relay refused our credentials (RFC 4954):
/// 530 authentication required, 534 mechanism too weak, 535 credentials
/// invalid, 538 encryption required for the mechanism.
const AUTH_CODES: [u16; 4] = [530, 534, 535, 538];

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

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
    timeout_ms: i64,
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
    from: Mailbox,
    reply_to: Option<Mailbox>,
    unsubscribe_url: Option<String>,
    /// `tracking_secret`, trimmed; `None` when blank (no tracking).
    tracking_secret: Option<String>,
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

fn is_http_url(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

// ---------------------------------------------------------------------------
// Transports
// ---------------------------------------------------------------------------

/// Pooled SMTP transports, one per channel, kept while the channel's
/// connection settings stay the same. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Transports {
    cache: Arc<Mutex<Cache>>,
}

#[derive(Default)]
struct Cache(HashMap<String, Cached>);

struct Cached {
    shape: Shape,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl Drop for Cache {
    fn drop(&mut self) {
        // lettre's pool spawns its clean-up when dropped, which needs a
        // runtime; without one (the process is ending) let the OS close the
        // sockets instead of panicking.
        if tokio::runtime::Handle::try_current().is_err() {
            for (_, cached) in self.0.drain() {
                std::mem::forget(cached.transport);
            }
        }
    }
}

impl Transports {
    /// The channel's transport for these settings, built on first use and
    /// rebuilt when the settings changed (the old pool closes once its
    /// in-flight sends are done).
    fn get(
        &self,
        channel: &str,
        shape: &Shape,
    ) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| "the SMTP transport cache is poisoned".to_owned())?;
        if let Some(cached) = cache.0.get(channel)
            && cached.shape == *shape
        {
            return Ok(cached.transport.clone());
        }
        let transport = build(shape)?;
        cache.0.insert(
            channel.to_owned(),
            Cached {
                shape: shape.clone(),
                transport: transport.clone(),
            },
        );
        Ok(transport)
    }

    /// Forgets the channel's transport and closes its pool. After a send was
    /// abandoned mid-conversation its connection may be out of step with the
    /// server; no later send may reuse it.
    async fn discard(&self, channel: &str, shape: &Shape) {
        let removed = match self.cache.lock() {
            Ok(mut cache) => match cache.0.get(channel) {
                Some(c) if c.shape == *shape => cache.0.remove(channel),
                _ => None,
            },
            Err(_) => None,
        };
        if let Some(cached) = removed {
            cached.transport.shutdown().await;
        }
    }
}

fn build(shape: &Shape) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let tls_parameters = || {
        TlsParameters::new(shape.host.clone())
            .map_err(|e| format!("cannot set up TLS for `{}`: {e}", shape.host))
    };
    let tls = match shape.tls {
        TlsMode::StartTls => Tls::Required(tls_parameters()?),
        TlsMode::Wrapper => Tls::Wrapper(tls_parameters()?),
        TlsMode::None => Tls::None,
    };
    // lettre's timeout bounds only the TCP connect on tokio; the whole send
    // is bounded by the channel's `timeout` around it. Half of it for the
    // connect leaves the rest for the conversation.
    let connect_timeout = Duration::from_millis((shape.timeout_ms as u64 / 2).max(1));
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(shape.host.clone())
        .port(shape.port)
        .tls(tls)
        .timeout(Some(connect_timeout))
        .pool_config(
            PoolConfig::new()
                .min_idle(0)
                .max_size(POOL_MAX_SIZE)
                .idle_timeout(POOL_IDLE),
        );
    if !shape.username.is_empty() {
        builder = builder.credentials(Credentials::new(
            shape.username.clone(),
            shape.password.clone(),
        ));
    }
    Ok(builder.build())
}

// ---------------------------------------------------------------------------
// Classification
// ---------------------------------------------------------------------------

/// What went wrong with one SMTP send, read from lettre's error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A 4xx or 5xx reply (to the greeting, EHLO, AUTH, MAIL, RCPT, DATA or
    /// the final `.`).
    Reply { code: u16, text: String },
    /// No session: refused, unreachable, unknown host, connect timed out.
    /// Nothing of the message was sent.
    NoConnection(String),
    /// The TLS handshake failed: a bad certificate, or `tls` does not match
    /// what the port speaks.
    Handshake(String),
    /// The server lacks what the settings require (STARTTLS, an AUTH
    /// mechanism we offer, 8BITMIME).
    Unsupported(String),
    /// The recipient's address needs SMTPUTF8, which the server lacks.
    UnsupportedAddress(String),
    /// The connection broke, or a reply could not be read, once the session
    /// had begun: lettre does not say after which command, so the message
    /// may have been accepted (a drop right after the final `.`).
    Lost(String),
    /// No answer within the channel's `timeout`.
    TimedOut,
}

impl Failure {
    /// Reads lettre's error. lettre has no accessor for its connection-error
    /// kind, so that one is recognised by its text (pinned by a test).
    pub fn of(e: &lettre::transport::smtp::Error) -> Failure {
        let text = e.to_string();
        if let Some(code) = e.status() {
            return Failure::Reply {
                code: code.into(),
                text,
            };
        }
        if e.is_tls() {
            return Failure::Handshake(text);
        }
        if e.is_client() {
            return if text.contains("Envelope") {
                Failure::UnsupportedAddress(text)
            } else {
                Failure::Unsupported(text)
            };
        }
        if e.is_transport_shutdown() {
            return Failure::NoConnection(text);
        }
        if text.starts_with("Connection error") {
            return if has_invalid_data(e) {
                Failure::Handshake(text)
            } else {
                Failure::NoConnection(text)
            };
        }
        Failure::Lost(text)
    }
}

/// TLS libraries report a refused handshake as `InvalidData`.
fn has_invalid_data(e: &lettre::transport::smtp::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::InvalidData
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// How an SMTP send is read.
///
/// | what happened | outcome |
/// |---|---|
/// | 250 after the final `.` | sent; the provider message id is our `Message-ID` |
/// | 530, 534, 535, 538 (authentication refused) | misconfigured: the credentials are wrong for everyone |
/// | any other 5xx (550 user unknown, 552, 553, 554 on DATA, …) | permanent: escalate now |
/// | 4xx (421, 450, 451, 452, 454) | transient: retry with backoff |
/// | no connection (refused, unreachable, unknown host, connect timeout) | transient: nothing was sent |
/// | TLS handshake failed (certificate, `tls` not what the port speaks) | misconfigured |
/// | server lacks STARTTLS, our AUTH mechanisms or 8BITMIME | misconfigured |
/// | server lacks SMTPUTF8 for a non-ASCII address | permanent |
/// | connection lost or reply unreadable once the session began | ambiguous: it may have been queued |
/// | no answer within the channel's `timeout` | ambiguous |
///
/// Before any of that: settings that cannot work (`from`, `tls`, `port`) are
/// misconfigured; a contact that is not an address is permanent.
pub fn classify(failure: &Failure) -> SendOutcome {
    match failure {
        Failure::Reply { code, text } if AUTH_CODES.contains(code) => SendOutcome::Misconfigured {
            reason: format!("the relay refused our credentials: {text}"),
        },
        Failure::Reply { code, text } if *code >= 500 => SendOutcome::Permanent {
            reason: text.clone(),
        },
        Failure::Reply { text, .. } => SendOutcome::Transient {
            reason: text.clone(),
            retry_after_ms: None,
        },
        Failure::NoConnection(text) => SendOutcome::Transient {
            reason: format!("cannot connect: {text}"),
            retry_after_ms: None,
        },
        Failure::Handshake(text) => SendOutcome::Misconfigured {
            reason: format!("TLS handshake failed (check `tls` and `port`): {text}"),
        },
        Failure::Unsupported(text) => SendOutcome::Misconfigured {
            reason: format!("the relay cannot do what the settings need: {text}"),
        },
        Failure::UnsupportedAddress(text) => SendOutcome::Permanent {
            reason: format!("the relay cannot take this address: {text}"),
        },
        Failure::Lost(text) => SendOutcome::Ambiguous {
            reason: format!("connection lost mid-send: {text}"),
        },
        Failure::TimedOut => SendOutcome::Ambiguous {
            reason: "no answer from the relay within the timeout".into(),
        },
    }
}

// ---------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------

/// Composes the step's message, submits it and classifies the answer.
pub async fn send(transports: &Transports, out: &Outgoing<'_>) -> SendOutcome {
    let ChannelSettings::Email(settings) = &out.channel.settings else {
        return SendOutcome::Misconfigured {
            reason: "not an email channel".into(),
        };
    };
    let shape = Shape {
        timeout_ms: out.channel.timeout_ms.max(1),
        ..settings.shape.clone()
    };
    let Some(contact) = out.contact else {
        return SendOutcome::Permanent {
            reason: "the customer has no email address".into(),
        };
    };
    let to: Mailbox = match contact.trim().parse() {
        Ok(m) => m,
        Err(e) => {
            return SendOutcome::Permanent {
                reason: format!("the contact is not an email address: {e}"),
            };
        }
    };
    let composed = match compose(out, settings, to) {
        Ok(c) => c,
        Err(reason) => return SendOutcome::Permanent { reason },
    };
    let transport = match transports.get(&out.channel.name, &shape) {
        Ok(t) => t,
        Err(reason) => return SendOutcome::Misconfigured { reason },
    };
    let limit = Duration::from_millis(shape.timeout_ms as u64);
    let failure = match tokio::time::timeout(limit, transport.send(composed.message)).await {
        Ok(Ok(response)) => {
            tracing::debug!(
                channel = %out.channel.name,
                notification_id = %out.notification.id,
                message_id = %composed.message_id,
                // Some relays repeat the recipient in their answer.
                reply = %crate::pii::scrub(response.first_line().unwrap_or("")),
                "the relay took the message"
            );
            return SendOutcome::Sent {
                provider_message_id: Some(composed.message_id),
            };
        }
        Ok(Err(e)) => Failure::of(&e),
        Err(_) => {
            transports.discard(&out.channel.name, &shape).await;
            Failure::TimedOut
        }
    };
    classify(&failure)
}

/// One step's message, ready to submit.
struct Composed {
    message: Message,
    message_id: String,
}

/// `<hex@from-domain>`: the same for every attempt of one step.
pub fn message_id(notification_id: &str, step: u8, from_domain: &str) -> String {
    let digest = Sha256::digest(format!("cascade\x1f{notification_id}\x1f{step}").as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("<{hex}@{from_domain}>")
}

fn compose(out: &Outgoing<'_>, s: &EmailSettings, to: Mailbox) -> Result<Composed, String> {
    let (notification, channel) = (out.notification, out.channel);
    let step = out.order.step;
    let text = out.text();
    let subject = notification
        .subject_for(&channel.name, channel.kind)
        .map(|t| t.trim().to_owned())
        .unwrap_or_else(|| subject_from_text(text));
    let tracker = s.tracking_secret.as_deref().map(|secret| Tracker {
        secret,
        base: out.public_url.trim_end_matches('/'),
        channel: &channel.name,
        notification_id: &notification.id,
        step,
        until_ms: out.tracking_until_ms,
    });
    let link = notification
        .content
        .link
        .as_deref()
        .map(str::trim)
        .filter(|l| is_http_url(l));
    let tracked_link = link.map(|l| match &tracker {
        Some(t) => t.click(l),
        None => l.to_owned(),
    });

    // The text part: the text, with the link (tracked) in it or after it.
    let mut plain = text.to_owned();
    if let (Some(link), Some(tracked)) = (link, &tracked_link) {
        if plain.contains(link) {
            plain = plain.replace(link, tracked);
        } else {
            plain = format!("{}\n\n{tracked}\n", plain.trim_end());
        }
    }

    // The HTML part: the notification's own (links rewritten), else the text.
    let mut html = match notification.html_for(&channel.name, channel.kind) {
        Some(given) => {
            let (mut html, originals) = rewrite_links(given, |url| {
                if is_unsubscribe(url, s.unsubscribe_url.as_deref()) {
                    return None;
                }
                tracker.as_ref().map(|t| t.click(url))
            });
            if let (Some(link), Some(tracked)) = (link, &tracked_link)
                && !originals.iter().any(|o| o == link)
            {
                let paragraph = format!(
                    "<p><a href=\"{}\">{}</a></p>",
                    escape_html(tracked),
                    escape_html(link)
                );
                html = insert_before_body_end(&html, &paragraph);
            }
            html
        }
        None => {
            let mut body = format!(
                "<p>{}</p>",
                escape_html(text.trim_end()).replace('\n', "<br>\n")
            );
            if let (Some(link), Some(tracked)) = (link, &tracked_link) {
                // The link where the text has it, else after the text: always
                // an anchor, so clients do not linkify the bare (untracked) URL.
                let shown = escape_html(link);
                let anchor = format!("<a href=\"{}\">{shown}</a>", escape_html(tracked));
                if body.contains(&shown) {
                    body = body.replace(&shown, &anchor);
                } else {
                    body.push_str(&format!("\n<p>{anchor}</p>"));
                }
            }
            format!(
                "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n{body}\n</body></html>\n"
            )
        }
    };
    if let Some(t) = &tracker {
        let pixel = format!(
            "<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" style=\"border:0\">",
            escape_html(&t.pixel())
        );
        html = insert_before_body_end(&html, &pixel);
    }

    let message_id = message_id(&notification.id, step, s.from.email.domain());
    let mut builder = Message::builder()
        .from(s.from.clone())
        .to(to)
        .subject(subject)
        .message_id(Some(message_id.clone()));
    if let Some(reply_to) = &s.reply_to {
        builder = builder.reply_to(reply_to.clone());
    }
    if let Some(url) = &s.unsubscribe_url {
        let url = url
            .replace("{notification_id}", &percent_encode(&notification.id))
            .replace("{customer_id}", &percent_encode(&notification.customer.id));
        builder = builder.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe"),
            format!("<{url}>"),
        ));
        // RFC 8058: one-click needs an https URI to POST to.
        if url
            .get(..8)
            .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
        {
            builder = builder.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".to_owned(),
            ));
        }
    }
    let message = builder
        .multipart(MultiPart::alternative_plain_html(plain, html))
        .map_err(|e| format!("cannot build the message: {e}"))?;
    Ok(Composed {
        message,
        message_id,
    })
}

fn subject_from_text(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    match line.char_indices().nth(SUBJECT_FROM_TEXT_CHARS) {
        Some((cut, _)) => format!("{}…", line[..cut].trim_end()),
        None => line.to_owned(),
    }
}

fn is_unsubscribe(url: &str, unsubscribe: Option<&str>) -> bool {
    unsubscribe.is_some_and(|u| {
        let base = u.split('{').next().unwrap_or(u);
        !base.is_empty() && url.starts_with(base)
    })
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Escapes text for HTML content and double- or single-quoted attributes.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Decodes the character references an attribute value may hold.
fn unescape_html(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest.find(';').filter(|e| *e <= 10);
        let decoded = end.and_then(|e| {
            let name = &rest[1..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let n = if let Some(hex) = name.strip_prefix("#x").or(name.strip_prefix("#X")) {
                        u32::from_str_radix(hex, 16).ok()
                    } else {
                        name.strip_prefix('#').and_then(|d| d.parse().ok())
                    };
                    n.and_then(char::from_u32)
                }
            };
            c.map(|c| (c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Rewrites every `href` whose value is an http(s) URL through `track`
/// (`None` leaves it). Returns the HTML and the original URLs it saw.
fn rewrite_links(
    html: &str,
    mut track: impl FnMut(&str) -> Option<String>,
) -> (String, Vec<String>) {
    let bytes = html.as_bytes();
    let mut out = String::with_capacity(html.len() + 256);
    let mut originals = Vec::new();
    let mut copied = 0;
    let mut i = 0;
    while i + 4 <= bytes.len() {
        let is_href = bytes[i..i + 4].eq_ignore_ascii_case(b"href")
            && i > 0
            && bytes[i - 1].is_ascii_whitespace();
        if !is_href {
            i += 1;
            continue;
        }
        // `href`, spaces, `=`, spaces, then the value.
        let mut j = i + 4;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        if j >= bytes.len() || bytes[j] != b'=' {
            i += 4;
            continue;
        }
        j += 1;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        let (start, end, after) = match bytes.get(j) {
            Some(&q @ (b'"' | b'\'')) => match html[j + 1..].find(q as char) {
                Some(len) => (j + 1, j + 1 + len, j + 2 + len),
                None => break,
            },
            Some(_) => {
                let len = html[j..]
                    .find(|c: char| c.is_ascii_whitespace() || c == '>')
                    .unwrap_or(html.len() - j);
                (j, j + len, j + len)
            }
            None => break,
        };
        let url = unescape_html(html[start..end].trim());
        if is_http_url(&url) {
            let replacement = track(&url);
            originals.push(url);
            if let Some(new) = replacement {
                out.push_str(&html[copied..i]);
                out.push_str("href=\"");
                out.push_str(&escape_html(&new));
                out.push('"');
                copied = after;
            }
        }
        i = after.max(i + 1);
    }
    out.push_str(&html[copied..]);
    (out, originals)
}

fn insert_before_body_end(html: &str, piece: &str) -> String {
    let lower = html.to_ascii_lowercase();
    match lower.rfind("</body") {
        Some(at) => format!("{}{piece}\n{}", &html[..at], &html[at..]),
        None => format!("{html}\n{piece}"),
    }
}

// ---------------------------------------------------------------------------
// Tracking tokens
// ---------------------------------------------------------------------------

/// What a tracking link records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tracked {
    /// The open pixel: `opened`.
    Open,
    /// A tracked link: `clicked`, then a redirect to `url`.
    Click { url: String },
}

/// The signed contents of a tracking link. Only `sign` makes one that
/// `verify` accepts; the channel named inside holds the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackingToken {
    pub channel: String,
    pub notification_id: String,
    pub step: u8,
    pub tracked: Tracked,
    /// After this (Unix ms) the link still answers (the pixel, the
    /// redirect) but records nothing.
    pub until_ms: i64,
}

impl TrackingToken {
    /// Whether the link may still record a receipt at `now_ms`.
    pub fn records_at(&self, now_ms: i64) -> bool {
        now_ms <= self.until_ms
    }
}

#[derive(Serialize, Deserialize)]
struct Payload {
    c: String,
    n: String,
    s: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<String>,
    /// Until when it records; tokens of the first version had none.
    #[serde(default)]
    x: i64,
}

/// Keeps tracking MACs apart from any other use of the same secret. The
/// first version signed the same fields without an expiry, under another
/// context; those tokens still verify (so old links still redirect) and
/// read as long expired, so they record nothing.
const MAC_CONTEXT: &[u8] = b"cascade email tracking v2\n";
const MAC_CONTEXT_V1: &[u8] = b"cascade email tracking v1\n";

/// How long a cascade without an expiry keeps recording opens and clicks.
const TRACKING_WITHOUT_EXPIRY_MS: i64 = 30 * 24 * 3_600_000;

/// Until when a link sent at `now_ms` records: the cascade's expiry (or 30
/// days on, for a cascade without one) plus the retention, after which the
/// cascade's keys are gone anyway.
pub fn tracking_until(expires_at_ms: Option<i64>, now_ms: i64, retention_ms: i64) -> i64 {
    expires_at_ms
        .unwrap_or(now_ms.saturating_add(TRACKING_WITHOUT_EXPIRY_MS))
        .saturating_add(retention_ms)
}

fn mac(secret: &str, payload_b64: &str) -> Option<Hmac<Sha256>> {
    mac_in(MAC_CONTEXT, secret, payload_b64)
}

fn mac_in(context: &[u8], secret: &str, payload_b64: &str) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(context);
    mac.update(payload_b64.as_bytes());
    Some(mac)
}

/// `<base64url payload>.<base64url HMAC-SHA256>`: URL-safe, no padding.
pub fn sign(secret: &str, token: &TrackingToken) -> String {
    let payload = Payload {
        c: token.channel.clone(),
        n: token.notification_id.clone(),
        s: token.step,
        u: match &token.tracked {
            Tracked::Open => None,
            Tracked::Click { url } => Some(url.clone()),
        },
        x: token.until_ms,
    };
    let json = serde_json::to_vec(&payload).unwrap_or_default();
    let payload_b64 = URL_SAFE_NO_PAD.encode(json);
    let tag = mac(secret, &payload_b64)
        .map(|m| URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
        .unwrap_or_default();
    format!("{payload_b64}.{tag}")
}

/// The token's contents if its MAC checks out under the secret of the
/// channel it names (`secret_of(channel)`); `None` for anything else. The
/// MAC comparison takes constant time.
pub fn verify(
    token: &str,
    secret_of: impl FnOnce(&str) -> Option<String>,
) -> Option<TrackingToken> {
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let (payload_b64, tag_b64) = token.split_once('.')?;
    let tag = URL_SAFE_NO_PAD.decode(tag_b64).ok()?;
    let payload: Payload =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload_b64).ok()?).ok()?;
    let secret = secret_of(&payload.c)?;
    let current = mac(&secret, payload_b64)?.verify_slice(&tag).is_ok();
    let until_ms = if current {
        payload.x
    } else {
        mac_in(MAC_CONTEXT_V1, &secret, payload_b64)?
            .verify_slice(&tag)
            .ok()?;
        i64::MIN
    };
    let tracked = match payload.u {
        None => Tracked::Open,
        Some(url) if is_http_url(&url) => Tracked::Click { url },
        Some(_) => return None,
    };
    Some(TrackingToken {
        channel: payload.c,
        notification_id: payload.n,
        step: payload.s,
        tracked,
        until_ms,
    })
}

/// Makes the tracking URLs of one step.
struct Tracker<'a> {
    secret: &'a str,
    /// `http.public_url` without a trailing slash.
    base: &'a str,
    channel: &'a str,
    notification_id: &'a str,
    step: u8,
    until_ms: i64,
}

impl Tracker<'_> {
    fn token(&self, tracked: Tracked) -> String {
        sign(
            self.secret,
            &TrackingToken {
                channel: self.channel.to_owned(),
                notification_id: self.notification_id.to_owned(),
                step: self.step,
                tracked,
                until_ms: self.until_ms,
            },
        )
    }

    fn pixel(&self) -> String {
        format!("{}/t/o/{}.gif", self.base, self.token(Tracked::Open))
    }

    fn click(&self, url: &str) -> String {
        let token = self.token(Tracked::Click {
            url: url.to_owned(),
        });
        format!("{}/t/c/{token}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16) -> SendOutcome {
        classify(&Failure::Reply {
            code,
            text: format!("{code} text"),
        })
    }

    #[test]
    fn every_row_of_the_table() {
        for code in [530, 534, 535, 538] {
            assert!(
                matches!(reply(code), SendOutcome::Misconfigured { .. }),
                "{code}"
            );
        }
        for code in [550, 551, 552, 553, 554] {
            assert!(
                matches!(reply(code), SendOutcome::Permanent { .. }),
                "{code}"
            );
        }
        for code in [421, 450, 451, 452, 454] {
            assert!(
                matches!(
                    reply(code),
                    SendOutcome::Transient {
                        retry_after_ms: None,
                        ..
                    }
                ),
                "{code}"
            );
        }
        assert!(matches!(
            classify(&Failure::NoConnection("refused".into())),
            SendOutcome::Transient { .. }
        ));
        assert!(matches!(
            classify(&Failure::Handshake("bad certificate".into())),
            SendOutcome::Misconfigured { .. }
        ));
        assert!(matches!(
            classify(&Failure::Unsupported("no STARTTLS".into())),
            SendOutcome::Misconfigured { .. }
        ));
        assert!(matches!(
            classify(&Failure::UnsupportedAddress("no SMTPUTF8".into())),
            SendOutcome::Permanent { .. }
        ));
        assert!(matches!(
            classify(&Failure::Lost("incomplete response".into())),
            SendOutcome::Ambiguous { .. }
        ));
        assert!(matches!(
            classify(&Failure::TimedOut),
            SendOutcome::Ambiguous { .. }
        ));
    }

    #[test]
    fn message_id_is_deterministic_per_step() {
        let a = message_id("order-1", 0, "shop.example");
        assert_eq!(a, message_id("order-1", 0, "shop.example"));
        assert_ne!(a, message_id("order-1", 1, "shop.example"));
        assert_ne!(a, message_id("order-2", 0, "shop.example"));
        assert!(a.starts_with('<') && a.ends_with("@shop.example>"), "{a}");
        assert_eq!(a.len(), "<@shop.example>".len() + 32);
    }

    fn token(tracked: Tracked) -> TrackingToken {
        TrackingToken {
            channel: "email".into(),
            notification_id: "order-1".into(),
            step: 0,
            tracked,
            until_ms: 1_800_000_000_000,
        }
    }

    #[test]
    fn tokens_carry_their_expiry_and_first_version_tokens_read_as_expired() {
        let secret = || Some("s3cret".to_owned());
        let t = token(Tracked::Open);
        let verified = verify(&sign("s3cret", &t), |_| secret()).unwrap();
        assert!(verified.records_at(1_800_000_000_000));
        assert!(!verified.records_at(1_800_000_000_001));
        // A token of the first version: the same fields, no expiry, the old context.
        let payload = URL_SAFE_NO_PAD.encode(br#"{"c":"email","n":"order-1","s":0}"#);
        let tag = mac_in(MAC_CONTEXT_V1, "s3cret", &payload).unwrap();
        let old = format!(
            "{payload}.{}",
            URL_SAFE_NO_PAD.encode(tag.finalize().into_bytes())
        );
        let verified = verify(&old, |_| secret()).unwrap();
        assert_eq!(verified.notification_id, "order-1");
        assert!(!verified.records_at(0));
        // The expiry is signed: raising it breaks the token.
        let signed = sign("s3cret", &t);
        let (_, tag) = signed.split_once('.').unwrap();
        let later =
            URL_SAFE_NO_PAD.encode(br#"{"c":"email","n":"order-1","s":0,"x":9999999999999}"#);
        assert_eq!(verify(&format!("{later}.{tag}"), |_| secret()), None);
        assert_eq!(tracking_until(Some(1_000), 5, 7), 1_007);
        assert_eq!(tracking_until(None, 5, 7), 5 + 30 * 24 * 3_600_000 + 7);
        assert_eq!(tracking_until(Some(i64::MAX - 1), 0, 7), i64::MAX);
    }

    #[test]
    fn tokens_verify_only_with_the_right_secret_and_untouched() {
        let secret = || Some("s3cret".to_owned());
        let open = sign("s3cret", &token(Tracked::Open));
        assert_eq!(verify(&open, |_| secret()), Some(token(Tracked::Open)));
        let click = token(Tracked::Click {
            url: "https://shop.example/cart?a=1&b=2".into(),
        });
        let signed = sign("s3cret", &click);
        assert_eq!(verify(&signed, |_| secret()), Some(click));
        assert!(
            signed
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        );

        assert_eq!(verify(&open, |_| Some("other".into())), None);
        assert_eq!(verify(&open, |_| None), None, "unknown channel");
        // Any change to payload or tag breaks it.
        let (payload, tag) = signed.split_once('.').unwrap();
        let mut flipped = tag.as_bytes().to_vec();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        let forged = format!("{payload}.{}", String::from_utf8(flipped).unwrap());
        assert_eq!(verify(&forged, |_| secret()), None);
        let other_url = URL_SAFE_NO_PAD
            .encode(br#"{"c":"email","n":"order-1","s":0,"u":"https://evil.example/"}"#);
        assert_eq!(verify(&format!("{other_url}.{tag}"), |_| secret()), None);
        for junk in [
            "",
            ".",
            "abc",
            "abc.def",
            "!!.??",
            &"a".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert_eq!(verify(junk, |_| secret()), None, "{junk:?}");
        }
        // Signed, but not a web address: never a redirect target.
        let js = sign(
            "s3cret",
            &token(Tracked::Click {
                url: "javascript:alert(1)".into(),
            }),
        );
        assert_eq!(verify(&js, |_| secret()), None);
    }

    #[test]
    fn links_are_rewritten_and_others_left_alone() {
        let html = r#"<p><a href="https://shop.example/a?x=1&amp;y=2">A</a>
<a class=b HREF = 'http://shop.example/b'>B</a> <a href=https://shop.example/c>C</a>
<a href="mailto:help@shop.example">mail</a> <a href="/relative">rel</a>
<img src="https://shop.example/logo.png"> data-href="https://x.example/"</p>"#;
        let (out, seen) = rewrite_links(html, |u| Some(format!("T[{u}]")));
        assert_eq!(
            seen,
            [
                "https://shop.example/a?x=1&y=2",
                "http://shop.example/b",
                "https://shop.example/c"
            ]
        );
        assert!(
            out.contains(r#"href="T[https://shop.example/a?x=1&amp;y=2]""#),
            "{out}"
        );
        assert!(
            out.contains(r#"href="T[http://shop.example/b]">B"#),
            "{out}"
        );
        assert!(
            out.contains(r#"href="T[https://shop.example/c]">C"#),
            "{out}"
        );
        assert!(out.contains(r#"href="mailto:help@shop.example""#));
        assert!(out.contains(r#"href="/relative""#));
        assert!(out.contains(r#"src="https://shop.example/logo.png""#));
        assert!(out.contains(r#"data-href="https://x.example/""#));
        // Nothing tracked: unchanged.
        let (same, _) = rewrite_links(html, |_| None);
        assert_eq!(same, html);
        // Cyrillic around links survives byte slicing.
        let (ru, _) = rewrite_links(
            "<p>Заказ <a href=\"https://x.example/\">тут</a></p>",
            |_| Some("https://t.example/".into()),
        );
        assert_eq!(ru, "<p>Заказ <a href=\"https://t.example/\">тут</a></p>");
    }

    #[test]
    fn html_helpers() {
        assert_eq!(
            escape_html("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(
            unescape_html("a&amp;b&#38;c&#x26;d&lt;&bogus;&"),
            "a&b&c&d<&bogus;&"
        );
        assert_eq!(
            insert_before_body_end("<html><BODY>x</BODY></html>", "P"),
            "<html><BODY>xP\n</BODY></html>"
        );
        assert_eq!(insert_before_body_end("<p>x</p>", "P"), "<p>x</p>\nP");
        assert_eq!(
            subject_from_text("\n  Заказ задерживается \nвторая"),
            "Заказ задерживается"
        );
        assert_eq!(subject_from_text(&"я".repeat(200)).chars().count(), 151);
        assert_eq!(percent_encode("order 1/ё"), "order%201%2F%D1%91");
    }

    /// The settings these keys make, or why they cannot work.
    fn read_settings(pairs: &[(&str, &str)]) -> Result<EmailSettings, String> {
        let kind = crate::core::ChannelKind::Email;
        crate::channels::settings::from_pairs(kind, pairs)
            .map(|s| s.as_email().expect("email").clone())
    }

    fn channel(pairs: &[(&str, &str)]) -> crate::channels::ChannelConfig {
        let kind = crate::core::ChannelKind::Email;
        let settings = crate::channels::settings::from_pairs(kind, pairs).expect("test settings");
        let mut channel = crate::channels::settings::test_channel(kind, settings);
        channel.timeout_ms = 5_000;
        channel
    }

    #[test]
    fn settings_that_cannot_work_are_refused_with_a_reason() {
        let compose_sink = [
            ("host", "mailpit"),
            ("tls", "none"),
            ("from", "a@b.example"),
        ];
        assert!(read_settings(&compose_sink).is_ok());
        let ok = [
            ("host", "127.0.0.1"),
            ("tls", "none"),
            ("from", "Shop <a@shop.example>"),
        ];
        assert!(read_settings(&ok).is_ok());
        let s = read_settings(&ok).unwrap();
        assert_eq!(s.shape.port, 25);
        let relay = [("host", "smtp.example"), ("from", "a@shop.example")];
        let s = read_settings(&relay).unwrap();
        assert_eq!((s.shape.tls, s.shape.port), (TlsMode::StartTls, 587));
        let wrapped = [
            ("host", "smtp.example"),
            ("tls", "tls"),
            ("from", "a@shop.example"),
        ];
        assert_eq!(read_settings(&wrapped).unwrap().shape.port, 465);

        for (bad, says) in [
            (
                vec![
                    ("host", "smtp.example"),
                    ("tls", "none"),
                    ("username", "shop"),
                    ("from", "a@b.example"),
                ],
                "unencrypted",
            ),
            (
                vec![
                    ("host", "localhost"),
                    ("tls", "ssl"),
                    ("from", "a@b.example"),
                ],
                "starttls",
            ),
            (
                vec![
                    ("host", "localhost"),
                    ("port", "99999"),
                    ("from", "a@b.example"),
                ],
                "port",
            ),
            (
                vec![("host", "localhost"), ("from", "not an address")],
                "from",
            ),
            (vec![("host", "localhost")], "from"),
            (vec![("from", "a@b.example")], "host"),
            (
                vec![
                    ("host", "localhost"),
                    ("from", "a@b.example"),
                    ("unsubscribe_url", "ftp://x"),
                ],
                "unsubscribe_url",
            ),
        ] {
            let err = read_settings(&bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    // -- lettre's real errors against the loopback sink ---------------------

    use crate::dev::fakes::smtp::{self, Answer};

    const SINK_FROM: &str = "Shop <noreply@shop.example>";

    async fn send_via(
        transports: &Transports,
        port: u16,
        extra: &[(&str, &str)],
        contact: &str,
        content: serde_json::Value,
    ) -> SendOutcome {
        let port = port.to_string();
        let mut settings = vec![
            ("host", "127.0.0.1"),
            ("port", port.as_str()),
            ("tls", "none"),
            ("from", SINK_FROM),
            ("tracking_secret", "unit-secret"),
            ("unsubscribe_url", "https://shop.example/u/{customer_id}"),
        ];
        for (k, v) in extra {
            settings.retain(|(key, _)| key != k);
            settings.push((k, v));
        }
        let mut ch = channel(&settings);
        ch.timeout_ms = 1_000;
        let body = serde_json::json!({
            "id": "order-7:cart",
            "policy": "abandoned_cart",
            "customer": { "id": "c 42", "contacts": { "email": contact } },
            "content": content,
        });
        let notification =
            crate::notification::parse(body.to_string().as_bytes(), 1 << 20).unwrap();
        let order = crate::core::SendOrder {
            step: 0,
            channel: "email".into(),
            attempt: 1,
        };
        let out = Outgoing {
            notification: &notification,
            order: &order,
            channel: &ch,
            contact: Some(contact),
            public_url: "http://127.0.0.1:8080/",
            tracking_until_ms: i64::MAX,
            now_ms: 0,
        };
        send(transports, &out).await
    }

    fn text(t: &str) -> serde_json::Value {
        serde_json::json!({ "text": t })
    }

    fn is(outcome: &SendOutcome, word: &str) -> bool {
        let w = match outcome {
            SendOutcome::Sent { .. } => "sent",
            SendOutcome::Transient { .. } => "transient",
            SendOutcome::RateLimited { .. } => "rate_limited",
            SendOutcome::Permanent { .. } => "permanent",
            SendOutcome::Misconfigured { .. } => "misconfigured",
            SendOutcome::Ambiguous { .. } => "ambiguous",
        };
        w == word
    }

    #[tokio::test]
    async fn lettre_errors_map_to_the_table() {
        let sink = smtp::start().await.unwrap();
        let t = Transports::default();
        let port = sink.port();
        let to = "ivan@example.ru";

        let sent = send_via(&t, port, &[], to, text("Hi")).await;
        let expected = message_id("order-7:cart", 0, "shop.example");
        assert_eq!(
            sent,
            SendOutcome::Sent {
                provider_message_id: Some(expected)
            }
        );
        for (answer, word, code) in [
            (Answer::RcptTransient, "transient", "450"),
            (Answer::RcptPermanent, "permanent", "550"),
            (Answer::DataTransient, "transient", "451"),
            (Answer::DataPermanent, "permanent", "554"),
            (Answer::AuthFailed, "misconfigured", "530"),
            (Answer::DropAfterData, "ambiguous", "incomplete response"),
        ] {
            sink.then(answer.clone(), 1);
            let o = send_via(&t, port, &[], to, text("Hi")).await;
            assert!(is(&o, word), "{answer:?}: {o:?}");
            assert!(format!("{o:?}").contains(code), "{answer:?}: {o:?}");
        }
        // A wrong password: 535 on AUTH.
        sink.require_auth("shop", "right");
        let o = send_via(
            &t,
            port,
            &[("username", "shop"), ("password", "wrong")],
            to,
            text("Hi"),
        )
        .await;
        assert!(
            is(&o, "misconfigured") && format!("{o:?}").contains("535"),
            "{o:?}"
        );
        let o = send_via(
            &t,
            port,
            &[("username", "shop"), ("password", "right")],
            to,
            text("Hi"),
        )
        .await;
        assert!(is(&o, "sent"), "{o:?}");
        // Slow past the timeout: uncertain, and the pool is discarded.
        sink.then(Answer::Slow(Duration::from_millis(1_500)), 1);
        let o = send_via(
            &t,
            port,
            &[("username", "shop"), ("password", "right")],
            to,
            text("Hi"),
        )
        .await;
        assert_eq!(
            o,
            SendOutcome::Ambiguous {
                reason: "no answer from the relay within the timeout".into()
            }
        );
        assert!(t.cache.lock().unwrap().0.is_empty(), "the pool was dropped");

        // Nothing listens: refused before anything was sent.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        let o = send_via(&t, closed_port, &[], to, text("Hi")).await;
        assert!(
            is(&o, "transient") && format!("{o:?}").contains("cannot connect"),
            "{o:?}"
        );
        // TLS from the first byte against a plain-text port.
        let o = send_via(&t, port, &[("tls", "tls")], to, text("Hi")).await;
        assert!(
            is(&o, "misconfigured") && format!("{o:?}").contains("TLS handshake"),
            "{o:?}"
        );
        // STARTTLS required, the sink does not offer it.
        let o = send_via(&t, port, &[("tls", "starttls")], to, text("Hi")).await;
        assert!(
            is(&o, "misconfigured") && format!("{o:?}").contains("STARTTLS"),
            "{o:?}"
        );
        // A non-ASCII address, the sink lacks SMTPUTF8.
        let o = send_via(&t, port, &[], "иван@example.ru", text("Hi")).await;
        assert!(
            is(&o, "permanent") && format!("{o:?}").contains("SMTPUTF8"),
            "{o:?}"
        );
        // Not an address at all.
        let o = send_via(&t, port, &[], "nobody", text("Hi")).await;
        assert!(is(&o, "permanent"), "{o:?}");
        // Settings that cannot work are refused when read, before any send.
        let port = port.to_string();
        let nobody = [
            ("host", "127.0.0.1"),
            ("port", port.as_str()),
            ("from", "nobody"),
        ];
        assert!(read_settings(&nobody).unwrap_err().contains("from"));
    }

    #[tokio::test]
    async fn the_message_carries_ids_unsubscribe_and_tracking() {
        let sink = smtp::start().await.unwrap();
        let t = Transports::default();
        let content = serde_json::json!({
            "text": "Вы забыли корзину\nЗагляните: https://shop.example/cart?id=7&x=1",
            "link": "https://shop.example/cart?id=7&x=1",
        });
        let o = send_via(&t, sink.port(), &[], "ivan@example.ru", content.clone()).await;
        assert!(is(&o, "sent"), "{o:?}");
        let o = send_via(&t, sink.port(), &[], "ivan@example.ru", content).await;
        assert!(is(&o, "sent"), "{o:?}");
        let mails = sink.accepted();
        let mail = &mails[0];
        assert_eq!(mail.rcpt_to, ["ivan@example.ru"]);
        assert_eq!(mail.mail_from, "noreply@shop.example");
        let id = message_id("order-7:cart", 0, "shop.example");
        assert_eq!(mail.header("Message-ID").as_deref(), Some(id.as_str()));
        assert_eq!(mails[1].header("Message-ID").as_deref(), Some(id.as_str()));
        assert_eq!(
            mail.header("List-Unsubscribe").as_deref(),
            Some("<https://shop.example/u/c%2042>")
        );
        assert_eq!(
            mail.header("List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
        assert!(mail.header("Subject").is_some());
        assert!(mail.header("Date").is_some());
        let plain = mail.text().unwrap();
        let html = mail.html().unwrap();
        assert!(plain.starts_with("Вы забыли корзину"), "{plain}");
        assert!(
            !plain.contains("https://shop.example/cart"),
            "the text's link is tracked: {plain}"
        );
        assert!(plain.contains("http://127.0.0.1:8080/t/c/"), "{plain}");
        assert!(html.contains("Вы забыли корзину<br>"), "{html}");
        assert!(
            html.contains("Загляните: <a href=\"http://127.0.0.1:8080/t/c/"),
            "the link in the text became a tracked anchor: {html}"
        );
        assert_eq!(
            html.matches("https://shop.example/cart").count(),
            1,
            "{html}"
        );
        assert!(
            html.contains(">https://shop.example/cart?id=7&amp;x=1</a>"),
            "{html}"
        );
        let pixel = mail.pixel_url().unwrap();
        let token = pixel
            .strip_prefix("http://127.0.0.1:8080/t/o/")
            .and_then(|p| p.strip_suffix(".gif"))
            .unwrap();
        let secret = |_: &str| Some("unit-secret".to_owned());
        assert_eq!(
            verify(token, secret).unwrap(),
            TrackingToken {
                channel: "email".into(),
                notification_id: "order-7:cart".into(),
                step: 0,
                tracked: Tracked::Open,
                until_ms: i64::MAX,
            }
        );
        let links = mail.links();
        assert_eq!(links.len(), 1, "{links:?}");
        let click = links[0].strip_prefix("http://127.0.0.1:8080/t/c/").unwrap();
        assert_eq!(
            verify(click, secret).unwrap().tracked,
            Tracked::Click {
                url: "https://shop.example/cart?id=7&x=1".into()
            }
        );
        // Without a tracking secret: no pixel, links as they are.
        let o = send_via(
            &t,
            sink.port(),
            &[("tracking_secret", "")],
            "ivan@example.ru",
            serde_json::json!({ "text": "Hi", "subject": "S",
                "html": "<html><body><a href=\"https://shop.example/x\">x</a></body></html>" }),
        )
        .await;
        assert!(is(&o, "sent"), "{o:?}");
        let mail = sink.accepted().pop().unwrap();
        assert_eq!(mail.pixel_url(), None);
        assert_eq!(mail.links(), ["https://shop.example/x"]);
    }

    #[tokio::test]
    async fn a_transport_is_kept_until_its_settings_change() {
        let transports = Transports::default();
        let ch = channel(&[
            ("host", "127.0.0.1"),
            ("tls", "none"),
            ("port", "2525"),
            ("from", "a@b.example"),
        ]);
        let shape = ch.settings.as_email().unwrap().shape.clone();
        transports.get("email", &shape).unwrap();
        transports.get("email", &shape).unwrap();
        assert_eq!(transports.cache.lock().unwrap().0.len(), 1);
        let first = transports.cache.lock().unwrap().0["email"].shape.port;
        let mut moved = shape.clone();
        moved.port = 2526;
        transports.get("email", &moved).unwrap();
        let cache = transports.cache.lock().unwrap();
        assert_eq!(cache.0.len(), 1, "replaced, not added");
        assert_eq!((first, cache.0["email"].shape.port), (2525, 2526));
    }
}
