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

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};

use crate::config::Catalog;
use crate::dev::fakes::vk::FakeVk;
use crate::dev::fakes::webhook::FakeWebhook;
use crate::runtime::clock::SystemClock;
use crate::runtime::daemon::{Daemon, DaemonOptions, StartError};
use crate::runtime::intake::{self, IntakeConfig};
use crate::runtime::keys::Keys;
use crate::runtime::scheduler::SchedulerConfig;

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
    pub redis_url: String,
    pub w1_n: usize,
    pub w2_n: usize,
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
    pub run_w1: bool,
    pub run_w2: bool,
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
    pub w3: Option<Footprint>,
}

/// Runs the floors and the chosen workloads, cleaning up after each.
pub async fn run(opts: &BenchOptions) -> Result<Report, BenchError> {
    let mut report = Report {
        floors: floors(opts).await?,
        ..Report::default()
    };
    if opts.run_w1 {
        report.w1 = Some(w1(opts).await?);
    }
    if opts.run_w2 {
        report.w2 = Some(w2(opts).await?);
    }
    if opts.run_w3 {
        report.w3 = Some(w3(opts).await?);
    }
    Ok(report)
}

// ---------------------------------------------------------------------------
// A private configuration per workload
// ---------------------------------------------------------------------------

struct Rig {
    name: String,
    dir: PathBuf,
    catalog: Catalog,
    intake: IntakeConfig,
    keys: Keys,
}

