//! `email` channels: SMTP submission through lettre, with one pooled
//! transport per channel. Each step goes out as a multipart/alternative
//! message (text + HTML) with a deterministic `Message-ID` (the same on every
//! retry of a step, so a receiving client can fold duplicates), optional
//! `List-Unsubscribe` headers, and open/click tracking: a 1×1 pixel and every
//! http(s) link rewritten to the daemon's `/t/o/…` and `/t/c/…` routes
//! (`http::callbacks::tracking`) through tokens signed with the channel's
//! `tracking_secret`, so nobody can forge an `opened` or `clicked` receipt or
//! turn the redirect into an open one.
//!
//! SMTP has no idempotency key: a connection lost after the message went out
//! leaves the send uncertain, and email's `on_uncertain` stays `skip` (the
//! escalation timer moves on instead of a blind resend).

mod compose;
mod failure;
mod html;
pub mod inbound;
mod settings;
mod tracking;
mod transport;

#[cfg(test)]
mod tests;

use std::time::Duration;

use lettre::AsyncTransport;
use lettre::message::Mailbox;

use super::Outgoing;
use super::settings::ChannelSettings;
use crate::core::SendOutcome;
use compose::compose;

pub use compose::message_id;
pub use failure::{Failure, classify};
pub use html::escape_html;
pub use settings::{EmailFile, EmailSettings, SECRETS, Shape, TlsMode};
pub use tracking::{MAX_TOKEN_BYTES, Tracked, TrackingToken, sign, tracking_until, verify};
pub use transport::Transports;

/// Composes the step's message, submits it and classifies the answer.
pub async fn send(transports: &Transports, out: &Outgoing<'_>) -> SendOutcome {
    let ChannelSettings::Email(settings) = &out.channel.settings else {
        return SendOutcome::Misconfigured {
            reason: "not an email channel".into(),
        };
    };
    let shape = Shape {
        timeout_ms: out.channel.timeout_ms.max(1),
        ..settings.shape.clone()
    };
    let Some(contact) = out.contact else {
        return SendOutcome::Permanent {
            reason: "the customer has no email address".into(),
        };
    };
    let to: Mailbox = match contact.trim().parse() {
        Ok(m) => m,
        Err(e) => {
            return SendOutcome::Permanent {
                reason: format!("the contact is not an email address: {e}"),
            };
        }
    };
    let composed = match compose(out, settings, to) {
        Ok(c) => c,
        Err(reason) => return SendOutcome::Permanent { reason },
    };
    let transport = match transports.get(&out.channel.name, &shape) {
        Ok(t) => t,
        Err(reason) => return SendOutcome::Misconfigured { reason },
    };
    let limit = Duration::from_millis(shape.timeout_ms as u64);
    let failure = match tokio::time::timeout(limit, transport.send(composed.message)).await {
        Ok(Ok(response)) => {
            tracing::debug!(
                channel = %out.channel.name,
                notification_id = %out.notification.id,
                message_id = %composed.message_id,
                // Some relays repeat the recipient in their answer.
                reply = %crate::pii::scrub(response.first_line().unwrap_or("")),
                "the relay took the message"
            );
            return SendOutcome::Sent {
                provider_message_id: Some(composed.message_id),
            };
        }
        Ok(Err(e)) => Failure::of(&e),
        Err(_) => {
            transports.discard(&out.channel.name, &shape).await;
            Failure::TimedOut
        }
    };
    classify(&failure)
}
