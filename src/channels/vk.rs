//! `vk` channels: community messages through `messages.send` (docs/provider-notes.md, "VK").
//!
//! One form-urlencoded `POST {base_url}/messages.send` per step with the
//! community's `access_token`, the API version `v`, `peer_id` = the customer's
//! VK contact (a numeric peer id), the text (and `content.link` on a line of
//! its own when the text does not show it yet) and a `random_id`.
//!
//! `random_id` is VK's deduplication key: a send repeated with the same one
//! does not make a second message. It is derived from the notification id and
//! step (`random_id`), so every attempt of one step carries the same key and
//! an uncertain send may safely be resent (the channel's `on_uncertain`
//! defaults to `resend` for this kind). The message id VK answers is the
//! provider message id; the worker files it under the peer, so a Callback API
//! `message_read` watermark (`http::callbacks::vk`) marks every message up to
//! it as read.
//!
//! Errors come back as HTTP 200 with `{"error":{"error_code":N,…}}`; the code
//! decides (`classify_error`), the HTTP status only matters without one.

use std::time::Duration;

use serde::Deserialize;
use serde::de::{Deserializer, Error as _};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Outgoing;
use super::settings::{self, ChannelSettings, Role, Secret};
use crate::core::SendOutcome;

/// The provider keys of a `vk` channel file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VkSettings {
    /// The community's key with the `messages` permission.
    pub access_token: String,
    /// Where `messages.send` lives (a fake in tests); `DEFAULT_BASE_URL` when unset.
    #[serde(default, deserialize_with = "settings::base_url")]
    pub base_url: Option<String>,
    /// The community's id: Callback API events of another community are refused.
    #[serde(default, deserialize_with = "group_id")]
    pub group_id: Option<i64>,
    /// VK API version `v`; `DEFAULT_API_VERSION` when unset or empty.
    #[serde(default)]
    pub api_version: Option<String>,
    /// The Callback API's `secret`, checked on every event.
    #[serde(default)]
    pub callback_secret: Option<String>,
    /// The string VK expects back when it confirms the callback address.
    #[serde(default)]
    pub confirmation: Option<String>,
}

/// The secrets of a `vk` channel.
pub const SECRETS: &[Secret<VkSettings>] = &[
    Secret {
        key: "access_token",
        role: Role::Credential,
        off_when_empty: false,
        value: |s| Some(&s.access_token),
    },
    Secret {
        key: "callback_secret",
        role: Role::Guard,
        off_when_empty: false,
        value: |s| s.callback_secret.as_deref(),
    },
];

/// `group_id`: a community id, a positive whole number; empty means unset
/// (so `"${VK_GROUP_ID:-}"` turns the check off).
fn group_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let text = String::deserialize(d)?;
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    match t.parse::<i64>() {
        Ok(id) if id > 0 => Ok(Some(id)),
        _ => Err(D::Error::custom(format!(
            "`{text}` is not a VK community id; write the community's number, e.g. group_id = \"123456\""
        ))),
    }
}

pub const DEFAULT_BASE_URL: &str = "https://api.vk.com/method";
pub const DEFAULT_API_VERSION: &str = "5.199";
/// The longest `message` VK takes (`messages.send`, VK's JSON schema).
pub const MAX_MESSAGE_CHARS: usize = 9000;

/// After error 6 (too many requests per second; 20 rps for a community key).
const TOO_MANY_RPS_RETRY_MS: i64 = 1_000;
/// After error 9 (flood control): VK names no delay, and a cascade is better
/// off escalating after a few of these than waiting for hours.
const FLOOD_CONTROL_RETRY_MS: i64 = 60_000;
/// After an HTTP 429 without `Retry-After`.
const HTTP_429_RETRY_MS: i64 = 1_000;

/// A `messages.send` answer: `{"response": <message id>}` or
/// `{"error": {"error_code": N, "error_msg": "…", "request_params": […]}}`.
#[derive(Debug, Default, Deserialize)]
pub struct Answer {
    #[serde(default)]
    pub response: Option<Value>,
    #[serde(default)]
    pub error: Option<ApiError>,
}

