//! The report as one Markdown table, for `cascade bench` to print.

use std::fmt::Write as _;
use std::time::Duration;

use super::{BenchOptions, Floor, Footprint, Intake, Report, Spread, Sweep, TIMER_SHARDS, rate};

/// A duration in milliseconds, one decimal.
fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The report as one table: floors first, then each workload's rate and its
/// ratio to the slowest floor.
pub fn render(report: &Report, opts: &BenchOptions) -> String {
    let mut out = String::new();
    let slowest = report
        .floors
        .iter()
        .min_by(|a, b| a.rate().total_cmp(&b.rate()));
    let base = slowest.map(Floor::rate).unwrap_or(0.0);
    settings(&mut out, opts);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| figure | N | value | per second | × slowest floor | notes |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---|");
    floor_rows(&mut out, &report.floors, slowest, base);
    if let Some(w) = &report.w1 {
        w1_row(&mut out, w, base);
    }
    if let Some(w) = &report.w2 {
        w2_rows(&mut out, w, base);
    }
    if let Some(w) = &report.w2s {
        w2s_row(&mut out, w);
    }
    if let Some(w) = &report.w3 {
        w3_rows(&mut out, w);
    }
    out
}

fn w2s_row(out: &mut String, w: &Spread) {
    let _ = writeln!(
        out,
        "| W2s lateness p50 / p99 / max, due moments spread | {} | {} / {} / {} | | | {} of {} SMS; published over 5 s, each due 2 s after its VK message's arrival |",
        w.n,
        ms(w.p50),
        ms(w.p99),
        ms(w.max),
        w.sms,
        w.n
    );
    let _ = writeln!(
        out,
        "| W2s Redis per notification: CPU / script calls | {} | {:.0} µs / {:.2} | | | {:.2} s of Redis CPU and {} script calls from the first publish to the last SMS |",
        w.n,
        w.redis_cpu.as_secs_f64() * 1e6 / w.n.max(1) as f64,
        w.script_calls as f64 / w.n.max(1) as f64,
        w.redis_cpu.as_secs_f64(),
        w.script_calls
    );
}

/// The line above the table: what the bench ran with.
fn settings(out: &mut String, opts: &BenchOptions) {
    let _ = writeln!(
        out,
        "settings: {} queues, prefetch {}, scheduler concurrency {}, scheduler batch {}, timer shards {TIMER_SHARDS}, \
         floors at concurrency {} ({} round trips), Redis connections: one for the claims, one for the rest, timeout {} s",
        opts.queue_type,
        opts.prefetch,
        opts.concurrency,
        opts.batch,
        opts.concurrency,
        opts.floor_n,
        opts.timeout.as_secs()
    );
}

/// One row per floor, the slowest marked.
fn floor_rows(out: &mut String, floors: &[Floor], slowest: Option<&Floor>, base: f64) {
    for f in floors {
        let mark = if slowest.is_some_and(|s| s.name == f.name) {
            "slowest floor"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "| floor: {} | {} | {:.2} s | {:.0} | {} | {mark} |",
            f.name,
            f.count,
            f.elapsed.as_secs_f64(),
            f.rate(),
            ratio(f.rate(), base)
        );
    }
}

/// W1's row.
fn w1_row(out: &mut String, w: &Intake, base: f64) {
    let r = rate(w.sent.min(w.n), w.elapsed);
    let note = if w.sent >= w.n {
        String::new()
    } else {
        format!("TIMEOUT: {} of {} sent; ", w.sent, w.n)
    };
    let _ = writeln!(
        out,
        "| W1 intake: first-step sends | {} | {:.2} s | {r:.0} | {} | {note}first send {} after start; published at {:.0}/s with confirms |",
        w.n,
        w.elapsed.as_secs_f64(),
        ratio(r, base),
        w.first_send.map(ms).unwrap_or("-".into()),
        w.publish_rate
    );
}

