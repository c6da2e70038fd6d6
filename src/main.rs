//! The `cascade` command line: parses arguments and calls into the library.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use cascade::config::{Catalog, LogFormat, Severity, parse_duration, parse_timezone};
use cascade::dev::embedded::demo;
use cascade::dev::embedded::simulate::{self, Read, SAMPLE_CONTACTS, Scenario};
use cascade::http::EntryView;
use cascade::runtime::daemon::{Daemon, DaemonOptions};
use cascade::runtime::intake::{self, IntakeConfig};
use cascade::runtime::keys::Keys;
use cascade::runtime::store::{ReceiptResult, ReportBook, Store};

// Many small allocations cross the runtime's threads (request futures,
// JSON); glibc's malloc spent ~30% of the daemon's time on them under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "cascade",
    version,
    about = "Cascading notification delivery: one channel first, escalate when unread"
)]
struct Cli {
    /// The daemon's settings; `channels/` and `policies/` are read beside it.
    #[arg(
        long,
        global = true,
        env = "CASCADE_CONFIG",
        default_value = "cascade.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate cascade.toml, channels/ and policies/; exit 1 with every problem.
    /// Warnings (unsafe secrets, settings that defeat their purpose) are
    /// printed and exit 0, unless `--strict`.
    Check {
        /// Exit 1 on warnings too (for CI pipelines).
        #[arg(long)]
        strict: bool,
    },
    /// Print the timeline a policy would produce for a made-up customer; sends nothing.
    Simulate(Box<SimulateArgs>),
    /// Play a day of traffic for ~1,000 customers through the whole pipeline,
    /// in process: no RabbitMQ, no Redis, no network, a virtual clock.
    Demo(DemoArgs),
    /// The daemon: intake from RabbitMQ, scheduler, receipts HTTP server.
    /// Refuses to start on an empty, short or shipped example secret.
    Run {
        /// Start even on the example secrets shipped in the repository
        /// (and other unsafe ones), warning every minute: for a local
        /// try-out, never for a daemon anyone else can reach.
        #[arg(long, env = "CASCADE_INSECURE_DEMO", value_parser = clap::builder::BoolishValueParser::new())]
        insecure_demo_secrets: bool,
    },
    /// Publish a notification (a JSON file, or `-` for standard input) to RabbitMQ.
    Send { file: String },
    /// Print one notification's timeline.
    Status {
        id: String,
        /// One JSON object per timeline entry.
        #[arg(long)]
        json: bool,
    },
    /// Measure the daemon (in-process) against the local RabbitMQ and Redis
    /// and the floor of that stack; prints one table. See BENCHMARKS.md.
    Bench(BenchArgs),
    /// Read rate, time to read, escalations, late reads, cost and money
    /// saved, by policy, step, channel and segment, from the counters the
    /// daemon keeps.
    Report(ReportArgs),
    /// What another wait before the next step would have cost, from the
    /// recorded time to read: `cascade what-if delivery_delay --wait 1=15m`.
    WhatIf(WhatIfArgs),
    /// Inspect and replay the dead-letter queue (`amqp.dead_letter_queue`).
    /// The daemon never consumes it; these commands take its messages
    /// without acknowledging them, so a command that dies loses none.
    #[command(subcommand)]
    Dead(DeadCommand),
    /// Print a JSON Schema (draft 2020-12) producers can validate against:
    /// `cascade schema notification`. Needs no configuration.
    Schema {
        #[arg(value_enum)]
        what: SchemaKind,
    },
    /// Serve every provider fake (VK, SMS.ru, SMSC, Telegram, WhatsApp, a
    /// webhook receiver) on fixed ports for a local try-out, and on the
    /// base port a page of what each received with "mark read" buttons.
    /// See docs/local-stack.md.
    Fakes(FakesArgs),
    /// Exit 0 if the daemon's admin listener answers `/readyz` with 200
    /// within the timeout, 1 otherwise (the container's healthcheck).
    Health {
        /// What to GET [default: http://<http.admin_listen>/readyz].
        #[arg(long)]
        url: Option<String>,
        /// How long to wait for the answer.
        #[arg(long, default_value = "3s")]
        timeout: String,
    },
    /// Record a receipt by hand, e.g. `cascade receipt order-1001:delayed read`.
    Receipt {
        id: String,
        event: String,
        /// The channel the receipt is about.
        #[arg(long)]
        channel: Option<String>,
        /// Data for follow-up texts (`{{data.slot}}`), `key=value`; repeatable,
        /// e.g. `--data "slot=Friday 10-14"`.
        #[arg(long = "data", value_name = "KEY=VALUE")]
        data: Vec<String>,
    },
}

