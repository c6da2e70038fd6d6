//! Secrets fail closed: `cascade run` refuses the shipped example values,
//! empty and short ones (naming file, key and variable), unless told
//! `--insecure-demo-secrets`; `check` warns and `--strict` fails; secrets
//! may come from `*_file`s; a reload cannot bring in an unsafe secret.

use std::time::{Duration, Instant};

use cascade::config::Catalog;
use cascade::config::secrets::Problem;

use crate::common::{
    ChildDaemon, CleanUp, DELIVERY_DELAY, Running, TestConfig, cascade_command, repo, settle,
    unique, wait_until,
};
use crate::logs;

#[test]
fn run_refuses_the_shipped_secrets_naming_each() {
    let start = Instant::now();
    let out = cascade_command()
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
    let out = cascade_command()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_demo_secrets_starts_and_warns() {
    crate::common::require_services().await;
    let name = unique("sec-insecure");
    let _clean = CleanUp(name.clone());
    let log = std::env::temp_dir().join(format!("cascade-{name}.log"));
    let (queue, dead) = (format!("{name}.notifications"), format!("{name}.dead"));
    let mut child = ChildDaemon::spawn_with(
        &repo().join("cascade.toml"),
        &log,
        "warn",
        &[
            ("CASCADE_INSECURE_DEMO", "1"),
            ("CASCADE_HTTP_LISTEN", "127.0.0.1:0"),
            ("CASCADE_HTTP_ADMIN_LISTEN", "127.0.0.1:0"),
            ("CASCADE_AMQP_QUEUE", &queue),
            ("CASCADE_AMQP_DEAD_LETTER_QUEUE", &dead),
            ("CASCADE_REDIS_PREFIX", &name),
        ],
    );
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    child
        .wait_alive_until(
            "the warning about unsafe secrets",
            Duration::from_secs(20),
            async || read().contains("running on an unsafe secret"),
        )
        .await;
    drop(child);
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
    let out = cascade_command()
        .arg("--config")
        .arg(repo().join("cascade.toml"))
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("channels/vk.toml: warning: `callback_secret`")),
        "{stderr}"
    );
    assert!(stderr.contains("http.public_url"), "{stderr}");
    let strict = cascade_command()
        .arg("--config")
        .arg(repo().join("cascade.toml"))
        .args(["check", "--strict"])
        .output()
        .unwrap();
    assert_eq!(strict.status.code(), Some(1));

    // A configuration without unsafe secrets passes --strict.
    let cfg = TestConfig::new("sec-strict", "http://127.0.0.1:9", "", DELIVERY_DELAY);
    let clean = cascade_command()
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
    let warnings: Vec<String> = catalog.warnings().iter().map(|w| w.to_string()).collect();
    let warnings = warnings.join("\n");
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
        catalog.channels["vkc"]
            .settings
            .as_vk()
            .and_then(|vk| vk.callback_secret.as_deref()),
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
    let logs = logs();
    let cfg = TestConfig::new("sec-reload", "http://127.0.0.1:9", "", DELIVERY_DELAY);
    let path = cfg.path();
    let mut run = Running::start_opts(cfg, |o| o.config_path = Some(path)).await;
    let wait_of =
        |run: &Running| run.daemon().catalog.load().policies["delivery_delay"].steps[0].wait_ms;

    // A policy edit together with a shipped secret: refused whole, once the
    // daemon says so (the policy is rewritten until then: the watcher may
    // miss a write made right after the daemon started).
    let hook = run.cfg.dir.join("channels/hook.toml");
    run.cfg.write(
        "channels/hook.toml",
        "kind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nsecret = \"demo-call-centre-secret\"\n",
    );
    let refusal = [
        "configuration change refused: an unsafe secret",
        &hook.display().to_string(),
    ];
    run.edit_until(
        "policies/delivery_delay.toml",
        &DELIVERY_DELAY.replace("30m", "45m"),
        |_| logs.line_with(&refusal).is_some(),
    )
    .await;
    // Any reload the two writes still cause has its chance to apply.
    settle().await;
    assert_eq!(
        wait_of(&run),
        Some(30 * 60_000),
        "the unsafe set was refused"
    );
    assert!(!run.daemon().catalog.load().channels.contains_key("hook"));

    // With a real secret the same edit applies.
    run.cfg.write(
        "channels/hook.toml",
        "kind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nsecret = \"a-real-webhook-secret-0123\"\n",
    );
    wait_until(
        "the safe set is live",
        Duration::from_secs(10),
        async || wait_of(&run) == Some(45 * 60_000),
    )
    .await;
    run.stop().await;
}
