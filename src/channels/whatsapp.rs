//! `whatsapp` channels: the WhatsApp Business Cloud API (docs/provider-notes.md, "WhatsApp Cloud API"),
//! `POST {base_url}/{api_version}/{phone_number_id}/messages`.
//!
//! Free-form text may only be sent inside the 24-hour window opened by the
//! customer's last message; outside it only a pre-approved template may be
//! sent. The daemon does not track that window, so the choice is the
//! channel's: with a `template` setting every step on the channel sends that
//! template (language `template_language`) with the notification's text as
//! its single body parameter; without one it sends `type: "text"`. Business-
//! initiated notifications are nearly always outside the window, so
//! production channels should name a template.
//!
//! Every message carries `biz_opaque_callback_data` = the idempotency key
//! (`<notification id>:<step>`), which Meta echoes in status webhooks; the
//! callbacks use it when the wamid is not (yet) mapped. The Cloud API has no
//! idempotency key, so an uncertain send is not resent by default.
//!
//! Many refusals arrive later, as a `failed` status webhook (131047, 131026
//! …): the callbacks record `failed`, which escalates the step at once.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::Outgoing;
use super::settings::{self, ChannelSettings, Role, Secret};
use crate::core::SendOutcome;

/// The provider keys of a `whatsapp` channel file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsappSettings {
    pub phone_number_id: String,
    pub access_token: String,
    /// `DEFAULT_BASE_URL` when unset.
    #[serde(default, deserialize_with = "settings::base_url")]
    pub base_url: Option<String>,
    /// Graph API version; `DEFAULT_API_VERSION` when unset.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Signs the status webhooks (`X-Hub-Signature-256`).
    #[serde(default)]
    pub app_secret: Option<String>,
    /// Answers Meta's subscription check.
    #[serde(default)]
    pub verify_token: Option<String>,
    /// An approved template to send the text in; free-form text without.
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub template_language: Option<String>,
}

/// The secrets of a `whatsapp` channel.
pub const SECRETS: &[Secret<WhatsappSettings>] = &[
    Secret {
        key: "access_token",
        role: Role::Credential,
        off_when_empty: false,
        value: |s| Some(&s.access_token),
    },
    Secret {
        key: "app_secret",
        role: Role::Guard,
        off_when_empty: false,
        value: |s| s.app_secret.as_deref(),
    },
    Secret {
        key: "verify_token",
        role: Role::Guard,
        off_when_empty: false,
        value: |s| s.verify_token.as_deref(),
    },
];

pub const DEFAULT_BASE_URL: &str = "https://graph.facebook.com";
pub const DEFAULT_API_VERSION: &str = "v21.0";

/// Cool-downs when Meta names none (it never sends a retry-after).
const THROUGHPUT_RETRY_MS: i64 = 1_000;
/// The pair rate limit is about one message per six seconds per recipient.
const PAIR_RETRY_MS: i64 = 6_000;
const APP_RATE_RETRY_MS: i64 = 60_000;

/// A Graph API answer: `{"messages":[{"id":"wamid…"}],…}` or `{"error":{…}}`.
#[derive(Debug, Default, Deserialize)]
pub struct Answer {
    #[serde(default)]
    pub messages: Vec<MessageRef>,
    #[serde(default)]
    pub error: Option<GraphError>,
}

