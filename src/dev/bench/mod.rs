//! `cascade bench`: the daemon, started in-process against the local RabbitMQ
//! and Redis, measured against the floor of its own stack.
//!
//! Each workload runs in a queue and key prefix of its own (deleted
//! afterwards) with a fresh daemon, and sends to loopback fakes:
//! - W1 intake: N notifications pre-published, then the daemon started;
//!   first-step (VK) sends per second from the first send to the last.
//! - W2 sweep: N cascades waiting 1 h, half with a `read` receipt written
//!   straight into Redis; the daemon's clock jumps 1 h, all are due at once;
//!   SMS per second, wrong and missing SMS, lateness.
//! - W3 footprint: N cascades waiting; the process's RSS and Redis
//!   `used_memory` per pending cascade.
//! - Floors: consume-and-ack of an idle queue, POST round trips to the
//!   fakes, EVALSHA round trips to Redis, at the daemon's own concurrency.
//!
//! It measures; it asserts nothing about time.

mod floors;
mod measure;
mod render;
mod rig;
mod w1;
mod w2;
mod w2s;
mod w3;

pub use render::render;

use std::time::Duration;

use crate::runtime::daemon::StartError;

/// Timer shards of every bench daemon (the default of cascade.toml).
const TIMER_SHARDS: u16 = 16;
/// Publisher confirms awaited per batch.
const PUBLISH_BATCH: usize = 2_000;
/// The wait between the two steps of the bench policy.
const WAIT_MS: i64 = 3_600_000;

/// What to run and how big.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub amqp_url: String,
    pub redis: crate::runtime::store::Target,
    pub w1_n: usize,
    pub w2_n: usize,
    /// W2s: notifications whose escalations come due spread over time.
    pub w2s_n: usize,
    pub w3_n: usize,
    /// Round trips per floor (provider and Redis); the AMQP floor uses `w1_n` messages.
    pub floor_n: usize,
    /// The longest any one wait may take.
    pub timeout: Duration,
    /// `amqp.prefetch` of the daemon, and of the consume-and-ack floor.
    pub prefetch: u16,
    /// The scheduler's concurrency, and that of the provider and Redis floors.
    pub concurrency: usize,
    /// The scheduler's batch (most cascades per claim).
    pub batch: usize,
    /// `amqp.queue_type` of the workloads' queues: `classic` by default, as
    /// the AMQP floor's queue and the figures before quorum queues.
    pub queue_type: String,
    pub run_w1: bool,
    pub run_w2: bool,
    pub run_w2s: bool,
    pub run_w3: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("rabbitmq: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("the daemon did not start: {0}")]
    Start(#[from] StartError),
    #[error("the bench configuration is not valid: {0}")]
    Config(String),
    #[error("the broker confirmed only {acked} of {total} messages")]
    Unconfirmed { acked: usize, total: usize },
}

/// One floor: how many round trips in how long.
#[derive(Clone, Debug)]
pub struct Floor {
    pub name: &'static str,
    pub count: usize,
    pub elapsed: Duration,
}

impl Floor {
    pub fn rate(&self) -> f64 {
        rate(self.count, self.elapsed)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Intake {
    pub n: usize,
    pub publish_rate: f64,
    /// First-step sends seen by the fake within the timeout.
    pub sent: usize,
    /// Daemon start → first send.
    pub first_send: Option<Duration>,
    /// First send → N-th send.
    pub elapsed: Duration,
}

#[derive(Clone, Debug, Default)]
pub struct Sweep {
    pub n: usize,
    pub sms_expected: usize,
    pub sms_distinct: usize,
    pub sms_repeated: usize,
    pub sms_to_read: usize,
    pub sms_missing: usize,
    /// Clock jump → last expected SMS.
    pub elapsed: Duration,
    pub lateness_p50: Duration,
    pub lateness_p99: Duration,
    pub lateness_max: Duration,
    /// Cascades still in the timer shards (due or leased) after the settle time.
    pub unsettled: u64,
    /// CPU time Redis and this process (daemon and fakes) used from the
    /// clock jump to the last expected SMS.
    pub redis_cpu: Duration,
    pub process_cpu: Duration,
    /// Script calls Redis ran from the clock jump to the end of the settle
    /// time, and the time it spent in them (`INFO commandstats`, `evalsha`).
    pub script_calls: u64,
    pub script_time: Duration,
}

#[derive(Clone, Debug, Default)]
pub struct Footprint {
    pub n: usize,
    pub waiting: usize,
    pub rss_before_kib: u64,
    pub rss_peak_kib: u64,
    pub hwm_kib: u64,
    pub redis_before: u64,
    pub redis_after: u64,
    /// `MEMORY USAGE` per pending cascade by kind of key, largest first.
    pub breakdown: Vec<(String, f64)>,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub floors: Vec<Floor>,
    pub w1: Option<Intake>,
    pub w2: Option<Sweep>,
    pub w2s: Option<Spread>,
    pub w3: Option<Footprint>,
}

/// W2s: how late escalations came whose due moments were spread out.
#[derive(Clone, Debug, Default)]
pub struct Spread {
    pub n: usize,
    /// SMS that arrived (one per notification: none is read).
    pub sms: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Redis's CPU and script calls from the first publish to the last SMS
    /// (intake, first sends and escalations).
    pub redis_cpu: Duration,
    pub script_calls: u64,
}

/// Runs the floors and the chosen workloads, cleaning up after each.
pub async fn run(opts: &BenchOptions) -> Result<Report, BenchError> {
    let mut report = Report {
        floors: floors::floors(opts).await?,
        ..Report::default()
    };
    if opts.run_w1 {
        report.w1 = Some(w1::w1(opts).await?);
    }
    if opts.run_w2 {
        report.w2 = Some(w2::w2(opts).await?);
    }
    if opts.run_w2s {
        report.w2s = Some(w2s::w2s(opts).await?);
    }
    if opts.run_w3 {
        report.w3 = Some(w3::w3(opts).await?);
    }
    Ok(report)
}

/// `count` per second of `elapsed` (zero when no time passed).
fn rate(count: usize, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 { count as f64 / s } else { 0.0 }
}
