//! `cascade demo`: a day of made-up traffic for about a thousand customers,
//! played through the whole pipeline in one process — intake validation, the
//! decision core, limits, quiet hours, fake providers and customers who read
//! (or do not) — on a virtual clock. It prints a few timelines and a summary.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::json;

use super::engine::{Accept, Engine, Providers, Record};
use super::rig::Rig;
use super::simulate::{local, offset};
use crate::config::Catalog;
use crate::core::{ChannelKind, EntryKind, Outcome, SendOrder, SendOutcome};
use crate::dev::fakes::script::Scripted;
use crate::notification::{self, Notification};
use crate::segments::sms_segments;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

/// A small deterministic generator (SplitMix64): the same seed plays the same day.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// An exponential delay with the given mean, at least a minute.
    fn delay(&mut self, mean_ms: i64) -> i64 {
        let u = ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        ((-u.ln()) * mean_ms as f64).max(MIN as f64) as i64
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// How one made-up customer behaves beyond the per-channel read odds.
struct Persona {
    /// Some customers read nothing, whatever the channel.
    never_reads: bool,
}

/// What travels with each cascade: the notification, for texts and costs.
pub struct Payload {
    notification: Notification,
}

/// Fake providers and customers.
struct FakeWorld<'a> {
    rig: &'a Rig,
    dice: Dice,
    personas: &'a HashMap<String, Persona>,
    planned: Vec<(String, String, i64)>,
    /// Notification id → channel the customer read, when they read.
    reads: HashMap<String, (String, i64)>,
    sent: u64,
}

impl Providers<Payload> for FakeWorld<'_> {
    fn send(&mut self, now_ms: i64, id: &str, payload: &Payload, order: &SendOrder) -> SendOutcome {
        let Some(channel) = self.rig.channels.get(&order.channel) else {
            return SendOutcome::Misconfigured {
                reason: "unknown channel".into(),
            };
        };
        // Providers misbehave now and then, as real ones do: script the fake
        // that this send reaches, and let the real adapter read its answer.
        if let Some(script) = self.rig.script(&order.channel) {
            let refused = match channel.kind {
                ChannelKind::Sms => 0.01,
                ChannelKind::Telegram => 0.04,
                ChannelKind::Vk => 0.02,
                ChannelKind::Email => 0.01,
                _ => 0.0,
            };
            if self.dice.chance(0.02) {
                script.then(Scripted::Transient, 1);
            } else if self.dice.chance(refused) {
                script.then(Scripted::Permanent, 1);
            }
        }
        let outcome = self.rig.send(now_ms, &payload.notification, order);
        if !matches!(outcome, SendOutcome::Sent { .. }) {
            return outcome;
        }
        self.sent += 1;
        let persona = self.personas.get(&payload.notification.customer.id);
        let reads = !persona.is_some_and(|p| p.never_reads) && !self.reads.contains_key(id);
        // Read probability and mean delay per kind; SMS has no read receipts.
        let (p, mean, word) = match channel.kind {
            ChannelKind::Vk => (0.55, 12 * MIN, "read"),
            ChannelKind::Telegram => (0.7, 6 * MIN, "read"),
            ChannelKind::Whatsapp => (0.75, 8 * MIN, "read"),
            ChannelKind::Email => (0.4, 5 * HOUR, "opened"),
            ChannelKind::Webhook => (0.6, 50 * MIN, "called"),
            ChannelKind::Sms => (0.0, 0, "read"),
        };
        if reads && self.dice.chance(p) {
            let at = now_ms + self.dice.delay(mean);
            self.reads
                .insert(id.to_owned(), (order.channel.clone(), at));
            self.planned.push((id.to_owned(), word.to_owned(), at));
        }
        outcome
    }

    fn drain_receipts(&mut self) -> Vec<(String, String, i64)> {
        std::mem::take(&mut self.planned)
    }
}

/// Per-channel figures of the summary.
#[derive(Default)]
struct ChannelStats {
    sent: u64,
    read: u64,
    failed: u64,
    segments: u64,
    cost: f64,
}

/// The result of a demo run, for printing and for tests.
pub struct Report {
    pub published: u64,
    pub accepted: u64,
    pub dead_lettered: BTreeMap<String, u64>,
    pub duplicates: u64,
    pub outcomes: BTreeMap<String, u64>,
    pub text: String,
}

pub struct DemoOptions {
    pub customers: usize,
    pub seed: u64,
    pub timelines: usize,
}