impl Rig {
    fn new(
        tag: &str,
        opts: &BenchOptions,
        vk_base_url: &str,
        sms_url: &str,
    ) -> Result<Rig, BenchError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() % 1_000_000_000)
            .unwrap_or(0);
        let name = format!("bench-{tag}-{}-{nanos}", std::process::id());
        // Keys and ids as long as a real deployment's: a prefix of the
        // default's length (`cascade`) and ids like the README's `order-1001:delayed`.
        // Redis bytes per cascade grow with both (every key and the timer
        // entry hold them), so a longer run-unique name would inflate them.
        let prefix = format!(
            "b{tag}{:04x}",
            (std::process::id() as u128 ^ nanos) & 0xffff
        );
        let dir = std::env::temp_dir().join(format!("cascade-{name}"));
        std::fs::create_dir_all(dir.join("channels"))?;
        std::fs::create_dir_all(dir.join("policies"))?;
        std::fs::write(
            dir.join("cascade.toml"),
            format!(
                "[amqp]\nurl = \"{}\"\nqueue = \"{name}.notifications\"\ndead_letter_queue = \"{name}.dead\"\nprefetch = {}\n\n\
                 [redis]\nurl = \"{}\"\nprefix = \"{prefix}\"\ntimer_shards = {TIMER_SHARDS}\nretention = \"1d\"\n\n\
                 [http]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nreceipt_token = \"bench\"\n",
                opts.amqp_url, opts.prefetch, opts.redis_url
            ),
        )?;
        std::fs::write(
            dir.join("channels/vk.toml"),
            format!(
                "kind = \"vk\"\nbase_url = \"{vk_base_url}\"\naccess_token = \"bench-token\"\ngroup_id = \"1\"\n\
                 callback_secret = \"bench-secret\"\nconfirmation = \"bench\"\ntimeout = \"10s\"\n\
                 [retry]\nattempts = 3\nbackoff = \"100ms\"\nmax_backoff = \"200ms\"\n"
            ),
        )?;
        std::fs::write(
            dir.join("channels/sms.toml"),
            format!(
                "kind = \"webhook\"\ncontact = \"sms\"\nurl = \"{sms_url}\"\ntimeout = \"10s\"\n\
                 [retry]\nattempts = 3\nbackoff = \"100ms\"\nmax_backoff = \"200ms\"\n"
            ),
        )?;
        std::fs::write(
            dir.join("policies/bench.toml"),
            "description = \"VK, then SMS if unread after 1 h\"\nstop_on = [\"read\"]\n\n\
             [[steps]]\nchannel = \"vk\"\nwait = \"1h\"\n\n[[steps]]\nchannel = \"sms\"\n",
        )?;
        let catalog = Catalog::load_with_env(&dir.join("cascade.toml"), &|_| None)
            .map_err(|e| BenchError::Config(e.to_string()))?;
        let intake = IntakeConfig::from(&catalog.settings.amqp);
        let keys = Keys::new(&prefix, TIMER_SHARDS);
        Ok(Rig {
            name,
            dir,
            catalog,
            intake,
            keys,
        })
    }

    fn id(&self, i: usize) -> String {
        format!("order-{i}:delayed")
    }

    fn body(&self, i: usize) -> Vec<u8> {
        serde_json::json!({
            "id": self.id(i),
            "policy": "bench",
            "customer": {
                "id": format!("c{i}"),
                "contacts": { "vk": (1_000_000 + i).to_string(), "sms": format!("+7916{:07}", i % 10_000_000) }
            },
            "content": { "text": "Заказ задерживается" }
        })
        .to_string()
        .into_bytes()
    }

    async fn start(
        &self,
        opts: &BenchOptions,
        clock: Arc<SystemClock>,
    ) -> Result<Daemon, BenchError> {
        let options = DaemonOptions {
            clock,
            scheduler: SchedulerConfig {
                concurrency: opts.concurrency,
                batch: opts.batch,
                ..SchedulerConfig::default()
            },
            listen: Some("127.0.0.1:0".into()),
            admin_listen: Some("127.0.0.1:0".into()),
            insecure_demo_secrets: false,
            config_path: None,
        };
        Ok(Daemon::start(self.catalog.clone(), options).await?)
    }

    /// Cascades whose timer is later than `after_ms` (waiting on the 1 h
    /// step): in the shards' sorted sets, and in their far slots' lists,
    /// which hold only wake-ups beyond the horizon (`after_ms` is earlier).
    async fn waiting_after(
        &self,
        conn: &mut redis::aio::ConnectionManager,
        after_ms: i64,
    ) -> Result<u64, BenchError> {
        let mut pipe = redis::pipe();
        for shard in 0..TIMER_SHARDS {
            pipe.zcount(self.keys.timer(shard), format!("({after_ms}"), "+inf");
            pipe.zrange(self.keys.later(shard), 0, -1);
        }
        let per_shard: Vec<(u64, Vec<String>)> = pipe.query_async(conn).await?;
        let mut pipe = redis::pipe();
        for (shard, (_, slots)) in per_shard.iter().enumerate() {
            for slot in slots {
                pipe.llen(format!("{}:{slot}", self.keys.later(shard as u16)));
            }
        }
        let far: Vec<u64> = if pipe.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(conn).await?
        };
        Ok(per_shard.iter().map(|(near, _)| near).sum::<u64>() + far.iter().sum::<u64>())
    }

    async fn clean(&self, opts: &BenchOptions) {
        if let Ok(conn) = Connection::connect(&opts.amqp_url, ConnectionProperties::default()).await
            && let Ok(ch) = conn.create_channel().await
        {
            for q in [&self.intake.queue, &self.intake.dead_letter_queue] {
                let _ = ch
                    .queue_delete(ShortString::from(q.as_str()), QueueDeleteOptions::default())
                    .await;
            }
            let _ = conn.close(200, ShortString::from("bench done")).await;
        }
        let _ = delete_prefix(&opts.redis_url, self.keys.prefix()).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn redis_conn(url: &str) -> Result<redis::aio::ConnectionManager, BenchError> {
    let client = redis::Client::open(url)?;
    Ok(redis::aio::ConnectionManager::new(client).await?)
}

async fn delete_prefix(url: &str, prefix: &str) -> Result<(), BenchError> {
    let mut c = redis_conn(url).await?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut c)
            .await?;
        if !keys.is_empty() {
            let _: () = redis::cmd("UNLINK").arg(&keys).query_async(&mut c).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

async fn used_memory(url: &str) -> Result<u64, BenchError> {
    let mut c = redis_conn(url).await?;
    let info: String = redis::cmd("INFO").arg("memory").query_async(&mut c).await?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

/// CPU time the Redis server has used (`INFO cpu`, user + system).
async fn redis_cpu(conn: &mut redis::aio::ConnectionManager) -> Result<Duration, BenchError> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await?;
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    Ok(Duration::from_secs_f64(
        field("used_cpu_user:") + field("used_cpu_sys:"),
    ))
}

/// `EVALSHA` calls Redis has run since its stats were reset, and the time
/// it spent in them (the commands the scripts ran included).
async fn script_stats(
    conn: &mut redis::aio::ConnectionManager,
) -> Result<(u64, Duration), BenchError> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    let line = info
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
        .unwrap_or("");
    let field = |name: &str| -> u64 {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("calls="), Duration::from_micros(field("usec="))))
}

