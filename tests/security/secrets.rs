//! Secrets fail closed: `cascade run` refuses the shipped example values,
//! empty and short ones (naming file, key and variable), unless told
//! `--insecure-demo-secrets`; `check` warns and `--strict` fails; secrets
//! may come from `*_file`s; a reload cannot bring in an unsafe secret.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cascade::config::Catalog;
use cascade::config::secrets::Problem;

use crate::common::{CleanUp, DELIVERY_DELAY, TestConfig, repo, unique, wait_until};

fn cascade() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cascade"));
    // Nothing inherited: no CASCADE_… or provider variable of the caller's.
    cmd.env_clear().stdin(Stdio::null());
    cmd
}

#[test]
fn run_refuses_the_shipped_secrets_naming_each() {
    let start = Instant::now();
    let out = cascade()
        .arg("--config")
        .arg(repo().join("cascade.toml"))
        .arg("run")
        .output()
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1), "refused with exit code 1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (file, key, var) in [
        ("cascade.toml", "receipt_token", "CASCADE_RECEIPT_TOKEN"),
        ("channels/vk.toml", "callback_secret", "VK_CALLBACK_SECRET"),
        ("channels/vk.toml", "access_token", "VK_ACCESS_TOKEN"),
        ("channels/sms.toml", "report_secret", "SMS_REPORT_SECRET"),
        ("channels/sms.toml", "api_id", "SMSRU_API_ID"),
        (
            "channels/email.toml",
            "tracking_secret",
            "EMAIL_TRACKING_SECRET",
        ),
        (
            "channels/telegram.toml",
            "webhook_secret",
            "TELEGRAM_WEBHOOK_SECRET",
        ),
        (
            "channels/whatsapp.toml",
            "app_secret",
            "WHATSAPP_APP_SECRET",
        ),
        ("channels/call_centre.toml", "secret", "CALL_CENTRE_SECRET"),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(file) && l.contains(&format!("`{key}` (from {var})"))),
            "no line names {file} {key} {var}:\n{stderr}"
        );
    }
    assert!(stderr.contains("refusing to start"), "{stderr}");
}

#[test]
fn run_refuses_short_and_empty_secrets() {
    let cfg = TestConfig::new("sec-short", "http://127.0.0.1:9", "", DELIVERY_DELAY);
    let toml = std::fs::read_to_string(cfg.path()).unwrap();
    std::fs::write(
        cfg.path(),
        toml.replace(
            &format!("receipt_token = \"{}\"", crate::common::TOKEN),
            "receipt_token = \"${SHORT_TOKEN}\"",
        ),
    )
    .unwrap();
    cfg.write(
        "channels/hook.toml",
        "kind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nsecret = \"${HOOK_SECRET}\"\n",
    );
    let out = cascade()
        .arg("--config")
        .arg(cfg.path())
        .arg("run")
        .env("SHORT_TOKEN", "fifteen-bytes!!")
        .env("HOOK_SECRET", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`receipt_token` (from SHORT_TOKEN) is 15 bytes long"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`secret` (from HOOK_SECRET) is empty"),
        "{stderr}"
    );
}