/// VK's error object.
#[derive(Debug, Default, Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub error_code: i64,
    #[serde(default)]
    pub error_msg: String,
}

/// The `random_id` of one step of one notification: the first 31 bits of
/// SHA-256 of `Outgoing::idempotency_key` (`<notification id>:<step index
/// from 0>`, an opaque key that never changes across versions),
/// never 0 (which might turn VK's check off). The same for every attempt, so
/// VK keeps one message however often the step is retried; 31 bits because
/// VK takes a signed 32-bit integer here.
pub fn random_id(idempotency_key: &str) -> i64 {
    let digest = Sha256::digest(idempotency_key.as_bytes());
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) & 0x7fff_ffff;
    i64::from(n.max(1))
}

/// The text VK gets: the notification's text, and its link on a line of its
/// own when the text does not contain it yet and both fit in `max_chars`.
pub fn message_text(text: &str, link: Option<&str>, max_chars: usize) -> String {
    let mut message = text.to_owned();
    if let Some(link) = link.map(str::trim).filter(|l| !l.is_empty())
        && !text.contains(link)
        && text.chars().count() + 1 + link.chars().count() <= max_chars
    {
        if !message.is_empty() {
            message.push('\n');
        }
        message.push_str(link);
    }
    message
}

/// A VK contact as a peer id: a user id, `2000000000 + chat id`, or
/// `-<community id>`, in canonical decimal form (callbacks name the peer in
/// that form, so `"0123"` or `"id123"` would never be matched back).
pub fn peer_id(contact: &str) -> Option<i64> {
    contact
        .parse::<i64>()
        .ok()
        .filter(|p| *p != 0 && p.to_string() == contact)
}

/// How a VK error code is read (codes and names from VK's `errors.json`;
/// the class is ours; docs/provider-notes.md, "VK").
///
/// | code | VK's name | outcome |
/// |---|---|---|
/// | 1 | unknown error | transient |
/// | 10 | internal server error | transient |
/// | 6 | too many requests per second | rate-limited, 1 s |
/// | 9 | flood control | rate-limited, 60 s |
/// | 5 | user authorization failed (bad token) | misconfigured |
/// | 7 | permission denied | misconfigured |
/// | 15 | access denied (e.g. community messages off) | misconfigured |
/// | 27 | group authorization failed (bad or revoked community token) | misconfigured |
/// | 28 | application authorization failed | misconfigured |
/// | 100 | a parameter missing or invalid | misconfigured (a bug: peer and text are checked before sending) |
/// | 911, 912, 913 | keyboard invalid, chat-bot feature off, too many forwards | misconfigured |
/// | 985 | cannot write to a notifications-only group | misconfigured |
/// | 1117 | access token has expired | misconfigured |
/// | 14 | captcha needed | permanent (a daemon cannot solve it); logged as an error |
/// | 29 | rate limit reached (the method's daily quota) | permanent: waiting hours is no use to a cascade |
/// | 910, 914 | message too big, message too long | permanent (see below) |
/// | 18 | user deleted or banned | permanent |
/// | 104 | not found | permanent |
/// | 113 | invalid user id | permanent |
/// | 900 | recipient has the community on the blacklist | permanent |
/// | 901 | no permission: the user never wrote or denied messages | permanent |
/// | 902 | the user's privacy settings forbid it | permanent |
/// | 917, 922, 927, 945, 946, 1012 | no access to / left / no such / disabled / unsupported chat, writing disabled | permanent |
/// | 932 | the community cannot interact with this peer | permanent |
/// | 936 | contact not found | permanent |
/// | 950 | reply timed out | permanent |
/// | 987, 988 | a message request is needed / pending | permanent |
/// | any other code | | permanent: escalate rather than guess |
///
/// 914 (message too long) reads like a configuration error, but it is
/// one for this notification's text only (intake checks `max_length`, 4096
/// by default): treating it as misconfigured would open the circuit breaker
/// and stop the channel for every customer because of one text.
pub fn classify_error(code: i64, message: &str) -> SendOutcome {
    let said = format!("VK error {code}: {message}");
    match code {
        1 | 10 => SendOutcome::Transient {
            reason: said,
            retry_after_ms: None,
        },
        6 => SendOutcome::RateLimited {
            retry_after_ms: TOO_MANY_RPS_RETRY_MS,
        },
        9 => SendOutcome::RateLimited {
            retry_after_ms: FLOOD_CONTROL_RETRY_MS,
        },
        5 | 7 | 15 | 27 | 28 | 1117 => SendOutcome::Misconfigured {
            reason: format!(
                "{said}; check the community's access_token and its messages permission"
            ),
        },
        100 | 911 | 912 | 913 | 985 => SendOutcome::Misconfigured { reason: said },
        _ => SendOutcome::Permanent { reason: said },
    }
}

