//! The local stack: `cascade fakes` with the daemon on the shipped
//! channels/ and policies/, configured by the environment docker-compose.yml
//! gives the daemon, delivers on every channel and a read receipt from the
//! index stops an escalation; and the compose files and the Dockerfile keep
//! what the stack relies on (checked by reading them: no image can be built
//! here; `docker compose config` runs too where the plugin exists).

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use cascade::channels::ChannelSettings;
use cascade::config::Catalog;
use cascade::dev::fakes::script::Scripted;
use cascade::dev::fakes::smtp;
use cascade::dev::fakes::stack::{BASE_PORT, Callbacks, Fake, FakeStack, StackOptions};
use common::*;
use serde_json::{Value, json};
use serde_norway::Value as Yaml;

const MIN: i64 = 60_000;

// ---------------------------------------------------------------------------
// Reading the compose files and the Dockerfile.
// ---------------------------------------------------------------------------

fn yaml(file: &str) -> Yaml {
    let text = std::fs::read_to_string(repo().join(file)).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{file} is not YAML: {e}"))
}

fn service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    compose
        .get("services")
        .and_then(|s| s.get(name))
        .unwrap_or_else(|| panic!("no service `{name}`"))
}

fn text(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// A service's `environment` (a map or a list of `NAME=value`).
fn environment(service: &Yaml) -> BTreeMap<String, String> {
    match service.get("environment") {
        Some(Yaml::Mapping(m)) => m.iter().map(|(k, v)| (text(k), text(v))).collect(),
        Some(Yaml::Sequence(list)) => list
            .iter()
            .filter_map(|l| {
                let l = text(l);
                l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn strings(v: Option<&Yaml>) -> Vec<String> {
    v.and_then(Yaml::as_sequence)
        .map(|l| l.iter().map(text).collect())
        .unwrap_or_default()
}

/// The daemon's environment in the try-out stack.
fn daemon_env() -> BTreeMap<String, String> {
    environment(service(&yaml("docker-compose.yml"), "cascade"))
}

/// An exact version: `1.2.3` somewhere in the tag (`3.13.7-management`,
/// `v1.22.3`, `1.95.0-bookworm`) or a dated build (`bookworm-20251229-slim`).
fn pinned(tag: &str) -> bool {
    let exact = tag.split(['-', '_']).any(|part| {
        let part = part.trim_start_matches('v');
        let nums: Vec<&str> = part.split('.').collect();
        nums.len() >= 3
            && nums
                .iter()
                .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    });
    let dated = tag
        .split('-')
        .any(|p| p.len() == 8 && p.chars().all(|c| c.is_ascii_digit()));
    tag != "latest" && (exact || dated)
}

#[test]
fn the_pinning_rule_tells_exact_tags_from_moving_ones() {
    for tag in [
        "3.13.7-management",
        "7.2.8",
        "v1.22.3",
        "1.95.0-bookworm",
        "bookworm-20251229-slim",
    ] {
        assert!(pinned(tag), "{tag}");
    }
    for tag in [
        "latest",
        "7",
        "3.13-management",
        "v1.22",
        "1.95-bookworm",
        "bookworm-slim",
    ] {
        assert!(!pinned(tag), "{tag}");
    }
}

#[test]
fn every_image_of_the_stack_and_of_the_dockerfile_is_pinned() {
    let compose = yaml("docker-compose.yml");
    let services = compose.get("services").and_then(Yaml::as_mapping).unwrap();
    for (name, s) in services {
        let Some(image) = s.get("image").map(text) else {
            continue;
        };
        if s.get("build").is_some() {
            continue; // built here: its base images are the Dockerfile's
        }
        let (_, tag) = image
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{}: image `{image}` has no tag", text(name)));
        assert!(
            pinned(tag),
            "{}: `{image}` is not an exact version",
            text(name)
        );
    }
    let froms: Vec<String> = dockerfile()
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
        .collect();
    assert!(froms.len() >= 2, "a multi-stage build: {froms:?}");
    for image in froms {
        let (_, tag) = image
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("`{image}` has no tag"));
        assert!(pinned(tag), "FROM `{image}` is not an exact version");
    }
}

/// The Dockerfile's instructions, continuation lines joined.
fn dockerfile() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let mut out = Vec::new();
    let mut line = String::new();
    for l in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let l = l.trim();
        if let Some(part) = l.strip_suffix('\\') {
            line.push_str(part);
            line.push(' ');
            continue;
        }
        line.push_str(l);
        if !line.trim().is_empty() {
            out.push(line.trim().to_owned());
        }
        line.clear();
    }
    out
}

#[test]
fn the_image_runs_as_a_user_that_is_not_root_and_checks_its_health() {
    let lines = dockerfile();
    let last_stage = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    let users: Vec<&String> = lines[last_stage..]
        .iter()
        .filter(|l| l.starts_with("USER "))
        .collect();
    let user = users.last().expect("the final stage sets a USER");
    let name = user["USER ".len()..].split(':').next().unwrap().trim();
    assert!(!["root", "0", ""].contains(&name), "{user}");
    let health = lines[last_stage..]
        .iter()
        .find(|l| l.starts_with("HEALTHCHECK "))
        .expect("the final stage has a HEALTHCHECK");
    assert!(health.contains("\"cascade\", \"health\""), "{health}");
    // The dependencies build before the sources are copied in.
    let deps = lines
        .iter()
        .position(|l| l.starts_with("COPY Cargo.toml Cargo.lock"))
        .expect("Cargo.toml and Cargo.lock copied on their own");
    let sources = lines
        .iter()
        .position(|l| l.starts_with("COPY src"))
        .expect("the sources copied");
    assert!(
        lines[deps..sources]
            .iter()
            .any(|l| l.contains("cargo build")),
        "the dependencies build before the sources arrive"
    );
}

#[test]
fn the_try_out_daemon_reaches_every_channel_on_the_fakes_with_its_configuration_mounted() {
    let compose = yaml("docker-compose.yml");
    let env = daemon_env();
    for fake in Fake::ALL {
        let Some((var, path)) = fake.variable() else {
            continue;
        };
        let want = format!("http://fakes:{}{path}", BASE_PORT + fake.offset());
        assert_eq!(env.get(var), Some(&want), "{var}");
    }
    assert_eq!(env.get("SMTP_HOST").map(String::as_str), Some("mailpit"));
    let fakes = service(&compose, "fakes");
    assert_eq!(
        strings(fakes.get("command")).first().map(String::as_str),
        Some("fakes")
    );
    assert_eq!(
        fakes.get("image"),
        service(&compose, "cascade").get("image"),
        "`cascade fakes` runs from the daemon's image"
    );
    let fakes_env = environment(fakes);
    assert_eq!(
        fakes_env.get("CASCADE_FAKES_PORT"),
        Some(&BASE_PORT.to_string())
    );
    assert_eq!(
        fakes_env
            .get("CASCADE_FAKES_DAEMON_URL")
            .map(String::as_str),
        Some("http://cascade:8080")
    );
    for name in ["cascade", "fakes"] {
        let volumes = strings(service(&compose, name).get("volumes"));
        for (host, inside) in [
            ("./cascade.toml", "/etc/cascade/cascade.toml"),
            ("./policies", "/etc/cascade/policies"),
            ("./channels", "/etc/cascade/channels"),
            ("./examples", "/etc/cascade/examples"),
        ] {
            let mount = format!("{host}:{inside}:ro");
            assert!(
                volumes.contains(&mount),
                "{name}: no `{mount}` in {volumes:?}"
            );
        }
    }

    // The shipped channels take those variables: each is then on its fake.
    let catalog = Catalog::load_with_env(&repo().join("cascade.toml"), &|k| env.get(k).cloned())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_all_on(&catalog, "http://fakes:");
}

/// Asserts that every channel but email sends to an address starting with
/// `prefix` (email's host is the SMTP variables').
fn assert_all_on(catalog: &Catalog, prefix: &str) {
    for (name, channel) in &catalog.channels {
        let urls: Vec<Option<&String>> = match &channel.settings {
            ChannelSettings::Vk(s) => vec![s.base_url.as_ref()],
            ChannelSettings::Sms(s) => vec![s.smsru_base_url.as_ref(), s.smsc_base_url.as_ref()],
            ChannelSettings::Telegram(s) => vec![s.base_url.as_ref()],
            ChannelSettings::Whatsapp(s) => vec![s.base_url.as_ref()],
            ChannelSettings::Webhook(s) => vec![Some(&s.url)],
            ChannelSettings::Email(_) => continue,
        };
        for url in urls {
            let url = url.unwrap_or_else(|| panic!("{name}: no base URL, so the provider's own"));
            assert!(url.starts_with(prefix), "{name}: {url}");
        }
    }
}

#[test]
fn the_real_override_switches_the_fakes_off_and_every_channel_to_its_provider() {
    let real = yaml("docker-compose.real.yml");
    for name in ["fakes", "mailpit"] {
        assert!(
            !strings(service(&real, name).get("profiles")).is_empty(),
            "{name} is left running with real providers"
        );
    }
    let env = environment(service(&real, "cascade"));
    assert_eq!(
        env.get("CASCADE_INSECURE_DEMO").map(String::as_str),
        Some("0")
    );
    for fake in Fake::ALL {
        let Some((var, _)) = fake.variable() else {
            continue;
        };
        let value = env
            .get(var)
            .unwrap_or_else(|| panic!("{var} is not overridden"));
        assert!(!value.contains("fakes:"), "{var}: {value}");
    }
    // Every secret variable of the shipped files reaches the daemon.
    for file in std::fs::read_dir(repo().join("channels")).unwrap() {
        let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
        for var in text
            .split("${")
            .skip(1)
            .filter_map(|r| r.split([':', '}']).next())
        {
            assert!(env.contains_key(var), "{var} does not reach the daemon");
        }
    }
}

#[test]
fn docker_compose_accepts_both_files() {
    let works = std::process::Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !works {
        // Straight to stderr: the test harness hides `eprintln!` of a test that passes.
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!!!!!\n!!!!!!!! `docker compose` not found: `docker compose config` was NOT run on \
             docker-compose.yml and docker-compose.real.yml (only read by this suite).\n!!!!!!!!\n"
        );
        return;
    }
    for files in [
        vec!["docker-compose.yml"],
        vec!["docker-compose.yml", "docker-compose.real.yml"],
    ] {
        let mut cmd = std::process::Command::new("docker");
        cmd.arg("compose").current_dir(repo());
        for f in &files {
            cmd.args(["-f", f]);
        }
        let out = cmd.args(["config", "-q"]).output().unwrap();
        assert!(
            out.status.success(),
            "docker compose {files:?} config: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------
// End to end: the fakes, the daemon on the shipped files, a clock to move.
// ---------------------------------------------------------------------------

/// A policy of this test only: every channel the shipped ones do not start
/// with, one after the other.
const EVERY_CHANNEL: &str = "stop_on = [\"read\"]\nexpire_after = \"1d\"\n\
    [[steps]]\nchannel = \"sms\"\nwait = \"1m\"\n\
    [[steps]]\nchannel = \"email\"\nwait = \"1m\"\n\
    [[steps]]\nchannel = \"telegram\"\nwait = \"1m\"\n\
    [[steps]]\nchannel = \"whatsapp\"\nwait = \"1m\"\n\
    [[steps]]\nchannel = \"call_centre\"\n";

/// The daemon's environment from docker-compose.yml, each `fakes:<port>`
/// turned into where that fake listens here and Mailpit into the SMTP sink.
fn env_on(stack: &FakeStack, smtp: &smtp::FakeSmtp) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (k, v) in daemon_env() {
        if k.starts_with("CASCADE_") {
            continue; // the test's own cascade.toml says where RabbitMQ and Redis are
        }
        let v = match k.as_str() {
            "SMTP_HOST" => smtp.host(),
            "SMTP_PORT" => smtp.port().to_string(),
            _ => {
                let mut v = v;
                for fake in Fake::ALL {
                    let compose = format!("http://fakes:{}", BASE_PORT + fake.offset());
                    v = v.replace(&compose, &stack.url(fake, "127.0.0.1"));
                }
                v
            }
        };
        env.insert(k, v);
    }
    env
}

/// Copies the shipped `dir` (channels/ or policies/) over the test's.
fn ship(dir: &str, into: &Path) {
    let to = into.join(dir);
    let _ = std::fs::remove_dir_all(&to);
    std::fs::create_dir_all(&to).unwrap();
    for f in std::fs::read_dir(repo().join(dir)).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
    }
}

/// The provider fakes, an SMTP sink and a daemon on the shipped channels/
/// and policies/ (plus `extra_policy` as `every_channel`) with the
/// environment docker-compose.yml gives it, pointed at the fakes; checked
/// first to reach no real provider.
async fn shipped_stack(
    name: &str,
    extra_policy: Option<&str>,
) -> (std::sync::Arc<FakeStack>, smtp::FakeSmtp, Catalog, Running) {
    let stack = FakeStack::start(StackOptions {
        bind: [127, 0, 0, 1].into(),
        base_port: 0,
        callbacks: Callbacks::default(),
    })
    .await
    .unwrap();
    let smtp = smtp::start().await.unwrap();
    let cfg = TestConfig::new(
        name,
        "http://127.0.0.1:9",
        "[receipts]\ncustom = [\"paid\", \"called\", \"no_answer\"]\n\n\
         [replies]\nsink = \"helpdesk\"\nlink_secret = \"a-replies-link-secret-long-enough\"\nstaff = { telegram = \"-100123\" }\n",
        DELIVERY_DELAY,
    );
    ship("channels", &cfg.dir);
    ship("policies", &cfg.dir);
    if let Some(policy) = extra_policy {
        cfg.write("policies/every_channel.toml", policy);
    }
    let env = env_on(&stack, &smtp);
    let catalog = Catalog::load_with_env(&cfg.path(), &|k| env.get(k).cloned())
        .unwrap_or_else(|e| panic!("the shipped files with the compose environment: {e}"));
    // Before anything is sent: no channel may reach a real provider.
    assert_all_on(&catalog, "http://127.0.0.1:");
    let run =
        Running::start_catalog(cfg, catalog.clone(), |o| o.insecure_demo_secrets = true).await;
    (stack, smtp, catalog, run)
}

/// examples/delivery_delay.json with a notification id of this test.
fn example(id: &str, phone: &str) -> Value {
    let text = std::fs::read_to_string(repo().join("examples/delivery_delay.json")).unwrap();
    let mut n: Value = serde_json::from_str(&text).unwrap();
    n["id"] = json!(id);
    n["customer"]["contacts"]["sms"] = json!(phone);
    n
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// The messages a fake's listing shows.
async fn listed(http: &reqwest::Client, stack: &FakeStack, fake: &str) -> Vec<Value> {
    let all = get_json(
        http,
        &format!("{}/received.json", stack.url(Fake::Index, "127.0.0.1")),
    )
    .await;
    all[fake]["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Moves the clock on by 30 s at a time (the retries' and the steps'
/// waits) until `fake` lists a message to `to`.
async fn advancing_until_listed(run: &Running, stack: &FakeStack, fake: &str, to: &str) -> Value {
    let mut found = None;
    wait_until(
        &format!("{fake} gets a message to {to}"),
        AT_ONCE * 3,
        async || {
            found = listed(&run.http, stack, fake)
                .await
                .into_iter()
                .find(|m| m["to"] == to);
            if found.is_none() {
                run.clock.advance(30_000);
            }
            found.is_some()
        },
    )
    .await;
    found.unwrap()
}

async fn wait_listed(
    run: &Running,
    stack: &FakeStack,
    fake: &str,
    holds: impl Fn(&Value) -> bool,
) -> Value {
    let mut found = None;
    wait_until(
        &format!("the {fake} fake lists it"),
        AT_ONCE * 2,
        async || {
            found = listed(&run.http, stack, fake)
                .await
                .into_iter()
                .find(&holds);
            found.is_some()
        },
    )
    .await;
    found.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_delivers_on_every_channel_and_a_read_from_the_index_stops_the_escalation() {
    let (stack, smtp, catalog, run) = shipped_stack("fakes-stack", Some(EVERY_CHANNEL)).await;
    assert_eq!(
        catalog.policies.len(),
        5,
        "the four shipped and this test's"
    );
    stack.set_callbacks(Callbacks::of(&catalog, &run.url("")));
    let index = stack.url(Fake::Index, "127.0.0.1");

    // examples/delivery_delay.json twice: one read on VK, one never.
    let (read, unread) = (run.id("read"), run.id("unread"));
    run.publish(&example(&read, "+79160000001")).await;
    run.publish(&example(&unread, "+79160000002")).await;
    wait_until("both VK messages", AT_ONCE * 2, async || {
        stack.vk.messages().len() == 2
    })
    .await;
    let vk = wait_listed(&run, &stack, "vk", |m| m["to"] == "123456789").await;
    let text = vk["text"].as_str().unwrap();
    assert!(
        text.starts_with("Заказ 1001 задерживается на 2 дня"),
        "{text}"
    );

    // The index's button: VK's message_read, signed with the channel's secret.
    let sent = run.wait_entry(&read, "sent", Some(0)).await;
    let message = sent.provider_message_id.expect("VK's message id");
    let answer = run
        .http
        .post(format!("{index}/read/vk/{message}?format=json"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    run.wait_outcome(&read, "completed").await;

    run.clock.advance(31 * MIN);
    let sms = wait_listed(&run, &stack, "smsru", |m| m["to"] == "79160000002").await;
    assert_eq!(
        sms["text"], "Заказ 1001 задерживается",
        "the SMS's own text"
    );
    settle().await;
    let to_read = listed(&run.http, &stack, "smsru").await;
    assert!(
        !to_read.iter().any(|m| m["to"] == "79160000001"),
        "the read notification escalated to SMS: {to_read:?}"
    );
    assert_eq!(run.outcome(&read).await, Some("completed"));

    // Every other channel, one step a minute; SMS.ru down, so SMSC sends.
    stack.smsru.script().then(Scripted::Transient, 2);
    let every = run.id("every");
    let body = json!({
        "id": every, "policy": "every_channel",
        "customer": { "id": "c-every", "contacts": {
            "sms": "+79160000003", "email": "ivan@example.ru",
            "telegram": "5550003", "whatsapp": "+79160000003"
        }},
        "content": { "text": "Заказ 1002 в пути", "subject": "Заказ 1002" }
    });
    let admitted = cascade::notification::admit_at(body.to_string().as_bytes(), &catalog, 0);
    assert!(admitted.is_ok(), "{:?}", admitted.err().map(|e| e.message));
    run.publish(&body).await;
    let smsc = advancing_until_listed(&run, &stack, "smsc", "79160000003").await;
    assert_eq!(smsc["text"], "Заказ 1002 в пути");
    wait_until("the email", AT_ONCE * 3, async || {
        let got = smtp
            .accepted()
            .iter()
            .any(|m| m.rcpt_to.iter().any(|r| r == "ivan@example.ru"));
        if !got {
            run.clock.advance(30_000);
        }
        got
    })
    .await;
    let telegram = advancing_until_listed(&run, &stack, "telegram", "5550003").await;
    assert_eq!(telegram["text"], "Заказ 1002 в пути");
    let whatsapp = advancing_until_listed(&run, &stack, "whatsapp", "79160000003").await;
    assert_eq!(whatsapp["text"], "Заказ 1002 в пути");
    let task = advancing_until_listed(&run, &stack, "webhook", "c-every").await;
    assert_eq!(task["text"], "Заказ 1002 в пути");
    assert_eq!(task["body"]["notification_id"], json!(every));
    run.wait_outcome(&every, "exhausted").await;

    // Telegram's and WhatsApp's read buttons: the daemon takes their
    // receipts (signed as their channels expect) and records them.
    for (fake, message) in [("telegram", &telegram["id"]), ("whatsapp", &whatsapp["id"])] {
        let message = message.as_str().unwrap();
        let answer = run
            .http
            .post(format!("{index}/read/{fake}/{message}?format=json"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{fake}: {:?}", answer.text().await);
    }

    // The page shows it all, and each read button's receipt went through.
    let page = text_of(&run.http, format!("{index}/")).await;
    for shown in [
        "vk",
        "smsru",
        "smsc",
        "telegram",
        "whatsapp",
        "webhook",
        "Заказ 1002 в пути",
    ] {
        assert!(page.contains(shown), "the index page lacks `{shown}`");
    }
    let sent: Vec<(&str, u16)> = stack.sent().iter().map(|s| (s.fake, s.status)).collect();
    assert_eq!(sent, [("vk", 200), ("telegram", 200), ("whatsapp", 200)]);
    // The cascade was over: the reads are kept as its receipts.
    let events = run.events(&every).await;
    let after: Vec<&String> = events.iter().skip_while(|e| *e != "exhausted").collect();
    assert!(after.iter().any(|e| *e == "receipt"), "{events:?}");

    // `cascade health`, the image's healthcheck: the admin listener from the
    // configuration (a wildcard asked on loopback), then an address that is
    // not listening.
    let admin = run.admin_url("");
    let port = admin.rsplit(':').next().unwrap();
    // Also while a live edit left policies/ invalid: the daemon goes on
    // with its last good set, so it is healthy (health reads only where
    // the admin listener is, not the whole configuration).
    run.cfg
        .write("policies/broken.toml", "[[steps]]\nchannel = 5\n");
    let health = cascade_command()
        .arg("--config")
        .arg(run.cfg.path())
        .arg("health")
        .env("CASCADE_HTTP_ADMIN_LISTEN", format!("0.0.0.0:{port}"))
        .output()
        .unwrap();
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );
    let down = cascade_command()
        .args([
            "health",
            "--timeout",
            "1s",
            "--url",
            "http://127.0.0.1:9/readyz",
        ])
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    drop(run);
}

/// The order-follow-up story on the shipped files (`policies/order_call.toml`,
/// `examples/order_call.json`) and the compose environment: an email, then
/// a call-centre task; `called` with the slot the manager agreed sends a
/// Telegram confirmation quoting it, `no_answer` opens a WhatsApp chat; and
/// what that customer writes back in WhatsApp reaches the helpdesk at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_call_story_branches_both_ways_and_a_reply_reaches_the_helpdesk() {
    let (stack, smtp, _catalog, run) = shipped_stack("order-story", None).await;
    let story = |id: &str, customer: &str, chat: &str, phone: &str| {
        let text = std::fs::read_to_string(repo().join("examples/order_call.json")).unwrap();
        let mut n: Value = serde_json::from_str(&text).unwrap();
        n["id"] = json!(id);
        n["customer"]["id"] = json!(customer);
        n["customer"]["contacts"]["telegram"] = json!(chat);
        n["customer"]["contacts"]["whatsapp"] = json!(phone);
        n["customer"]["contacts"]["sms"] = json!(phone);
        n
    };
    let (called, unanswered) = (run.id("called"), run.id("no-answer"));
    run.publish(&story(&called, "c-called", "5550010", "+79160000010"))
        .await;
    run.publish(&story(
        &unanswered,
        "c-unanswered",
        "5550011",
        "+79160000011",
    ))
    .await;
    wait_until("both emails", AT_ONCE * 2, async || {
        smtp.accepted().len() == 2
    })
    .await;

    // Unopened for two hours: a call-centre task each.
    run.clock.advance(2 * 60 * MIN + MIN);
    wait_listed(&run, &stack, "webhook", |m| m["to"] == "c-called").await;
    wait_listed(&run, &stack, "webhook", |m| m["to"] == "c-unanswered").await;

    // The call got through; the manager typed the slot agreed.
    let post = |body: Value| {
        let (http, url) = (run.http.clone(), run.url("/v1/receipts"));
        async move {
            let answer = http
                .post(url)
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            answer.status().as_u16()
        }
    };
    let slot = json!({ "slot": "в пятницу с 10 до 14" });
    assert_eq!(
        post(json!({ "id": called, "event": "called", "data": slot })).await,
        202
    );
    let confirmation = wait_listed(&run, &stack, "telegram", |m| m["to"] == "5550010").await;
    assert_eq!(
        confirmation["text"],
        "Заказ 1002: доставим в пятницу с 10 до 14. Если планы изменятся, ответьте на это сообщение.",
        "{confirmation}"
    );
    run.wait_outcome(&called, "completed").await;

    // The other call did not: the chat opens in WhatsApp.
    assert_eq!(
        post(json!({ "id": unanswered, "event": "no_answer" })).await,
        202
    );
    let chat = wait_listed(&run, &stack, "whatsapp", |m| m["to"] == "79160000011").await;
    assert!(
        !listed(&run.http, &stack, "telegram")
            .await
            .iter()
            .any(|m| m["to"] == "5550011"),
        "no confirmation without the call"
    );

    // The customer answers in WhatsApp: the helpdesk has it at once.
    let wamid = chat["id"].as_str().unwrap();
    let reply = json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550783881", "phone_number_id": "106540352242922" },
            "messages": [{
                "from": "79160000011", "id": "wamid.REPLY-1", "timestamp": "1763900100",
                "type": "text", "text": { "body": "Лучше в субботу утром" },
                "context": { "from": "15550783881", "id": wamid }
            }]
        }}]}]
    });
    let bytes = reply.to_string().into_bytes();
    let signature =
        cascade::dev::fakes::whatsapp::FakeWhatsApp::signature("demo-app-secret", &bytes);
    let answer = run
        .http
        .post(run.url("/callbacks/whatsapp/whatsapp"))
        .header("X-Hub-Signature-256", signature)
        .header("content-type", "application/json")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let task = wait_listed(&run, &stack, "webhook", |m| {
        m["body"]["reply"]["notification_id"] == json!(unanswered)
    })
    .await;
    assert_eq!(
        task["body"]["reply"]["text"], "Лучше в субботу утром",
        "{task}"
    );
    assert_eq!(task["body"]["reply"]["channel"], "whatsapp");
    assert_eq!(task["body"]["policy"], "order_call:answer");
}
