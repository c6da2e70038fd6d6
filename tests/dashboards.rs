//! The Grafana dashboard (`deploy/grafana/cascade.json`) and the alert
//! rules (`deploy/prometheus/alerts.yml`) against what the daemon exports:
//! every metric their PromQL names must be on a real daemon's `/metrics`
//! page, after a little traffic has made the labelled series exist. And
//! `promtool` checks the rules file and the dashboard's expressions.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const DASHBOARD: &str = "deploy/grafana/cascade.json";
const ALERTS: &str = "deploy/prometheus/alerts.yml";
/// promtool's unit tests of the alert rules: which fire on made-up series.
const ALERTS_TEST: &str = "deploy/prometheus/alerts_test.yml";

// ---------------------------------------------------------------------------
// Reading the two files, and the Prometheus page.
// ---------------------------------------------------------------------------

/// The metric names a PromQL expression uses: identifiers that start with
/// `cascade_`, outside string literals (a label value is not a metric).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let bytes = expr.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'"' | b'\'' | b'`') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    // Backslash escapes, except in raw (backtick) strings.
                    i += if bytes[i] == b'\\' && quote != b'`' {
                        2
                    } else {
                        1
                    };
                }
                i += 1;
            }
            b if ident(b) => {
                let start = i;
                while i < bytes.len() && ident(bytes[i]) {
                    i += 1;
                }
                let word = &expr[start..i];
                if word.starts_with("cascade_") {
                    names.insert(word.to_owned());
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Every PromQL expression of a Grafana dashboard: each panel target's
/// `expr` (rows' panels too) and each template variable's query.
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(fields) => {
                for (key, value) in fields {
                    match (key.as_str(), value) {
                        ("expr" | "query" | "definition", Value::String(s)) => out.push(s.clone()),
                        _ => walk(value, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

/// The `expr` of every rule in a Prometheus rules file: `expr: <one line>`,
/// or a block scalar (`expr: |` or `>-`) and the lines indented under it.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if !(rest.starts_with('|') || rest.starts_with('>')) {
            exprs.push(rest.to_owned());
            continue;
        }
        let mut block = String::new();
        while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > indent(line)) {
            block.push_str(lines[i].trim());
            block.push('\n');
            i += 1;
        }
        exprs.push(block);
    }
    exprs
}

/// A Prometheus text page: each family's type, and the names its samples carry.
struct Page {
    types: BTreeMap<String, String>,
    samples: BTreeSet<String>,
}

impl Page {
    fn parse(text: &str) -> Page {
        let mut types = BTreeMap::new();
        let mut samples = BTreeSet::new();
        for line in text.lines() {
            if let Some(typed) = line.strip_prefix("# TYPE ") {
                if let Some((name, kind)) = typed.split_once(' ') {
                    types.insert(name.to_owned(), kind.trim().to_owned());
                }
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                samples.insert(line[..end].to_owned());
            }
        }
        Page { types, samples }
    }

    /// Whether PromQL's `name` selects series on this page: a counter's or
    /// gauge's own name, or a histogram's `_bucket`, `_sum` or `_count`
    /// (a summary's `_sum` or `_count`), with samples. A histogram's bare
    /// name selects nothing.
    fn check(&self, name: &str) -> Result<(), String> {
        let family = match self.types.get(name).map(String::as_str) {
            Some("histogram" | "summary") => {
                return Err(format!(
                    "{name} is a histogram: PromQL needs {name}_bucket, _sum or _count"
                ));
            }
            Some(_) => name,
            None => ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    let stem = name.strip_suffix(suffix)?;
                    let kind = self.types.get(stem)?;
                    (kind == "histogram" || (kind == "summary" && *suffix != "_bucket"))
                        .then_some(stem)
                })
                .ok_or_else(|| format!("{name} is not exported"))?,
        };
        if self.samples.contains(name) {
            Ok(())
        } else {
            Err(format!(
                "{family} is exported but has no sample named {name}"
            ))
        }
    }

    /// Every name the expressions use that this page does not export, each
    /// with the expression it is in.
    fn missing(&self, exprs: &[(String, String)]) -> Vec<String> {
        exprs
            .iter()
            .flat_map(|(source, expr)| {
                metric_names(expr).into_iter().filter_map(move |name| {
                    self.check(&name)
                        .err()
                        .map(|why| format!("{source}: {why}\n    in: {}", expr.trim()))
                })
            })
            .collect()
    }
}

