//! Open and click tracking: signed tokens in the pixel and link URLs, so
//! nobody can forge an `opened` or `clicked` receipt or turn the redirect
//! into an open one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::settings::is_http_url;

/// Longest tracking token accepted, in bytes (a 2 KiB link makes ~2.9 KiB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

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
pub(super) const MAC_CONTEXT_V1: &[u8] = b"cascade email tracking v1\n";

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

pub(super) fn mac_in(context: &[u8], secret: &str, payload_b64: &str) -> Option<Hmac<Sha256>> {
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
pub(super) struct Tracker<'a> {
    pub(super) secret: &'a str,
    /// `http.public_url` without a trailing slash.
    pub(super) base: &'a str,
    pub(super) channel: &'a str,
    pub(super) notification_id: &'a str,
    pub(super) step: u8,
    pub(super) until_ms: i64,
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

    pub(super) fn pixel(&self) -> String {
        format!("{}/t/o/{}.gif", self.base, self.token(Tracked::Open))
    }

    pub(super) fn click(&self, url: &str) -> String {
        let token = self.token(Tracked::Click {
            url: url.to_owned(),
        });
        format!("{}/t/c/{token}", self.base)
    }
}
