//! Shared by the integration tests: a private configuration per test (own
//! queues, own Redis key prefix), a fake HTTP receiver, waiting helpers, the
//! daemon in-process (`Running`) or as a child process (`ChildDaemon`),
//! RabbitMQ helpers, the captured log and the Prometheus page.
#![allow(dead_code)]

pub mod limit_cases;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use cascade::runtime::record::Record;
use cascade::runtime::store::{RedisConn, Target};
use serde_json::Value;

/// The local RabbitMQ every test uses (its own queues on it).
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The local Redis every test uses (its own key prefix on it), unless
/// `CASCADE_TEST_REDIS_CLUSTER` names the nodes of a Redis Cluster to run
/// on instead (`scripts/test` runs some suites a second time that way).
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// `redis.timer_shards` of every test configuration.
pub const TEST_TIMER_SHARDS: u16 = 4;

/// Where the tests' Redis is: the local server, or the cluster
/// `CASCADE_TEST_REDIS_CLUSTER` names (comma-separated nodes).
pub fn redis_target() -> Target {
    match std::env::var("CASCADE_TEST_REDIS_CLUSTER") {
        Ok(nodes) if !nodes.trim().is_empty() => Target::Cluster(
            nodes
                .split(',')
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect(),
        ),
        _ => Target::Single(REDIS_URL.to_owned()),
    }
}

/// The environment variable that points a daemon at the tests' Redis.
pub struct RedisEnv(&'static str, String);

impl RedisEnv {
    pub fn of_tests() -> RedisEnv {
        match redis_target() {
            Target::Single(url) => RedisEnv("CASCADE_REDIS_URL", url),
            Target::Cluster(nodes) => RedisEnv("CASCADE_REDIS_CLUSTER", nodes.join(",")),
        }
    }

    pub fn as_pair(&self) -> (&str, &str) {
        (self.0, &self.1)
    }
}

/// The `[redis]` lines of a test configuration that point the daemon at
/// the tests' Redis (none for the local server, the default).
pub fn redis_target_toml() -> String {
    match redis_target() {
        Target::Single(_) => String::new(),
        Target::Cluster(nodes) => {
            let nodes: Vec<String> = nodes.iter().map(|n| format!("\"{n}\"")).collect();
            format!("cluster = [{}]\n", nodes.join(", "))
        }
    }
}

/// The receipts API token of every test configuration (long enough for
/// `cascade run`, which refuses short ones).
pub const TOKEN: &str = "test-receipt-token-0123456789";

/// A unique word for this test run, for queue names and key prefixes.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

/// What the fake receiver got: (path, body) in arrival order.
#[derive(Clone, Default)]
pub struct Received(pub Arc<Mutex<Vec<(String, Value)>>>);

impl Received {
    pub fn on(&self, path: &str) -> Vec<Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, v)| v.clone())
            .collect()
    }
    pub fn count(&self, path: &str) -> usize {
        self.on(path).len()
    }
}

/// A loopback HTTP receiver that answers 200 and records every POST.
/// `fail_paths` answer 503.
pub async fn fake_receiver(fail_paths: Vec<String>) -> (String, Received) {
    let received = Received::default();
    #[derive(Clone)]
    struct S {
        received: Received,
        fail: Arc<Vec<String>>,
    }
    async fn take(
        State(s): State<S>,
        UrlPath(path): UrlPath<String>,
        Json(body): Json<Value>,
    ) -> (StatusCode, Json<Value>) {
        if s.fail.contains(&path) {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"error": "down"})),
            );
        }
        let n = {
            let mut r = s.received.0.lock().unwrap();
            r.push((path, body));
            r.len()
        };
        (
            StatusCode::OK,
            Json(serde_json::json!({ "id": format!("task-{n}") })),
        )
    }
    let app = Router::new().route("/{path}", post(take)).with_state(S {
        received: received.clone(),
        fail: Arc::new(fail_paths),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), received)
}

/// A configuration folder of its own: queues and key prefix named after the
/// test, channels `vk` and `sms` as webhooks to the fake receiver.
pub struct TestConfig {
    pub dir: PathBuf,
    pub name: String,
}

impl TestConfig {
    pub fn new(name: &str, receiver: &str, cascade_extra: &str, policy: &str) -> TestConfig {
        let name = unique(name);
        let redis = redis_target_toml();
        let dir = std::env::temp_dir().join(format!("cascade-{name}"));
        std::fs::create_dir_all(dir.join("channels")).unwrap();
        std::fs::create_dir_all(dir.join("policies")).unwrap();
        std::fs::write(
            dir.join("cascade.toml"),
            format!(
                "[amqp]\nqueue = \"{name}.notifications\"\ndead_letter_queue = \"{name}.dead\"\nprefetch = 64\n\n\
                 [redis]\n{redis}prefix = \"{name}\"\ntimer_shards = {TEST_TIMER_SHARDS}\nretention = \"1h\"\n\n\
                 [http]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nreceipt_token = \"{TOKEN}\"\nintake_callers = [\"shared\"]\n\n{cascade_extra}\n"
            ),
        )
        .unwrap();
        for (ch, contact) in [("vk", "vk"), ("sms", "sms")] {
            std::fs::write(
                dir.join("channels").join(format!("{ch}.toml")),
                format!("kind = \"webhook\"\ncontact = \"{contact}\"\nurl = \"{receiver}/{ch}\"\ntimeout = \"2s\"\n[retry]\nattempts = 3\nbackoff = \"100ms\"\nmax_backoff = \"200ms\"\n"),
            )
            .unwrap();
        }
        std::fs::write(dir.join("policies/delivery_delay.toml"), policy).unwrap();
        TestConfig { dir, name }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("cascade.toml")
    }

