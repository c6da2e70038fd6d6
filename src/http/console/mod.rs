//! The operator console: read-only HTML pages on the admin listener (never
//! the public one), built from what `cascade report`, `cascade what-if` and
//! the `/v1` timeline API read, with the same words and formats.
//!
//! - `/console`: per policy a funnel (accepted, sent per step, read,
//!   escalated, late reads), money spent and saved, the report table as
//!   `cascade report` prints it, customers' replies and staff's answers,
//!   and time to read by segment;
//! - `/console/what-if`: a step's wait against escalations, cost and late
//!   reads, as `cascade what-if` estimates them;
//! - `/console/search`: a notification's timeline, or a customer's
//!   notifications;
//! - `/console/dead-letters`: messages dead-lettered by code, as this
//!   instance counted them since it started.
//!
//! Server-rendered, one inline stylesheet, inline SVG charts, no script and
//! nothing fetched from elsewhere.

mod charts;
mod page;

pub(crate) use page::{escape, url_encode};

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use self::charts::{Series, Stage};
use self::page::{Frame, Tab, empty, href, notice, respond, select, time_s};
use super::AppState;
use crate::config::{Catalog, parse_duration};
use crate::report::render::{
    REPLIES_COLUMNS, REPLIES_NOTE, REPORT_COLUMNS, REPORT_NOTE, WHAT_IF_COLUMNS, blank,
    group_cells, heading, money, numeric, percent, replies_head, replies_rows, report_cells, stamp,
    time_to_read, what_if_cells,
};
use crate::report::rows::buckets;
use crate::report::{Dimension, Report, Row};
use crate::runtime::reports::{ReportRequest, find_step, report, what_if_for};

/// The console's routes, for the admin router only.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(overview))
        .route("/console/what-if", get(what_if_page))
        .route("/console/search", get(search))
        .route("/console/dead-letters", get(dead_letters))
}

/// Everything a console page may be asked for; each page reads its own.
#[derive(Deserialize, Default)]
struct Params {
    since: Option<String>,
    policy: Option<String>,
    step: Option<String>,
    wait: Option<String>,
    q: Option<String>,
}

impl Params {
    /// The range asked for (`7d`, …), or `default` when none is.
    fn since_or(&self, default: &str) -> String {
        self.since
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(default)
            .to_owned()
    }

    fn policy(&self) -> Option<&str> {
        self.policy
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
    }
}

/// A range back from now: its word (`7d`) and ends (Unix ms).
struct Range {
    since: String,
    from_ms: i64,
    to_ms: i64,
}

impl Range {
    /// `since` as asked (else `default`), no longer than the report
    /// counters are kept.
    fn of(
        asked: Option<&str>,
        default: &str,
        catalog: &Catalog,
        now_ms: i64,
    ) -> (Range, Vec<String>) {
        let mut notes = Vec::new();
        let keep_ms = catalog.settings.report.retention_ms;
        let word = asked.map(str::trim).filter(|s| !s.is_empty());
        let (since, ms) = match word.map(|w| (w, parse_duration(w))) {
            None => (default.to_owned(), parse_ms(default)),
            Some((w, Ok(d))) => (
                w.to_owned(),
                i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            ),
            Some((_, Err(e))) => {
                notes.push(format!("since: {e}; showing {default}"));
                (default.to_owned(), parse_ms(default))
            }
        };
        let ms = if ms > keep_ms {
            notes.push(format!(
                "counters are kept for {}: the range is cut to that",
                crate::report::render::duration(keep_ms)
            ));
            keep_ms
        } else {
            ms.max(60_000)
        };
        (
            Range {
                since,
                from_ms: now_ms - ms,
                to_ms: now_ms,
            },
            notes,
        )
    }
}

fn parse_ms(word: &str) -> i64 {
    parse_duration(word).map_or(7 * 86_400_000, |d| d.as_millis() as i64)
}

/// The answer when Redis cannot be read.
fn unavailable(frame: &Frame<'_>, title: &str, error: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %error, "the console cannot read Redis");
    respond(
        StatusCode::SERVICE_UNAVAILABLE,
        page::layout(
            frame,
            title,
            &notice("Redis cannot be read right now; reload the page to try again."),
        ),
    )
}

/// The policy and range form of the overview and dead-letter pages.
fn tools(tab: Tab, catalog: &Catalog, policy: Option<&str>, since: &str, extra: &str) -> String {
    let mut policies: Vec<(String, String)> = vec![(String::new(), "all policies".into())];
    policies.extend(catalog.policies.keys().map(|p| (p.clone(), p.clone())));
    if let Some(p) = policy
        && !catalog.policies.contains_key(p)
    {
        policies.push((p.to_owned(), p.to_owned()));
    }
    format!(
        "<form class=\"tools\" method=\"get\" action=\"{}\">{}{}{extra}<button type=\"submit\">Show</button></form>",
        tab.path(),
        select("policy", "policy", &policies, policy.unwrap_or("")),
        select("since", "range", &page::range_options(since), since),
    )
}

