//! How one cascade is stored in Redis: a single string record, and the
//! compact text forms of its state and timeline entries.
//!
//! A waiting cascade is mostly bytes in Redis, so the forms are short: the
//! fields of a state or an entry are separated by tabs, in a fixed order,
//! with trailing empty fields left off. They stay readable in `redis-cli`.
//! Text fields (a channel name, a reason) escape `\`, tab, newline and the
//! record separator, so a line never holds one of them raw. States and
//! entries written as JSON by earlier versions are still read, and so are
//! records of the first (untagged) layout.

use std::fmt::Write as _;

use crate::core::{Branch, Cascade, Entry, EntryKind, Outcome, Phase};

/// Separates the record's fields (unit separator; the Lua scripts split on it).
pub const FIELD_SEPARATOR: char = '\x1f';

/// The record layout this daemon writes: the record's first field. Records
/// of the first layout carry no tag (they start with their version, a
/// number) and are still read; any other first field is a layout this
/// daemon does not know, reported rather than guessed at.
/// `scripts/record.lua` reads and writes the same.
pub const LAYOUT: &str = "r2";

/// A cascade's record as stored: the layout tag and five fields, separated
/// by `\x1f`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Bumped by every stored decision; a commit made on an older one is refused.
    pub version: &'a str,
    /// The cascade state ([`encode_state`]).
    pub state: &'a str,
    /// The notification (JSON, as admitted).
    pub notification: &'a str,
    /// Timeline entries ([`encode_entry`]), one per line.
    pub timeline: &'a str,
    /// `<policy snapshot hash>\t<time zone>`; the zone is empty when it is
    /// the notification's own.
    pub meta: &'a str,
}

impl<'a> Record<'a> {
    pub fn parse(raw: &'a str) -> Result<Record<'a>, String> {
        let body = match raw.split_once(FIELD_SEPARATOR) {
            Some((LAYOUT, rest)) => rest,
            // The first layout: no tag, the version first.
            Some((version, _))
                if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) =>
            {
                raw
            }
            _ => {
                let tag: String = raw
                    .chars()
                    .take(16)
                    .take_while(|c| *c != FIELD_SEPARATOR)
                    .collect();
                return Err(format!(
                    "the record's layout `{tag}` is unknown (this daemon reads `{LAYOUT}` and untagged records)"
                ));
            }
        };
        let mut fields = body.splitn(5, FIELD_SEPARATOR);
        let mut next = || {
            fields
                .next()
                .ok_or_else(|| "the record has fewer than five fields".to_owned())
        };
        Ok(Record {
            version: next()?,
            state: next()?,
            notification: next()?,
            timeline: next()?,
            meta: next()?,
        })
    }

    /// The record as stored, in the current layout.
    pub fn encode(&self) -> String {
        [
            LAYOUT,
            self.version,
            self.state,
            self.notification,
            self.timeline,
            self.meta,
        ]
        .join("\x1f")
    }

    pub fn cascade(&self) -> Result<Cascade, String> {
        decode_state(self.state)
    }

    pub fn entries(&self) -> Result<Vec<Entry>, String> {
        decode_timeline(self.timeline)
    }
}