    pub fn catalog(&self) -> cascade::config::Catalog {
        cascade::config::Catalog::load_with_env(&self.path(), &|_| None).unwrap()
    }
}

impl Drop for TestConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub const DELIVERY_DELAY: &str = "stop_on = [\"read\"]\nexpire_after = \"12h\"\n\n[[steps]]\nchannel = \"vk\"\nwait = \"30m\"\n\n[[steps]]\nchannel = \"sms\"\n";

/// A notification for `delivery_delay` with both contacts.
pub fn notification(id: &str, customer: &str) -> Vec<u8> {
    serde_json::json!({
        "id": id,
        "policy": "delivery_delay",
        "customer": { "id": customer, "contacts": { "vk": "123456", "sms": "+79161234567" } },
        "content": { "text": "Заказ задерживается" }
    })
    .to_string()
    .into_bytes()
}

/// A page's text (GET, any status).
pub async fn text_of(http: &reqwest::Client, url: impl reqwest::IntoUrl) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// Polls `check` until it holds or `timeout` passes.
pub async fn wait_until(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

/// Panics within two seconds, saying what to do, when Redis or RabbitMQ is
/// not listening: a daemon (or a client) would otherwise wait for them and
/// the test would hang instead of failing.
pub async fn require_services() {
    for (port, name) in [(6379, "Redis"), (5672, "RabbitMQ")] {
        let reached = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(("127.0.0.1", port)),
        )
        .await;
        if !matches!(reached, Ok(Ok(_))) {
            panic!(
                "{name} is not reachable on 127.0.0.1:{port} within 2 s; these tests need it \
                 running (scripts/test starts local servers when they are installed)"
            );
        }
    }
}

/// A connection to the tests' Redis (a cluster's when they run on one).
pub async fn redis() -> RedisConn {
    require_services().await;
    RedisConn::open(&redis_target()).await.unwrap()
}

/// Deletes every key under a test's prefix.
pub async fn clean_redis(prefix: &str) {
    let mut c = redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut c)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(500) {
        let _: () = redis::cmd("DEL")
            .arg(chunk)
            .query_async(&mut c)
            .await
            .unwrap_or(());
    }
}

