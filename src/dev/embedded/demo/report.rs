//! The demo's printout: a few timelines that show the rules at work, the
//! channels' figures, and the accounting of every notification.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use jiff::tz::TimeZone;

use super::MIN;
use crate::config::Catalog;
use crate::core::{Cascade, ChannelKind, Entry, EntryKind, Outcome};
use crate::dev::embedded::simulate::{local, offset};
use crate::notification::Notification;

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
    pub intake: IntakeCounts,
    /// The day's report, by policy, step and channel (`cascade report`).
    pub figures: crate::report::Report,
    /// What other waits before delivery_delay's SMS would have done
    /// (`cascade what-if`), when that policy is configured.
    pub what_if: Option<crate::report::what_if::WhatIf>,
}

/// Renders the report, `timelines` of them shown in full.
pub fn render(day: Day<'_>, timelines: usize) -> Report {
    let mut out = String::new();
    write_timelines(&mut out, &day, timelines);
    let _ = writeln!(out, "The day as `cascade report` shows it:\n");
    out.push_str(&crate::report::render::report_table(&day.figures));
    out.push('\n');
    if let Some(w) = &day.what_if {
        out.push_str(&crate::report::render::what_if_table(w));
        out.push('\n');
    }
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

fn write_counts(out: &mut String, day: &Day<'_>) {
    let entries = || day.played.values().flat_map(|p| &p.timeline);
    let deferred = |why: &str| {
        entries()
            .filter(|e| e.event == EntryKind::Deferred && e.reason.as_deref() == Some(why))
            .count()
    };
    let _ = writeln!(
        out,
        "Skipped channels: {}",
        entries().filter(|e| e.event == EntryKind::Skipped).count()
    );
    let _ = writeln!(
        out,
        "Deferred: {} by quiet hours, {} by per-customer limits",
        deferred("quiet_hours"),
        deferred("limit")
    );
    out.push('\n');
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
