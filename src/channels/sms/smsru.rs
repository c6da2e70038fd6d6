//! SMS.ru: `POST <base>/sms/send` (form) with `api_id`, `to`, `msg`,
//! `json=1` and `from` (the channel's `sender`). Keys: `api_id` (required),
//! `smsru_base_url` (or `base_url` on a one-provider channel; default
//! `https://sms.ru`).
//!
//! The answer has a status for the request and one per number; both are
//! read. The message id is `sms.<number>.sms_id`. SMS.ru has no idempotency
//! key, so an ambiguous answer must not be resent (the channel's
//! `on_uncertain` defaults to `skip`).

use serde_json::Value;

use super::{Attempt, http_status_outcome, retry_after_ms, transport_outcome};
use crate::core::SendOutcome;

const NAME: &str = "SMS.ru";

/// How an SMS.ru status code other than 100 is read, whether it comes for
/// the request (`status_code`) or for the number (`sms.<number>.status_code`).
///
/// | code | meaning | outcome |
/// |---|---|---|
/// | 100 | accepted | sent; `sms.<number>.sms_id` is the provider message id |
/// | 220 | service temporarily unavailable | transient |
/// | 500 | server error | transient |
/// | 231 | identical message to this number within a minute | after our own earlier attempt on SMS.ru: sent (it went out); else rate-limited 60 s |
/// | 202 | invalid number / no route | permanent |
/// | 207 | cannot send to this number | permanent |
/// | 209 | number in the account's stop-list | permanent |
/// | 214 | number abroad, foreign sending disabled | permanent |
/// | 215 | number in the global stop-list | permanent |
/// | 230 | daily limit to this number | permanent |
/// | 232 | identical messages to this number a day | permanent |
/// | 233 | repeat-send limit | permanent |
/// | 200 | invalid `api_id` | misconfigured |
/// | 201 | insufficient funds | misconfigured |
/// | 203 | empty text | misconfigured |
/// | 204 | sender name not approved | misconfigured |
/// | 205 | message too long | misconfigured |
/// | 206 | the account's daily limit | misconfigured (every recipient is refused until it is raised) |
/// | 208 | invalid `time` | misconfigured |
/// | 210–213 | wrong method / not UTF-8 / too many numbers | misconfigured |
/// | 216, 217 | forbidden word / disclaimer missing | misconfigured |
/// | 221 | sender must match the brand | misconfigured |
/// | 300–305 | token, auth or account problems | misconfigured |
/// | 501–508, 550 | anti-fraud limits, blocked country or hosting | misconfigured |
/// | 901, 902 | callback URL problems | misconfigured |
/// | other | unknown | permanent |
///
/// And the transport around it:
///
/// | answer | outcome |
/// |---|---|
/// | HTTP 429 | rate-limited, after `Retry-After` (default 60 s) |
/// | HTTP 408, 5xx | transient |
/// | other non-2xx HTTP | misconfigured (wrong base URL or a proxy's refusal) |
/// | 2xx that is not SMS.ru's JSON, or no status for our number | ambiguous (it may have been taken) |
/// | no connection | transient |
/// | timeout or broken connection after sending | ambiguous |
pub fn classify(code: i64, repeat: bool) -> SendOutcome {
    let reason = |what: &str| format!("{NAME} {code}: {what}");
    match code {
        100 => SendOutcome::Sent {
            provider_message_id: None,
        },
        220 | 500 => SendOutcome::Transient {
            reason: reason("service unavailable"),
            retry_after_ms: None,
        },
        231 if repeat => SendOutcome::Sent {
            provider_message_id: None,
        },
        231 => SendOutcome::RateLimited {
            retry_after_ms: 60_000,
        },
        202 | 207 | 209 | 214 | 215 | 230 | 232 | 233 => SendOutcome::Permanent {
            reason: reason(match code {
                202 => "invalid number",
                207 => "cannot send to this number",
                209 | 215 => "number in a stop-list",
                214 => "number abroad; foreign sending is disabled",
                230 => "daily limit to this number",
                _ => "repeat-send limit to this number",
            }),
        },
        200
        | 201
        | 203..=206
        | 208
        | 210..=213
        | 216
        | 217
        | 221
        | 300..=305
        | 501..=508
        | 550
        | 901
        | 902 => SendOutcome::Misconfigured {
            reason: reason(match code {
                200 => "invalid api_id",
                201 => "insufficient funds",
                203 => "empty text",
                204 => "sender name not approved",
                205 => "message too long",
                206 => "the account's daily limit is reached",
                300..=305 => "token or account problem",
                501..=508 | 550 => "refused by anti-fraud limits",
                _ => "request refused",
            }),
        },
        _ => SendOutcome::Permanent {
            reason: reason("unknown status code"),
        },
    }
}