/// Deletes a test's queues.
pub async fn clean_queues(name: &str) {
    if let Ok(conn) = lapin::Connection::connect(AMQP_URL, Default::default()).await
        && let Ok(ch) = conn.create_channel().await
    {
        for q in [format!("{name}.notifications"), format!("{name}.dead")] {
            let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
        }
        let _ = conn.close(200, "bye".into()).await;
    }
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

impl TestConfig {
    /// Like `new`, with `amqp_extra` written inside the `[amqp]` table (TOML
    /// allows a table once, and `cascade_extra` lands after `[http]`), e.g.
    /// `"max_body_bytes = 4096"`.
    pub fn with_amqp(
        name: &str,
        receiver: &str,
        amqp_extra: &str,
        cascade_extra: &str,
        policy: &str,
    ) -> TestConfig {
        let cfg = TestConfig::new(name, receiver, cascade_extra, policy);
        let path = cfg.path();
        let toml = std::fs::read_to_string(&path).unwrap();
        let toml = toml.replacen("[amqp]\n", &format!("[amqp]\n{amqp_extra}\n"), 1);
        std::fs::write(&path, toml).unwrap();
        cfg
    }

    /// Writes one more file into the configuration folder, e.g.
    /// `policies/other.toml` or `channels/sms_gateway.toml`.
    pub fn write(&self, relative: &str, content: &str) {
        std::fs::write(self.dir.join(relative), content).unwrap();
    }
}

// ---------------------------------------------------------------------------
// Resilience helpers: a receiver that records idempotency keys, bulk
// publishing, the daemon as a child process, a private Redis server, and
// reading cascades back from Redis.
// ---------------------------------------------------------------------------

/// One POST seen by the keyed receiver.
#[derive(Clone, Debug)]
pub struct Post {
    pub path: String,
    pub at: Instant,
}

/// What a keyed receiver got: for each `Idempotency-Key`
/// (`<notification id>:<step index>`), every POST that carried it.
#[derive(Clone, Default)]
pub struct Deliveries(pub Arc<Mutex<std::collections::HashMap<String, Vec<Post>>>>);

impl Deliveries {
    /// How many distinct keys arrived.
    pub fn distinct(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// How many distinct keys arrived on `path`.
    pub fn distinct_on(&self, path: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .values()
            .filter(|posts| posts.iter().any(|p| p.path == path))
            .count()
    }

    /// POSTs that repeated a key already received (same-key resends).
    pub fn resends(&self) -> usize {
        self.0
            .lock()
            .unwrap()
            .values()
            .map(|posts| posts.len() - 1)
            .sum()
    }

    /// How many POSTs carried `key`.
    pub fn times(&self, key: &str) -> usize {
        self.0.lock().unwrap().get(key).map_or(0, Vec::len)
    }

    pub fn snapshot(&self) -> std::collections::HashMap<String, Vec<Post>> {
        self.0.lock().unwrap().clone()
    }
}

/// A loopback HTTP receiver that answers 200 to every POST and records its
/// `Idempotency-Key` header (`<missing>` when there is none), path and time.
pub async fn keyed_receiver() -> (String, Deliveries) {
    async fn take(
        State(d): State<Deliveries>,
        UrlPath(path): UrlPath<String>,
        headers: axum::http::HeaderMap,
        _body: axum::body::Bytes,
    ) -> (StatusCode, Json<Value>) {
        let key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("<missing>")
            .to_owned();
        let n = {
            let mut d = d.0.lock().unwrap();
            let posts = d.entry(key.clone()).or_default();
            posts.push(Post {
                path,
                at: Instant::now(),
            });
            posts.len()
        };
        (
            StatusCode::OK,
            Json(serde_json::json!({ "id": format!("{key}#{n}") })),
        )
    }
    let deliveries = Deliveries::default();
    let app = Router::new()
        .route("/{path}", post(take))
        .with_state(deliveries.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), deliveries)
}

/// The intake settings of a catalog, for publishing to its queue (the
/// library's `IntakeConfig::from`, under the name `tests/resilience.rs` uses).
pub fn intake_config_of(
    catalog: &cascade::config::Catalog,
) -> cascade::runtime::intake::IntakeConfig {
    cascade::runtime::intake::IntakeConfig::from(&catalog.settings.amqp)
}

/// Publishes many messages on one connection and one channel with publisher
/// confirms (pipelined: all are sent, then every confirm is awaited).
/// Returns an error if the broker did not ack every one.
pub async fn publish_many(
    config: &cascade::runtime::intake::IntakeConfig,
    bodies: impl IntoIterator<Item = Vec<u8>>,
) -> anyhow::Result<usize> {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    let conn = lapin::Connection::connect(&config.url, Default::default()).await?;
    let channel = cascade::runtime::intake::declare(&conn, config).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut confirms = Vec::new();
    for body in bodies {
        let confirm = channel
            .basic_publish(
                "".into(),
                config.queue.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                lapin::BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into()),
            )
            .await?;
        confirms.push(confirm);
    }
    let total = confirms.len();
    let mut acked = 0;
    for confirm in confirms {
        if confirm.await?.is_ack() {
            acked += 1;
        }
    }
    let _ = conn.close(200, "published".into()).await;
    anyhow::ensure!(acked == total, "the broker acked only {acked} messages");
    Ok(acked)
}

impl TestConfig {
    /// Points `[redis] url` at another server (e.g. a private one), also
    /// when the tests run on a cluster.
    pub fn set_redis_url(&self, url: &str) {
        let path = self.path();
        let toml = std::fs::read_to_string(&path).unwrap();
        let toml: String = toml
            .lines()
            .filter(|l| !l.starts_with("cluster = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let toml = toml.replacen("[redis]\n", &format!("[redis]\nurl = \"{url}\"\n"), 1);
        std::fs::write(&path, toml).unwrap();
    }
}

/// The built `cascade` binary with a clean environment: only `PATH` and
/// `HOME` pass through, so no `CASCADE_…` or provider variable of the
/// caller's can change what a test configured. Stdin is closed.
pub fn cascade_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cascade"));
    cmd.env_clear().stdin(std::process::Stdio::null());
    for var in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(var) {
            cmd.env(var, value);
        }
    }
    cmd
}

/// `cascade --config <path> run` as a child process (`cascade_command`),
/// its stdout and stderr appended to `log`. Killed with SIGKILL and reaped
/// when dropped, also when the test fails half-way.
pub struct ChildDaemon {
    child: Option<std::process::Child>,
    log: PathBuf,
}

impl ChildDaemon {
    /// Logging at `warn`, with nothing but the configuration file.
    pub fn spawn(config: &Path, log: &Path) -> ChildDaemon {
        ChildDaemon::spawn_with(config, log, "warn", &[])
    }

    /// Logging at `level` (`CASCADE_LOG`), with the variables `env` set.
    pub fn spawn_with(config: &Path, log: &Path, level: &str, env: &[(&str, &str)]) -> ChildDaemon {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let err = out.try_clone().unwrap();
        let child = cascade_command()
            .arg("--config")
            .arg(config)
            .arg("run")
            .env("CASCADE_LOG", level)
            .envs(env.iter().copied())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("the cascade binary starts");
        ChildDaemon {
            child: Some(child),
            log: log.to_owned(),
        }
    }

    fn child(&mut self) -> &mut std::process::Child {
        self.child.as_mut().expect("the daemon was not killed")
    }

    /// The process id.
    pub fn id(&mut self) -> u32 {
        self.child().id()
    }

    /// What it wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -<name> <pid>`, e.g. `signal("TERM")`.
    pub fn signal(&mut self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// How it exited, or `None` while it runs.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child().try_wait().unwrap()
    }

    /// Panics with its log if it has exited.
    #[track_caller]
    pub fn assert_alive(&mut self, what: &str) {
        if let Some(status) = self.exited() {
            panic!("the daemon exited ({status}) {what}:\n{}", self.log());
        }
    }

