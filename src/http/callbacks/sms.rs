//! SMS delivery reports: `POST` (or `GET`) `/callbacks/sms/{channel}/{secret}`,
//! where `secret` is the channel's `report_secret` — neither SMS.ru nor SMSC
//! signs its reports, so the unguessable path is the authentication. A wrong
//! secret, an unknown channel or one without `report_secret` gets 403 and
//! nothing is recorded.
//!
//! Both providers' formats are accepted on the same path:
//! - SMS.ru: form fields `data[0]`, `data[1]`, … each
//!   `sms_status\n<sms_id>\n<code>\n<unix time>`; answered `100` (anything
//!   else makes SMS.ru retry).
//! - SMSC: form or query `id`, `phone`, `status`, `time`, `err`; answered `OK`.
//!
//! The provider's message id maps back to the notification and step
//! (`Store::provider_message`). Each (message id, event) is applied once
//! (`Store::first_time`). A `failed` report is recorded only while the
//! cascade still waits on that SMS, so a late one cannot escalate a later
//! step (or another alternative of the same step).
//! Reports about unknown ids are acknowledged and counted.
//!
//! | SMS.ru code | SMSC status | receipt |
//! |---|---|---|
//! | 103 delivered, 110 read | 1 delivered, 2 read | `delivered` |
//! | — | 4 link clicked | `clicked` |
//! | 104 expired, 105 deleted, 106 phone failure, 107 unknown, 108 rejected, 150 no route | 3 expired, 20 undeliverable, 22 bad number, 23 prohibited, 24 no funds, 25 unavailable | `failed` |
//! | 100, 101, 102 (queued, in transit) | -3 … 0 (not found, stopped, waiting, handed over) | none: acknowledged |

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use tower_http::limit::RequestBodyLimitLayer;

use super::{apply_report, count, path_secret_matches};
use crate::core::ChannelKind;
use crate::http::AppState;
use crate::http::refusal::forbidden;

const METRIC: &str = "sms";
const ROUTE: &str = "callbacks/sms";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/callbacks/sms/{channel}/{secret}",
            get(report).post(report),
        )
        .layer(RequestBodyLimitLayer::new(crate::http::body_limits::SMS))
}

/// The receipt an SMS.ru status code stands for (`None`: not final yet).
pub fn smsru_event(code: i64) -> Option<&'static str> {
    match code {
        103 | 110 => Some("delivered"),
        104..=108 | 150 => Some("failed"),
        _ => None,
    }
}

/// The receipt an SMSC status stands for (`None`: not final yet).
pub fn smsc_event(status: i64) -> Option<&'static str> {
    match status {
        1 | 2 => Some("delivered"),
        4 => Some("clicked"),
        3 | 20 | 22..=25 => Some("failed"),
        _ => None,
    }
}

/// One status report: the provider's message id and its status code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub message_id: String,
    pub code: i64,
}

/// Which provider sent a request, with its reports.
#[derive(Debug, PartialEq, Eq)]
pub enum Reports {
    SmsRu(Vec<Report>),
    Smsc(Vec<Report>),
}

/// Reads a report request's fields (query and form body together).
pub fn parse_reports(pairs: &[(String, String)]) -> Option<Reports> {
    let entries: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "data" || k.starts_with("data["))
        .map(|(_, v)| v.as_str())
        .collect();
    if !entries.is_empty() {
        let reports = entries
            .iter()
            .filter_map(|e| {
                let mut lines = e.lines().map(str::trim);
                // Other kinds of entries (call checks) are not about an SMS.
                if lines.next()? != "sms_status" {
                    return None;
                }
                let message_id = lines.next()?.to_owned();
                let code = lines.next()?.parse().ok()?;
                (!message_id.is_empty()).then_some(Report { message_id, code })
            })
            .collect();
        return Some(Reports::SmsRu(reports));
    }
    let field = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim());
    let message_id = field("id").filter(|id| !id.is_empty())?;
    let code = field("status")?.parse().ok()?;
    Some(Reports::Smsc(vec![Report {
        message_id: message_id.to_owned(),
        code,
    }]))
}

