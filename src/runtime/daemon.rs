//! `cascade run`: intake, scheduler and HTTP server in one process, with one
//! cancellation token for a graceful stop. Tests start it in-process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Health;
use super::clock::{Clock, SystemClock};
use super::intake::{self, IntakeConfig};
use super::keys::Keys;
use super::publisher::Publisher;
use super::scheduler::{self, SchedulerConfig};
use super::store::{Store, Target};
use super::telemetry::Telemetry;
use super::worker::Worker;
use crate::channels::Outbound;
use crate::config::{Catalog, Http};
use crate::http::serve::{ConnectionLimits, serve};
use crate::http::{AppState, admin_router, public_router};

/// How to start a daemon beyond its configuration.
pub struct DaemonOptions {
    pub clock: Arc<dyn Clock>,
    pub scheduler: SchedulerConfig,
    /// Overrides `http.listen` (tests pass `127.0.0.1:0`).
    pub listen: Option<String>,
    /// Overrides `http.admin_listen` (tests pass `127.0.0.1:0`).
    pub admin_listen: Option<String>,
    /// Runs on secrets that `config::secrets` finds unsafe (the shipped
    /// example values), warning every minute: for a local try-out only.
    pub insecure_demo_secrets: bool,
    /// The settings file to watch for hot reload; `None` disables it.
    pub config_path: Option<std::path::PathBuf>,
    /// How often the gauges are sampled (`gauges::SAMPLE_EVERY`; tests
    /// pass less).
    pub sample_every: Duration,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            clock: Arc::new(SystemClock::default()),
            scheduler: SchedulerConfig::default(),
            listen: None,
            admin_listen: None,
            insecure_demo_secrets: false,
            config_path: None,
            sample_every: super::gauges::SAMPLE_EVERY,
        }
    }
}

/// A running daemon.
pub struct Daemon {
    /// The public listener: callbacks, tracking, `/v1/…`.
    pub http_addr: SocketAddr,
    /// The admin listener: `/metrics`, `/healthz`, `/readyz`.
    pub admin_addr: SocketAddr,
    pub store: Store,
    pub health: Arc<Health>,
    pub catalog: Arc<ArcSwap<Catalog>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("stopped before Redis could be reached")]
    Stopped,
}