/// `step alt failures transitions phase… [x<ms>] [h<ms>] [n<count>] [b<ms>,<word> [v]]`, where
/// the phase is `D at`, `F channel deadline`, `W channel sent until` or
/// `X outcome at [event]`.
pub fn encode_state(c: &Cascade) -> String {
    // Writing into a String cannot fail.
    let mut out = String::with_capacity(48);
    let _ = write!(
        out,
        "{}\t{}\t{}\t{}\t",
        c.step, c.alt, c.failures, c.transitions
    );
    match &c.phase {
        Phase::Due { at_ms } => {
            let _ = write!(out, "D\t{at_ms}");
        }
        Phase::InFlight {
            channel,
            deadline_ms,
        } => {
            out.push_str("F\t");
            push_escaped(&mut out, channel);
            let _ = write!(out, "\t{deadline_ms}");
        }
        Phase::Waiting {
            channel,
            sent_ms,
            until_ms,
        } => {
            out.push_str("W\t");
            push_escaped(&mut out, channel);
            let _ = write!(out, "\t{sent_ms}\t{until_ms}");
        }
        Phase::Done { outcome, at_ms } => {
            let _ = write!(out, "X\t{}\t{at_ms}", outcome.word());
            if let Outcome::Completed { event } = outcome {
                out.push('\t');
                push_escaped(&mut out, event);
            }
        }
    }
    for (tag, v) in [('x', c.expires_at_ms), ('h', c.handled_failed_ms)] {
        if let Some(v) = v {
            let _ = write!(out, "\t{tag}{v}");
        }
    }
    if let Some(n) = c.tallied {
        let _ = write!(out, "\tn{n}");
    }
    if let Some(b) = &c.branch {
        let _ = write!(out, "\tb{},", b.receipt_ms);
        push_escaped(&mut out, &b.word);
        if b.here {
            out.push_str("\tv");
        }
    }
    out
}

pub fn decode_state(s: &str) -> Result<Cascade, String> {
    if s.starts_with('{') {
        return serde_json::from_str(s).map_err(|e| e.to_string());
    }
    let bad = || format!("unreadable state `{s}`");
    let mut f = s.split('\t');
    let mut next = || f.next().ok_or_else(bad);
    let step = next()?.parse().map_err(|_| bad())?;
    let alt = next()?.parse().map_err(|_| bad())?;
    let failures = next()?.parse().map_err(|_| bad())?;
    let transitions = next()?.parse().map_err(|_| bad())?;
    let ms = |v: &str| v.parse::<i64>().map_err(|_| bad());
    let phase = match next()? {
        "D" => Phase::Due {
            at_ms: ms(next()?)?,
        },
        "F" => Phase::InFlight {
            channel: unescape(next()?),
            deadline_ms: ms(next()?)?,
        },
        "W" => Phase::Waiting {
            channel: unescape(next()?),
            sent_ms: ms(next()?)?,
            until_ms: ms(next()?)?,
        },
        "X" => {
            let word = next()?;
            let at_ms = ms(next()?)?;
            let outcome = match word {
                "completed" => Outcome::Completed {
                    event: unescape(next()?),
                },
                "exhausted" => Outcome::Exhausted,
                "expired" => Outcome::Expired,
                "cancelled" => Outcome::Cancelled,
                _ => return Err(bad()),
            };
            Phase::Done { outcome, at_ms }
        }
        _ => return Err(bad()),
    };
    let mut c = Cascade {
        step,
        alt,
        failures,
        phase,
        expires_at_ms: None,
        handled_failed_ms: None,
        transitions,
        tallied: None,
        branch: None,
    };
    let mut here = false;
    for opt in f {
        match opt.split_at_checked(1) {
            Some(("x", v)) => c.expires_at_ms = Some(ms(v)?),
            Some(("h", v)) => c.handled_failed_ms = Some(ms(v)?),
            Some(("n", v)) => c.tallied = Some(v.parse().map_err(|_| bad())?),
            // Written by earlier versions (the latest escalation, a late
            // read noted by the core); the report's tally notes both now.
            Some(("e", v)) => drop(ms(v)?),
            Some(("l", "")) => {}
            Some(("b", v)) => {
                let (at, word) = v.split_once(',').ok_or_else(bad)?;
                c.branch = Some(Branch {
                    word: unescape(word),
                    receipt_ms: ms(at)?,
                    here: false,
                });
            }
            Some(("v", "")) => here = true,
            _ => return Err(bad()),
        }
    }
    match &mut c.branch {
        Some(b) => b.here = here,
        None if here => return Err(bad()),
        None => {}
    }
    Ok(c)
}

