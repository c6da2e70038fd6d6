//! Intake: consume `cascade.notifications`, admit each message, record the
//! cascade in Redis, and only then acknowledge. Bad input goes to the
//! dead-letter queue under a publisher confirm, with its error code and
//! sentence in headers, and only then is acknowledged (contract §2).
//!
//! Every copy the daemon publishes (a dead letter, a failed message sent
//! round again) is `mandatory` and confirmed: a copy RabbitMQ could not
//! route — the dead-letter queue was deleted — comes back as a return, and
//! the original is then handed back rather than acknowledged and lost. A
//! message that fails in its own right is sent round at most
//! `amqp.max_deliveries` times, then dead-lettered as `poison` (`poison.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    Acker, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer,
};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Health;
use super::ack_batch::AckBatch;
use super::internal_events::{
    Accepted as AcceptedEvent, DeadLetterFailed, Duplicate, Rejected, Requeued, SentRound,
};
use super::poison::{self, Earlier, Failure, Verdict};
use super::republish::{Published, copy_properties, publish_confirmed};
use super::worker::{Started, Worker};
use crate::config::QueueType;
use crate::core::{Entry, EntryKind};
use crate::notification::{self, ErrorCode, IntakeError};

/// Where intake reads and dead-letters.
#[derive(Clone, Debug)]
pub struct IntakeConfig {
    /// One node's URL, or a cluster's nodes separated by commas.
    pub url: String,
    pub queue: String,
    pub dead_letter_queue: String,
    pub prefetch: u16,
    /// How the queues are declared when they do not exist yet.
    pub queue_type: QueueType,
    /// `amqp.max_deliveries`; a quorum queue's broker-side bound is set from it.
    pub max_deliveries: u32,
}

impl IntakeConfig {
    /// The nodes of `url`, in the order given.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.url.split(',').map(str::trim).filter(|u| !u.is_empty())
    }
}