#[derive(Debug, Default, Deserialize)]
pub struct MessageRef {
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct GraphError {
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub error_data: Option<ErrorData>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ErrorData {
    #[serde(default)]
    pub details: Option<String>,
}

/// How a Cloud API answer is read: by the Graph error `code` when there is
/// one, else by the HTTP status.
///
/// | answer | outcome |
/// |---|---|
/// | 2xx with `messages[0].id` | sent; the wamid is the provider message id |
/// | 2xx without it | sent, without an id (statuses will map through `biz_opaque_callback_data`) |
/// | 131047 re-engagement (outside the 24-hour window) | permanent for this customer (see below) |
/// | 131026 undeliverable, 131049, 131050, 130472, 131021 | permanent for this customer |
/// | 131048 spam rate limit | permanent: retrying soon does not help |
/// | 130429 throughput | rate-limited, 1 s |
/// | 131056 pair rate limit | rate-limited, 6 s |
/// | 4, 80007 app / account call limit | rate-limited, 60 s |
/// | 1, 2, 131000, 131016, 133004 | transient |
/// | 0, 3, 10, 190, 200–299 (token, permission) | misconfigured |
/// | 100, 131008, 131009, 131051, 131053, 132000–132016 (parameters, templates) | misconfigured |
/// | 368, 131031, 131042 (account restricted, payment) | misconfigured |
/// | other code: HTTP 401 / 403 | misconfigured |
/// | other code: HTTP 429 | rate-limited, 1 s |
/// | other code: HTTP 5xx | transient |
/// | other code: other 4xx | permanent |
/// | no connection | transient |
/// | timeout or broken connection after sending | ambiguous |
///
/// 131047 is permanent, not misconfigured, even on a channel without a
/// template: the window is per customer, so the same channel still reaches
/// customers who wrote in the last 24 hours, and a misconfigured answer
/// would open the circuit breaker and stop them all. The reason says to
/// configure `template`.
pub fn classify(status: u16, answer: Option<&Answer>) -> SendOutcome {
    let error = answer.and_then(|a| a.error.as_ref());
    if (200..300).contains(&status) && error.is_none() {
        let wamid = answer
            .and_then(|a| a.messages.first())
            .and_then(|m| m.id.clone())
            .filter(|id| !id.is_empty());
        return SendOutcome::Sent {
            provider_message_id: wamid,
        };
    }
    let code = error.and_then(|e| e.code);
    let said = Said {
        status,
        code,
        text: error.map(error_text).unwrap_or_default(),
    };
    let reason = |hint: &str| said.reason(hint);
    match code {
        Some(131047) => SendOutcome::Permanent {
            reason: reason(
                "outside the 24-hour window only templates may be sent: set `template` on this channel",
            ),
        },
        Some(131026 | 131049 | 131050 | 130472 | 131021 | 131048) => {
            SendOutcome::Permanent { reason: reason("") }
        }
        Some(130429) => SendOutcome::RateLimited {
            retry_after_ms: THROUGHPUT_RETRY_MS,
        },
        Some(131056) => SendOutcome::RateLimited {
            retry_after_ms: PAIR_RETRY_MS,
        },
        Some(4 | 80007) => SendOutcome::RateLimited {
            retry_after_ms: APP_RATE_RETRY_MS,
        },
        Some(1 | 2 | 131000 | 131016 | 133004) => SendOutcome::Transient {
            reason: reason(""),
            retry_after_ms: None,
        },
        Some(0 | 3 | 10 | 190 | 200..=299) => SendOutcome::Misconfigured {
            reason: reason("check access_token and its permissions"),
        },
        Some(100 | 131008 | 131009 | 131051 | 131053 | 132000..=132016) => {
            SendOutcome::Misconfigured {
                reason: reason("check phone_number_id, template and template_language"),
            }
        }
        Some(368 | 131031 | 131042) => SendOutcome::Misconfigured {
            reason: reason("the business account is restricted"),
        },
        _ => match status {
            401 | 403 => SendOutcome::Misconfigured {
                reason: reason("check access_token"),
            },
            429 => SendOutcome::RateLimited {
                retry_after_ms: THROUGHPUT_RETRY_MS,
            },
            500..=599 => SendOutcome::Transient {
                reason: reason(""),
                retry_after_ms: None,
            },
            _ => SendOutcome::Permanent { reason: reason("") },
        },
    }
}

/// What the Cloud API said about a failed send, for the outcome's reason.
struct Said {
    status: u16,
    code: Option<i64>,
    text: String,
}

impl Said {
    /// `HTTP <status>, code <code>: <text>; <hint>`, leaving out what is missing.
    fn reason(&self, hint: &str) -> String {
        let status = self.status;
        let head = match self.code {
            Some(c) => format!("HTTP {status}, code {c}"),
            None => format!("HTTP {status}"),
        };
        let mut r = if self.text.is_empty() {
            head
        } else {
            format!("{head}: {}", self.text)
        };
        if !hint.is_empty() {
            r.push_str("; ");
            r.push_str(hint);
        }
        r
    }
}

/// The error's message, with its details when it has any.
fn error_text(e: &GraphError) -> String {
    let message = e.message.as_deref().unwrap_or("");
    match e.error_data.as_ref().and_then(|d| d.details.as_deref()) {
        Some(details) if !details.is_empty() => format!("{message} ({details})"),
        _ => message.to_owned(),
    }
}

/// `+7 916 …` → `7916…`: the Cloud API takes the number's digits.
pub fn recipient(contact: &str) -> String {
    contact.chars().filter(char::is_ascii_digit).collect()
}

/// `{base_url}/{api_version}/{phone_number_id}/messages`.
fn messages_url(base: &str, version: &str, phone_number_id: &str) -> String {
    let base = base.trim_end_matches('/');
    let version = version.trim_matches('/');
    if version.starts_with('v') {
        format!("{base}/{version}/{phone_number_id}/messages")
    } else {
        format!("{base}/v{version}/{phone_number_id}/messages")
    }
}

/// The message body: a template when the channel names one, else text.
pub fn message_body(out: &Outgoing<'_>, to: &str) -> Result<Value, String> {
    let channel = out.channel;
    let settings = channel.settings.as_whatsapp();
    let text = out.text();
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "biz_opaque_callback_data": out.idempotency_key(),
    });
    if let Some(template) = settings
        .and_then(|s| s.template.as_deref())
        .filter(|t| !t.is_empty())
    {
        let Some(language) = settings
            .and_then(|s| s.template_language.as_deref())
            .filter(|l| !l.is_empty())
        else {
            return Err("`template` needs `template_language` (e.g. \"ru\")".into());
        };
        body["type"] = json!("template");
        body["template"] = json!({
            "name": template,
            "language": { "code": language },
            "components": [{ "type": "body", "parameters": [{ "type": "text", "text": text }] }],
        });
    } else {
        // A link the text does not show yet goes on a line of its own, when it fits.
        let mut text = text.to_owned();
        let link = out.notification.content.link.as_deref();
        if let Some(link) = link
            && !text.contains(link)
            && text.chars().count() + link.chars().count() < channel.max_length.unwrap_or(4096)
        {
            text.push('\n');
            text.push_str(link);
        }
        body["type"] = json!("text");
        body["text"] = json!({ "preview_url": link.is_some(), "body": text });
    }
    Ok(body)
}