    /// Polls `check` until it holds; panics with the daemon's log if the
    /// daemon exits first or `timeout` passes.
    pub async fn wait_alive_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: impl AsyncFnMut() -> bool,
    ) {
        let start = Instant::now();
        loop {
            self.assert_alive(&format!("while waiting for: {what}"));
            if check().await {
                return;
            }
            if start.elapsed() >= timeout {
                panic!(
                    "timed out after {timeout:?} waiting for: {what}\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The addresses it listens on, public and admin, from its start-up line
    /// (so it can be given `127.0.0.1:0` and no port has to be found free).
    /// The level must let `cascade::runtime::daemon` info lines through.
    pub async fn wait_listening(&mut self) -> (String, String) {
        let mut found = None;
        let log = self.log.clone();
        self.wait_alive_until("its \"cascade is running\" line", AT_ONCE * 3, async || {
            found = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|l| l["message"] == "cascade is running")
                .map(|l| {
                    (
                        l["http"].as_str().unwrap().to_owned(),
                        l["admin"].as_str().unwrap().to_owned(),
                    )
                });
            found.is_some()
        })
        .await;
        found.unwrap()
    }

    /// Waits for it to exit; panics with its log if it still runs after
    /// `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            if start.elapsed() >= timeout {
                panic!("still running after {timeout:?}:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`, and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for ChildDaemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private `redis-server` on its own port and data folder, with the
/// append-only file fsynced on every write, so a restart keeps every
/// acknowledged write. Killed and its folder removed when dropped.
pub struct PrivateRedis {
    pub dir: PathBuf,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub async fn start(name: &str) -> PrivateRedis {
        let dir = std::env::temp_dir().join(format!("cascade-redis-{}", unique(name)));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = PrivateRedis { dir, child: None };
        redis.restart().await;
        redis
    }

    /// A Unix socket in its own folder: no TCP port to find free, and a
    /// restart gets the same address back.
    fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// Starts the server (again) on the same socket and folder, and waits
    /// until it answers PING (after loading its append-only file).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the private Redis is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))
            .unwrap();
        let mut child = std::process::Command::new("redis-server")
            .args(["--port", "0", "--unixsocketperm", "700"])
            .arg("--unixsocket")
            .arg(self.socket())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let url = self.url();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the private Redis exited ({status}); see {}",
                    self.dir.join("redis.log").display()
                );
            }
            let pong = async {
                let client = redis::Client::open(url.as_str()).ok()?;
                let mut c = client.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("PING").query_async::<String>(&mut c).await.ok()
            };
            if pong.await.is_some() {
                self.child = Some(child);
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the private Redis did not answer within 10 s");
    }

    /// SIGKILL: no chance to save anything beyond what is already in the AOF.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub async fn redis_at(url: &str) -> RedisConn {
    RedisConn::open(&Target::Single(url.to_owned()))
        .await
        .unwrap()
}

/// One cascade as stored: its state (None if unknown) and its timeline.
pub struct Stored {
    pub cascade: Option<cascade::core::Cascade>,
    pub timeline: Vec<cascade::core::Entry>,
}

impl Stored {
    pub fn outcome(&self) -> Option<&'static str> {
        self.cascade
            .as_ref()
            .and_then(|c| c.outcome())
            .map(|o| o.word())
    }

    /// Timeline entries of one kind for one step (0-based).
    pub fn entries(&self, event: &str, step: u8) -> Vec<&cascade::core::Entry> {
        self.timeline
            .iter()
            .filter(|e| e.event.as_str() == event && e.step == Some(step))
            .collect()
    }
}

/// Reads many cascades under `prefix`, 500 to a round trip (`MGET`, which
/// the cluster client splits by slot).
pub async fn read_cascades(conn: &mut RedisConn, prefix: &str, ids: &[String]) -> Vec<Stored> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let keys: Vec<String> = chunk
            .iter()
            .map(|id| format!("{prefix}:{{{id}}}:state"))
            .collect();
        let records: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(conn)
            .await
            .unwrap();
        for record in records {
            let stored = record.as_deref().map(|r| Record::parse(r).unwrap());
            out.push(Stored {
                cascade: stored.as_ref().map(|r| r.cascade().unwrap()),
                timeline: stored.map(|r| r.entries().unwrap()).unwrap_or_default(),
            });
        }
    }
    out
}

/// Deletes a test's Redis keys and queues when dropped, also when the test
/// fails (on a thread of its own, since `Drop` cannot await).
pub struct CleanUp(pub String);

impl Drop for CleanUp {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    clean_redis(&name).await;
                    clean_queues(&name).await;
                });
            }
        })
        .join();
    }
}

// ---------------------------------------------------------------------------
// The daemon in-process: what every end-to-end harness wraps.
// ---------------------------------------------------------------------------

/// When `Running`'s `Drop` waits 300 ms for the cancelled daemon's last
/// writes before deleting the test's keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    Never,
    /// Only when the test is panicking (a graceful `stop` came first otherwise).
    OnPanic,
    Always,
}

