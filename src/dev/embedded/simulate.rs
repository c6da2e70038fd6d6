//! `cascade simulate`: the timeline a policy would produce for one made-up
//! customer, with no sends to real providers: the daemon's worker sends to
//! fakes on loopback. Ops use it to check a policy before shipping it.

use crate::core::receipt_data::ReceiptData;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;
use serde_json::json;

use super::driver::{Customers, Driver, Intake, PlayError};
use crate::config::Catalog;
use crate::core::{ChannelKind, Entry};
use crate::dev::fakes::script::Scripted;

/// The made-up customer and how they behave.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub policy: String,
    /// Contact keys the customer has (`vk`, `sms`, `email`, …).
    pub contacts: Vec<String>,
    pub preferences: Vec<String>,
    pub opt_out: Vec<String>,
    pub tz: TimeZone,
    pub start_ms: i64,
    pub send_at_ms: Option<i64>,
    /// `None`: the customer never reads.
    pub read: Option<Read>,
    /// Channels whose provider refuses this customer for good.
    pub failing: Vec<String>,
    /// Receipts played in order whatever went out: (word, when), e.g. a
    /// call centre's `called` or `no_answer`.
    pub events: Vec<(String, i64)>,
}

/// When the customer reads, and on which channel.
#[derive(Clone, Debug)]
pub struct Read {
    pub after_ms: i64,
    /// Counted from the send on this channel; `None`: the first send.
    pub on_channel: Option<String>,
    /// The receipt word; `None`: `opened` for email, else `read`.
    pub event: Option<String>,
}

/// Every contact kind a made-up customer can have, with a plausible address.
pub const SAMPLE_CONTACTS: [(&str, &str); 5] = [
    ("vk", "123456789"),
    ("sms", "+79161234567"),
    ("email", "ivan@example.ru"),
    ("telegram", "5551234"),
    ("whatsapp", "+79161234567"),
];

/// One line of a simulated timeline.
#[derive(Clone, Debug, Serialize)]
pub struct Line {
    /// RFC 3339, UTC.
    pub at: String,
    /// The customer's wall clock, for people.
    pub local: String,
    /// Seconds since the notification was accepted.
    pub offset_s: i64,
    pub event: String,
    /// Counted from 1, as the steps appear in the policy file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// The made-up customer: reads once, as the scenario says.
struct Reader<'a> {
    scenario: &'a Scenario,
    catalog: &'a Catalog,
    read_planned: bool,
}

impl Customers for Reader<'_> {
    fn on_sent(&mut self, _: &str, entry: &Entry) -> Option<(String, i64)> {
        let read = self.scenario.read.as_ref()?;
        let channel = entry.channel.as_deref()?;
        if self.read_planned || read.on_channel.as_deref().is_some_and(|c| c != channel) {
            return None;
        }
        self.read_planned = true;
        let kind = self.catalog.channels.get(channel).map(|c| c.kind);
        let event = read.event.clone().unwrap_or_else(|| {
            if kind == Some(ChannelKind::Email) {
                "opened"
            } else {
                "read"
            }
            .to_owned()
        });
        Some((event, entry.at_ms + read.after_ms))
    }
}

/// Data for the played receipts: each key the policy's step texts quote
/// (`{{data.slot}}`) with a sample value `<slot>`, so a step that quotes
/// what a call centre records plays as it would when the data comes.
fn sample_data(policy: Option<&crate::core::Policy>) -> ReceiptData {
    let texts = policy
        .into_iter()
        .flat_map(|p| &p.steps)
        .flat_map(|s| [s.text.as_deref(), s.subject.as_deref()])
        .flatten();
    texts
        .flat_map(crate::core::template::data_keys)
        .map(|key| (key.to_owned(), format!("<{key}>")))
        .collect()
}

