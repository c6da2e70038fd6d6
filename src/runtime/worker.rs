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
use tokio_util::sync::CancellationToken;

use super::clock::Clock;
use super::internal_events::{Lifecycle, ProviderAnswered};
use super::store::{
    Claimed, CommitReply, CommitRequest, Lease, Loaded, ProviderMessage, Store, StoreError,
};
use super::telemetry::Telemetry;
use crate::channels::{Admission, Outbound, Outgoing};
use crate::config::{Catalog, ChannelConfig};
use crate::core::{
    Cascade, ChannelKind, Context, Decision, Entry, Event, Phase, SendOrder, SendOutcome, decide,
};

/// Everything a wake-up needs; shared by the scheduler's tasks.
pub struct Worker {
    pub store: Store,
    pub catalog: Arc<ArcSwap<Catalog>>,
    pub outbound: Outbound,
    pub clock: Arc<dyn Clock>,
    pub telemetry: Telemetry,
    /// Cancelled when the daemon stops: a send still waiting for its
    /// channel's rate is handed back rather than left in flight.
    pub shutdown: CancellationToken,
}

/// Where one wake-up stands. Each stage is one short step
/// (`Wakeup::advance`) that returns the next; a wake-up runs until it is
/// `Settled`: the cascade waits for time or a receipt.
enum Stage {
    /// Read the cascade, then decide on the event.
    Load(Event),
    /// Let the core decide on the state after the event, and store that.
    Decide(Loaded, Event),
    /// A decision stored as `version` (or held on the claim, `Unsaved`):
    /// settle its send's channel and the customer's limits.
    Decided(Loaded, Decision, i64),
    /// A send whose channel and limits are settled: admit it and request it.
    Send(Box<Send>),
    /// Nothing more to do in this wake-up.
    Settled,
}

/// A send about to go out.
struct Send {
    /// The configuration it was decided with (its channel is in it).
    catalog: Arc<Catalog>,
    loaded: Loaded,
    /// The state the decision that ordered it left (in flight).
    cascade: Cascade,
    order: SendOrder,
    version: i64,
    /// Its place in the customer's limits, given back if it does not go out.
    member: String,
}

impl Send {
    /// The state the send leaves, to decide its outcome on.
    fn after(self) -> Loaded {
        Loaded {
            cascade: self.cascade,
            version: self.version,
            ..self.loaded
        }
    }
}

/// What deciding on a loaded state came to.
enum Decided {
    /// Stored as this version; carry out its send, if any.
    Stored(Decision, i64),
    /// Not stored: a send decided on the claim, which may go out on its
    /// lease (the `Send` stage settles that right before sending).
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

/// Most stages one wake-up runs before it yields (a send and its outcome
/// take four; conflicts a few more).
const MAX_STAGES: usize = 64;

/// A send goes out on a claim's lease only when its channel's timeout fits
/// in what is left of the lease with this to spare: for the commit after
/// it, and for clocks that differ between instances.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// The first pause before storing a send's outcome again after Redis failed.
const COMMIT_RETRY_FIRST: Duration = Duration::from_millis(100);

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
        let wakeup = Wakeup::new(self, &claimed.id, Some(claim));
        // Boxed: the scheduler spawns this, and a task is moved a few times
        // on its way into the runtime; the state machine is some 5 KB.
        Box::pin(wakeup.run(Stage::Decide(loaded, event))).await
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
        self.log(id, &before, &decision.entries);
        Wakeup::new(self, id, None)
            .run(Stage::Decided(before, decision, version))
            .await
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

    /// Whether a send on `channel` may go out on `lease`: the channel
    /// finishes (or times out) well before the lease ends, and its
    /// throughput is free now (waiting for it could outlast the lease).
    /// Takes that throughput when it says yes.
    fn fits_lease(&self, lease: &Lease, channel: &ChannelConfig, now_ms: i64) -> bool {
        let left = lease.deadline.saturating_duration_since(Instant::now());
        let needs = Duration::from_millis(channel.timeout_ms.max(0) as u64) + LEASE_MARGIN;
        left >= needs && self.outbound.try_admit(channel, now_ms)
    }

    fn log(&self, id: &str, loaded: &Loaded, entries: &[Entry]) {
        self.telemetry.emit(Lifecycle {
            notification_id: id,
            customer_id: &loaded.customer_id,
            policy: &loaded.policy.name,
            entries,
        });
    }
}