/// One test's daemon, started in-process with a `SystemClock` on its own
/// configuration, and the intake settings for publishing to it. Dropping it
/// (also when the test panics) cancels the daemon and deletes the test's
/// queues and Redis keys, on a thread of its own since `Drop` cannot await.
pub struct Running {
    pub cfg: TestConfig,
    pub clock: Arc<cascade::runtime::clock::SystemClock>,
    pub intake: cascade::runtime::intake::IntakeConfig,
    pub http: reqwest::Client,
    daemon: Option<cascade::runtime::daemon::Daemon>,
    settle: Settle,
    strict: bool,
}

/// How long anything that should happen "at once" may take on a busy machine.
pub const AT_ONCE: Duration = Duration::from_secs(5);

impl Running {
    pub async fn start(cfg: TestConfig) -> Running {
        Running::start_opts(cfg, |_| {}).await
    }

    /// Like `start`, with the daemon's options changed by `tweak` first,
    /// e.g. `|o| o.config_path = Some(path)` to watch the configuration for
    /// hot reload as `cascade run` does. The clock stays `Running`'s own.
    pub async fn start_opts(
        cfg: TestConfig,
        tweak: impl FnOnce(&mut cascade::runtime::daemon::DaemonOptions),
    ) -> Running {
        let catalog = cfg.catalog();
        Running::start_catalog(cfg, catalog, tweak).await
    }

    /// Like `start_opts`, on a catalog loaded by the test (e.g. with the
    /// environment a compose file sets) from `cfg`'s folder.
    pub async fn start_catalog(
        cfg: TestConfig,
        catalog: cascade::config::Catalog,
        tweak: impl FnOnce(&mut cascade::runtime::daemon::DaemonOptions),
    ) -> Running {
        require_services().await;
        let clock = Arc::new(cascade::runtime::clock::SystemClock::default());
        let intake = cascade::runtime::intake::IntakeConfig::from(&catalog.settings.amqp);
        let mut options = cascade::runtime::daemon::DaemonOptions::default();
        tweak(&mut options);
        options.clock = clock.clone();
        let daemon = cascade::runtime::daemon::Daemon::start(catalog, options)
            .await
            .expect("daemon starts");
        Running {
            cfg,
            clock,
            intake,
            http: reqwest::Client::new(),
            daemon: Some(daemon),
            settle: Settle::OnPanic,
            strict: false,
        }
    }

    /// Sets when `Drop` waits for the cancelled daemon before cleaning up.
    pub fn settle(mut self, settle: Settle) -> Running {
        self.settle = settle;
        self
    }

    /// `Drop` panics if cleaning up failed (unless the test already panics).
    pub fn strict(mut self) -> Running {
        self.strict = true;
        self
    }

    pub fn daemon(&self) -> &cascade::runtime::daemon::Daemon {
        self.daemon.as_ref().expect("the daemon is running")
    }

    /// A notification id of this test only.
    pub fn id(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.cfg.name)
    }

    /// `http://<the daemon's public address><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.daemon().http_addr)
    }

    /// `GET <path>` on the public listener with the API's bearer token:
    /// the JSON it answers (`/v1/notifications/<id>`, `/v1/report?…`).
    pub async fn get_v1(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `http://<the daemon's admin address><path>` (`/metrics`, `/healthz`, `/readyz`).
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.daemon().admin_addr)
    }

    /// Publishes a notification to the test's queue; RabbitMQ must confirm it.
    pub async fn publish_bytes(&self, body: &[u8]) {
        publish_to(&self.intake, body).await;
    }

    pub async fn publish(&self, body: &Value) {
        self.publish_bytes(body.to_string().as_bytes()).await;
    }

    /// The timeline of `id` (empty while unknown).
    pub async fn timeline(&self, id: &str) -> Vec<cascade::core::Entry> {
        match self.daemon().store.status(id).await.unwrap() {
            Some((_, timeline)) => timeline,
            None => Vec::new(),
        }
    }

    /// The event words of `id`'s timeline, in order.
    pub async fn events(&self, id: &str) -> Vec<String> {
        self.timeline(id)
            .await
            .iter()
            .map(|e| e.event.as_str().to_owned())
            .collect()
    }

    /// The timeline entries of `id` of one kind.
    pub async fn entries(&self, id: &str, event: &str) -> Vec<cascade::core::Entry> {
        self.timeline(id)
            .await
            .into_iter()
            .filter(|e| e.event.as_str() == event)
            .collect()
    }

    /// The outcome word (`completed`, `cancelled`, …), or `None` while running
    /// or unknown.
    pub async fn outcome(&self, id: &str) -> Option<&'static str> {
        let status = self.daemon().store.status(id).await.unwrap();
        status.and_then(|(c, _)| c.outcome().map(|o| o.word()))
    }

    pub async fn wait_outcome(&self, id: &str, word: &str) {
        self.wait_outcome_for(id, word, AT_ONCE).await;
    }

    pub async fn wait_outcome_for(&self, id: &str, word: &str, timeout: Duration) {
        wait_until(&format!("{id} ends as {word}"), timeout, async || {
            self.outcome(id).await == Some(word)
        })
        .await;
    }

    /// Waits until `id`'s timeline holds `n` entries of `event`; all of them.
    pub async fn wait_entries(&self, id: &str, event: &str, n: usize) -> Vec<cascade::core::Entry> {
        let mut found = Vec::new();
        wait_until(&format!("{id}: {n} × {event}"), AT_ONCE, async || {
            found = self.entries(id, event).await;
            found.len() >= n
        })
        .await;
        found
    }

    /// The first entry of `event` (for `step`, if given), once it exists.
    pub async fn wait_entry(
        &self,
        id: &str,
        event: &str,
        step: Option<u8>,
    ) -> cascade::core::Entry {
        let mut found = None;
        wait_until(&format!("{id}: {event}"), AT_ONCE, async || {
            found = self
                .timeline(id)
                .await
                .into_iter()
                .find(|e| e.event.as_str() == event && step.is_none_or(|s| e.step == Some(s)));
            found.is_some()
        })
        .await;
        found.unwrap()
    }

    /// The receipts hash of a notification.
    pub async fn receipts<V: redis::FromRedisValue>(
        &self,
        id: &str,
    ) -> std::collections::HashMap<String, V> {
        let mut r = redis().await;
        redis::AsyncCommands::hgetall(&mut r, format!("{}:{{{id}}}:receipts", self.cfg.name))
            .await
            .unwrap()
    }

    /// The daemon's Prometheus page.
    pub async fn metrics(&self) -> String {
        text_of(&self.http, self.admin_url("/metrics")).await
    }

    /// The sum of the samples of metric `name` with `labels` on the daemon's
    /// Prometheus page now.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        metric_sum(&self.metrics().await, name, labels)
    }

    /// Writes `content` to `relative` and rewrites it every second until
    /// `applied` holds: the watcher starts in the background and may miss a
    /// write made right after the daemon started. Panics after `AT_ONCE * 2`.
    pub async fn edit_until(
        &self,
        relative: &str,
        content: &str,
        mut applied: impl FnMut(&cascade::config::Catalog) -> bool,
    ) {
        let start = Instant::now();
        loop {
            self.cfg.write(relative, content);
            let written = Instant::now();
            while written.elapsed() < Duration::from_secs(1) {
                if applied(&self.daemon().catalog.load()) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(
                start.elapsed() < AT_ONCE * 2,
                "the edit of {relative} was not applied"
            );
        }
    }

    /// Stops the daemon gracefully; `Drop` then cleans up.
    pub async fn stop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.stop(Duration::from_secs(5)).await;
        }
    }
}

