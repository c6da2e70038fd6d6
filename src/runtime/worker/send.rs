//! The `Send` stage: admit a send (on the claim's lease, or stored in
//! flight first), take its channel's throughput inside its window, request
//! it, and classify the answer.

use super::wakeup::Wakeup;
use super::*;
use crate::channels::texts::{self, Texts};
use crate::core::receipt_data::ReceiptData;

impl<S: CascadeStore> Wakeup<'_, S> {
    /// Admits the send (on the claim's lease, or stored in flight first),
    /// takes the channel's throughput inside the send's window, and
    /// requests it; the outcome is decided on next.
    pub(super) async fn send(&mut self, mut send: Send) -> Result<Stage, StoreError> {
        let catalog = send.catalog.clone();
        let Some(channel) = catalog.channels.get(&send.order.channel) else {
            // `settle_send` found it in this same catalog.
            let event = gone_channel(&send.order);
            return Ok(Stage::Decide(send.after(), event));
        };
        let now = self.worker.clock.now_ms();
        let mut on_lease = None;
        if let Some(mut u) = self.unsaved.take() {
            // A send decided on the claim: on its lease if the channel is
            // sure to be done well before the lease ends and its throughput
            // is free now; else stored in flight first, like any other.
            let mut lease = self.claim.take().map(|c| c.lease);
            if let Some(l) = &lease
                && !self.worker.fits_lease(l, channel, now).await
            {
                lease = None;
            }
            match lease {
                Some(lease) => {
                    on_lease = Some(lease);
                    u.lease = Some(lease);
                    self.unsaved = Some(u);
                }
                None => match self.store_in_flight(&mut send, u, now).await? {
                    CommitReply::Done(v) => {
                        send.version = v;
                        self.lease_in_timer = None;
                    }
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
    pub(super) async fn take_throughput(
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
            admission = self.worker.admit_within(channel, max_wait, now) => admission,
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
                Stage::Decide(Box::new(fresh), Event::ReceiptsChanged)
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
    pub(super) async fn request(
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
        let texts = match self.texts(send, channel).await {
            Ok(texts) => texts,
            Err(outcome) => return outcome,
        };
        let outgoing = Outgoing {
            texts: &texts,
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

    /// What the send says: the step's texts with their placeholders
    /// filled in, the receipt data read only when they name some. A
    /// placeholder without a value fails the send permanently (nothing half
    /// filled goes out; the cascade moves on as for a refused recipient);
    /// data that cannot be read is a transient failure, retried.
    async fn texts<'s>(
        &self,
        send: &'s Send,
        channel: &ChannelConfig,
    ) -> Result<Texts<'s>, SendOutcome> {
        let notification = &send.loaded.notification;
        let step = send.loaded.policy.steps.get(send.order.step as usize);
        let chosen = notification.step_texts(step, &channel.name, channel.kind);
        let data =
            if texts::needs_data(&chosen) {
                self.worker.store.receipt_data(self.id).await.map_err(|e| {
                    SendOutcome::Transient {
                        reason: format!("cannot read the receipt data for the text: {e}"),
                        retry_after_ms: None,
                    }
                })?
            } else {
                ReceiptData::new()
            };
        texts::render(&chosen, notification, &data).map_err(|e| SendOutcome::Permanent {
            reason: e.to_string(),
        })
    }

    pub(super) async fn release_limit(
        &self,
        send: &Send,
        channel: &ChannelConfig,
    ) -> Result<(), StoreError> {
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
}
