//! Any HTTP SMS gateway, described by a template: `url` (required) and
//! `body`, with the placeholders `{phone}` (E.164, `+79161234567`),
//! `{msisdn}` (digits only), `{text}`, `{sender}` and `{id}` (the step's
//! idempotency key, the same for every attempt). A body that starts with `{`
//! or `[` is sent as JSON and its values are escaped as JSON string
//! contents; any other body is sent as a form and its values are
//! percent-encoded, as are values placed in the URL. Without `body`, the
//! JSON `{"phone":"{phone}","text":"{text}","sender":"{sender}","id":"{id}"}`
//! is sent. `authorization` (e.g. `"Bearer ${GATEWAY_TOKEN}"`) becomes the
//! `Authorization` header; the `Idempotency-Key` header carries `{id}`.
//!
//! The answer is read like a webhook's (`webhook::classify`): 2xx sent (a JSON
//! `id` or `message_id` is the provider message id), 429 rate-limited, 408
//! and 5xx transient, 401/403 misconfigured, other 4xx permanent, no
//! connection transient, timeout after sending ambiguous.

use std::time::Duration;

use serde_json::Value;

use super::{Attempt, transport_outcome};
use crate::channels::webhook;
use crate::core::SendOutcome;

const NAME: &str = "SMS gateway";

const DEFAULT_BODY: &str = r#"{"phone":"{phone}","text":"{text}","sender":"{sender}","id":"{id}"}"#;

/// How placeholder values are escaped where they land.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// Inside a JSON string: `"` `\` and control characters escaped.
    Json,
    /// In a URL or a form body: percent-encoded (RFC 3986 unreserved kept).
    Percent,
}

