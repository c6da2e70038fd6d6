//! Readings the workloads take: counts polled until reached, CPU time, memory.

use std::time::{Duration, Instant};

use super::BenchError;
use super::rig::redis_conn;

pub(super) async fn used_memory(url: &str) -> Result<u64, BenchError> {
    let mut c = redis_conn(url).await?;
    let info: String = redis::cmd("INFO").arg("memory").query_async(&mut c).await?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

/// CPU time the Redis server has used (`INFO cpu`, user + system).
pub(super) async fn redis_cpu(
    conn: &mut redis::aio::ConnectionManager,
) -> Result<Duration, BenchError> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await?;
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    Ok(Duration::from_secs_f64(
        field("used_cpu_user:") + field("used_cpu_sys:"),
    ))
}

/// `EVALSHA` calls Redis has run since its stats were reset, and the time
/// it spent in them (the commands the scripts ran included).
pub(super) async fn script_stats(
    conn: &mut redis::aio::ConnectionManager,
) -> Result<(u64, Duration), BenchError> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    let line = info
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
        .unwrap_or("");
    let field = |name: &str| -> u64 {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("calls="), Duration::from_micros(field("usec="))))
}

/// CPU time this process has used, user + system (`/proc/self/stat`, in
/// clock ticks of 1/100 s, as on every Linux this runs on; zero elsewhere).
pub(super) fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11) // state … cmajflt; then utime, stime
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// `VmRSS` and `VmHWM` of this process, in KiB (0 where /proc is missing).
pub(super) fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Polls `count` every 5 ms until it reaches `n` or `timeout` passes.
/// Returns the moment it first was above zero and the moment it reached `n`.
pub(super) async fn watch(
    n: usize,
    timeout: Duration,
    count: impl Fn() -> usize,
) -> (Option<Instant>, Option<Instant>, usize) {
    let started = Instant::now();
    let mut first = None;
    loop {
        let c = count();
        if c > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if c >= n {
            return (first, Some(Instant::now()), c);
        }
        if started.elapsed() > timeout {
            return (first, None, c);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