/// The notification a producer would send for the scenario's customer.
fn notification_body(scenario: &Scenario) -> Vec<u8> {
    let contacts: serde_json::Map<String, serde_json::Value> = scenario
        .contacts
        .iter()
        .map(|k| {
            let sample = SAMPLE_CONTACTS
                .iter()
                .find(|(key, _)| key == k)
                .map_or("x", |(_, v)| v);
            (k.clone(), json!(sample))
        })
        .collect();
    let mut body = json!({
        "id": SIMULATED_ID,
        "policy": scenario.policy,
        "customer": {
            "id": "c-simulated",
            "contacts": contacts,
            "preferences": scenario.preferences,
            "opt_out": scenario.opt_out,
        },
        "content": {
            "text": "A simulated notification",
            "subject": "A simulated notification",
            "html": "<p>A simulated notification</p>",
            "link": "https://shop.example.ru/simulated",
        },
    });
    if let Some(tz) = scenario.tz.iana_name() {
        body["customer"]["timezone"] = json!(tz);
    }
    if let Some(at) = scenario.send_at_ms {
        body["send_at"] = json!(rfc3339(at));
    }
    body.to_string().into_bytes()
}

const SIMULATED_ID: &str = "simulated";

/// Plays the scenario through the daemon's worker, on the memory store
/// and a virtual clock, with the provider fakes on loopback, and returns
/// its timeline.
pub fn simulate(catalog: &Catalog, scenario: &Scenario) -> Result<Vec<Line>, String> {
    if !catalog.policies.contains_key(&scenario.policy) {
        let known: Vec<&str> = catalog.policies.keys().map(String::as_str).collect();
        return Err(format!(
            "no policy `{}`; policies: {}",
            scenario.policy,
            known.join(", ")
        ));
    }
    let mut driver = Driver::start(catalog, scenario.start_ms)
        .map_err(|e| format!("cannot start the provider fakes on loopback: {e}"))?;
    for channel in &scenario.failing {
        for script in driver.rig.scripts(channel) {
            script.at_random(0, vec![(Scripted::Permanent, 1.0)]);
        }
    }
    let mut reader = Reader {
        scenario,
        catalog,
        read_planned: false,
    };
    let played = driver
        .intake(&notification_body(scenario), &mut reader)
        .map_err(PlayError::from)
        .and_then(|intake| {
            let data = sample_data(catalog.policies.get(&scenario.policy));
            for (event, at_ms) in &scenario.events {
                driver.receipt_with_data_at(SIMULATED_ID, event, None, data.clone(), *at_ms);
            }
            driver.run_to_end(&mut reader)?;
            Ok(intake)
        })
        .map_err(|e| format!("the simulation stopped: {e}"))?;
    if let Intake::Rejected(e) = played {
        return Err(format!(
            "the simulated notification is refused: {}",
            e.message
        ));
    }
    let (_, timeline) = driver
        .status(SIMULATED_ID)
        .map_err(|e| e.to_string())?
        .ok_or("the cascade vanished")?;
    Ok(timeline.iter().map(|e| line(e, scenario)).collect())
}

fn line(e: &Entry, s: &Scenario) -> Line {
    Line {
        at: rfc3339(e.at_ms),
        local: local(e.at_ms, &s.tz),
        offset_s: (e.at_ms - s.start_ms) / 1000,
        event: e.event.as_str().to_owned(),
        step: e.step.map(|s| s + 1),
        channel: e.channel.clone(),
        reason: e.reason.clone(),
        until: e.until_ms.map(|u| local(u, &s.tz)),
    }
}

