//! Wakes one cascade: load it, let the core decide, store the decision, carry
//! out the send it orders (limits first), and feed the outcome back, until
//! the cascade waits for time or a receipt.
//!
//! A step goes out once: only the instance that holds a cascade sends. It
//! holds it either by the scheduler's claim (a lease in the timer set, which
//! the claim took atomically with reading the receipts, SPEC 6) or by having
//! stored the send's in-flight state. The first send of a claimed wake-up
//! goes out on the lease, and the one commit after it stores the decision
//! and the outcome together; if this instance dies in between, the next
//! claimant finds the lease run out (`Event::ClaimLapsed`) and the core
//! counts that send as uncertain. Every other send, and one whose channel
//! could not finish well inside the lease, stores its in-flight state first.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::clock::Clock;
use super::lifecycle::log_entries;
use super::store::{Commit, Loaded, ProviderMessage, Store, StoreError};
use crate::channels::{Outbound, Outgoing};
use crate::config::{Catalog, ChannelConfig};
use crate::core::{
    Cascade, ChannelKind, Context, Decision, Entry, Event, SendOrder, SendOutcome, decide,
};

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
    /// Not stored: its send goes out on the claim's lease first.
    OnLease(Decision),
    /// The state moved on meanwhile: load it and decide again.
    Again,
    /// Nothing more to do in this wake-up.
    Settled,
}

/// A decision whose send went out on the claim's lease: stored with the
/// next commit, which must find the version it was made on.
struct Unsaved {
    cascade: Cascade,
    entries: Vec<Entry>,
    version: i64,
}

/// Most decisions one wake-up makes before it yields (a send and its
/// outcome take two; conflicts a few more).
const MAX_ROUNDS: usize = 16;

/// A send goes out on a claim's lease only when its channel's timeout fits
/// in what is left of the lease with this to spare: for the commit after
/// it, and for clocks that differ between instances.
const LEASE_MARGIN_MS: i64 = 5_000;

impl Worker {
    /// Handles a due timer (or a poke after a receipt) for a cascade the
    /// scheduler claimed and loaded in one round trip. A state that is
    /// stale by now is caught by the commit's version check.
    /// `lease_until_ms` and `lapsed` are the claim's (`store::Claimed`).
    pub async fn wake_claimed(
        &self,
        id: &str,
        loaded: Loaded,
        lease_until_ms: i64,
        lapsed: bool,
    ) -> Result<(), StoreError> {
        let (event, lease) = if lapsed {
            // Sends of this wake-up store their in-flight state first.
            (Event::ClaimLapsed, None)
        } else {
            (Event::TimerDue, Some(lease_until_ms))
        };
        // Boxed: the scheduler spawns this, and a task is moved a few times
        // on its way into the runtime; the state machine is some 5 KB.
        Box::pin(self.run(id, Some(loaded), None, event, lease)).await
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
        self.run(
            id,
            Some(before),
            Some((decision, version)),
            Event::TimerDue,
            None,
        )
        .await
    }

