//! The texts of one send, filled in: which texts a step sends
//! (`Notification::step_texts`) with their placeholders replaced
//! (`core::template`), each value escaped for where it goes: plain in texts
//! and subjects (JSON bodies are escaped by serde; no channel sends its
//! text with a markup parse mode), HTML-escaped in email HTML bodies.

use crate::core::receipt_data::ReceiptData;
use crate::core::template::{self, Escape, Placeholder, RenderError};
use crate::core::{ChannelKind, Step};
use crate::notification::{Notification, StepTexts};

/// What a send says, ready for an adapter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Texts {
    pub text: String,
    pub subject: Option<String>,
    pub html: Option<String>,
}

/// The texts `step` sends on a channel, before they are filled in.
pub fn chosen<'n>(
    notification: &'n Notification,
    step: Option<&'n Step>,
    channel: &str,
    kind: ChannelKind,
) -> StepTexts<'n> {
    notification.step_texts(step, channel, kind)
}

/// Whether filling `texts` in needs the receipt data (read only then).
pub fn needs_data(texts: &StepTexts<'_>) -> bool {
    [texts.text, texts.subject, texts.html]
        .into_iter()
        .flatten()
        .any(|t| !template::data_keys(t).is_empty())
}

/// `texts` filled in with the notification's ids and `data`. A placeholder
/// without a value is an error: the send must not go out half filled.
pub fn render(
    texts: &StepTexts<'_>,
    notification: &Notification,
    data: &ReceiptData,
) -> Result<Texts, RenderError> {
    let value = |p: Placeholder<'_>| match p {
        Placeholder::Data(key) => data.get(key).cloned(),
        Placeholder::CustomerId => Some(notification.customer.id.clone()),
        Placeholder::NotificationId => Some(notification.id.clone()),
    };
    let fill = |t: Option<&str>, escape| -> Result<Option<String>, RenderError> {
        t.map(|t| {
            if template::has_placeholders(t) {
                template::render(t, value, escape)
            } else {
                Ok(t.to_owned())
            }
        })
        .transpose()
    };
    Ok(Texts {
        text: fill(texts.text, Escape::Plain)?.unwrap_or_default(),
        subject: fill(texts.subject, Escape::Plain)?,
        html: fill(texts.html, Escape::Html)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(content: serde_json::Value) -> Notification {
        serde_json::from_value(serde_json::json!({
            "id": "order-1", "policy": "p", "customer": {"id": "c-1"}, "content": content,
        }))
        .unwrap()
    }

    fn step(name: &str, text: Option<&str>) -> Step {
        Step {
            channels: vec!["telegram".into()],
            name: Some(name.into()),
            text: text.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn a_step_text_of_the_notification_wins_then_the_policy_step_then_the_channels() {
        let n = notification(serde_json::json!({
            "text": "common",
            "channels": {"telegram": {"text": "by channel"}},
            "steps": {"confirm": {"text": "confirmed: {{ data.slot }}", "html": "<p>{{data.slot}}</p>"}},
        }));
        let data = ReceiptData::from([("slot".to_owned(), "<Fri>".to_owned())]);
        let confirm = step("confirm", Some("policy {{data.slot}}"));
        let t = chosen(&n, Some(&confirm), "telegram", ChannelKind::Telegram);
        assert!(needs_data(&t));
        let r = render(&t, &n, &data).unwrap();
        assert_eq!(r.text, "confirmed: <Fri>");
        assert_eq!(r.html.as_deref(), Some("<p>&lt;Fri&gt;</p>"));

        let other = step(
            "open_chat",
            Some("policy {{data.slot}} for {{customer.id}}"),
        );
        let t = chosen(&n, Some(&other), "telegram", ChannelKind::Telegram);
        assert_eq!(render(&t, &n, &data).unwrap().text, "policy <Fri> for c-1");

        let plain = step("open_chat", None);
        let t = chosen(&n, Some(&plain), "telegram", ChannelKind::Telegram);
        assert!(!needs_data(&t));
        assert_eq!(render(&t, &n, &data).unwrap().text, "by channel");
    }

    #[test]
    fn a_missing_value_is_an_error_naming_the_placeholder() {
        let n = notification(serde_json::json!({"text": "at {{data.slot}}"}));
        let t = chosen(&n, None, "sms", ChannelKind::Sms);
        let e = render(&t, &n, &ReceiptData::new()).unwrap_err();
        assert_eq!(e.to_string(), "placeholder {{data.slot}} has no value");
    }
}
