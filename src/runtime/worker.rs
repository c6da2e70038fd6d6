//! Wakes one cascade: load it, let the core decide, store the decision, carry
//! out the send it orders (limits first), and feed the outcome back, until
//! the cascade waits for time or a receipt.
//!
//! A step goes out once: only the instance that holds a cascade sends. It
//! holds it either by the scheduler's claim (a lease in the timer set, which
//! the claim took atomically with reading the receipts, contract §6) or by having
//! stored the send's in-flight state. The first send of a claimed wake-up
//! goes out on the lease, and the one commit after it stores the decision
//! and the outcome together; if this instance dies in between, the next
//! claimant finds the lease run out (`Event::ClaimLapsed`) and the core
//! counts that send as uncertain. Every other send stores its in-flight
//! state first: a later send of the same wake-up, a wake-up of a lapsed
//! claim, and one whose channel could not finish well inside what is left
//! of the lease or would have to wait for its throughput.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::clock::Clock;
use super::lifecycle::log_entries;
use super::store::{
    Claimed, CommitReply, CommitRequest, Lease, Loaded, ProviderMessage, Store, StoreError,
};
use super::telemetry::Telemetry;
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
    pub telemetry: Telemetry,
}

/// What deciding on a loaded state came to.
enum Decided {
    /// Stored as this version; carry out its send, if any.
    Stored(Decision, i64),
    /// Not stored: a send decided on the claim, which may go out on its
    /// lease (`Worker::run` settles that right before sending).
    OnClaim(Decision),
    /// The state moved on meanwhile: load it and decide again.
    Again,
    /// Nothing more to do in this wake-up.
    Settled,
}

/// A decision not stored yet, whose send goes (or went) out on the claim's
/// lease: stored with the next commit, which must find the version it was
/// made on.
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
const LEASE_MARGIN: Duration = Duration::from_secs(5);

