//! Customer replies (contract: conversations): an inbound message that
//! belongs to a notification — VK `message_new`, a Telegram message, a
//! WhatsApp inbound message, an email reply — is recorded as `replied` and
//! handed to staff.

use axum::http::StatusCode;

use super::AppState;

/// One inbound customer message mapped to the notification it answers.
#[derive(Clone, Copy, Debug)]
pub struct Reply<'a> {
    /// The notification the customer replied to.
    pub notification_id: &'a str,
    /// The channel (by name) the reply came in on.
    pub channel: &'a str,
    /// The customer's words; empty for a sticker, a photo, a voice note.
    pub text: &'a str,
    /// The provider's id of the inbound message (VK message id, Telegram
    /// `chat:message_id`, WhatsApp `wamid`, email `Message-ID`): a provider
    /// delivering the same message twice hands it to staff once.
    pub inbound_id: &'a str,
}

/// Records `replied` on the notification and hands the reply to staff.
/// Answers like `super::record`: 202 recorded, 200 already known, 404 no
/// such notification, 503 the store is unavailable (the provider should
/// deliver it again).
pub async fn received(state: &AppState, reply: Reply<'_>) -> StatusCode {
    super::record(state, reply.notification_id, "replied", Some(reply.channel))
        .await
        .status()
}
