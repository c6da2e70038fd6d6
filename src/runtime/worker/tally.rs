//! What a decision adds to the report (report/tally.rs), worked out right
//! before it is stored: the receipts recorded since the cascade's last
//! decision, then the decision's own entries. The late reads found are
//! added to the decision's entries, and the state notes how much of the
//! timeline is counted.

use super::*;
use crate::core::{EntryKind, channel_for_step};
use crate::notification::Notification;
use crate::report::{Count, Tally};
use crate::runtime::record::decode_entry;
use crate::segments::sms_segments;

/// The price of one message of `n` on `channel`, SMS segments counted when
/// the channel is priced per segment; `None` when it states no price.
pub fn price_of(catalog: &Catalog, n: &Notification, channel: &str) -> Option<f64> {
    let c = catalog.channels.get(channel)?;
    let cost = c.cost?;
    if !c.cost_per_segment {
        return Some(cost);
    }
    let text = n.text_for(channel, c.kind).unwrap_or("");
    Some(cost * f64::from(sms_segments(text).1))
}

/// The stored timeline's entries, one per line as `count_lines` counts
/// them. A line that cannot be read stands as an entry that counts nothing
/// (a `duplicate`, which no decision writes into a timeline), so the lines
/// after it keep their places and still count.
fn stored_entries(timeline: &str) -> Vec<Entry> {
    if timeline.is_empty() {
        return Vec::new();
    }
    timeline
        .split('\n')
        .map(|line| {
            decode_entry(line).unwrap_or(Entry {
                at_ms: 0,
                event: EntryKind::Duplicate,
                step: None,
                channel: None,
                reason: Some("unreadable".into()),
                until_ms: None,
                provider_message_id: None,
            })
        })
        .collect()
}

/// Whether counting these entries needs the timeline before them: a
/// receipt is matched to the message it answers, an escalation to the
/// channel it left, a completion to the read that ended it.
fn needs_history(entries: &[Entry]) -> bool {
    entries.iter().any(|e| {
        matches!(
            e.event,
            EntryKind::Receipt | EntryKind::Escalated | EntryKind::Completed
        )
    })
}

/// What `decision` (after `earlier`, the entries of a decision sent on the
/// lease and not stored yet) adds to the report, made on `loaded`. Adds
/// the late reads it finds to the decision's entries and the count of
/// timeline entries counted to its state.
pub fn tally(
    catalog: &Catalog,
    loaded: &Loaded,
    earlier: &[Entry],
    decision: &mut Decision,
    now: i64,
) -> Vec<Count> {
    let untallied = loaded.untallied();
    let mut fresh: Vec<Entry> = Vec::new();
    let mut counted: Vec<Entry> = Vec::new();
    let stored_fresh = untallied > 0;
    if stored_fresh || needs_history(earlier) || needs_history(&decision.entries) {
        let mut all = stored_entries(&loaded.timeline);
        let split = all.len().saturating_sub(untallied);
        fresh = all.split_off(split);
        counted = all;
    }
    fresh.extend_from_slice(earlier);
    fresh.extend_from_slice(&decision.entries);
    let ctx = Context {
        notification_id: &loaded.notification.id,
        policy: &loaded.policy,
        channels: &catalog.channel_rules,
        recipient: &loaded.recipient,
        receipts: &loaded.receipts,
        timing: catalog.timing(),
    };
    let price = |ch: &str| price_of(catalog, &loaded.notification, ch);
    let would_use = |step: usize| channel_for_step(&ctx, step).map(str::to_owned);
    let tallied = Tally {
        policy: &loaded.policy,
        counted: &counted,
        fresh: &fresh,
        before: &loaded.cascade,
        receipts: &loaded.receipts,
        late_read_window_ms: catalog.timing().late_read_window_ms,
        price: &price,
        would_use: &would_use,
        now_ms: now,
    }
    .run();
    decision.entries.extend(tallied.late_reads);
    let lines = loaded.lines + earlier.len() + decision.entries.len();
    decision.cascade.tallied = Some(u32::try_from(lines).unwrap_or(u32::MAX));
    tallied.counts
}

impl<S: CascadeStore> Worker<S> {
    /// The money among counts just stored, for the metrics.
    pub(super) fn counted(&self, policy: &str, counts: &[Count]) {
        for c in counts {
            let amount = c.n as f64 / crate::report::tally::MONEY_SCALE;
            match c.metric.as_str() {
                "cost" => self.telemetry.money_spent(&c.channel, policy, amount),
                "saved" => self.telemetry.money_saved(&c.channel, policy, amount),
                _ => {}
            }
        }
    }
}

/// What a new cascade's first decision adds to the report (nothing is
/// stored before it); its state notes its entries as counted.
pub fn tally_new(
    catalog: &Catalog,
    ctx: &Context<'_>,
    notification: &Notification,
    decision: &mut Decision,
    now: i64,
) -> Vec<Count> {
    let price = |ch: &str| price_of(catalog, notification, ch);
    let would_use = |step: usize| channel_for_step(ctx, step).map(str::to_owned);
    let before = decision.cascade.clone();
    let tallied = Tally {
        policy: ctx.policy,
        counted: &[],
        fresh: &decision.entries,
        before: &before,
        receipts: ctx.receipts,
        late_read_window_ms: ctx.timing.late_read_window_ms,
        price: &price,
        would_use: &would_use,
        now_ms: now,
    }
    .run();
    decision.entries.extend(tallied.late_reads);
    decision.cascade.tallied = Some(u32::try_from(decision.entries.len()).unwrap_or(u32::MAX));
    tallied.counts
}
