//! The demo's printout: a few timelines that show the rules at work, the
//! channels' figures, and the accounting of every notification.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use jiff::tz::TimeZone;

use super::MIN;
use crate::config::Catalog;
use crate::core::{Cascade, ChannelKind, Entry, EntryKind, Outcome};
use crate::dev::embedded::simulate::{local, offset};
use crate::notification::Notification;
use crate::segments::sms_segments;

/// One accepted notification as the store holds it at the end of the day.
pub struct Played {
    pub notification: Box<Notification>,
    pub tz: TimeZone,
    pub cascade: Cascade,
    pub timeline: Vec<Entry>,
}

/// What intake made of the day's messages.
#[derive(Default)]
pub struct IntakeCounts {
    pub published: u64,
    pub accepted: u64,
    /// By error code.
    pub dead_lettered: BTreeMap<String, u64>,
    pub duplicates: u64,
}

/// Per-channel figures.
#[derive(Default)]
struct ChannelStats {
    sent: u64,
    read: u64,
    failed: u64,
    segments: u64,
    cost: f64,
}

/// The demo's printout and its counts (for tests).
pub struct Report {
    pub intake: IntakeCounts,
    pub outcomes: BTreeMap<String, u64>,
    pub text: String,
}

/// Everything the printout is made from.
pub struct Day<'a> {
    pub catalog: &'a Catalog,
    /// By notification id.
    pub played: &'a BTreeMap<String, Played>,
    /// Notification id → (channel, when) the customer read it.
    pub reads: &'a HashMap<String, (String, i64)>,
    pub intake: IntakeCounts,
}

/// Renders the report, `timelines` of them shown in full.
pub fn render(day: Day<'_>, timelines: usize) -> Report {
    let mut out = String::new();
    write_timelines(&mut out, &day, timelines);
    write_channels(&mut out, &channel_stats(&day), day.catalog);
    write_counts(&mut out, &day);
    let outcomes = outcomes(day.played);
    write_accounting(&mut out, &day.intake, &outcomes);
    Report {
        intake: day.intake,
        outcomes,
        text: out,
    }
}

/// How the cascades ended, by outcome word.
pub fn outcomes(played: &BTreeMap<String, Played>) -> BTreeMap<String, u64> {
    let mut outcomes = BTreeMap::new();
    for p in played.values() {
        let outcome = p.cascade.outcome().map_or("running", Outcome::word);
        *outcomes.entry(outcome.to_owned()).or_default() += 1;
    }
    outcomes
}

fn kind_of(catalog: &Catalog, channel: &str) -> Option<ChannelKind> {
    catalog.channels.get(channel).map(|c| c.kind)
}

fn channel_stats(day: &Day<'_>) -> BTreeMap<String, ChannelStats> {
    let mut by_channel: BTreeMap<String, ChannelStats> = BTreeMap::new();
    for (id, p) in day.played {
        for e in &p.timeline {
            let Some(ch) = &e.channel else { continue };
            let stats = by_channel.entry(ch.clone()).or_default();
            match e.event {
                EntryKind::Sent => {
                    stats.sent += 1;
                    let Some(c) = day.catalog.channels.get(ch) else {
                        continue;
                    };
                    let segments = if c.kind == ChannelKind::Sms {
                        let text = p.notification.text_for(ch, c.kind).unwrap_or("");
                        sms_segments(text).1 as u64
                    } else {
                        1
                    };
                    stats.segments += segments;
                    let per = if c.cost_per_segment {
                        segments as f64
                    } else {
                        1.0
                    };
                    stats.cost += c.cost.unwrap_or(0.0) * per;
                }
                EntryKind::SendFailed if e.until_ms.is_none() => stats.failed += 1,
                _ => {}
            }
        }
        if let Some((ch, at)) = day.reads.get(id)
            && p.timeline
                .iter()
                .any(|e| e.event == EntryKind::Receipt && e.at_ms == *at)
        {
            by_channel.entry(ch.clone()).or_default().read += 1;
        }
    }
    by_channel
}

