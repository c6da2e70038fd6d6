//! The `CASCADE_*` variables win over `cascade.toml`: every one
//! docs/configuration.md lists, on the loaded settings; and `cascade run` with a clean
//! environment, whose file points at nothing that works (unreachable
//! RabbitMQ and Redis, other queues, prefix, listeners and token), runs on
//! what the variables say.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use cascade::config::Catalog;
use cascade::runtime::intake::IntakeConfig;

use crate::common::{
    AMQP_URL, ChildDaemon, CleanUp, DELIVERY_DELAY, RedisEnv, TestConfig, publish_to, ready_in,
    redis, unique, wait_until,
};
use crate::support::{Receiver, note};

/// Settings that the variables must replace, each unlike any default.
const DECOYS: &str = "[amqp]\nurl = \"amqp://guest:guest@127.0.0.1:9/%2f\"\nqueue = \"decoy.notifications\"\ndead_letter_queue = \"decoy.dead\"\nprefetch = 3\nmax_body_bytes = 100000\n\n\
    [redis]\nurl = \"redis://127.0.0.1:9\"\nprefix = \"decoy\"\nretention = \"3h\"\ntimer_shards = 3\n\n\
    [http]\nlisten = \"127.0.0.1:9\"\nadmin_listen = \"127.0.0.1:9\"\nreceipt_token = \"decoy-receipt-token-0123456789\"\nmax_connections = 3\npublic_url = \"https://decoy.example.ru\"\n\n\
    [defaults]\ntimezone = \"Europe/Moscow\"\n";

const ENV_TOKEN: &str = "receipt-token-from-the-environment-42";

