//! `cascade demo`: a day of made-up traffic for about a thousand customers,
//! played through the daemon's own pipeline in one process — intake's
//! admission, the worker and the scheduler's sweep on the memory store, the
//! real channel adapters sending to provider fakes on loopback, and
//! customers who read (or do not) — on a virtual clock. It prints a few
//! timelines and a summary.

mod report;
mod traffic;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

pub use report::{IntakeCounts, Played, Report};

use super::driver::{Customers, Driver, Intake, PlayError};
use crate::config::Catalog;
use crate::core::receipt_data::ReceiptData;
use crate::core::{ChannelKind, Entry};
use crate::dev::dice::Dice;
use crate::dev::fakes::script::Scripted;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

pub struct DemoOptions {
    pub customers: usize,
    pub seed: u64,
    pub timelines: usize,
}

/// The delivery slots the call centre's managers agree on.
const SLOTS: [&str; 3] = [
    "пятница, 10:00–14:00",
    "суббота, 12:00–16:00",
    "понедельник, 9:00–13:00",
];

/// The customers of the day: whether and when each reads what reaches them.
struct Crowd<'a> {
    catalog: &'a Catalog,
    dice: Dice,
    never_read: &'a HashSet<String>,
    /// Notification id → channel the customer read, and when.
    reads: HashMap<String, (String, i64)>,
}

impl Customers for Crowd<'_> {
    /// A call that got through comes with the delivery slot the manager
    /// agreed, which order_call's confirmation quotes (`{{data.slot}}`).
    /// Picked by the id, not the dice: the day's draws stay as they were.
    fn data_for(&mut self, id: &str, event: &str) -> ReceiptData {
        if event != "called" {
            return ReceiptData::new();
        }
        let slot = SLOTS[(crate::runtime::keys::fnv1a(id.as_bytes()) % 3) as usize];
        ReceiptData::from([("slot".to_owned(), slot.to_owned())])
    }

    fn on_sent(&mut self, id: &str, entry: &Entry) -> Option<(String, i64)> {
        let channel = entry.channel.as_deref()?;
        let kind = self.catalog.channels.get(channel)?.kind;
        if self.never_read.contains(id) || self.reads.contains_key(id) {
            return None;
        }
        // The call centre reports every call it made: the customer answered
        // (`called`, which stops order_followup and leads order_call to its
        // confirmation) or did not (`no_answer`, which leads order_call to
        // a chat). A verdict is not a read: the customer may still read the
        // step it leads to.
        if kind == ChannelKind::Webhook {
            let word = match self.dice.below(10) {
                0..=5 => "called",
                6..=8 => "no_answer",
                _ => return None,
            };
            let at = entry.at_ms + self.dice.delay(50 * MIN);
            if word == "called" {
                self.reads.insert(id.to_owned(), (channel.to_owned(), at));
            }
            return Some((word.to_owned(), at));
        }
        // Read probability and mean delay per kind; SMS has no read receipts.
        let (p, mean, word) = match kind {
            ChannelKind::Vk => (0.55, 12 * MIN, "read"),
            ChannelKind::Telegram => (0.7, 6 * MIN, "read"),
            ChannelKind::Whatsapp => (0.75, 8 * MIN, "read"),
            ChannelKind::Email => (0.4, 5 * HOUR, "opened"),
            ChannelKind::Webhook => (0.0, 0, "called"),
            ChannelKind::Sms => (0.0, 0, "read"),
        };
        if !self.dice.chance(p) {
            return None;
        }
        let at = entry.at_ms + self.dice.delay(mean);
        self.reads.insert(id.to_owned(), (channel.to_owned(), at));
        Some((word.to_owned(), at))
    }
}

/// Providers misbehave now and then, as real ones do: each channel's fakes
/// answer some sends with a transient error and refuse a few recipients.
fn unsettle_providers(driver: &Driver, catalog: &Catalog, seed: u64) {
    for (n, (name, channel)) in catalog.channels.iter().enumerate() {
        let refused = match channel.kind {
            ChannelKind::Sms => 0.01,
            ChannelKind::Telegram => 0.04,
            ChannelKind::Vk => 0.02,
            ChannelKind::Email => 0.01,
            _ => 0.0,
        };
        for (m, script) in driver.rig.scripts(name).into_iter().enumerate() {
            let seed = seed ^ ((n as u64) << 32) ^ m as u64;
            script.at_random(
                seed,
                vec![(Scripted::Transient, 0.02), (Scripted::Permanent, refused)],
            );
        }
    }
}

