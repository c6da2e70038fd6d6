//! Readings the workloads take: counts polled until reached, CPU time, memory.

use std::time::{Duration, Instant};

use super::BenchError;
use super::rig::{nodes, redis_conn};
use crate::runtime::store::Target;

/// A section of `INFO` from each server (every primary of a cluster).
async fn infos(target: &Target, section: &str) -> Result<Vec<String>, BenchError> {
    let mut out = Vec::new();
    for node in nodes(target).await? {
        let mut c = redis_conn(&node).await?;
        out.push(redis::cmd("INFO").arg(section).query_async(&mut c).await?);
    }
    Ok(out)
}

/// A numeric `name:value` line of an `INFO` section.
fn info_field(info: &str, name: &str) -> f64 {
    info.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Memory Redis uses (summed over a cluster's primaries).
pub(super) async fn used_memory(target: &Target) -> Result<u64, BenchError> {
    let infos = infos(target, "memory").await?;
    Ok(infos
        .iter()
        .map(|i| info_field(i, "used_memory:") as u64)
        .sum())
}

/// CPU time the Redis servers have used (`INFO cpu`, user + system; over a
/// cluster's primaries).
pub(super) async fn redis_cpu(target: &Target) -> Result<Duration, BenchError> {
    let infos = infos(target, "cpu").await?;
    Ok(Duration::from_secs_f64(
        infos
            .iter()
            .map(|i| info_field(i, "used_cpu_user:") + info_field(i, "used_cpu_sys:"))
            .sum(),
    ))
}

/// `EVALSHA` calls Redis has run since its stats were reset, and the time
/// it spent in them (the commands the scripts ran included).
pub(super) async fn script_stats(target: &Target) -> Result<(u64, Duration), BenchError> {
    let (mut calls, mut usec) = (0, 0);
    for info in infos(target, "commandstats").await? {
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
        calls += field("calls=");
        usec += field("usec=");
    }
    Ok((calls, Duration::from_micros(usec)))
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