/// Reads an SMS.ru JSON answer (HTTP 2xx) for the number `digits`.
pub fn read_answer(answer: &Value, digits: &str, repeat: bool) -> SendOutcome {
    let Some(top) = code_of(answer) else {
        return SendOutcome::Ambiguous {
            reason: format!("{NAME}: an answer without status_code"),
        };
    };
    if top != 100 {
        return with_text(classify(top, repeat), answer);
    }
    let numbers = answer.get("sms").and_then(Value::as_object);
    // SMS.ru keys the answer by the number as it normalised it; with one
    // number per request, a single entry is ours whatever its spelling.
    let entry = numbers.and_then(|m| {
        m.get(digits)
            .or_else(|| (m.len() == 1).then(|| m.values().next()).flatten())
    });
    let Some(entry) = entry else {
        return SendOutcome::Ambiguous {
            reason: format!("{NAME}: accepted, but no status for the number"),
        };
    };
    let Some(code) = code_of(entry) else {
        return SendOutcome::Ambiguous {
            reason: format!("{NAME}: accepted, but the number has no status_code"),
        };
    };
    match with_text(classify(code, repeat), entry) {
        SendOutcome::Sent { .. } => SendOutcome::Sent {
            provider_message_id: entry.get("sms_id").and_then(id_text),
        },
        other => other,
    }
}

/// A status code given as a number or as a numeric string.
fn code_of(v: &Value) -> Option<i64> {
    let c = v.get("status_code")?;
    c.as_i64().or_else(|| c.as_str()?.trim().parse().ok())
}

fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Adds SMS.ru's own `status_text` to a failure's reason.
fn with_text(outcome: SendOutcome, v: &Value) -> SendOutcome {
    let Some(text) = v.get("status_text").and_then(Value::as_str) else {
        return outcome;
    };
    let add = |r: String| format!("{r} ({text})");
    match outcome {
        SendOutcome::Transient {
            reason,
            retry_after_ms,
        } => SendOutcome::Transient {
            reason: add(reason),
            retry_after_ms,
        },
        SendOutcome::Permanent { reason } => SendOutcome::Permanent {
            reason: add(reason),
        },
        SendOutcome::Misconfigured { reason } => SendOutcome::Misconfigured {
            reason: add(reason),
        },
        other => other,
    }
}