/// SMS avoided (the cascade was read before a later SMS step came due) and
/// the money that saved.
fn sms_avoided(day: &Day<'_>) -> (u64, f64) {
    let catalog = day.catalog;
    let sms_cost = catalog
        .channels
        .values()
        .find(|c| c.kind == ChannelKind::Sms)
        .and_then(|c| c.cost)
        .unwrap_or(0.0);
    let (mut avoided, mut saved) = (0, 0.0);
    for p in day.played.values() {
        let Some(Outcome::Completed { .. }) = p.cascade.outcome() else {
            continue;
        };
        let Some(policy) = catalog.policies.get(&p.notification.policy) else {
            continue;
        };
        let later = policy
            .steps
            .get(p.cascade.step as usize + 1..)
            .unwrap_or(&[]);
        let sms_later = later.iter().any(|s| {
            s.channels
                .iter()
                .any(|c| kind_of(catalog, c) == Some(ChannelKind::Sms))
        });
        if sms_later {
            avoided += 1;
            let text = p
                .notification
                .text_for("sms", ChannelKind::Sms)
                .unwrap_or("");
            saved += sms_cost * sms_segments(text).1 as f64;
        }
    }
    (avoided, saved)
}

/// Does a timeline show the rule a section is about?
type Shows<'a> = dyn Fn(&Played) -> bool + 'a;

fn has(p: &Played, kind: EntryKind, reason: Option<&str>) -> bool {
    p.timeline
        .iter()
        .any(|e| e.event == kind && (reason.is_none() || e.reason.as_deref() == reason))
}

/// A handful of timelines that show the rules at work.
fn write_timelines(out: &mut String, day: &Day<'_>, wanted: usize) {
    let catalog = day.catalog;
    let sections: [(&str, Box<Shows>); 6] = [
        (
            "read on the first channel",
            Box::new(|p| {
                matches!(p.cascade.outcome(), Some(Outcome::Completed { .. }))
                    && p.cascade.step == 0
            }),
        ),
        (
            "never read: escalated to SMS",
            Box::new(|p| {
                has(p, EntryKind::Escalated, None)
                    && p.timeline.iter().any(|e| {
                        e.event == EntryKind::Sent
                            && e.channel.as_deref().and_then(|c| kind_of(catalog, c))
                                == Some(ChannelKind::Sms)
                    })
            }),
        ),
        (
            "no VK: skipped straight to SMS",
            Box::new(|p| {
                p.timeline.iter().any(|e| {
                    e.event == EntryKind::Skipped
                        && e.step == Some(0)
                        && e.channel.as_deref() == Some("vk")
                })
            }),
        ),
        (
            "held by quiet hours",
            Box::new(|p| has(p, EntryKind::Deferred, Some("quiet_hours"))),
        ),
        (
            "held by a rate limit",
            Box::new(|p| has(p, EntryKind::Deferred, Some("limit"))),
        ),
        (
            "failed hard: escalated at once",
            Box::new(|p| {
                p.timeline
                    .iter()
                    .any(|e| e.event == EntryKind::SendFailed && e.until_ms.is_none())
            }),
        ),
    ];
    let _ = writeln!(out, "A few timelines (customer's local time):\n");
    let mut shown: HashSet<&str> = HashSet::new();
    for (title, shows) in sections.iter().take(wanted) {
        let found = day
            .played
            .iter()
            .find(|(id, p)| !shown.contains(id.as_str()) && shows(p));
        let Some((id, p)) = found else { continue };
        shown.insert(id);
        let _ = writeln!(
            out,
            "  {id} ({}) — {title}",
            p.tz.iana_name().unwrap_or("?")
        );
        write_timeline(out, p);
        let _ = writeln!(out);
    }
}

