//! Text forms of a report and a what-if: an aligned table for people, CSV
//! for spreadsheets (JSON comes from serde). The console uses the same
//! words and the same formatting of times, rates and money.

use std::fmt::Write as _;

use super::rows::{Dimension, Report, Row};
use super::what_if::{Estimate, WhatIf};

/// A duration for people: `45s`, `12m`, `1h 30m`, `2d 3h`.
pub fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => {
            let (m, rest) = (s / 60, s % 60);
            if rest == 0 || m >= 10 {
                format!("{m}m")
            } else {
                format!("{m}m {rest}s")
            }
        }
        3600..86_400 => {
            let (h, m) = (s / 3600, s % 3600 / 60);
            if m == 0 {
                format!("{h}h")
            } else {
                format!("{h}h {m}m")
            }
        }
        _ => {
            let (d, h) = (s / 86_400, s % 86_400 / 3600);
            if h == 0 {
                format!("{d}d")
            } else {
                format!("{d}d {h}h")
            }
        }
    }
}

/// A time to read, with `>1d` for one past the last bucket.
pub fn time_to_read(ms: Option<i64>) -> String {
    match ms {
        None => "–".into(),
        Some(ms) if ms >= 86_400_000 => ">1d".into(),
        Some(ms) => duration(ms),
    }
}

/// A rate as a percentage with one decimal, `–` when there is nothing to divide.
pub fn percent(rate: Option<f64>) -> String {
    match rate {
        Some(r) => format!("{:.1}%", r * 100.0),
        None => "–".into(),
    }
}

/// Money with two decimals and thin grouping: `12 345.60`.
pub fn money(amount: f64) -> String {
    let cents = (amount * 100.0).round() as i64;
    let (whole, frac) = (cents.abs() / 100, cents.abs() % 100);
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(' ');
        }
        grouped.push(ch);
    }
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{grouped}.{frac:02}")
}

/// The label of a row's group: its dimensions as asked, `all` for the total.
pub fn group_cells(row: &Row, by: &[Dimension]) -> Vec<String> {
    by.iter()
        .map(|d| match d {
            Dimension::Policy => row.policy.clone().unwrap_or_default(),
            // Numbered from 1, as `cascade status` does.
            Dimension::Step => row
                .step
                .map_or("–".into(), |s| (u16::from(s) + 1).to_string()),
            Dimension::Channel => match row.channel.as_deref() {
                Some("") | None => "–".into(),
                Some(c) => c.to_owned(),
            },
            Dimension::Segment => row.segment.clone().unwrap_or_default(),
        })
        .collect()
}

/// The columns of a report after its group's, with their headings.
pub const REPORT_COLUMNS: [&str; 13] = [
    "sent",
    "read",
    "read rate",
    "ttr p50",
    "ttr p90",
    "escalated",
    "escalation rate",
    "late reads",
    "late-read rate",
    "failed",
    "cost",
    "saved",
    "SMS avoided",
];

/// What the report's columns mean, printed under its table.
pub const REPORT_NOTE: &str = "read rate = read ÷ sent; escalation and late-read rates ÷ sent; \
     ttr: time to read (from buckets); money in the channels' cost unit";

/// A row's cells under `REPORT_COLUMNS`.
pub fn report_cells(row: &Row) -> Vec<String> {
    vec![
        row.sent.to_string(),
        row.read.to_string(),
        percent(row.read_rate),
        time_to_read(row.ttr_p50_ms),
        time_to_read(row.ttr_p90_ms),
        row.escalated.to_string(),
        percent(row.escalation_rate),
        row.late_reads.to_string(),
        percent(row.late_read_rate),
        row.failed.to_string(),
        money(row.cost),
        money(row.saved),
        row.sms_avoided.to_string(),
    ]
}

/// A dimension's column heading.
pub fn heading(d: Dimension) -> &'static str {
    match d {
        Dimension::Policy => "policy",
        Dimension::Step => "step",
        Dimension::Channel => "channel",
        Dimension::Segment => "segment",
    }
}

/// Whether a cell is a number (or a dash for none), to align right: it
/// starts with a digit, a sign, `–` or `>` (`>1d`).
pub fn numeric(cell: &str) -> bool {
    cell.chars()
        .next()
        .is_none_or(|c| c.is_ascii_digit() || matches!(c, '–' | '-' | '+' | '>'))
}

