//! Customers' replies reach a person. A reply to a notification opens a
//! staff cascade of its own: the same engine, pointed at the business. Its
//! first step hands the reply to the replies sink (a helpdesk webhook) and
//! waits `answer_within` for `answered`; each staff channel of
//! `answer_escalation` follows in turn. Business hours become the quiet
//! hours of the staff channels, and the waits count only open time.

use std::collections::{BTreeMap, BTreeSet};

use super::policy::{Limits, Policy, Step, WaitClock};
use super::quiet::QuietHours;

/// The receipt that ends a staff cascade: someone answered the customer.
pub const ANSWERED: &str = "answered";

/// The staff cascade of one reply: `<notification id>}reply-<hex>`. The
/// brace, which no producer's id may hold, keeps these ids apart from
/// every notification's, and puts the staff cascade in its notification's
/// Redis Cluster slot (a key's hash tag ends at the first `}`).
pub fn staff_id(notification_id: &str, inbound_id: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(inbound_id.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{notification_id}}}reply-{hex}")
}

/// The notification a staff cascade answers for, if `id` is one.
pub fn replied_to(id: &str) -> Option<&str> {
    let (notification, rest) = id.split_once('}')?;
    rest.starts_with("reply-").then_some(notification)
}

/// The policy of a staff cascade: its own name so reports keep staff apart.
pub fn staff_policy_name(policy: &str) -> String {
    format!("{policy}:answer")
}

/// Is this the policy of a staff cascade (`staff_policy_name`)?
pub fn is_staff_policy(name: &str) -> bool {
    name.ends_with(":answer")
}