fn write_timeline(out: &mut String, p: &Played) {
    let start = p.timeline.first().map_or(0, |e| e.at_ms);
    for e in &p.timeline {
        let mut detail = Vec::new();
        if let Some(reason) = &e.reason {
            detail.push(reason.replace('_', " "));
        }
        if let Some(u) = e.until_ms {
            detail.push(format!("until {}", local(u, &p.tz)));
        }
        let _ = writeln!(
            out,
            "    {:<22} {:<10} {:<12} {:<7} {:<12} {}",
            local(e.at_ms, &p.tz),
            offset((e.at_ms - start) / MIN * 60),
            e.event.as_str(),
            e.step
                .map(|s| format!("step {}", s + 1))
                .unwrap_or_default(),
            e.channel.as_deref().unwrap_or(""),
            detail.join(", ")
        );
    }
}

fn write_channels(
    out: &mut String,
    by_channel: &BTreeMap<String, ChannelStats>,
    catalog: &Catalog,
) {
    let _ = writeln!(out, "Channels:");
    let _ = writeln!(
        out,
        "  {:<12} {:>7} {:>7} {:>7} {:>7} {:>9} {:>10}",
        "channel", "sent", "read", "rate", "failed", "segments", "cost"
    );
    for (ch, s) in by_channel {
        // SMS has no read receipts: a rate of 0% would mislead.
        let no_reads = kind_of(catalog, ch) == Some(ChannelKind::Sms);
        let rate = if s.sent > 0 && !no_reads {
            format!("{:.0}%", 100.0 * s.read as f64 / s.sent as f64)
        } else {
            "-".into()
        };
        let _ = writeln!(
            out,
            "  {ch:<12} {:>7} {:>7} {rate:>7} {:>7} {:>9} {:>10.2}",
            s.sent, s.read, s.failed, s.segments, s.cost
        );
    }
    let sum = |f: fn(&ChannelStats) -> u64| by_channel.values().map(f).sum::<u64>();
    let _ = writeln!(
        out,
        "  {:<12} {:>7} {:>7} {:>7} {:>7} {:>9} {:>10.2}\n",
        "total",
        sum(|s| s.sent),
        sum(|s| s.read),
        "",
        sum(|s| s.failed),
        "",
        by_channel.values().map(|s| s.cost).sum::<f64>()
    );
}

fn write_counts(out: &mut String, day: &Day<'_>) {
    let entries = || day.played.values().flat_map(|p| &p.timeline);
    let count = |kind: EntryKind| entries().filter(|e| e.event == kind).count();
    let deferred = |why: &str| {
        entries()
            .filter(|e| e.event == EntryKind::Deferred && e.reason.as_deref() == Some(why))
            .count()
    };
    let _ = writeln!(
        out,
        "Escalations: {}   skipped channels: {}   late reads: {}",
        count(EntryKind::Escalated),
        count(EntryKind::Skipped),
        count(EntryKind::LateRead)
    );
    let _ = writeln!(
        out,
        "Deferred: {} by quiet hours, {} by per-customer limits",
        deferred("quiet_hours"),
        deferred("limit")
    );
    let (avoided, saved) = sms_avoided(day);
    let _ = writeln!(
        out,
        "SMS avoided (read before the SMS step): {avoided}, saving {saved:.2}\n"
    );
}

fn write_accounting(out: &mut String, intake: &IntakeCounts, outcomes: &BTreeMap<String, u64>) {
    let IntakeCounts {
        published,
        accepted,
        duplicates,
        ..
    } = *intake;
    let dead: u64 = intake.dead_lettered.values().sum();
    let finished: u64 = outcomes.values().sum();
    let _ = writeln!(
        out,
        "Intake: {published} published = {accepted} accepted + {dead} dead-lettered + {duplicates} duplicates"
    );
    if !intake.dead_lettered.is_empty() {
        let codes: Vec<String> = intake
            .dead_lettered
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(out, "  dead-letter codes: {}", codes.join(", "));
    }
    let parts: Vec<String> = outcomes.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let _ = writeln!(out, "Outcomes: {accepted} accepted = {}", parts.join(" + "));
    let balanced = published == accepted + dead + duplicates && accepted == finished;
    let _ = writeln!(
        out,
        "Every notification accounted for: {}",
        if balanced { "yes" } else { "NO" }
    );
}
