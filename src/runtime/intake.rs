//! Intake: consume `cascade.notifications`, admit each message, record the
//! cascade in Redis, and only then acknowledge. Bad input goes to the
//! dead-letter queue under a publisher confirm, with its error code and
//! sentence in headers, and only then is acknowledged (SPEC 2).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Acker, BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Health;
use super::ack_batch::AckBatch;
use super::lifecycle::log_entries;
use super::store::{Accepted, Loaded, receipts_seen};
use super::telemetry;
use super::worker::Worker;
use crate::core::{Cascade, Context, Decision, Entry, EntryKind, Event, decide};
use crate::notification::{self, IntakeError};

/// Where intake reads and dead-letters.
#[derive(Clone, Debug)]
pub struct IntakeConfig {
    pub url: String,
    pub queue: String,
    pub dead_letter_queue: String,
    pub prefetch: u16,
}

impl From<&crate::config::Amqp> for IntakeConfig {
    fn from(a: &crate::config::Amqp) -> Self {
        IntakeConfig {
            url: a.url.clone(),
            queue: a.queue.clone(),
            dead_letter_queue: a.dead_letter_queue.clone(),
            prefetch: a.prefetch,
        }
    }
}

/// Consumes until `shutdown`, reconnecting with backoff when RabbitMQ goes away.
/// A cascade due at once goes straight on to its first send through `worker`;
/// a later one waits in the timers.
pub async fn run(
    config: IntakeConfig,
    worker: Arc<Worker>,
    poke: Arc<Notify>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        match consume(&config, &worker, &poke, &health, &shutdown).await {
            Ok(()) => break,
            Err(e) => {
                health.amqp.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "RabbitMQ connection lost; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    health.amqp.store(false, Ordering::Relaxed);
}

/// Declares the queues this daemon needs; also used by `cascade send`.
pub async fn declare(channel: &Channel, config: &IntakeConfig) -> lapin::Result<()> {
    for q in [&config.queue, &config.dead_letter_queue] {
        channel
            .queue_declare(
                ShortString::from(q.as_str()),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// What every delivery's handler shares on one connection.
struct Hands {
    worker: Arc<Worker>,
    poke: Arc<Notify>,
    dead: Channel,
    config: IntakeConfig,
    acks: AckBatch<Acker>,
}

async fn consume(
    config: &IntakeConfig,
    worker: &Arc<Worker>,
    poke: &Arc<Notify>,
    health: &Arc<Health>,
    shutdown: &CancellationToken,
) -> lapin::Result<()> {
    let conn = Connection::connect(&config.url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    declare(&channel, config).await?;
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await?;
    let dead = conn.create_channel().await?;
    dead.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut consumer = channel
        .basic_consume(
            ShortString::from(config.queue.as_str()),
            ShortString::from("cascade-intake"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    health.amqp.store(true, Ordering::Relaxed);
    tracing::info!(queue = %config.queue, prefetch = config.prefetch, "consuming");

    // Deliveries are handled concurrently, at most `prefetch` at a time
    // (a handler holds its permit through the first send it starts).
    let (due_acks, mut acks_to_send) = tokio::sync::mpsc::unbounded_channel::<Acker>();
    let hands = Arc::new(Hands {
        worker: worker.clone(),
        poke: poke.clone(),
        dead,
        config: config.clone(),
        acks: AckBatch::new(due_acks),
    });
    // One sender, so batches reach the broker in the order they were made.
    let acking = tokio::spawn(async move {
        while let Some(acker) = acks_to_send.recv().await {
            let _ = acker.ack(BasicAckOptions { multiple: true }).await;
        }
    });
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(config.prefetch.max(1) as usize));
    let result = loop {
        let next = tokio::select! {
            d = consumer.next() => d,
            _ = shutdown.cancelled() => break Ok(()),
        };
        let delivery = match next {
            Some(Ok(d)) => d,
            Some(Err(e)) => break Err(e),
            None => {
                break Err(lapin::Error::from(
                    lapin::ErrorKind::InvalidConnectionState(lapin::ConnectionState::Closed),
                ));
            }
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break Ok(());
        };
        hands.acks.arrived(delivery.delivery_tag);
        let hands = hands.clone();
        tracker.spawn(async move {
            let (tag, acker) = (delivery.delivery_tag, delivery.acker.clone());
            let handled = AssertUnwindSafe(handle(delivery, &hands))
                .catch_unwind()
                .await;
            if handled.is_err() || hands.acks.is_working(tag) {
                // A handler that panicked or left its delivery unanswered must
                // not hold back the acks behind it, nor be covered by one:
                // return the message to the queue first, then step over it.
                tracing::error!(
                    delivery_tag = tag,
                    "a delivery was left unanswered; returning it to the queue"
                );
                let _ = acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await;
                hands.acks.settled(tag);
            }
            drop(permit);
        });
    };
    // Stop taking deliveries; let those in hand finish (unacked ones are redelivered).
    tracker.close();
    tracker.wait().await;
    drop(hands);
    let _ = acking.await;
    let _ = conn.close(200, ShortString::from("shutting down")).await;
    result
}

async fn handle(delivery: Delivery, hands: &Hands) {
    let worker = &hands.worker;
    let catalog = worker.catalog.load_full();
    let store = &worker.store;
    let now = worker.clock.now_ms();
    let admitted = match notification::admit_at(&delivery.data, &catalog, now) {
        Ok(a) => a,
        Err(e) => {
            reject(delivery, &e, hands).await;
            return;
        }
    };
    let n = &admitted.notification;
    let Some(policy) = catalog.policies.get(&n.policy) else {
        // `admit` checked the policy against this same catalog.
        unreachable!("an admitted notification names a known policy");
    };
    let receipts = Default::default();
    let ctx = Context {
        notification_id: &n.id,
        policy,
        channels: &catalog.channel_rules,
        recipient: &admitted.recipient,
        receipts: &receipts,
        timing: catalog.timing(),
    };
    let accepted = Cascade::accept(now, admitted.send_at_ms, admitted.expires_at_ms, &ctx);
    // Due now: decide the first step too and store both in one go; a send
    // it orders then goes out from this handler (the in-flight timer covers
    // a crash).
    let mut first = accepted
        .cascade
        .wake_at_ms()
        .is_some_and(|w| w <= now)
        .then(|| {
            let first = decide(accepted.cascade.clone(), Event::TimerDue, now, &ctx);
            Decision {
                cascade: first.cascade,
                send: first.send,
                entries: [accepted.entries.clone(), first.entries].concat(),
            }
        });
    let mut stored = store
        .accept(&admitted, policy, first.as_ref().unwrap_or(&accepted), now)
        .await;
    if matches!(stored, Ok(Accepted::SendRefused)) {
        // A receipt recorded before the notification arrived refused the
        // send: store the cascade alone, due now, for the scheduler, which
        // reads the receipts.
        first = None;
        stored = store.accept(&admitted, policy, &accepted, now).await;
    }
    match stored {
        Ok(Accepted::New(snapshot)) => {
            acknowledge(&hands.acks, &delivery);
            telemetry::intake("accepted", None);
            let both = match first {
                Some(both) if both.send.is_some() => both,
                stored => {
                    let entries = stored.map_or(accepted.entries, |d| d.entries);
                    log_entries(&n.id, &n.customer.id, &policy.name, &entries);
                    hands.poke.notify_one();
                    return;
                }
            };
            let id = n.id.clone();
            let before = Loaded {
                cascade: accepted.cascade,
                version: 1,
                customer_id: admitted.notification.customer.id.clone(),
                notification: admitted.notification,
                policy: snapshot,
                recipient: admitted.recipient,
                receipts_seen: receipts_seen(receipts.len(), None),
                receipts,
            };
            if let Err(e) = worker.carry_out(&id, before, both, 1).await {
                // The in-flight timer hands it to the scheduler.
                tracing::warn!(notification_id = %id, error = %e, "first step failed; it will be retried");
            }
        }
        Ok(Accepted::SendRefused) => {
            // Only a decision that orders a send can be refused, and the
            // second one does not: the message goes back rather than be lost.
            hand_back(&hands.acks, delivery).await;
        }
        Ok(Accepted::Duplicate) => {
            acknowledge(&hands.acks, &delivery);
            let entry = intake_entry(now, EntryKind::Duplicate, None);
            if let Err(e) = store.append_event(Some(&n.id), &entry).await {
                tracing::warn!(error = %e, "cannot append to the events stream");
            }
            telemetry::intake("duplicate", None);
            tracing::info!(target: "cascade::lifecycle", event = "duplicate", notification_id = %n.id, customer_id = %n.customer.id, policy = %n.policy, "duplicate");
        }
        Err(e) => {
            // Not recorded: hand the message back so it is not lost.
            telemetry::intake("requeued", None);
            tracing::warn!(notification_id = %n.id, error = %e, "cannot record the cascade in Redis; returning the message to the queue");
            hand_back(&hands.acks, delivery).await;
        }
    }
}

/// Acknowledges a recorded delivery, together with the finished ones before
/// it when a batch is due. A failed ack means the channel is gone: RabbitMQ
/// redelivers, and the redelivery is counted as a duplicate.
fn acknowledge(acks: &AckBatch<Acker>, delivery: &Delivery) {
    acks.done(delivery.delivery_tag, delivery.acker.clone());
}

/// Returns a delivery that could not be handled to the queue, after a pause
/// so a failing dependency is not hammered.
async fn hand_back(acks: &AckBatch<Acker>, delivery: Delivery) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = delivery
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await;
    acks.settled(delivery.delivery_tag);
}

/// Dead-letters a bad message with its reason, under a publisher confirm,
/// then acknowledges it. If the dead-letter publish fails, the message goes
/// back to the queue instead: it is never dropped.
async fn reject(delivery: Delivery, error: &IntakeError, hands: &Hands) {
    let (dead, config) = (&hands.dead, &hands.config);
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert(
        ShortString::from("x-cascade-error-code"),
        AMQPValue::LongString(LongString::from(error.code.as_str())),
    );
    headers.insert(
        ShortString::from("x-cascade-error"),
        AMQPValue::LongString(LongString::from(error.message.as_str())),
    );
    let properties = delivery
        .properties
        .clone()
        .with_headers(headers)
        .with_delivery_mode(2);
    let confirmed = match dead
        .basic_publish(
            ShortString::from(""),
            ShortString::from(config.dead_letter_queue.as_str()),
            BasicPublishOptions::default(),
            &delivery.data,
            properties,
        )
        .await
    {
        Ok(confirm) => confirm.await.map(|c| c.is_ack()).unwrap_or(false),
        Err(_) => false,
    };
    if confirmed {
        acknowledge(&hands.acks, &delivery);
        let reason = format!("{}: {}", error.code.as_str(), error.message);
        let now = hands.worker.clock.now_ms();
        let entry = intake_entry(now, EntryKind::Rejected, Some(reason));
        if let Err(e) = hands.worker.store.append_event(None, &entry).await {
            tracing::warn!(error = %e, "cannot append to the events stream");
        }
        telemetry::intake("rejected", Some(error.code.as_str()));
        tracing::info!(target: "cascade::lifecycle", event = "rejected", code = error.code.as_str(), reason = %error.message, "rejected");
    } else {
        tracing::warn!(
            code = error.code.as_str(),
            "cannot dead-letter a rejected message; returning it to the queue"
        );
        hand_back(&hands.acks, delivery).await;
    }
}

/// Publishes one notification with a confirm (for `cascade send`).
pub async fn publish(config: &IntakeConfig, body: &[u8]) -> lapin::Result<bool> {
    let conn = Connection::connect(&config.url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    declare(&channel, config).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let confirm = channel
        .basic_publish(
            ShortString::from(""),
            ShortString::from(config.queue.as_str()),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type(ShortString::from("application/json")),
        )
        .await?
        .await?;
    let _ = conn.close(200, ShortString::from("done")).await;
    Ok(confirm.is_ack())
}

fn intake_entry(at_ms: i64, event: EntryKind, reason: Option<String>) -> Entry {
    Entry {
        at_ms,
        event,
        step: None,
        channel: None,
        reason,
        until_ms: None,
        provider_message_id: None,
    }
}