/// Sends the notification and classifies the answer.
pub async fn send(http: &reqwest::Client, out: &Outgoing<'_>) -> SendOutcome {
    let channel = out.channel;
    let ChannelSettings::Whatsapp(settings) = &channel.settings else {
        return SendOutcome::Misconfigured {
            reason: "not a whatsapp channel".into(),
        };
    };
    let (Some(phone_number_id), Some(token)) = (
        Some(settings.phone_number_id.as_str()).filter(|s| !s.is_empty()),
        Some(settings.access_token.as_str()).filter(|s| !s.is_empty()),
    ) else {
        return SendOutcome::Misconfigured {
            reason: "the whatsapp channel needs phone_number_id and access_token".into(),
        };
    };
    let to = recipient(out.contact.unwrap_or(""));
    if to.is_empty() {
        return SendOutcome::Permanent {
            reason: "the customer has no whatsapp number".into(),
        };
    }
    let body = match message_body(out, &to) {
        Ok(b) => b,
        Err(reason) => return SendOutcome::Misconfigured { reason },
    };
    let url = messages_url(
        settings.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL),
        settings
            .api_version
            .as_deref()
            .unwrap_or(DEFAULT_API_VERSION),
        phone_number_id,
    );
    let request = http
        .post(url)
        .timeout(Duration::from_millis(channel.timeout_ms.max(1) as u64))
        .bearer_auth(token)
        .json(&body);
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let answer = match response.bytes().await {
                Ok(bytes) => serde_json::from_slice::<Answer>(&bytes).ok(),
                Err(e) if (200..300).contains(&status) => {
                    return SendOutcome::Ambiguous {
                        reason: format!("HTTP {status}, then the answer broke off: {e}"),
                    };
                }
                Err(_) => None,
            };
            classify(status, answer.as_ref())
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

    fn error(status: u16, code: i64) -> SendOutcome {
        let body = format!(
            r#"{{"error":{{"message":"(#{code}) something","type":"OAuthException","code":{code},"error_data":{{"messaging_product":"whatsapp","details":"details here"}},"fbtrace_id":"X"}}}}"#
        );
        classify(status, serde_json::from_str::<Answer>(&body).ok().as_ref())
    }

    #[test]
    fn sent_with_the_wamid() {
        let body = r#"{"messaging_product":"whatsapp","contacts":[{"input":"+79161234567","wa_id":"79161234567"}],"messages":[{"id":"wamid.TEST1","message_status":"accepted"}]}"#;
        assert_eq!(
            classify(200, serde_json::from_str::<Answer>(body).ok().as_ref()),
            SendOutcome::Sent {
                provider_message_id: Some("wamid.TEST1".into())
            }
        );
        assert_eq!(
            classify(200, None),
            SendOutcome::Sent {
                provider_message_id: None
            }
        );
    }

    #[test]
    fn re_engagement_is_permanent_and_says_what_to_configure() {
        match error(400, 131047) {
            SendOutcome::Permanent { reason } => {
                assert!(
                    reason.contains("131047") && reason.contains("template"),
                    "{reason}"
                );
                assert!(reason.contains("details here"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn undeliverable_and_recipient_refusals_are_permanent() {
        for code in [131026, 131049, 131050, 130472, 131021, 131048] {
            assert!(
                matches!(error(400, code), SendOutcome::Permanent { .. }),
                "{code}"
            );
        }
    }

    #[test]
    fn rate_limits() {
        assert_eq!(
            error(400, 130429),
            SendOutcome::RateLimited {
                retry_after_ms: THROUGHPUT_RETRY_MS
            }
        );
        assert_eq!(
            error(429, 130429),
            SendOutcome::RateLimited {
                retry_after_ms: THROUGHPUT_RETRY_MS
            }
        );
        assert_eq!(
            error(400, 131056),
            SendOutcome::RateLimited {
                retry_after_ms: PAIR_RETRY_MS
            }
        );
        for code in [4, 80007] {
            assert_eq!(
                error(400, code),
                SendOutcome::RateLimited {
                    retry_after_ms: APP_RATE_RETRY_MS
                }
            );
        }
    }

    #[test]
    fn temporary_errors_are_transient() {
        for code in [1, 2, 131000, 131016, 133004] {
            assert!(
                matches!(error(500, code), SendOutcome::Transient { .. }),
                "{code}"
            );
        }
    }

    #[test]
    fn token_parameter_template_and_account_errors_are_misconfigured() {
        for code in [
            0, 3, 10, 190, 200, 299, 100, 131008, 131009, 131051, 131053, 132000, 132001, 132012,
            132016, 368, 131031, 131042,
        ] {
            assert!(
                matches!(error(400, code), SendOutcome::Misconfigured { .. }),
                "{code}"
            );
        }
        assert!(matches!(error(401, 190), SendOutcome::Misconfigured { .. }));
    }

    #[test]
    fn unknown_codes_fall_back_to_the_status() {
        assert!(matches!(
            classify(401, None),
            SendOutcome::Misconfigured { .. }
        ));
        assert!(matches!(
            classify(403, None),
            SendOutcome::Misconfigured { .. }
        ));
        assert!(matches!(
            classify(429, None),
            SendOutcome::RateLimited { .. }
        ));
        assert!(matches!(classify(503, None), SendOutcome::Transient { .. }));
        assert!(matches!(error(502, 999_999), SendOutcome::Transient { .. }));
        assert!(matches!(error(400, 999_999), SendOutcome::Permanent { .. }));
        assert!(matches!(classify(404, None), SendOutcome::Permanent { .. }));
    }

    #[test]
    fn an_error_body_with_200_is_not_a_send() {
        let body = r#"{"error":{"message":"(#131026) Message Undeliverable","code":131026}}"#;
        assert!(matches!(
            classify(200, serde_json::from_str::<Answer>(body).ok().as_ref()),
            SendOutcome::Permanent { .. }
        ));
    }

    #[test]
    fn recipient_is_digits() {
        assert_eq!(recipient("+7 (916) 123-45-67"), "79161234567");
    }

    #[test]
    fn url_with_or_without_the_v() {
        assert_eq!(
            messages_url("http://x/", "v21.0", "123"),
            "http://x/v21.0/123/messages"
        );
        assert_eq!(
            messages_url("http://x", "21.0", "123"),
            "http://x/v21.0/123/messages"
        );
    }
}
