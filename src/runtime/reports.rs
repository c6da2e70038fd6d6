//! The report and the what-if, read from a store's counters for the CLI,
//! the `/v1/report` API and the console alike.

use std::collections::BTreeSet;

use super::store::{CascadeStore, StoreError};
use crate::config::Catalog;
use crate::core::ChannelKind;
use crate::report::rows::{Query, build};
use crate::report::what_if::{WhatIf, what_if};
use crate::report::{Dimension, Report, hour_of};

/// A report's range (Unix ms, `to` exclusive), policy and grouping.
#[derive(Clone, Debug)]
pub struct ReportRequest {
    pub from_ms: i64,
    pub to_ms: i64,
    pub policy: Option<String>,
    pub by: Vec<Dimension>,
}

/// The hours a range covers: from the hour `from_ms` falls in to the one
/// `to_ms` falls in, both included (the counters are kept by hour). A
/// range longer than the counters are kept is cut to the retention before
/// `to_ms`: there is nothing further back to read.
fn hours(catalog: &Catalog, from_ms: i64, to_ms: i64) -> (i64, i64) {
    let kept = catalog
        .settings
        .report
        .retention_ms
        .saturating_add(3_600_000);
    let from_ms = from_ms.max(to_ms.saturating_sub(kept));
    let to = hour_of(to_ms.saturating_sub(1)).saturating_add(1);
    (hour_of(from_ms).min(to), to)
}

/// The channels of SMS kind in the configuration.
fn sms_channels(catalog: &Catalog) -> BTreeSet<String> {
    catalog
        .channels
        .values()
        .filter(|c| c.kind == ChannelKind::Sms)
        .map(|c| c.name.clone())
        .collect()
}

/// The policies whose replies must be answered within a deadline.
fn answer_deadlines(catalog: &Catalog) -> BTreeSet<String> {
    catalog
        .policies
        .values()
        .filter(|p| p.answer.is_some())
        .map(|p| p.name.clone())
        .collect()
}

/// The report `req` asks for.
pub async fn report<S: CascadeStore>(
    store: &S,
    catalog: &Catalog,
    req: &ReportRequest,
) -> Result<Report, StoreError> {
    let (from, to) = hours(catalog, req.from_ms, req.to_ms);
    let counters = store.report_counts(from, to).await?;
    let sms = sms_channels(catalog);
    let deadlines = answer_deadlines(catalog);
    Ok(build(
        &counters,
        &Query {
            from_ms: from.saturating_mul(3_600_000),
            to_ms: to.saturating_mul(3_600_000),
            policy: req.policy.as_deref(),
            by: &req.by,
            sms_channels: &sms,
            answer_deadlines: &deadlines,
        },
    ))
}

/// A step of a policy named by its number (from 1, as `status` prints
/// it) or by one of its channels.
pub fn find_step(catalog: &Catalog, policy: &str, word: &str) -> Result<u8, String> {
    let p = catalog
        .policies
        .get(policy)
        .ok_or_else(|| format!("no policy `{policy}`"))?;
    let last = p.steps.len();
    let index = match word.parse::<usize>() {
        Ok(n) if (1..=last).contains(&n) => n - 1,
        Ok(n) => return Err(format!("`{policy}` has steps 1 to {last}, not {n}")),
        Err(_) => p
            .steps
            .iter()
            .position(|s| s.channels.iter().any(|c| c == word))
            .ok_or_else(|| format!("no step of `{policy}` sends on `{word}`"))?,
    };
    if index + 1 >= last {
        return Err(format!(
            "step {} of `{policy}` is its last: no step follows to escalate to",
            index + 1
        ));
    }
    Ok(index as u8)
}

/// The waits a what-if tries besides the current one and the one asked for.
pub const WHAT_IF_WAITS_MS: [i64; 9] = [
    5 * 60_000,
    10 * 60_000,
    15 * 60_000,
    30 * 60_000,
    3_600_000,
    2 * 3_600_000,
    6 * 3_600_000,
    12 * 3_600_000,
    86_400_000,
];

/// The what-if for `step` of `policy` over the range, at `wait_ms` and the
/// usual waits.
pub async fn what_if_for<S: CascadeStore>(
    store: &S,
    catalog: &Catalog,
    policy: &str,
    step: u8,
    wait_ms: Option<i64>,
    from_ms: i64,
    to_ms: i64,
) -> Result<WhatIf, StoreError> {
    let (from, to) = hours(catalog, from_ms, to_ms);
    let counters = store.report_counts(from, to).await?;
    let current = catalog
        .policies
        .get(policy)
        .and_then(|p| p.steps.get(usize::from(step)))
        .and_then(|s| s.wait_ms)
        .unwrap_or(0);
    let mut waits = WHAT_IF_WAITS_MS.to_vec();
    waits.push(current);
    waits.extend(wait_ms);
    Ok(what_if(
        &counters,
        policy,
        step,
        current,
        catalog.timing().late_read_window_ms,
        &waits,
    ))
}