    async fn run(
        &self,
        id: &str,
        mut fresh: Option<Loaded>,
        mut stored: Option<(Decision, i64)>,
        mut event: Event,
        mut lease_until_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        // After a send this instance owns, the state it just stored (or
        // sent on) is fresh enough to decide on (`fresh`): a receipt that
        // arrives meanwhile wakes the cascade again, and a changed version
        // is caught by the commit.
        // A provider message id waiting to be stored with the next commit.
        let mut sent: Option<ProviderMessage> = None;
        let mut unsaved: Option<Unsaved> = None;
        for _ in 0..MAX_ROUNDS {
            let loaded = match fresh.take() {
                Some(l) => l,
                None => match self.store.load(id).await? {
                    Some(l) => resume(id, l, &mut unsaved),
                    None => return Ok(()),
                },
            };
            let catalog = self.catalog.load();
            let now = self.clock.now_ms();
            // Only the wake-up's first decision may send on the claim's lease.
            let lease = lease_until_ms.take();
            let (decision, version) = match stored.take() {
                Some(stored) => stored,
                None => match self
                    .decide_and_commit(
                        id,
                        &loaded,
                        &catalog,
                        &event,
                        now,
                        lease,
                        &mut sent,
                        &mut unsaved,
                    )
                    .await?
                {
                    Decided::Stored(decision, version) => (decision, version),
                    Decided::OnLease(decision) => {
                        unsaved = Some(Unsaved {
                            cascade: decision.cascade.clone(),
                            entries: decision.entries.clone(),
                            version: loaded.version,
                        });
                        (decision, loaded.version)
                    }
                    Decided::Again => continue,
                    Decided::Settled => return Ok(()),
                },
            };
            let on_lease = unsaved.is_some();
            if !on_lease {
                log_entries(
                    id,
                    &loaded.customer_id,
                    &loaded.policy.name,
                    &decision.entries,
                );
            }
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
            // The send futures of all channel kinds are large: boxed, they
            // do not make every wake-up's task that large.
            let outcome = match lease {
                Some(until) if on_lease => {
                    // Done well before the lease runs out, or counted as uncertain.
                    let left_ms = (until - self.clock.now_ms() - LEASE_MARGIN_MS / 2).max(0);
                    let send = Box::pin(self.outbound.send_admitted(&outgoing));
                    tokio::time::timeout(Duration::from_millis(left_ms as u64), send)
                        .await
                        .unwrap_or_else(|_| SendOutcome::Ambiguous {
                            reason: "no answer before the claim's lease ran short".into(),
                        })
                }
                _ => Box::pin(self.outbound.send(&outgoing)).await,
            };
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
    /// provider message id of a send it records, which is then taken, and
    /// the entries of a decision sent on the lease before it). A decision
    /// made on the claim (`lease`) whose send may go out on the lease is
    /// not stored yet.
    #[allow(clippy::too_many_arguments)]
    async fn decide_and_commit(
        &self,
        id: &str,
        loaded: &Loaded,
        catalog: &Catalog,
        event: &Event,
        now: i64,
        lease: Option<i64>,
        sent: &mut Option<ProviderMessage>,
        unsaved: &mut Option<Unsaved>,
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
        if let (Some(until), Some(order)) = (lease, &decision.send)
            && self.may_send_on_lease(catalog, order, until, now)
        {
            return Ok(Decided::OnLease(decision));
        }
        if unsaved.is_none()
            && decision.send.is_none()
            && decision.entries.is_empty()
            && decision.cascade == loaded.cascade
        {
            // Nothing to do yet (an early or repeated wake-up): the claim
            // moved the timer to the lease's end, so put it back.
            self.store
                .touch(
                    id,
                    loaded.version,
                    loaded.cascade.wake_at_ms(),
                    &loaded.receipts_seen,
                    now,
                )
                .await?;
            return Ok(Decided::Settled);
        }
        let earlier = unsaved.as_ref().map_or(&[][..], |u| &u.entries[..]);
        let committed = self
            .store
            .commit(
                id,
                loaded.version,
                earlier,
                &decision,
                &loaded.policy.stop_on,
                sent.as_ref(),
                now,
            )
            .await?;
        Ok(match committed {
            Commit::Done(version) => {
                *sent = None;
                if let Some(u) = unsaved.take() {
                    log_entries(id, &loaded.customer_id, &loaded.policy.name, &u.entries);
                }
                Decided::Stored(decision, version)
            }
            // Someone else decided first, or a stopping receipt just
            // arrived: look again with fresh state and receipts.
            Commit::Conflict | Commit::StoppedByReceipt => Decided::Again,
            Commit::Gone => Decided::Settled,
        })
    }

    /// Whether `order`, decided on a claim leased until `until`, may go out
    /// on that lease: its channel finishes (or times out) well before the
    /// lease ends, and its throughput is free now (waiting for it could
    /// outlast the lease). Takes that throughput when it says yes.
    fn may_send_on_lease(
        &self,
        catalog: &Catalog,
        order: &SendOrder,
        until: i64,
        now: i64,
    ) -> bool {
        let Some(channel): Option<&ChannelConfig> = catalog.channels.get(&order.channel) else {
            return false;
        };
        until - now >= channel.timeout_ms + LEASE_MARGIN_MS && self.outbound.try_admit(channel)
    }
}

/// A state loaded again after a commit was refused. A decision sent on the
/// lease and not yet stored is still ours to store if nobody else moved the
/// cascade on (same version): decide on from it. Otherwise another instance
/// took the cascade over (the lease ran out), and that decision is dropped.
fn resume(id: &str, mut loaded: Loaded, unsaved: &mut Option<Unsaved>) -> Loaded {
    if let Some(u) = unsaved {
        if u.version == loaded.version {
            loaded.cascade = u.cascade.clone();
        } else {
            tracing::warn!(
                notification_id = id,
                "a send made on a claim's lease could not be stored: another instance took the cascade over after the lease ran out"
            );
            *unsaved = None;
        }
    }
    loaded
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