/// The expressions of the dashboard and of the alert rules, each with
/// where it comes from.
fn all_exprs() -> Vec<(String, String)> {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join(DASHBOARD)).unwrap())
            .expect("the dashboard is JSON");
    let rules = std::fs::read_to_string(repo().join(ALERTS)).unwrap();
    let mut exprs: Vec<(String, String)> = dashboard_exprs(&dashboard)
        .into_iter()
        .map(|e| (DASHBOARD.to_owned(), e))
        .collect();
    exprs.extend(
        rule_exprs(&rules)
            .into_iter()
            .map(|e| (ALERTS.to_owned(), e)),
    );
    exprs
}

// ---------------------------------------------------------------------------
// The checks themselves.
// ---------------------------------------------------------------------------

#[test]
fn the_files_read_as_expected() {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join(DASHBOARD)).unwrap()).unwrap();
    assert!(dashboard["schemaVersion"].as_u64() >= Some(39));
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables
            .iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus data source variable"
    );
    let exprs = dashboard_exprs(&dashboard);
    assert!(exprs.len() >= 20, "{exprs:#?}");
    // Every rule's expression was found, and each names a metric.
    let rules = std::fs::read_to_string(repo().join(ALERTS)).unwrap();
    let alerts = rules
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    let exprs = rule_exprs(&rules);
    assert_eq!(exprs.len(), alerts, "{exprs:#?}");
    for e in &exprs {
        assert!(!metric_names(e).is_empty(), "no metric in {e}");
    }
    for block in rules.split("- alert:").skip(1) {
        for needed in ["severity:", "summary:", "description:"] {
            assert!(
                block.contains(needed),
                "{needed} missing in - alert:{block}"
            );
        }
    }
}

/// The check below is only worth something if it fails for a metric the
/// daemon does not export: here on a page and expressions made up for it.
#[test]
fn the_check_finds_a_metric_that_is_not_exported() {
    let page = Page::parse(
        "# TYPE cascade_sends_total counter\n\
         cascade_sends_total{channel=\"vk\",outcome=\"sent\"} 1\n\
         # TYPE cascade_send_duration_seconds histogram\n\
         cascade_send_duration_seconds_bucket{channel=\"vk\",le=\"+Inf\"} 1\n\
         cascade_send_duration_seconds_sum{channel=\"vk\"} 0.1\n\
         cascade_send_duration_seconds_count{channel=\"vk\"} 1\n",
    );
    let exprs = |e: &str| vec![("made up".to_owned(), e.to_owned())];
    assert!(
        page.missing(&exprs(
            "sum by (channel) (rate(cascade_sends_total{outcome=\"cascade_bogus\"}[5m])) \
             / histogram_quantile(0.99, sum by (le) (rate(cascade_send_duration_seconds_bucket[5m])))"
        ))
        .is_empty(),
        "a name in a label value is not a metric"
    );
    let missing = page.missing(&exprs(
        "rate(cascade_bogus_total[5m]) + cascade_sends_total",
    ));
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(missing[0].contains("cascade_bogus_total is not exported"));
    // A histogram is selected by its series, not by its family's name.
    assert_eq!(
        page.missing(&exprs("cascade_send_duration_seconds")).len(),
        1
    );
    assert_eq!(
        page.missing(&exprs("cascade_sends_total_bucket")).len(),
        1,
        "a counter has no buckets"
    );
}