/// Plays the day and renders the report.
pub fn run(catalog: &Catalog, opts: &DemoOptions) -> Report {
    play(catalog, opts).0
}

/// What a played day leaves besides its report: the engine's records and the
/// fakes with what they received, for tests to check the report against.
type Played = Option<(Engine<Payload>, Rig)>;

fn play(catalog: &Catalog, opts: &DemoOptions) -> (Report, Played) {
    let mut dice = Dice(opts.seed);
    let day_start = "2026-11-23T00:00:00+03:00[Europe/Moscow]"
        .parse::<jiff::Zoned>()
        .map(|z| z.timestamp().as_millisecond())
        .unwrap_or(0);
    let zones = [
        ("Europe/Moscow", 6),
        ("Europe/Kaliningrad", 1),
        ("Asia/Yekaterinburg", 1),
        ("Asia/Novosibirsk", 1),
        ("Asia/Vladivostok", 1),
    ];
    let zone_table: Vec<&str> = zones
        .iter()
        .flat_map(|(z, w)| std::iter::repeat_n(*z, *w))
        .collect();
    let policies: Vec<&str> = ["delivery_delay"; 5]
        .into_iter()
        .chain(["order_followup"; 3])
        .chain(["abandoned_cart"; 2])
        .filter(|p| catalog.policies.contains_key(*p))
        .collect();
    let fallback: Vec<&str> = catalog.policies.keys().map(String::as_str).collect();
    let policies = if policies.is_empty() {
        fallback
    } else {
        policies
    };

    // The in-process queue: (arrival, body), in arrival order.
    let mut queue: Vec<(i64, Vec<u8>)> = Vec::new();
    let mut personas = HashMap::new();
    let mut cancels: Vec<(String, i64)> = Vec::new();
    for c in 0..opts.customers {
        let customer_id = format!("c-{c:04}");
        let mut contacts = serde_json::Map::new();
        if dice.chance(0.75) {
            contacts.insert("vk".into(), json!(format!("{}", 100_000 + c)));
        }
        if dice.chance(0.97) {
            contacts.insert("sms".into(), json!(format!("+7916{:07}", c)));
        }
        if dice.chance(0.85) {
            contacts.insert("email".into(), json!(format!("customer{c}@example.ru")));
        }
        if dice.chance(0.4) {
            contacts.insert("telegram".into(), json!(format!("{}", 5_000_000 + c)));
        }
        if dice.chance(0.3) {
            contacts.insert("whatsapp".into(), json!(format!("+7916{:07}", c)));
        }
        let preferences: Vec<&str> = match dice.below(4) {
            0 => vec!["whatsapp", "telegram"],
            1 => vec!["vk"],
            _ => vec![],
        };
        let opt_out: Vec<&str> = if dice.chance(0.04) {
            vec!["sms"]
        } else {
            vec![]
        };
        let tz = *dice.pick(&zone_table);
        personas.insert(
            customer_id.clone(),
            Persona {
                never_reads: dice.chance(0.15),
            },
        );
        // Most customers get one to three notifications over the day; a few
        // busy ones get a burst within two hours, which the limits must pace.
        let busy = dice.chance(0.05);
        let count = if busy {
            4 + dice.below(3)
        } else {
            1 + dice.below(3)
        };
        let burst_start = day_start + dice.below(22 * HOUR as u64) as i64;
        for n in 0..count {
            let policy = *dice.pick(&policies);
            let id = format!("{policy}:{customer_id}:{n}");
            let at = if busy {
                burst_start + dice.below(2 * HOUR as u64) as i64
            } else {
                day_start + dice.below(24 * HOUR as u64) as i64
            };
            let order = 1000 + c * 3 + n as usize;
            let text = match policy {
                "delivery_delay" => {
                    format!("Заказ {order} задерживается на 2 дня. Приносим извинения!")
                }
                "abandoned_cart" => "Вы оставили товары в корзине. Они ещё ждут вас!".to_string(),
                _ => format!(
                    "Заказ {order} оформлен. Мы позвоним, если понадобится уточнить детали."
                ),
            };
            let mut body = json!({
                "id": id,
                "policy": policy,
                "customer": {
                    "id": customer_id, "timezone": tz, "contacts": contacts,
                    "preferences": preferences, "opt_out": opt_out,
                },
                "content": {
                    "text": text,
                    "subject": format!("Заказ {order}"),
                    "link": format!("https://shop.example.ru/orders/{order}"),
                    "channels": { "sms": { "text": format!("Заказ {order}: {}", if policy == "delivery_delay" { "задержка 2 дня" } else { "подробности в письме" }) } },
                },
            });
            // A little bad input, as real producers send: it must be dead-lettered, not lost.
            let bytes = match dice.below(200) {
                0 => b"{\"id\": \"broken".to_vec(),
                1 => {
                    body["policy"] = json!("black_friday");
                    body.to_string().into_bytes()
                }
                2 => {
                    body["customer"]["contacts"] = json!({});
                    body.to_string().into_bytes()
                }
                _ => body.to_string().into_bytes(),
            };
            if dice.chance(0.01) {
                // The producer retried after a lost ack: a duplicate id.
                queue.push((at + dice.below(5 * MIN as u64) as i64, bytes.clone()));
            }
            if policy == "delivery_delay" && dice.chance(0.03) {
                cancels.push((id.clone(), at + dice.delay(2 * HOUR)));
            }
            queue.push((at, bytes));
        }
    }
    queue.sort_by_key(|(at, _)| *at);
    let published = queue.len() as u64;
    let mut queue: VecDeque<(i64, Vec<u8>)> = queue.into();

    let mut engine: Engine<Payload> =
        Engine::new(catalog.channel_rules.clone(), catalog.timing(), day_start);
    let rig = match Rig::start(catalog) {
        Ok(r) => r,
        Err(e) => {
            let report = Report {
                published: 0,
                accepted: 0,
                dead_lettered: BTreeMap::new(),
                duplicates: 0,
                outcomes: BTreeMap::new(),
                text: format!("cannot start the provider fakes on loopback: {e}\n"),
            };
            return (report, None);
        }
    };
    let mut world = FakeWorld {
        rig: &rig,
        dice: Dice(opts.seed ^ 0xA5A5_A5A5),
        personas: &personas,
        planned: Vec::new(),
        reads: HashMap::new(),
        sent: 0,
    };
    let policy_arcs: HashMap<String, Arc<crate::core::Policy>> = catalog
        .policies
        .iter()
        .map(|(k, v)| (k.clone(), Arc::new(v.clone())))
        .collect();
    let mut accepted = 0u64;
    let mut duplicates = 0u64;
    let mut dead_lettered: BTreeMap<String, u64> = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut cancels: VecDeque<(String, i64)> = {
        cancels.sort_by_key(|c| c.1);
        cancels.into()
    };

    // The virtual clock: take whichever comes first, the next message or the next timer.
    loop {
        let next_msg = queue.front().map(|(at, _)| *at);
        let next_cancel = cancels.front().map(|(_, at)| *at);
        let next_timer = engine.next_due_ms();
        let Some(now) = [next_msg, next_cancel, next_timer]
            .into_iter()
            .flatten()
            .min()
        else {
            break;
        };
        engine.run_until(now, &mut world);
        if next_cancel == Some(now)
            && let Some((id, at)) = cancels.pop_front()
        {
            engine.receipt(&id, "cancelled", at);
            continue;
        }
        if next_msg != Some(now) {
            continue;
        }
        let Some((_, body)) = queue.pop_front() else {
            break;
        };
        match notification::admit_at(&body, catalog, now) {
            Err(e) => *dead_lettered.entry(e.code.as_str().to_owned()).or_default() += 1,
            Ok(admitted) => {
                let id = admitted.notification.id.clone();
                if !seen.insert(id.clone()) {
                    duplicates += 1;
                    continue;
                }
                let Some(policy) = policy_arcs.get(&admitted.notification.policy) else {
                    continue;
                };
                accepted += 1;
                engine.accept(
                    Accept {
                        id,
                        customer_id: admitted.notification.customer.id.clone(),
                        policy: policy.clone(),
                        recipient: admitted.recipient,
                        send_at_ms: admitted.send_at_ms,
                        expires_at_ms: admitted.expires_at_ms,
                        payload: Payload {
                            notification: admitted.notification,
                        },
                    },
                    &mut world,
                );
                for (rid, event, at) in world.drain_receipts() {
                    engine.receipt(&rid, &event, at);
                }
            }
        }
    }
    engine.run_to_end(&mut world);

    let reads = world.reads;
    let mut report = render(
        catalog,
        &engine,
        &reads,
        opts,
        published,
        accepted,
        duplicates,
        dead_lettered,
    );
    // The fakes' own count must match what the timelines say went out.
    let sent = engine
        .records
        .values()
        .flat_map(|r| &r.timeline)
        .filter(|e| e.event == EntryKind::Sent)
        .count();
    let held = rig.received();
    let total: usize = held.iter().map(|(_, n)| n).sum();
    let parts: Vec<String> = held.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(
        report.text,
        "Provider fakes hold {total} messages ({}) for {sent} sends: {}",
        parts.join(", "),
        if total == sent {
            "they match"
        } else {
            "MISMATCH"
        }
    );
    (report, Some((engine, rig)))
}

