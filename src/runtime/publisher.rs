//! Publishing to the intake queue for `POST /v1/notifications`: one
//! long-lived connection and confirm-mode channel, opened on first use and
//! opened again after it failed, shared by every request. Each message goes
//! out as `cascade send` publishes it (default exchange, the intake queue as
//! routing key, `mandatory`, persistent, `application/json`), and a batch is
//! taken only once RabbitMQ confirmed every message of it: the queue stays
//! the one durable intake, the daemon's consumer does the rest.

use std::time::{Duration, Instant};

use lapin::options::ConfirmSelectOptions;
use lapin::types::ShortString;
use lapin::{Channel, Confirmation, Connection};
use tokio::sync::Mutex;

use super::intake::{IntakeConfig, declare};

/// The longest wait for RabbitMQ to accept a connection (and declare the
/// queues), so a broker that does not answer cannot hold a request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait for the confirms of one request's messages.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed connect, requests are answered at once for this long
/// instead of each trying again: a broker that is down is not hammered.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);
/// The longest wait for a dropped connection's close handshake, which runs
/// in the background: a blocked broker cannot hold anyone up with it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a batch was not taken. Whatever it is, none of the batch may be
/// counted on: the caller retries the whole batch (ids make copies harmless).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("RabbitMQ cannot be reached: {0}")]
    Unreachable(String),
    #[error("RabbitMQ refused a message (nack)")]
    Refused,
    #[error("RabbitMQ could not route a message ({0}): does the intake queue exist?")]
    Returned(String),
    #[error("RabbitMQ did not confirm within {} s", CONFIRM_TIMEOUT.as_secs())]
    TimedOut,
    #[error("the channel to RabbitMQ failed: {0}")]
    Failed(lapin::Error),
}

/// The shared publisher. Requests publish concurrently on its one channel;
/// only opening (or reopening) it is serialised.
pub struct Publisher {
    config: IntakeConfig,
    open: Mutex<Link>,
}

#[derive(Default)]
struct Link {
    open: Option<Open>,
    /// Counts the connections opened: a request that saw its channel fail
    /// drops the connection only if it is still the one it used (lapin
    /// numbers channels per connection, so a channel id cannot tell).
    generation: u64,
    /// Set by a failed connect: no new attempt before then.
    retry_at: Option<Instant>,
}

struct Open {
    conn: Connection,
    channel: Channel,
    generation: u64,
}

impl Publisher {
    pub fn new(config: IntakeConfig) -> Publisher {
        Publisher {
            config,
            open: Mutex::new(Link::default()),
        }
    }

    /// Publishes every body and waits for all their confirms: `Ok` only
    /// when RabbitMQ took each one.
    pub async fn publish_all(&self, bodies: &[&[u8]]) -> Result<(), PublishError> {
        let (channel, generation) = self.channel().await?;
        let published = tokio::time::timeout(
            CONFIRM_TIMEOUT,
            publish_on(&channel, &self.config.queue, bodies),
        )
        .await
        .unwrap_or(Err(PublishError::TimedOut));
        if matches!(
            published,
            Err(PublishError::TimedOut | PublishError::Failed(_))
        ) {
            // A channel that failed or hangs is not used again.
            self.forget(generation).await;
        }
        published
    }

    /// Closes the connection (at shutdown).
    pub async fn close(&self) {
        let open = self.open.lock().await.open.take();
        if let Some(open) = open {
            close(open.conn, "shutting down").await;
        }
    }

    /// The open channel, or a new one if there is none or it failed.
    async fn channel(&self) -> Result<(Channel, u64), PublishError> {
        let mut link = self.open.lock().await;
        if let Some(open) = &link.open {
            if open.conn.status().connected() && open.channel.status().connected() {
                return Ok((open.channel.clone(), open.generation));
            }
            tracing::warn!("the HTTP intake's RabbitMQ channel is closed; opening another");
        }
        if let Some(stale) = link.open.take() {
            tokio::spawn(close(stale.conn, "replaced"));
        }
        if let Some(at) = link.retry_at
            && Instant::now() < at
        {
            return Err(PublishError::Unreachable(
                "the last attempt to connect failed a moment ago".into(),
            ));
        }
        let opened = tokio::time::timeout(CONNECT_TIMEOUT, self.connect()).await;
        match opened {
            Ok(Ok((conn, channel))) => {
                link.retry_at = None;
                link.generation += 1;
                let generation = link.generation;
                link.open = Some(Open {
                    conn,
                    channel: channel.clone(),
                    generation,
                });
                Ok((channel, generation))
            }
            Ok(Err(e)) => {
                link.retry_at = Some(Instant::now() + RECONNECT_PAUSE);
                Err(PublishError::Unreachable(e.to_string()))
            }
            Err(_) => {
                link.retry_at = Some(Instant::now() + RECONNECT_PAUSE);
                Err(PublishError::Unreachable(format!(
                    "no connection within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
        }
    }

    /// Connects, declares the queues (as `cascade send` does) and puts the
    /// channel in confirm mode.
    async fn connect(&self) -> lapin::Result<(Connection, Channel)> {
        let conn = super::queues::connect(&self.config, "http-intake").await?;
        let channel = declare(&conn, &self.config).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok((conn, channel))
    }

    /// Drops the connection of `generation` if it is still the open one,
    /// so the next request opens another. Its close runs in the background.
    async fn forget(&self, generation: u64) {
        let mut link = self.open.lock().await;
        if link
            .open
            .as_ref()
            .is_some_and(|open| open.generation == generation)
            && let Some(open) = link.open.take()
        {
            tokio::spawn(close(open.conn, "replaced"));
        }
    }
}

/// Closes a connection, waiting at most `CLOSE_TIMEOUT` for the broker.
async fn close(conn: Connection, why: &'static str) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, conn.close(200, ShortString::from(why))).await;
}

/// Publishes all bodies (pipelined), then waits for each confirm.
async fn publish_on(channel: &Channel, queue: &str, bodies: &[&[u8]]) -> Result<(), PublishError> {
    let mut confirms = Vec::with_capacity(bodies.len());
    for body in bodies {
        let confirm = super::intake::publish_notification(channel, queue, body)
            .await
            .map_err(PublishError::Failed)?;
        confirms.push(confirm);
    }
    for confirm in confirms {
        match confirm.await.map_err(PublishError::Failed)? {
            Confirmation::Ack(None) => {}
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                return Err(PublishError::Returned(format!(
                    "{} {}",
                    returned.reply_code, returned.reply_text
                )));
            }
            Confirmation::Nack(None) | Confirmation::NotRequested => {
                return Err(PublishError::Refused);
            }
        }
    }
    Ok(())
}
