//! One structured log line per lifecycle event (SPEC 7). The same entries go
//! to the timeline and the `cascade:events` stream inside the store scripts.

use crate::core::Entry;

/// Logs the entries of one decision.
pub fn log_entries(id: &str, customer_id: &str, policy: &str, entries: &[Entry]) {
    for e in entries {
        super::telemetry::lifecycle(e.event.as_str(), e.channel.as_deref());
        tracing::info!(
            target: "cascade::lifecycle",
            event = e.event.as_str(),
            notification_id = id,
            customer_id,
            policy,
            step = e.step.map(|s| s as u64 + 1),
            channel = e.channel.as_deref(),
            provider_message_id = e.provider_message_id.as_deref(),
            reason = e.reason.as_deref(),
            until_ms = e.until_ms,
            "{}",
            e.event.as_str()
        );
    }
}

/// Masks a phone number or email address for logs: `+7916***4567`, `iv***@example.ru`.
pub fn mask_contact(s: &str) -> String {
    if let Some((local, domain)) = s.split_once('@') {
        let keep: String = local.chars().take(2).collect();
        return format!("{keep}***@{domain}");
    }
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 6 {
        return "***".into();
    }
    let head: String = chars[..5.min(chars.len())].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}***{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask_contact("+79161234567"), "+7916***4567");
        assert_eq!(mask_contact("ivan@example.ru"), "iv***@example.ru");
        assert_eq!(mask_contact("12345"), "***");
    }
}
