//! Starting a notification intake admitted: the core starts its cascade
//! (and takes the first step at once when it is due now), and the cascade
//! is recorded together with that first decision in one script call.

use std::collections::BTreeMap;

use super::*;
use crate::notification::Admitted;
use crate::runtime::store::{Accepted, receipts_seen};

/// What starting an admitted notification came to.
pub enum Started {
    /// Recorded. `first` is its first send, decided and stored with it:
    /// carry it out (`Worker::carry_out_first`) once the delivery is
    /// acknowledged. Without one, the scheduler takes the cascade on.
    New { first: Option<Box<FirstSend>> },
    /// Its id is known already: nothing was recorded.
    Duplicate,
    /// Nothing was recorded: the store refused even the cascade alone.
    Refused,
}

/// A new cascade's first send, stored in flight with the cascade.
pub struct FirstSend {
    id: String,
    before: Loaded,
    decision: Decision,
}

impl<S: CascadeStore> Worker<S> {
    /// Records a new cascade for `admitted`, with its first decision when
    /// it is due now. A receipt recorded before the notification arrived
    /// (a `cancelled`, say) refuses that first send: the cascade is then
    /// recorded alone, due now, for the scheduler, which reads the receipts.
    pub async fn start(
        &self,
        admitted: Admitted<'_>,
        catalog: &Catalog,
        now: i64,
    ) -> Result<Started, StoreError> {
        let receipts = BTreeMap::new();
        let ctx = Context {
            notification_id: &admitted.notification.id,
            policy: admitted.policy,
            channels: &catalog.channel_rules,
            recipient: &admitted.recipient,
            receipts: &receipts,
            timing: catalog.timing(),
        };
        let (send_at_ms, expires_at_ms) = (admitted.send_at_ms, admitted.expires_at_ms);
        let accepted = Cascade::accept(now, send_at_ms, expires_at_ms, &ctx);
        let mut decision = Cascade::first_step(accepted.clone(), now, &ctx);
        let n = &admitted.notification;
        let segment = self
            .store
            .segment(&admitted.policy.name, n.customer.segment.as_deref())
            .await?;
        let mut counts = tally_new(catalog, &ctx, n, &mut decision, now);
        let mut stored = self
            .store
            .accept(
                &admitted,
                admitted.policy,
                &decision,
                &segment,
                &counts,
                now,
            )
            .await?;
        if matches!(stored, Accepted::SendRefused) {
            decision = accepted.clone();
            counts = tally_new(catalog, &ctx, n, &mut decision, now);
            stored = self
                .store
                .accept(
                    &admitted,
                    admitted.policy,
                    &decision,
                    &segment,
                    &counts,
                    now,
                )
                .await?;
        }
        let snapshot = match stored {
            Accepted::New(snapshot) => {
                let id = &admitted.notification.id;
                self.stored_wake(id, decision.cascade.wake_at_ms());
                snapshot
            }
            Accepted::Duplicate => return Ok(Started::Duplicate),
            // Only a decision that orders a send can be refused, and the
            // second one orders none.
            Accepted::SendRefused => return Ok(Started::Refused),
        };
        let before = Loaded {
            cascade: accepted.cascade,
            version: 1,
            customer_id: admitted.notification.customer.id.clone(),
            notification: admitted.notification,
            policy: snapshot,
            recipient: admitted.recipient,
            receipts_seen: receipts_seen(0, None),
            receipts,
            lines: decision.entries.len(),
            timeline: crate::runtime::store::join_entries(&[], &decision.entries),
            segment,
        };
        if decision.send.is_none() {
            self.log(&before.notification.id, &before, &decision.entries);
            return Ok(Started::New { first: None });
        }
        let id = before.notification.id.clone();
        let first = FirstSend {
            id,
            before,
            decision,
        };
        Ok(Started::New {
            first: Some(Box::new(first)),
        })
    }

    /// Carries out a new cascade's first send (`Started::New`).
    pub async fn carry_out_first(&self, first: Box<FirstSend>) -> Result<(), StoreError> {
        let first = *first;
        self.carry_out(&first.id, first.before, first.decision, 1)
            .await
    }
}