/// How a whole `messages.send` answer is read: VK's error code first (VK
/// answers errors with HTTP 200), then the HTTP status.
///
/// | answer | outcome |
/// |---|---|
/// | `{"response": <message id>}` | sent; the message id is the provider message id |
/// | `{"error": {"error_code": N}}`, any status | by `classify_error` |
/// | 2xx without either (unreadable) | ambiguous: something answered; the resend is deduplicated by `random_id` |
/// | 429 | rate-limited, after `Retry-After` (default 1 s) |
/// | 408, 5xx | transient |
/// | other 4xx | misconfigured: `base_url` does not lead to the VK API |
pub fn classify(
    status: u16,
    answer: Option<&Answer>,
    retry_after: Option<Duration>,
) -> SendOutcome {
    if let Some(error) = answer.and_then(|a| a.error.as_ref()) {
        return classify_error(error.error_code, &error.error_msg);
    }
    if let Some(response) = answer.and_then(|a| a.response.as_ref()) {
        if let Some(id) = message_id(response) {
            return SendOutcome::Sent {
                provider_message_id: Some(id.to_string()),
            };
        }
        return SendOutcome::Ambiguous {
            reason: format!("HTTP {status}: a response without a message id: {response}"),
        };
    }
    // Saturating: `Retry-After: 18446744073709551615` must not wrap into
    // the past. The core caps it at the channel's `max_backoff`.
    let after_ms = retry_after.map(super::duration_ms);
    match status {
        200..=299 => SendOutcome::Ambiguous {
            reason: format!("HTTP {status} without a readable VK answer"),
        },
        429 => SendOutcome::RateLimited {
            retry_after_ms: after_ms.unwrap_or(HTTP_429_RETRY_MS),
        },
        408 | 500..=599 => SendOutcome::Transient {
            reason: format!("HTTP {status}"),
            retry_after_ms: after_ms,
        },
        _ => SendOutcome::Misconfigured {
            reason: format!("HTTP {status}: check the VK channel's base_url"),
        },
    }
}

/// The message id of a `response`: a number (or a numeric string).
fn message_id(response: &Value) -> Option<i64> {
    response
        .as_i64()
        .or_else(|| response.as_str().and_then(|s| s.parse().ok()))
        .filter(|id| *id > 0)
}

