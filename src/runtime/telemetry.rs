//! Metrics (Prometheus, at `/metrics`). Labels take values from bounded
//! sets only: lifecycle words, channel names from the configuration, intake
//! error codes, send outcomes.
//!
//! Each daemon counts in a registry of its own (`Telemetry`), not in a
//! process-wide recorder: two daemons in one process (the tests start many)
//! never count into each other's `/metrics`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// Upper bounds of the duration histograms, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// One daemon's metrics registry and the handles it counts through.
/// Cloning shares the registry.
#[derive(Clone)]
pub struct Telemetry(Arc<Registry>);

struct Registry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    sends: Handles<Counter>,
    send_durations: Handles<Histogram>,
    lifecycle: Handles<Counter>,
    /// Messages dead-lettered (and dead letters RabbitMQ did not take), by
    /// code, since this registry was made: for the console.
    dead_letters: Mutex<BTreeMap<&'static str, DeadLetters>>,
    /// When this registry was made (the daemon's start), Unix ms.
    started_ms: i64,
}

/// Dead letters of one code counted by this instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeadLetters {
    /// Published to the dead-letter queue (`result="rejected"`).
    pub rejected: u64,
    /// Not taken by RabbitMQ, handed back (`result="dead_letter_failed"`).
    pub failed: u64,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

impl Telemetry {
    pub fn new() -> Telemetry {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, describe);
        Telemetry(Arc::new(Registry {
            recorder,
            handle,
            sends: Handles::new(),
            send_durations: Handles::new(),
            lifecycle: Handles::new(),
            dead_letters: Mutex::new(BTreeMap::new()),
            started_ms: jiff::Timestamp::now().as_millisecond(),
        }))
    }

    /// The dead letters counted since this instance started, by code (the
    /// same counts as `cascade_intake_total{result="rejected"|"dead_letter_failed",code}`).
    pub fn dead_letters(&self) -> BTreeMap<&'static str, DeadLetters> {
        self.0
            .dead_letters
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// When this instance's registry was made (the daemon's start), Unix ms
    /// of the system clock.
    pub fn started_ms(&self) -> i64 {
        self.0.started_ms
    }

    /// The Prometheus text exposition of everything counted so far.
    pub fn render(&self) -> String {
        self.0.handle.render()
    }

    /// Keeps histograms from growing without bound; run in the background.
    pub async fn upkeep(self, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => self.0.handle.run_upkeep(),
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Runs `register` (a `metrics::counter!`-style macro call) against this
    /// daemon's registry.
    fn in_registry<T>(&self, register: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.0.recorder, register)
    }

    /// One intake outcome: accepted, duplicate, rejected (with its code),
    /// requeued (an outage), failed (in its own right, sent round again) or
    /// dead_letter_failed (with its code: the dead letter was not taken).
    pub(super) fn intake(&self, result: &'static str, code: Option<&'static str>) {
        if let (Some(code), "rejected" | "dead_letter_failed") = (code, result)
            && let Ok(mut by_code) = self.0.dead_letters.lock()
        {
            let n = by_code.entry(code).or_default();
            if result == "rejected" {
                n.rejected += 1;
            } else {
                n.failed += 1;
            }
        }
        self.in_registry(|| {
            metrics::counter!("cascade_intake_total", "result" => result, "code" => code.unwrap_or(""))
        })
        .increment(1);
    }

    /// One provider answer and how long it took.
    pub(super) fn send(&self, channel: &str, outcome: &'static str, took: Duration) {
        self.0
            .sends
            .get(outcome, channel, || {
                self.in_registry(|| {
                    metrics::counter!("cascade_sends_total", "channel" => channel.to_owned(), "outcome" => outcome)
                })
            })
            .increment(1);
        self.0
            .send_durations
            .get("", channel, || {
                self.in_registry(|| {
                    metrics::histogram!("cascade_send_duration_seconds", "channel" => channel.to_owned())
                })
            })
            .record(took.as_secs_f64());
    }

    /// One lifecycle event of a cascade (the log line is written beside it).
    pub(super) fn lifecycle(&self, event: &'static str, channel: Option<&str>) {
        let channel = channel.unwrap_or("");
        self.0
            .lifecycle
            .get(event, channel, || {
                self.in_registry(|| {
                    metrics::counter!("cascade_lifecycle_events_total", "event" => event, "channel" => channel.to_owned())
                })
            })
            .increment(1);
    }

    /// One receipt recorded; custom words are counted as `other`.
    pub(super) fn receipt(&self, event: &str) {
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
        self.in_registry(|| metrics::counter!("cascade_receipts_total", "event" => word))
            .increment(1);
    }

    /// Cascades claimed by the scheduler.
    pub(super) fn claimed(&self, n: usize) {
        self.in_registry(|| metrics::counter!("cascade_claimed_total"))
            .increment(n as u64);
    }

    /// One provider callback and what became of it (bounded labels).
    pub fn callback(&self, provider: &'static str, result: &'static str) {
        self.in_registry(|| {
            metrics::counter!("cascade_callbacks_total", "provider" => provider, "result" => result)
        })
        .increment(1);
    }

    /// One request refused before it was authenticated.
    pub fn http_rejected(&self, route: &'static str, reason: &'static str) {
        self.in_registry(|| {
            metrics::counter!("cascade_http_rejected_total", "route" => route, "reason" => reason)
        })
        .increment(1);
    }
}

