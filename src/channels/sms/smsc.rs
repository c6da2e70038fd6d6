//! SMSC.ru: `POST <base>/sys/send.php` (form) with `login` + `psw` (or
//! `apikey`), `phones`, `mes`, `fmt=3` (JSON answers), `charset=utf-8`,
//! `sender`, and our own message `id` (`numeric_id` of the step's
//! idempotency key). Keys: `login` + `password`, or `apikey`;
//! `smsc_base_url` (or `base_url` on a one-provider channel; default
//! `https://smsc.ru`).
//!
//! The `id` makes every attempt of a step the same request: SMSC refuses an
//! identical request within a minute (error 9), and status lookups and
//! delivery reports name the message by it. That is why an ambiguous answer
//! may be resent (`on_uncertain` defaults to `resend` for `provider = "smsc"`).

use serde_json::Value;

use super::{Attempt, http_status_outcome, numeric_id, retry_after_ms, transport_outcome};
use crate::core::SendOutcome;

const NAME: &str = "SMSC";

/// How an SMSC `fmt=3` answer is read.
///
/// | answer | meaning | outcome |
/// |---|---|---|
/// | `{"id":…,"cnt":…}` | accepted | sent; the id (ours) is the provider message id |
/// | error 1 | bad parameters | misconfigured |
/// | error 2 | wrong login or password | misconfigured |
/// | error 3 | insufficient funds | misconfigured |
/// | error 4 | IP temporarily blocked after frequent errors | rate-limited 60 s |
/// | error 5 | bad date format | misconfigured |
/// | error 6 | message forbidden (text or sender name) | misconfigured |
/// | error 7 | bad phone number format | permanent |
/// | error 8 | cannot deliver to this number | permanent |
/// | error 9 | identical request within a minute | after our own earlier attempt on SMSC: sent (that one was accepted); else rate-limited 60 s |
/// | other error | unknown | permanent |
///
/// And the transport around it:
///
/// | answer | outcome |
/// |---|---|
/// | HTTP 429 | rate-limited, after `Retry-After` (default 60 s) |
/// | HTTP 408, 5xx | transient |
/// | other non-2xx HTTP | misconfigured (wrong base URL) |
/// | 2xx that is not SMSC's JSON | ambiguous |
/// | no connection | transient |
/// | timeout or broken connection after sending | ambiguous (resent by default: SMSC dedupes by our id) |
pub fn classify_error(code: i64, repeat: bool) -> SendOutcome {
    let reason = |what: &str| format!("{NAME} error {code}: {what}");
    match code {
        1 | 2 | 3 | 5 | 6 => SendOutcome::Misconfigured {
            reason: reason(match code {
                1 => "bad parameters",
                2 => "wrong login or password",
                3 => "insufficient funds",
                5 => "bad date format",
                _ => "message forbidden by text or sender name",
            }),
        },
        4 => SendOutcome::RateLimited {
            retry_after_ms: 60_000,
        },
        7 => SendOutcome::Permanent {
            reason: reason("bad phone number format"),
        },
        8 => SendOutcome::Permanent {
            reason: reason("cannot deliver to this number"),
        },
        9 if repeat => SendOutcome::Sent {
            provider_message_id: None,
        },
        9 => SendOutcome::RateLimited {
            retry_after_ms: 60_000,
        },
        _ => SendOutcome::Permanent {
            reason: reason("unknown error"),
        },
    }
}

/// Reads an SMSC JSON answer (HTTP 2xx) to a send with our `id`.
pub fn read_answer(answer: &Value, id: u32, repeat: bool) -> SendOutcome {
    let ours = Some(id.to_string());
    if let Some(code) = answer.get("error_code").and_then(number) {
        let outcome = classify_error(code, repeat);
        let text = answer.get("error").and_then(Value::as_str).unwrap_or("");
        return match outcome {
            SendOutcome::Sent { .. } => SendOutcome::Sent {
                provider_message_id: ours,
            },
            SendOutcome::Permanent { reason } if !text.is_empty() => SendOutcome::Permanent {
                reason: format!("{reason} ({text})"),
            },
            SendOutcome::Misconfigured { reason } if !text.is_empty() => {
                SendOutcome::Misconfigured {
                    reason: format!("{reason} ({text})"),
                }
            }
            other => other,
        };
    }
    match answer.get("id").and_then(number) {
        // SMSC echoes our id; keep its own if it ever differs, since its
        // reports name that one.
        Some(given) if answer.get("cnt").is_some() => SendOutcome::Sent {
            provider_message_id: Some(given.to_string()),
        },
        _ => SendOutcome::Ambiguous {
            reason: format!("{NAME}: an answer with neither id and cnt nor error_code"),
        },
    }
}