pub fn rfc3339(ms: i64) -> String {
    Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

pub fn local(ms: i64, tz: &TimeZone) -> String {
    match Timestamp::from_millisecond(ms) {
        Ok(t) => t
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M %Z")
            .to_string(),
        Err(_) => ms.to_string(),
    }
}

/// `+1d 2h 30m` from seconds.
pub fn offset(secs: i64) -> String {
    format!("+{}", crate::config::fmt_ms(secs * 1000))
}

/// The timeline as aligned text for a terminal.
pub fn render_text(lines: &[Line]) -> String {
    let mut out = String::new();
    for l in lines {
        let step = l.step.map(|s| format!("step {s}")).unwrap_or_default();
        let mut detail = Vec::new();
        if let Some(r) = &l.reason {
            detail.push(r.replace('_', " "));
        }
        if let Some(u) = &l.until {
            detail.push(format!("until {u}"));
        }
        out.push_str(&format!(
            "{:<22} {:<12} {:<12} {:<7} {:<12} {}\n",
            l.local,
            offset(l.offset_s),
            l.event,
            step,
            l.channel.as_deref().unwrap_or(""),
            detail.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn catalog() -> Catalog {
        Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("cascade.toml")).unwrap()
    }

    fn scenario(policy: &str) -> Scenario {
        Scenario {
            policy: policy.into(),
            contacts: SAMPLE_CONTACTS.iter().map(|(k, _)| k.to_string()).collect(),
            preferences: vec![],
            opt_out: vec![],
            tz: TimeZone::get("Europe/Moscow").unwrap(),
            start_ms: "2026-11-23T09:00:00Z"
                .parse::<Timestamp>()
                .unwrap()
                .as_millisecond(),
            send_at_ms: None,
            read: None,
            failing: vec![],
            events: vec![],
        }
    }

    fn sends(lines: &[Line]) -> Vec<(String, i64)> {
        lines
            .iter()
            .filter(|l| l.event == "sent")
            .map(|l| (l.channel.clone().unwrap(), l.offset_s))
            .collect()
    }

    #[test]
    fn read_after_12_minutes_means_no_sms() {
        let mut s = scenario("delivery_delay");
        s.read = Some(Read {
            after_ms: 12 * 60_000,
            on_channel: None,
            event: None,
        });
        let lines = simulate(&catalog(), &s).unwrap();
        assert_eq!(sends(&lines), [("vk".to_string(), 0)]);
        assert_eq!(lines.last().unwrap().event, "completed");
    }

    #[test]
    fn never_read_means_sms_after_30_minutes() {
        let lines = simulate(&catalog(), &scenario("delivery_delay")).unwrap();
        assert_eq!(
            sends(&lines),
            [("vk".to_string(), 0), ("sms".to_string(), 1800)]
        );
    }

    #[test]
    fn no_vk_means_sms_at_once() {
        let mut s = scenario("delivery_delay");
        s.contacts.retain(|c| c != "vk");
        let lines = simulate(&catalog(), &s).unwrap();
        assert_eq!(sends(&lines), [("sms".to_string(), 0)]);
        assert!(
            lines
                .iter()
                .any(|l| l.event == "skipped" && l.channel.as_deref() == Some("vk"))
        );
    }

    #[test]
    fn order_followup_calls_then_texts() {
        let lines = simulate(&catalog(), &scenario("order_followup")).unwrap();
        let s = sends(&lines);
        assert_eq!(s[0], ("email".to_string(), 0));
        assert_eq!(s[1], ("call_centre".to_string(), 7200));
        assert_eq!(s[2], ("sms".to_string(), 14_400));
    }

    /// `order_call` with the call centre's verdict `after` the start.
    fn order_call_with(event: &str, after_ms: i64) -> Vec<Line> {
        let mut s = scenario("order_call");
        s.events = vec![(event.to_owned(), s.start_ms + after_ms)];
        simulate(&catalog(), &s).unwrap()
    }

    #[test]
    fn a_call_that_got_through_is_confirmed_in_a_messenger() {
        let lines = order_call_with("called", 150 * 60_000);
        assert_eq!(
            sends(&lines),
            [
                ("email".to_string(), 0),
                ("call_centre".to_string(), 7200),
                ("telegram".to_string(), 9000)
            ]
        );
        let branch = lines
            .iter()
            .find(|l| l.reason.as_deref() == Some("on called"));
        let branch = branch.expect("the branch is on the timeline");
        assert_eq!((branch.event.as_str(), branch.step), ("escalated", Some(2)));
        let last = lines.last().unwrap();
        assert_eq!(
            (last.event.as_str(), last.reason.as_deref()),
            ("completed", Some("called"))
        );
    }

    #[test]
    fn an_unanswered_call_opens_a_chat() {
        let lines = order_call_with("no_answer", 150 * 60_000);
        let s = sends(&lines);
        assert_eq!(s[2], ("whatsapp".to_string(), 9000));
        assert_eq!(s.len(), 3);
        assert_eq!(lines.last().unwrap().event, "exhausted");
        // With no verdict, the call's wait ends in the chat as well, 4 h on.
        let lines = simulate(&catalog(), &scenario("order_call")).unwrap();
        assert_eq!(sends(&lines)[2], ("whatsapp".to_string(), 7200 + 4 * 3600));
    }
}