/// Plays the day and renders the report.
pub fn run(catalog: &Catalog, opts: &DemoOptions) -> Report {
    match play(catalog, opts) {
        Ok((report, ..)) => report,
        Err(why) => Report {
            intake: IntakeCounts::default(),
            outcomes: BTreeMap::new(),
            text: format!("{why}\n"),
        },
    }
}

/// Midnight in Moscow on the demo's day.
fn day_start() -> i64 {
    "2026-11-23T00:00:00+03:00[Europe/Moscow]"
        .parse::<jiff::Zoned>()
        .map(|z| z.timestamp().as_millisecond())
        .unwrap_or(0)
}

/// A played day: the report, the driver (whose fakes hold what they
/// received) and what the store holds of each accepted notification, for
/// tests to check the report against.
type PlayedDay = (Report, Driver, BTreeMap<String, Played>);

fn play(catalog: &Catalog, opts: &DemoOptions) -> Result<PlayedDay, String> {
    let start = day_start();
    let day = traffic::draw(catalog, opts.customers, start, &mut Dice(opts.seed));
    let mut driver = Driver::start(catalog, start)
        .map_err(|e| format!("cannot start the provider fakes on loopback: {e}"))?;
    unsettle_providers(&driver, catalog, opts.seed ^ 0x5A5A);
    let mut crowd = Crowd {
        catalog,
        dice: Dice(opts.seed ^ 0xA5A5_A5A5),
        never_read: &day.never_read,
        reads: HashMap::new(),
    };
    let (intake, accepted) = take_in(&mut driver, &mut crowd, day.messages, day.cancels)
        .map_err(|e| format!("the play stopped: {e}"))?;
    let mut played = BTreeMap::new();
    for (id, (notification, tz)) in accepted {
        let (cascade, timeline) = driver
            .status(&id)
            .map_err(|e| format!("the store failed: {e}"))?
            .ok_or_else(|| format!("{id} is gone from the store"))?;
        let p = Played {
            notification,
            tz,
            cascade,
            timeline,
        };
        played.insert(id, p);
    }
    // The figures come from the counters the daemon keeps, through the
    // code `cascade report` prints with.
    let figures = driver
        .report(&crate::runtime::reports::ReportRequest {
            from_ms: start,
            to_ms: driver.now_ms() + 1,
            policy: None,
            by: vec![
                crate::report::Dimension::Policy,
                crate::report::Dimension::Step,
                crate::report::Dimension::Channel,
            ],
        })
        .map_err(|e| format!("the store failed: {e}"))?;
    // And the question the seeds ask: how long to wait before the SMS?
    let what_if = catalog
        .policies
        .contains_key("delivery_delay")
        .then(|| driver.what_if("delivery_delay", 0, start, driver.now_ms() + 1))
        .transpose()
        .map_err(|e| format!("the store failed: {e}"))?;
    let mut report = report::render(
        report::Day {
            catalog,
            played: &played,
            intake,
            figures,
            what_if,
        },
        opts.timelines,
    );
    report.text.push_str(&fakes_check(&driver, &played));
    Ok((report, driver, played))
}

/// What each accepted notification became, by id.
type Accepted = BTreeMap<String, (Box<crate::notification::Notification>, jiff::tz::TimeZone)>;

/// Feeds the day's messages and cancels to the driver at their moments,
/// then plays on until every cascade has ended.
fn take_in(
    driver: &mut Driver,
    crowd: &mut Crowd<'_>,
    messages: Vec<(i64, Vec<u8>)>,
    cancels: Vec<(String, i64)>,
) -> Result<(IntakeCounts, Accepted), PlayError> {
    let mut counts = IntakeCounts {
        published: messages.len() as u64,
        ..IntakeCounts::default()
    };
    let mut accepted = BTreeMap::new();
    let mut messages: VecDeque<_> = messages.into();
    for (id, at) in cancels {
        driver.receipt_at(&id, "cancelled", None, at);
    }
    while let Some((at, body)) = messages.pop_front() {
        driver.run_until(at, crowd)?;
        match driver.intake(&body, crowd)? {
            Intake::Accepted(notification, tz) => {
                counts.accepted += 1;
                accepted.insert(notification.id.clone(), (notification, tz));
            }
            Intake::Duplicate => counts.duplicates += 1,
            Intake::Rejected(e) => {
                *counts
                    .dead_lettered
                    .entry(e.code.as_str().to_owned())
                    .or_default() += 1
            }
        }
    }
    driver.run_to_end(crowd)?;
    Ok((counts, accepted))
}