#[test]
fn insecure_demo_secrets_starts_and_warns() {
    let name = unique("sec-insecure");
    let _clean = CleanUp(name.clone());
    let log = std::env::temp_dir().join(format!("cascade-{name}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let mut child = cascade()
        .arg("--config")
        .arg(repo().join("cascade.toml"))
        .arg("run")
        .env("CASCADE_INSECURE_DEMO", "1")
        .env("CASCADE_LOG", "warn")
        .env("CASCADE_HTTP_LISTEN", "127.0.0.1:0")
        .env("CASCADE_HTTP_ADMIN_LISTEN", "127.0.0.1:0")
        .env("CASCADE_AMQP_QUEUE", format!("{name}.notifications"))
        .env("CASCADE_AMQP_DEAD_LETTER_QUEUE", format!("{name}.dead"))
        .env("CASCADE_REDIS_PREFIX", &name)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let start = Instant::now();
    while !read().contains("running on an unsafe secret")
        && start.elapsed() < Duration::from_secs(20)
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "it exited:\n{}",
            read()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = read();
    let _ = std::fs::remove_file(&log);
    assert!(text.contains("--insecure-demo-secrets"), "{text}");
    assert!(
        text.contains("channels/vk.toml: `callback_secret` (from VK_CALLBACK_SECRET)"),
        "each unsafe secret is named in the warning:\n{text}"
    );
}

#[test]
fn check_warns_and_strict_fails() {
    let out = cascade()
        .arg("--config")
        .arg(repo().join("cascade.toml"))
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().any(
            |l| l.starts_with("warning: ") && l.contains("channels/vk.toml: `callback_secret`")
        ),
        "{stderr}"
    );
    assert!(stderr.contains("http.public_url"), "{stderr}");
    let strict = cascade()
        .arg("--config")
        .arg(repo().join("cascade.toml"))
        .args(["check", "--strict"])
        .output()
        .unwrap();
    assert_eq!(strict.status.code(), Some(1));

    // A configuration without unsafe secrets passes --strict.
    let cfg = TestConfig::new("sec-strict", "http://127.0.0.1:9", "", DELIVERY_DELAY);
    let clean = cascade()
        .arg("--config")
        .arg(cfg.path())
        .args(["check", "--strict"])
        .output()
        .unwrap();
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
}

#[test]
fn check_warns_about_timeouts_the_lease_and_a_loopback_tracking_url() {
    let cfg = TestConfig::new(
        "sec-warn",
        "http://127.0.0.1:9",
        "[defaults]\nin_flight_timeout = \"20s\"\nclaim_lease = \"10s\"\n",
        DELIVERY_DELAY,
    );
    cfg.write(
        "channels/mail.toml",
        "kind = \"email\"\nhost = \"127.0.0.1\"\ntls = \"none\"\nfrom = \"a@shop.example\"\ntracking_secret = \"a-long-tracking-secret-0123\"\ntimeout = \"30s\"\n",
    );
    let catalog = cfg.catalog();
    let warnings = catalog.warnings().join("\n");
    assert!(
        warnings.contains("timeout 30s is longer than defaults.in_flight_timeout 20s"),
        "{warnings}"
    );
    assert!(
        warnings.contains("defaults.claim_lease 10s is shorter"),
        "{warnings}"
    );
    assert!(
        warnings.contains("http.public_url `http://127.0.0.1:8080`"),
        "{warnings}"
    );
}

fn load(cfg: &TestConfig, env: &[(&str, &str)]) -> Result<Catalog, String> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Catalog::load_with_env(&cfg.path(), &|name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .map_err(|e| e.to_string())
}

#[test]
fn secrets_may_come_from_files() {
    let cfg = TestConfig::new("sec-files", "http://127.0.0.1:9", "", DELIVERY_DELAY);
    let token_file = cfg.dir.join("receipt-token");
    std::fs::write(&token_file, "a-token-from-a-secret-file\n").unwrap();
    let secret_file = cfg.dir.join("vk-secret");
    std::fs::write(&secret_file, "vk-secret-from-a-file-0123\n").unwrap();
    let toml = std::fs::read_to_string(cfg.path()).unwrap();
    std::fs::write(
        cfg.path(),
        toml.replace(
            &format!("receipt_token = \"{}\"", crate::common::TOKEN),
            &format!("receipt_token_file = \"{}\"", token_file.display()),
        ),
    )
    .unwrap();
    cfg.write(
        "channels/vkc.toml",
        &format!(
            "kind = \"vk\"\naccess_token = \"${{VK_TOKEN}}\"\ncallback_secret_file = \"{}\"\n",
            secret_file.display()
        ),
    );
    let catalog = load(&cfg, &[("VK_TOKEN", "vk-access-token")]).unwrap();
    assert!(
        catalog.secret_problems.is_empty(),
        "{:?}",
        catalog.secret_problems
    );
    assert_eq!(
        catalog.settings.http.receipt_tokens[0].token,
        "a-token-from-a-secret-file"
    );
    assert_eq!(
        catalog.channels["vkc"].setting("callback_secret"),
        Some("vk-secret-from-a-file-0123")
    );

    // A short secret in a file is named by its file.
    std::fs::write(&secret_file, "short\n").unwrap();
    let catalog = load(&cfg, &[("VK_TOKEN", "vk-access-token")]).unwrap();
    let p = &catalog.secret_problems[0];
    assert_eq!(p.problem, Problem::Short { bytes: 5 });
    assert!(
        p.to_string().contains(&secret_file.display().to_string()),
        "{p}"
    );

    // A missing file, and both forms at once, are configuration errors.
    std::fs::remove_file(&secret_file).unwrap();
    let err = load(&cfg, &[("VK_TOKEN", "vk-access-token")]).unwrap_err();
    assert!(err.contains("cannot read the secret file"), "{err}");
    cfg.write(
        "channels/vkc.toml",
        "kind = \"vk\"\naccess_token = \"x\"\ncallback_secret = \"vk-secret-0123456789\"\ncallback_secret_file = \"/nowhere\"\n",
    );
    let err = load(&cfg, &[]).unwrap_err();
    assert!(err.contains("not both"), "{err}");
}

#[test]
fn an_empty_token_serves_nobody() {
    let cfg = TestConfig::new("sec-empty", "http://127.0.0.1:9", "", DELIVERY_DELAY);
    let catalog = load(&cfg, &[("CASCADE_HTTP_RECEIPT_TOKEN", "")]).unwrap();
    assert!(catalog.settings.http.receipt_tokens.is_empty());
    assert_eq!(catalog.secret_problems[0].problem, Problem::Empty);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_cannot_bring_in_an_unsafe_secret() {
    use cascade::runtime::daemon::{Daemon, DaemonOptions};
    let cfg = TestConfig::new("sec-reload", "http://127.0.0.1:9", "", DELIVERY_DELAY);
    let _clean = CleanUp(cfg.name.clone());
    let options = DaemonOptions {
        config_path: Some(cfg.path()),
        listen: Some("127.0.0.1:0".into()),
        admin_listen: Some("127.0.0.1:0".into()),
        ..Default::default()
    };
    let daemon = Daemon::start(cfg.catalog(), options).await.unwrap();
    let wait_of = |d: &Daemon| d.catalog.load().policies["delivery_delay"].steps[0].wait_ms;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A policy edit together with a shipped secret: refused whole.
    cfg.write(
        "channels/hook.toml",
        "kind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nsecret = \"demo-call-centre-secret\"\n",
    );
    cfg.write(
        "policies/delivery_delay.toml",
        &DELIVERY_DELAY.replace("30m", "45m"),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        wait_of(&daemon),
        Some(30 * 60_000),
        "the unsafe set was refused"
    );
    assert!(!daemon.catalog.load().channels.contains_key("hook"));

    // With a real secret the same edit applies.
    cfg.write(
        "channels/hook.toml",
        "kind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nsecret = \"a-real-webhook-secret-0123\"\n",
    );
    wait_until(
        "the safe set is live",
        Duration::from_secs(10),
        async || wait_of(&daemon) == Some(45 * 60_000),
    )
    .await;
    daemon.stop(Duration::from_secs(5)).await;
}
