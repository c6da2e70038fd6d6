//! The texts of one send, filled in: which texts a step sends
//! (`Notification::step_texts`) with their placeholders replaced
//! (`core::template`), each value escaped for where it goes: plain in texts
//! and subjects (JSON bodies are escaped by serde; no channel sends its
//! text with a markup parse mode), HTML-escaped in email HTML bodies.

use std::borrow::Cow;

use crate::core::receipt_data::ReceiptData;
use crate::core::template::{self, Escape, Placeholder, RenderError};
use crate::notification::{Notification, StepTexts};

/// What a send says, ready for an adapter: the notification's own texts,
/// borrowed, unless a placeholder had to be filled in (this runs for every
/// send, and an email's HTML may be 64 KiB).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Texts<'a> {
    pub text: Cow<'a, str>,
    pub subject: Option<Cow<'a, str>>,
    pub html: Option<Cow<'a, str>>,
}

/// Whether filling `texts` in needs the receipt data (read only then). A
/// text without `{{` is not parsed.
pub fn needs_data(texts: &StepTexts<'_>) -> bool {
    [texts.text, texts.subject, texts.html]
        .into_iter()
        .flatten()
        .filter(|t| template::has_placeholders(t))
        .any(|t| !template::data_keys(t).is_empty())
}

/// `texts` (`Notification::step_texts`: the step's, the channel's, the
/// kind's, else the common one) filled in with the notification's ids and
/// `data`. A placeholder without a value is an error: the send must not go
/// out half filled.
pub fn render<'a>(
    texts: &StepTexts<'a>,
    notification: &Notification,
    data: &ReceiptData,
) -> Result<Texts<'a>, RenderError> {
    let value = |p: Placeholder<'_>| match p {
        Placeholder::Data(key) => data.get(key).cloned(),
        Placeholder::CustomerId => Some(notification.customer.id.clone()),
        Placeholder::NotificationId => Some(notification.id.clone()),
    };
    let fill = |t: Option<&'a str>, escape| -> Result<Option<Cow<'a, str>>, RenderError> {
        t.map(|t| {
            if template::has_placeholders(t) {
                template::render(t, value, escape).map(Cow::Owned)
            } else {
                Ok(Cow::Borrowed(t))
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

    use crate::core::{ChannelKind, Step};

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
        let t = n.step_texts(Some(&confirm), "telegram", ChannelKind::Telegram);
        assert!(needs_data(&t));
        let r = render(&t, &n, &data).unwrap();
        assert_eq!(r.text, "confirmed: <Fri>");
        assert_eq!(r.html.as_deref(), Some("<p>&lt;Fri&gt;</p>"));

        let other = step(
            "open_chat",
            Some("policy {{data.slot}} for {{customer.id}}"),
        );
        let t = n.step_texts(Some(&other), "telegram", ChannelKind::Telegram);
        assert_eq!(render(&t, &n, &data).unwrap().text, "policy <Fri> for c-1");

        let plain = step("open_chat", None);
        let t = n.step_texts(Some(&plain), "telegram", ChannelKind::Telegram);
        assert!(!needs_data(&t));
        assert_eq!(render(&t, &n, &data).unwrap().text, "by channel");
    }

    #[test]
    fn a_missing_value_is_an_error_naming_the_placeholder() {
        let n = notification(serde_json::json!({"text": "at {{data.slot}}"}));
        let t = n.step_texts(None, "sms", ChannelKind::Sms);
        let e = render(&t, &n, &ReceiptData::new()).unwrap_err();
        assert_eq!(e.to_string(), "placeholder {{data.slot}} has no value");
    }
}