/// Fills `{phone}`, `{msisdn}`, `{text}`, `{sender}` and `{id}` in one pass
/// (a value that itself contains `{text}` is not expanded again); other
/// braces are left as they are.
pub fn render(template: &str, values: &[(&str, &str)], escape: Escape) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        let hit = values.iter().find(|(name, _)| {
            after
                .strip_prefix('{')
                .and_then(|s| s.strip_prefix(name))
                .is_some_and(|s| s.starts_with('}'))
        });
        match hit {
            Some((name, value)) => {
                match escape {
                    Escape::Json => json_escape(value, &mut out),
                    Escape::Percent => percent_encode(value, &mut out),
                }
                rest = &after[name.len() + 2..];
            }
            None => {
                out.push('{');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn json_escape(value: &str, out: &mut String) {
    let quoted = Value::String(value.to_owned()).to_string();
    out.push_str(&quoted[1..quoted.len() - 1]);
}

fn percent_encode(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Whether a body template is JSON (else it is a form).
pub fn is_json(body: &str) -> bool {
    matches!(body.trim_start().chars().next(), Some('{') | Some('['))
}

pub async fn send(http: &reqwest::Client, a: &Attempt<'_>) -> SendOutcome {
    let Some(url) = a.settings.url.as_deref().filter(|s| !s.is_empty()) else {
        return SendOutcome::Misconfigured {
            reason: format!("{NAME}: the channel has no url"),
        };
    };
    let values = [
        ("phone", a.phone),
        ("msisdn", a.digits.as_str()),
        ("text", a.text),
        ("sender", a.sender.unwrap_or("")),
        ("id", a.key.as_str()),
    ];
    let template = a.settings.body.as_deref().unwrap_or(DEFAULT_BODY);
    let (body, content_type) = if is_json(template) {
        (render(template, &values, Escape::Json), "application/json")
    } else {
        (
            render(template, &values, Escape::Percent),
            "application/x-www-form-urlencoded",
        )
    };
    let mut request = http
        .post(render(url, &values, Escape::Percent))
        .timeout(a.timeout)
        .header("Idempotency-Key", &a.key)
        .header(reqwest::header::CONTENT_TYPE, content_type);
    if let Some(auth) = a
        .settings
        .authorization
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        request = request.header(reqwest::header::AUTHORIZATION, auth);
    }
    let response = match request.body(body).send().await {
        Ok(r) => r,
        Err(e) => return transport_outcome(NAME, &e),
    };
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let status = response.status();
    match webhook::classify(status, retry_after) {
        SendOutcome::Sent { .. } => {
            let json: Option<Value> = response.json().await.ok();
            let id = json.as_ref().and_then(|v| {
                ["id", "message_id"]
                    .iter()
                    .find_map(|k| v.get(k))
                    .and_then(|id| match id {
                        Value::String(s) if !s.is_empty() => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
            });
            SendOutcome::Sent {
                provider_message_id: id,
            }
        }
        SendOutcome::Transient {
            reason,
            retry_after_ms,
        } => SendOutcome::Transient {
            reason: format!("{NAME}: {reason}"),
            retry_after_ms,
        },
        SendOutcome::Permanent { reason } => SendOutcome::Permanent {
            reason: format!("{NAME}: {reason}"),
        },
        SendOutcome::Misconfigured { reason } => SendOutcome::Misconfigured {
            reason: format!("{NAME}: {reason}"),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUES: [(&str, &str); 5] = [
        ("phone", "+79161234567"),
        ("msisdn", "79161234567"),
        ("text", "Заказ \"1001\" & {text}"),
        ("sender", "SHOP"),
        ("id", "order-1:1"),
    ];

    #[test]
    fn json_templates_escape_string_contents() {
        let body = render(
            r#"{"to":"{phone}","msg":"{text}","ref":"{id}","keep":"{other}"}"#,
            &VALUES,
            Escape::Json,
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["to"], "+79161234567");
        assert_eq!(v["msg"], "Заказ \"1001\" & {text}");
        assert_eq!(v["ref"], "order-1:1");
        assert_eq!(v["keep"], "{other}");
        assert!(is_json(&body));
    }

    #[test]
    fn form_and_url_templates_percent_encode() {
        let body = render(
            "to={msisdn}&text={text}&from={sender}",
            &VALUES,
            Escape::Percent,
        );
        assert_eq!(
            body,
            "to=79161234567&text=%D0%97%D0%B0%D0%BA%D0%B0%D0%B7%20%221001%22%20%26%20%7Btext%7D&from=SHOP"
        );
        assert!(!is_json(&body));
        assert_eq!(
            render("https://gw/send?to={phone}", &VALUES, Escape::Percent),
            "https://gw/send?to=%2B79161234567"
        );
        assert_eq!(render("{", &VALUES, Escape::Percent), "{");
        assert_eq!(render("{phone", &VALUES, Escape::Percent), "{phone");
    }

    #[tokio::test]
    async fn answers_on_the_wire() {
        use crate::channels::sms::{Provider, answer_with};
        assert_eq!(
            answer_with(Provider::Generic, 200, r#"{"message_id":42}"#).await,
            SendOutcome::Sent {
                provider_message_id: Some("42".into())
            }
        );
        assert_eq!(
            answer_with(Provider::Generic, 202, "queued").await,
            SendOutcome::Sent {
                provider_message_id: None
            }
        );
        assert!(matches!(
            answer_with(Provider::Generic, 429, "").await,
            SendOutcome::RateLimited { .. }
        ));
        assert!(matches!(
            answer_with(Provider::Generic, 500, "").await,
            SendOutcome::Transient { .. }
        ));
        assert!(matches!(
            answer_with(Provider::Generic, 401, "").await,
            SendOutcome::Misconfigured { .. }
        ));
        assert!(matches!(
            answer_with(Provider::Generic, 400, "").await,
            SendOutcome::Permanent { .. }
        ));
    }

    #[test]
    fn the_default_body_is_json() {
        let v: Value = serde_json::from_str(&render(DEFAULT_BODY, &VALUES, Escape::Json)).unwrap();
        assert_eq!(v["phone"], "+79161234567");
        assert_eq!(v["sender"], "SHOP");
    }
}