impl Daemon {
    /// Starts every part. Waits for Redis (retrying) but not for RabbitMQ,
    /// whose connection is retried in the background; `/readyz` tells.
    pub async fn start(catalog: Catalog, options: DaemonOptions) -> Result<Daemon, StartError> {
        let shutdown = CancellationToken::new();
        let settings = catalog.settings.clone();
        let keys = Keys::new(&settings.redis.prefix, settings.redis.timer_shards);
        let store = connect_store(
            &settings.redis.target,
            settings.redis.ca_pem.as_deref(),
            keys,
            settings.redis.retention_ms,
            &shutdown,
        )
        .await?
        .with_report(crate::runtime::store::ReportBook::new(&settings.report));
        let health = Arc::new(Health::default());
        health
            .redis
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let catalog = Arc::new(ArcSwap::from_pointee(catalog));
        let poke = Arc::new(Notify::new());
        let tasks = TaskTracker::new();
        let telemetry = Telemetry::new();
        tasks.spawn(telemetry.clone().upkeep(shutdown.clone()));

        let publisher = Arc::new(Publisher::new(IntakeConfig::from(&settings.amqp)));
        tasks.spawn({
            let (publisher, shutdown) = (publisher.clone(), shutdown.clone());
            async move {
                shutdown.cancelled().await;
                publisher.close().await;
            }
        });
        let worker = Arc::new(Worker {
            store: store.clone(),
            catalog: catalog.clone(),
            outbound: Outbound::new(),
            clock: options.clock.clone(),
            telemetry: telemetry.clone(),
            shutdown: shutdown.clone(),
            alarm: Default::default(),
        });
        let state = AppState {
            worker: worker.clone(),
            store: store.clone(),
            clock: options.clock.clone(),
            health: health.clone(),
            catalog: catalog.clone(),
            telemetry: telemetry.clone(),
            publisher: publisher.clone(),
        };
        let (http_addr, admin_addr) =
            start_http(state, &settings.http, &options, &tasks, &shutdown).await?;
        if options.insecure_demo_secrets {
            tasks.spawn(warn_insecure(catalog.clone(), shutdown.clone()));
        }

        tasks.spawn(super::gauges::sample(
            worker.clone(),
            options.sample_every,
            shutdown.clone(),
        ));
        tasks.spawn(scheduler::run(
            worker.clone(),
            SchedulerConfig {
                lease_ms: settings.defaults.claim_lease_ms,
                ..options.scheduler
            },
            poke.clone(),
            health.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(intake::run(
            IntakeConfig::from(&settings.amqp),
            worker,
            poke,
            health.clone(),
            shutdown.clone(),
        ));
        if let Some(path) = options.config_path.clone() {
            tasks.spawn(super::reload::watch(
                path,
                catalog.clone(),
                options.insecure_demo_secrets,
                telemetry,
                shutdown.clone(),
            ));
        }
        tasks.close();
        tracing::info!(http = %http_addr, admin = %admin_addr, queue = %settings.amqp.queue, "cascade is running");
        Ok(Daemon {
            http_addr,
            admin_addr,
            store,
            health,
            catalog,
            shutdown,
            tasks,
        })
    }

    /// Stops intake and the scheduler, lets work in progress finish (up to
    /// `grace`), and returns. Anything unfinished is handed back by its lease.
    pub async fn stop(self, grace: Duration) {
        self.shutdown.cancel();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "work still in progress at the end of the grace period; its leases will hand it to another instance"
            );
        }
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Connections the admin listener serves at once (a scraper and a few probes).
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Binds the public and the admin listener and serves each until shutdown;
/// returns their addresses.
async fn start_http(
    state: AppState,
    http: &Http,
    options: &DaemonOptions,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<(SocketAddr, SocketAddr), StartError> {
    let public_limits = ConnectionLimits {
        header_read_timeout: Duration::from_millis(http.header_read_timeout_ms as u64),
        max_connections: http.max_connections,
    };
    let (listener, http_addr) = bind(options.listen.as_ref(), &http.listen).await?;
    tasks.spawn(serve(
        listener,
        public_router(
            state.clone(),
            Duration::from_millis(http.request_timeout_ms as u64),
        ),
        public_limits,
        shutdown.clone(),
    ));
    let (admin, admin_addr) = bind(options.admin_listen.as_ref(), &http.admin_listen).await?;
    tasks.spawn(serve(
        admin,
        admin_router(state),
        ConnectionLimits {
            max_connections: ADMIN_MAX_CONNECTIONS,
            ..public_limits
        },
        shutdown.clone(),
    ));
    Ok((http_addr, admin_addr))
}

/// Binds `over` if given, else `configured`.
async fn bind(
    over: Option<&String>,
    configured: &str,
) -> Result<(tokio::net::TcpListener, SocketAddr), StartError> {
    let addr = over.map_or(configured, String::as_str).to_owned();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| StartError::Listen {
            addr: addr.clone(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| StartError::Listen { addr, source })?;
    Ok((listener, local))
}

/// With `--insecure-demo-secrets`, says so every minute, naming each unsafe secret.
async fn warn_insecure(catalog: Arc<ArcSwap<Catalog>>, shutdown: CancellationToken) {
    loop {
        for problem in &catalog.load().secret_problems {
            tracing::warn!(problem = %problem, "running on an unsafe secret (--insecure-demo-secrets): for a local try-out only");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn connect_store(
    target: &Target,
    ca_pem: Option<&[u8]>,
    keys: Keys,
    retention_ms: i64,
    shutdown: &CancellationToken,
) -> Result<Store, StartError> {
    let mut backoff = Duration::from_millis(200);
    loop {
        match Store::connect_trusting(target, ca_pem, keys.clone(), retention_ms).await {
            Ok(store) => return Ok(store),
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot reach Redis; retrying")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return Err(StartError::Stopped),
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