#[allow(clippy::too_many_arguments)]
fn render(
    catalog: &Catalog,
    engine: &Engine<Payload>,
    reads: &HashMap<String, (String, i64)>,
    opts: &DemoOptions,
    published: u64,
    accepted: u64,
    duplicates: u64,
    dead_lettered: BTreeMap<String, u64>,
) -> Report {
    let mut out = String::new();
    let mut by_channel: BTreeMap<String, ChannelStats> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut sms_avoided = 0u64;
    let mut money_saved = 0.0;
    let sms_cost = catalog
        .channels
        .values()
        .find(|c| c.kind == ChannelKind::Sms)
        .and_then(|c| c.cost)
        .unwrap_or(0.0);

    let mut ids: Vec<&String> = engine.records.keys().collect();
    ids.sort();
    for id in &ids {
        let r = &engine.records[*id];
        let outcome = r.cascade.outcome().map_or("running", Outcome::word);
        *outcomes.entry(outcome.to_owned()).or_default() += 1;
        for e in &r.timeline {
            *counts.entry(e.event.as_str()).or_default() += 1;
            let Some(ch) = &e.channel else { continue };
            let stats = by_channel.entry(ch.clone()).or_default();
            match e.event {
                EntryKind::Sent => {
                    stats.sent += 1;
                    let cfg = catalog.channels.get(ch);
                    let kind = cfg.map(|c| c.kind).unwrap_or(ChannelKind::Webhook);
                    let segments = if kind == ChannelKind::Sms {
                        let text = r.payload.notification.text_for(ch, kind).unwrap_or("");
                        sms_segments(text).1 as u64
                    } else {
                        1
                    };
                    stats.segments += segments;
                    if let Some(c) = cfg {
                        let per = if c.cost_per_segment {
                            segments as f64
                        } else {
                            1.0
                        };
                        stats.cost += c.cost.unwrap_or(0.0) * per;
                    }
                }
                EntryKind::SendFailed if e.until_ms.is_none() => stats.failed += 1,
                _ => {}
            }
        }
        if let Some((ch, at)) = reads.get(*id)
            && r.timeline
                .iter()
                .any(|e| e.event == EntryKind::Receipt && e.at_ms == *at)
        {
            by_channel.entry(ch.clone()).or_default().read += 1;
        }
        // An SMS avoided: the cascade was read before a later SMS step came due.
        if let Some(Outcome::Completed { .. }) = r.cascade.outcome() {
            let done_step = r.cascade.step as usize;
            let sms_later = r.policy.steps[done_step + 1..].iter().any(|s| {
                s.channels.iter().any(|c| {
                    catalog
                        .channels
                        .get(c)
                        .is_some_and(|c| c.kind == ChannelKind::Sms)
                })
            });
            if sms_later {
                sms_avoided += 1;
                let text = r
                    .payload
                    .notification
                    .text_for("sms", ChannelKind::Sms)
                    .unwrap_or("");
                money_saved += sms_cost * sms_segments(text).1 as f64;
            }
        }
    }

    // A handful of timelines that show the rules at work.
    let wanted: [(&str, Box<Shows>); 6] = [
        (
            "read on the first channel",
            Box::new(|r| {
                matches!(r.cascade.outcome(), Some(Outcome::Completed { .. }))
                    && r.cascade.step == 0
            }),
        ),
        (
            "never read: escalated to SMS",
            Box::new(|r| {
                has(r, EntryKind::Escalated) && sent_on_kind(r, catalog, ChannelKind::Sms)
            }),
        ),
        (
            "no VK: skipped straight to SMS",
            Box::new(|r| {
                r.timeline.iter().any(|e| {
                    e.event == EntryKind::Skipped
                        && e.step == Some(0)
                        && e.channel.as_deref() == Some("vk")
                })
            }),
        ),
        (
            "held by quiet hours",
            Box::new(|r| {
                r.timeline
                    .iter()
                    .any(|e| e.reason.as_deref() == Some("quiet_hours"))
            }),
        ),
        (
            "held by a rate limit",
            Box::new(|r| {
                r.timeline
                    .iter()
                    .any(|e| e.event == EntryKind::Deferred && e.reason.as_deref() == Some("limit"))
            }),
        ),
        (
            "failed hard: escalated at once",
            Box::new(|r| {
                r.timeline
                    .iter()
                    .any(|e| e.event == EntryKind::SendFailed && e.until_ms.is_none())
            }),
        ),
    ];
    let _ = writeln!(out, "A few timelines (customer's local time):\n");
    let mut shown: HashSet<&str> = HashSet::new();
    for (title, pred) in wanted.iter().take(opts.timelines) {
        let found = ids
            .iter()
            .find(|id| !shown.contains(id.as_str()) && pred(&engine.records[**id]));
        let Some(id) = found else { continue };
        shown.insert(id.as_str());
        let r = &engine.records[*id];
        let start = r.timeline.first().map_or(0, |e| e.at_ms);
        let _ = writeln!(
            out,
            "  {id} ({}) — {title}",
            r.recipient.tz.iana_name().unwrap_or("?")
        );
        for e in &r.timeline {
            let mut detail = Vec::new();
            if let Some(reason) = &e.reason {
                detail.push(reason.replace('_', " "));
            }
            if let Some(u) = e.until_ms {
                detail.push(format!("until {}", local(u, &r.recipient.tz)));
            }
            let _ = writeln!(
                out,
                "    {:<22} {:<10} {:<12} {:<7} {:<12} {}",
                local(e.at_ms, &r.recipient.tz),
                offset((e.at_ms - start) / MIN * 60),
                e.event.as_str(),
                e.step
                    .map(|s| format!("step {}", s + 1))
                    .unwrap_or_default(),
                e.channel.as_deref().unwrap_or(""),
                detail.join(", ")
            );
        }
        let _ = writeln!(out);
    }

    let _ = writeln!(out, "Channels:");
    let _ = writeln!(
        out,
        "  {:<12} {:>7} {:>7} {:>7} {:>7} {:>9} {:>10}",
        "channel", "sent", "read", "rate", "failed", "segments", "cost"
    );
    let mut total_cost = 0.0;
    for (ch, s) in &by_channel {
        // SMS has no read receipts: a rate of 0% would mislead.
        let no_reads = catalog
            .channels
            .get(ch)
            .is_some_and(|c| c.kind == ChannelKind::Sms);
        let rate = if s.sent > 0 && !no_reads {
            format!("{:.0}%", 100.0 * s.read as f64 / s.sent as f64)
        } else {
            "-".into()
        };
        total_cost += s.cost;
        let _ = writeln!(
            out,
            "  {ch:<12} {:>7} {:>7} {rate:>7} {:>7} {:>9} {:>10.2}",
            s.sent, s.read, s.failed, s.segments, s.cost
        );
    }
    let _ = writeln!(
        out,
        "  {:<12} {:>7} {:>7} {:>7} {:>7} {:>9} {:>10.2}",
        "total",
        by_channel.values().map(|s| s.sent).sum::<u64>(),
        by_channel.values().map(|s| s.read).sum::<u64>(),
        "",
        by_channel.values().map(|s| s.failed).sum::<u64>(),
        "",
        total_cost
    );
    let _ = writeln!(out);
    let c = |k: &str| counts.get(k).copied().unwrap_or(0);
    let deferred = |why: &str| {
        engine
            .records
            .values()
            .flat_map(|r| &r.timeline)
            .filter(|e| e.event == EntryKind::Deferred && e.reason.as_deref() == Some(why))
            .count()
    };
    let _ = writeln!(
        out,
        "Escalations: {}   skipped channels: {}   late reads: {}",
        c("escalated"),
        c("skipped"),
        c("late_read")
    );
    let _ = writeln!(
        out,
        "Deferred: {} by quiet hours, {} by per-customer limits",
        deferred("quiet_hours"),
        deferred("limit")
    );
    let _ = writeln!(
        out,
        "SMS avoided (read before the SMS step): {sms_avoided}, saving {money_saved:.2}"
    );
    let _ = writeln!(out);
    let dead: u64 = dead_lettered.values().sum();
    let finished: u64 = outcomes.values().sum();
    let _ = writeln!(
        out,
        "Intake: {published} published = {accepted} accepted + {dead} dead-lettered + {duplicates} duplicates"
    );
    if !dead_lettered.is_empty() {
        let codes: Vec<String> = dead_lettered
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
    Report {
        published,
        accepted,
        dead_lettered,
        duplicates,
        outcomes,
        text: out,
    }
}

/// Does a timeline show the rule a demo section is about?
type Shows<'a> = dyn Fn(&Record<Payload>) -> bool + 'a;

fn has(r: &Record<Payload>, kind: EntryKind) -> bool {
    r.timeline.iter().any(|e| e.event == kind)
}

fn sent_on_kind(r: &Record<Payload>, catalog: &Catalog, kind: ChannelKind) -> bool {
    r.timeline.iter().any(|e| {
        e.event == EntryKind::Sent
            && e.channel
                .as_ref()
                .and_then(|c| catalog.channels.get(c))
                .is_some_and(|c| c.kind == kind)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The demo's summary says what it did; these checks count it again
    /// from what the engine recorded and what the provider fakes received,
    /// rather than trusting the verdicts the demo prints.
    #[test]
    fn the_demo_accounts_for_every_notification() {
        let catalog =
            Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("cascade.toml")).unwrap();
        let opts = DemoOptions {
            customers: 300,
            seed: 11,
            timelines: 6,
        };
        let (report, played) = play(&catalog, &opts);
        let (engine, rig) = played.expect("the fakes start on loopback");

        // Every accepted notification has a record, and every record ended.
        assert_eq!(report.accepted, engine.records.len() as u64);
        let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
        for r in engine.records.values() {
            let outcome = r.cascade.outcome().map_or("running", Outcome::word);
            *outcomes.entry(outcome.to_owned()).or_default() += 1;
        }
        assert!(!outcomes.contains_key("running"), "{outcomes:?}");
        assert!(outcomes.get("completed").copied().unwrap_or(0) > 0);
        assert!(outcomes.get("exhausted").copied().unwrap_or(0) > 0);
        assert_eq!(report.outcomes, outcomes);
        let dead: u64 = report.dead_lettered.values().sum();
        assert_eq!(report.published, report.accepted + dead + report.duplicates);

        // What the timelines say went out, per kind of channel…
        let mut sent: BTreeMap<ChannelKind, usize> = BTreeMap::new();
        for e in engine.records.values().flat_map(|r| &r.timeline) {
            if e.event == EntryKind::Sent {
                let ch = e.channel.as_deref().unwrap_or("");
                let kind = catalog.channels.get(ch).map(|c| c.kind);
                *sent.entry(kind.expect("a configured channel")).or_default() += 1;
            }
        }
        // …is what each fake holds, counted from its own records.
        let (smsru, smsc) = (rig.smsru.received(), rig.smsc.received());
        let held: BTreeMap<ChannelKind, usize> = [
            (ChannelKind::Vk, rig.vk.messages().len()),
            (ChannelKind::Sms, smsru.len() + smsc.len()),
            (ChannelKind::Email, rig.smtp.accepted().len()),
            (ChannelKind::Telegram, rig.telegram.messages().len()),
            (ChannelKind::Whatsapp, rig.whatsapp.messages().len()),
            (ChannelKind::Webhook, rig.webhook.received().len()),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
        assert_eq!(held, sent);
        for kind in [ChannelKind::Vk, ChannelKind::Sms, ChannelKind::Email] {
            assert!(held.contains_key(&kind), "nothing went out on {kind:?}");
        }
        let total: usize = held.values().sum();
        assert!(
            report
                .text
                .contains(&format!("Provider fakes hold {total} messages")),
            "{}",
            report.text
        );

        // Each SMS is one of the texts the demo's producers write, to a
        // demo customer's number, as the gateways decoded it.
        for sms in smsru.iter().chain(&smsc) {
            let (order, rest) = sms
                .text
                .strip_prefix("Заказ ")
                .and_then(|t| t.split_once(": "))
                .unwrap_or_else(|| panic!("{sms:?}"));
            assert!(order.parse::<u32>().is_ok(), "{sms:?}");
            assert!(
                ["задержка 2 дня", "подробности в письме"].contains(&rest),
                "{sms:?}"
            );
            assert!(
                sms.phone.len() == 11
                    && sms.phone.starts_with("7916")
                    && sms.phone.bytes().all(|b| b.is_ascii_digit()),
                "{sms:?}"
            );
        }

        // The same seed plays the same day.
        assert_eq!(run(&catalog, &opts).text, report.text);
    }
}