/// `application/x-www-form-urlencoded` (or a query string) as pairs, in order.
pub fn form_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn report(
    State(state): State<AppState>,
    Path((channel, secret)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    if !path_secret_matches(
        &state,
        METRIC,
        &channel,
        ChannelKind::Sms,
        "report_secret",
        &secret,
    ) {
        return forbidden(&state, ROUTE, "wrong_secret");
    }
    let mut pairs = form_pairs(query.as_deref().unwrap_or(""));
    pairs.extend(form_pairs(&String::from_utf8_lossy(&body)));
    let Some(parsed) = parse_reports(&pairs) else {
        count(&state, METRIC, "malformed");
        return (
            StatusCode::BAD_REQUEST,
            "expected SMS.ru data[] entries or SMSC id and status",
        )
            .into_response();
    };
    let (ack, events): (&str, Vec<_>) = match parsed {
        Reports::SmsRu(r) => (
            "100",
            r.into_iter().map(|r| (smsru_event(r.code), r)).collect(),
        ),
        Reports::Smsc(r) => (
            "OK",
            r.into_iter().map(|r| (smsc_event(r.code), r)).collect(),
        ),
    };
    for (event, r) in events {
        if apply_report(&state, METRIC, &channel, &r.message_id, event)
            .await
            .is_err()
        {
            // Not `100`/`OK`: the provider sends the report again later.
            return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
        }
    }
    (StatusCode::OK, ack).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(s: &str) -> Vec<(String, String)> {
        form_pairs(s)
    }

    #[test]
    fn form_decoding() {
        assert_eq!(
            pairs("a=1&b=x+y&c=%D0%B6%0A&d&e=%zz&f=%4"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), "ж\n".into()),
                ("d".into(), "".into()),
                ("e".into(), "%zz".into()),
                ("f".into(), "%4".into()),
            ]
        );
    }

    #[test]
    fn smsru_entries() {
        let p = pairs(
            "data%5B0%5D=sms_status%0A000000-10000001%0A103%0A1700000000&data%5B1%5D=callcheck_status%0Ax%0A401&data%5B2%5D=sms_status%0A000000-10000002%0A104",
        );
        assert_eq!(
            parse_reports(&p),
            Some(Reports::SmsRu(vec![
                Report {
                    message_id: "000000-10000001".into(),
                    code: 103
                },
                Report {
                    message_id: "000000-10000002".into(),
                    code: 104
                },
            ]))
        );
    }

    #[test]
    fn smsc_fields() {
        let p = pairs("id=77&phone=79161234567&status=1&time=1700000000&err=0");
        assert_eq!(
            parse_reports(&p),
            Some(Reports::Smsc(vec![Report {
                message_id: "77".into(),
                code: 1
            }]))
        );
        assert_eq!(parse_reports(&pairs("phone=7916&status=1")), None);
        assert_eq!(parse_reports(&pairs("id=77&status=x")), None);
        assert_eq!(parse_reports(&[]), None);
    }

    #[test]
    fn every_row_of_the_receipt_table() {
        for c in [103, 110] {
            assert_eq!(smsru_event(c), Some("delivered"));
        }
        for c in [104, 105, 106, 107, 108, 150] {
            assert_eq!(smsru_event(c), Some("failed"), "{c}");
        }
        for c in [-1, 100, 101, 102] {
            assert_eq!(smsru_event(c), None);
        }
        for s in [1, 2] {
            assert_eq!(smsc_event(s), Some("delivered"));
        }
        assert_eq!(smsc_event(4), Some("clicked"));
        for s in [3, 20, 22, 23, 24, 25] {
            assert_eq!(smsc_event(s), Some("failed"), "{s}");
        }
        for s in [-3, -2, -1, 0] {
            assert_eq!(smsc_event(s), None);
        }
    }
}
