//! The operator console end to end: a few hundred notifications through the
//! daemon (VK then SMS, through the providers' fakes), read on VK at once,
//! a few minutes later, a quarter of an hour later, on VK soon after the
//! SMS (late reads), on the SMS, hours later, or never; then the console's
//! pages on the admin listener must show what `cascade report` and
//! `cascade what-if` compute, with the same formatting, and a notification's
//! events; in a real browser too (Debian's `chromium`, headless), whose DOM
//! must hold the numbers `cascade report --json` gives, and whose screenshot
//! is kept. The public listener must not serve the console.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use cascade::core::EntryKind;
use cascade::dev::fakes::{smsru::FakeSmsRu, vk::FakeVk};
use cascade::report::render::{self, REPORT_COLUMNS, WHAT_IF_COLUMNS};
use cascade::report::{Dimension, Row};
use cascade::runtime::clock::Clock;
use cascade::runtime::reports::{ReportRequest, report, what_if_for};
use common::*;
use serde_json::{Value, json};

const MIN: i64 = 60_000;
const N: usize = 240;

const POLICY: &str = "description = \"Order delayed: VK first, an SMS if unread after 30 minutes\"\n\
    stop_on = [\"read\"]\nexpire_after = \"12h\"\n\n\
    [[steps]]\nchannel = \"vk\"\nwait = \"30m\"\n\n[[steps]]\nchannel = \"sms\"\n";

/// When a notification is read: 0 VK at once, 1 VK after 4 minutes, 2 VK
/// after 14, 3 VK 5 minutes after the SMS (a late read), 4 the SMS 5
/// minutes after it (the receipts API names it), 5 two hours after the SMS
/// (no channel named: the latest message), 6 never.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Read {
    VkAtOnce,
    VkAfter4m,
    VkAfter14m,
    VkLate,
    Sms,
    Hours,
    Never,
}

/// Each segment reads in its own way.
fn segment(i: usize) -> Option<&'static str> {
    match i % 4 {
        0 => Some("new"),
        1 => Some("vip"),
        2 => None,
        _ => Some("regular"),
    }
}

fn read(i: usize) -> Read {
    use Read::*;
    let table = match i % 4 {
        0 => [
            VkAtOnce, VkAfter4m, VkAfter14m, VkAfter14m, VkLate, Sms, Hours, Hours, Never, Never,
        ],
        1 => [
            VkAtOnce, VkAtOnce, VkAtOnce, VkAfter4m, VkAfter4m, VkAfter14m, VkLate, Sms, Never,
            Never,
        ],
        2 => [
            VkAtOnce, VkAfter4m, VkLate, Sms, Hours, Never, Never, Never, Never, Never,
        ],
        _ => [
            VkAtOnce, VkAtOnce, VkAfter4m, VkAfter4m, VkAfter14m, VkLate, Sms, Hours, Never, Never,
        ],
    };
    table[(i / 4) % 10]
}

/// The text of the first element carrying `data-k="<col>"` after the first
/// `data-row="<row>"` that follows `anchor` (the page's start when empty),
/// before the next row; entities undone.
fn cell(html: &str, anchor: &str, row: &str, col: &str) -> Option<String> {
    let start = if anchor.is_empty() {
        0
    } else {
        html.find(anchor)?
    };
    let html = &html[start..];
    let at = html.find(&format!("data-row=\"{row}\""))?;
    let rest = &html[at + 1..];
    let end = rest.find("data-row=").unwrap_or(rest.len());
    let rest = &rest[..end];
    let k = rest.find(&format!("data-k=\"{col}\""))?;
    let rest = &rest[k..];
    let open = rest.find('>')?;
    let text = &rest[open + 1..];
    let close = text.find('<')?;
    Some(unescape(&text[..close]))
}

