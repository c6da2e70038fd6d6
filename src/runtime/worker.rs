//! Wakes one cascade: load it, let the core decide, store the decision, carry
//! out the send it orders (limits first), and feed the outcome back, until
//! the cascade waits for time or a receipt. Only the instance whose commit of
//! the in-flight state succeeded performs a send, so a step goes out once.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::clock::Clock;
use super::lifecycle::log_entries;
use super::store::{Commit, Loaded, ProviderMessage, Store, StoreError};
use crate::channels::{Outbound, Outgoing};
use crate::config::Catalog;
use crate::core::{ChannelKind, Context, Decision, Event, SendOutcome, decide};

/// Everything a wake-up needs; shared by the scheduler's tasks.
pub struct Worker {
    pub store: Store,
    pub catalog: Arc<ArcSwap<Catalog>>,
    pub outbound: Outbound,
    pub clock: Arc<dyn Clock>,
}

/// What deciding on a loaded state came to.
enum Decided {
    /// Stored as this version; carry out its send, if any.
    Stored(Decision, i64),
    /// The state moved on meanwhile: load it and decide again.
    Again,
    /// Nothing more to do in this wake-up.
    Settled,
}

/// Most decisions one wake-up makes before it yields (a send and its
/// outcome take two; conflicts a few more).
const MAX_ROUNDS: usize = 16;

impl Worker {
    /// Handles a due timer (or a poke after a receipt) for a cascade the
    /// scheduler claimed and loaded in one round trip. A state that is
    /// stale by now is caught by the commit's version check.
    pub async fn wake_loaded(&self, id: &str, loaded: Loaded) -> Result<(), StoreError> {
        self.run(id, Some(loaded), None).await
    }

    /// Carries out a decision already stored as version `version` (intake
    /// stores a new cascade together with its first step), starting from
    /// `before`, the state it was made on.
    pub async fn carry_out(
        &self,
        id: &str,
        before: Loaded,
        decision: Decision,
        version: i64,
    ) -> Result<(), StoreError> {
        self.run(id, Some(before), Some((decision, version))).await
    }

    async fn run(
        &self,
        id: &str,
        mut fresh: Option<Loaded>,
        mut stored: Option<(Decision, i64)>,
    ) -> Result<(), StoreError> {
        // After a send this instance owns, the state it just stored is fresh
        // enough to decide on (`fresh`): a receipt that arrives meanwhile
        // wakes the cascade again, and a changed version is caught by the commit.
        let mut event = Event::TimerDue;
        // A provider message id waiting to be stored with the next commit.
        let mut sent: Option<ProviderMessage> = None;
        for _ in 0..MAX_ROUNDS {
            let loaded = match fresh.take() {
                Some(l) => l,
                None => match self.store.load(id).await? {
                    Some(l) => l,
                    None => return Ok(()),
                },
            };
            let catalog = self.catalog.load();
            let now = self.clock.now_ms();
            let (decision, version) = match stored.take() {
                Some(stored) => stored,
                None => match self
                    .decide_and_commit(id, &loaded, &catalog, &event, now, &mut sent)
                    .await?
                {
                    Decided::Stored(decision, version) => (decision, version),
                    Decided::Again => continue,
                    Decided::Settled => return Ok(()),
                },
            };
            log_entries(
                id,
                &loaded.customer_id,
                &loaded.policy.name,
                &decision.entries,
            );
            let Some(order) = decision.send else {
                return Ok(());
            };
            // This instance owns the send now.
            let Some(channel) = catalog.channels.get(&order.channel) else {
                event = Event::SendResult {
                    step: order.step,
                    channel: order.channel.clone(),
                    outcome: SendOutcome::Misconfigured {
                        reason: format!("channel `{}` is no longer configured", order.channel),
                    },
                };
                fresh = Some(Loaded {
                    cascade: decision.cascade,
                    version,
                    ..loaded
                });
                continue;
            };
            let member = format!("{id}:{}", order.step);
            if let Some(not_before_ms) = self
                .store
                .take_limit(&loaded.customer_id, &loaded.policy, channel, &member, now)
                .await?
            {
                event = Event::LimitBlocked {
                    step: order.step,
                    channel: order.channel,
                    not_before_ms,
                };
                fresh = Some(Loaded {
                    cascade: decision.cascade,
                    version,
                    ..loaded
                });
                continue;
            }
            let started = std::time::Instant::now();
            let contact = channel
                .rules
                .contact_key
                .as_ref()
                .and_then(|k| loaded.recipient.contacts.get(k))
                .map(String::as_str);
            let outgoing = Outgoing {
                notification: &loaded.notification,
                order: &order,
                channel,
                contact,
                public_url: &catalog.settings.http.public_url,
            };
            let outcome = self.outbound.send(&outgoing).await;
            if let SendOutcome::Sent {
                provider_message_id: Some(pmid),
            } = &outcome
            {
                // Provider callbacks name their message id: the commit of
                // this outcome maps it back to us.
                sent = Some(ProviderMessage {
                    channel: channel.name.clone(),
                    provider_message_id: pmid.clone(),
                    peer: (channel.kind == ChannelKind::Vk)
                        .then_some(contact)
                        .flatten()
                        .map(str::to_owned),
                    step: order.step,
                });
            }
            super::telemetry::send(&channel.name, outcome_word(&outcome), started.elapsed());
            if !matches!(
                outcome,
                SendOutcome::Sent { .. } | SendOutcome::Ambiguous { .. }
            ) {
                // It did not reach the customer: it must not count against their limits.
                self.store
                    .release_limit(&loaded.customer_id, &loaded.policy, channel, &member)
                    .await?;
            }
            event = Event::SendResult {
                step: order.step,
                channel: order.channel,
                outcome,
            };
            fresh = Some(Loaded {
                cascade: decision.cascade,
                version,
                ..loaded
            });
        }
        tracing::warn!(
            notification_id = id,
            "a wake-up made {MAX_ROUNDS} decisions without settling; it will be woken again"
        );
        Ok(())
    }