/// Each metric's `# HELP` line: what it counts, and its labels' values.
fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        "cascade_intake_total",
        "Notifications taken off the intake queue, by result (accepted, duplicate, rejected, requeued, failed, dead_letter_failed) and the dead-letter code of a rejected one"
    );
    describe_counter!(
        "cascade_sends_total",
        "Provider answers to sends, by channel and outcome (sent, transient, rate_limited, permanent, misconfigured, ambiguous)"
    );
    describe_histogram!(
        "cascade_send_duration_seconds",
        Unit::Seconds,
        "How long a provider took to answer a send, by channel"
    );
    describe_counter!(
        "cascade_lifecycle_events_total",
        "Lifecycle events of cascades (one per log line: sent, escalated, completed, …), by event and channel"
    );
    describe_counter!(
        "cascade_receipts_total",
        "Receipts recorded, by event word (custom words as `other`)"
    );
    describe_counter!(
        "cascade_claimed_total",
        "Due cascades the scheduler claimed from the timer shards"
    );
    describe_counter!(
        "cascade_callbacks_total",
        "Provider callbacks received, by provider and what became of them"
    );
    describe_counter!(
        "cascade_http_rejected_total",
        "Requests refused before they were authenticated, by route and reason"
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_says_what_it_counts() {
        let t = Telemetry::new();
        t.intake("accepted", None);
        t.send("vk", "sent", Duration::from_millis(12));
        t.lifecycle("sent", Some("vk"));
        t.receipt("read");
        t.claimed(1);
        t.callback("vk", "recorded");
        t.http_rejected("v1", "missing");
        let text = t.render();
        let typed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        assert_eq!(typed.len(), 8, "{text}");
        for name in typed {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("# HELP {name} "))),
                "{name} has no # HELP line:\n{text}"
            );
        }
    }

    #[test]
    fn dead_letters_are_counted_by_code_as_on_the_metrics_page() {
        let t = Telemetry::new();
        t.intake("rejected", Some("malformed_json"));
        t.intake("rejected", Some("malformed_json"));
        t.intake("rejected", Some("unknown_policy"));
        t.intake("dead_letter_failed", Some("unknown_policy"));
        t.intake("accepted", None);
        let d = t.dead_letters();
        assert_eq!(d.len(), 2);
        assert_eq!(
            d["malformed_json"],
            DeadLetters {
                rejected: 2,
                failed: 0
            }
        );
        assert_eq!(
            d["unknown_policy"],
            DeadLetters {
                rejected: 1,
                failed: 1
            }
        );
        assert!(
            t.render()
                .contains("cascade_intake_total{result=\"rejected\",code=\"malformed_json\"} 2")
        );
    }
}