/// The documents `cascade schema` prints.
#[derive(Clone, Copy, clap::ValueEnum)]
enum SchemaKind {
    /// The intake message (the same as docs/notification.schema.json).
    Notification,
}

#[derive(Subcommand)]
enum DeadCommand {
    /// How many messages the dead-letter queue holds, by
    /// `x-cascade-error-code`, and in all. Leaves the queue as it was.
    List {
        /// One JSON object: `queue`, `total`, `by_code`.
        #[arg(long)]
        json: bool,
    },
    /// The n-th message (counted from 1, in queue order): its code, its
    /// error sentence (contacts masked), its headers and its body. The body
    /// and the producer's headers are shown as the producer sent them, not
    /// masked. Leaves the queue as it was.
    Show {
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        n: u64,
    },
    /// Publish dead letters to the intake queue again (persistent, under a
    /// publisher confirm, without the `x-cascade-error*` headers), removing
    /// each from the dead-letter queue only once RabbitMQ confirmed its
    /// copy. The others stay, in their order.
    Replay {
        /// Replay the messages of this code (repeatable).
        #[arg(long = "code", required_unless_present = "all")]
        codes: Vec<String>,
        /// Replay every message, with or without a code.
        #[arg(long, conflicts_with = "codes")]
        all: bool,
        /// Print what would be replayed; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// The range a report covers.
#[derive(Args)]
struct RangeArgs {
    /// The last this long, up to now (`7d`, `24h`).
    #[arg(long, default_value = "7d", conflicts_with = "from")]
    since: String,
    /// From this moment (RFC 3339, `2026-11-23T00:00:00Z`, or a date).
    #[arg(long)]
    from: Option<String>,
    /// To this moment [default: now].
    #[arg(long, requires = "from")]
    to: Option<String>,
}

#[derive(Args)]
struct ReportArgs {
    /// Only this policy.
    #[arg(long)]
    policy: Option<String>,
    #[command(flatten)]
    range: RangeArgs,
    /// Group rows by these, in order: policy, step, channel, segment.
    #[arg(long, default_value = "policy,step,channel")]
    by: String,
    /// One JSON object.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// CSV, a header line first.
    #[arg(long)]
    csv: bool,
}

#[derive(Args)]
struct WhatIfArgs {
    /// The policy (its file name without `.toml`).
    policy: String,
    /// The step and the wait to try: `1=15m` (step 1's wait before step 2),
    /// or the step's channel: `vk=15m`.
    #[arg(long)]
    wait: String,
    #[command(flatten)]
    range: RangeArgs,
    /// One JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SimulateArgs {
    /// The policy to play (its file name without `.toml`).
    policy: String,
    /// Contact kinds the customer has [default: vk,sms,email,telegram,whatsapp].
    #[arg(long, value_delimiter = ',')]
    contacts: Option<Vec<String>>,
    /// Remove contacts from the default set, e.g. `--without vk`.
    #[arg(long, value_delimiter = ',')]
    without: Vec<String>,
    /// The customer's channel preferences, most preferred first.
    #[arg(long, value_delimiter = ',')]
    prefer: Vec<String>,
    /// Channels the customer opted out of.
    #[arg(long, value_delimiter = ',')]
    opt_out: Vec<String>,
    /// The customer reads this long after the first message (or after the one on `--read-on`).
    #[arg(long, conflicts_with = "never_read")]
    read_after: Option<String>,
    /// Count `--read-after` from the send on this channel.
    #[arg(long, requires = "read_after")]
    read_on: Option<String>,
    /// With `--read-after`: the receipt word [default: `opened` for email,
    /// else `read`]. Else a receipt word to play `--after` a while
    /// (repeatable, in order), e.g. `--event called --after 2h30m`.
    #[arg(long)]
    event: Vec<String>,
    /// How long after the previous `--event` (the first: after the start)
    /// its receipt arrives, whatever went out by then.
    #[arg(long, conflicts_with = "read_after")]
    after: Vec<String>,
    /// The customer never reads (the default when `--read-after` is not given).
    #[arg(long)]
    never_read: bool,
    /// Channels whose provider refuses this customer (invalid number, blocked bot).
    #[arg(long, value_delimiter = ',')]
    fail: Vec<String>,
    /// The customer's IANA time zone [default: defaults.timezone of cascade.toml].
    #[arg(long)]
    tz: Option<String>,
    /// When the notification arrives: RFC 3339 (`2026-11-23T17:50:00Z`) or the
    /// customer's local time (`2026-11-23T20:50`) [default: now].
    #[arg(long)]
    start: Option<String>,
    /// Delay the first step to this moment (same forms as `--start`).
    #[arg(long)]
    send_at: Option<String>,
    /// One JSON object per timeline entry.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// Sets the size of every workload at once (W1, W2, W3).
    #[arg(long)]
    n: Option<usize>,
    /// W1: notifications pre-published before the daemon starts.
    #[arg(long, default_value_t = 50_000)]
    w1_n: usize,
    /// W2: cascades made due at the same moment.
    #[arg(long, default_value_t = 20_000)]
    w2_n: usize,
    /// W2s: notifications published at a steady pace over 5 s, each
    /// escalating 2 s after its first send.
    #[arg(long, default_value_t = 2_000)]
    w2s_n: usize,
    /// W3: cascades left waiting.
    #[arg(long, default_value_t = 200_000)]
    w3_n: usize,
    /// Round trips of the provider and Redis floors.
    #[arg(long, default_value_t = 20_000)]
    floor_n: usize,
    /// The longest any one wait of a workload may take, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// The daemon's `amqp.prefetch` (and the consume-and-ack floor's).
    #[arg(long, default_value_t = 256)]
    prefetch: u16,
    /// The scheduler's concurrency (and the provider and Redis floors').
    #[arg(long, default_value_t = 512)]
    concurrency: usize,
    /// The scheduler's batch: most cascades claimed per call.
    #[arg(long, default_value_t = cascade::runtime::scheduler::SchedulerConfig::default().batch)]
    batch: usize,
    /// The workloads' `amqp.queue_type` (`classic` keeps W1 comparable with
    /// the AMQP floor and with earlier figures).
    #[arg(long, default_value = "classic")]
    queue_type: String,
    /// Which workloads to run, e.g. `--only w1,w2` (the floors always run).
    #[arg(long, value_delimiter = ',', default_values_t = ["w1".to_owned(), "w2".to_owned(), "w2s".to_owned(), "w3".to_owned()])]
    only: Vec<String>,
}

#[derive(Args)]
struct FakesArgs {
    /// The address every fake binds (0.0.0.0 to be reached from other containers).
    #[arg(long, env = "CASCADE_FAKES_BIND", default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// The index page's port; the fakes take the next six (VK, SMS.ru, SMSC,
    /// Telegram, WhatsApp, webhook).
    #[arg(long, env = "CASCADE_FAKES_PORT", default_value_t = cascade::dev::fakes::stack::BASE_PORT)]
    port: u16,
    /// Where the daemon's public listener is, for the read receipts the
    /// index sends [default: http.public_url of the configuration].
    #[arg(long, env = "CASCADE_FAKES_DAEMON_URL")]
    daemon_url: Option<String>,
    /// The host name the daemon reaches the fakes by, in the variables printed
    /// at start.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
}

#[derive(Args)]
struct DemoArgs {
    /// How many customers.
    #[arg(long, default_value_t = 1000)]
    customers: usize,
    /// Seed of the made-up traffic; the same seed plays the same day.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// How many timelines to print in full.
    #[arg(long, default_value_t = 6)]
    timelines: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Check { strict } => return check(&cli, *strict),
        Command::Simulate(args) => simulate_cmd(&cli, args),
        Command::Demo(args) => demo_cmd(&cli, args),
        Command::Run {
            insecure_demo_secrets,
        } => with_runtime(run_cmd(&cli, *insecure_demo_secrets)),
        Command::Bench(args) => with_runtime(bench_cmd(&cli, args)),
        Command::Send { file } => with_runtime(send_cmd(&cli, file)),
        Command::Status { id, json } => with_runtime(status_cmd(&cli, id, *json)),
        Command::Dead(command) => with_runtime(dead_cmd(&cli, command)),
        Command::Receipt {
            id,
            event,
            channel,
            data,
        } => with_runtime(receipt_cmd(&cli, id, event, channel.as_deref(), data)),
        Command::Schema {
            what: SchemaKind::Notification,
        } => print_json(&cascade::notification::json_schema()),
        Command::Report(args) => with_runtime(report_cmd(&cli, args)),
        Command::Fakes(args) => with_runtime(fakes_cmd(&cli, args)),
        Command::Health { url, timeout } => with_runtime(health_cmd(&cli, url.as_deref(), timeout)),
        Command::WhatIf(args) => with_runtime(what_if_cmd(&cli, args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Pretty JSON and a final newline, as the committed schema file holds it.
fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn load(cli: &Cli) -> anyhow::Result<Catalog> {
    Catalog::load(&cli.config)
        .map_err(|errors| anyhow::anyhow!("the configuration is not valid:\n{errors}"))
}

fn check(cli: &Cli, strict: bool) -> ExitCode {
    match Catalog::load(&cli.config) {
        Ok(catalog) => {
            let warnings = catalog.warnings();
            println!(
                "ok: {} channels ({}), {} policies",
                catalog.channels.len(),
                catalog
                    .channels
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                catalog.policies.len()
            );
            for line in catalog.summary() {
                println!("  {line}");
            }
            for w in &warnings {
                eprintln!("{}", w.line(Severity::Warning));
            }
            if warnings.is_empty() {
                ExitCode::SUCCESS
            } else if strict {
                eprintln!(
                    "{} warning{} (--strict makes them fatal)",
                    warnings.len(),
                    if warnings.len() == 1 { "" } else { "s" }
                );
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{}", e.line(Severity::Error));
            }
            eprintln!(
                "{} problem{} found",
                errors.0.len(),
                if errors.0.len() == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
    }
}

/// RFC 3339 with an offset, or a civil date-time in `tz`.
fn parse_moment(s: &str, tz: &TimeZone) -> anyhow::Result<i64> {
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    let civil: DateTime = s.parse().with_context(|| {
        format!(
            "`{s}` is neither RFC 3339 (2026-11-23T17:50:00Z) nor a local time (2026-11-23T20:50)"
        )
    })?;
    let zoned = tz.to_ambiguous_zoned(civil).compatible()?;
    Ok(zoned.timestamp().as_millisecond())
}

/// The made-up customer and their behaviour, from the command line.
fn scenario_of(catalog: &cascade::config::Catalog, a: &SimulateArgs) -> anyhow::Result<Scenario> {
    let tz = match &a.tz {
        Some(name) => parse_timezone(name).map_err(anyhow::Error::msg)?,
        None => catalog.settings.defaults.timezone.clone(),
    };
    let start_ms = match &a.start {
        Some(s) => parse_moment(s, &tz)?,
        None => Timestamp::now().as_millisecond(),
    };
    let send_at_ms = a
        .send_at
        .as_deref()
        .map(|s| parse_moment(s, &tz))
        .transpose()?;
    let mut contacts: Vec<String> = match &a.contacts {
        Some(c) => c.clone(),
        None => SAMPLE_CONTACTS.iter().map(|(k, _)| k.to_string()).collect(),
    };
    contacts.retain(|c| !a.without.contains(c));
    for ch in a.fail.iter().chain(&a.read_on) {
        if !catalog.channels.contains_key(ch) {
            bail!(
                "no channel `{ch}`; channels: {}",
                catalog
                    .channels
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let duration = |d: &str| -> anyhow::Result<i64> {
        Ok(cascade::config::duration_ms(
            parse_duration(d).map_err(anyhow::Error::msg)?,
        ))
    };
    let read = match &a.read_after {
        Some(d) => {
            if a.event.len() > 1 {
                bail!("--read-after takes one --event (the word the read brings)");
            }
            Some(Read {
                after_ms: duration(d)?,
                on_channel: a.read_on.clone(),
                event: a.event.first().cloned(),
            })
        }
        None => None,
    };
    let mut events = Vec::new();
    if read.is_none() {
        if a.event.len() != a.after.len() {
            bail!(
                "give each --event its --after (how long after the previous one, or the start): {} --event, {} --after",
                a.event.len(),
                a.after.len()
            );
        }
        let mut at_ms = start_ms;
        for (event, after) in a.event.iter().zip(&a.after) {
            at_ms = at_ms.saturating_add(duration(after)?);
            events.push((event.trim().to_owned(), at_ms));
        }
    }
    Ok(Scenario {
        policy: a.policy.clone(),
        contacts,
        preferences: a.prefer.clone(),
        opt_out: a.opt_out.clone(),
        tz,
        start_ms,
        send_at_ms,
        read,
        failing: a.fail.clone(),
        events,
    })
}

fn simulate_cmd(cli: &Cli, a: &SimulateArgs) -> anyhow::Result<()> {
    let catalog = load(cli)?;
    let scenario = scenario_of(&catalog, a)?;
    let lines = simulate::simulate(&catalog, &scenario).map_err(anyhow::Error::msg)?;
    if a.json {
        for l in &lines {
            println!("{}", serde_json::to_string(l)?);
        }
    } else {
        let policy = &catalog.policies[&scenario.policy];
        println!("policy {}: {}", policy.name, policy.description);
        let reads = match &scenario.read {
            Some(r) => format!(
                "reads {} after the {} message",
                cascade::config::fmt_ms(r.after_ms),
                r.on_channel.as_deref().unwrap_or("first")
            ),
            None if scenario.events.is_empty() => "never reads".into(),
            None => {
                let played: Vec<String> = scenario
                    .events
                    .iter()
                    .map(|(word, at)| {
                        format!(
                            "{word} at {}",
                            simulate::offset((at - scenario.start_ms) / 1000)
                        )
                    })
                    .collect();
                format!("receipts {}", played.join(", "))
            }
        };
        println!(
            "customer: contacts {}; time zone {}; {reads}\n",
            if scenario.contacts.is_empty() {
                "none".into()
            } else {
                scenario.contacts.join(", ")
            },
            scenario.tz.iana_name().unwrap_or("?"),
        );
        print!("{}", simulate::render_text(&lines));
    }
    Ok(())
}

fn demo_cmd(cli: &Cli, a: &DemoArgs) -> anyhow::Result<()> {
    let catalog = load(cli)?;
    let started = std::time::Instant::now();
    let opts = demo::DemoOptions {
        customers: a.customers,
        seed: a.seed,
        timelines: a.timelines,
    };
    let report = demo::run(&catalog, &opts);
    println!(
        "cascade demo: {} customers, {} notifications over one day (virtual clock), seed {}\n",
        a.customers, report.intake.published, a.seed
    );
    print!("{}", report.text);
    println!(
        "\nPlayed in {:.2} s of real time.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn with_runtime(f: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// Log lines on standard output, JSON or text (`log.format`); `CASCADE_LOG`
/// filters (default `info`). The fields are the same in both: each value
/// that could name a customer is masked where the line is written.
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CASCADE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => logs.init(),
    }
}

async fn run_cmd(cli: &Cli, insecure_demo_secrets: bool) -> anyhow::Result<()> {
    // The format is a setting: the configuration is read first, and a
    // configuration that does not load is reported on standard error.
    let catalog = load(cli)?;
    init_logs(catalog.settings.log_format);
    let unsafe_secrets = &catalog.secret_problems;
    if !unsafe_secrets.is_empty() {
        if !insecure_demo_secrets {
            for problem in unsafe_secrets {
                eprintln!("error: {problem}");
            }
            bail!(
                "refusing to start on {} unsafe secret{} (for a local try-out only: --insecure-demo-secrets or CASCADE_INSECURE_DEMO=1)",
                unsafe_secrets.len(),
                if unsafe_secrets.len() == 1 { "" } else { "s" }
            );
        }
        tracing::warn!(
            unsafe_secrets = unsafe_secrets.len(),
            "--insecure-demo-secrets: running on unsafe secrets; never expose this daemon"
        );
    }
    let options = DaemonOptions {
        config_path: Some(cli.config.clone()),
        insecure_demo_secrets,
        ..Default::default()
    };
    let daemon = Daemon::start(catalog, options).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
    }
    daemon.stop(std::time::Duration::from_secs(20)).await;
    tracing::info!("stopped");
    Ok(())
}

async fn bench_cmd(cli: &Cli, a: &BenchArgs) -> anyhow::Result<()> {
    // Warnings only, on standard error: the table goes to standard output.
    let filter = tracing_subscriber::EnvFilter::try_from_env("CASCADE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
    // Only the service addresses are taken from the settings.
    let catalog = load(cli)?;
    let opts = cascade::dev::bench::BenchOptions {
        // One node of a list: the bench measures one broker.
        amqp_url: cascade::runtime::intake::IntakeConfig::from(&catalog.settings.amqp)
            .nodes()
            .next()
            .unwrap_or_default()
            .to_owned(),
        redis: catalog.settings.redis.target.clone(),
        w1_n: a.n.unwrap_or(a.w1_n),
        w2_n: a.n.unwrap_or(a.w2_n),
        w2s_n: a.w2s_n,
        w3_n: a.n.unwrap_or(a.w3_n),
        floor_n: a.floor_n,
        timeout: std::time::Duration::from_secs(a.timeout),
        prefetch: a.prefetch,
        concurrency: a.concurrency,
        batch: a.batch,
        queue_type: a.queue_type.clone(),
        run_w1: a.only.iter().any(|w| w == "w1"),
        run_w2: a.only.iter().any(|w| w == "w2"),
        run_w2s: a.only.iter().any(|w| w == "w2s"),
        run_w3: a.only.iter().any(|w| w == "w3"),
    };
    eprintln!(
        "cascade bench: W1 {}, W2 {}, W3 {} (floors {}) against {} and {}",
        opts.w1_n,
        opts.w2_n,
        opts.w3_n,
        opts.floor_n,
        opts.amqp_url,
        opts.redis.describe()
    );
    let report = cascade::dev::bench::run(&opts).await?;
    println!(
        "cascade bench, {}, {} CPUs",
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    print!("{}", cascade::dev::bench::render(&report, &opts));
    Ok(())
}

async fn send_cmd(cli: &Cli, file: &str) -> anyhow::Result<()> {
    let catalog = load(cli)?;
    let body = if file == "-" {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
        b
    } else {
        std::fs::read(file).with_context(|| format!("cannot read {file}"))?
    };
    // Say what is wrong now rather than leave it to the dead-letter queue.
    let now_ms = jiff::Timestamp::now().as_millisecond();
    if let Err(e) = cascade::notification::admit_at(&body, &catalog, now_ms) {
        eprintln!(
            "warning: the daemon will dead-letter this message: {} ({})",
            e.message,
            e.code.as_str()
        );
    }
    let config = IntakeConfig::from(&catalog.settings.amqp);
    if !intake::publish(&config, &body).await? {
        bail!("RabbitMQ did not confirm the message");
    }
    println!("published to {}", config.queue);
    Ok(())
}

async fn store(catalog: &Catalog) -> anyhow::Result<Store> {
    let r = &catalog.settings.redis;
    Ok(Store::connect_trusting(
        &r.target,
        r.ca_pem.as_deref(),
        Keys::new(&r.prefix, r.timer_shards),
        r.retention_ms,
    )
    .await?
    .with_report(ReportBook::new(&catalog.settings.report)))
}

async fn status_cmd(cli: &Cli, id: &str, json: bool) -> anyhow::Result<()> {
    let catalog = load(cli)?;
    let store = store(&catalog).await?;
    let Some((loaded, entries)) = store.details(id).await? else {
        bail!("no notification `{id}` (unknown, or its retention ran out)");
    };
    let data = store.receipt_data(id).await?;
    if json {
        // As the timeline API shows them: steps counted from 1, reasons masked.
        for e in entries {
            println!("{}", serde_json::to_string(&EntryView::of(e))?);
        }
        return Ok(());
    }
    print!(
        "{}",
        cascade::runtime::status::render(id, &loaded, &entries, &catalog)
    );
    // What came with its receipts, for follow-up texts (`{{data.<key>}}`).
    for (key, value) in &data {
        println!("data.{key}: {}", cascade::pii::scrub(value));
    }
    Ok(())
}

/// A range's ends, Unix ms.
fn range_ms(r: &RangeArgs) -> anyhow::Result<(i64, i64)> {
    let now = Timestamp::now().as_millisecond();
    let moment = |s: &str| -> anyhow::Result<i64> {
        if let Ok(t) = s.parse::<Timestamp>() {
            return Ok(t.as_millisecond());
        }
        let d: jiff::civil::Date = s
            .parse()
            .with_context(|| format!("`{s}` is neither an RFC 3339 time nor a date"))?;
        Ok(d.to_zoned(TimeZone::UTC)?.timestamp().as_millisecond())
    };
    match &r.from {
        Some(from) => {
            let to = r.to.as_deref().map(moment).transpose()?.unwrap_or(now);
            Ok((moment(from)?, to))
        }
        None => {
            let since = parse_duration(&r.since).map_err(anyhow::Error::msg)?;
            let back = i64::try_from(since.as_millis()).unwrap_or(i64::MAX);
            Ok((now.saturating_sub(back), now))
        }
    }
}

async fn report_cmd(cli: &Cli, a: &ReportArgs) -> anyhow::Result<()> {
    let catalog = load(cli)?;
    // `P:answer` names the staff cascades of replies to `P`'s notifications.
    if let Some(p) = &a.policy
        && !catalog
            .policies
            .contains_key(p.strip_suffix(":answer").unwrap_or(p))
    {
        eprintln!(
            "warning: `{p}` is not a policy of this configuration (its counters are read all the same)"
        );
    }
    let (from_ms, to_ms) = range_ms(&a.range)?;
    let req = cascade::runtime::reports::ReportRequest {
        from_ms,
        to_ms,
        policy: a.policy.clone(),
        by: cascade::report::Dimension::parse_list(&a.by).map_err(anyhow::Error::msg)?,
    };
    let report = cascade::runtime::reports::report(&store(&catalog).await?, &catalog, &req).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if a.csv {
        print!("{}", cascade::report::render::report_csv(&report));
    } else {
        print!("{}", cascade::report::render::report_table(&report));
    }
    Ok(())
}

async fn what_if_cmd(cli: &Cli, a: &WhatIfArgs) -> anyhow::Result<()> {
    let catalog = load(cli)?;
    let Some((step, wait)) = a.wait.split_once('=') else {
        bail!("--wait takes <step>=<duration>, e.g. 1=15m or vk=15m");
    };
    let step = cascade::runtime::reports::find_step(&catalog, &a.policy, step.trim())
        .map_err(anyhow::Error::msg)?;
    let wait = parse_duration(wait.trim()).map_err(anyhow::Error::msg)?;
    let (from_ms, to_ms) = range_ms(&a.range)?;
    let w = cascade::runtime::reports::what_if_for(
        &store(&catalog).await?,
        &catalog,
        &a.policy,
        step,
        Some(wait.as_millis() as i64),
        from_ms,
        to_ms,
    )
    .await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&w)?);
    } else {
        print!("{}", cascade::report::render::what_if_table(&w));
    }
    Ok(())
}

async fn fakes_cmd(cli: &Cli, a: &FakesArgs) -> anyhow::Result<()> {
    use cascade::dev::fakes::stack::{Callbacks, Fake, FakeStack, StackOptions};
    // The channels say which secrets the daemon checks; without a
    // configuration the fakes still answer sends, only the index's read
    // buttons have nowhere to go.
    let callbacks = match Catalog::load(&cli.config) {
        Ok(catalog) => {
            let daemon = a
                .daemon_url
                .clone()
                .unwrap_or_else(|| catalog.settings.http.public_url.clone());
            Callbacks::of(&catalog, &daemon)
        }
        Err(errors) => {
            eprintln!(
                "warning: {} not loaded ({} problem{}), so the index sends no read receipts",
                cli.config.display(),
                errors.0.len(),
                if errors.0.len() == 1 { "" } else { "s" }
            );
            Callbacks::default()
        }
    };
    let stack = FakeStack::start(StackOptions {
        bind: a.bind,
        base_port: a.port,
        callbacks,
    })
    .await?;
    println!(
        "cascade fakes: what each received on {}/ (JSON: /received.json)",
        stack.url(Fake::Index, &a.host)
    );
    println!("point the shipped channels at them with:");
    for (name, value) in stack.env(&a.host) {
        println!("  {name}={value}");
    }
    // SIGTERM too: in a container this is process 1, which the kernel
    // does not stop on a signal it has no handler for.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

async fn health_cmd(cli: &Cli, url: Option<&str>, timeout: &str) -> anyhow::Result<()> {
    let url = match url {
        Some(u) => u.to_owned(),
        None => {
            let listen = &cascade::config::admin_listen_alone(&cli.config);
            // A wildcard listener is reached on loopback.
            let addr = listen
                .parse::<std::net::SocketAddr>()
                .map(|mut a| {
                    if a.ip().is_unspecified() {
                        a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                    }
                    a.to_string()
                })
                .unwrap_or_else(|_| listen.clone());
            format!("http://{addr}/readyz")
        }
    };
    let timeout = parse_duration(timeout).map_err(anyhow::Error::msg)?;
    let answer = reqwest::Client::builder()
        .timeout(timeout)
        .build()?
        .get(&url)
        .send()
        .await
        .with_context(|| {
            format!(
                "no answer from {url} (waited at most {})",
                humantime::format_duration(timeout)
            )
        })?;
    let status = answer.status();
    if !status.is_success() {
        bail!("{url} answered {status}");
    }
    println!("{url}: {status}");
    Ok(())
}

async fn receipt_cmd(
    cli: &Cli,
    id: &str,
    event: &str,
    channel: Option<&str>,
    data: &[String],
) -> anyhow::Result<()> {
    let data = cascade::core::receipt_data::from_pairs(data.iter().map(String::as_str))
        .map_err(|e| anyhow::anyhow!("--data: {}", e.message))?;
    let catalog = load(cli)?;
    let now = Timestamp::now().as_millisecond();
    let store = store(&catalog).await?;
    let result = store
        .record_receipt_with_data(id, event, channel, &data, now)
        .await?;
    match result {
        ReceiptResult::Recorded => println!("recorded {event} for {id}"),
        ReceiptResult::AlreadyRecorded => println!("{event} was already recorded for {id}"),
        ReceiptResult::UnknownNotification => bail!("no notification `{id}`"),
        ReceiptResult::DataFull(held) => bail!(
            "`{id}` holds {held} data keys; with these it would pass {} (nothing was recorded)",
            cascade::core::receipt_data::MAX_KEYS
        ),
    }
    if event == cascade::core::replies::ANSWERED {
        let n = store.spread_answer(id, now).await?;
        if n > 0 {
            println!("answered {n} open repl{}", if n == 1 { "y" } else { "ies" });
        }
    }
    Ok(())
}

async fn dead_cmd(cli: &Cli, command: &DeadCommand) -> anyhow::Result<()> {
    use cascade::runtime::dead_letters::{self as dead, BODY_LIMIT, Selection};
    let catalog = load(cli)?;
    let config = IntakeConfig::from(&catalog.settings.amqp);
    match command {
        DeadCommand::List { json } => {
            let letters = dead::read(&config).await?;
            if let Some(w) = dead::reads_warning(&letters) {
                eprintln!("{w}");
            }
            let counts = dead::count(&config.dead_letter_queue, &letters);
            if *json {
                println!("{}", serde_json::to_string(&counts)?);
            } else {
                print!("{}", dead::render_counts(&counts));
            }
        }
        DeadCommand::Show { n } => {
            let letters = dead::read(&config).await?;
            if let Some(w) = dead::reads_warning(&letters) {
                eprintln!("{w}");
            }
            let Some(l) = usize::try_from(*n - 1).ok().and_then(|i| letters.get(i)) else {
                bail!(
                    "{} holds {} message{}",
                    config.dead_letter_queue,
                    letters.len(),
                    if letters.len() == 1 { "" } else { "s" }
                );
            };
            println!(
                "message {n} of {} in {}",
                letters.len(),
                config.dead_letter_queue
            );
            println!("code:  {}", l.code);
            let error = l.error.as_deref().unwrap_or("-");
            println!("error: {}", cascade::pii::scrub(error));
            println!("headers:");
            for (name, value) in &l.headers {
                let value = if name == dead::ERROR_HEADER {
                    cascade::pii::scrub(value)
                } else {
                    value.into()
                };
                println!("  {name}: {value}");
            }
            println!("body ({} bytes, as the producer sent it):", l.body.len());
            println!("{}", dead::render_body(&l.body, BODY_LIMIT));
        }
        DeadCommand::Replay {
            codes,
            all,
            dry_run,
        } => {
            let selection = Selection {
                codes: codes.clone(),
                all: *all,
            };
            let r = dead::replay(&config, &selection, *dry_run).await?;
            let verb = if *dry_run { "would replay" } else { "replayed" };
            println!(
                "{verb} {} to {}{}",
                r.total(),
                config.queue,
                if *dry_run {
                    " (dry run: nothing changed)"
                } else {
                    ""
                }
            );
            for (code, count) in &r.by_code {
                println!("  {code}  {count}");
            }
            println!("left in {}: {}", config.dead_letter_queue, r.left);
        }
    }
    Ok(())
}
