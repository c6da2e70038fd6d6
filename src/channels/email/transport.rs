//! Pooled SMTP transports, one per channel, rebuilt when the channel's
//! connection settings change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::settings::{Shape, TlsMode};

/// Most SMTP connections one channel keeps open per instance.
const POOL_MAX_SIZE: u32 = 10;
/// An idle pooled connection is closed after this long.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// connection settings stay the same. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Transports {
    pub(super) cache: Arc<Mutex<Cache>>,
}

#[derive(Default)]
pub(super) struct Cache(pub(super) HashMap<String, Cached>);

pub(super) struct Cached {
    pub(super) shape: Shape,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl Drop for Cache {
    fn drop(&mut self) {
        // lettre's pool spawns its clean-up when dropped, which needs a
        // runtime; without one (the process is ending) let the OS close the
        // sockets instead of panicking.
        if tokio::runtime::Handle::try_current().is_err() {
            for (_, cached) in self.0.drain() {
                std::mem::forget(cached.transport);
            }
        }
    }
}

impl Transports {
    /// The channel's transport for these settings, built on first use and
    /// rebuilt when the settings changed (the old pool closes once its
    /// in-flight sends are done).
    pub(super) fn get(
        &self,
        channel: &str,
        shape: &Shape,
    ) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| "the SMTP transport cache is poisoned".to_owned())?;
        if let Some(cached) = cache.0.get(channel)
            && cached.shape == *shape
        {
            return Ok(cached.transport.clone());
        }
        let transport = build(shape)?;
        cache.0.insert(
            channel.to_owned(),
            Cached {
                shape: shape.clone(),
                transport: transport.clone(),
            },
        );
        Ok(transport)
    }

    /// Forgets the channel's transport and closes its pool. After a send was
    /// abandoned mid-conversation its connection may be out of step with the
    /// server; no later send may reuse it.
    pub(super) async fn discard(&self, channel: &str, shape: &Shape) {
        let removed = match self.cache.lock() {
            Ok(mut cache) => match cache.0.get(channel) {
                Some(c) if c.shape == *shape => cache.0.remove(channel),
                _ => None,
            },
            Err(_) => None,
        };
        if let Some(cached) = removed {
            cached.transport.shutdown().await;
        }
    }
}

fn build(shape: &Shape) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let tls_parameters = || {
        TlsParameters::new(shape.host.clone())
            .map_err(|e| format!("cannot set up TLS for `{}`: {e}", shape.host))
    };
    let tls = match shape.tls {
        TlsMode::StartTls => Tls::Required(tls_parameters()?),
        TlsMode::Wrapper => Tls::Wrapper(tls_parameters()?),
        TlsMode::None => Tls::None,
    };
    // lettre's timeout bounds only the TCP connect on tokio; the whole send
    // is bounded by the channel's `timeout` around it. Half of it for the
    // connect leaves the rest for the conversation.
    let connect_timeout = Duration::from_millis((shape.timeout_ms as u64 / 2).max(1));
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(shape.host.clone())
        .port(shape.port)
        .tls(tls)
        .timeout(Some(connect_timeout))
        .pool_config(
            PoolConfig::new()
                .min_idle(0)
                .max_size(POOL_MAX_SIZE)
                .idle_timeout(POOL_IDLE),
        );
    if !shape.username.is_empty() {
        builder = builder.credentials(Credentials::new(
            shape.username.clone(),
            shape.password.clone(),
        ));
    }
    Ok(builder.build())
}