/// Sends the notification and classifies the answer.
pub async fn send(http: &reqwest::Client, out: &Outgoing<'_>) -> SendOutcome {
    let channel = out.channel;
    let ChannelSettings::Vk(settings) = &channel.settings else {
        return SendOutcome::Misconfigured {
            reason: "not a vk channel".into(),
        };
    };
    let token = settings.access_token.as_str();
    if token.is_empty() {
        return SendOutcome::Misconfigured {
            reason: "the vk channel has no access_token".into(),
        };
    }
    let Some(contact) = out.contact.filter(|c| !c.is_empty()) else {
        return SendOutcome::Permanent {
            reason: "the customer has no VK peer id".into(),
        };
    };
    let Some(peer) = peer_id(contact) else {
        return SendOutcome::Permanent {
            reason: "the customer's VK contact is not a numeric peer id (a user id such as 123456, without prefix or leading zeros)".into(),
        };
    };
    let max_chars = channel
        .max_length
        .unwrap_or(MAX_MESSAGE_CHARS)
        .min(MAX_MESSAGE_CHARS);
    let message = message_text(
        out.text(),
        out.notification.content.link.as_deref(),
        max_chars,
    );
    if message.trim().is_empty() {
        return SendOutcome::Permanent {
            reason: "nothing to send: the text for VK is empty".into(),
        };
    }
    let base = settings
        .base_url
        .as_deref()
        .unwrap_or(DEFAULT_BASE_URL)
        .trim_end_matches('/');
    let version = settings
        .api_version
        .as_deref()
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_API_VERSION);
    let random = random_id(&out.idempotency_key());
    let form = [
        ("access_token", token.to_owned()),
        ("v", version.to_owned()),
        ("peer_id", peer.to_string()),
        ("random_id", random.to_string()),
        ("message", message),
    ];
    // The token goes in the body, never in the URL, so it is not logged with it.
    let request = super::post(http, &format!("{base}/messages.send"))
        .timeout(Duration::from_millis(channel.timeout_ms.max(1) as u64))
        .form(&form);
    let Reply {
        status,
        retry_after,
        answer,
    } = match exchange(request, random).await {
        Ok(reply) => reply,
        Err(outcome) => return outcome,
    };
    let outcome = classify(status, answer.as_ref(), retry_after);
    if let Some(error) = answer.as_ref().and_then(|a| a.error.as_ref())
        && error.error_code == 14
    {
        tracing::error!(
            channel = %channel.name,
            "VK asks for a captcha; the daemon cannot solve one: lower the channel's rate"
        );
    }
    outcome
}

/// What VK answered: the HTTP status, its `Retry-After` and the body, read
/// as an answer when it is one.
struct Reply {
    status: u16,
    retry_after: Option<Duration>,
    answer: Option<Answer>,
}