/// Lays out rows of cells in aligned columns: text left, numbers right.
pub fn table(head: &[String], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain(std::iter::once(head[i].chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let numeric = |i: usize| rows.iter().all(|r| numeric(&r[i]));
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            if i > 0 {
                l.push_str("  ");
            }
            if numeric(i) {
                l.push_str(&" ".repeat(pad));
                l.push_str(cell);
            } else {
                l.push_str(cell);
                l.push_str(&" ".repeat(pad));
            }
        }
        let _ = writeln!(out, "{}", l.trim_end());
    };
    line(head);
    for r in rows {
        line(r);
    }
    out
}

/// The report as a table, its range and a note on the units first.
pub fn report_table(r: &Report) -> String {
    let mut head: Vec<String> = r.by.iter().map(|d| heading(*d).to_owned()).collect();
    head.extend(REPORT_COLUMNS.iter().map(|c| c.to_string()));
    // Rows with nothing in these columns (a policy's accepted count, on no
    // step) say nothing here; JSON and CSV keep them.
    let mut rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .filter(|row| !blank(row))
        .map(|row| {
            let mut cells = group_cells(row, &r.by);
            cells.extend(report_cells(row));
            cells
        })
        .collect();
    if !r.by.is_empty() {
        let mut total = vec!["all".to_owned()];
        total.extend((1..r.by.len()).map(|_| String::new()));
        total.extend(report_cells(&r.total));
        rows.push(total);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} to {}{}; {} notifications accepted, {} read",
        stamp(r.from_ms),
        stamp(r.to_ms),
        r.policy
            .as_ref()
            .map(|p| format!(", policy {p}"))
            .unwrap_or_default(),
        r.total.accepted,
        r.total.read,
    );
    out.push('\n');
    out.push_str(&table(&head, &rows));
    out.push('\n');
    out.push_str(REPORT_NOTE);
    out.push('\n');
    out
}

/// Whether a row has nothing in the table's columns: the tables leave it out.
pub fn blank(row: &Row) -> bool {
    row.sent == 0
        && row.read == 0
        && row.escalated == 0
        && row.late_reads == 0
        && row.failed == 0
        && row.sms_avoided == 0
        && row.cost == 0.0
        && row.saved == 0.0
}