/// Sums the samples of metric `name` whose labels include every one of
/// `labels` on a Prometheus page, e.g. `metric_sum(page,
/// "cascade_callbacks_total", &[("provider", "sms"), ("result", "ok")])`.
pub fn metric_sum(page: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    page.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (sample_labels, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            // Each wanted label whole: `{k="v"` or `,k="v"`, not a suffix of another.
            let sample_labels = format!(",{sample_labels}");
            labels
                .iter()
                .all(|(k, v)| sample_labels.contains(&format!(",{k}=\"{v}\"")))
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .map(|v| v as u64)
        .sum()
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.shutdown_token().cancel();
        }
        let name = self.cfg.name.clone();
        let panicking = std::thread::panicking();
        let settle = match self.settle {
            Settle::Never => false,
            Settle::OnPanic => panicking,
            Settle::Always => true,
        };
        let cleaned = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for cleaning up");
            rt.block_on(async {
                if settle {
                    // Let the cancelled daemon stop writing before its keys go.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                clean_redis(&name).await;
                clean_queues(&name).await;
            });
        })
        .join();
        if cleaned.is_err() && self.strict && !panicking {
            panic!("cleaning up after {} failed", self.cfg.name);
        }
    }
}

/// `impl Deref<Target = Running>` for a test's harness that wraps a `Running`
/// in its field `run`, so tests reach the shared helpers directly.
#[macro_export]
macro_rules! wraps_running {
    ($harness:ty) => {
        impl std::ops::Deref for $harness {
            type Target = $crate::common::Running;
            fn deref(&self) -> &$crate::common::Running {
                &self.run
            }
        }
    };
}

// ---------------------------------------------------------------------------
// RabbitMQ as a test sees it: publishing, counting and taking messages.
// ---------------------------------------------------------------------------

/// A connection and a channel to the local RabbitMQ (close the connection
/// when done).
pub async fn amqp() -> (lapin::Connection, lapin::Channel) {
    require_services().await;
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .expect("RabbitMQ is up");
    let channel = conn.create_channel().await.expect("a channel");
    (conn, channel)
}

/// Publishes `body` to the intake queue of `intake` (declaring the queues);
/// RabbitMQ must confirm it.
pub async fn publish_to(intake: &cascade::runtime::intake::IntakeConfig, body: &[u8]) {
    require_services().await;
    assert!(
        cascade::runtime::intake::publish(intake, body)
            .await
            .expect("RabbitMQ takes the message"),
        "RabbitMQ confirms the message"
    );
}

/// What a queue holds: messages ready (not delivered) and consumers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueCounts {
    pub ready: u32,
    pub consumers: u32,
}

/// The counts of `queue`, or `None` if it does not exist (a passive declare).
pub async fn queue_counts(queue: &str) -> Option<QueueCounts> {
    let (conn, channel) = amqp().await;
    let declared = channel
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await;
    let _ = conn.close(200, "bye".into()).await;
    declared.ok().map(|q| QueueCounts {
        ready: q.message_count(),
        consumers: q.consumer_count(),
    })
}

