//! Receipts: a stopping receipt ends the cascade, a `failed` report
//! escalates. (A read just after an escalation is noted as late by the
//! report's tally, which sees the channel each receipt came on.)

use super::super::policy::{CANCELLED, FAILED};
use super::run::Run;
use super::{EntryKind, Outcome, Phase};

impl<'a> Run<'_, 'a> {
    /// The first stopping receipt recorded, if any (`cancelled` first).
    pub(super) fn receipt_stops(&self) -> Option<(&'a str, i64)> {
        let receipts = self.ctx.receipts;
        if let Some((k, &at)) = receipts.get_key_value(CANCELLED) {
            return Some((k.as_str(), at));
        }
        receipts
            .iter()
            .filter(|(event, _)| self.ctx.policy.stops_on(event))
            .min_by_key(|(_, at)| **at)
            .map(|(k, &at)| (k.as_str(), at))
    }

    /// Applies the receipts hash. Returns true when the cascade is now done.
    pub(super) fn check_receipts(&mut self) -> bool {
        if let Some((event, _)) = self.receipt_stops() {
            if event == CANCELLED {
                self.done(Outcome::Cancelled, None);
            } else {
                self.done(
                    Outcome::Completed {
                        event: event.to_owned(),
                    },
                    None,
                );
            }
            return true;
        }
        // A `failed` report for the step now waiting escalates at once.
        if let (
            Some(&failed_ms),
            Phase::Waiting {
                channel, sent_ms, ..
            },
        ) = (self.ctx.receipts.get(FAILED), &self.cascade.phase)
            && failed_ms >= *sent_ms
            && self.cascade.handled_failed_ms.is_none_or(|h| failed_ms > h)
        {
            let channel = channel.clone();
            self.cascade.handled_failed_ms = Some(failed_ms);
            let step = self.cascade.step;
            self.note(
                EntryKind::SendFailed,
                Some(step),
                Some(&channel),
                Some("failed receipt"),
            );
            self.next_alternative("failed");
        }
        self.cascade.is_done()
    }
}
