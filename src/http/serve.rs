//! Serves a router on a listener at the edge's limits: a cap on the
//! connections served at once, and hyper's header-read timeout (with its
//! timer set, which `axum::serve` does not do). The per-request limits —
//! the whole-request timeout and the body sizes — are tower layers on the
//! routers (`http::public_router`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The connection-level limits of one listener.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// A client must have sent a request's headers this long after the
    /// connection began waiting for one — the first request, or the next
    /// on a kept-alive connection (hyper runs the same timer for both, so
    /// this is also the idle timeout).
    pub header_read_timeout: Duration,
    /// Connections served at once. Past it, new connections wait in the
    /// kernel's accept queue until one closes.
    pub max_connections: usize,
}

/// Accepts and serves until `shutdown`, then lets the requests in progress
/// finish (the caller bounds that with its grace period).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = shutdown.cancelled() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: wait a moment rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Errors here are the client's (a reset, a timeout); nothing to do.
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
