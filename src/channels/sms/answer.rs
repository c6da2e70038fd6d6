//! Reading a gateway's HTTP answer where every provider reads it alike: a
//! failed request, a `Retry-After`, a status that is not 2xx.

use crate::core::SendOutcome;

/// What a failed HTTP request means, for every provider: nothing reached the
/// provider (transient), the address is unusable (misconfigured), or the
/// request may have been taken before the answer was lost (ambiguous).
pub(crate) fn transport_outcome(provider: &str, e: &reqwest::Error) -> SendOutcome {
    if e.is_connect() {
        SendOutcome::Transient {
            reason: format!("{provider}: cannot connect: {e}"),
            retry_after_ms: None,
        }
    } else if e.is_builder() {
        SendOutcome::Misconfigured {
            reason: format!("{provider}: bad request address: {e}"),
        }
    } else if e.is_timeout() {
        SendOutcome::Ambiguous {
            reason: format!("{provider}: no answer within the timeout after sending"),
        }
    } else {
        SendOutcome::Ambiguous {
            reason: format!("{provider}: no answer after sending: {e}"),
        }
    }
}

/// `Retry-After` in whole seconds, as milliseconds (saturating; a negative
/// number is no delay). The core caps it at the channel's `max_backoff`.
pub(crate) fn retry_after_ms(headers: &reqwest::header::HeaderMap) -> Option<i64> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|s| *s >= 0)
        .map(|s| s.saturating_mul(1000))
}

/// How an HTTP status that is not 2xx is read, for the gateways that answer
/// their own errors inside a 200 (SMS.ru, SMSC): 429 rate-limited, 408 and
/// 5xx transient, anything else means the address or credentials are wrong.
pub(crate) fn http_status_outcome(
    provider: &str,
    status: reqwest::StatusCode,
    retry_after_ms: Option<i64>,
) -> SendOutcome {
    match status.as_u16() {
        429 => SendOutcome::RateLimited {
            retry_after_ms: retry_after_ms.unwrap_or(60_000),
        },
        408 | 500..=599 => SendOutcome::Transient {
            reason: format!("{provider}: HTTP {status}"),
            retry_after_ms,
        },
        _ => SendOutcome::Misconfigured {
            reason: format!("{provider}: HTTP {status}: check the base URL and credentials"),
        },
    }
}