/// Sends the request and reads the whole answer; `Err` is the outcome when
/// none came back (nothing sent, or maybe sent: `random_id` names it).
async fn exchange(request: reqwest::RequestBuilder, random: i64) -> Result<Reply, SendOutcome> {
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) if e.is_builder() => {
            return Err(SendOutcome::Misconfigured {
                reason: format!("cannot build the request; check base_url: {e}"),
            });
        }
        Err(e) if e.is_connect() => {
            return Err(SendOutcome::Transient {
                reason: format!("cannot connect: {e}"),
                retry_after_ms: None,
            });
        }
        Err(e) => {
            return Err(SendOutcome::Ambiguous {
                reason: format!("no answer after sending (random_id {random}): {e}"),
            });
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return Err(SendOutcome::Ambiguous {
                reason: format!(
                    "HTTP {status}, but the answer broke off (random_id {random}): {e}"
                ),
            });
        }
    };
    Ok(Reply {
        status,
        retry_after,
        answer: serde_json::from_slice::<Answer>(&body).ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(id: &str) -> SendOutcome {
        SendOutcome::Sent {
            provider_message_id: Some(id.into()),
        }
    }

    fn error(code: i64) -> SendOutcome {
        classify_error(code, "message")
    }

    fn answer(json: &str) -> Answer {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn every_row_of_the_error_table() {
        for code in [1, 10] {
            assert!(
                matches!(error(code), SendOutcome::Transient { .. }),
                "{code}"
            );
        }
        assert_eq!(
            error(6),
            SendOutcome::RateLimited {
                retry_after_ms: 1_000
            }
        );
        assert_eq!(
            error(9),
            SendOutcome::RateLimited {
                retry_after_ms: 60_000
            }
        );
        for code in [5, 7, 15, 27, 28, 100, 911, 912, 913, 985, 1117] {
            assert!(
                matches!(error(code), SendOutcome::Misconfigured { .. }),
                "{code}"
            );
        }
        for code in [
            14, 29, 910, 914, 18, 104, 113, 900, 901, 902, 917, 922, 927, 945, 946, 1012, 932, 936,
            950, 987, 988, 12345,
        ] {
            assert!(
                matches!(error(code), SendOutcome::Permanent { .. }),
                "{code}"
            );
        }
    }

    #[test]
    fn the_reason_names_the_code_and_vks_words() {
        let SendOutcome::Permanent { reason } =
            classify_error(901, "Can't send messages for users without permission")
        else {
            panic!("901 is permanent");
        };
        assert_eq!(
            reason,
            "VK error 901: Can't send messages for users without permission"
        );
    }

    #[test]
    fn every_row_of_the_answer_table() {
        assert_eq!(
            classify(200, Some(&answer(r#"{"response": 1001}"#)), None),
            sent("1001")
        );
        assert_eq!(
            classify(200, Some(&answer(r#"{"response": "1002"}"#)), None),
            sent("1002")
        );
        // VK's errors come with HTTP 200; the code decides, whatever the status.
        let e = r#"{"error":{"error_code":901,"error_msg":"Can't send messages for users without permission","request_params":[]}}"#;
        assert!(matches!(
            classify(200, Some(&answer(e)), None),
            SendOutcome::Permanent { .. }
        ));
        assert!(matches!(
            classify(500, Some(&answer(e)), None),
            SendOutcome::Permanent { .. }
        ));
        assert!(matches!(
            classify(200, None, None),
            SendOutcome::Ambiguous { .. }
        ));
        assert!(matches!(
            classify(200, Some(&answer("{}")), None),
            SendOutcome::Ambiguous { .. }
        ));
        assert!(matches!(
            classify(200, Some(&answer(r#"{"response": [1, 2]}"#)), None),
            SendOutcome::Ambiguous { .. }
        ));
        assert_eq!(
            classify(429, None, None),
            SendOutcome::RateLimited {
                retry_after_ms: 1_000
            }
        );
        assert_eq!(
            classify(429, None, Some(Duration::from_secs(3))),
            SendOutcome::RateLimited {
                retry_after_ms: 3_000
            }
        );
        // `Retry-After: 18446744073709551615` saturates; it does not wrap.
        assert_eq!(
            classify(429, None, Some(Duration::from_secs(u64::MAX))),
            SendOutcome::RateLimited {
                retry_after_ms: i64::MAX
            }
        );
        assert!(matches!(
            classify(408, None, None),
            SendOutcome::Transient { .. }
        ));
        assert!(matches!(
            classify(502, None, Some(Duration::from_secs(2))),
            SendOutcome::Transient {
                retry_after_ms: Some(2_000),
                ..
            }
        ));
        assert!(matches!(
            classify(404, None, None),
            SendOutcome::Misconfigured { .. }
        ));
    }

    #[test]
    fn random_id_is_stable_positive_31_bit_and_differs_by_step() {
        let a = random_id("order-1:0");
        assert_eq!(a, random_id("order-1:0"));
        assert_ne!(a, random_id("order-1:1"));
        assert_ne!(a, random_id("order-2:0"));
        for key in ["", "x", "order-1:0", "очень длинный ключ:7"] {
            let r = random_id(key);
            assert!((1..=i64::from(i32::MAX)).contains(&r), "{key}: {r}");
        }
    }

    #[test]
    fn the_link_goes_on_its_own_line_once_and_only_when_it_fits() {
        let link = Some("https://shop.example.ru/orders/1");
        assert_eq!(
            message_text("Заказ задерживается", link, 9000),
            "Заказ задерживается\nhttps://shop.example.ru/orders/1"
        );
        assert_eq!(
            message_text("See https://shop.example.ru/orders/1 now", link, 9000),
            "See https://shop.example.ru/orders/1 now"
        );
        assert_eq!(message_text("Hi", None, 9000), "Hi");
        assert_eq!(message_text("Hi", Some("  "), 9000), "Hi");
        assert_eq!(message_text("Hi", link, 10), "Hi");
    }

    #[test]
    fn peers_are_canonical_nonzero_integers() {
        assert_eq!(peer_id("123456"), Some(123456));
        assert_eq!(peer_id("-42"), Some(-42));
        assert_eq!(peer_id("2000000001"), Some(2_000_000_001));
        for bad in ["", "0", "0123", "+123", "id123", " 123", "durov"] {
            assert_eq!(peer_id(bad), None, "{bad}");
        }
    }
}
