//! A wake-up's stages: load, decide (and store), settle the send's channel
//! and limits. The `Send` stage is in `send.rs`.

use super::*;

/// One wake-up of one cascade: what it carries from stage to stage.
pub(super) struct Wakeup<'w, S: CascadeStore> {
    pub(super) worker: &'w Worker<S>,
    pub(super) id: &'w str,
    /// The scheduler's claim, while only its lease stands for this wake-up
    /// (nothing stored, nothing sent yet); taken as soon as that changes.
    pub(super) claim: Option<Claim>,
    /// A provider message id waiting to be stored with the next commit.
    pub(super) sent: Option<ProviderMessage>,
    /// A decision sent on the lease and not stored yet.
    pub(super) unsaved: Option<Unsaved>,
    /// The end of the claim's lease while the timer still holds it: until
    /// the wake-up's first store replaces it. A store says it, so that it
    /// sets the timer over this lease and no other claim's.
    pub(super) lease_in_timer: Option<i64>,
}

impl<'w, S: CascadeStore> Wakeup<'w, S> {
    pub(super) fn new(worker: &'w Worker<S>, id: &'w str, claim: Option<Claim>) -> Self {
        Wakeup {
            worker,
            id,
            lease_in_timer: claim.map(|c| c.lease.until_ms),
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
    pub(super) async fn run(mut self, first: Stage) -> Result<(), StoreError> {
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

    pub(super) async fn advance(&mut self, stage: Stage) -> Result<Stage, StoreError> {
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
    pub(super) async fn load(&mut self, mut event: Event) -> Result<Stage, StoreError> {
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
            resume(self.id, Box::new(loaded), &mut self.unsaved),
            event,
        ))
    }

    /// Lets the core decide, and stores the decision (or holds a send
    /// decided on the claim for the lease).
    pub(super) async fn decide(
        &mut self,
        mut loaded: Box<Loaded>,
        event: Event,
    ) -> Result<Stage, StoreError> {
        let catalog = self.worker.catalog.load();
        let now = self.worker.clock.now_ms();
        // Only the wake-up's first decision may send on the lease.
        let on_claim = self.unsaved.is_none() && self.claim.as_ref().is_some_and(|c| c.may_send);
        let decided = self
            .decide_and_commit(&mut loaded, &catalog, &event, now, on_claim)
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
                    lease: None,
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
    pub(super) async fn settle_send(
        &mut self,
        loaded: Box<Loaded>,
        decision: Decision,
        version: i64,
    ) -> Result<Stage, StoreError> {
        let Some(order) = decision.send else {
            return Ok(Stage::Settled);
        };
        let after = |mut loaded: Box<Loaded>| {
            loaded.cascade = decision.cascade.clone();
            loaded.version = version;
            loaded
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

    /// Lets the core decide on `loaded` and stores the decision (with the
    /// provider message id of a send it records, which is then taken, and
    /// the entries of a decision sent on the lease before it). A decision
    /// made `on_claim` that orders a send is not stored yet.
    pub(super) async fn decide_and_commit(
        &mut self,
        loaded: &mut Loaded,
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
        let mut decision = decide(loaded.cascade.clone(), event.clone(), now, &ctx);
        if on_claim && decision.send.is_some() {
            return Ok(Decided::OnClaim(decision));
        }
        if self.unsaved.is_none()
            && decision.send.is_none()
            && decision.entries.is_empty()
            && decision.cascade == loaded.cascade
            && loaded.untallied() == 0
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
                    self.lease_in_timer.take(),
                )
                .await?;
            self.worker
                .stored_wake(self.id, loaded.cascade.wake_at_ms());
            return Ok(Decided::Settled);
        }
        let earlier = self.unsaved.as_ref().map_or(&[][..], |u| &u.entries[..]);
        let counts = tally(catalog, loaded, earlier, &mut decision, now);
        let committed = self.commit(loaded, &decision, &counts, event, now).await?;
        Ok(match committed {
            CommitReply::Done(version) => {
                self.worker.counted(&loaded.policy.name, &counts);
                if let Some(u) = &self.unsaved {
                    loaded.stored(&u.entries);
                }
                loaded.stored(&decision.entries);
                self.worker
                    .stored_wake(self.id, decision.cascade.wake_at_ms());
                self.sent = None;
                self.lease_in_timer = None;
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
    pub(super) async fn commit(
        &self,
        loaded: &Loaded,
        decision: &Decision,
        counts: &[Count],
        event: &Event,
        now: i64,
    ) -> Result<CommitReply, StoreError> {
        let earlier = self.unsaved.as_ref().map_or(&[][..], |u| &u.entries[..]);
        let retry_until = self.outcome_window(loaded, event);
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
                    lease_until_ms: self.lease_in_timer,
                    counts,
                    segment: &loaded.segment,
                    lines: Some(loaded.lines),
                })
                .await;
            match committed {
                Err(e)
                    if e.about_the_data().is_none()
                        && retry_until.is_some_and(|until| Instant::now() + pause < until) =>
                {
                    tracing::warn!(notification_id = self.id, error = %e, retry_in_ms = pause.as_millis() as u64, "cannot store a send's outcome; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    /// Until when a commit that records a send's outcome may be tried again:
    /// while the send still holds the cascade — its claim's lease (less a
    /// margin) for a send on the lease, its in-flight window for one stored
    /// in flight. `None` for any other commit: it is simply decided again.
    fn outcome_window(&self, loaded: &Loaded, event: &Event) -> Option<Instant> {
        if !matches!(event, Event::SendResult { .. }) {
            return None;
        }
        if let Some(unsaved) = &self.unsaved {
            return unsaved.lease?.deadline.checked_sub(LEASE_MARGIN / 2);
        }
        let Phase::InFlight { deadline_ms, .. } = loaded.cascade.phase else {
            return None;
        };
        let left_ms = deadline_ms - self.worker.clock.now_ms() - LEASE_MARGIN.as_millis() as i64;
        Some(Instant::now() + Duration::from_millis(left_ms.max(0) as u64))
    }

    /// Stores a decision made on the claim, whose send does not go out on
    /// the lease, with that send in flight (refused, like any send, if a
    /// stopping receipt arrived); logs it once stored.
    pub(super) async fn store_in_flight(
        &self,
        send: &mut Send,
        decided: Unsaved,
        now: i64,
    ) -> Result<CommitReply, StoreError> {
        let mut in_flight = Decision {
            cascade: decided.cascade,
            send: Some(send.order.clone()),
            entries: decided.entries,
        };
        let counts = tally(&send.catalog, &send.loaded, &[], &mut in_flight, now);
        send.cascade.tallied = in_flight.cascade.tallied;
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
                lease_until_ms: self.lease_in_timer,
                counts: &counts,
                segment: &send.loaded.segment,
                lines: Some(send.loaded.lines),
            })
            .await?;
        if matches!(committed, CommitReply::Done(_)) {
            self.worker.counted(&send.loaded.policy.name, &counts);
            send.loaded.stored(&in_flight.entries);
            self.worker
                .stored_wake(self.id, in_flight.cascade.wake_at_ms());
            self.worker.log(self.id, &send.loaded, &in_flight.entries);
        }
        Ok(committed)
    }
}
