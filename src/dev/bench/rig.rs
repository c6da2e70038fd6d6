//! A private configuration per workload: its queues, key prefix, config files and daemon.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};

use super::{BenchError, BenchOptions, PUBLISH_BATCH, TIMER_SHARDS};
use crate::config::Catalog;
use crate::runtime::clock::SystemClock;
use crate::runtime::daemon::{Daemon, DaemonOptions};
use crate::runtime::intake::{self, IntakeConfig};
use crate::runtime::keys::Keys;
use crate::runtime::scheduler::SchedulerConfig;
use crate::runtime::store::{RedisConn, Target};

/// One workload's queues, key prefix and configuration directory, each
/// named for this run and workload.
pub(super) struct Rig {
    pub(super) name: String,
    dir: PathBuf,
    catalog: Catalog,
    pub(super) intake: IntakeConfig,
    pub(super) keys: Keys,
}

impl Rig {
    pub(super) fn new(
        tag: &str,
        opts: &BenchOptions,
        vk_base_url: &str,
        sms_url: &str,
    ) -> Result<Rig, BenchError> {
        Rig::with_wait(tag, opts, vk_base_url, sms_url, "1h")
    }

    /// A rig whose policy waits `wait` between VK and SMS.
    pub(super) fn with_wait(
        tag: &str,
        opts: &BenchOptions,
        vk_base_url: &str,
        sms_url: &str,
        wait: &str,
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
                "[amqp]\nurl = \"{}\"\nqueue = \"{name}.notifications\"\ndead_letter_queue = \"{name}.dead\"\nprefetch = {}\n\
                 queue_type = \"{}\"\n\n\
                 [redis]\n{}\nprefix = \"{prefix}\"\ntimer_shards = {TIMER_SHARDS}\nretention = \"1d\"\n\n\
                 [http]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nreceipt_token = \"bench\"\n",
                opts.amqp_url,
                opts.prefetch,
                opts.queue_type,
                redis_setting(&opts.redis)
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
            format!(
                "description = \"VK, then SMS if unread after {wait}\"\nstop_on = [\"read\"]\n\n\
                 [[steps]]\nchannel = \"vk\"\nwait = \"{wait}\"\n\n[[steps]]\nchannel = \"sms\"\n"
            ),
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

    pub(super) fn id(&self, i: usize) -> String {
        format!("order-{i}:delayed")
    }

    pub(super) fn body(&self, i: usize) -> Vec<u8> {
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

    pub(super) async fn start(
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
            sample_every: crate::runtime::gauges::SAMPLE_EVERY,
        };
        Ok(Daemon::start(self.catalog.clone(), options).await?)
    }

    /// Cascades whose timer is later than `after_ms` (waiting on the 1 h
    /// step): in the shards' sorted sets, and in their far slots' lists,
    /// which hold only wake-ups beyond the horizon (`after_ms` is earlier).
    pub(super) async fn waiting_after(
        &self,
        conn: &mut RedisConn,
        after_ms: i64,
    ) -> Result<u64, BenchError> {
        // A shard's keys share its slot: one pipeline per shard.
        let (mut near, mut far) = (0, 0);
        for shard in 0..TIMER_SHARDS {
            let (count, slots): (u64, Vec<String>) = redis::pipe()
                .zcount(self.keys.timer(shard), format!("({after_ms}"), "+inf")
                .zrange(self.keys.later(shard), 0, -1)
                .query_async(conn)
                .await?;
            near += count;
            let mut pipe = redis::pipe();
            for slot in &slots {
                pipe.llen(format!("{}:{slot}", self.keys.later(shard)));
            }
            if !pipe.is_empty() {
                let lens: Vec<u64> = pipe.query_async(conn).await?;
                far += lens.iter().sum::<u64>();
            }
        }
        Ok(near + far)
    }

    pub(super) async fn clean(&self, opts: &BenchOptions) {
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
        let _ = delete_prefix(&opts.redis, self.keys.prefix()).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(super) async fn redis_conn(target: &Target) -> Result<RedisConn, BenchError> {
    Ok(RedisConn::open(target).await?)
}

/// Deletes the bench's keys (`UNLINK` through the cluster client, which
/// splits it by slot).
async fn delete_prefix(target: &Target, prefix: &str) -> Result<(), BenchError> {
    let keys = keys_under(target, prefix).await?;
    let mut c = redis_conn(target).await?;
    for chunk in keys.chunks(10_000) {
        let _: () = redis::cmd("UNLINK").arg(chunk).query_async(&mut c).await?;
    }
    Ok(())
}

/// Every key under `prefix`, server by server (`SCAN` walks one node).
pub(super) async fn keys_under(target: &Target, prefix: &str) -> Result<Vec<String>, BenchError> {
    let mut all = Vec::new();
    for node in nodes(target).await? {
        let mut c = redis_conn(&node).await?;
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
            all.extend(keys);
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(all)
}

/// The servers to read or clean one by one: the one server, or every
/// primary of a cluster.
pub(super) async fn nodes(target: &Target) -> Result<Vec<Target>, BenchError> {
    let nodes = match target {
        Target::Single(_) => return Ok(vec![target.clone()]),
        Target::Cluster(nodes) => nodes,
    };
    let first = nodes.first().map(String::as_str).unwrap_or_default();
    let mut c = redis::Client::open(first)?
        .get_multiplexed_async_connection()
        .await?;
    let listing: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut c)
        .await?;
    Ok(primaries(&listing)
        .into_iter()
        .map(|addr| Target::Single(format!("redis://{addr}")))
        .collect())
}

/// `host:port` of each live primary in a `CLUSTER NODES` listing (a line
/// per node: id, `host:port@bus-port`, flags, …).
pub(super) fn primaries(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_id, addr, flags) = (fields.next()?, fields.next()?, fields.next()?);
            let flags: Vec<&str> = flags.split(',').collect();
            (flags.contains(&"master") && !flags.contains(&"fail"))
                .then(|| addr.split('@').next().unwrap_or(addr).to_owned())
        })
        .collect()
}

/// The `[redis]` line that points a daemon at `target`.
pub(super) fn redis_setting(target: &Target) -> String {
    match target {
        Target::Single(url) => format!("url = \"{url}\""),
        Target::Cluster(nodes) => {
            let nodes: Vec<String> = nodes.iter().map(|n| format!("\"{n}\"")).collect();
            format!("cluster = [{}]", nodes.join(", "))
        }
    }
}

/// Publishes `bodies` to `queue` with publisher confirms, a batch at a time.
pub(super) async fn publish(
    url: &str,
    config: &IntakeConfig,
    queue: &str,
    n: usize,
    body: impl Fn(usize) -> Vec<u8>,
) -> Result<Duration, BenchError> {
    let started = Instant::now();
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = intake::declare(&conn, config).await?;
    if queue != config.queue {
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
    }
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

/// What the daemon's clock reads now, jumps included.
pub(super) fn clock_now(clock: &SystemClock) -> i64 {
    crate::runtime::clock::Clock::now_ms(clock)
}
