//! Email bounces: `POST /callbacks/email/{channel}/{secret}` with the raw
//! bounce message as the body, where `secret` is the channel's
//! `bounce_secret`. SMTP accepts a message long before the recipient's
//! server refuses it; that refusal comes back later as a delivery status
//! notification (RFC 3464) to the envelope sender. Pipe those to this
//! endpoint from the mailbox or MTA that receives them (for example a
//! Postfix alias `|curl --data-binary @- https://…/callbacks/email/email/<secret>`).
//!
//! The bounce names our message by the `Message-ID` in the original headers
//! it returns (deterministic per notification and step, and the provider
//! message id of the send). `Action: failed` with a `5.x.x` status is a hard
//! bounce: `failed`, which escalates at once while the cascade still waits
//! on that email. `delayed` and other actions are acknowledged and counted.
//! A wrong secret, an unknown channel or one without `bounce_secret` gets
//! 403; a body that is not a delivery status notification gets 400.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use tower_http::limit::RequestBodyLimitLayer;

use super::{apply_report, count, path_secret_matches};
use crate::core::ChannelKind;
use crate::http::AppState;
use crate::http::refusal::forbidden;

const METRIC: &str = "email";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/callbacks/email/{channel}/{secret}", post(bounce))
        .layer(RequestBodyLimitLayer::new(
            crate::http::body_limits::EMAIL_BOUNCE,
        ))
}

/// What a delivery status notification says about our message.
#[derive(Debug, PartialEq, Eq)]
pub struct Bounce {
    /// `Message-ID` of the returned original message.
    pub message_id: String,
    /// `Action` (lower case): failed, delayed, delivered, relayed, expanded.
    pub action: String,
    /// `Status`, e.g. `5.1.1`.
    pub status: String,
}

impl Bounce {
    /// The receipt it stands for (`None`: not final, or not about delivery).
    pub fn event(&self) -> Option<&'static str> {
        match self.action.as_str() {
            "failed" if self.status.starts_with('5') => Some(crate::core::policy::FAILED),
            "delivered" => Some("delivered"),
            _ => None,
        }
    }
}

/// Reads a bounce: `Action` and `Status` from its delivery-status part,
/// `Message-ID` from the original headers it returns. The bounce's own
/// headers (its own `Message-ID`) are skipped. `None` when a field is missing.
pub fn parse_bounce(raw: &str) -> Option<Bounce> {
    let body_at = raw
        .find("\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| raw.find("\n\n").map(|i| i + 2))?;
    let lines: Vec<&str> = raw[body_at..].lines().collect();
    let field = |name: &str| -> Option<String> {
        lines.iter().enumerate().find_map(|(i, line)| {
            let (key, value) = line.split_once(':')?;
            if !key.trim().eq_ignore_ascii_case(name) || key.starts_with([' ', '\t']) {
                return None;
            }
            let mut value = value.trim().to_owned();
            // A folded header continues on indented lines.
            for next in &lines[i + 1..] {
                if !next.starts_with([' ', '\t']) {
                    break;
                }
                value.push_str(next.trim());
            }
            Some(value)
        })
    };
    let message_id = field("Message-ID").filter(|m| !m.is_empty())?;
    let action = field("Action")?.to_ascii_lowercase();
    let status = field("Status")?.split_whitespace().next()?.to_owned();
    Some(Bounce {
        message_id,
        action,
        status,
    })
}

async fn bounce(
    State(state): State<AppState>,
    Path((channel, secret)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if !path_secret_matches(
        &state,
        METRIC,
        &channel,
        ChannelKind::Email,
        "bounce_secret",
        &secret,
    ) {
        return forbidden(&state, "callbacks/email", "wrong_secret");
    }
    let Some(bounce) = parse_bounce(&String::from_utf8_lossy(&body)) else {
        count(&state, METRIC, "malformed");
        return (
            StatusCode::BAD_REQUEST,
            "expected a delivery status notification (RFC 3464) with Action, Status and the original Message-ID",
        )
            .into_response();
    };
    match apply_report(&state, METRIC, &channel, &bounce.message_id, bounce.event()).await {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Postfix-style bounce: the bounce's own headers, a human part, the
    /// delivery-status part and the returned original headers.
    const HARD_BOUNCE: &str = "From: MAILER-DAEMON@mx.example.ru\r\n\
Message-ID: <bounce-1@mx.example.ru>\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\
\r\n\
--B\r\n\
Content-Type: text/plain\r\n\
\r\n\
Your message could not be delivered.\r\n\
--B\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.example.ru\r\n\
\r\n\
Final-Recipient: rfc822; x@example.com\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\
--B\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
From: Shop <noreply@shop.example.ru>\r\n\
Message-ID:\r\n <0123abcd@shop.example.ru>\r\n\
Subject: cart\r\n\
--B--\r\n";

    #[test]
    fn a_hard_bounce_names_the_original_message_and_fails() {
        let b = parse_bounce(HARD_BOUNCE).expect("a bounce");
        assert_eq!(
            b.message_id, "<0123abcd@shop.example.ru>",
            "not the bounce's own id"
        );
        assert_eq!((b.action.as_str(), b.status.as_str()), ("failed", "5.1.1"));
        assert_eq!(b.event(), Some("failed"));
    }

    #[test]
    fn a_delay_or_a_soft_failure_records_nothing() {
        let delayed = HARD_BOUNCE
            .replace("Action: failed", "Action: delayed")
            .replace("Status: 5.1.1", "Status: 4.4.7");
        assert_eq!(parse_bounce(&delayed).unwrap().event(), None);
        let soft = HARD_BOUNCE.replace("Status: 5.1.1", "Status: 4.2.2");
        assert_eq!(parse_bounce(&soft).unwrap().event(), None);
    }

    #[test]
    fn a_message_that_is_not_a_bounce_is_refused() {
        assert_eq!(parse_bounce("Subject: hi\r\n\r\nhello"), None);
        assert_eq!(parse_bounce(""), None);
        let no_original = HARD_BOUNCE.replace("Message-ID:\r\n <0123abcd@shop.example.ru>\r\n", "");
        assert_eq!(parse_bounce(&no_original), None);
    }
}
