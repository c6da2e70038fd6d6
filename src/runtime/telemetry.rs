//! Metrics (Prometheus, at `/metrics`). Labels take values from bounded
//! sets only: lifecycle words, channel and policy names from the
//! configuration, intake error codes, send outcomes, the version.
//!
//! Each daemon counts in a registry of its own (`Telemetry`), not in a
//! process-wide recorder: two daemons in one process (the tests start many)
//! never count into each other's `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::formatting::{
    sanitize_label_value, write_help_line, write_type_line,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Upper bounds of the duration histograms, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The timer lateness histogram: from the scheduler's few milliseconds
/// (it gathers dues 6 ms apart into one claim) to the minutes of a backlog
/// or of a daemon that was down.
const LATENESS: &str = "cascade_timer_lateness_seconds";
const LATENESS_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
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
    lateness: Histogram,
    reload_failures: Counter,
    money: Mutex<Money>,
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
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(LATENESS.into()), &LATENESS_BUCKETS)
            })
            .expect("the bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        let (lateness, reload_failures) = metrics::with_local_recorder(&recorder, || {
            describe();
            metrics::gauge!("cascade_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            // The configuration a daemon starts on is valid (or it would not start).
            metrics::gauge!("cascade_config_last_reload_successful").set(1.0);
            (
                metrics::histogram!(LATENESS),
                metrics::counter!("cascade_reload_failures_total"),
            )
        });
        // Shown at zero from the start: an alert on its increase sees the first one.
        reload_failures.increment(0);
        Telemetry(Arc::new(Registry {
            recorder,
            handle,
            sends: Handles::new(),
            send_durations: Handles::new(),
            lifecycle: Handles::new(),
            lateness,
            reload_failures,
            money: Mutex::default(),
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
        let mut page = self.0.handle.render();
        if let Ok(money) = self.0.money.lock() {
            money.render(&mut page);
        }
        page
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
        const KNOWN: [&str; 10] = [
            "delivered",
            "read",
            "opened",
            "clicked",
            "replied",
            "failed",
            "cancelled",
            "called",
            "paid",
            "answered",
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

    /// How long after it came due a wake-up was claimed.
    pub(super) fn timer_lateness(&self, late: Duration) {
        self.0.lateness.record(late.as_secs_f64());
    }

    /// What the timer shards hold, as last sampled (`gauges`): every
    /// stored wake-up, and those of them due and not claimed.
    pub(super) fn timers(&self, waiting: u64, backlog: u64) {
        self.in_registry(|| metrics::gauge!("cascade_cascades_waiting"))
            .set(waiting as f64);
        self.in_registry(|| metrics::gauge!("cascade_backlog"))
            .set(backlog as f64);
    }

    /// Whether a channel's circuit breaker is open (sends fail at once).
    pub(super) fn breaker(&self, channel: &str, open: bool) {
        self.in_registry(
            || metrics::gauge!("cascade_breaker_open", "channel" => channel.to_owned()),
        )
        .set(if open { 1.0 } else { 0.0 });
    }

    /// A reload of the configuration: applied, or refused (the daemon goes
    /// on with the last good one).
    pub(super) fn reloaded(&self, applied: bool) {
        if !applied {
            self.0.reload_failures.increment(1);
        }
        self.in_registry(|| metrics::gauge!("cascade_config_last_reload_successful"))
            .set(if applied { 1.0 } else { 0.0 });
    }

    /// Money spent on a send: `amount` in the currency of the channel's
    /// `cost`. Zero makes the series exist; a negative or non-finite
    /// amount is ignored (a counter only goes up).
    pub(crate) fn money_spent(&self, channel: &str, policy: &str, amount: f64) {
        if let Ok(mut money) = self.0.money.lock() {
            Money::add(&mut money.spent, channel, policy, amount);
        }
    }

    /// Money saved: the cost of a send a cascade did not need (it was read
    /// before escalating to it), in the currency of the channel's `cost`.
    /// As `money_spent` otherwise.
    pub(crate) fn money_saved(&self, channel: &str, policy: &str, amount: f64) {
        if let Ok(mut money) = self.0.money.lock() {
            Money::add(&mut money.saved, channel, policy, amount);
        }
    }

    /// One provider callback and what became of it (bounded labels).
    pub fn callback(&self, provider: &'static str, result: &'static str) {
        self.in_registry(|| {
            metrics::counter!("cascade_callbacks_total", "provider" => provider, "result" => result)
        })
        .increment(1);
    }

    /// One `POST /v1/notifications` request and how it was answered.
    pub fn http_intake(&self, result: &'static str) {
        self.in_registry(|| metrics::counter!("cascade_http_intake_total", "result" => result))
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
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
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
    describe_counter!(
        "cascade_http_intake_total",
        "POST /v1/notifications requests, by result: accepted (every notification confirmed by RabbitMQ), invalid (400), unsupported_media_type (415), too_large (413), broker_unavailable (503)"
    );
    describe_histogram!(
        LATENESS,
        Unit::Seconds,
        "How long after it came due the scheduler claimed a wake-up (a timer, a receipt's wake-up at once, a lapsed lease)"
    );
    describe_gauge!(
        "cascade_cascades_waiting",
        "Wake-ups stored in Redis, sampled every few seconds: every timer shard's sorted set (claimed ones included) and far lists; a stale far entry left behind by a cascade whose wake-up moved nearer counts too. The same for every instance on one Redis"
    );
    describe_gauge!(
        "cascade_backlog",
        "Wake-ups due and not claimed, sampled every few seconds: due in the timer shards' sorted sets (leases that ran out included; running ones not) and in far lists of minutes already past. The same for every instance on one Redis"
    );
    describe_gauge!(
        "cascade_breaker_open",
        "1 while a channel's circuit breaker is open (its provider said the channel is misconfigured; sends fail at once), else 0; by configured channel, sampled every few seconds"
    );
    describe_counter!(
        "cascade_reload_failures_total",
        "Reloads of the configuration refused (invalid, or an unsafe secret); the daemon goes on with the last good one"
    );
    describe_gauge!(
        "cascade_config_last_reload_successful",
        "1 when the last reload of the configuration was applied (or none was tried since the start), 0 when it was refused"
    );
    describe_gauge!(
        "cascade_build_info",
        "Always 1; the label `version` is the daemon's version"
    );
}

/// Money spent and saved, by channel and policy: counters of a float
/// amount, which the `metrics` crate's counters (whole numbers) cannot
/// hold, so they are rendered here, after the recorder's page.
#[derive(Default)]
struct Money {
    /// Channel → policy → amount.
    spent: BTreeMap<String, BTreeMap<String, f64>>,
    saved: BTreeMap<String, BTreeMap<String, f64>>,
}

const MONEY_SPENT: &str = "cascade_money_spent_total";
const MONEY_SAVED: &str = "cascade_money_saved_total";

impl Money {
    /// Adds `amount` (finite and not negative) to a channel and policy's
    /// sum; allocates only for a pair seen for the first time.
    fn add(
        sums: &mut BTreeMap<String, BTreeMap<String, f64>>,
        channel: &str,
        policy: &str,
        amount: f64,
    ) {
        if !(amount.is_finite() && amount >= 0.0) {
            return;
        }
        let policies = match sums.get_mut(channel) {
            Some(p) => p,
            None => sums.entry(channel.to_owned()).or_default(),
        };
        match policies.get_mut(policy) {
            Some(sum) => *sum += amount,
            None => {
                policies.insert(policy.to_owned(), amount);
            }
        }
    }

    /// Both counters in the text exposition format, each with its `# HELP`.
    fn render(&self, page: &mut String) {
        let families = [
            (
                MONEY_SPENT,
                &self.spent,
                "Money spent on sends, by channel and policy, in the currency of the channel's `cost` setting (a float)",
            ),
            (
                MONEY_SAVED,
                &self.saved,
                "Money not spent on sends that cascades did not need (read before escalating), by channel and policy, in the currency of the channel's `cost` setting (a float)",
            ),
        ];
        for (name, sums, help) in families {
            if sums.is_empty() {
                continue;
            }
            write_help_line(page, name, None, None, help);
            write_type_line(page, name, None, None, "counter");
            for (channel, policies) in sums {
                for (policy, sum) in policies {
                    let _ = writeln!(
                        page,
                        "{name}{{channel=\"{}\",policy=\"{}\"}} {sum}",
                        sanitize_label_value(channel),
                        sanitize_label_value(policy)
                    );
                }
            }
            page.push('\n');
        }
    }
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
        t.http_intake("accepted");
        t.timer_lateness(Duration::from_millis(7));
        t.timers(10, 2);
        t.breaker("sms", false);
        t.reloaded(false);
        t.money_spent("sms", "delivery_delay", 4.2);
        t.money_saved("sms", "delivery_delay", 4.2);
        let text = t.render();
        let typed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        assert_eq!(typed.len(), 18, "{text}");
        for name in typed {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("# HELP {name} "))),
                "{name} has no # HELP line:\n{text}"
            );
        }
    }

    #[test]
    fn money_counts_in_floats_by_channel_and_policy() {
        let t = Telemetry::new();
        t.money_spent("sms", "delivery_delay", 0.0);
        t.money_spent("sms", "delivery_delay", 4.25);
        t.money_spent("sms", "delivery_delay", 4.25);
        t.money_spent("sms", "delivery_delay", -1.0);
        t.money_spent("sms", "delivery_delay", f64::NAN);
        t.money_spent("vk", "a \"quoted\" policy", 0.5);
        t.money_saved("sms", "abandoned_cart", 0.0);
        let text = t.render();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("cascade_money_"))
            .collect();
        assert_eq!(
            lines,
            [
                "cascade_money_spent_total{channel=\"sms\",policy=\"delivery_delay\"} 8.5",
                "cascade_money_spent_total{channel=\"vk\",policy=\"a \\\"quoted\\\" policy\"} 0.5",
                "cascade_money_saved_total{channel=\"sms\",policy=\"abandoned_cart\"} 0",
            ],
            "{text}"
        );
        assert!(text.contains("# TYPE cascade_money_spent_total counter\n"));
    }

    #[test]
    fn lateness_has_buckets_of_its_own() {
        let t = Telemetry::new();
        t.timer_lateness(Duration::from_secs(90));
        let text = t.render();
        assert!(
            text.contains("cascade_timer_lateness_seconds_bucket{le=\"300\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("cascade_build_info{version=\"") && text.contains("\"} 1\n"),
            "{text}"
        );
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