/// The text of the first `<dd data-k="<col>">` after `anchor`.
fn fact(html: &str, anchor: &str, col: &str) -> Option<String> {
    let rest = &html[html.find(anchor)?..];
    let open = format!("<dd data-k=\"{col}\">");
    let text = &rest[rest.find(&open)? + open.len()..];
    Some(unescape(&text[..text.find('<')?]))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// A report row from `cascade report --json`, for `render::report_cells`.
fn row_of(v: &Value) -> Row {
    let int = |k: &str| v[k].as_i64().unwrap_or_else(|| panic!("{k} in {v}"));
    Row {
        policy: v["policy"].as_str().map(str::to_owned),
        // The JSON counts steps from 1; a row keeps the index from 0.
        step: v["step"].as_u64().map(|s| s as u8 - 1),
        channel: v["channel"].as_str().map(str::to_owned),
        accepted: int("accepted"),
        sent: int("sent"),
        read: int("read"),
        read_rate: v["read_rate"].as_f64(),
        ttr_p50_ms: v["ttr_p50_ms"].as_i64(),
        ttr_p90_ms: v["ttr_p90_ms"].as_i64(),
        escalated: int("escalated"),
        escalation_rate: v["escalation_rate"].as_f64(),
        late_reads: int("late_reads"),
        late_read_rate: v["late_read_rate"].as_f64(),
        failed: int("failed"),
        cost: v["cost"].as_f64().unwrap(),
        saved: v["saved"].as_f64().unwrap(),
        sms_avoided: int("sms_avoided"),
        ..Row::default()
    }
}

/// Every cell of the report table (and the headline numbers) on `html`
/// against `rows` and `total` as `render` formats them.
fn assert_report_shown(html: &str, by: &[Dimension], rows: &[Row], total: &Row, what: &str) {
    let mut checked = 0;
    // Rows with nothing in the table's columns are left out, as the CLI does.
    let shown = rows.iter().filter(|row| !render::blank(row));
    for row in shown.chain(std::iter::once(total)) {
        let key = if std::ptr::eq(row, total) {
            "all".to_owned()
        } else {
            render::group_cells(row, by).join("|")
        };
        for (col, want) in REPORT_COLUMNS.iter().zip(render::report_cells(row)) {
            let shown = cell(html, "id=\"report\"", &key, col);
            assert_eq!(
                shown.as_deref(),
                Some(want.as_str()),
                "{what}: row {key}, column {col}"
            );
            checked += 1;
        }
    }
    for (col, want) in [
        ("sent", total.sent.to_string()),
        ("read", total.read.to_string()),
        ("read rate", render::percent(total.read_rate)),
        ("escalated", total.escalated.to_string()),
        ("late reads", total.late_reads.to_string()),
        ("cost", render::money(total.cost)),
        ("saved", render::money(total.saved)),
        ("SMS avoided", total.sms_avoided.to_string()),
    ] {
        assert_eq!(
            cell(html, "", "total", col).as_deref(),
            Some(want.as_str()),
            "{what}: headline {col}"
        );
    }
    assert!(
        checked >= 3 * REPORT_COLUMNS.len(),
        "{what}: {checked} cells"
    );
}

/// The browser to drive: `chromium`, `chromium-browser` or `google-chrome`
/// on the PATH.
fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Runs headless chromium in a window of `size` with `args` and the URL,
/// and returns its stdout; killed after 120 s.
fn chromium(binary: &Path, profile: &Path, size: (u32, u32), args: &[String], url: &str) -> String {
    let mut child = std::process::Command::new(binary)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--window-size={},{}", size.0, size.1))
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let started = Instant::now();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
        out
    });
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut out);
        out
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium {args:?} {url} ran for more than 120 s: {}",
                err_reader.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = reader.join().unwrap();
    let err = err_reader.join().unwrap_or_default();
    assert!(status.success(), "chromium {args:?} {url}: {status}\n{err}");
    out
}