impl Worker {
    /// Handles a due timer (or a poke after a receipt) for a cascade the
    /// scheduler claimed and read in one round trip. A state that is stale
    /// by now is caught by the commit's version check.
    pub async fn wake_claimed(&self, mut claimed: Claimed) -> Result<(), StoreError> {
        let lapsed = claimed.lapsed_claim_at_ms.is_some();
        let loaded = match self.store.load_claimed(&mut claimed).await {
            Ok(Some(loaded)) => loaded,
            Ok(None) => return Ok(()),
            Err(e) => {
                self.give_back(&claimed.id, &claimed.lease, lapsed).await;
                return Err(e);
            }
        };
        let event = match claimed.lapsed_claim_at_ms {
            Some(claimed_at_ms) => Event::ClaimLapsed { claimed_at_ms },
            None => Event::TimerDue,
        };
        let claim = Claim {
            lease: claimed.lease,
            version: loaded.version,
            lapsed,
            // A lapsed claim's wake-up sends nothing on its own lease: the
            // core replays what the lapsed holder did first.
            may_send: !lapsed,
        };
        // Boxed: the scheduler spawns this, and a task is moved a few times
        // on its way into the runtime; the state machine is some 5 KB.
        Box::pin(self.run(&claimed.id, Some(loaded), None, event, Some(claim))).await
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

    /// `rounds`, and when it fails while the claim's lease is still all
    /// there is (nothing stored, nothing sent), gives the lease back, so the
    /// retry is a plain wake-up: a lapsed claim would count a send that
    /// never started as uncertain. (A claim that was itself found lapsed
    /// keeps that mark: the lapsed holder's send may still have gone out.)
    async fn run(
        &self,
        id: &str,
        fresh: Option<Loaded>,
        stored: Option<(Decision, i64)>,
        event: Event,
        mut claim: Option<Claim>,
    ) -> Result<(), StoreError> {
        let result = self.rounds(id, fresh, stored, event, &mut claim).await;
        if let (Err(_), Some(held)) = (&result, &claim) {
            self.give_back(id, &held.lease, held.lapsed).await;
        }
        result
    }

    /// Gives back the lease of a claim nothing was stored or sent under,
    /// unless the claim was itself found lapsed: that mark stays, since the
    /// lapsed holder's send may still have gone out.
    async fn give_back(&self, id: &str, lease: &Lease, lapsed: bool) {
        if lapsed {
            return;
        }
        if let Err(e) = self.store.release_claim(id, lease).await {
            tracing::warn!(notification_id = id, error = %e, "cannot give back the claim of a failed wake-up; it will count as lapsed");
        }
    }

    /// Decides, stores and sends until the cascade waits. `claim` is the
    /// scheduler's while only its lease stands for this wake-up (nothing
    /// stored, nothing sent yet); it is taken as soon as that changes.
    async fn rounds(
        &self,
        id: &str,
        mut fresh: Option<Loaded>,
        mut stored: Option<(Decision, i64)>,
        mut event: Event,
        claim: &mut Option<Claim>,
    ) -> Result<(), StoreError> {
        // After a send this instance owns, the state it just stored (or
        // sent on) is fresh enough to decide on (`fresh`): a receipt that
        // arrives meanwhile is acted on by the commit that follows (it
        // wakes the cascade at once), and a changed version is caught there.
        // A provider message id waiting to be stored with the next commit.
        let mut sent: Option<ProviderMessage> = None;
        let mut unsaved: Option<Unsaved> = None;
        for _ in 0..MAX_ROUNDS {
            let loaded = match fresh.take() {
                Some(l) => l,
                None => match self.store.load(id).await? {
                    Some(l) => {
                        if matches!(event, Event::ClaimLapsed { .. })
                            && claim.as_ref().is_some_and(|c| c.version != l.version)
                        {
                            // Someone stored a decision since the lapsed claim:
                            // that claim is settled, this is a plain wake-up.
                            event = Event::TimerDue;
                        }
                        resume(id, l, &mut unsaved)
                    }
                    None => return Ok(()),
                },
            };
            let catalog = self.catalog.load();
            let now = self.clock.now_ms();
            // Only the wake-up's first decision may send on the lease.
            let on_claim = unsaved.is_none() && claim.as_ref().is_some_and(|c| c.may_send);
            let (decision, version) = match stored.take() {
                Some(stored) => stored,
                None => match self
                    .decide_and_commit(
                        id,
                        &loaded,
                        &catalog,
                        &event,
                        now,
                        on_claim,
                        &mut sent,
                        &mut unsaved,
                    )
                    .await?
                {
                    Decided::Stored(decision, version) => {
                        *claim = None;
                        (decision, version)
                    }
                    Decided::OnClaim(mut decision) => {
                        // Logged when stored, with the decision after it.
                        unsaved = Some(Unsaved {
                            cascade: decision.cascade.clone(),
                            entries: std::mem::take(&mut decision.entries),
                            version: loaded.version,
                        });
                        (decision, loaded.version)
                    }
                    Decided::Again => {
                        // Someone else may have written the timer: the lease
                        // may be gone, so nothing goes out on it any more.
                        if let Some(c) = claim.as_mut() {
                            c.may_send = false;
                        }
                        continue;
                    }
                    Decided::Settled => {
                        *claim = None;
                        return Ok(());
                    }
                },
            };
            if unsaved.is_none() {
                log_entries(
                    &self.telemetry,
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
            // A send decided on the claim: on its lease if the channel is sure
            // to be done well before the lease ends and its throughput is
            // free now; else stored in flight first, like any other.
            let mut on_lease = None;
            let mut version = version;
            if let Some(u) = unsaved.take() {
                let lease = claim.as_ref().map(|c| c.lease);
                if let Some(lease) = lease.filter(|l| self.fits_lease(l, channel, now)) {
                    on_lease = Some(lease);
                    unsaved = Some(u);
                    *claim = None;
                } else {
                    let stored = self.store_in_flight(id, &loaded, u, &order, now).await?;
                    // Stored or refused, the lease no longer stands alone for it.
                    *claim = None;
                    match stored {
                        CommitReply::Done(v) => version = v,
                        CommitReply::Conflict | CommitReply::StoppedByReceipt => {
                            // Not sent: give the limit back, and look again.
                            self.store
                                .release_limit(
                                    &loaded.customer_id,
                                    &loaded.policy,
                                    channel,
                                    &member,
                                )
                                .await?;
                            continue;
                        }
                        CommitReply::Gone => return Ok(()),
                    }
                }
            }
            let started = Instant::now();
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
                tracking_until_ms: crate::channels::email::tracking_until(
                    loaded.cascade.expires_at_ms,
                    now,
                    catalog.settings.redis.retention_ms,
                ),
                now_ms: now,
            };
            // The send futures of all channel kinds are large: boxed, they
            // do not make every wake-up's task that large.
            let outcome = match on_lease {
                Some(lease) => {
                    // Done well before the lease runs out, or counted as uncertain.
                    let left = lease
                        .deadline
                        .saturating_duration_since(Instant::now())
                        .saturating_sub(LEASE_MARGIN / 2);
                    let send = Box::pin(self.outbound.send_admitted(&outgoing));
                    tokio::time::timeout(left, send).await.unwrap_or_else(|_| {
                        SendOutcome::Ambiguous {
                            reason: "no answer before the claim's lease ran short".into(),
                        }
                    })
                }
                None => Box::pin(self.outbound.send(&outgoing)).await,
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
            self.telemetry
                .send(&channel.name, outcome_word(&outcome), started.elapsed());
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
    /// made `on_claim` that orders a send is not stored yet.
    #[allow(clippy::too_many_arguments)]
    async fn decide_and_commit(
        &self,
        id: &str,
        loaded: &Loaded,
        catalog: &Catalog,
        event: &Event,
        now: i64,
        on_claim: bool,
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
        if on_claim && decision.send.is_some() {
            return Ok(Decided::OnClaim(decision));
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
            .commit(CommitRequest {
                id,
                version: loaded.version,
                earlier,
                decision: &decision,
                policy: &loaded.policy,
                sent: sent.as_ref(),
                now_ms: now,
            })
            .await?;
        Ok(match committed {
            CommitReply::Done(version) => {
                *sent = None;
                if let Some(u) = unsaved.take() {
                    log_entries(
                        &self.telemetry,
                        id,
                        &loaded.customer_id,
                        &loaded.policy.name,
                        &u.entries,
                    );
                }
                Decided::Stored(decision, version)
            }
            // Someone else decided first, or a stopping receipt just
            // arrived: look again with fresh state and receipts.
            CommitReply::Conflict | CommitReply::StoppedByReceipt => Decided::Again,
            CommitReply::Gone => Decided::Settled,
        })
    }

    /// Stores a decision made on the claim, whose send `order` does not go
    /// out on the lease, with that send in flight (refused, like any send,
    /// if a stopping receipt arrived); logs it once stored.
    async fn store_in_flight(
        &self,
        id: &str,
        loaded: &Loaded,
        decided: Unsaved,
        order: &SendOrder,
        now: i64,
    ) -> Result<CommitReply, StoreError> {
        let in_flight = Decision {
            cascade: decided.cascade,
            send: Some(order.clone()),
            entries: decided.entries,
        };
        let committed = self
            .store
            .commit(CommitRequest {
                id,
                version: decided.version,
                earlier: &[],
                decision: &in_flight,
                policy: &loaded.policy,
                sent: None,
                now_ms: now,
            })
            .await?;
        if matches!(committed, CommitReply::Done(_)) {
            log_entries(
                &self.telemetry,
                id,
                &loaded.customer_id,
                &loaded.policy.name,
                &in_flight.entries,
            );
        }
        Ok(committed)
    }

    /// Whether a send on `channel` may go out on `lease`: the channel
    /// finishes (or times out) well before the lease ends, and its
    /// throughput is free now (waiting for it could outlast the lease).
    /// Takes that throughput when it says yes.
    fn fits_lease(&self, lease: &Lease, channel: &ChannelConfig, now_ms: i64) -> bool {
        let left = lease.deadline.saturating_duration_since(Instant::now());
        let needs = Duration::from_millis(channel.timeout_ms.max(0) as u64) + LEASE_MARGIN;
        left >= needs && self.outbound.try_admit(channel, now_ms)
    }
}

/// The scheduler's claim on the cascade a wake-up runs for.
#[derive(Clone, Copy)]
struct Claim {
    lease: Lease,
    /// The version the claim read.
    version: i64,
    /// The claim found the cascade under a lapsed lease.
    lapsed: bool,
    /// Whether the wake-up's first send may go out on the lease.
    may_send: bool,
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