/// One wake-up of one cascade: what it carries from stage to stage.
struct Wakeup<'w> {
    worker: &'w Worker,
    id: &'w str,
    /// The scheduler's claim, while only its lease stands for this wake-up
    /// (nothing stored, nothing sent yet); taken as soon as that changes.
    claim: Option<Claim>,
    /// A provider message id waiting to be stored with the next commit.
    sent: Option<ProviderMessage>,
    /// A decision sent on the lease and not stored yet.
    unsaved: Option<Unsaved>,
}

impl<'w> Wakeup<'w> {
    fn new(worker: &'w Worker, id: &'w str, claim: Option<Claim>) -> Self {
        Wakeup {
            worker,
            id,
            claim,
            sent: None,
            unsaved: None,
        }
    }

    /// Runs the stages from `first` until the cascade waits. When it fails
    /// while the claim's lease is still all there is (nothing stored,
    /// nothing sent), gives the lease back, so the retry is a plain
    /// wake-up: a lapsed claim would count a send that never started as
    /// uncertain.
    async fn run(mut self, first: Stage) -> Result<(), StoreError> {
        let mut stage = first;
        for _ in 0..MAX_STAGES {
            stage = match stage {
                Stage::Settled => return Ok(()),
                stage => match self.advance(stage).await {
                    Ok(next) => next,
                    Err(e) => {
                        if let Some(held) = &self.claim {
                            self.worker
                                .give_back(self.id, &held.lease, held.lapsed)
                                .await;
                        }
                        return Err(e);
                    }
                },
            };
        }
        tracing::warn!(
            notification_id = self.id,
            "a wake-up ran {MAX_STAGES} stages without settling; it will be woken again"
        );
        Ok(())
    }

    async fn advance(&mut self, stage: Stage) -> Result<Stage, StoreError> {
        match stage {
            Stage::Load(event) => self.load(event).await,
            Stage::Decide(loaded, event) => self.decide(loaded, event).await,
            Stage::Decided(loaded, decision, version) => {
                self.settle_send(loaded, decision, version).await
            }
            Stage::Send(send) => self.send(*send).await,
            Stage::Settled => Ok(Stage::Settled),
        }
    }

    /// Reads the cascade again (after a refused commit, or a send that
    /// waited): a decision sent on the lease and not stored is still ours
    /// to store if nobody else moved the cascade on.
    async fn load(&mut self, mut event: Event) -> Result<Stage, StoreError> {
        let Some(loaded) = self.worker.store.load(self.id).await? else {
            return Ok(Stage::Settled);
        };
        if matches!(event, Event::ClaimLapsed { .. })
            && self
                .claim
                .as_ref()
                .is_some_and(|c| c.version != loaded.version)
        {
            // Someone stored a decision since the lapsed claim: that claim
            // is settled, this is a plain wake-up.
            event = Event::TimerDue;
        }
        Ok(Stage::Decide(
            resume(self.id, loaded, &mut self.unsaved),
            event,
        ))
    }

    /// Lets the core decide, and stores the decision (or holds a send
    /// decided on the claim for the lease).
    async fn decide(&mut self, loaded: Loaded, event: Event) -> Result<Stage, StoreError> {
        let catalog = self.worker.catalog.load();
        let now = self.worker.clock.now_ms();
        // Only the wake-up's first decision may send on the lease.
        let on_claim = self.unsaved.is_none() && self.claim.as_ref().is_some_and(|c| c.may_send);
        let decided = self
            .decide_and_commit(&loaded, &catalog, &event, now, on_claim)
            .await?;
        Ok(match decided {
            Decided::Stored(decision, version) => {
                self.claim = None;
                self.worker.log(self.id, &loaded, &decision.entries);
                Stage::Decided(loaded, decision, version)
            }
            Decided::OnClaim(mut decision) => {
                // Logged when stored, with the decision after it.
                let version = loaded.version;
                self.unsaved = Some(Unsaved {
                    cascade: decision.cascade.clone(),
                    entries: std::mem::take(&mut decision.entries),
                    version,
                });
                Stage::Decided(loaded, decision, version)
            }
            Decided::Again => {
                // Someone else may have written the timer: the lease may be
                // gone, so nothing goes out on it any more.
                if let Some(c) = self.claim.as_mut() {
                    c.may_send = false;
                }
                Stage::Load(event)
            }
            Decided::Settled => {
                self.claim = None;
                Stage::Settled
            }
        })
    }