/// W2's rows: the rate, then what must be zero, lateness and cost.
fn w2_rows(out: &mut String, w: &Sweep, base: f64) {
    let r = rate(w.sms_distinct, w.elapsed);
    let _ = writeln!(
        out,
        "| W2 sweep: escalations (SMS) | {} | {:.2} s | {r:.0} | {} | {} of {} SMS; {:.0} due cascades/s (read ones included) |",
        w.n,
        w.elapsed.as_secs_f64(),
        ratio(r, base),
        w.sms_distinct,
        w.sms_expected,
        rate(w.n, w.elapsed)
    );
    let _ = writeln!(
        out,
        "| W2 SMS to read customers (must be 0) | {} | {} | | | repeated SMS: {} |",
        w.n, w.sms_to_read, w.sms_repeated
    );
    let _ = writeln!(
        out,
        "| W2 SMS missing for unread (must be 0) | {} | {} | | | cascades left in timers after 2 s: {} |",
        w.n, w.sms_missing, w.unsettled
    );
    let _ = writeln!(
        out,
        "| W2 lateness p50 / p99 / max | {} | {} / {} / {} | | | SMS arrival − the clock jump that made all due |",
        w.n,
        ms(w.lateness_p50),
        ms(w.lateness_p99),
        ms(w.lateness_max)
    );
    let per_sms = |d: Duration| d.as_secs_f64() * 1e6 / w.sms_distinct.max(1) as f64;
    let _ = writeln!(
        out,
        "| W2 CPU per SMS: Redis / daemon + fakes | {} | {:.0} µs / {:.0} µs | | | {:.2} s / {:.2} s of CPU from the jump to the last SMS ({:.2} s) |",
        w.n,
        per_sms(w.redis_cpu),
        per_sms(w.process_cpu),
        w.redis_cpu.as_secs_f64(),
        w.process_cpu.as_secs_f64(),
        w.elapsed.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| W2 Redis scripts per SMS: calls / time in them | {} | {:.2} / {:.0} µs | | | {} calls, {:.2} s, from the jump to 2 s after the last SMS (INFO commandstats) |",
        w.n,
        w.script_calls as f64 / w.sms_distinct.max(1) as f64,
        per_sms(w.script_time),
        w.script_calls,
        w.script_time.as_secs_f64()
    );
}

/// W3's rows: memory of this process and of Redis.
fn w3_rows(out: &mut String, w: &Footprint) {
    let note = if w.waiting >= w.n {
        String::new()
    } else {
        format!("TIMEOUT: {} of {} waiting; ", w.waiting, w.n)
    };
    let per = if w.n > 0 {
        w.redis_after.saturating_sub(w.redis_before) as f64 / w.n as f64
    } else {
        0.0
    };
    let _ = writeln!(
        out,
        "| W3 process RSS, peak while filling | {} | {:.1} MiB | | | {note}{:.1} MiB before the daemon started (+{:.1} MiB); VmHWM {:.1} MiB (whole bench process) |",
        w.n,
        w.rss_peak_kib as f64 / 1024.0,
        w.rss_before_kib as f64 / 1024.0,
        w.rss_peak_kib.saturating_sub(w.rss_before_kib) as f64 / 1024.0,
        w.hwm_kib as f64 / 1024.0
    );
    let _ = writeln!(
        out,
        "| W3 Redis used_memory per pending cascade | {} | {per:.0} B | | | {:.1} MiB → {:.1} MiB |",
        w.n,
        w.redis_before as f64 / 1_048_576.0,
        w.redis_after as f64 / 1_048_576.0
    );
    let parts: Vec<String> = w
        .breakdown
        .iter()
        .map(|(kind, bytes)| format!("{kind} {bytes:.0} B"))
        .collect();
    let _ = writeln!(
        out,
        "| W3 … by key (MEMORY USAGE) | {} | {:.0} B | | | {} |",
        w.n,
        w.breakdown.iter().map(|(_, b)| b).sum::<f64>(),
        parts.join("; ")
    );
}

/// `r` as a multiple of the slowest floor's rate `base`; `-` with no floor.
fn ratio(r: f64, base: f64) -> String {
    if base > 0.0 {
        format!("{:.2}", r / base)
    } else {
        "-".into()
    }
}
