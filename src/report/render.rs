//! Text forms of a report and a what-if: an aligned table for people, CSV
//! for spreadsheets (JSON comes from serde). The console uses the same
//! words and the same formatting of times, rates and money.

use std::fmt::Write as _;

use super::replies::ReplyRow;
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
    if !r.replies.is_empty() {
        out.push_str("\nReplies\n\n");
        out.push_str(&table(&replies_head(r), &replies_rows(r)));
        out.push('\n');
        out.push_str(REPLIES_NOTE);
        out.push('\n');
    }
    out
}

/// The columns of the replies table after its policy (and segment).
pub const REPLIES_COLUMNS: [&str; 11] = [
    "received",
    "handed over",
    "answered",
    "in time",
    "escalated",
    "after escalation",
    "unanswered",
    "open",
    "answer p50",
    "answer p90",
    "in-time rate",
];

/// What the replies table's columns mean, printed under it.
pub const REPLIES_NOTE: &str = "replies to each policy's notifications: in time = answered within \
     answer_within (business hours when set), no staff asked; escalated = deadline missed, staff asked; \
     unanswered = staff escalation ran out, no answer since; open = still waiting; answer p50/p90 from the \
     hand-over (from buckets); in-time rate = in time ÷ (in time + deadline missed); \
     – = the policy has no answer deadline";

/// The replies table's heading: policy, segment when grouped by it, then
/// `REPLIES_COLUMNS`.
pub fn replies_head(r: &Report) -> Vec<String> {
    let mut head = vec!["policy".to_owned()];
    if r.by.contains(&Dimension::Segment) {
        head.push("segment".into());
    }
    head.extend(REPLIES_COLUMNS.iter().map(|c| c.to_string()));
    head
}

/// The replies rows' cells under `replies_head`.
pub fn replies_rows(r: &Report) -> Vec<Vec<String>> {
    let by_segment = r.by.contains(&Dimension::Segment);
    r.replies
        .iter()
        .map(|row| {
            let mut cells = vec![row.policy.clone()];
            if by_segment {
                cells.push(row.segment.clone().unwrap_or_default());
            }
            cells.extend(reply_cells(row));
            cells
        })
        .collect()
}

/// A replies row's cells under `REPLIES_COLUMNS`: `–` where the policy
/// has no deadline to count against.
pub fn reply_cells(row: &ReplyRow) -> Vec<String> {
    let n = |v: Option<i64>| v.map_or("–".into(), |n| n.to_string());
    let mut cells: Vec<String> = row.counts().into_iter().map(n).collect();
    cells.extend([
        time_to_read(row.answer_p50_ms),
        time_to_read(row.answer_p90_ms),
        percent(row.in_time_rate),
    ]);
    cells
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
    if !r.replies.is_empty() {
        // A second table, after an empty line, with a heading of its own.
        out.push('\n');
        out.push_str(&replies_csv(r));
    }
    out
}