fn number(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.trim().parse().ok())
}

pub async fn send(http: &reqwest::Client, a: &Attempt<'_>) -> SendOutcome {
    fn set(v: &Option<String>) -> Option<&str> {
        v.as_deref().filter(|s| !s.is_empty())
    }
    let s = a.settings;
    let mut form: Vec<(&str, String)> = match (set(&s.apikey), set(&s.login), set(&s.password)) {
        (Some(key), _, _) => vec![("apikey", key.to_owned())],
        (None, Some(login), Some(password)) => {
            vec![("login", login.to_owned()), ("psw", password.to_owned())]
        }
        _ => {
            return SendOutcome::Misconfigured {
                reason: format!("{NAME}: the channel needs `apikey`, or `login` and `password`"),
            };
        }
    };
    let id = numeric_id(&a.key);
    form.extend([
        ("phones", a.digits.clone()),
        ("mes", a.text.to_owned()),
        ("fmt", "3".into()),
        ("charset", "utf-8".into()),
        ("id", id.to_string()),
    ]);
    if let Some(sender) = a.sender {
        form.push(("sender", sender.to_owned()));
    }
    let url = format!(
        "{}/sys/send.php",
        a.base_url(a.settings.smsc_base_url.as_deref(), "https://smsc.ru")
    );
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
            Ok(answer) => read_answer(&answer, id, a.repeat),
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

    #[test]
    fn every_row_of_the_table() {
        let err =
            |code: i64, repeat| read_answer(&json!({"error":"x","error_code":code}), 77, repeat);
        assert_eq!(
            read_answer(&json!({"id":77,"cnt":1}), 77, false),
            SendOutcome::Sent {
                provider_message_id: Some("77".into())
            }
        );
        assert_eq!(
            read_answer(
                &json!({"id":"77","cnt":2,"cost":"6.6","balance":"100"}),
                77,
                true
            ),
            SendOutcome::Sent {
                provider_message_id: Some("77".into())
            }
        );
        for code in [1, 2, 3, 5, 6] {
            assert!(
                matches!(err(code, false), SendOutcome::Misconfigured { .. }),
                "{code}"
            );
        }
        assert_eq!(
            err(4, false),
            SendOutcome::RateLimited {
                retry_after_ms: 60_000
            }
        );
        for code in [7, 8] {
            assert!(
                matches!(err(code, false), SendOutcome::Permanent { .. }),
                "{code}"
            );
        }
        assert_eq!(
            err(9, true),
            SendOutcome::Sent {
                provider_message_id: Some("77".into())
            }
        );
        assert_eq!(
            err(9, false),
            SendOutcome::RateLimited {
                retry_after_ms: 60_000
            }
        );
        assert!(matches!(err(42, false), SendOutcome::Permanent { .. }));
        // Errors 3, 6, 7, 8 also carry the id; the error still decides.
        assert!(matches!(
            read_answer(
                &json!({"error":"no money","error_code":3,"id":77}),
                77,
                false
            ),
            SendOutcome::Misconfigured { .. }
        ));
        let SendOutcome::Permanent { reason } = read_answer(
            &json!({"error":"invalid phone","error_code":"7"}),
            77,
            false,
        ) else {
            panic!("error 7 is permanent")
        };
        assert_eq!(
            reason,
            "SMSC error 7: bad phone number format (invalid phone)"
        );
    }

    #[tokio::test]
    async fn answers_on_the_wire() {
        use crate::channels::sms::{Provider, answer_with};
        // SMSC echoes our id; if it ever names another, its reports use that one.
        let SendOutcome::Sent {
            provider_message_id: Some(given),
        } = answer_with(Provider::Smsc, 200, r#"{"id":5,"cnt":1}"#).await
        else {
            panic!("accepted")
        };
        assert_eq!(given, "5");
        assert!(matches!(
            answer_with(Provider::Smsc, 200, "OK - 1 SMS, ID - 5").await,
            SendOutcome::Ambiguous { .. }
        ));
        assert!(matches!(
            answer_with(Provider::Smsc, 403, "no").await,
            SendOutcome::Misconfigured { .. }
        ));
        assert!(matches!(
            answer_with(Provider::Smsc, 503, "down").await,
            SendOutcome::Transient { .. }
        ));
        assert!(matches!(
            answer_with(Provider::Smsc, 429, "slow down").await,
            SendOutcome::RateLimited { .. }
        ));
    }

    #[test]
    fn an_unreadable_answer_is_ambiguous() {
        for v in [json!({}), json!({"id":77}), json!({"cnt":1}), json!([1])] {
            assert!(
                matches!(read_answer(&v, 77, false), SendOutcome::Ambiguous { .. }),
                "{v}"
            );
        }
    }
}