/// `at event [step [channel [until [provider message id [reason]]]]]`.
/// The step is its index from 0, as the core keeps it: this is the stored
/// form (records, and the events streams, which carry it as it is), read
/// back by earlier and later versions and by the Lua scripts alike, so it
/// never changes. What people read counts steps from 1: `cascade status`,
/// the timeline and report APIs, the logs, the webhook body.
pub fn encode_entry(e: &Entry) -> String {
    let mut out = String::with_capacity(48);
    let _ = write!(out, "{}\t{}\t", e.at_ms, e.event.as_str());
    if let Some(step) = e.step {
        let _ = write!(out, "{step}");
    }
    out.push('\t');
    push_escaped(&mut out, e.channel.as_deref().unwrap_or(""));
    out.push('\t');
    if let Some(until) = e.until_ms {
        let _ = write!(out, "{until}");
    }
    out.push('\t');
    push_escaped(&mut out, e.provider_message_id.as_deref().unwrap_or(""));
    out.push('\t');
    push_escaped(&mut out, e.reason.as_deref().unwrap_or(""));
    // Empty trailing fields are left off; a field never ends in a raw tab
    // (text escapes it), so these are only separators.
    let kept = out.trim_end_matches('\t').len();
    out.truncate(kept);
    out
}

pub fn decode_entry(line: &str) -> Result<Entry, String> {
    if line.starts_with('{') {
        return serde_json::from_str(line).map_err(|e| e.to_string());
    }
    let bad = || format!("unreadable timeline entry `{line}`");
    let mut f = line.split('\t');
    let at_ms = f.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let event = f.next().and_then(EntryKind::from_word).ok_or_else(bad)?;
    let mut text = || f.next().filter(|v| !v.is_empty());
    let step = text().map(|v| v.parse().map_err(|_| bad())).transpose()?;
    let channel = text().map(unescape);
    let until_ms = text().map(|v| v.parse().map_err(|_| bad())).transpose()?;
    let provider_message_id = text().map(unescape);
    let reason = text().map(unescape);
    Ok(Entry {
        at_ms,
        event,
        step,
        channel,
        reason,
        until_ms,
        provider_message_id,
    })
}

/// A record's timeline: entries, one per line.
pub fn decode_timeline(stored: &str) -> Result<Vec<Entry>, String> {
    stored
        .lines()
        .filter(|l| !l.is_empty())
        .map(decode_entry)
        .collect()
}

/// Appends `text` with `\`, tab, newline, carriage return and the record
/// separator escaped.
fn push_escaped(out: &mut String, text: &str) {
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            FIELD_SEPARATOR => out.push_str("\\u"),
            c => out.push(c),
        }
    }
}