/// The width and height of a PNG, or `None` if it is not one.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some((be(&bytes[16..20]), be(&bytes[20..24])))
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_what_the_report_counts_in_a_browser_too() {
    let began = Instant::now();
    let vk = FakeVk::start().await;
    let sms = FakeSmsRu::start().await;
    let cfg = TestConfig::new("console-e2e", "http://127.0.0.1:9", "", POLICY);
    cfg.vk_and_smsru(&vk.base_url(), sms.base_url(), SMS_PRICE);
    let config_path = cfg.path();
    // The play runs the clock hours ahead: keep finished notifications
    // (and a customer's list) longer than the tests' usual hour.
    let toml = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(
        &config_path,
        toml.replacen("retention = \"1h\"", "retention = \"1d\"", 1),
    )
    .unwrap();
    let mut run = Running::start(cfg).await;
    let http = reqwest::Client::new();

    // The console is on the admin listener only.
    for path in [
        "/console",
        "/console?since=7d",
        "/console/what-if",
        "/console/search?q=x",
        "/console/dead-letters",
    ] {
        let r = http.get(run.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "the public listener serves {path}");
    }

    // Dead letters, counted by code.
    run.publish_bytes(b"{not json").await;
    run.publish_bytes(b"{not json either").await;
    run.publish(&json!({
        "id": run.id("nowhere"), "policy": "no_such_policy",
        "customer": { "id": "c-x", "contacts": { "vk": "1" } },
        "content": { "text": "x" }
    }))
    .await;

    let ids = publish_orders(&run, &vk, N, segment).await;
    let who = |r: Read| (0..N).filter(move |i| read(*i) == r);
    let vk_read = async |i: usize| vk_reads(&run, &vk, i).await;
    let api_read = async |i: usize, channel: Option<&str>| {
        let mut body = json!({ "id": ids[i], "event": "read" });
        if let Some(c) = channel {
            body["channel"] = json!(c);
        }
        let r = http
            .post(run.url("/v1/receipts"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    };
    let completed = async |group: Vec<usize>, what: &str| {
        wait_until(what, Duration::from_secs(30), async || {
            for i in &group {
                if run.outcome(&ids[*i]).await != Some("completed") {
                    return false;
                }
            }
            true
        })
        .await;
    };

    // Read on VK before the escalation: at once, after 4 and 14 minutes.
    for (r, advance) in [
        (Read::VkAtOnce, 0),
        (Read::VkAfter4m, 4 * MIN),
        (Read::VkAfter14m, 10 * MIN),
    ] {
        run.clock.advance(advance);
        for i in who(r) {
            vk_read(i).await;
        }
        completed(who(r).collect(), &format!("the {r:?} reads complete")).await;
    }
    let early =
        who(Read::VkAtOnce).count() + who(Read::VkAfter4m).count() + who(Read::VkAfter14m).count();

    // 31 minutes in: the unread ones escalate to SMS.
    run.clock.advance(17 * MIN);
    let escalated = N - early;
    wait_until("every SMS", Duration::from_secs(60), async || {
        sms.received().len() == escalated
    })
    .await;
    for i in (0..N).filter(|i| {
        !matches!(
            read(*i),
            Read::VkAtOnce | Read::VkAfter4m | Read::VkAfter14m
        )
    }) {
        run.wait_outcome(&ids[i], "exhausted").await;
    }
    // 5 minutes after the SMS: VK read late, the SMS read; two hours on,
    // the slow readers.
    run.clock.advance(5 * MIN);
    for i in who(Read::VkLate) {
        vk_read(i).await;
    }
    for i in who(Read::Sms) {
        api_read(i, Some("sms")).await;
    }
    run.clock.advance(2 * 60 * MIN);
    for i in who(Read::Hours) {
        api_read(i, None).await;
    }
    let later: Vec<usize> = (0..N)
        .filter(|i| matches!(read(*i), Read::VkLate | Read::Sms | Read::Hours))
        .collect();
    wait_until(
        "every late receipt counted",
        Duration::from_secs(30),
        async || {
            for i in &later {
                let t = run.timeline(&ids[*i]).await;
                let receipts = t.iter().filter(|e| e.event == EntryKind::Receipt).count();
                let state = run
                    .daemon()
                    .store
                    .status(&ids[*i])
                    .await
                    .unwrap()
                    .unwrap()
                    .0;
                if receipts == 0 || state.tallied != Some(t.len() as u32) {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let played = began.elapsed();

    // What the report computes over the console's range.
    let catalog = run.daemon().catalog.load_full();
    let now = run.clock.now_ms();
    let (from_ms, to_ms) = (now - 24 * 60 * MIN, now + MIN);
    let by = vec![Dimension::Policy, Dimension::Step, Dimension::Channel];
    let store = &run.daemon().store;
    let req = |by: Vec<Dimension>| ReportRequest {
        from_ms,
        to_ms,
        policy: Some("delivery_delay".into()),
        by,
    };
    let r = report(store, &catalog, &req(by.clone())).await.unwrap();
    assert_eq!(r.total.accepted, N as i64);
    assert_eq!(r.total.escalated, escalated as i64);
    // The policy's accepted row, VK and SMS, and the outcomes (on no channel).
    assert!(r.rows.len() >= 3, "{:#?}", r.rows);
    let reads = N - who(Read::Never).count();
    assert_eq!(r.total.read, reads as i64);

    // The overview over HTTP: every cell of the report table.
    let page = http
        .get(run.admin_url("/console?since=24h&policy=delivery_delay"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers()["content-type"].to_str().unwrap(),
        "text/html; charset=utf-8"
    );
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    let html = page.text().await.unwrap();
    assert_report_shown(&html, &by, &r.rows, &r.total, "the overview");
    assert!(html.contains("data-policy=\"delivery_delay\""));
    for (col, want) in [
        ("sent", r.total.sent.to_string()),
        ("read", r.total.read.to_string()),
        ("cost", render::money(r.total.cost)),
        ("saved", render::money(r.total.saved)),
        ("SMS avoided", r.total.sms_avoided.to_string()),
    ] {
        assert_eq!(
            fact(&html, "data-policy=\"delivery_delay\"", col),
            Some(want),
            "the policy's {col}"
        );
    }
    assert!(!html.contains("<script"), "no script on the console");
    // Time to read by segment: every bucket's reads in its segment's chart.
    let segs = report(store, &catalog, &req(vec![Dimension::Segment]))
        .await
        .unwrap();
    let with_reads: Vec<&Row> = segs.rows.iter().filter(|s| s.read > 0).collect();
    assert_eq!(with_reads.len(), 4, "{:#?}", segs.rows);
    for s in with_reads {
        let name = s.segment.as_deref().unwrap();
        let at = html
            .find(&format!("data-segment=\"{name}\""))
            .unwrap_or_else(|| panic!("no chart for segment {name}"));
        let card = &html[at..at + html[at..].find("</svg>").unwrap()];
        for (bucket, n) in &s.time_to_read {
            assert!(
                card.contains(&format!("<title>{bucket}: {n}</title>")),
                "segment {name}: {bucket} {n}"
            );
        }
    }
    // A range with nothing in it says so.
    let quiet = text_of(
        &http,
        run.admin_url("/console?since=24h&policy=quiet_policy"),
    )
    .await;
    assert!(quiet.contains("Nothing counted in this range"), "{quiet}");

    // The what-if: every cell of every table, the asked wait among them.
    let w = what_if_for(
        store,
        &catalog,
        "delivery_delay",
        0,
        Some(20 * MIN),
        from_ms,
        to_ms,
    )
    .await
    .unwrap();
    let html = text_of(
        &http,
        run.admin_url("/console/what-if?policy=delivery_delay&step=1&wait=20m&since=24h"),
    )
    .await;
    assert!(w.waits_ms.contains(&(20 * MIN)));
    let mut tables = vec![("data-table=\"all segments\"".to_owned(), &w.total, true)];
    for (s, e) in &w.segments {
        tables.push((format!("data-table=\"segment {s}\""), e, false));
    }
    assert_eq!(tables.len(), 5);
    for (anchor, estimates, all) in tables {
        let cells = render::what_if_cells(&w, estimates, all);
        for (e, row) in estimates.iter().zip(cells) {
            for (col, want) in WHAT_IF_COLUMNS.iter().zip(row) {
                assert_eq!(
                    cell(&html, &anchor, &e.wait_ms.to_string(), col).as_deref(),
                    Some(want.as_str()),
                    "what-if {anchor}, wait {}, {col}",
                    e.wait_ms
                );
            }
        }
    }
    assert!(html.contains("30m (now)") && html.contains("class=\"asked\""));
    for a in &w.assumptions {
        assert!(html.contains(&format!("<li>{a}</li>")), "assumption {a}");
    }

    // Search: a notification's events in order; a customer's list.
    let late = who(Read::VkLate).next().unwrap();
    let html = http
        .get(run.admin_url(&format!("/console/search?q={}", ids[late])))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let timeline = run.timeline(&ids[late]).await;
    let shown: Vec<&str> = html
        .split("<tr data-event=\"")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    let events: Vec<&str> = timeline.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(shown, events, "the timeline of {}", ids[late]);
    assert!(events.contains(&"late_read") && events.contains(&"escalated"));
    assert!(html.contains(&format!("data-notification=\"{}\"", ids[late])));
    assert!(html.contains("data-receipt=\"read\""));
    assert!(html.contains("<td>sms</td>") && html.contains("<td>vk</td>"));
    let html = text_of(&http, run.admin_url("/console/search?q=c-1")).await;
    let listed = (0..N).filter(|i| i % 40 == 1).count();
    assert_eq!(listed, N / 40);
    for i in (0..N).filter(|i| i % 40 == 1) {
        assert!(
            html.contains(&format!("<tr data-row=\"{}\">", ids[i])),
            "c-1's {} is listed",
            ids[i]
        );
    }
    let html = http
        .get(run.admin_url("/console/search?q=%3Cscript%3Ealert(%27x%27)%3C%2Fscript%3E%22"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("<script"), "the query is escaped");
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;"));
    assert!(html.contains("No notification and no customer"));

    // Dead letters by code, as the metrics count them.
    let metrics = run.metrics().await;
    let html = text_of(&http, run.admin_url("/console/dead-letters")).await;
    for (code, n) in [("malformed_json", 2), ("unknown_policy", 1)] {
        assert_eq!(
            metric_sum(
                &metrics,
                "cascade_intake_total",
                &[("result", "rejected"), ("code", code)]
            ),
            n
        );
        assert_eq!(
            cell(&html, "", code, "dead-lettered").as_deref(),
            Some(n.to_string().as_str()),
            "dead letters {code}"
        );
    }
    assert!(html.contains("since this instance started"));

    // The CLI's report over the same range, once.
    let out = cascade_command()
        .arg("--config")
        .arg(&config_path)
        .args([
            "report",
            "--json",
            "--policy",
            "delivery_delay",
            "--from",
            &rfc3339(from_ms),
            "--to",
            &rfc3339(to_ms),
        ])
        .output()
        .expect("cascade report runs");
    assert!(
        out.status.success(),
        "cascade report: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cli_rows: Vec<Row> = cli["rows"].as_array().unwrap().iter().map(row_of).collect();
    let cli_total = row_of(&cli["total"]);
    assert_eq!(cli_total.sent, r.total.sent);
    assert_eq!(cli_rows.len(), r.rows.len());

    // The browser: its DOM holds the CLI's numbers; a screenshot is kept.
    let Some(browser) = find_chromium() else {
        eprintln!(
            "\n\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             !!! tests/console.rs: NO CHROMIUM FOUND (chromium, chromium-browser,\n\
             !!! google-chrome on the PATH): THE BROWSER CHECKS WERE SKIPPED.\n\
             !!! Install it (Debian: apt-get install chromium; scripts/test does).\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
        );
        run.stop().await;
        return;
    };
    let url = run.admin_url("/console?since=24h&policy=delivery_delay");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).to_path_buf();
    let profile = shots.join(format!("chromium-profile-{}", std::process::id()));
    let png = shots.join("console.png");
    let _ = std::fs::remove_file(&png);
    let browsed = Instant::now();
    let more_shots = std::env::var_os("CASCADE_CONSOLE_SHOTS").map(PathBuf::from);
    let pages = [
        (
            "overview",
            run.admin_url("/console?since=24h&policy=delivery_delay"),
            (1280, 1620),
        ),
        (
            "overview-800",
            run.admin_url("/console?since=24h&policy=delivery_delay"),
            (800, 2900),
        ),
        (
            "what-if",
            run.admin_url("/console/what-if?policy=delivery_delay&step=1&wait=20m&since=24h"),
            (1280, 1500),
        ),
        (
            "notification",
            run.admin_url(&format!("/console/search?q={}", ids[late])),
            (1280, 900),
        ),
        (
            "customer",
            run.admin_url("/console/search?q=c-1"),
            (1280, 700),
        ),
        (
            "dead-letters",
            run.admin_url("/console/dead-letters"),
            (1280, 600),
        ),
    ];
    let (dom, png_bytes) = tokio::task::spawn_blocking({
        let (browser, profile, png, url) = (browser.clone(), profile.clone(), png.clone(), url);
        move || {
            let size = (1280, 1600);
            let dom = chromium(&browser, &profile, size, &["--dump-dom".into()], &url);
            let shot = |file: &Path, size, url: &str| {
                chromium(
                    &browser,
                    &profile,
                    size,
                    &[format!("--screenshot={}", file.display())],
                    url,
                );
            };
            shot(&png, size, &url);
            // Every page at full length, when asked (for docs/console.png).
            if let Some(dir) = more_shots {
                std::fs::create_dir_all(&dir).unwrap();
                for (name, url, size) in &pages {
                    shot(&dir.join(format!("{name}.png")), *size, url);
                }
            }
            let _ = std::fs::remove_dir_all(&profile);
            (dom, std::fs::read(&png).unwrap_or_default())
        }
    })
    .await
    .unwrap();
    assert!(dom.contains("<h1>Overview</h1>"), "chromium's DOM:\n{dom}");
    assert_report_shown(&dom, &by, &cli_rows, &cli_total, "chromium's DOM");
    let size = png_size(&png_bytes);
    assert_eq!(
        size,
        Some((1280, 1600)),
        "{} is a 1280×1600 PNG",
        png.display()
    );
    assert!(png_bytes.len() > 20_000, "{} bytes", png_bytes.len());
    eprintln!(
        "tests/console.rs: played {N} notifications in {:.1} s, browser checks {:.1} s; screenshot {}",
        played.as_secs_f64(),
        browsed.elapsed().as_secs_f64(),
        png.display()
    );
    run.stop().await;
}