    /// The channel of the decision's send, and the customer's limits: a
    /// channel gone from the configuration fails the send, a limit defers it.
    async fn settle_send(
        &mut self,
        loaded: Loaded,
        decision: Decision,
        version: i64,
    ) -> Result<Stage, StoreError> {
        let Some(order) = decision.send else {
            return Ok(Stage::Settled);
        };
        let after = |loaded: Loaded| Loaded {
            cascade: decision.cascade.clone(),
            version,
            ..loaded
        };
        let catalog = self.worker.catalog.load_full();
        let Some(channel) = catalog.channels.get(&order.channel) else {
            return Ok(Stage::Decide(after(loaded), gone_channel(&order)));
        };
        let member = format!("{}:{}", self.id, order.step);
        let now = self.worker.clock.now_ms();
        let blocked = self
            .worker
            .store
            .take_limit(&loaded.customer_id, &loaded.policy, channel, &member, now)
            .await?;
        if let Some(not_before_ms) = blocked {
            let event = Event::LimitBlocked {
                step: order.step,
                channel: order.channel,
                not_before_ms,
            };
            return Ok(Stage::Decide(after(loaded), event));
        }
        Ok(Stage::Send(Box::new(Send {
            catalog: catalog.clone(),
            cascade: decision.cascade,
            loaded,
            order,
            version,
            member,
        })))
    }

    /// Admits the send (on the claim's lease, or stored in flight first),
    /// takes the channel's throughput inside the send's window, and
    /// requests it; the outcome is decided on next.
    async fn send(&mut self, mut send: Send) -> Result<Stage, StoreError> {
        let catalog = send.catalog.clone();
        let Some(channel) = catalog.channels.get(&send.order.channel) else {
            // `settle_send` found it in this same catalog.
            let event = gone_channel(&send.order);
            return Ok(Stage::Decide(send.after(), event));
        };
        let now = self.worker.clock.now_ms();
        let mut on_lease = None;
        if let Some(u) = self.unsaved.take() {
            // A send decided on the claim: on its lease if the channel is
            // sure to be done well before the lease ends and its throughput
            // is free now; else stored in flight first, like any other.
            let lease = self.claim.take().map(|c| c.lease);
            match lease.filter(|l| self.worker.fits_lease(l, channel, now)) {
                Some(lease) => {
                    on_lease = Some(lease);
                    self.unsaved = Some(u);
                }
                None => match self.store_in_flight(&send, u, now).await? {
                    CommitReply::Done(v) => send.version = v,
                    CommitReply::Conflict | CommitReply::StoppedByReceipt => {
                        // Not sent: give the limit back, and look again.
                        self.release_limit(&send, channel).await?;
                        return Ok(Stage::Load(Event::TimerDue));
                    }
                    CommitReply::Gone => return Ok(Stage::Settled),
                },
            }
        }
        if on_lease.is_none() {
            // Stored in flight: the channel's throughput must come inside
            // the in-flight window, or the send does not go out at all.
            send = match self.take_throughput(send, channel, now).await? {
                Ok(send) => send,
                Err(instead) => return Ok(instead),
            };
        }
        let outcome = self.request(&send, channel, &catalog, on_lease, now).await;
        if !matches!(
            outcome,
            SendOutcome::Sent { .. } | SendOutcome::Ambiguous { .. }
        ) {
            // It did not reach the customer: it must not count against their limits.
            self.release_limit(&send, channel).await?;
        }
        let event = Event::SendResult {
            step: send.order.step,
            channel: send.order.channel.clone(),
            outcome,
        };
        Ok(Stage::Decide(send.after(), event))
    }

