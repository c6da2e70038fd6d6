//! Publishing a copy of a delivery for intake: `mandatory`, under a publisher confirm.

use lapin::options::BasicPublishOptions;
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};

/// How a `mandatory` publish under a publisher confirm ended.
pub enum Published {
    /// Routed to a queue and confirmed.
    Confirmed,
    /// Confirmed, but returned unrouted: no such queue.
    Returned(String),
    /// RabbitMQ refused it (a nack).
    Refused,
    /// The channel failed before a confirm came.
    Failed(lapin::Error),
}

impl std::fmt::Display for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Published::Confirmed => f.write_str("confirmed"),
            Published::Returned(why) => {
                write!(f, "returned unrouted ({why}): does the queue exist?")
            }
            Published::Refused => f.write_str("refused (nack)"),
            Published::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

/// Publishes `body` to `queue` through the default exchange, `mandatory`,
/// and waits for the confirm. A message RabbitMQ cannot route is still
/// confirmed (an ack, with the message returned beside it), so the ack
/// alone says nothing: the return decides.
pub async fn publish_confirmed(
    channel: &Channel,
    queue: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Published {
    let options = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let confirm = match channel
        .basic_publish(
            ShortString::from(""),
            ShortString::from(queue),
            options,
            body,
            properties,
        )
        .await
    {
        Ok(confirm) => confirm.await,
        Err(e) => Err(e),
    };
    match confirm {
        Ok(Confirmation::Ack(None)) => Published::Confirmed,
        Ok(Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned))) => {
            Published::Returned(format!("{} {}", returned.reply_code, returned.reply_text))
        }
        Ok(Confirmation::Nack(None) | Confirmation::NotRequested) => Published::Refused,
        Err(e) => Published::Failed(e),
    }
}

/// A delivery's properties for a copy the daemon publishes: the same, but
/// persistent, with `headers`, and without `expiration` (builders can only
/// set a property, so the copy is built afresh).
pub fn copy_properties(p: &BasicProperties, headers: FieldTable) -> BasicProperties {
    let mut copy = BasicProperties::default()
        .with_headers(headers)
        .with_delivery_mode(2);
    if let Some(v) = p.content_type() {
        copy = copy.with_content_type(v.clone());
    }
    if let Some(v) = p.content_encoding() {
        copy = copy.with_content_encoding(v.clone());
    }
    if let Some(v) = p.priority() {
        copy = copy.with_priority(*v);
    }
    if let Some(v) = p.correlation_id() {
        copy = copy.with_correlation_id(v.clone());
    }
    if let Some(v) = p.reply_to() {
        copy = copy.with_reply_to(v.clone());
    }
    if let Some(v) = p.message_id() {
        copy = copy.with_message_id(v.clone());
    }
    if let Some(v) = p.timestamp() {
        copy = copy.with_timestamp(*v);
    }
    if let Some(v) = p.kind() {
        copy = copy.with_type(v.clone());
    }
    if let Some(v) = p.user_id() {
        copy = copy.with_user_id(v.clone());
    }
    if let Some(v) = p.app_id() {
        copy = copy.with_app_id(v.clone());
    }
    if let Some(v) = p.cluster_id() {
        copy = copy.with_cluster_id(v.clone());
    }
    copy
}