fn unescape(text: &str) -> String {
    if !text.contains('\\') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('u') => out.push(FIELD_SEPARATOR),
            Some(c) => out.push(c),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[a-z_]{1,8}",
            "[\\\\\t\n\r\u{1f} a-zа-я{}\"]{0,20}",
        ]
    }

    fn phase() -> impl Strategy<Value = Phase> {
        prop_oneof![
            any::<i64>().prop_map(|at_ms| Phase::Due { at_ms }),
            (text(), any::<i64>()).prop_map(|(channel, deadline_ms)| Phase::InFlight {
                channel,
                deadline_ms
            }),
            (text(), any::<i64>(), any::<i64>()).prop_map(|(channel, sent_ms, until_ms)| {
                Phase::Waiting {
                    channel,
                    sent_ms,
                    until_ms,
                }
            }),
            (
                prop_oneof![
                    text().prop_map(|event| Outcome::Completed { event }),
                    Just(Outcome::Exhausted),
                    Just(Outcome::Expired),
                    Just(Outcome::Cancelled),
                ],
                any::<i64>()
            )
                .prop_map(|(outcome, at_ms)| Phase::Done { outcome, at_ms }),
        ]
    }

    fn cascade() -> impl Strategy<Value = Cascade> {
        (
            (any::<u8>(), any::<u8>(), any::<u8>(), any::<u16>()),
            phase(),
            proptest::option::of(any::<i64>()),
            proptest::option::of(any::<i64>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of((".{0,8}", any::<i64>(), any::<bool>()).prop_map(
                |(word, receipt_ms, here)| Branch {
                    word,
                    receipt_ms,
                    here,
                },
            )),
        )
            .prop_map(
                |((step, alt, failures, transitions), phase, x, h, n, b)| Cascade {
                    step,
                    alt,
                    failures,
                    phase,
                    expires_at_ms: x,
                    handled_failed_ms: h,
                    transitions,
                    tallied: n,
                    branch: b,
                },
            )
    }

    fn entry() -> impl Strategy<Value = Entry> {
        let kinds = EntryKind::ALL.to_vec();
        (
            any::<i64>(),
            proptest::sample::select(kinds),
            proptest::option::of(any::<u8>()),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(any::<i64>()),
            proptest::option::of(text()),
        )
            .prop_map(
                |(at_ms, event, step, channel, reason, until_ms, provider_message_id)| Entry {
                    at_ms,
                    event,
                    step,
                    // An empty text is stored as absent, as JSON never needed to.
                    channel: channel.filter(|c| !c.is_empty()),
                    reason: reason.filter(|r| !r.is_empty()),
                    until_ms,
                    provider_message_id: provider_message_id.filter(|p| !p.is_empty()),
                },
            )
    }

    proptest! {
        #[test]
        fn a_state_reads_back_as_written(c in cascade()) {
            let stored = encode_state(&c);
            prop_assert!(!stored.contains(['\n', FIELD_SEPARATOR]));
            prop_assert_eq!(decode_state(&stored).unwrap(), c);
        }

        #[test]
        fn an_entry_reads_back_as_written(e in entry()) {
            let stored = encode_entry(&e);
            prop_assert!(!stored.contains(['\n', '\r', FIELD_SEPARATOR]));
            prop_assert_eq!(decode_entry(&stored).unwrap(), e);
        }
    }

    #[test]
    fn the_compact_forms_are_short_and_json_still_reads() {
        let c = Cascade {
            step: 0,
            alt: 0,
            failures: 0,
            phase: Phase::Waiting {
                channel: "vk".into(),
                sent_ms: 1_795_450_472_833,
                until_ms: 1_795_454_072_833,
            },
            expires_at_ms: None,
            handled_failed_ms: None,
            transitions: 2,
            tallied: None,
            branch: None,
        };
        assert_eq!(
            encode_state(&c),
            "0\t0\t0\t2\tW\tvk\t1795450472833\t1795454072833"
        );
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(decode_state(&json).unwrap(), c);

        let e = Entry {
            at_ms: 1_795_450_472_833,
            event: EntryKind::Sent,
            step: Some(0),
            channel: Some("vk".into()),
            reason: None,
            until_ms: None,
            provider_message_id: Some("4711".into()),
        };
        assert_eq!(encode_entry(&e), "1795450472833\tsent\t0\tvk\t\t4711");
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(decode_entry(&json).unwrap(), e);
        assert!(decode_entry("1795450472833\tnonsense").is_err());
        assert!(decode_state("0\t0\t0\t2\tQ").is_err());
    }

    #[test]
    fn a_record_carries_its_layout_and_the_first_layout_still_reads() {
        let r = Record {
            version: "3",
            state: "s",
            notification: "{}",
            timeline: "a\nb",
            meta: "h\t",
        };
        let stored = r.encode();
        assert!(stored.starts_with("r2\x1f3\x1f"));
        assert_eq!(Record::parse(&stored).unwrap(), r);
        let first = "3\x1fs\x1f{}\x1fa\nb\x1fh\t";
        assert_eq!(Record::parse(first).unwrap(), r);
        for unknown in ["r3\x1f3\x1fs\x1f{}\x1f\x1fh", "{\"v\":1}", "", "x"] {
            let why = Record::parse(unknown).unwrap_err();
            assert!(why.contains("layout"), "{why}");
        }
        assert!(Record::parse("r2\x1f3\x1fs").unwrap_err().contains("five"));
    }
}