/// How many messages wait (ready, not delivered) in `queue`, which exists.
pub async fn ready_in(queue: &str) -> u32 {
    queue_counts(queue)
        .await
        .unwrap_or_else(|| panic!("the queue {queue} exists"))
        .ready
}

/// Takes messages off `queue` (acknowledged as they are taken) until `want`
/// are in hand or `timeout` passes; the caller checks how many it got.
pub async fn take_messages(
    queue: &str,
    want: usize,
    timeout: Duration,
) -> Vec<lapin::message::Delivery> {
    let (conn, channel) = amqp().await;
    let mut out = Vec::new();
    let start = Instant::now();
    while out.len() < want && start.elapsed() < timeout {
        let got = channel
            .basic_get(
                queue.into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .expect("basic.get");
        match got {
            Some(message) => out.push(message.delivery),
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let _ = conn.close(200, "bye".into()).await;
    out
}

/// The headers of a message whose values are strings (the `x-cascade-…`
/// headers of a dead letter among them).
pub fn string_headers(
    message: &lapin::message::Delivery,
) -> std::collections::BTreeMap<String, String> {
    message
        .properties
        .headers()
        .as_ref()
        .map(|table| {
            table
                .inner()
                .iter()
                .filter_map(|(k, v)| match v {
                    lapin::types::AMQPValue::LongString(s) => Some((
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(s.as_bytes()).into_owned(),
                    )),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Negative checks and the daemon's log lines.
// ---------------------------------------------------------------------------

/// Lets what should not happen have its chance to happen (a send that must
/// not go out): only for negative checks, after the positive ones.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// The log lines of this test binary's in-process daemons, as JSON.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The first line that holds every one of `needles`, if any yet.
    pub fn line_with(&self, needles: &[&str]) -> Option<String> {
        self.text()
            .lines()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
    }

    /// Waits for a line that holds every one of `needles`.
    pub async fn wait_line(&self, needles: &[&str]) -> String {
        let mut found = None;
        wait_until(
            &format!("a log line with {needles:?}"),
            AT_ONCE,
            async || {
                found = self.line_with(needles);
                found.is_some()
            },
        )
        .await;
        found.unwrap()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// The binary's one global subscriber (JSON lines into a shared buffer),
/// installed by the first call with `filter` (an `EnvFilter`, e.g. `"warn"`).
/// A process has one global subscriber, so every call of a test binary must
/// ask for the same filter: each binary wraps this in its own `logs()`.
pub fn logs(filter: &str) -> &'static Logs {
    static LOGS: std::sync::OnceLock<(String, Logs)> = std::sync::OnceLock::new();
    let (installed, logs) = LOGS.get_or_init(|| {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(logs.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("nothing else in this test binary installs a global subscriber");
        (filter.to_owned(), logs)
    });
    assert_eq!(
        installed, filter,
        "this test binary's log subscriber was installed with another filter"
    );
    logs
}

/// A cascade waiting on step 0 (VK), sent a second before `now_ms`, until
/// `until_ms`: for tests that write records through the store directly.
pub fn waiting_on_vk(now_ms: i64, until_ms: i64) -> cascade::core::Cascade {
    cascade::core::Cascade {
        step: 0,
        alt: 0,
        failures: 0,
        phase: cascade::core::Phase::Waiting {
            channel: "vk".into(),
            sent_ms: now_ms - 1_000,
            until_ms,
        },
        expires_at_ms: None,
        handled_failed_ms: None,
        tallied: None,
        branch: None,
        transitions: 1,
    }
}

/// Runs `rabbitmqctl` and returns what it printed.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The broker's ids of the connections whose client-provided name starts
/// with `prefix`.
pub fn connections_named(prefix: &str) -> Vec<String> {
    // One line per connection: `<pid>\t[..., {"connection_name","..."}, ...]`
    // (the plain format: the JSON one writes pids close_connection cannot read).
    let listed = rabbitmqctl(&[
        "list_connections",
        "pid",
        "client_properties",
        "-q",
        "--no-table-headers",
    ]);
    let wanted = format!("{{\"connection_name\",\"{prefix}");
    listed
        .lines()
        .filter(|line| line.contains(&wanted))
        .filter_map(|line| line.split('\t').next().map(str::to_owned))
        .collect()
}

/// A Redis Cluster of its own for a test (3 primaries, 3 replicas on
/// loopback ports `base..base + 5`, by `scripts/redis-cluster`), torn down
/// when dropped.
pub struct PrivateCluster {
    pub base: u16,
}

impl PrivateCluster {
    pub fn start(base: u16) -> PrivateCluster {
        let _ = Self::script("stop", base);
        let out = Self::script("start", base);
        assert!(
            out.status.success(),
            "scripts/redis-cluster start {base}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        PrivateCluster { base }
    }

    fn script(cmd: &str, base: u16) -> std::process::Output {
        std::process::Command::new(repo().join("scripts/redis-cluster"))
            .args([cmd, &base.to_string()])
            .output()
            .expect("scripts/redis-cluster runs")
    }

    /// The first three nodes (the primaries when it starts).
    pub fn nodes(&self) -> Vec<String> {
        (0..3)
            .map(|i| format!("redis://127.0.0.1:{}", self.base + i))
            .collect()
    }

    pub fn target(&self) -> Target {
        Target::Cluster(self.nodes())
    }

    /// Kills the node on `port` with SIGKILL (its replica takes over once
    /// the cluster's node timeout, 2 s, has passed).
    pub fn kill_node(&self, port: u16) {
        let dir = std::env::temp_dir().join(format!("cascade-redis-cluster-{}", self.base));
        let pid = std::fs::read_to_string(dir.join(port.to_string()).join("redis.pid"))
            .expect("the node's pid file");
        let status = std::process::Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -KILL {pid}");
    }
}

/// `redis-cli -p <port> <args…>`'s output.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Moves `slots` hash slots from the primary on `from` to the one on `to`
/// while the cluster serves (`redis-cli --cluster reshard`).
pub fn reshard_slots(from: u16, to: u16, slots: u32) -> std::process::Output {
    let from_id = redis_cli(from, &["cluster", "myid"]);
    let to_id = redis_cli(to, &["cluster", "myid"]);
    std::process::Command::new("redis-cli")
        .args([
            "--cluster",
            "reshard",
            &format!("127.0.0.1:{to}"),
            "--cluster-from",
            &from_id,
            "--cluster-to",
            &to_id,
            "--cluster-slots",
            &slots.to_string(),
            "--cluster-yes",
        ])
        .output()
        .expect("redis-cli --cluster reshard runs")
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = Self::script("stop", self.base);
    }
}

impl TestConfig {
    /// Points the daemon at a Redis Cluster of these nodes.
    pub fn set_redis_cluster(&self, nodes: &[String]) {
        let path = self.path();
        let toml = std::fs::read_to_string(&path).unwrap();
        let nodes: Vec<String> = nodes.iter().map(|n| format!("\"{n}\"")).collect();
        let toml: String = toml
            .lines()
            .filter(|l| !l.starts_with("cluster = ") && !l.starts_with("url = \"redis"))
            .map(|l| format!("{l}\n"))
            .collect();
        let toml = toml.replacen(
            "[redis]\n",
            &format!("[redis]\ncluster = [{}]\n", nodes.join(", ")),
            1,
        );
        std::fs::write(&path, toml).unwrap();
    }
}

/// An SMS channel's price: 4.20 a segment.
pub const SMS_PRICE: &str = "cost = 4.20\ncost_per = \"segment\"\n";

impl TestConfig {
    /// The channels `vk` and `sms` (SMS.ru) pointed at their fakes, with
    /// the secrets the fakes' callbacks use (`vk-secret`, `sms-secret`);
    /// `sms_extra`: more lines for the SMS channel (its price).
    pub fn vk_and_smsru(&self, vk_base: &str, sms_base: &str, sms_extra: &str) {
        self.write(
            "channels/vk.toml",
            &format!(
                "kind = \"vk\"\nbase_url = \"{vk_base}\"\naccess_token = \"vk-token\"\ncallback_secret = \"vk-secret\"\n"
            ),
        );
        self.write(
            "channels/sms.toml",
            &format!(
                "kind = \"sms\"\nprovider = \"smsru\"\nbase_url = \"{sms_base}\"\napi_id = \"sms-key\"\nsender = \"SHOP\"\nreport_secret = \"sms-secret\"\n{sms_extra}"
            ),
        );
    }
}

/// Notification `i` of `publish_orders`' traffic goes to this VK peer.
pub fn order_peer(i: usize) -> i64 {
    1000 + i as i64
}

/// Publishes `n` delivery_delay notifications (ids `<test>-n<i>`, forty
/// customers in turn, VK peer `order_peer(i)` and a phone each, the
/// segment `segment(i)` gives) and waits until every VK message is out.
pub async fn publish_orders(
    run: &Running,
    vk: &cascade::dev::fakes::vk::FakeVk,
    n: usize,
    segment: impl Fn(usize) -> Option<&'static str>,
) -> Vec<String> {
    let ids: Vec<String> = (0..n).map(|i| run.id(&format!("n{i}"))).collect();
    for (i, id) in ids.iter().enumerate() {
        let mut customer = serde_json::json!({
            "id": format!("c-{}", i % 40),
            "contacts": { "vk": order_peer(i).to_string(), "sms": format!("+7916{:07}", i) }
        });
        if let Some(s) = segment(i) {
            customer["segment"] = serde_json::json!(s);
        }
        run.publish(&serde_json::json!({
            "id": id, "policy": "delivery_delay", "customer": customer,
            // 33 Cyrillic characters: one UCS-2 segment.
            "content": { "text": "Заказ 1001 задерживается на 2 дня" }
        }))
        .await;
    }
    wait_until("every VK message", Duration::from_secs(30), async || {
        vk.messages().len() == n
    })
    .await;
    ids
}

/// VK's Callback API says `publish_orders`' customer `i` read its message.
pub async fn vk_reads(run: &Running, vk: &cascade::dev::fakes::vk::FakeVk, i: usize) {
    let peer = order_peer(i);
    let msg = vk
        .messages()
        .into_iter()
        .find(|m| m.peer_id == peer)
        .unwrap();
    let event = vk.message_read("vk-secret", peer, msg.message_id);
    let (status, _) = vk.deliver(&run.url("/callbacks/vk/vk"), &event).await;
    assert_eq!(status, 200);
}
