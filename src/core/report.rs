//! Provider reports about the message one step sent (SMS delivery reports,
//! WhatsApp statuses, email bounces): which of them the cascade hears. One
//! rule for every provider, so a callback adapter only maps the provider's
//! words and ids and asks here.

use super::cascade::{Cascade, Phase};
use super::policy::FAILED;

/// A provider's report about the message that `step` sent.
#[derive(Clone, Copy, Debug)]
pub struct ProviderReport<'a> {
    /// The step the message was sent for (from the provider message index).
    pub step: u8,
    /// The channel it was sent on; `None` when the report does not tell
    /// (WhatsApp's echo of our key names the step only).
    pub channel: Option<&'a str>,
    /// The receipt word it maps to: `delivered`, `read`, `failed`, …
    pub event: &'a str,
}

impl ProviderReport<'_> {
    /// Whether the report is recorded as a receipt. A `failed` escalates the
    /// step that waits, so it counts only while the cascade still waits on
    /// the message it is about — the same step, on the same channel: a late
    /// one must not escalate a later step, or another alternative of the
    /// same step. Every other word is recorded: it can only stop the cascade
    /// or inform the timeline.
    pub fn applies_to(&self, cascade: &Cascade) -> bool {
        if self.event != FAILED {
            return true;
        }
        let Phase::Waiting { channel, .. } = &cascade.phase else {
            return false;
        };
        cascade.step == self.step && self.channel.is_none_or(|c| c == channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Outcome;

    fn at(step: u8, phase: Phase) -> Cascade {
        Cascade {
            step,
            alt: 0,
            failures: 0,
            phase,
            expires_at_ms: None,
            handled_failed_ms: None,
            transitions: 0,
            tallied: None,
            branch: None,
        }
    }

    fn waiting(channel: &str) -> Phase {
        Phase::Waiting {
            channel: channel.into(),
            sent_ms: 0,
            until_ms: 1_000,
        }
    }

    fn report<'a>(step: u8, channel: Option<&'a str>, event: &'a str) -> ProviderReport<'a> {
        ProviderReport {
            step,
            channel,
            event,
        }
    }

    #[test]
    fn a_failure_counts_only_while_its_message_is_the_one_waited_on() {
        let sms_waits = at(1, waiting("sms"));
        assert!(report(1, Some("sms"), "failed").applies_to(&sms_waits));
        assert!(report(1, None, "failed").applies_to(&sms_waits));
        // A later step waits: the failure of step 0's message is stale.
        assert!(!report(0, Some("sms"), "failed").applies_to(&sms_waits));
        // Another alternative of the same step waits.
        assert!(!report(1, Some("vk"), "failed").applies_to(&sms_waits));
        // Not waiting at all: in flight, due, or finished.
        for phase in [
            Phase::InFlight {
                channel: "sms".into(),
                deadline_ms: 5,
            },
            Phase::Due { at_ms: 5 },
            Phase::Done {
                outcome: Outcome::Exhausted,
                at_ms: 5,
            },
        ] {
            assert!(!report(1, Some("sms"), "failed").applies_to(&at(1, phase)));
        }
    }

    #[test]
    fn other_words_are_always_recorded() {
        let later = at(
            2,
            Phase::Done {
                outcome: Outcome::Exhausted,
                at_ms: 5,
            },
        );
        for word in ["delivered", "read", "opened", "clicked", "replied"] {
            assert!(report(0, Some("sms"), word).applies_to(&later), "{word}");
        }
    }
}