#[test]
fn every_listed_variable_wins_over_the_file() {
    let cfg = TestConfig::new("env-all", "http://127.0.0.1:9", "", DELIVERY_DELAY);
    cfg.write("cascade.toml", DECOYS);
    let token_file = cfg.dir.join("token");
    std::fs::write(&token_file, "receipt-token-from-a-file-0123456\n").unwrap();
    let vars: HashMap<&str, String> = [
        ("CASCADE_AMQP_URL", "amqp://u:p@mq.example:5673/%2f"),
        ("CASCADE_AMQP_QUEUE", "env.notifications"),
        ("CASCADE_AMQP_DEAD_LETTER_QUEUE", "env.dead"),
        ("CASCADE_AMQP_PREFETCH", "17"),
        ("CASCADE_AMQP_MAX_BODY_BYTES", "2048"),
        ("CASCADE_REDIS_URL", "redis://redis.example:6380"),
        ("CASCADE_REDIS_PREFIX", "envprefix"),
        ("CASCADE_REDIS_RETENTION", "2d"),
        ("CASCADE_REDIS_TIMER_SHARDS", "7"),
        ("CASCADE_HTTP_LISTEN", "0.0.0.0:8181"),
        ("CASCADE_HTTP_ADMIN_LISTEN", "127.0.0.1:9191"),
        ("CASCADE_HTTP_MAX_CONNECTIONS", "77"),
        ("CASCADE_HTTP_PUBLIC_URL", "https://env.example.ru"),
        ("CASCADE_DEFAULTS_TIMEZONE", "Asia/Tokyo"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect();
    let load = |extra: &[(&str, &str)]| {
        let mut env = vars.clone();
        env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        Catalog::load_with_env(&cfg.path(), &|name| env.get(name).cloned())
            .unwrap_or_else(|e| panic!("{e}"))
            .settings
    };

    let s = load(&[("CASCADE_HTTP_RECEIPT_TOKEN", ENV_TOKEN)]);
    assert_eq!(s.amqp.url, "amqp://u:p@mq.example:5673/%2f");
    assert_eq!(s.amqp.queue, "env.notifications");
    assert_eq!(s.amqp.dead_letter_queue, "env.dead");
    assert_eq!(s.amqp.prefetch, 17);
    assert_eq!(s.amqp.max_body_bytes, 2048);
    assert_eq!(
        s.redis.target,
        cascade::runtime::store::Target::Single("redis://redis.example:6380".into())
    );
    assert_eq!(s.redis.prefix, "envprefix");
    assert_eq!(s.redis.retention_ms, 2 * 24 * 3_600_000);
    assert_eq!(s.redis.timer_shards, 7);
    assert_eq!(s.http.listen, "0.0.0.0:8181");
    assert_eq!(s.http.admin_listen, "127.0.0.1:9191");
    assert_eq!(s.http.max_connections, 77);
    assert_eq!(s.http.public_url, "https://env.example.ru");
    assert_eq!(s.defaults.timezone_name, "Asia/Tokyo");
    let tokens = |s: &cascade::config::Settings| -> Vec<String> {
        s.http
            .receipt_tokens
            .iter()
            .map(|t| t.token.clone())
            .collect()
    };
    assert_eq!(tokens(&s), [ENV_TOKEN]);

    let s = load(&[(
        "CASCADE_HTTP_RECEIPT_TOKEN_FILE",
        token_file.to_str().unwrap(),
    )]);
    assert_eq!(tokens(&s), ["receipt-token-from-a-file-0123456"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascade_run_takes_its_services_names_listeners_and_token_from_the_variables() {
    let hooks = Receiver::start().await;
    let cfg = TestConfig::new("env-run", &hooks.url, "", DELIVERY_DELAY);
    cfg.write("cascade.toml", DECOYS);
    let name = cfg.name.clone();
    let _clean = CleanUp(name.clone());
    let log = std::env::temp_dir().join(format!("{}.log", unique("env-run")));
    let intake = IntakeConfig {
        url: AMQP_URL.into(),
        queue: format!("{name}.notifications"),
        dead_letter_queue: format!("{name}.dead"),
        prefetch: 1,
        queue_type: cascade::config::QueueType::Quorum,
        max_deliveries: 5,
    };
    // The tests' Redis, by the variable that names it (a cluster's nodes
    // when the tests run on one).
    let redis_env = RedisEnv::of_tests();
    let mut child = ChildDaemon::spawn_with(
        &cfg.path(),
        &log,
        "warn,cascade::runtime::daemon=info",
        &[
            ("CASCADE_AMQP_URL", AMQP_URL),
            ("CASCADE_AMQP_QUEUE", &intake.queue),
            ("CASCADE_AMQP_DEAD_LETTER_QUEUE", &intake.dead_letter_queue),
            ("CASCADE_AMQP_MAX_BODY_BYTES", "2000"),
            redis_env.as_pair(),
            ("CASCADE_REDIS_PREFIX", &name),
            // Port 0: the addresses are read back from the start-up line,
            // which must not name the decoy file's port 9.
            ("CASCADE_HTTP_LISTEN", "127.0.0.1:0"),
            ("CASCADE_HTTP_ADMIN_LISTEN", "127.0.0.1:0"),
            ("CASCADE_HTTP_RECEIPT_TOKEN", ENV_TOKEN),
        ],
    );
    let (listen_at, admin_at) = child.wait_listening().await;
    for at in [&listen_at, &admin_at] {
        assert!(
            at.starts_with("127.0.0.1:") && !at.ends_with(":9") && !at.ends_with(":0"),
            "{at}"
        );
    }
    let http = reqwest::Client::new();
    child
        .wait_alive_until(
            "the admin listener is ready",
            Duration::from_secs(15),
            async || {
                http.get(format!("http://{admin_at}/readyz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            },
        )
        .await;

    let id = format!("{name}-n");
    let body = note(&id, "c-1", "delivery_delay", json!({})).to_string();
    publish_to(&intake, body.as_bytes()).await;
    // Too long for the variable's 2,000 bytes, not for the file's 100,000.
    let long = note(
        &format!("{name}-long"),
        "c-2",
        "delivery_delay",
        json!({ "content": { "text": "x".repeat(3000) } }),
    )
    .to_string();
    publish_to(&intake, long.as_bytes()).await;
    hooks.wait_count("vk", 1).await;
    let mut r = redis().await;
    let key = format!("{name}:{{{id}}}:state");
    wait_until(
        "the state under the variable's prefix",
        Duration::from_secs(5),
        async || {
            redis::AsyncCommands::exists::<_, bool>(&mut r, &key)
                .await
                .unwrap()
        },
    )
    .await;
    wait_until(
        "the long one dead-lettered",
        Duration::from_secs(5),
        async || ready_in(&intake.dead_letter_queue).await == 1,
    )
    .await;

    let receipt = |token: &'static str| {
        http.post(format!("http://{listen_at}/v1/receipts"))
            .bearer_auth(token)
            .json(&json!({ "id": id, "event": "read" }))
            .send()
    };
    assert_eq!(
        receipt("decoy-receipt-token-0123456789")
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(receipt(ENV_TOKEN).await.unwrap().status(), 202);

    drop(child);
    let _ = std::fs::remove_file(&log);
}