/// The report as CSV: one line per row, the total last.
pub fn report_csv(r: &Report) -> String {
    let mut head: Vec<String> = r.by.iter().map(|d| heading(*d).to_owned()).collect();
    head.extend(
        [
            "accepted",
            "sent",
            "read",
            "read_rate",
            "ttr_p50_ms",
            "ttr_p90_ms",
            "escalated",
            "escalation_rate",
            "late_reads",
            "late_read_rate",
            "failed",
            "cost",
            "saved",
            "sms_avoided",
        ]
        .map(String::from),
    );
    let mut out = head.join(",");
    out.push('\n');
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_default();
    let opt_ms = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
    let rows = r.rows.iter().map(|row| (group_cells(row, &r.by), row));
    let total_cells = r.by.iter().map(|_| "all".to_owned()).collect();
    for (cells, row) in rows.chain(std::iter::once((total_cells, &r.total))) {
        let mut line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        line.extend([
            row.accepted.to_string(),
            row.sent.to_string(),
            row.read.to_string(),
            opt(row.read_rate),
            opt_ms(row.ttr_p50_ms),
            opt_ms(row.ttr_p90_ms),
            row.escalated.to_string(),
            opt(row.escalation_rate),
            row.late_reads.to_string(),
            opt(row.late_read_rate),
            row.failed.to_string(),
            format!("{:.2}", row.cost),
            format!("{:.2}", row.saved),
            row.sms_avoided.to_string(),
        ]);
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// A Unix ms time as RFC 3339 (UTC, to the minute).
pub fn stamp(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// The columns of a what-if table.
pub const WHAT_IF_COLUMNS: [&str; 5] = ["wait", "escalations", "cost", "vs now", "late reads"];

/// The cells of a what-if table under `WHAT_IF_COLUMNS`, one row per wait,
/// the current one marked `(now)`; `vs now` (the cost against the current
/// wait's, all segments together) only when `with_delta`, else `–`.
pub fn what_if_cells(w: &WhatIf, estimates: &[Estimate], with_delta: bool) -> Vec<Vec<String>> {
    let base = w
        .total
        .iter()
        .find(|e| e.wait_ms == w.current_wait_ms)
        .and_then(|e| e.cost);
    estimates
        .iter()
        .map(|e| {
            let mark = if e.wait_ms == w.current_wait_ms {
                " (now)"
            } else {
                ""
            };
            let delta = match (e.cost, base, with_delta) {
                (Some(c), Some(b), true) => {
                    let d = c - b;
                    if d.abs() < 0.005 {
                        "0.00".into()
                    } else {
                        format!("{}{}", if d > 0.0 { "+" } else { "" }, money(d))
                    }
                }
                _ => "–".into(),
            };
            vec![
                format!("{}{mark}", duration(e.wait_ms)),
                format!("{:.0}", e.escalations),
                e.cost.map_or("–".into(), money),
                delta,
                format!("{:.0}", e.late_reads),
            ]
        })
        .collect()
}

/// The what-if as tables: all segments together, then each segment.
pub fn what_if_table(w: &WhatIf) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "What if step {} of {} waited otherwise before the next step (now {}); late reads within {} of the escalation",
        u16::from(w.step) + 1,
        w.policy,
        duration(w.current_wait_ms),
        duration(w.late_read_window_ms),
    );
    if w.total.is_empty() {
        out.push_str(
            "\nNothing was sent on this step in the range: there is nothing to estimate from.\n",
        );
        return out;
    }
    let mut sections = vec![("all segments".to_owned(), &w.total)];
    if w.segments.len() > 1 {
        sections.extend(w.segments.iter().map(|(s, e)| (format!("segment {s}"), e)));
    }
    for (title, estimates) in sections {
        let _ = writeln!(out, "\n{title}");
        let head = WHAT_IF_COLUMNS.map(String::from);
        let rows = what_if_cells(w, estimates, title == "all segments");
        out.push_str(&table(&head, &rows));
    }
    out.push_str("\nThe estimate assumes:\n");
    for a in &w.assumptions {
        let _ = writeln!(out, "- {a}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_money_read_well() {
        assert_eq!(duration(45_000), "45s");
        assert_eq!(duration(210_000), "3m 30s");
        assert_eq!(duration(30 * 60_000), "30m");
        assert_eq!(duration(90 * 60_000), "1h 30m");
        assert_eq!(duration(86_400_000), "1d");
        assert_eq!(money(12_345.6), "12 345.60");
        assert_eq!(money(-4.2), "-4.20");
        assert_eq!(percent(Some(0.1234)), "12.3%");
        assert_eq!(percent(None), "–");
    }

    #[test]
    fn tables_align_numbers_right_and_text_left() {
        let t = table(
            &["channel".into(), "sent".into()],
            &[
                vec!["vk".into(), "1200".into()],
                vec!["sms".into(), "7".into()],
            ],
        );
        assert_eq!(t, "channel  sent\nvk       1200\nsms         7\n");
        for n in ["12 345.60", "–", ">1d", "+4.20", "-4.20", "52.5%"] {
            assert!(numeric(n), "{n}");
        }
        assert!(!numeric("vk"));
    }

    #[test]
    fn the_what_if_table_is_made_of_its_cells() {
        use crate::report::field;
        let counters: std::collections::BTreeMap<String, i64> = [
            (field("dd", Some(0), "vk", "new", "sent"), 10),
            (field("dd", Some(0), "vk", "new", "escalated"), 4),
            (field("dd", Some(0), "vk", "new", "ttr:15m"), 6),
            (field("dd", Some(1), "sms", "new", "sent"), 4),
            (field("dd", Some(1), "sms", "new", "cost"), 16_800),
        ]
        .into_iter()
        .collect();
        let w = crate::report::what_if::what_if(
            &counters,
            "dd",
            0,
            1_800_000,
            900_000,
            &[600_000, 1_800_000],
        );
        let all = what_if_cells(&w, &w.total, true);
        assert_eq!(all[1], ["30m (now)", "4", "16.80", "0.00", "0"]);
        assert_eq!(all[0], ["10m", "10", "42.00", "+25.20", "6"]);
        let segment = what_if_cells(&w, &w.segments["new"], false);
        assert_eq!(segment[0][3], "–");
        let text = what_if_table(&w);
        // A signed difference is a number: the column aligns right.
        assert!(
            text.contains("      10m           10  42.00  +25.20           6\n30m (now)            4  16.80    0.00           0\n"),
            "{text}"
        );
    }
}