/// The fakes' own count must match what the timelines say went out.
fn fakes_check(driver: &Driver, played: &BTreeMap<String, Played>) -> String {
    let sent = played
        .values()
        .flat_map(|p| &p.timeline)
        .filter(|e| e.event == crate::core::EntryKind::Sent)
        .count();
    let held = driver.rig.held();
    let total: usize = held.iter().map(|(_, n)| n).sum();
    let parts: Vec<String> = held.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!(
        "Provider fakes hold {total} messages ({}) for {sent} sends: {}\n",
        parts.join(", "),
        if total == sent {
            "they match"
        } else {
            "MISMATCH"
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{EntryKind, Outcome};
    use crate::dev::embedded::rig::Fakes;
    use std::path::Path;

    /// The demo's summary says what it did; these checks count it again
    /// from what the store recorded and what the provider fakes received,
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
        let (report, driver, played) = play(&catalog, &opts).expect("the demo plays");

        // Every accepted notification has a record, and every record ended.
        assert_eq!(report.intake.accepted, played.len() as u64);
        let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
        for p in played.values() {
            let outcome = p.cascade.outcome().map_or("running", Outcome::word);
            *outcomes.entry(outcome.to_owned()).or_default() += 1;
        }
        assert!(!outcomes.contains_key("running"), "{outcomes:?}");
        assert!(outcomes.get("completed").copied().unwrap_or(0) > 0);
        assert!(outcomes.get("exhausted").copied().unwrap_or(0) > 0);
        assert_eq!(report.outcomes, outcomes);
        let intake = &report.intake;
        let dead: u64 = intake.dead_lettered.values().sum();
        assert_eq!(intake.published, intake.accepted + dead + intake.duplicates);
        assert!(dead > 0 && intake.duplicates > 0, "{}", report.text);

        // What the timelines say went out, per channel…
        let mut sent: BTreeMap<&str, usize> = BTreeMap::new();
        for e in played.values().flat_map(|p| &p.timeline) {
            if e.event == EntryKind::Sent {
                *sent.entry(e.channel.as_deref().unwrap_or("")).or_default() += 1;
            }
        }
        // …is what each channel's fakes hold, counted from their own records.
        let held: BTreeMap<&str, usize> = driver
            .rig
            .held()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        assert_eq!(held, sent);
        for kind in [ChannelKind::Vk, ChannelKind::Sms, ChannelKind::Email] {
            let on_kind = |(ch, _): (&&str, &usize)| catalog.channels[*ch].kind == kind;
            assert!(held.iter().any(on_kind), "nothing went out on {kind:?}");
        }
        let total: usize = held.values().sum();
        assert!(
            report
                .text
                .contains(&format!("Provider fakes hold {total} messages")),
            "{}",
            report.text
        );
        // The providers' misbehaviour reached the cascades through the
        // adapters: retried transient errors and hard refusals.
        let entries = || played.values().flat_map(|p| &p.timeline);
        let failed = |hard: bool| {
            entries()
                .filter(|e| e.event == EntryKind::SendFailed && e.until_ms.is_none() == hard)
                .count()
        };
        assert!(failed(true) > 0 && failed(false) > 0);

        // Each SMS is one of the texts the demo's producers write, or
        // order_call's confirmation quoting the slot the call centre
        // recorded with `called`, to a demo customer's number, as the
        // gateways decoded it.
        let sms: Vec<_> = driver
            .rig
            .fakes
            .values()
            .flat_map(|f| match f {
                Fakes::Sms(ru, c) => [ru.received(), c.received()].concat(),
                _ => Vec::new(),
            })
            .collect();
        assert!(!sms.is_empty());
        let confirmations: Vec<String> = SLOTS
            .iter()
            .map(|slot| format!("Спасибо за разговор! Доставка согласована: {slot}."))
            .collect();
        let confirmed = sms.iter().filter(|s| confirmations.contains(&s.text));
        assert!(confirmed.count() > 0, "no confirmation quoted a slot");
        for sms in sms.iter().filter(|s| !confirmations.contains(&s.text)) {
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