/// The replies as CSV: one line per policy (and segment), empty cells
/// where the policy has no deadline.
pub fn replies_csv(r: &Report) -> String {
    let by_segment = r.by.contains(&Dimension::Segment);
    let mut head = vec!["replies_to_policy"];
    if by_segment {
        head.push("segment");
    }
    head.extend([
        "received",
        "handed_over",
        "answered",
        "answered_in_time",
        "escalated",
        "answered_after_escalation",
        "unanswered",
        "open",
        "answer_p50_ms",
        "answer_p90_ms",
        "in_time_rate",
    ]);
    let mut out = head.join(",");
    out.push('\n');
    let n = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
    for row in &r.replies {
        let mut line = vec![csv_cell(&row.policy)];
        if by_segment {
            line.push(csv_cell(row.segment.as_deref().unwrap_or_default()));
        }
        line.extend(row.counts().into_iter().map(n));
        line.extend([
            n(row.answer_p50_ms),
            n(row.answer_p90_ms),
            row.in_time_rate
                .map(|x| format!("{x:.4}"))
                .unwrap_or_default(),
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

    /// A report of `dd` (customers) and replies to it, one with a deadline
    /// and one (`plain`) without.
    fn with_replies(by: &[Dimension]) -> Report {
        use crate::report::field;
        use std::collections::{BTreeMap, BTreeSet};
        let counters: BTreeMap<String, i64> = [
            (field("dd", None, "", "new", "accepted"), 10),
            (field("dd", Some(0), "vk", "new", "sent"), 10),
            (field("dd:answer", None, "", "new", "accepted"), 4),
            (field("dd:answer", Some(0), "helpdesk", "new", "sent"), 4),
            (field("dd:answer", Some(0), "helpdesk", "new", "read"), 2),
            (
                field("dd:answer", Some(0), "helpdesk", "new", "escalated"),
                2,
            ),
            (field("dd:answer", Some(1), "manager", "new", "sent"), 2),
            (
                field("dd:answer", Some(1), "manager", "new", "exhausted"),
                1,
            ),
            (field("dd:answer", None, "", "new", "answer:5m"), 2),
            (field("plain:answer", None, "", "new", "accepted"), 3),
            (field("plain:answer", Some(0), "helpdesk", "new", "sent"), 3),
            (field("plain:answer", Some(0), "", "new", "exhausted"), 3),
        ]
        .into_iter()
        .collect();
        crate::report::rows::build(
            &counters,
            &crate::report::rows::Query {
                from_ms: 0,
                to_ms: 3_600_000,
                policy: None,
                by,
                sms_channels: &BTreeSet::new(),
                answer_deadlines: &BTreeSet::from(["dd".to_owned()]),
            },
        )
    }

    #[test]
    fn replies_get_a_table_of_their_own_after_the_report() {
        let r = with_replies(&[Dimension::Policy, Dimension::Step, Dimension::Channel]);
        let text = report_table(&r);
        let (main, replies) = text.split_once("\nReplies\n\n").expect(&text);
        // Staff sends are not customers' notifications.
        assert!(
            !main.contains("dd:answer") && !main.contains("helpdesk"),
            "{main}"
        );
        assert!(main.contains("10 notifications accepted"), "{main}");
        assert_eq!(r.total.sent, 10);
        let lines: Vec<&str> = replies.lines().collect();
        assert_eq!(
            lines[0].split("  ").filter(|c| !c.is_empty()).count(),
            REPLIES_COLUMNS.len() + 1,
            "{replies}"
        );
        let cells = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            cells(lines[1]),
            // answer p50 3m 30s, p90 4m 42s
            [
                "dd", "4", "4", "2", "2", "2", "0", "1", "1", "3m", "30s", "4m", "42s", "50.0%"
            ]
        );
        assert_eq!(
            cells(lines[2]),
            [
                "plain", "3", "3", "0", "–", "–", "–", "–", "–", "–", "–", "–"
            ]
        );
        assert!(replies.contains(REPLIES_NOTE));
        let csv = report_csv(&r);
        let (_, replies) = csv.split_once("\n\n").expect(&csv);
        assert_eq!(
            replies,
            "replies_to_policy,received,handed_over,answered,answered_in_time,escalated,answered_after_escalation,unanswered,open,answer_p50_ms,answer_p90_ms,in_time_rate\n\
             dd,4,4,2,2,2,0,1,1,210000,282000,0.5000\n\
             plain,3,3,0,,,,,,,,\n"
        );
        // By segment: a segment column.
        let r = with_replies(&[Dimension::Segment]);
        assert_eq!(replies_head(&r)[1], "segment");
        assert_eq!(replies_rows(&r)[0][..3], ["dd", "new", "4"]);
    }

    #[test]
    fn no_replies_no_replies_section() {
        let mut r = with_replies(&[Dimension::Policy]);
        r.replies.clear();
        assert!(!report_table(&r).contains("Replies"));
        assert!(!report_csv(&r).contains("replies_to_policy"));
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
