//! Metrics (Prometheus, at `/metrics`). Labels take values from bounded
//! sets only: lifecycle words, channel names from the configuration, intake
//! error codes, send outcomes.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once; `None` if another recorder was
/// installed first (then `/metrics` says so).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(&[
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ])
                .ok()?
                .install_recorder()
                .ok()
        })
        .as_ref()
}

/// Keeps histograms from growing without bound; run in the background.
pub async fn upkeep(shutdown: tokio_util::sync::CancellationToken) {
    let Some(h) = handle() else { return };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => h.run_upkeep(),
            _ = shutdown.cancelled() => return,
        }
    }
}

/// One intake outcome: accepted, duplicate, rejected (with its code),
/// requeued (an outage), failed (in its own right, sent round again) or
/// dead_letter_failed (with its code: the dead letter was not taken).
pub fn intake(result: &'static str, code: Option<&'static str>) {
    metrics::counter!("cascade_intake_total", "result" => result, "code" => code.unwrap_or(""))
        .increment(1);
}

/// Metric handles by their two label values, for the metrics counted
/// several times per send: registering one builds its key and labels anew,
/// looking it up here does not allocate.
struct Handles<T> {
    by: Mutex<BTreeMap<&'static str, BTreeMap<String, T>>>,
}

impl<T: Clone> Handles<T> {
    const fn new() -> Self {
        Handles {
            by: Mutex::new(BTreeMap::new()),
        }
    }

    fn get(&self, word: &'static str, name: &str, register: impl FnOnce() -> T) -> T {
        // Until the recorder is installed a handle counts nothing: keep none.
        if handle().is_none() {
            return register();
        }
        let Ok(mut by) = self.by.lock() else {
            return register();
        };
        let names = by.entry(word).or_default();
        if let Some(h) = names.get(name) {
            return h.clone();
        }
        let h = register();
        names.insert(name.to_owned(), h.clone());
        h
    }
}

static SENDS: Handles<Counter> = Handles::new();
static SEND_DURATIONS: Handles<Histogram> = Handles::new();
static LIFECYCLE: Handles<Counter> = Handles::new();

/// One provider answer and how long it took.
pub fn send(channel: &str, outcome: &'static str, took: Duration) {
    SENDS
        .get(outcome, channel, || {
            metrics::counter!("cascade_sends_total", "channel" => channel.to_owned(), "outcome" => outcome)
        })
        .increment(1);
    SEND_DURATIONS
        .get("", channel, || {
            metrics::histogram!("cascade_send_duration_seconds", "channel" => channel.to_owned())
        })
        .record(took.as_secs_f64());
}

/// One lifecycle event of a cascade (the log line is written beside it).
pub fn lifecycle(event: &'static str, channel: Option<&str>) {
    let channel = channel.unwrap_or("");
    LIFECYCLE
        .get(event, channel, || {
            metrics::counter!("cascade_lifecycle_events_total", "event" => event, "channel" => channel.to_owned())
        })
        .increment(1);
}

/// One receipt recorded; custom words are counted as `other`.
pub fn receipt(event: &str) {
    const KNOWN: [&str; 9] = [
        "delivered",
        "read",
        "opened",
        "clicked",
        "replied",
        "failed",
        "cancelled",
        "called",
        "paid",
    ];
    let word = KNOWN
        .iter()
        .find(|k| **k == event)
        .copied()
        .unwrap_or("other");
    metrics::counter!("cascade_receipts_total", "event" => word).increment(1);
}

/// Cascades claimed by the scheduler.
pub fn claimed(n: usize) {
    metrics::counter!("cascade_claimed_total").increment(n as u64);
}
