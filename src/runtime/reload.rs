//! Hot reload of `policies/` and `channels/` (and the limits and quiet hours
//! of `cascade.toml`) on file change and on SIGHUP (contract §3). A set that does
//! not validate is refused as a whole, each problem logged with file, line
//! and reason, and the daemon goes on with the last good set. Connection
//! settings (URLs, queues, listen address) take effect at the next start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use notify_debouncer_full::notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use tokio_util::sync::CancellationToken;

use super::telemetry::Telemetry;
use crate::config::Catalog;

/// Watches the configuration until `shutdown`; counts each reload refused.
pub async fn watch(
    config_path: PathBuf,
    catalog: Arc<ArcSwap<Catalog>>,
    insecure_demo_secrets: bool,
    telemetry: Telemetry,
    shutdown: CancellationToken,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(4);
    let debouncer = new_debouncer(
        Duration::from_millis(300),
        None,
        move |result: DebounceEventResult| {
            // Reading the files (as a reload does) is not a change.
            let changed = result.is_ok_and(|events| {
                events
                    .iter()
                    .any(|e| !matches!(e.event.kind, EventKind::Access(_) | EventKind::Other))
            });
            if changed {
                // A full channel already holds a pending reload; that is enough.
                let _ = tx.try_send(());
            }
        },
    );
    let root = config_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let _debouncer = match debouncer {
        Ok(mut d) => {
            for dir in [root.join("channels"), root.join("policies")] {
                if let Err(e) = d.watch(&dir, RecursiveMode::NonRecursive) {
                    tracing::warn!(path = %dir.display(), error = %e, "cannot watch for configuration changes; SIGHUP still reloads");
                }
            }
            if let Err(e) = d.watch(&config_path, RecursiveMode::NonRecursive) {
                tracing::warn!(path = %config_path.display(), error = %e, "cannot watch the settings file");
            }
            Some(d)
        }
        Err(e) => {
            tracing::warn!(error = %e, "no file watcher; SIGHUP still reloads");
            None
        }
    };
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        let why = tokio::select! {
            Some(()) = rx.recv() => "file change",
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => "SIGHUP",
            _ = shutdown.cancelled() => return,
        };
        let applied = reload(&config_path, &catalog, insecure_demo_secrets, why);
        telemetry.reloaded(applied);
    }
}

/// Loads the configuration again and swaps it in if it validates (and,
/// unless `insecure_demo_secrets`, uses no unsafe secret: a reload must not
/// bring in what `cascade run` would have refused).
pub fn reload(
    config_path: &Path,
    catalog: &ArcSwap<Catalog>,
    insecure_demo_secrets: bool,
    why: &str,
) -> bool {
    match Catalog::load(config_path) {
        Ok(fresh) if !insecure_demo_secrets && !fresh.secret_problems.is_empty() => {
            for problem in &fresh.secret_problems {
                tracing::error!(problem = %problem, "configuration change refused: an unsafe secret");
            }
            tracing::error!(
                problems = fresh.secret_problems.len(),
                "keeping the last good configuration"
            );
            false
        }
        Ok(mut fresh) => {
            // Connection settings stay as started; the rest applies now.
            fresh.settings.amqp = catalog.load().settings.amqp.clone();
            fresh.settings.redis = catalog.load().settings.redis.clone();
            fresh.settings.http.listen = catalog.load().settings.http.listen.clone();
            fresh.settings.http.admin_listen = catalog.load().settings.http.admin_listen.clone();
            tracing::info!(
                reason = why,
                policies = fresh.policies.len(),
                channels = fresh.channels.len(),
                "configuration reloaded"
            );
            catalog.store(Arc::new(fresh));
            true
        }
        Err(errors) => {
            for e in &errors.0 {
                let (line, column) = e.position.unwrap_or((0, 0));
                tracing::error!(file = %e.file.display(), line, column, reason = %e.message, "configuration change refused");
            }
            tracing::error!(
                problems = errors.0.len(),
                "keeping the last good configuration"
            );
            false
        }
    }
}