impl From<&crate::config::Amqp> for IntakeConfig {
    fn from(a: &crate::config::Amqp) -> Self {
        IntakeConfig {
            url: a.url.clone(),
            queue: a.queue.clone(),
            dead_letter_queue: a.dead_letter_queue.clone(),
            prefetch: a.prefetch,
            queue_type: a.queue_type,
            max_deliveries: a.max_deliveries,
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

pub use super::queues::declare;

/// What every delivery's handler shares on one connection.
struct Hands {
    worker: Arc<Worker>,
    poke: Arc<Notify>,
    /// In confirm mode: dead letters, and failed messages sent round again.
    publisher: Channel,
    config: IntakeConfig,
    acks: AckBatch<Acker>,
}

/// What one connection consumes with. `channel` and `consumer` are held
/// until the handlers are done: lapin closes the channel when both are
/// dropped, and the handlers' acks would go with it.
struct Consuming {
    conn: Connection,
    /// The channel `consumer` reads from.
    channel: Channel,
    /// In confirm mode, for `Hands::publisher`.
    publisher: Channel,
    consumer: Consumer,
}

/// Consumes on one connection until `shutdown` (`Ok`) or until the
/// connection fails (`Err`; `run` reconnects).
async fn consume(
    config: &IntakeConfig,
    worker: &Arc<Worker>,
    poke: &Arc<Notify>,
    health: &Arc<Health>,
    shutdown: &CancellationToken,
) -> lapin::Result<()> {
    let Consuming {
        conn,
        channel,
        publisher,
        mut consumer,
    } = open(config).await?;
    health.amqp.store(true, Ordering::Relaxed);
    tracing::info!(queue = %config.queue, prefetch = config.prefetch, "consuming");

    let (due_acks, acks_to_send) = tokio::sync::mpsc::unbounded_channel::<Acker>();
    let hands = Arc::new(Hands {
        worker: worker.clone(),
        poke: poke.clone(),
        publisher,
        config: config.clone(),
        acks: AckBatch::new(due_acks),
    });
    let acking = tokio::spawn(send_acks(acks_to_send));
    let tracker = TaskTracker::new();
    let result = take_deliveries(&mut consumer, &hands, &tracker, config.prefetch, shutdown).await;
    // Stop taking deliveries; let those in hand finish (unacked ones are redelivered).
    tracker.close();
    tracker.wait().await;
    drop(hands);
    let _ = acking.await;
    let _ = conn.close(200, ShortString::from("shutting down")).await;
    drop(channel);
    result
}

/// Connects, declares the queues, opens the publisher channel in confirm
/// mode and starts consuming at `amqp.prefetch`.
async fn open(config: &IntakeConfig) -> lapin::Result<Consuming> {
    let conn = super::queues::connect(config, "intake").await?;
    let channel = declare(&conn, config).await?;
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await?;
    let publisher = conn.create_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            ShortString::from(config.queue.as_str()),
            ShortString::from("cascade-intake"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(Consuming {
        conn,
        channel,
        publisher,
        consumer,
    })
}

/// Sends the batched acks. One sender, so batches reach the broker in the
/// order they were made.
async fn send_acks(mut acks_to_send: UnboundedReceiver<Acker>) {
    while let Some(acker) = acks_to_send.recv().await {
        let _ = acker.ack(BasicAckOptions { multiple: true }).await;
    }
}

/// Takes deliveries until `shutdown` (`Ok`) or until the channel fails
/// (`Err`), each handled in a task of `tracker`.
async fn take_deliveries(
    consumer: &mut Consumer,
    hands: &Arc<Hands>,
    tracker: &TaskTracker,
    prefetch: u16,
    shutdown: &CancellationToken,
) -> lapin::Result<()> {
    // Deliveries are handled concurrently, at most `prefetch` at a time
    // (a handler holds its permit through the first send it starts).
    let permits = Arc::new(Semaphore::new(prefetch.max(1) as usize));
    loop {
        let next = tokio::select! {
            d = consumer.next() => d,
            _ = shutdown.cancelled() => return Ok(()),
        };
        let delivery = match next {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(e),
            None => {
                return Err(lapin::Error::from(
                    lapin::ErrorKind::InvalidConnectionState(lapin::ConnectionState::Closed),
                ));
            }
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return Ok(());
        };
        hands.acks.arrived(delivery.delivery_tag);
        let hands = hands.clone();
        tracker.spawn(async move {
            handle_or_fail(&delivery, &hands).await;
            drop(permit);
        });
    }
}

/// Handles one delivery (`handle`) and makes sure it is answered: one that
/// failed, panicked or was left unanswered goes to `failed`.
async fn handle_or_fail(delivery: &Delivery, hands: &Hands) {
    let tag = delivery.delivery_tag;
    let handled = AssertUnwindSafe(handle(delivery, hands))
        .catch_unwind()
        .await;
    let failure = match handled {
        Ok(Ok(())) => None,
        Ok(Err(failure)) => Some(failure),
        // The panic's text went to the log through the panic hook.
        Err(_) => Some(Failure::Panicked),
    };
    if hands.acks.is_working(tag) {
        // A handler that failed, panicked or left its delivery
        // unanswered must not hold back the acks behind it, nor be
        // covered by one: send the message round again, counted, or
        // dead-letter it as poison; either answers it.
        failed(delivery, &failure.unwrap_or(Failure::Unanswered), hands).await;
    } else if let Some(failure) = failure {
        // Answered first (recorded and acknowledged), then failed: a
        // panic in the first send, which the in-flight timer covers.
        tracing::error!(delivery_tag = tag, error = %failure, "a delivery failed after it was recorded; the in-flight timer takes over");
    }
}

/// Admits, records and acknowledges one delivery, or dead-letters or hands it
/// back. `Err`: it failed in its own right and is still unanswered; the
/// caller counts it (`failed`).
async fn handle(delivery: &Delivery, hands: &Hands) -> Result<(), Failure> {
    let worker = &hands.worker;
    let catalog = worker.catalog.load_full();
    let now = worker.clock.now_ms();
    let admitted = match notification::admit_at(&delivery.data, &catalog, now) {
        Ok(a) => a,
        Err(e) => {
            reject(delivery, &e, hands).await;
            return Ok(());
        }
    };
    let (id, customer_id) = (
        admitted.notification.id.clone(),
        admitted.notification.customer.id.clone(),
    );
    let policy = admitted.policy.name.clone();
    match worker.start(admitted, &catalog, now).await {
        Ok(Started::New { first }) => {
            acknowledge(&hands.acks, delivery);
            worker.telemetry.emit(AcceptedEvent);
            let Some(first) = first else {
                hands.poke.notify_one();
                return Ok(());
            };
            if let Err(e) = worker.carry_out_first(first).await {
                // The in-flight timer hands it to the scheduler.
                tracing::warn!(notification_id = %id, error = %e, "first step failed; it will be retried");
            }
        }
        Ok(Started::Refused) => hand_back(&hands.acks, delivery).await,
        Ok(Started::Duplicate) => {
            acknowledge(&hands.acks, delivery);
            let entry = intake_entry(now, EntryKind::Duplicate, None);
            if let Err(e) = worker.store.append_event(Some(&id), &entry).await {
                tracing::warn!(error = %e, "cannot append to the events stream");
            }
            worker.telemetry.emit(Duplicate {
                notification_id: &id,
                customer_id: &customer_id,
                policy: &policy,
            });
        }
        Err(e) => {
            if let Some(why) = e.about_the_data() {
                // Redis answered, about this notification's keys: trying
                // again will fail again. Counted toward poison.
                tracing::warn!(notification_id = %id, error = %e, "Redis refused the cascade's keys");
                return Err(Failure::Store(why));
            }
            // An outage: not recorded, hand the message back so it is not
            // lost. Never counted, however often.
            worker.telemetry.emit(Requeued {
                notification_id: &id,
                error: &e,
            });
            hand_back(&hands.acks, delivery).await;
        }
    }
    Ok(())
}

/// Acknowledges a recorded delivery, together with the finished ones before
/// it when a batch is due. A failed ack means the channel is gone: RabbitMQ
/// redelivers, and the redelivery is counted as a duplicate.
fn acknowledge(acks: &AckBatch<Acker>, delivery: &Delivery) {
    acks.done(delivery.delivery_tag, delivery.acker.clone());
}

/// Returns a delivery that could not be handled to the queue, after a pause
/// so a failing dependency is not hammered (longer each time the broker
/// counted a return: `Earlier::hand_back_pause`).
async fn hand_back(acks: &AckBatch<Acker>, delivery: &Delivery) {
    let earlier = Earlier::read(delivery.properties.headers().as_ref());
    tokio::time::sleep(earlier.hand_back_pause()).await;
    let _ = delivery
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await;
    acks.settled(delivery.delivery_tag);
}

/// Dead-letters a bad message with its reason, then acknowledges it.
async fn reject(delivery: &Delivery, error: &IntakeError, hands: &Hands) {
    let headers = with_error(delivery.properties.headers().as_ref(), error);
    dead_letter(delivery, error, headers, hands).await;
}

/// A delivery that failed in its own right: sent round again through the
/// intake queue with its count of failures, or at `amqp.max_deliveries`
/// dead-lettered as `poison` (`poison.rs`). Either way the original is
/// acknowledged only after RabbitMQ confirmed the copy; if it did not, the
/// original is handed back, uncounted.
async fn failed(delivery: &Delivery, failure: &Failure, hands: &Hands) {
    let tag = delivery.delivery_tag;
    let max = hands.worker.catalog.load().settings.amqp.max_deliveries;
    let earlier = Earlier::read(delivery.properties.headers().as_ref());
    match earlier.after_failure(max) {
        Verdict::Poison { failed } => {
            tracing::error!(delivery_tag = tag, failed, max_deliveries = max, error = %failure, "a poison message: dead-lettering it");
            let error = IntakeError::new(
                ErrorCode::Poison,
                poison::sentence(failed, max, earlier, failure),
            );
            let counted = poison::counted_headers(delivery.properties.headers().as_ref(), failed);
            let headers = with_error(Some(&counted), &error);
            dead_letter(delivery, &error, headers, hands).await;
        }
        Verdict::Retry { failed } => {
            // Not at once: what failed may be a moment's trouble.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let headers = poison::counted_headers(delivery.properties.headers().as_ref(), failed);
            // The producer's expiration stays: this is still its message.
            let mut properties = copy_properties(&delivery.properties, headers);
            if let Some(expiration) = delivery.properties.expiration() {
                properties = properties.with_expiration(expiration.clone());
            }
            let queue = hands.config.queue.as_str();
            match publish_confirmed(&hands.publisher, queue, &delivery.data, properties).await {
                Published::Confirmed => {
                    acknowledge(&hands.acks, delivery);
                    hands.worker.telemetry.emit(SentRound {
                        delivery_tag: tag,
                        failed,
                        max_deliveries: max,
                        error: failure,
                    });
                }
                not => {
                    tracing::error!(delivery_tag = tag, queue, outcome = %not, "cannot send a failed message round again; returning it to the queue");
                    hand_back(&hands.acks, delivery).await;
                }
            }
        }
    }
}

/// The headers of a dead letter: the original ones, the error code and
/// sentence, and the field at fault when the error names one.
fn with_error(headers: Option<&FieldTable>, error: &IntakeError) -> FieldTable {
    // Without the error headers of an earlier refusal (a dead letter moved
    // back by hand): a field named then must not stick to this error.
    let mut kept = headers.map(|t| t.inner().clone()).unwrap_or_default();
    kept.retain(|k, _| !k.as_str().starts_with(super::dead_letters::ERROR_HEADER));
    let mut headers = FieldTable::from(kept);
    headers.insert(
        ShortString::from("x-cascade-error-code"),
        AMQPValue::LongString(LongString::from(error.code.as_str())),
    );
    headers.insert(
        ShortString::from("x-cascade-error"),
        AMQPValue::LongString(LongString::from(error.message.as_str())),
    );
    if let Some(field) = &error.field {
        headers.insert(
            ShortString::from("x-cascade-error-field"),
            AMQPValue::LongString(LongString::from(field.as_str())),
        );
    }
    headers
}

/// Publishes the dead letter under a publisher confirm, then acknowledges
/// the delivery. If RabbitMQ did not take the dead letter — it returned it
/// because `amqp.dead_letter_queue` does not exist, or nacked it, or the
/// channel failed — the message goes back to the queue instead: it is never
/// dropped, and never acknowledged on a silent drop.
async fn dead_letter(delivery: &Delivery, error: &IntakeError, headers: FieldTable, hands: &Hands) {
    let queue = hands.config.dead_letter_queue.as_str();
    // Without the producer's expiration: a TTL meant for the intake queue
    // must not expire the dead letter before anyone reads it.
    let properties = copy_properties(&delivery.properties, headers);
    match publish_confirmed(&hands.publisher, queue, &delivery.data, properties).await {
        Published::Confirmed => {
            acknowledge(&hands.acks, delivery);
            let reason = format!("{}: {}", error.code.as_str(), error.message);
            let now = hands.worker.clock.now_ms();
            let entry = intake_entry(now, EntryKind::Rejected, Some(reason));
            if let Err(e) = hands.worker.store.append_event(None, &entry).await {
                tracing::warn!(error = %e, "cannot append to the events stream");
            }
            hands.worker.telemetry.emit(Rejected {
                code: error.code.as_str(),
                reason: &error.message,
            });
        }
        not => {
            hands.worker.telemetry.emit(DeadLetterFailed {
                code: error.code.as_str(),
                dead_letter_queue: queue,
                outcome: &not,
            });
            hand_back(&hands.acks, delivery).await;
        }
    }
}

/// Connection properties naming the connection after what it is for, so
/// RabbitMQ's tools (`rabbitmqctl list_connections client_properties`, the
/// management UI) tell each instance's connection apart:
/// `cascade intake cascade.notifications pid 4242`.
pub fn named(role: &str, config: &IntakeConfig) -> ConnectionProperties {
    let name = format!("cascade {role} {} pid {}", config.queue, std::process::id());
    ConnectionProperties::default().with_connection_name(name.into())
}

/// Publishes one notification with a confirm (for `cascade send`). A
/// message the broker did not take (a nack, or returned: a quorum queue
/// declared a moment ago may not route yet) is published again, twice at
/// most; its id makes a second copy harmless.
pub async fn publish(config: &IntakeConfig, body: &[u8]) -> lapin::Result<bool> {
    let conn = super::queues::connect(config, "send").await?;
    let channel = declare(&conn, config).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut taken = false;
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let confirm = publish_notification(&channel, &config.queue, body)
            .await?
            .await?;
        taken = matches!(confirm, Confirmation::Ack(None));
        if taken {
            break;
        }
        tracing::warn!(queue = %config.queue, attempt, "RabbitMQ did not take the message; publishing it again");
    }
    let _ = conn.close(200, ShortString::from("done")).await;
    Ok(taken)
}

/// Publishes one notification to the intake queue as producers should:
/// through the default exchange, persistent, as JSON, and mandatory (a
/// message RabbitMQ could not route comes back instead of vanishing). On a
/// channel in confirm mode the returned future is the broker's confirm.
pub async fn publish_notification(
    channel: &Channel,
    queue: &str,
    body: &[u8],
) -> lapin::Result<lapin::PublisherConfirm> {
    channel
        .basic_publish(
            ShortString::from(""),
            ShortString::from(queue),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type(ShortString::from("application/json")),
        )
        .await
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