/// A table of cells with their headings, numbers right-aligned as the CLI
/// aligns them; each row with its `data-row` key, each cell with its column
/// as `data-k`.
fn table(head: &[String], rows: &[(String, &'static str, Vec<String>)]) -> String {
    let numeric_col: Vec<bool> = (0..head.len())
        .map(|i| rows.iter().all(|(_, _, cells)| numeric(&cells[i])))
        .collect();
    let mut out = String::from("<div class=\"scroll\"><table><thead><tr>");
    for (i, h) in head.iter().enumerate() {
        let class = if numeric_col[i] { " class=\"num\"" } else { "" };
        let _ = write!(out, "<th{class} scope=\"col\">{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for (key, class, cells) in rows {
        let class = if class.is_empty() {
            String::new()
        } else {
            format!(" class=\"{class}\"")
        };
        let _ = write!(out, "<tr{class} data-row=\"{}\">", escape(key));
        for (i, cell) in cells.iter().enumerate() {
            let num = if numeric_col[i] { " class=\"num\"" } else { "" };
            let _ = write!(
                out,
                "<td{num} data-k=\"{}\">{}</td>",
                escape(&head[i]),
                escape(cell)
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

// ---------------------------------------------------------------------------
// Overview
// ---------------------------------------------------------------------------

async fn overview(State(state): State<AppState>, Query(p): Query<Params>) -> Response {
    let catalog = state.catalog.load_full();
    let now = state.clock.now_ms();
    let (range, mut notes) = Range::of(p.since.as_deref(), "7d", &catalog, now);
    let policy = p.policy();
    // `P:answer` names the staff cascades of replies to `P`'s notifications.
    if let Some(name) = policy
        && !catalog
            .policies
            .contains_key(name.strip_suffix(":answer").unwrap_or(name))
    {
        notes.push(format!(
            "`{name}` is not a policy of this configuration (its counters are read all the same)"
        ));
    }
    let req = |by: Vec<Dimension>| ReportRequest {
        from_ms: range.from_ms,
        to_ms: range.to_ms,
        policy: policy.map(str::to_owned),
        by,
    };
    let mut frame = Frame {
        tab: Tab::Overview,
        since: &range.since,
        policy,
        subtitle: String::new(),
    };
    let main = report(
        &state.store,
        &catalog,
        &req(vec![Dimension::Policy, Dimension::Step, Dimension::Channel]),
    )
    .await;
    let segments = report(&state.store, &catalog, &req(vec![Dimension::Segment])).await;
    let (main, segments) = match (main, segments) {
        (Ok(m), Ok(s)) => (m, s),
        (Err(e), _) | (_, Err(e)) => return unavailable(&frame, "Overview", &e),
    };
    frame.subtitle = format!(
        "{} to {}{}; {} notifications accepted, {} read",
        stamp(main.from_ms),
        stamp(main.to_ms),
        policy.map(|p| format!(", policy {p}")).unwrap_or_default(),
        main.total.accepted,
        main.total.read,
    );
    let mut body = tools(Tab::Overview, &catalog, policy, &range.since, "");
    for n in &notes {
        body.push_str(&notice(n));
    }
    if main.rows.is_empty() && main.replies.is_empty() {
        body.push_str(&empty(
            "Nothing counted in this range. Counters start with the notifications the daemon accepts; try a longer range or another policy.",
        ));
    } else if main.rows.is_empty() {
        body.push_str(&replies_card(&main));
    } else {
        body.push_str(&kpis(&main.total));
        for (name, rows) in by_policy(&main) {
            body.push_str(&policy_card(&catalog, name, &rows));
        }
        body.push_str(&report_card(&main));
        if !main.replies.is_empty() {
            body.push_str(&replies_card(&main));
        }
        body.push_str(&ttr_card(&segments, policy));
    }
    respond(StatusCode::OK, page::layout(&frame, "Overview", &body))
}

/// The headline numbers of the range.
fn kpis(t: &Row) -> String {
    let cards: [(&str, String, &str); 10] = [
        ("accepted", t.accepted.to_string(), ""),
        ("sent", t.sent.to_string(), ""),
        ("read", t.read.to_string(), ""),
        ("read rate", percent(t.read_rate), ""),
        ("ttr p50", time_to_read(t.ttr_p50_ms), ""),
        ("escalated", t.escalated.to_string(), ""),
        ("late reads", t.late_reads.to_string(), ""),
        ("cost", money(t.cost), " money"),
        ("saved", money(t.saved), " money"),
        ("SMS avoided", t.sms_avoided.to_string(), " money"),
    ];
    let mut out = String::from("<div class=\"kpis\" data-row=\"total\">");
    for (k, v, class) in cards {
        let _ = write!(
            out,
            "<div class=\"kpi{class}\"><span class=\"v\" data-k=\"{k}\">{}</span><span class=\"k\">{k}</span></div>",
            escape(&v)
        );
    }
    out.push_str("</div>");
    out
}

/// The rows of each policy, in the report's order.
fn by_policy(r: &Report) -> Vec<(&str, Vec<&Row>)> {
    let mut out: Vec<(&str, Vec<&Row>)> = Vec::new();
    for row in &r.rows {
        let name = row.policy.as_deref().unwrap_or("");
        match out.last_mut() {
            Some((n, rows)) if *n == name => rows.push(row),
            _ => out.push((name, vec![row])),
        }
    }
    out
}

/// A policy's funnel and money.
fn policy_card(catalog: &Catalog, name: &str, rows: &[&Row]) -> String {
    let configured = catalog.policies.get(name);
    let last_step = configured.map(|p| p.steps.len().saturating_sub(1));
    let accepted: i64 = rows.iter().map(|r| r.accepted).sum();
    let mut stages = vec![Stage {
        label: "accepted".into(),
        value: accepted,
        class: "f-accepted",
    }];
    // Rows of a step on no channel hold only outcomes (completed, exhausted…).
    let counted = |r: &&&Row| r.sent + r.read + r.escalated + r.late_reads + r.failed > 0;
    for r in rows.iter().filter(|r| r.step.is_some()).filter(counted) {
        let step = r.step.unwrap_or(0);
        let n = u16::from(step) + 1;
        let channel = match r.channel.as_deref() {
            Some("") | None => "–",
            Some(c) => c,
        };
        stages.push(Stage {
            label: format!("step {n} · {channel}: sent"),
            value: r.sent,
            class: "f-sent",
        });
        stages.push(Stage {
            label: format!("read on {channel}"),
            value: r.read,
            class: "f-read",
        });
        if step > 0 || r.late_reads > 0 {
            stages.push(Stage {
                label: format!("late reads after step {n}"),
                value: r.late_reads,
                class: "f-late",
            });
        }
        if r.failed > 0 {
            stages.push(Stage {
                label: format!("failed on {channel}"),
                value: r.failed,
                class: "f-failed",
            });
        }
        if r.escalated > 0 || last_step.is_some_and(|l| usize::from(step) < l) {
            stages.push(Stage {
                label: format!("escalated after step {n}"),
                value: r.escalated,
                class: "f-escalated",
            });
        }
    }
    let sum = |f: fn(&Row) -> i64| rows.iter().map(|r| f(r)).sum::<i64>();
    let (sent, read) = (sum(|r| r.sent), sum(|r| r.read));
    let cost: f64 = rows.iter().map(|r| r.cost).sum();
    let saved: f64 = rows.iter().map(|r| r.saved).sum();
    let facts: [(&str, String); 9] = [
        ("accepted", accepted.to_string()),
        ("sent", sent.to_string()),
        ("read", read.to_string()),
        (
            "read rate",
            percent((sent > 0).then(|| read as f64 / sent as f64)),
        ),
        ("escalated", sum(|r| r.escalated).to_string()),
        ("late reads", sum(|r| r.late_reads).to_string()),
        ("cost", money(cost)),
        ("saved", money(saved)),
        ("SMS avoided", sum(|r| r.sms_avoided).to_string()),
    ];
    let mut dl = String::from("<dl class=\"facts\">");
    for (k, v) in facts {
        let _ = write!(dl, "<dt>{k}</dt><dd data-k=\"{k}\">{}</dd>", escape(&v));
    }
    dl.push_str("</dl>");
    let description = configured
        .map(|p| p.description.trim())
        .filter(|d| !d.is_empty())
        .map(|d| format!("<p class=\"desc\">{}</p>", escape(d)))
        .unwrap_or_default();
    let what_if = href(Tab::WhatIf.path(), &[("policy", name), ("step", "1")]);
    let ask = if last_step.is_some_and(|l| l > 0) {
        format!(" <small><a href=\"{what_if}\">what if step 1 waited otherwise?</a></small>")
    } else {
        String::new()
    };
    format!(
        "<section class=\"card\" data-policy=\"{}\"><h2>{}{ask}</h2>{description}\
         <div class=\"policy\"><div>{}</div>{dl}</div>\
         <p class=\"note\">Bars: notifications accepted, messages sent and read per step and channel, escalations to the next step, and late reads (an earlier message read soon after this step went out); the share is of notifications accepted.</p></section>",
        escape(name),
        escape(name),
        charts::funnel(&format!("funnel of {name}"), &stages, accepted),
    )
}

/// The report as `cascade report` prints it.
fn report_card(r: &Report) -> String {
    let mut head: Vec<String> = r.by.iter().map(|d| heading(*d).to_owned()).collect();
    head.extend(REPORT_COLUMNS.iter().map(|c| c.to_string()));
    let mut rows: Vec<(String, &'static str, Vec<String>)> = r
        .rows
        .iter()
        .filter(|row| !blank(row))
        .map(|row| {
            let mut cells = group_cells(row, &r.by);
            let key = cells.join("|");
            cells.extend(report_cells(row));
            (key, "", cells)
        })
        .collect();
    let mut total = vec!["all".to_owned()];
    total.extend((1..r.by.len()).map(|_| String::new()));
    total.extend(report_cells(&r.total));
    rows.push(("all".into(), "total", total));
    format!(
        "<section class=\"card\" id=\"report\"><h2>Report <small>as <code>cascade report</code> prints it</small></h2>{}<p class=\"note\">{}</p></section>",
        table(&head, &rows),
        escape(REPORT_NOTE)
    )
}

/// Customers' replies and staff's answers, as `cascade report` prints them.
fn replies_card(r: &Report) -> String {
    let head = replies_head(r);
    let rows: Vec<(String, &'static str, Vec<String>)> = replies_rows(r)
        .into_iter()
        .map(|cells| {
            (
                cells[..head.len() - REPLIES_COLUMNS.len()].join("|"),
                "",
                cells,
            )
        })
        .collect();
    format!(
        "<section class=\"card\" id=\"replies\"><h2>Replies <small>customers' replies and staff's answers, as <code>cascade report</code> prints them</small></h2>{}<p class=\"note\">{}</p></section>",
        table(&head, &rows),
        escape(REPLIES_NOTE)
    )
}

/// Time-to-read histograms, one per segment.
fn ttr_card(r: &Report, policy: Option<&str>) -> String {
    let names: Vec<&str> = buckets().map(|(_, _, n)| n).collect();
    let mut charts = String::new();
    let mut quiet = Vec::new();
    for row in &r.rows {
        let segment = row.segment.as_deref().unwrap_or("");
        let label = if segment == crate::report::NO_SEGMENT {
            "no segment".to_owned()
        } else {
            format!("segment {segment}")
        };
        let reads: i64 = row.time_to_read.values().sum();
        if reads == 0 {
            quiet.push(label);
            continue;
        }
        let bars: Vec<(&str, i64)> = names
            .iter()
            .map(|n| (*n, row.time_to_read.get(*n).copied().unwrap_or(0)))
            .collect();
        let _ = write!(
            charts,
            "<div class=\"card\" data-segment=\"{}\"><h3>{}<small>read {reads} · ttr p50 {} · ttr p90 {}</small></h3>{}</div>",
            escape(segment),
            escape(&label),
            escape(&time_to_read(row.ttr_p50_ms)),
            escape(&time_to_read(row.ttr_p90_ms)),
            charts::histogram(&format!("time to read, {label}"), &bars),
        );
    }
    let scope = policy.map_or("all policies".to_owned(), |p| format!("policy {p}"));
    let mut out = format!(
        "<section class=\"card\" id=\"ttr\"><h2>Time to read, by segment <small>{}; reads by how long after their message they came</small></h2>",
        escape(&scope)
    );
    if charts.is_empty() {
        out.push_str(&empty("No reads counted in this range."));
    } else {
        let _ = write!(out, "<div class=\"grid\">{charts}</div>");
    }
    if !quiet.is_empty() && !charts.is_empty() {
        let _ = write!(
            out,
            "<p class=\"note\">No reads: {}.</p>",
            escape(&quiet.join(", "))
        );
    }
    out.push_str("</section>");
    out
}

// ---------------------------------------------------------------------------
// What-if
// ---------------------------------------------------------------------------

async fn what_if_page(State(state): State<AppState>, Query(p): Query<Params>) -> Response {
    let catalog = state.catalog.load_full();
    let now = state.clock.now_ms();
    let (range, mut notes) = Range::of(p.since.as_deref(), "30d", &catalog, now);
    // Policies with a step to escalate from.
    let eligible: Vec<&String> = catalog
        .policies
        .iter()
        .filter(|(_, pol)| pol.steps.len() >= 2)
        .map(|(n, _)| n)
        .collect();
    let policy: Option<String> = match p.policy() {
        Some(name) if catalog.policies.contains_key(name) => Some(name.to_owned()),
        Some(name) => {
            notes.push(format!("no policy `{name}` in this configuration"));
            eligible.first().map(|s| s.to_string())
        }
        None => eligible.first().map(|s| s.to_string()),
    };
    let mut frame = Frame {
        tab: Tab::WhatIf,
        since: &range.since,
        policy: policy.as_deref(),
        subtitle: format!("{} to {}", stamp(range.from_ms), stamp(range.to_ms)),
    };
    let Some(policy) = policy.as_deref() else {
        let body = empty("No policy has a step to escalate from: there is nothing to ask about.");
        return respond(StatusCode::OK, page::layout(&frame, "What-if", &body));
    };
    let step_word = p.step.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let step = match find_step(&catalog, policy, step_word.unwrap_or("1")) {
        Ok(s) => Some(s),
        Err(e) => {
            notes.push(e);
            find_step(&catalog, policy, "1").ok()
        }
    };
    let wait_word = p.wait.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let wait_ms = match wait_word.map(parse_duration) {
        None => None,
        Some(Ok(d)) => Some(d.as_millis() as i64),
        Some(Err(e)) => {
            notes.push(format!("wait: {e}"));
            None
        }
    };
    let mut body = what_if_form(
        &catalog,
        policy,
        step,
        wait_word.unwrap_or(""),
        &range.since,
    );
    for n in &notes {
        body.push_str(&notice(n));
    }
    let Some(step) = step else {
        body.push_str(&empty(&format!(
            "`{policy}` has no step followed by another: there is nothing to ask about."
        )));
        return respond(StatusCode::OK, page::layout(&frame, "What-if", &body));
    };
    let w = match what_if_for(
        &state.store,
        &catalog,
        policy,
        step,
        wait_ms,
        range.from_ms,
        range.to_ms,
    )
    .await
    {
        Ok(w) => w,
        Err(e) => return unavailable(&frame, "What-if", &e),
    };
    frame.subtitle = format!(
        "{} to {}; step {} of {} waits {} now",
        stamp(range.from_ms),
        stamp(range.to_ms),
        u16::from(step) + 1,
        policy,
        crate::report::render::duration(w.current_wait_ms)
    );
    let _ = write!(
        body,
        "<section class=\"card\" id=\"what-if\"><h2>What if step {} of {} waited otherwise before the next step <small>now {}; late reads within {} of the escalation</small></h2>",
        u16::from(w.step) + 1,
        escape(&w.policy),
        escape(&crate::report::render::duration(w.current_wait_ms)),
        escape(&crate::report::render::duration(w.late_read_window_ms)),
    );
    if w.total.is_empty() {
        body.push_str(&empty(
            "Nothing was sent on this step in the range: there is nothing to estimate from.",
        ));
        body.push_str("</section>");
        return respond(StatusCode::OK, page::layout(&frame, "What-if", &body));
    }
    let chart = charts::lines(
        "escalations and late reads against the wait, all segments",
        &w.waits_ms,
        &[
            Series {
                name: "escalations",
                class: "l-escalations",
                dashed: false,
                values: w.total.iter().map(|e| e.escalations).collect(),
            },
            Series {
                name: "late reads",
                class: "l-late",
                dashed: true,
                values: w.total.iter().map(|e| e.late_reads).collect(),
            },
        ],
        w.current_wait_ms,
        wait_ms,
    );
    let head: Vec<String> = WHAT_IF_COLUMNS.iter().map(|c| c.to_string()).collect();
    let rows_of = |estimates: &[crate::report::what_if::Estimate], all: bool| {
        what_if_cells(&w, estimates, all)
            .into_iter()
            .zip(estimates)
            .map(|(cells, e)| {
                let class = if e.wait_ms == w.current_wait_ms {
                    "now"
                } else if Some(e.wait_ms) == wait_ms {
                    "asked"
                } else {
                    ""
                };
                (e.wait_ms.to_string(), class, cells)
            })
            .collect::<Vec<_>>()
    };
    let _ = write!(
        body,
        "<div class=\"two\"><div data-table=\"all segments\"><h3>all segments</h3>{}</div><div>{chart}\
         <div class=\"legend\"><span><i style=\"background:var(--esc)\"></i>escalations</span><span><i style=\"background:var(--late)\"></i>late reads</span></div></div></div>",
        table(&head, &rows_of(&w.total, true)),
    );
    body.push_str("<h3 style=\"margin-top:18px\">per segment</h3><div class=\"grid\">");
    for (segment, estimates) in &w.segments {
        let _ = write!(
            body,
            "<div class=\"card\" data-table=\"segment {}\"><h3>segment {}</h3>{}</div>",
            escape(segment),
            escape(segment),
            table(&head, &rows_of(estimates, false)),
        );
    }
    body.push_str(
        "</div><h3 style=\"margin-top:18px\">The estimate assumes:</h3><ul class=\"plain\">",
    );
    for a in &w.assumptions {
        let _ = write!(body, "<li>{}</li>", escape(a));
    }
    body.push_str("</ul></section>");
    respond(StatusCode::OK, page::layout(&frame, "What-if", &body))
}

/// The what-if's form: policy, step, the wait to try and the range.
fn what_if_form(
    catalog: &Catalog,
    policy: &str,
    step: Option<u8>,
    wait: &str,
    since: &str,
) -> String {
    let policies: Vec<(String, String)> = catalog
        .policies
        .iter()
        .filter(|(_, p)| p.steps.len() >= 2)
        .map(|(n, _)| (n.clone(), n.clone()))
        .collect();
    let steps: Vec<(String, String)> = catalog
        .policies
        .get(policy)
        .map(|p| {
            p.steps
                .iter()
                .enumerate()
                .take(p.steps.len().saturating_sub(1))
                .map(|(i, s)| {
                    let wait = s
                        .wait_ms
                        .map(|w| format!(", waits {}", crate::report::render::duration(w)))
                        .unwrap_or_default();
                    (
                        (i + 1).to_string(),
                        format!("{} · {}{wait}", i + 1, s.channels.join(" or ")),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let current = step
        .map(|s| (u16::from(s) + 1).to_string())
        .unwrap_or_default();
    format!(
        "<form class=\"tools\" method=\"get\" action=\"{}\">{}{}<label>wait to try<input type=\"text\" name=\"wait\" value=\"{}\" placeholder=\"e.g. 15m\" size=\"8\"></label>{}<button type=\"submit\">Estimate</button></form>",
        Tab::WhatIf.path(),
        select("policy", "policy", &policies, policy),
        select("step", "step", &steps, &current),
        escape(wait),
        select(
            "since",
            "from the range",
            &page::range_options(since),
            since
        ),
    )
}

// ---------------------------------------------------------------------------
// Search
// ---------------------------------------------------------------------------

async fn search(State(state): State<AppState>, Query(p): Query<Params>) -> Response {
    let catalog = state.catalog.load_full();
    let since = p.since_or("7d");
    let q: String =
        p.q.as_deref()
            .unwrap_or("")
            .trim()
            .chars()
            .take(256)
            .collect();
    let mut frame = Frame {
        tab: Tab::Search,
        since: &since,
        policy: p.policy(),
        subtitle: "a notification by its id, or a customer's notifications by the customer's id"
            .into(),
    };
    let mut body = format!(
        "<form class=\"tools\" method=\"get\" action=\"{}\"><label>notification id or customer id\
         <input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"order-1001:delayed\" autofocus></label>\
         <input type=\"hidden\" name=\"since\" value=\"{}\">{}<button type=\"submit\">Search</button></form>",
        Tab::Search.path(),
        escape(&q),
        escape(&since),
        p.policy()
            .map(|pol| format!(
                "<input type=\"hidden\" name=\"policy\" value=\"{}\">",
                escape(pol)
            ))
            .unwrap_or_default(),
    );
    if q.is_empty() {
        body.push_str(&empty(
            "Type a notification id to see its timeline, or a customer id to list the customer's recent notifications.",
        ));
        return respond(StatusCode::OK, page::layout(&frame, "Search", &body));
    }
    match state.store.timeline(&q).await {
        Ok(Some(t)) => {
            frame.subtitle = format!("notification {q}");
            body.push_str(&notification_card(&q, t));
            return respond(StatusCode::OK, page::layout(&frame, "Search", &body));
        }
        Ok(None) => {}
        Err(e) => return unavailable(&frame, "Search", &e),
    }
    let retention = catalog.settings.redis.retention_ms;
    let now = state.clock.now_ms();
    let list = match state
        .store
        .customer_notifications(&q, now.saturating_sub(retention))
        .await
    {
        Ok(list) => list,
        Err(e) => return unavailable(&frame, "Search", &e),
    };
    if list.is_empty() {
        body.push_str(&empty(&format!(
            "No notification and no customer `{q}` (unknown, or past the retention of {}).",
            crate::report::render::duration(retention)
        )));
        return respond(StatusCode::OK, page::layout(&frame, "Search", &body));
    }
    frame.subtitle = format!("customer {q}");
    let _ = write!(
        body,
        "<section class=\"card\" data-customer=\"{}\"><h2>Customer <code>{}</code><small>{} notifications, newest first</small></h2>\
         <div class=\"scroll\"><table><thead><tr><th>notification</th><th>accepted</th><th>state</th><th class=\"num\">step</th><th>last event</th><th>at</th><th>channel</th></tr></thead><tbody>",
        escape(&q),
        escape(&q),
        list.len()
    );
    for n in &list {
        let link = href(
            Tab::Search.path(),
            &[
                ("q", &n.id),
                ("since", &since),
                ("policy", p.policy().unwrap_or("")),
            ],
        );
        let _ = write!(
            body,
            "<tr data-row=\"{id}\"><td><a href=\"{link}\">{id}</a></td><td>{}</td><td><span class=\"badge {state}\">{state}</span></td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&time_s(n.accepted_ms)),
            n.step,
            escape(n.last_event.as_deref().unwrap_or("–")),
            escape(&n.last_event_ms.map_or("–".into(), time_s)),
            escape(n.last_channel.as_deref().unwrap_or("–")),
            id = escape(&n.id),
            state = escape(n.state),
        );
    }
    body.push_str("</tbody></table></div></section>");
    respond(StatusCode::OK, page::layout(&frame, "Search", &body))
}

/// One notification: its state, receipts and timeline.
fn notification_card(id: &str, t: crate::runtime::store::Timeline) -> String {
    let outcome = t.cascade.outcome();
    let state = outcome.map_or("running", |o| o.word());
    let next = outcome.is_none().then(|| t.cascade.wake_at_ms()).flatten();
    let first = t.entries.first().map(|e| e.at_ms);
    let mut out = format!(
        "<section class=\"card\" data-notification=\"{}\"><h2>Notification <code>{}</code> <span class=\"badge {state}\" data-k=\"state\">{state}</span></h2>\
         <dl class=\"facts\" style=\"max-width:420px\"><dt>state</dt><dd>{state}</dd><dt>step</dt><dd data-k=\"step\">{}</dd>",
        escape(id),
        escape(id),
        u16::from(t.cascade.step) + 1,
    );
    if let Some(at) = first {
        let _ = write!(out, "<dt>accepted</dt><dd>{}</dd>", escape(&time_s(at)));
    }
    if let Some(at) = next {
        let _ = write!(out, "<dt>next wake-up</dt><dd>{}</dd>", escape(&time_s(at)));
    }
    out.push_str("</dl></section>");

    out.push_str("<section class=\"card\" id=\"receipts\"><h2>Receipts</h2>");
    if t.receipts.is_empty() {
        out.push_str(&empty("No receipt recorded."));
    } else {
        let mut receipts: Vec<(&String, &i64)> = t.receipts.iter().collect();
        receipts.sort_by_key(|(w, at)| (**at, (*w).clone()));
        out.push_str("<div class=\"scroll\"><table><thead><tr><th>event</th><th>first recorded</th></tr></thead><tbody>");
        for (word, at) in receipts {
            let _ = write!(
                out,
                "<tr data-receipt=\"{w}\"><td>{w}</td><td>{}</td></tr>",
                escape(&time_s(*at)),
                w = escape(word),
            );
        }
        out.push_str("</tbody></table></div>");
    }
    out.push_str("</section>");

    out.push_str("<section class=\"card\" id=\"timeline\"><h2>Timeline</h2>");
    if t.entries.is_empty() {
        out.push_str(&empty("No timeline entry."));
    } else {
        let with_until = t.entries.iter().any(|e| e.until_ms.is_some());
        out.push_str(
            "<div class=\"scroll\"><table><thead><tr><th>time</th><th class=\"num\">after</th><th>event</th><th class=\"num\">step</th><th>channel</th>",
        );
        if with_until {
            out.push_str("<th>until</th>");
        }
        out.push_str("<th>reason</th></tr></thead><tbody>");
        for e in &t.entries {
            let after = first.map_or("–".into(), |f| {
                format!("+{}", crate::report::render::duration(e.at_ms - f))
            });
            // Reasons are masked when recorded; a record kept by an earlier
            // version may still quote a provider's answer in the clear.
            let reason = e
                .reason
                .as_deref()
                .map(|r| crate::pii::scrub(r).into_owned())
                .unwrap_or_default();
            let _ = write!(
                out,
                "<tr data-event=\"{ev}\"><td>{}</td><td class=\"num\">{}</td><td>{ev}</td><td class=\"num\">{}</td><td>{}</td>",
                escape(&time_s(e.at_ms)),
                escape(&after),
                e.step
                    .map_or("–".into(), |s| (u16::from(s) + 1).to_string()),
                escape(e.channel.as_deref().unwrap_or("–")),
                ev = escape(e.event.as_str()),
            );
            if with_until {
                let _ = write!(
                    out,
                    "<td>{}</td>",
                    escape(&e.until_ms.map_or(String::new(), time_s))
                );
            }
            let _ = write!(out, "<td class=\"reason\">{}</td></tr>", escape(&reason));
        }
        out.push_str("</tbody></table></div>");
    }
    out.push_str("<p class=\"note\">Steps are counted from 1, as <code>cascade status</code> prints them; contacts are never shown and reasons are masked.</p></section>");
    out
}

// ---------------------------------------------------------------------------
// Dead letters
// ---------------------------------------------------------------------------

async fn dead_letters(State(state): State<AppState>, Query(p): Query<Params>) -> Response {
    let catalog = state.catalog.load_full();
    let since = p.since_or("7d");
    let started = state.telemetry.started_ms();
    let frame = Frame {
        tab: Tab::DeadLetters,
        since: &since,
        policy: p.policy(),
        subtitle: format!(
            "counted by this instance since it started, {}",
            time_s(started)
        ),
    };
    let counts: BTreeMap<&str, crate::runtime::telemetry::DeadLetters> =
        state.telemetry.dead_letters();
    let queue = &catalog.settings.amqp.dead_letter_queue;
    let mut body = String::new();
    let _ = write!(
        body,
        "<section class=\"card\" id=\"dead-letters\"><h2>Dead letters by code <small>since this instance started ({}); other instances count their own</small></h2>",
        escape(&time_s(started))
    );
    if counts.is_empty() {
        body.push_str(&empty(
            "No message was dead-lettered since this instance started.",
        ));
    } else {
        let head: Vec<String> = ["code", "dead-lettered", "not taken, handed back"]
            .map(String::from)
            .to_vec();
        let mut rows: Vec<(String, &'static str, Vec<String>)> = counts
            .iter()
            .map(|(code, n)| {
                (
                    code.to_string(),
                    "",
                    vec![
                        code.to_string(),
                        n.rejected.to_string(),
                        n.failed.to_string(),
                    ],
                )
            })
            .collect();
        let (rejected, failed) = counts
            .values()
            .fold((0, 0), |(r, f), n| (r + n.rejected, f + n.failed));
        rows.push((
            "all".into(),
            "total",
            vec!["all".into(), rejected.to_string(), failed.to_string()],
        ));
        let _ = write!(body, "<div class=\"narrow\">{}</div>", table(&head, &rows));
    }
    let _ = write!(
        body,
        "<p class=\"note\">The messages themselves wait in the queue <code>{}</code>, each with its code in <code>x-cascade-error-code</code> and a sentence in <code>x-cascade-error</code>. The same counts are on <code>/metrics</code> as <code>cascade_intake_total{{result=\"rejected\"}}</code> (and <code>result=\"dead_letter_failed\"</code> for those RabbitMQ did not take). They start again from zero when the daemon restarts.</p></section>",
        escape(queue)
    );
    respond(StatusCode::OK, page::layout(&frame, "Dead letters", &body))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::report::field;
    use crate::report::rows::{Query, build};

    #[test]
    fn the_replies_card_shows_the_replies_table() {
        let counters: BTreeMap<String, i64> = [
            (field("dd:answer", None, "", "vip", "accepted"), 3),
            (field("dd:answer", Some(0), "helpdesk", "vip", "read"), 2),
            (
                field("dd:answer", Some(0), "helpdesk", "vip", "escalated"),
                1,
            ),
        ]
        .into_iter()
        .collect();
        let by = [Dimension::Policy, Dimension::Segment];
        let r = build(
            &counters,
            &Query {
                from_ms: 0,
                to_ms: 1,
                policy: None,
                by: &by,
                sms_channels: &BTreeSet::new(),
                answer_deadlines: &BTreeSet::new(),
            },
        );
        let html = replies_card(&r);
        assert!(html.contains("id=\"replies\""), "{html}");
        for (k, v) in [
            ("received", "3"),
            ("in time", "2"),
            ("escalated", "1"),
            ("open", "1"),
            ("in-time rate", "66.7%"),
        ] {
            let cell = format!("<td class=\"num\" data-k=\"{k}\">{v}</td>");
            assert!(html.contains(&cell), "{cell} in {html}");
        }
        assert!(html.contains("data-row=\"dd|vip\""), "{html}");
    }
}