    /// Waits for the channel's throughput, at most until the in-flight
    /// window leaves just the channel's timeout and a margin. `Ok(send)`:
    /// taken, send now. `Err(stage)`: the send does not go out (its limit
    /// given back) — `Throttled` when there is no room in time, or a fresh
    /// look when the wait let a receipt arrive that stops the cascade (a
    /// `read` or a `cancel` while queued).
    async fn take_throughput(
        &mut self,
        send: Send,
        channel: &ChannelConfig,
        now: i64,
    ) -> Result<Result<Send, Stage>, StoreError> {
        let deadline_ms = match &send.cascade.phase {
            Phase::InFlight { deadline_ms, .. } => *deadline_ms,
            _ => now,
        };
        let spare = deadline_ms - now - channel.timeout_ms - LEASE_MARGIN.as_millis() as i64;
        let max_wait = Duration::from_millis(spare.max(0) as u64);
        let admission = tokio::select! {
            admission = self.worker.outbound.admit_within(channel, max_wait, now) => admission,
            // Stopping: not requested, so hand it back for any instance to
            // send (left in flight, it would count as interrupted).
            _ = self.worker.shutdown.cancelled() => Admission::NoRoom { wait: Duration::ZERO },
        };
        let instead = match admission {
            Admission::Now { waited } if waited.is_zero() => return Ok(Ok(send)),
            Admission::Now { .. } => {
                // Time passed in the queue: a receipt may have come.
                let Some(fresh) = self.worker.store.load(self.id).await? else {
                    return Ok(Err(Stage::Settled));
                };
                let stops = fresh.receipts.keys().any(|w| fresh.policy.stops_on(w));
                if !stops && fresh.version == send.version {
                    return Ok(Ok(send));
                }
                self.release_limit(&send, channel).await?;
                Stage::Decide(fresh, Event::ReceiptsChanged)
            }
            Admission::NoRoom { wait } => {
                self.release_limit(&send, channel).await?;
                let event = Event::Throttled {
                    step: send.order.step,
                    channel: send.order.channel.clone(),
                    not_before_ms: self.worker.clock.now_ms() + wait.as_millis() as i64,
                };
                Stage::Decide(send.after(), event)
            }
        };
        Ok(Err(instead))
    }

    /// Makes the request and classifies the answer. On the lease, it must
    /// be done well before the lease runs out, or it counts as uncertain.
    async fn request(
        &mut self,
        send: &Send,
        channel: &ChannelConfig,
        catalog: &Catalog,
        on_lease: Option<Lease>,
        now: i64,
    ) -> SendOutcome {
        let started = Instant::now();
        let contact = channel
            .rules
            .contact_key
            .as_ref()
            .and_then(|k| send.loaded.recipient.contacts.get(k))
            .map(String::as_str);
        let outgoing = Outgoing {
            notification: &send.loaded.notification,
            order: &send.order,
            channel,
            contact,
            public_url: &catalog.settings.http.public_url,
            tracking_until_ms: crate::channels::email::tracking_until(
                send.loaded.cascade.expires_at_ms,
                now,
                catalog.settings.redis.retention_ms,
            ),
            now_ms: now,
        };
        // The send futures of all channel kinds are large: boxed, they do
        // not make every wake-up's task that large.
        let request = Box::pin(self.worker.outbound.send_admitted(&outgoing));
        let outcome = match on_lease {
            Some(lease) => {
                let left = lease
                    .deadline
                    .saturating_duration_since(Instant::now())
                    .saturating_sub(LEASE_MARGIN / 2);
                tokio::time::timeout(left, request)
                    .await
                    .unwrap_or_else(|_| SendOutcome::Ambiguous {
                        reason: "no answer before the claim's lease ran short".into(),
                    })
            }
            None => request.await,
        };
        if let SendOutcome::Sent {
            provider_message_id: Some(pmid),
        } = &outcome
        {
            // Provider callbacks name their message id: the commit of this
            // outcome maps it back to us.
            self.sent = Some(ProviderMessage {
                channel: channel.name.clone(),
                provider_message_id: pmid.clone(),
                peer: (channel.kind == ChannelKind::Vk)
                    .then_some(contact)
                    .flatten()
                    .map(str::to_owned),
                step: send.order.step,
            });
        }
        self.worker.telemetry.emit(ProviderAnswered {
            channel: &channel.name,
            outcome: outcome_word(&outcome),
            took: started.elapsed(),
        });
        outcome
    }

    async fn release_limit(&self, send: &Send, channel: &ChannelConfig) -> Result<(), StoreError> {
        self.worker
            .store
            .release_limit(
                &send.loaded.customer_id,
                &send.loaded.policy,
                channel,
                &send.member,
            )
            .await
    }