/// The staff cascade for a reply to a notification of `policy`: the sink
/// first, waiting `answer_within` (when the policy sets one) for
/// `answered`, then each escalation channel in turn. Without a deadline
/// the cascade ends once the reply is handed over. `business` are the
/// quiet hours outside business hours (`QuietHours::outside_business`):
/// staff channels send and the waits count only in business hours; the
/// sink, a machine, takes the reply at once.
pub fn staff_policy(policy: &Policy, sink: &str, business: Option<QuietHours>) -> Policy {
    let clock = if business.is_some() {
        WaitClock::Awake
    } else {
        WaitClock::Wall
    };
    let step = |channel: &str, wait_ms: Option<i64>, name: String| Step {
        channels: vec![channel.to_owned()],
        wait_ms,
        wait_clock: clock,
        name: Some(name),
        is_final: wait_ms.is_none(),
        ..Step::default()
    };
    let answer = policy.answer.as_ref();
    let mut steps = vec![step(sink, answer.map(|a| a.within_ms), "forward".into())];
    let escalation = answer.map(|a| a.escalation.as_slice()).unwrap_or_default();
    for (i, staff) in escalation.iter().enumerate() {
        let last = i + 1 == escalation.len();
        let within = answer.map(|a| a.within_ms);
        let wait = if last { None } else { staff.wait_ms.or(within) };
        steps.push(step(&staff.channel, wait, format!("staff_{}", i + 1)));
    }
    let quiet_hours: BTreeMap<String, QuietHours> = business
        .map(|q| {
            escalation
                .iter()
                .filter(|s| s.channel != sink)
                .map(|s| (s.channel.clone(), q))
                .collect()
        })
        .unwrap_or_default();
    Policy {
        name: staff_policy_name(&policy.name),
        description: format!("answers to customers' replies to {}", policy.name),
        stop_on: vec![ANSWERED.to_owned()],
        expire_after_ms: None,
        steps,
        limits: Limits::default(),
        quiet_hours,
        quiet_off: BTreeSet::from([sink.to_owned()]),
        answer: None,
        // A deadline with no staff channel after it counts business time too.
        awake_hours: business,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::policy::{Answer, StaffStep};

    fn order_policy(answer: Option<Answer>) -> Policy {
        Policy {
            name: "order_followup".into(),
            description: String::new(),
            stop_on: vec!["read".into()],
            expire_after_ms: None,
            steps: vec![Step {
                channels: vec!["email".into()],
                ..Step::default()
            }],
            limits: Limits::default(),
            quiet_hours: BTreeMap::new(),
            quiet_off: BTreeSet::new(),
            answer,
            awake_hours: None,
        }
    }

    #[test]
    fn staff_ids_name_their_notification_and_stay_apart() {
        let id = staff_id("order-1", "vk:42");
        assert!(id.starts_with("order-1}reply-"), "{id}");
        assert_eq!(replied_to(&id), Some("order-1"));
        assert_eq!(staff_id("order-1", "vk:42"), id, "one reply, one cascade");
        assert_ne!(staff_id("order-1", "vk:43"), id);
        assert_eq!(replied_to("order-1"), None);
        assert_eq!(replied_to("order-1}other"), None);
    }

    #[test]
    fn without_a_deadline_the_reply_is_only_handed_over() {
        let p = staff_policy(&order_policy(None), "helpdesk", None);
        assert_eq!(p.name, "order_followup:answer");
        assert!(is_staff_policy(&p.name));
        assert_eq!(p.stop_on, [ANSWERED]);
        assert_eq!(p.steps.len(), 1);
        assert!(p.steps[0].is_final);
        assert_eq!(p.steps[0].channels, ["helpdesk"]);
    }

    #[test]
    fn a_deadline_without_staff_channels_counts_business_time() {
        use crate::core::cascade::{Context, Recipient, Timing};
        use crate::core::{Cascade, Event, Phase, decide};
        let answer = Answer {
            within_ms: 15 * 60_000,
            escalation: Vec::new(),
        };
        let business = QuietHours::outside_business("09:00-18:00", "mon-fri").unwrap();
        let p = staff_policy(&order_policy(Some(answer)), "helpdesk", Some(business));
        let tz = jiff::tz::TimeZone::get("Europe/Moscow").unwrap();
        let recipient = Recipient {
            contacts: BTreeMap::new(),
            preferences: Vec::new(),
            opt_out: Vec::new(),
            tz,
        };
        let channels = BTreeMap::from([(
            "helpdesk".to_owned(),
            crate::core::ChannelRules {
                kind: crate::core::ChannelKind::Webhook,
                contact_key: None,
                retry: crate::core::RetryPolicy::default(),
                on_uncertain: crate::core::OnUncertain::Resend,
            },
        )]);
        let receipts = BTreeMap::new();
        let ctx = Context {
            notification_id: "n}reply-1",
            policy: &p,
            channels: &channels,
            recipient: &recipient,
            receipts: &receipts,
            timing: Timing::default(),
        };
        let ms = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_millisecond();
        // Friday 17:50 in Moscow: handed over at once.
        let friday = ms("2026-12-04T14:50:00Z");
        let started = Cascade::start(friday, None, None, &ctx);
        let order = started.send.clone().expect("the hand-over");
        let sent = decide(
            started.cascade,
            Event::SendResult {
                step: order.step,
                channel: order.channel,
                outcome: crate::core::SendOutcome::Sent {
                    provider_message_id: None,
                },
            },
            friday,
            &ctx,
        );
        let Phase::Waiting { until_ms, .. } = sent.cascade.phase else {
            panic!("{:?}", sent.cascade.phase);
        };
        // Ten business minutes on Friday, five on Monday morning.
        assert_eq!(until_ms, ms("2026-12-07T06:05:00Z"));
    }

    #[test]
    fn a_deadline_escalates_to_staff_in_business_hours() {
        let answer = Answer {
            within_ms: 15 * 60_000,
            escalation: vec![
                StaffStep {
                    channel: "support_telegram".into(),
                    wait_ms: None,
                },
                StaffStep {
                    channel: "manager".into(),
                    wait_ms: None,
                },
            ],
        };
        let business = QuietHours::outside_business("09:00-18:00", "mon-fri").unwrap();
        let p = staff_policy(&order_policy(Some(answer)), "helpdesk", Some(business));
        let waits: Vec<_> = p.steps.iter().map(|s| s.wait_ms).collect();
        assert_eq!(waits, [Some(900_000), Some(900_000), None]);
        assert!(p.steps.iter().all(|s| s.wait_clock == WaitClock::Awake));
        assert!(p.steps[2].is_final && !p.steps[1].is_final);
        assert_eq!(p.quiet_hours.len(), 2);
        assert!(!p.quiet_hours.contains_key("helpdesk"));
        assert!(p.quiet_off.contains("helpdesk"));
        assert!(p.limits.per_customer.is_none());
    }
}