/// CPU time this process has used, user + system (`/proc/self/stat`, in
/// clock ticks of 1/100 s, as on every Linux this runs on; zero elsewhere).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11) // state … cmajflt; then utime, stime
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// `VmRSS` and `VmHWM` of this process, in KiB (0 where /proc is missing).
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Publishes `bodies` to `queue` with publisher confirms, a batch at a time.
async fn publish(
    url: &str,
    config: &IntakeConfig,
    queue: &str,
    n: usize,
    body: impl Fn(usize) -> Vec<u8>,
) -> Result<Duration, BenchError> {
    let started = Instant::now();
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    intake::declare(&channel, config).await?;
    channel
        .queue_declare(
            ShortString::from(queue),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut acked = 0;
    let mut start = 0;
    while start < n {
        let end = (start + PUBLISH_BATCH).min(n);
        let mut confirms = Vec::with_capacity(end - start);
        for i in start..end {
            let confirm = channel
                .basic_publish(
                    ShortString::from(""),
                    ShortString::from(queue),
                    BasicPublishOptions::default(),
                    &body(i),
                    BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_content_type(ShortString::from("application/json")),
                )
                .await?;
            confirms.push(confirm);
        }
        for confirm in confirms {
            if confirm.await?.is_ack() {
                acked += 1;
            }
        }
        start = end;
    }
    let _ = conn.close(200, ShortString::from("published")).await;
    if acked != n {
        return Err(BenchError::Unconfirmed { acked, total: n });
    }
    Ok(started.elapsed())
}

/// Polls `count` every 5 ms until it reaches `n` or `timeout` passes.
/// Returns the moment it first was above zero and the moment it reached `n`.
async fn watch(
    n: usize,
    timeout: Duration,
    count: impl Fn() -> usize,
) -> (Option<Instant>, Option<Instant>, usize) {
    let started = Instant::now();
    let mut first = None;
    loop {
        let c = count();
        if c > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if c >= n {
            return (first, Some(Instant::now()), c);
        }
        if started.elapsed() > timeout {
            return (first, None, c);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 { count as f64 / s } else { 0.0 }
}

// ---------------------------------------------------------------------------
// Floors
// ---------------------------------------------------------------------------

async fn floors(opts: &BenchOptions) -> Result<Vec<Floor>, BenchError> {
    Ok(vec![
        amqp_floor(opts).await?,
        webhook_floor(opts).await?,
        vk_floor(opts).await?,
        redis_floor(opts).await?,
    ])
}

/// Consume-and-ack, one ack per delivery, at the daemon's prefetch.
async fn amqp_floor(opts: &BenchOptions) -> Result<Floor, BenchError> {
    let n = opts.w1_n.max(1);
    let rig = Rig::new(
        "floor",
        opts,
        "http://127.0.0.1:9/method",
        "http://127.0.0.1:9/",
    )?;
    let floor_queue = format!("{}.floor", rig.name);
    let result = async {
        let sample = rig.body(0);
        publish(&opts.amqp_url, &rig.intake, &floor_queue, n, |_| {
            sample.clone()
        })
        .await?;
        let conn = Connection::connect(&opts.amqp_url, ConnectionProperties::default()).await?;
        let channel = conn.create_channel().await?;
        channel
            .basic_qos(opts.prefetch, BasicQosOptions::default())
            .await?;
        let mut consumer = channel
            .basic_consume(
                ShortString::from(floor_queue.as_str()),
                ShortString::from("bench-floor"),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut first = None;
        let mut got = 0;
        let deadline = Instant::now() + opts.timeout;
        while got < n {
            let next = tokio::time::timeout_at(deadline.into(), consumer.next()).await;
            let Ok(Some(delivery)) = next else { break };
            let delivery = delivery?;
            first.get_or_insert_with(Instant::now);
            delivery.ack(BasicAckOptions::default()).await?;
            got += 1;
        }
        let elapsed = first.map(|f| f.elapsed()).unwrap_or_default();
        let _ = channel
            .queue_delete(
                ShortString::from(floor_queue.as_str()),
                QueueDeleteOptions::default(),
            )
            .await;
        let _ = conn.close(200, ShortString::from("floor done")).await;
        Ok::<_, BenchError>(Floor {
            name: "AMQP consume+ack",
            count: got,
            elapsed,
        })
    }
    .await;
    rig.clean(opts).await;
    result
}

async fn concurrent<F, Fut>(n: usize, concurrency: usize, op: F) -> (usize, Duration)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    let ok = futures_util::stream::iter(0..n)
        .map(op)
        .buffer_unordered(concurrency.max(1))
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    (ok, started.elapsed())
}

/// POSTs of a notification-sized JSON body to a fresh webhook fake.
async fn webhook_floor(opts: &BenchOptions) -> Result<Floor, BenchError> {
    let fake = FakeWebhook::start().await?;
    let http = reqwest::Client::new();
    let url = fake.url().to_owned();
    let (count, elapsed) = concurrent(opts.floor_n, opts.concurrency, |i| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.post(&url)
                .header("idempotency-key", format!("floor-{i}:0"))
                .json(&serde_json::json!({"id": format!("floor-{i}"), "step": 0, "text": "Заказ задерживается"}))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    Ok(Floor {
        name: "HTTP POST to webhook fake",
        count,
        elapsed,
    })
}

/// `messages.send` to a fresh VK fake, as the VK adapter sends it.
async fn vk_floor(opts: &BenchOptions) -> Result<Floor, BenchError> {
    let fake = FakeVk::start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/messages.send", fake.base_url());
    let (count, elapsed) = concurrent(opts.floor_n, opts.concurrency, |i| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let form = [
                ("peer_id", (1_000_000 + i).to_string()),
                ("random_id", i.to_string()),
                ("message", "Заказ задерживается".to_owned()),
                ("access_token", "bench-token".to_owned()),
                ("v", "5.199".to_owned()),
            ];
            http.post(&url)
                .form(&form)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    Ok(Floor {
        name: "HTTP POST to VK fake",
        count,
        elapsed,
    })
}

/// EVALSHA of `return 1` through one ConnectionManager, like the store's.
async fn redis_floor(opts: &BenchOptions) -> Result<Floor, BenchError> {
    let conn = redis_conn(&opts.redis_url).await?;
    let script = Arc::new(redis::Script::new("return 1"));
    let (count, elapsed) = concurrent(opts.floor_n, opts.concurrency, |_| {
        let (mut conn, script) = (conn.clone(), script.clone());
        async move {
            script
                .invoke_async::<_, i64>(&mut conn)
                .await
                .is_ok_and(|v| v == 1)
        }
    })
    .await;
    Ok(Floor {
        name: "Redis EVALSHA",
        count,
        elapsed,
    })
}

// ---------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------

async fn w1(opts: &BenchOptions) -> Result<Intake, BenchError> {
    let vk = FakeVk::start().await;
    let sms = FakeWebhook::start().await?;
    let rig = Rig::new("w1", opts, &vk.base_url(), sms.url())?;
    let result = async {
        let n = opts.w1_n;
        let published = publish(&opts.amqp_url, &rig.intake, &rig.intake.queue, n, |i| {
            rig.body(i)
        })
        .await?;
        let started = Instant::now();
        let daemon = rig.start(opts, Arc::new(SystemClock::default())).await?;
        let (first, last, sent) = watch(n, opts.timeout, || vk.received_count()).await;
        daemon.stop(Duration::from_secs(5)).await;
        Ok::<_, BenchError>(Intake {
            n,
            publish_rate: rate(n, published),
            sent,
            first_send: first.map(|f| f - started),
            elapsed: match (first, last) {
                (Some(f), Some(l)) => l - f,
                (Some(f), None) => f.elapsed(),
                _ => Duration::ZERO,
            },
        })
    }
    .await;
    rig.clean(opts).await;
    result
}

async fn w2(opts: &BenchOptions) -> Result<Sweep, BenchError> {
    let vk = FakeVk::start().await;
    let sms = FakeWebhook::start().await?;
    let rig = Rig::new("w2", opts, &vk.base_url(), sms.url())?;
    let result = async {
        let n = opts.w2_n;
        publish(&opts.amqp_url, &rig.intake, &rig.intake.queue, n, |i| {
            rig.body(i)
        })
        .await?;
        let clock = Arc::new(SystemClock::default());
        let daemon = rig.start(opts, clock.clone()).await?;
        watch(n, opts.timeout, || vk.received_count()).await;
        // Every cascade must have stored its send and be waiting on the 1 h
        // step before the clock moves, or in-flight sends would time out.
        let mut conn = redis_conn(&opts.redis_url).await?;
        let deadline = Instant::now() + opts.timeout;
        while rig
            .waiting_after(&mut conn, clock_now(&clock) + WAIT_MS / 2)
            .await?
            < n as u64
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Half of the customers read the VK message (even numbers).
        let now = clock_now(&clock);
        for chunk in (0..n).step_by(2).collect::<Vec<_>>().chunks(1_000) {
            let mut pipe = redis::pipe();
            for i in chunk {
                pipe.hset(rig.keys.receipts(&rig.id(*i)), "read", now)
                    .ignore();
            }
            let _: () = pipe.query_async(&mut conn).await?;
        }
        let read: HashSet<String> = (0..n).step_by(2).map(|i| rig.id(i)).collect();
        let expected = n - read.len();
        // Everything is due from this instant on.
        let cpu_before = (redis_cpu(&mut conn).await?, process_cpu());
        let scripts_before = script_stats(&mut conn).await?;
        let due = Instant::now();
        clock.advance(WAIT_MS + 1_000);
        let (_, last, _) = watch(expected, opts.timeout, || sms.received_count()).await;
        let elapsed = last.unwrap_or_else(Instant::now) - due;
        let redis_cpu = redis_cpu(&mut conn).await?.saturating_sub(cpu_before.0);
        let process_cpu = process_cpu().saturating_sub(cpu_before.1);
        // Give wrong sends (to readers) a moment to show up.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let scripts_after = script_stats(&mut conn).await?;
        let unsettled = rig.waiting_after(&mut conn, i64::MIN).await?;
        daemon.stop(Duration::from_secs(5)).await;

        let received = sms.received();
        let mut seen = HashSet::new();
        let mut lateness = Vec::new();
        let mut sweep = Sweep {
            n,
            sms_expected: expected,
            elapsed,
            unsettled,
            redis_cpu,
            process_cpu,
            script_calls: scripts_after.0.saturating_sub(scripts_before.0),
            script_time: scripts_after.1.saturating_sub(scripts_before.1),
            ..Sweep::default()
        };
        for r in &received {
            let key = r.idempotency_key.clone().unwrap_or_default();
            let id = key
                .rsplit_once(':')
                .map(|(id, _)| id)
                .unwrap_or(&key)
                .to_owned();
            if !seen.insert(key) {
                sweep.sms_repeated += 1;
                continue;
            }
            if read.contains(&id) {
                sweep.sms_to_read += 1;
            } else {
                sweep.sms_distinct += 1;
                lateness.push(r.at.saturating_duration_since(due));
            }
        }
        sweep.sms_missing = expected.saturating_sub(sweep.sms_distinct);
        lateness.sort();
        let pick = |q: f64| {
            if lateness.is_empty() {
                Duration::ZERO
            } else {
                lateness[((lateness.len() as f64 * q).ceil() as usize).clamp(1, lateness.len()) - 1]
            }
        };
        sweep.lateness_p50 = pick(0.50);
        sweep.lateness_p99 = pick(0.99);
        sweep.lateness_max = pick(1.0);
        Ok::<_, BenchError>(sweep)
    }
    .await;
    rig.clean(opts).await;
    result
}

fn clock_now(clock: &SystemClock) -> i64 {
    crate::runtime::clock::Clock::now_ms(clock)
}

/// A VK `messages.send` that only counts: the recording fake would keep
/// every request in this process and spoil its RSS.
async fn counting_vk() -> Result<(String, Arc<AtomicUsize>), BenchError> {
    use axum::routing::post;
    let count = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(AtomicI64::new(1_001));
    let (c, m) = (count.clone(), ids.clone());
    let app = axum::Router::new().route(
        "/method/messages.send",
        post(move || {
            let id = m.fetch_add(1, Ordering::Relaxed);
            c.fetch_add(1, Ordering::Relaxed);
            async move { axum::Json(serde_json::json!({ "response": id })) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/method", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, count))
}

async fn w3(opts: &BenchOptions) -> Result<Footprint, BenchError> {
    let (vk_url, sent) = counting_vk().await?;
    let sms = FakeWebhook::start().await?;
    let rig = Rig::new("w3", opts, &vk_url, sms.url())?;
    let result = async {
        let n = opts.w3_n;
        publish(&opts.amqp_url, &rig.intake, &rig.intake.queue, n, |i| {
            rig.body(i)
        })
        .await?;
        let redis_before = used_memory(&opts.redis_url).await?;
        let (rss_before_kib, _) = rss_kib();
        let clock = Arc::new(SystemClock::default());
        let daemon = rig.start(opts, clock.clone()).await?;
        let mut conn = redis_conn(&opts.redis_url).await?;
        let deadline = Instant::now() + opts.timeout;
        let mut rss_peak_kib = rss_before_kib;
        let mut waiting = 0;
        while Instant::now() < deadline {
            rss_peak_kib = rss_peak_kib.max(rss_kib().0);
            if sent.load(Ordering::Relaxed) >= n {
                waiting = rig
                    .waiting_after(&mut conn, clock_now(&clock) + WAIT_MS / 2)
                    .await? as usize;
                if waiting >= n {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (rss_now, hwm_kib) = rss_kib();
        rss_peak_kib = rss_peak_kib.max(rss_now);
        let redis_after = used_memory(&opts.redis_url).await?;
        daemon.stop(Duration::from_secs(5)).await;
        let breakdown = breakdown(&mut conn, rig.keys.prefix(), n).await?;
        Ok::<_, BenchError>(Footprint {
            n,
            waiting,
            rss_before_kib,
            rss_peak_kib,
            hwm_kib,
            redis_before,
            redis_after,
            breakdown,
        })
    }
    .await;
    rig.clean(opts).await;
    result
}

/// What each kind of key costs per pending cascade: `MEMORY USAGE` of a
/// sample of each kind that exists once per cascade, times how many there
/// are, and the shared keys (timers, the events stream) in full, over `n`.
async fn breakdown(
    conn: &mut redis::aio::ConnectionManager,
    prefix: &str,
    n: usize,
) -> Result<Vec<(String, f64)>, BenchError> {
    use std::collections::BTreeMap;
    let kind = |key: &str| -> String {
        let rest = key.strip_prefix(prefix).unwrap_or(key);
        if rest.starts_with(":timers:") {
            "timers (zsets)".into()
        } else if rest.starts_with(":later:") {
            "timers (far lists)".into()
        } else if rest == ":events" {
            "events stream".into()
        } else if rest.starts_with(":pmid:") {
            "provider message id".into()
        } else if rest.starts_with(":peers:") {
            "VK peer hashes".into()
        } else if rest.starts_with(":policy:") {
            "policy snapshot".into()
        } else {
            rest.rsplit(':').next().unwrap_or("?").to_owned()
        }
    };
    // (keys of this kind, sampled keys, sampled bytes)
    let mut kinds: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(10_000)
            .query_async(conn)
            .await?;
        for key in keys {
            let k = kinds.entry(kind(&key)).or_default();
            k.0 += 1;
            if k.1 < 500 {
                let bytes: Option<u64> = redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(&key)
                    .arg("SAMPLES")
                    .arg(0)
                    .query_async(conn)
                    .await?;
                k.1 += 1;
                k.2 += bytes.unwrap_or(0);
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut out: Vec<(String, f64)> = kinds
        .into_iter()
        .map(|(name, (count, sampled, bytes))| {
            let per_key = bytes as f64 / sampled.max(1) as f64;
            (name, per_key * count as f64 / n.max(1) as f64)
        })
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(out)
}

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The report as one table: floors first, then each workload's rate and its
/// ratio to the slowest floor.
pub fn render(report: &Report, opts: &BenchOptions) -> String {
    let mut out = String::new();
    let slowest = report
        .floors
        .iter()
        .min_by(|a, b| a.rate().total_cmp(&b.rate()));
    let base = slowest.map(Floor::rate).unwrap_or(0.0);
    let ratio = |r: f64| {
        if base > 0.0 {
            format!("{:.2}", r / base)
        } else {
            "-".into()
        }
    };
    let _ = writeln!(
        out,
        "settings: prefetch {}, scheduler concurrency {}, scheduler batch {}, timer shards {TIMER_SHARDS}, \
         floors at concurrency {} ({} round trips), Redis connections: one for the claims, one for the rest, timeout {} s",
        opts.prefetch,
        opts.concurrency,
        opts.batch,
        opts.concurrency,
        opts.floor_n,
        opts.timeout.as_secs()
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| figure | N | value | per second | × slowest floor | notes |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---|");
    for f in &report.floors {
        let mark = if slowest.is_some_and(|s| s.name == f.name) {
            "slowest floor"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "| floor: {} | {} | {:.2} s | {:.0} | {} | {mark} |",
            f.name,
            f.count,
            f.elapsed.as_secs_f64(),
            f.rate(),
            ratio(f.rate())
        );
    }
    if let Some(w) = &report.w1 {
        let r = rate(w.sent.min(w.n), w.elapsed);
        let note = if w.sent >= w.n {
            String::new()
        } else {
            format!("TIMEOUT: {} of {} sent; ", w.sent, w.n)
        };
        let _ = writeln!(
            out,
            "| W1 intake: first-step sends | {} | {:.2} s | {r:.0} | {} | {note}first send {} after start; published at {:.0}/s with confirms |",
            w.n,
            w.elapsed.as_secs_f64(),
            ratio(r),
            w.first_send.map(ms).unwrap_or("-".into()),
            w.publish_rate
        );
    }
    if let Some(w) = &report.w2 {
        let r = rate(w.sms_distinct, w.elapsed);
        let _ = writeln!(
            out,
            "| W2 sweep: escalations (SMS) | {} | {:.2} s | {r:.0} | {} | {} of {} SMS; {:.0} due cascades/s (read ones included) |",
            w.n,
            w.elapsed.as_secs_f64(),
            ratio(r),
            w.sms_distinct,
            w.sms_expected,
            rate(w.n, w.elapsed)
        );
        let _ = writeln!(
            out,
            "| W2 SMS to read customers (must be 0) | {} | {} | | | repeated SMS: {} |",
            w.n, w.sms_to_read, w.sms_repeated
        );
        let _ = writeln!(
            out,
            "| W2 SMS missing for unread (must be 0) | {} | {} | | | cascades left in timers after 2 s: {} |",
            w.n, w.sms_missing, w.unsettled
        );
        let _ = writeln!(
            out,
            "| W2 lateness p50 / p99 / max | {} | {} / {} / {} | | | SMS arrival − the clock jump that made all due |",
            w.n,
            ms(w.lateness_p50),
            ms(w.lateness_p99),
            ms(w.lateness_max)
        );
        let per_sms = |d: Duration| d.as_secs_f64() * 1e6 / w.sms_distinct.max(1) as f64;
        let _ = writeln!(
            out,
            "| W2 CPU per SMS: Redis / daemon + fakes | {} | {:.0} µs / {:.0} µs | | | {:.2} s / {:.2} s of CPU from the jump to the last SMS ({:.2} s) |",
            w.n,
            per_sms(w.redis_cpu),
            per_sms(w.process_cpu),
            w.redis_cpu.as_secs_f64(),
            w.process_cpu.as_secs_f64(),
            w.elapsed.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "| W2 Redis scripts per SMS: calls / time in them | {} | {:.2} / {:.0} µs | | | {} calls, {:.2} s, from the jump to 2 s after the last SMS (INFO commandstats) |",
            w.n,
            w.script_calls as f64 / w.sms_distinct.max(1) as f64,
            per_sms(w.script_time),
            w.script_calls,
            w.script_time.as_secs_f64()
        );
    }
    if let Some(w) = &report.w3 {
        let note = if w.waiting >= w.n {
            String::new()
        } else {
            format!("TIMEOUT: {} of {} waiting; ", w.waiting, w.n)
        };
        let per = if w.n > 0 {
            w.redis_after.saturating_sub(w.redis_before) as f64 / w.n as f64
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "| W3 process RSS, peak while filling | {} | {:.1} MiB | | | {note}{:.1} MiB before the daemon started (+{:.1} MiB); VmHWM {:.1} MiB (whole bench process) |",
            w.n,
            w.rss_peak_kib as f64 / 1024.0,
            w.rss_before_kib as f64 / 1024.0,
            w.rss_peak_kib.saturating_sub(w.rss_before_kib) as f64 / 1024.0,
            w.hwm_kib as f64 / 1024.0
        );
        let _ = writeln!(
            out,
            "| W3 Redis used_memory per pending cascade | {} | {per:.0} B | | | {:.1} MiB → {:.1} MiB |",
            w.n,
            w.redis_before as f64 / 1_048_576.0,
            w.redis_after as f64 / 1_048_576.0
        );
        let parts: Vec<String> = w
            .breakdown
            .iter()
            .map(|(kind, bytes)| format!("{kind} {bytes:.0} B"))
            .collect();
        let _ = writeln!(
            out,
            "| W3 … by key (MEMORY USAGE) | {} | {:.0} B | | | {} |",
            w.n,
            w.breakdown.iter().map(|(_, b)| b).sum::<f64>(),
            parts.join("; ")
        );
    }
    out
}