pub async fn send(http: &reqwest::Client, a: &Attempt<'_>) -> SendOutcome {
    let Some(api_id) = a.settings.api_id.as_deref().filter(|s| !s.is_empty()) else {
        return SendOutcome::Misconfigured {
            reason: format!("{NAME}: the channel has no api_id"),
        };
    };
    let url = format!(
        "{}/sms/send",
        a.base_url(a.settings.smsru_base_url.as_deref(), "https://sms.ru")
    );
    let mut form: Vec<(&str, &str)> = vec![
        ("api_id", api_id),
        ("to", &a.digits),
        ("msg", a.text),
        ("json", "1"),
    ];
    if let Some(sender) = a.sender {
        form.push(("from", sender));
    }
    let request = crate::channels::post(http, &url);
    let response = match request.timeout(a.timeout).form(&form).send().await {
        Ok(r) => r,
        Err(e) => return transport_outcome(NAME, &e),
    };
    let status = response.status();
    if !status.is_success() {
        return http_status_outcome(NAME, status, retry_after_ms(response.headers()));
    }
    match response.bytes().await {
        Ok(body) => match serde_json::from_slice::<Value>(&body) {
            Ok(answer) => read_answer(&answer, &a.digits, a.repeat),
            Err(_) => SendOutcome::Ambiguous {
                reason: format!("{NAME}: HTTP {status} with an answer that is not JSON"),
            },
        },
        Err(e) => transport_outcome(NAME, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn permanent(o: &SendOutcome) -> bool {
        matches!(o, SendOutcome::Permanent { .. })
    }
    fn misconfigured(o: &SendOutcome) -> bool {
        matches!(o, SendOutcome::Misconfigured { .. })
    }
    fn transient(o: &SendOutcome) -> bool {
        matches!(
            o,
            SendOutcome::Transient {
                retry_after_ms: None,
                ..
            }
        )
    }

    #[test]
    fn every_row_of_the_code_table() {
        let sent = SendOutcome::Sent {
            provider_message_id: None,
        };
        assert_eq!(classify(100, false), sent);
        assert!(transient(&classify(220, false)));
        assert!(transient(&classify(500, false)));
        assert_eq!(
            classify(231, false),
            SendOutcome::RateLimited {
                retry_after_ms: 60_000
            }
        );
        assert_eq!(classify(231, true), sent);
        for code in [202, 207, 209, 214, 215, 230, 232, 233] {
            assert!(permanent(&classify(code, false)), "{code}");
        }
        for code in [
            200, 201, 203, 204, 205, 206, 208, 210, 211, 212, 213, 216, 217, 221,
        ] {
            assert!(misconfigured(&classify(code, false)), "{code}");
        }
        for code in [300, 301, 302, 303, 304, 305, 501, 504, 508, 550, 901, 902] {
            assert!(misconfigured(&classify(code, false)), "{code}");
        }
        for code in [-1, 0, 103, 218, 999] {
            assert!(permanent(&classify(code, false)), "{code}");
        }
        let SendOutcome::Misconfigured { reason } = classify(201, false) else {
            unreachable!()
        };
        assert_eq!(reason, "SMS.ru 201: insufficient funds");
    }

    #[test]
    fn an_accepted_number_gives_its_sms_id() {
        let answer = json!({"status":"OK","status_code":100,
            "sms":{"79161234567":{"status":"OK","status_code":100,"sms_id":"000000-10000001"}},
            "balance":4122.56});
        assert_eq!(
            read_answer(&answer, "79161234567", false),
            SendOutcome::Sent {
                provider_message_id: Some("000000-10000001".into())
            }
        );
        // Keyed by another spelling of the number: still ours.
        assert_eq!(
            read_answer(&answer, "89161234567", false),
            SendOutcome::Sent {
                provider_message_id: Some("000000-10000001".into())
            }
        );
    }

    #[test]
    fn the_number_status_is_read_when_the_request_is_ok() {
        let answer = json!({"status":"OK","status_code":100,
            "sms":{"79161234567":{"status":"ERROR","status_code":"202","status_text":"Неправильно указан номер"}}});
        let SendOutcome::Permanent { reason } = read_answer(&answer, "79161234567", false) else {
            panic!("a bad number is permanent")
        };
        assert!(
            reason.contains("202") && reason.contains("Неправильно"),
            "{reason}"
        );
    }

    #[test]
    fn the_request_status_wins() {
        let answer =
            json!({"status":"ERROR","status_code":200,"status_text":"Неправильный api_id"});
        assert!(misconfigured(&read_answer(&answer, "79161234567", false)));
        let answer = json!({"status":"ERROR","status_code":220});
        assert!(matches!(
            read_answer(&answer, "79161234567", false),
            SendOutcome::Transient { .. }
        ));
    }

    #[test]
    fn an_unreadable_acceptance_is_ambiguous() {
        let ambiguous = |v: Value| {
            matches!(
                read_answer(&v, "79161234567", false),
                SendOutcome::Ambiguous { .. }
            )
        };
        assert!(ambiguous(json!({"status":"OK"})));
        assert!(ambiguous(json!({"status":"OK","status_code":100})));
        assert!(ambiguous(json!({"status":"OK","status_code":100,"sms":{}})));
        assert!(ambiguous(
            json!({"status":"OK","status_code":100,"sms":{"79161234567":{"status":"OK"}}})
        ));
    }

    #[tokio::test]
    async fn answers_on_the_wire() {
        use crate::channels::sms::{Provider, answer_with};
        let ok = r#"{"status":"OK","status_code":100,"sms":{"79161234567":{"status":"OK","status_code":100,"sms_id":"000000-1"}}}"#;
        assert_eq!(
            answer_with(Provider::SmsRu, 200, ok).await,
            SendOutcome::Sent {
                provider_message_id: Some("000000-1".into())
            }
        );
        assert!(matches!(
            answer_with(Provider::SmsRu, 200, "<html>proxy</html>").await,
            SendOutcome::Ambiguous { .. }
        ));
        assert!(misconfigured(
            &answer_with(Provider::SmsRu, 404, "no").await
        ));
        assert!(matches!(
            answer_with(Provider::SmsRu, 502, "bad gateway").await,
            SendOutcome::Transient { .. }
        ));
    }

    #[test]
    fn http_errors() {
        use reqwest::StatusCode;
        let s = |c| StatusCode::from_u16(c).unwrap();
        assert_eq!(
            http_status_outcome(NAME, s(429), None),
            SendOutcome::RateLimited {
                retry_after_ms: 60_000
            }
        );
        assert!(matches!(
            http_status_outcome(NAME, s(503), Some(2_000)),
            SendOutcome::Transient {
                retry_after_ms: Some(2_000),
                ..
            }
        ));
        assert!(transient(&http_status_outcome(NAME, s(408), None)));
        assert!(misconfigured(&http_status_outcome(NAME, s(404), None)));
        assert!(misconfigured(&http_status_outcome(NAME, s(403), None)));
    }
}