/// `promtool check rules` on the alert rules, and on the dashboard's
/// expressions written as recording rules (Grafana's `$__rate_interval`
/// and the like as 5m, a variable as `.*`), so a typo in either fails here
/// rather than on a dashboard; `promtool test rules` on the rules' unit
/// tests. Skipped, loudly, when promtool is not installed (scripts/test
/// installs it).
#[test]
fn promtool_accepts_the_rules_and_the_dashboards_promql() {
    let Some(promtool) = promtool() else {
        // Straight to stderr: the test harness hides `eprintln!` of a test that passes.
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!!!!!\n!!!!!!!! promtool not found: {ALERTS}, its tests and the dashboard's PromQL \
             were NOT checked.\n!!!!!!!! scripts/test installs it (Debian: apt-get install prometheus).\n!!!!!!!!\n"
        );
        return;
    };
    promtool_run(&promtool, "check", &repo().join(ALERTS));
    promtool_run(&promtool, "test", &repo().join(ALERTS_TEST));

    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join(DASHBOARD)).unwrap()).unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (n, expr) in dashboard_exprs(&dashboard)
        .iter()
        .filter(|e| !metric_names(e).is_empty() && !e.starts_with("label_values("))
        .enumerate()
    {
        let promql = without_grafana_variables(expr);
        rules.push_str(&format!(
            "      - record: dashboard:expr_{n}\n        expr: {}\n",
            // A JSON string is a YAML double-quoted scalar.
            json!(promql)
        ));
    }
    let dir = std::env::temp_dir().join(unique("cascade-dashboard-rules"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dashboard.yml");
    std::fs::write(&path, &rules).unwrap();
    promtool_run(&promtool, "check", &path);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Grafana's variables replaced by what PromQL accepts in their place.
fn without_grafana_variables(expr: &str) -> String {
    let mut out = expr.to_owned();
    for interval in ["$__rate_interval", "$__interval", "$__range"] {
        out = out.replace(interval, "5m");
    }
    let mut plain = String::new();
    let mut rest = out.as_str();
    while let Some(at) = rest.find('$') {
        plain.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let name_len = after
            .trim_start_matches('{')
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let braced = after.starts_with('{');
        plain.push_str(".*");
        rest = &after[name_len + if braced { 2 } else { 0 }..];
    }
    plain.push_str(rest);
    plain
}

/// `promtool` on the PATH, if it runs.
fn promtool() -> Option<PathBuf> {
    let ok = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then(|| PathBuf::from("promtool"))
}

/// `promtool <check|test> rules <file>`, which must succeed.
fn promtool_run(promtool: &Path, command: &str, rules: &Path) {
    let out = Command::new(promtool)
        .args([command, "rules"])
        .arg(rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool {command} rules {} failed:\n{}{}",
        rules.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A daemon, traffic that touches every part the dashboard shows (a send,
/// a receipt that wakes a cascade, an escalation on the timer, a dead
/// letter), its gauges sampled; then its page must export every metric the
/// dashboard and the alert rules name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_the_alerts_use_is_exported() {
    let (url, received) = fake_receiver(vec![]).await;
    let cfg = TestConfig::new("dashboards", &url, "", DELIVERY_DELAY);
    let path = cfg.path();
    let run = Running::start_opts(cfg, |o| {
        o.config_path = Some(path);
        o.sample_every = Duration::from_millis(100);
    })
    .await
    .settle(Settle::Always);

    let read = run.id("read");
    let unread = run.id("unread");
    run.publish_bytes(&notification(&read, "c-1")).await;
    run.publish_bytes(&notification(&unread, "c-2")).await;
    run.publish_bytes(b"not json").await;
    wait_until("both on VK", AT_ONCE, async || received.count("vk") == 2).await;
    run.wait_entry(&read, "sent", Some(0)).await;
    run.wait_entry(&unread, "sent", Some(0)).await;
    // Both wait for their SMS, half an hour ahead in the far lists.
    wait_until("the gauges see both waiting", AT_ONCE, async || {
        let page = run.metrics().await;
        metric_sum(&page, "cascade_cascades_waiting", &[]) == 2
            && metric_sum(&page, "cascade_backlog", &[]) == 0
    })
    .await;

    // A receipt wakes one at once (a claim, timed); the other escalates
    // when its wait is over (a claim of a timer).
    let answer = run
        .http
        .post(run.url("/v1/receipts"))
        .bearer_auth(TOKEN)
        .json(&json!({ "id": read, "event": "read", "channel": "vk" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    run.wait_outcome(&read, "completed").await;
    run.clock.advance(31 * 60_000);
    run.wait_outcome(&unread, "exhausted").await;
    assert_eq!(received.count("sms"), 1);
    wait_until("the gauges see nothing waiting", AT_ONCE, async || {
        let page = run.metrics().await;
        metric_sum(&page, "cascade_cascades_waiting", &[]) == 0
            && metric_sum(&page, "cascade_backlog", &[]) == 0
    })
    .await;

    let page = run.metrics().await;
    let missing = Page::parse(&page).missing(&all_exprs());
    assert!(
        missing.is_empty(),
        "the dashboard or the alert rules use metrics the daemon does not export:\n{}\n\nthe page:\n{page}",
        missing.join("\n")
    );
    // What the traffic above must have counted.
    assert!(metric_sum(&page, "cascade_timer_lateness_seconds_count", &[]) >= 2);
    assert_eq!(
        metric_sum(&page, "cascade_intake_total", &[("result", "rejected")]),
        1
    );
    for channel in ["vk", "sms"] {
        assert!(
            page.contains(&format!(
                "cascade_breaker_open{{channel=\"{channel}\"}} 0\n"
            )),
            "{page}"
        );
        assert!(page.contains(&format!(
            "cascade_money_spent_total{{channel=\"{channel}\",policy=\"delivery_delay\"}} 0\n"
        )));
    }
    assert!(page.contains(&format!(
        "cascade_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(page.contains("cascade_config_last_reload_successful 1\n"));
}