    /// Lets the core decide on `loaded` and stores the decision (with the
    /// provider message id of a send it records, which is then taken, and
    /// the entries of a decision sent on the lease before it). A decision
    /// made `on_claim` that orders a send is not stored yet.
    async fn decide_and_commit(
        &mut self,
        loaded: &Loaded,
        catalog: &Catalog,
        event: &Event,
        now: i64,
        on_claim: bool,
    ) -> Result<Decided, StoreError> {
        let ctx = Context {
            notification_id: self.id,
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
        if self.unsaved.is_none()
            && decision.send.is_none()
            && decision.entries.is_empty()
            && decision.cascade == loaded.cascade
        {
            // Nothing to do yet (an early or repeated wake-up): the claim
            // moved the timer to the lease's end, so put it back.
            self.worker
                .store
                .touch(
                    self.id,
                    loaded.version,
                    loaded.cascade.wake_at_ms(),
                    &loaded.receipts_seen,
                    now,
                )
                .await?;
            return Ok(Decided::Settled);
        }
        let committed = self.commit(loaded, &decision, event, now).await?;
        Ok(match committed {
            CommitReply::Done(version) => {
                self.sent = None;
                if let Some(u) = self.unsaved.take() {
                    self.worker.log(self.id, loaded, &u.entries);
                }
                Decided::Stored(decision, version)
            }
            // Someone else decided first, or a stopping receipt just
            // arrived: look again with fresh state and receipts.
            CommitReply::Conflict | CommitReply::StoppedByReceipt => Decided::Again,
            CommitReply::Gone => Decided::Settled,
        })
    }

    /// Stores a decision. One that records a send's outcome is stored again
    /// (with backoff) while Redis fails and the send's window allows: losing
    /// it would lose the provider message id and make the step look
    /// uncertain.
    async fn commit(
        &self,
        loaded: &Loaded,
        decision: &Decision,
        event: &Event,
        now: i64,
    ) -> Result<CommitReply, StoreError> {
        let earlier = self.unsaved.as_ref().map_or(&[][..], |u| &u.entries[..]);
        let retry_until_ms = match (event, &loaded.cascade.phase) {
            (Event::SendResult { .. }, Phase::InFlight { deadline_ms, .. }) => {
                *deadline_ms - LEASE_MARGIN.as_millis() as i64
            }
            _ => i64::MIN,
        };
        let mut pause = COMMIT_RETRY_FIRST;
        loop {
            let committed = self
                .worker
                .store
                .commit(CommitRequest {
                    id: self.id,
                    version: loaded.version,
                    earlier,
                    decision,
                    policy: &loaded.policy,
                    sent: self.sent.as_ref(),
                    now_ms: now,
                })
                .await;
            match committed {
                Err(e)
                    if e.about_the_data().is_none()
                        && self.worker.clock.now_ms() + (pause.as_millis() as i64)
                            < retry_until_ms =>
                {
                    tracing::warn!(notification_id = self.id, error = %e, retry_in_ms = pause.as_millis() as u64, "cannot store a send's outcome; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    /// Stores a decision made on the claim, whose send does not go out on
    /// the lease, with that send in flight (refused, like any send, if a
    /// stopping receipt arrived); logs it once stored.
    async fn store_in_flight(
        &self,
        send: &Send,
        decided: Unsaved,
        now: i64,
    ) -> Result<CommitReply, StoreError> {
        let in_flight = Decision {
            cascade: decided.cascade,
            send: Some(send.order.clone()),
            entries: decided.entries,
        };
        let committed = self
            .worker
            .store
            .commit(CommitRequest {
                id: self.id,
                version: decided.version,
                earlier: &[],
                decision: &in_flight,
                policy: &send.loaded.policy,
                sent: None,
                now_ms: now,
            })
            .await?;
        if matches!(committed, CommitReply::Done(_)) {
            self.worker.log(self.id, &send.loaded, &in_flight.entries);
        }
        Ok(committed)
    }
}

/// The outcome of a send whose channel a reload removed.
fn gone_channel(order: &SendOrder) -> Event {
    Event::SendResult {
        step: order.step,
        channel: order.channel.clone(),
        outcome: SendOutcome::Misconfigured {
            reason: format!("channel `{}` is no longer configured", order.channel),
        },
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