    /// Lets the core decide on `loaded` and stores the decision (with the
    /// provider message id of a send it records, which is then taken).
    async fn decide_and_commit(
        &self,
        id: &str,
        loaded: &Loaded,
        catalog: &Catalog,
        event: &Event,
        now: i64,
        sent: &mut Option<ProviderMessage>,
    ) -> Result<Decided, StoreError> {
        let ctx = Context {
            notification_id: id,
            policy: &loaded.policy,
            channels: &catalog.channel_rules,
            recipient: &loaded.recipient,
            receipts: &loaded.receipts,
            timing: catalog.timing(),
        };
        let decision = decide(loaded.cascade.clone(), event.clone(), now, &ctx);
        if decision.send.is_none()
            && decision.entries.is_empty()
            && decision.cascade == loaded.cascade
        {
            // Nothing to do yet (an early or repeated wake-up): the claim
            // moved the timer to the lease's end, so put it back.
            self.store
                .touch(id, loaded.version, loaded.cascade.wake_at_ms(), now)
                .await?;
            return Ok(Decided::Settled);
        }
        let committed = self
            .store
            .commit(
                id,
                loaded.version,
                &decision,
                &loaded.policy.stop_on,
                sent.as_ref(),
                now,
            )
            .await?;
        Ok(match committed {
            Commit::Done(version) => {
                *sent = None;
                Decided::Stored(decision, version)
            }
            // Someone else decided first, or a stopping receipt just
            // arrived: look again with fresh state and receipts.
            Commit::Conflict | Commit::StoppedByReceipt => Decided::Again,
            Commit::Gone => Decided::Settled,
        })
    }
}

fn outcome_word(o: &SendOutcome) -> &'static str {
    match o {
        SendOutcome::Sent { .. } => "sent",
        SendOutcome::Transient { .. } => "transient",
        SendOutcome::RateLimited { .. } => "rate_limited",
        SendOutcome::Permanent { .. } => "permanent",
        SendOutcome::Misconfigured { .. } => "misconfigured",
        SendOutcome::Ambiguous { .. } => "ambiguous",
    }
}
