//! The RabbitMQ side every connection shares: reaching the first node of
//! `amqp.url` that answers (a comma-separated list of a cluster's nodes),
//! and declaring the intake and dead-letter queues as `amqp.queue_type`
//! says.

use std::sync::atomic::{AtomicBool, Ordering};

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ErrorKind};

use super::intake::{IntakeConfig, named};
use crate::config::QueueType;

/// Connects to the first of `config`'s nodes that answers, in the order
/// given: when a node goes away, the reconnect finds the next.
pub async fn connect(config: &IntakeConfig, role: &str) -> lapin::Result<Connection> {
    let mut failed = None;
    for url in config.nodes() {
        match Connection::connect(url, named(role, config)).await {
            Ok(conn) => return Ok(conn),
            Err(e) => {
                tracing::warn!(node = %without_credentials(url), error = %e, "cannot reach this RabbitMQ node");
                failed = Some(e);
            }
        }
    }
    Err(failed
        .unwrap_or_else(|| lapin::Error::from(std::io::Error::other("amqp.url names no node"))))
}

/// A node's address for a log line: the user and password left out.
fn without_credentials(url: &str) -> String {
    match (url.split_once("://"), url.find('@')) {
        (Some((scheme, rest)), Some(_)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            format!("{scheme}://{host}")
        }
        _ => url.to_owned(),
    }
}

/// Declares the dead-letter and intake queues (durable, of `queue_type`)
/// and returns an open channel. A queue that already exists with other
/// arguments (a classic queue from before, say) is used as it is, with a
/// warning that says how to change it: the daemon does not stop over it.
pub async fn declare(conn: &Connection, config: &IntakeConfig) -> lapin::Result<Channel> {
    let mut channel = conn.create_channel().await?;
    for (queue, args) in [
        (&config.dead_letter_queue, dead_letter_arguments(config)),
        (&config.queue, intake_arguments(config)),
    ] {
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let name = ShortString::from(queue.as_str());
        match channel.queue_declare(name.clone(), durable, args).await {
            Ok(_) => {}
            Err(e) if is_precondition_failed(&e) => {
                explain_mismatch(queue, config.queue_type, &e);
                // The broker closed the channel over it: take another, and
                // use the queue as it is.
                channel = conn.create_channel().await?;
                let passive = QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                };
                channel
                    .queue_declare(name, passive, FieldTable::default())
                    .await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(channel)
}

/// The type, for a queue of either kind.
fn typed(queue_type: QueueType) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString(LongString::from(queue_type.as_str())),
    );
    args
}

fn dead_letter_arguments(config: &IntakeConfig) -> FieldTable {
    typed(config.queue_type)
}

/// For a quorum intake queue, the broker's own bound on redeliveries: a
/// message that kills the daemon each time it is handled (so the daemon
/// never gets to count it) goes to the dead-letter queue after this many.
/// Set far above `amqp.max_deliveries`: the broker also counts returns of
/// messages an instance merely held when it crashed, and (before RabbitMQ
/// 4.3) the daemon's own hand-backs during an outage, which slow down to
/// one per 30 s: the default, 100, outlasts about 45 minutes of outage.
fn intake_arguments(config: &IntakeConfig) -> FieldTable {
    let mut args = typed(config.queue_type);
    if config.queue_type == QueueType::Quorum {
        let limit = (config.max_deliveries.saturating_mul(20)).max(100);
        args.insert(
            ShortString::from("x-delivery-limit"),
            AMQPValue::LongLongInt(i64::from(limit)),
        );
        args.insert(
            ShortString::from("x-dead-letter-exchange"),
            AMQPValue::LongString(LongString::from("")),
        );
        args.insert(
            ShortString::from("x-dead-letter-routing-key"),
            AMQPValue::LongString(LongString::from(config.dead_letter_queue.as_str())),
        );
    }
    args
}

fn is_precondition_failed(e: &lapin::Error) -> bool {
    matches!(e.kind(), ErrorKind::ProtocolError(amqp) if amqp.get_id() == 406)
}

/// Once per process: every connection and every publish declares.
fn explain_mismatch(queue: &str, wanted: QueueType, e: &lapin::Error) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if SAID.swap(true, Ordering::Relaxed) {
        return;
    }
    tracing::warn!(
        queue,
        queue_type = wanted.as_str(),
        error = %e,
        "the queue already exists with other arguments than amqp.queue_type = \"{}\" declares (an older classic queue, say); using it as it is. To change its type, set amqp.queue_type to match it, or drain it and let the daemon declare it anew",
        wanted.as_str()
    );
}
