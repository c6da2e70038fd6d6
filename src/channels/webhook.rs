//! `webhook` channels: an HTTP POST of the notification to a configured URL
//! (a call-centre task, an in-app push service). The receiver may dedupe by
//! the `Idempotency-Key` header: the notification id and step.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Serialize;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Outgoing;
use super::settings::{self, ChannelSettings, Role, Secret};
use crate::core::SendOutcome;

/// The provider keys of a `webhook` channel file.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Where each task is POSTed.
    #[serde(deserialize_with = "settings::url")]
    pub url: String,
    /// Signs each body (`SIGNATURE_HEADER`); unsigned without it.
    #[serde(default)]
    pub secret: Option<String>,
}

/// The secrets of a `webhook` channel.
pub const SECRETS: &[Secret<WebhookSettings>] = &[Secret {
    key: "secret",
    role: Role::Guard,
    off_when_empty: false,
    value: |s| s.secret.as_deref(),
}];

/// The receiver checks this header: `sha256=<hex HMAC-SHA256(secret, body)>`,
/// the same form as WhatsApp's `X-Hub-Signature-256`.
pub const SIGNATURE_HEADER: &str = "X-Cascade-Signature-256";

/// `sha256=<hex>` of the body under the channel's secret.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(), // HMAC takes keys of any length
    };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// How the answer of a webhook receiver is read.
///
/// | answer | outcome |
/// |---|---|
/// | 2xx | sent; `id` of a JSON body is the provider message id |
/// | 429 | rate-limited, after `Retry-After` (default 5 s) |
/// | 408, 5xx | transient: retry with backoff (`Retry-After` honoured) |
/// | 401, 403 | misconfigured: the credentials are wrong for every recipient |
/// | other 4xx | permanent: this notification will not be taken |
/// | no connection | transient: nothing reached the receiver |
/// | timeout or broken connection after sending | ambiguous |
pub fn classify(status: StatusCode, retry_after: Option<Duration>) -> SendOutcome {
    // Saturating: `Retry-After: 18446744073709551615` must not wrap into
    // the past. The core caps it at the channel's `max_backoff`.
    let after_ms = retry_after.map(super::duration_ms);
    match status.as_u16() {
        200..=299 => SendOutcome::Sent {
            provider_message_id: None,
        },
        429 => SendOutcome::RateLimited {
            retry_after_ms: after_ms.unwrap_or(5_000),
        },
        408 | 500..=599 => SendOutcome::Transient {
            reason: format!("HTTP {status}"),
            retry_after_ms: after_ms,
        },
        401 | 403 => SendOutcome::Misconfigured {
            reason: format!("HTTP {status}: check the webhook's credentials"),
        },
        _ => SendOutcome::Permanent {
            reason: format!("HTTP {status}"),
        },
    }
}

/// The JSON body of a POST (written straight from the notification, no
/// intermediate JSON tree: this runs for every send).
#[derive(Serialize)]
struct Task<'a> {
    notification_id: &'a str,
    policy: &'a str,
    /// Counted from 1.
    step: u32,
    channel: &'a str,
    attempt: u8,
    customer: TaskCustomer<'a>,
    contact: Option<&'a str>,
    text: Option<&'a str>,
    subject: Option<&'a str>,
    link: Option<&'a str>,
    /// A customer's reply, on a staff cascade's sends (`core::replies`).
    #[serde(skip_serializing_if = "Option::is_none")]
    reply: Option<&'a crate::notification::ReplyOf>,
}

#[derive(Serialize)]
struct TaskCustomer<'a> {
    id: &'a str,
    segment: Option<&'a str>,
}

/// Posts the notification and classifies the answer.
pub async fn send(http: &reqwest::Client, out: &Outgoing<'_>) -> SendOutcome {
    let (channel, notification, order) = (out.channel, out.notification, out.order);
    let ChannelSettings::Webhook(settings) = &channel.settings else {
        return SendOutcome::Misconfigured {
            reason: "the webhook channel has no url".into(),
        };
    };
    let url = settings.url.as_str();
    let task = Task {
        notification_id: &notification.id,
        policy: &notification.policy,
        step: order.step as u32 + 1,
        channel: &channel.name,
        attempt: order.attempt,
        customer: TaskCustomer {
            id: &notification.customer.id,
            segment: notification.customer.segment.as_deref(),
        },
        contact: out.contact,
        text: Some(out.text()).filter(|t| !t.is_empty()),
        subject: out.subject(),
        link: notification.content.link.as_deref(),
        reply: notification.reply.as_ref(),
    };
    let bytes = match serde_json::to_vec(&task) {
        Ok(b) => b,
        Err(e) => {
            return SendOutcome::Permanent {
                reason: format!("cannot encode the task: {e}"),
            };
        }
    };
    let mut request = super::post(http, url)
        .timeout(Duration::from_millis(channel.timeout_ms.max(1) as u64))
        .header("Idempotency-Key", out.idempotency_key())
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    if let Some(secret) = settings.secret.as_deref() {
        request = request.header(SIGNATURE_HEADER, signature(secret, &bytes));
    }
    let request = request.body(bytes);
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let mut outcome = classify(status, retry_after);
            if let SendOutcome::Sent {
                provider_message_id,
            } = &mut outcome
            {
                // A receiver may name its task; keep it for the timeline.
                let json: Option<serde_json::Value> = response.json().await.ok();
                *provider_message_id = json
                    .as_ref()
                    .and_then(|v| v.get("id"))
                    .map(|id| id.as_str().map_or_else(|| id.to_string(), str::to_owned));
            }
            outcome
        }
        Err(e) if e.is_connect() => SendOutcome::Transient {
            reason: format!("cannot connect: {e}"),
            retry_after_ms: None,
        },
        Err(e) => SendOutcome::Ambiguous {
            reason: format!("no answer after sending: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn every_row_of_the_table() {
        let c = |code: u16, ra: Option<u64>| {
            classify(
                StatusCode::from_u16(code).unwrap(),
                ra.map(Duration::from_secs),
            )
        };
        assert_eq!(
            c(200, None),
            SendOutcome::Sent {
                provider_message_id: None
            }
        );
        assert_eq!(
            c(204, None),
            SendOutcome::Sent {
                provider_message_id: None
            }
        );
        assert_eq!(
            c(429, None),
            SendOutcome::RateLimited {
                retry_after_ms: 5_000
            }
        );
        assert_eq!(
            c(429, Some(3)),
            SendOutcome::RateLimited {
                retry_after_ms: 3_000
            }
        );
        // Absurd delays saturate instead of wrapping into the past (the core
        // then caps them at `max_backoff`).
        for huge in [99_999_999_999, u64::MAX] {
            match c(429, Some(huge)) {
                SendOutcome::RateLimited { retry_after_ms } => {
                    assert!(
                        retry_after_ms >= 99_999_999_999_000,
                        "{huge}: {retry_after_ms}"
                    )
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(c(408, None), SendOutcome::Transient { .. }));
        assert!(matches!(
            c(503, Some(2)),
            SendOutcome::Transient {
                retry_after_ms: Some(2_000),
                ..
            }
        ));
        assert!(matches!(c(401, None), SendOutcome::Misconfigured { .. }));
        assert!(matches!(c(403, None), SendOutcome::Misconfigured { .. }));
        assert!(matches!(c(404, None), SendOutcome::Permanent { .. }));
        assert!(matches!(c(422, None), SendOutcome::Permanent { .. }));
    }
}
