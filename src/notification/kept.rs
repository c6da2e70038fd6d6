//! A notification as a cascade's record keeps it: without its id (the
//! record's key holds it) and its policy name (the policy snapshot holds
//! it), since every byte of a waiting cascade is Redis memory. Its contacts
//! are those `admit` left: only the ones a channel of the policy reads.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Content, Customer, Notification, ReplyOf, json};

#[derive(Serialize)]
struct KeptRef<'a> {
    customer: &'a Customer,
    content: &'a Content,
    #[serde(with = "json::rfc3339", skip_serializing_if = "Option::is_none")]
    send_at: Option<Timestamp>,
    #[serde(with = "json::rfc3339", skip_serializing_if = "Option::is_none")]
    expires_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply: Option<&'a ReplyOf>,
}

#[derive(Deserialize)]
struct Kept {
    customer: Customer,
    #[serde(default)]
    content: Content,
    #[serde(default, with = "json::rfc3339")]
    send_at: Option<Timestamp>,
    #[serde(default, with = "json::rfc3339")]
    expires_at: Option<Timestamp>,
    #[serde(default)]
    reply: Option<ReplyOf>,
}

impl Notification {
    /// The JSON a record keeps ([`Notification::from_kept`] reads it back).
    pub fn to_kept_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(&KeptRef {
            customer: &self.customer,
            content: &self.content,
            send_at: self.send_at,
            expires_at: self.expires_at,
            reply: self.reply.as_ref(),
        })
    }

    /// The notification from a record's JSON, its id and its policy's name.
    /// Also reads the whole notification, as records of earlier versions kept it.
    pub fn from_kept(
        id: &str,
        policy: &str,
        json: &str,
    ) -> Result<Notification, serde_json::Error> {
        let kept: Kept = serde_json::from_str(json)?;
        Ok(Notification {
            id: id.to_owned(),
            policy: policy.to_owned(),
            customer: kept.customer,
            content: kept.content,
            send_at: kept.send_at,
            expires_at: kept.expires_at,
            reply: kept.reply,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_notification_reads_back_whole() {
        let text = r#"{"id":"order-1001:delayed","policy":"delivery_delay",
            "customer":{"id":"c-42","timezone":"Europe/Moscow","segment":"new",
              "contacts":{"vk":"123456789","sms":"+79161234567"},"preferences":["vk"],"opt_out":["whatsapp"]},
            "content":{"text":"Заказ 1001 задерживается","link":"https://shop.example.ru/orders/1001",
              "channels":{"sms":{"text":"Заказ задерживается"}}},
            "send_at":"2026-11-23T09:00:00Z","expires_at":"2026-11-24T12:00:00Z"}"#;
        let n = crate::notification::parse(text.as_bytes(), 1 << 20).unwrap();
        let kept = n.to_kept_json().unwrap();
        assert!(
            !kept.contains("order-1001") && !kept.contains("delivery_delay"),
            "{kept}"
        );
        assert_eq!(Notification::from_kept(&n.id, &n.policy, &kept).unwrap(), n);
        // A record of an earlier version kept the whole notification.
        let whole = serde_json::to_string(&n).unwrap();
        assert_eq!(
            Notification::from_kept(&n.id, &n.policy, &whole).unwrap(),
            n
        );
    }
}
