//! `cascade status <id>` as text: one notification for an operator, read
//! like `cascade simulate` prints a timeline. Times in the customer's zone
//! and in UTC (an operator compares them with logs, which are in UTC);
//! steps counted from 1; every contact masked (`pii`), reasons too.

use std::fmt::Write as _;

use crate::config::Catalog;
use crate::core::{ChannelKind, Entry, EntryKind};
use crate::dev::embedded::simulate::{local, rfc3339};
use crate::pii;
use crate::runtime::store::Loaded;

/// The header, the timeline and the receipts of one notification.
pub fn render(id: &str, loaded: &Loaded, entries: &[Entry], catalog: &Catalog) -> String {
    let tz = &loaded.recipient.tz;
    let at = |ms: i64| format!("{} ({})", local(ms, tz), rfc3339(ms));
    let mut out = String::new();
    let state = match loaded.cascade.outcome() {
        Some(o) => o.word().to_owned(),
        None => format!(
            "running (step {}, next wake-up {})",
            loaded.cascade.step + 1,
            loaded.cascade.wake_at_ms().map(at).unwrap_or_default()
        ),
    };
    let _ = writeln!(out, "{id}: {state}");
    let policy = &loaded.policy.name;
    match catalog.policies.get(policy) {
        Some(p) if !p.description.is_empty() => {
            let _ = writeln!(out, "policy {policy}: {}", p.description);
        }
        _ => {
            let _ = writeln!(out, "policy {policy}");
        }
    }
    let customer = &loaded.notification.customer;
    let _ = writeln!(
        out,
        "customer {}: segment {}; time zone {}",
        customer.id,
        customer.segment.as_deref().unwrap_or("none"),
        tz.iana_name().unwrap_or("UTC"),
    );
    let contacts: Vec<String> = customer
        .contacts
        .iter()
        .map(|(key, value)| format!("{key} {}", masked_contact(catalog, key, value)))
        .collect();
    let _ = writeln!(
        out,
        "contacts: {}\n",
        if contacts.is_empty() {
            "none".to_owned()
        } else {
            contacts.join(", ")
        }
    );
    for e in entries {
        let line = format!(
            "{:<22} {:<24} {:<12} {:<7} {:<12} {}",
            local(e.at_ms, tz),
            rfc3339(e.at_ms),
            e.event.as_str(),
            e.step
                .map(|s| format!("step {}", u16::from(s) + 1))
                .unwrap_or_default(),
            e.channel.as_deref().unwrap_or(""),
            detail(e, tz)
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out.push_str("\nreceipts:");
    if loaded.receipts.is_empty() {
        out.push_str(" none\n");
        return out;
    }
    out.push('\n');
    for (word, &ms) in &loaded.receipts {
        // The hash keeps when; the timeline's receipt entry says on which channel.
        let channel = entries
            .iter()
            .rev()
            .find(|e| e.event == EntryKind::Receipt && e.reason.as_deref() == Some(word))
            .and_then(|e| e.channel.as_deref())
            .unwrap_or("-");
        let _ = writeln!(
            out,
            "  {:<12} {:<22} {:<24} {channel}",
            word,
            local(ms, tz),
            rfc3339(ms)
        );
    }
    out
}

/// An entry's reason, provider message id and `until`, masked: reasons are
/// masked when recorded, but a record kept by an earlier version may still
/// quote a provider's answer in the clear, and some providers' message ids
/// carry the address.
fn detail(e: &Entry, tz: &jiff::tz::TimeZone) -> String {
    let mut parts = Vec::new();
    if let Some(r) = &e.reason {
        parts.push(pii::scrub(r).replace('_', " "));
    }
    if let Some(m) = &e.provider_message_id {
        parts.push(format!("provider id {}", pii::scrub(m)));
    }
    if let Some(u) = e.until_ms {
        parts.push(format!("until {} ({})", local(u, tz), rfc3339(u)));
    }
    parts.join(", ")
}

/// A customer's contact, masked by the kind of the channel that reads it:
/// its key is a kind (`sms`) or a channel's `contact`; any other is hidden whole.
fn masked_contact(catalog: &Catalog, key: &str, value: &str) -> String {
    let kind = ChannelKind::parse(key)
        .or_else(|| {
            catalog
                .channels
                .values()
                .find(|c| c.rules.contact_key.as_deref() == Some(key))
                .map(|c| c.kind)
        })
        .unwrap_or(ChannelKind::Webhook);
    pii::mask_contact(kind, value)
}
