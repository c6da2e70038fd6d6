//! `policies/<name>.toml`: one escalation policy, named by its file.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use toml::Spanned;

use super::check::{FileCheck, KnownChannels};
use super::settings::RawLimits;
use crate::core::policy::{Answer, StaffStep};
use crate::core::policy::{CANCELLED, DEFAULT_STOP_ON};
use crate::core::template;
use crate::core::{Limits, OnLimit, Policy, QuietHours, Step, WaitClock};
use crate::report::tally::RECEIPT_WORDS;

/// A policy file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub description: Option<String>,
    pub stop_on: Option<Spanned<Vec<Spanned<String>>>>,
    pub expire_after: Option<Spanned<String>>,
    pub wait_clock: Option<Spanned<String>>,
    pub on_limit: Option<Spanned<String>>,
    pub steps: Option<Spanned<Vec<Spanned<RawStep>>>>,
    pub limits: Option<RawLimits>,
    pub quiet_hours: Option<BTreeMap<String, Spanned<String>>>,
    pub answer_within: Option<Spanned<String>>,
    pub answer_escalation: Option<Spanned<Vec<Spanned<RawStaffStep>>>>,
}

/// One `answer_escalation` entry: `"support_telegram"` (waiting
/// `answer_within` before the next) or `{ channel = "…", wait = "30m" }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawStaffStep {
    Channel(String),
    Table {
        channel: String,
        wait: Option<Spanned<String>>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub channel: Option<Spanned<OneOrMany>>,
    pub wait: Option<Spanned<String>>,
    pub wait_clock: Option<Spanned<String>>,
    pub on_limit: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub on: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub next: Option<Spanned<String>>,
    #[serde(rename = "final")]
    pub is_final: Option<Spanned<bool>>,
    pub text: Option<Spanned<String>>,
    pub subject: Option<Spanned<String>>,
}

/// `channel = "vk"` or `channel = ["telegram", "whatsapp"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

const WAIT_CLOCKS: [(&str, WaitClock); 2] =
    [("wall", WaitClock::Wall), ("awake", WaitClock::Awake)];
const ON_LIMITS: [(&str, OnLimit); 2] = [("defer", OnLimit::Defer), ("next", OnLimit::Next)];

/// What every policy starts from: the channels it may name, and the global
/// `[limits]` and `[quiet_hours]` its own override.
pub(super) struct PolicyBase<'a> {
    pub known: &'a KnownChannels,
    pub limits: Limits,
    pub quiet: BTreeMap<String, Option<QuietHours>>,
    /// `[receipts] custom`: the words of the operator's own systems.
    pub custom_receipts: Vec<String>,
    /// Whether `[replies] sink` is set: an answer deadline needs somewhere
    /// to hand the reply first.
    pub replies_sink: bool,
}

/// Reads one policy file; `None` when anything in it is wrong (each problem
/// reported to `check`).
pub(super) fn build_policy(
    name: &str,
    raw: RawPolicy,
    base: &PolicyBase,
    check: &mut FileCheck,
) -> Option<Policy> {
    let before = check.errors.len();
    let default_clock = raw
        .wait_clock
        .as_ref()
        .and_then(|v| check.choice(v, "wait clock", &WAIT_CLOCKS))
        .unwrap_or_default();
    let default_on_limit = raw
        .on_limit
        .as_ref()
        .and_then(|v| check.choice(v, "limit behaviour", &ON_LIMITS))
        .unwrap_or_default();
    let stop_on = read_stop_on(raw.stop_on.as_ref(), &base.custom_receipts, check);
    let expire_after_ms = raw.expire_after.as_ref().and_then(|v| check.duration_ms(v));

    let raw_steps = read_raw_steps(raw.steps, check);
    let names = read_step_names(&raw_steps, check);
    let targets = raw_steps
        .iter()
        .filter_map(|s| s.get_ref().on.as_ref())
        .flat_map(|on| on.get_ref().values())
        .filter_map(|to| names.get(to.get_ref().trim()).copied())
        .collect();
    let reading = StepReading {
        known: base.known,
        count: raw_steps.len(),
        wait_clock: default_clock,
        on_limit: default_on_limit,
        names,
        targets,
        custom_receipts: &base.custom_receipts,
    };
    let steps: Vec<Step> = raw_steps
        .into_iter()
        .enumerate()
        .filter_map(|(i, spanned)| reading.step(i, spanned, check))
        .collect();
    if check.errors.len() == before {
        check_way_on_ends(&steps, check);
    }

    let (limits, quiet) =
        with_overrides(base, raw.limits.as_ref(), raw.quiet_hours.as_ref(), check);
    // `<channel> = "off"` lifts a range set for the channel's kind too.
    let quiet_off = quiet
        .iter()
        .filter(|(k, v)| v.is_none() && base.known.names.contains(*k))
        .map(|(k, _)| k.clone())
        .collect();
    let quiet_hours = quiet
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();

    let answer = read_answer(&raw.answer_within, raw.answer_escalation, base, check);

    if check.errors.len() > before {
        return None;
    }
    Some(Policy {
        name: name.to_owned(),
        description: raw.description.unwrap_or_default(),
        stop_on,
        expire_after_ms,
        steps,
        limits,
        quiet_hours,
        quiet_off,
        answer,
        awake_hours: None,
    })
}

/// `answer_within` and `answer_escalation`: how soon staff must answer a
/// customer's reply, and the staff channels in turn when they do not.
fn read_answer(
    within: &Option<Spanned<String>>,
    escalation: Option<Spanned<Vec<Spanned<RawStaffStep>>>>,
    base: &PolicyBase,
    check: &mut FileCheck,
) -> Option<Answer> {
    let Some(within) = within else {
        if let Some(e) = escalation {
            check.err(
                e.span(),
                "answer_escalation without answer_within: set how soon a reply must be answered, e.g. answer_within = \"15m\"",
            );
        }
        return None;
    };
    if !base.replies_sink {
        check.err(
            within.span(),
            "answer_within needs [replies] sink in cascade.toml: the channel (a helpdesk webhook) every customer reply is handed to first",
        );
    }
    let within_ms = check.duration_ms(within);
    let mut steps = Vec::new();
    for raw in escalation.map(Spanned::into_inner).unwrap_or_default() {
        let span = raw.span();
        let (channel, wait) = match raw.into_inner() {
            RawStaffStep::Channel(c) => (c, None),
            RawStaffStep::Table { channel, wait } => (channel, wait),
        };
        if !base.known.names.contains(channel.trim()) {
            check.err(
                span,
                format!(
                    "answer_escalation names channel `{channel}`, which has no file in channels/"
                ),
            );
        }
        steps.push(StaffStep {
            channel: channel.trim().to_owned(),
            wait_ms: wait.as_ref().and_then(|w| check.duration_ms(w)),
        });
    }
    Some(Answer {
        within_ms: within_ms?,
        escalation: steps,
    })
}

/// `stop_on` as written; a word neither built in nor declared in
/// `[receipts] custom` is warned about, since no receipt would ever match it.
fn read_stop_on(
    raw: Option<&Spanned<Vec<Spanned<String>>>>,
    custom: &[String],
    check: &mut FileCheck,
) -> Vec<String> {
    match raw {
        Some(list) => {
            if list.get_ref().is_empty() {
                check.err(list.span(), "stop_on is empty, so nothing would ever end the cascade early; name at least one receipt, e.g. [\"read\"]");
            }
            for s in list.get_ref() {
                let word = s.get_ref().trim();
                let known = RECEIPT_WORDS.contains(&word) || custom.iter().any(|c| c == word);
                if !known {
                    check.warn(s.span(), unknown_receipt_word("stop_on", word, custom));
                }
            }
            list.get_ref()
                .iter()
                .map(|s| s.get_ref().trim().to_owned())
                .collect()
        }
        None => DEFAULT_STOP_ON.iter().map(|s| s.to_string()).collect(),
    }
}

/// The warning for a `stop_on` (or `on`) word nothing sends, with the
/// nearest known word when it is a likely typo of one.
fn unknown_receipt_word(field: &str, word: &str, custom: &[String]) -> String {
    let nearest = RECEIPT_WORDS
        .iter()
        .copied()
        .chain(custom.iter().map(String::as_str))
        .map(|k| (edit_distance(word, k), k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d);
    let why = format!(
        "{field} word `{word}` is neither a built-in receipt nor declared in cascade.toml's [receipts] custom, so no receipt will ever match it"
    );
    match nearest {
        Some((_, k)) => format!("{why}; did you mean `{k}`?"),
        None => format!(
            "{why}; built-in words: {}; declare your own systems' words in [receipts] custom",
            RECEIPT_WORDS.join(", ")
        ),
    }
}

/// Levenshtein distance in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `[[steps]]` as written: at least one, at most 32.
fn read_raw_steps(
    raw: Option<Spanned<Vec<Spanned<RawStep>>>>,
    check: &mut FileCheck,
) -> Vec<Spanned<RawStep>> {
    let raw_steps = match raw {
        Some(s) if !s.get_ref().is_empty() => s.into_inner(),
        Some(s) => {
            check.err(
                s.span(),
                "steps is empty; add at least one [[steps]] table with a channel",
            );
            Vec::new()
        }
        None => {
            check.err_file("the policy has no steps; add at least one [[steps]] table, e.g. [[steps]] channel = \"vk\" wait = \"30m\"");
            Vec::new()
        }
    };
    if raw_steps.len() > 32 {
        check.err_file("a policy may have at most 32 steps");
    }
    raw_steps
}

/// The steps' `name`s → their index: each a word of `[a-z0-9_]`, once.
fn read_step_names(
    raw_steps: &[Spanned<RawStep>],
    check: &mut FileCheck,
) -> BTreeMap<String, usize> {
    let mut names = BTreeMap::new();
    for (i, step) in raw_steps.iter().enumerate() {
        let Some(name) = &step.get_ref().name else {
            continue;
        };
        let word = name.get_ref();
        let is_word = !word.is_empty()
            && word
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !is_word {
            check.err(
                name.span(),
                format!(
                    "step name `{word}` is not a word of lowercase letters, digits and `_`, e.g. name = \"open_chat\""
                ),
            );
            continue;
        }
        if let Some(first) = names.insert(word.clone(), i) {
            names.insert(word.clone(), first);
            check.err(
                name.span(),
                format!(
                    "step name `{word}` is used twice (steps {} and {}); names must be unique in a policy",
                    first + 1,
                    i + 1
                ),
            );
        }
    }
    names
}

/// Every cascade must end: following the waits' ends (`next`, or falling
/// through to the following step no branch targets) from any step must
/// reach a step with no way on. Branches may lead back; the core bounds
/// those by its transition limit, and each takes a fresh receipt.
fn check_way_on_ends(steps: &[Step], check: &mut FileCheck) {
    let policy = Policy {
        name: String::new(),
        description: String::new(),
        stop_on: Vec::new(),
        expire_after_ms: None,
        steps: steps.to_vec(),
        limits: Limits::default(),
        quiet_hours: BTreeMap::new(),
        quiet_off: Default::default(),
        answer: None,
        awake_hours: None,
    };
    for start in 0..steps.len() {
        let mut seen = vec![start];
        let mut at = start;
        while !steps[at].is_final {
            let Some(next) = policy.after_wait(at) else {
                break;
            };
            if seen.contains(&next) {
                let way: Vec<String> = seen
                    .iter()
                    .chain([&next])
                    .map(|&s| step_label(&steps[s], s))
                    .collect();
                check.err_file(format!(
                    "the steps' waits lead round in a circle ({}), so a cascade would never end; give one of them `final = true`, or a `next` out of the circle",
                    way.join(" → ")
                ));
                return;
            }
            seen.push(next);
            at = next;
        }
    }
}

/// A step's `text` or `subject`: not blank, and every placeholder one a
/// send can fill in (`core::template`); a bad one is reported where it is
/// written.
fn step_text(t: &Spanned<String>, what: &str, check: &mut FileCheck) -> Option<String> {
    let text = t.get_ref();
    if text.trim().is_empty() {
        check.err(
            t.span(),
            format!("the step's `{what}` is blank; leave it out to use the notification's texts"),
        );
        return None;
    }
    if let Err(e) = template::check(text) {
        check.err(text_position(check.src, t, e.offset), e.message);
        return None;
    }
    Some(text.clone())
}

/// Where byte `offset` of a string value is in the file: exact for a
/// string written without escapes, else the string's start.
fn text_position(src: &str, t: &Spanned<String>, offset: usize) -> std::ops::Range<usize> {
    let span = t.span();
    let written = src.get(span.clone()).unwrap_or("");
    for quote in ["\"\"\"", "'''", "\"", "'"] {
        if let Some(inner) = written
            .strip_prefix(quote)
            .and_then(|w| w.strip_suffix(quote))
            && inner == t.get_ref()
        {
            let at = span.start + quote.len() + offset;
            return at..at;
        }
    }
    span
}

/// A step as a message names it: its name, else its number.
fn step_label(step: &Step, i: usize) -> String {
    match &step.name {
        Some(name) => format!("`{name}`"),
        None => format!("step {}", i + 1),
    }
}

/// What reading one step needs from its policy: the channels it may name,
/// how many steps there are, the policy's defaults, and the steps' names.
struct StepReading<'a> {
    known: &'a KnownChannels,
    count: usize,
    wait_clock: WaitClock,
    on_limit: OnLimit,
    names: BTreeMap<String, usize>,
    /// The steps some `on` leads to (reached only by a branch or a `next`).
    targets: BTreeSet<usize>,
    custom_receipts: &'a [String],
}

impl StepReading<'_> {
    /// Step `i` (from 0); `None` when it names no channel at all.
    fn step(&self, i: usize, spanned: Spanned<RawStep>, check: &mut FileCheck) -> Option<Step> {
        let known = self.known;
        let span = spanned.span();
        let s = spanned.into_inner();
        let Some(channel) = s.channel else {
            check.err(
                span,
                format!(
                    "step {} has no channel; add `channel = \"…\"` naming one of: {}",
                    i + 1,
                    known.list()
                ),
            );
            return None;
        };
        let ch_span = channel.span();
        let channels = channel.into_inner().into_vec();
        if channels.is_empty() {
            check.err(
                ch_span.clone(),
                format!(
                    "step {} lists no channel; name at least one of: {}",
                    i + 1,
                    known.list()
                ),
            );
        }
        for ch in &channels {
            if let Some(warning) = known.missing_contact(ch) {
                check.warn(ch_span.clone(), warning);
            }
            if !known.names.contains(ch) {
                check.err(
                    ch_span.clone(),
                    format!(
                        "unknown channel `{ch}`; channels configured: {}",
                        known.list()
                    ),
                );
            }
        }
        let is_final = s.is_final.as_ref().is_some_and(|f| *f.get_ref());
        if is_final {
            for (what, span) in [
                ("wait", s.wait.as_ref().map(Spanned::span)),
                ("next", s.next.as_ref().map(Spanned::span)),
                ("on", s.on.as_ref().map(Spanned::span)),
            ] {
                if let Some(span) = span {
                    check.err(span, format!(
                        "step {} is `final` (the cascade ends once it is sent), so it takes no `{what}`",
                        i + 1
                    ));
                }
            }
        }
        let next = s
            .next
            .as_ref()
            .and_then(|n| self.target(i, n, "next", check));
        let mut on = BTreeMap::new();
        for (word, target) in s.on.iter().flat_map(|o| o.get_ref()) {
            let word = word.trim();
            if word == CANCELLED {
                check.err(
                    target.span(),
                    "`cancelled` always cancels the cascade; it cannot lead to a step",
                );
                continue;
            }
            if !(RECEIPT_WORDS.contains(&word) || self.custom_receipts.iter().any(|c| c == word)) {
                check.warn(
                    target.span(),
                    unknown_receipt_word("on", word, self.custom_receipts),
                );
            }
            if let Some(to) = self.target(i, target, &format!("on {word}"), check) {
                on.insert(word.to_owned(), to);
            }
        }
        let wait_ms = match &s.wait {
            Some(w) => check.duration_ms(w),
            None if is_final => None,
            // Only a step its wait leads on from needs one: the last, or
            // one followed only by steps a branch leads to, may end there.
            None => {
                let on = next
                    .map(usize::from)
                    .or_else(|| (i + 1..self.count).find(|j| !self.targets.contains(j)));
                if let Some(to) = on {
                    check.err(span, format!(
                        "step {} has no `wait`; say how long to wait for a stopping receipt before step {}, e.g. wait = \"30m\"",
                        i + 1,
                        to + 1
                    ));
                }
                None
            }
        };
        let wait_clock = s
            .wait_clock
            .as_ref()
            .and_then(|v| check.choice(v, "wait clock", &WAIT_CLOCKS))
            .unwrap_or(self.wait_clock);
        let on_limit = s
            .on_limit
            .as_ref()
            .and_then(|v| check.choice(v, "limit behaviour", &ON_LIMITS))
            .unwrap_or(self.on_limit);
        let text = s.text.as_ref().and_then(|t| step_text(t, "text", check));
        let subject = s
            .subject
            .as_ref()
            .and_then(|t| step_text(t, "subject", check));
        Some(Step {
            channels,
            wait_ms,
            wait_clock,
            on_limit,
            name: s.name.map(Spanned::into_inner),
            on,
            next,
            is_final,
            text,
            subject,
        })
    }

    /// The index of the step `target` names, for step `i`'s `what`.
    fn target(
        &self,
        i: usize,
        target: &Spanned<String>,
        what: &str,
        check: &mut FileCheck,
    ) -> Option<u8> {
        let name = target.get_ref().trim();
        match self.names.get(name) {
            Some(&to) if to == i => {
                check.err(
                    target.span(),
                    format!("step {}'s `{what}` leads to the step itself", i + 1),
                );
                None
            }
            Some(&to) => Some(to as u8),
            None => {
                let names: Vec<&str> = self.names.keys().map(String::as_str).collect();
                check.err(
                    target.span(),
                    format!(
                        "step {}'s `{what}` names no step: `{name}`; steps named: {}",
                        i + 1,
                        if names.is_empty() {
                            "none (give a step `name = \"…\"`)".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ),
                );
                None
            }
        }
    }
}

/// The policy's own `[limits]` and `[quiet_hours]` merged over the global ones.
fn with_overrides(
    base: &PolicyBase,
    raw_limits: Option<&RawLimits>,
    raw_quiet: Option<&BTreeMap<String, Spanned<String>>>,
    check: &mut FileCheck,
) -> (Limits, BTreeMap<String, Option<QuietHours>>) {
    let own = raw_limits
        .map(|l| build_limits(l, base.known, check))
        .unwrap_or_default();
    let mut limits = base.limits.clone();
    if own.per_customer.is_some() {
        limits.per_customer = own.per_customer;
    }
    limits.per_channel.extend(own.per_channel);
    let mut quiet = base.quiet.clone();
    if let Some(q) = raw_quiet {
        quiet.extend(build_quiet_hours(q, base.known, check));
    }
    (limits, quiet)
}

pub(super) fn build_limits(
    raw: &RawLimits,
    known: &KnownChannels,
    check: &mut FileCheck,
) -> Limits {
    let per_customer = raw.per_customer.as_ref().and_then(|v| check.rate(v));
    let mut per_channel = BTreeMap::new();
    for (key, v) in &raw.per_channel {
        if !known.names_channel_or_kind(key) {
            check.err(
                v.span(),
                format!(
                    "`{key}` in [limits] per_channel is not a channel; channels: {}",
                    known.list()
                ),
            );
            continue;
        }
        if let Some(rate) = check.rate(v) {
            per_channel.insert(key.clone(), rate);
        }
    }
    Limits {
        per_customer,
        per_channel,
    }
}

/// `[quiet_hours]`: channel (or kind) → range, or `"off"` to lift a global range.
pub(super) fn build_quiet_hours(
    raw: &BTreeMap<String, Spanned<String>>,
    known: &KnownChannels,
    check: &mut FileCheck,
) -> BTreeMap<String, Option<QuietHours>> {
    let mut out = BTreeMap::new();
    for (key, v) in raw {
        if !known.names_channel_or_kind(key) {
            check.err(
                v.span(),
                format!(
                    "`{key}` in [quiet_hours] is not a channel; channels: {}",
                    known.list()
                ),
            );
            continue;
        }
        if v.get_ref().trim() == "off" {
            out.insert(key.clone(), None);
        } else if let Some(q) = check.parsed(v, |s| QuietHours::parse(s).map_err(|e| e.0)) {
            out.insert(key.clone(), Some(q));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::ConfigError;

    /// The warnings `stop_on` in `src` draws, with `custom` declared.
    fn stop_on_warnings(src: &str, custom: &[&str]) -> Vec<ConfigError> {
        let raw: RawPolicy = toml::from_str(src).unwrap();
        let custom: Vec<String> = custom.iter().map(|s| s.to_string()).collect();
        let (mut errors, mut secrets, mut warnings) = (Vec::new(), Vec::new(), Vec::new());
        let mut check = FileCheck {
            file: Path::new("policies/p.toml"),
            src,
            errors: &mut errors,
            env: &|_| None,
            secrets: &mut secrets,
            warnings: &mut warnings,
        };
        let stop_on = read_stop_on(raw.stop_on.as_ref(), &custom, &mut check);
        assert!(!stop_on.is_empty());
        assert!(errors.is_empty(), "{errors:?}");
        warnings
    }

    #[test]
    fn a_misspelt_stop_on_word_is_warned_about_where_it_is_written_with_the_word_meant() {
        let w = stop_on_warnings(
            "description = \"x\"\nstop_on = [\"opened\", \"raed\"]\n",
            &[],
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(
            w[0].to_string(),
            "policies/p.toml:2:22: stop_on word `raed` is neither a built-in receipt nor declared in cascade.toml's [receipts] custom, so no receipt will ever match it; did you mean `read`?"
        );
    }

    #[test]
    fn built_in_and_declared_words_are_not_warned_about() {
        let src = "stop_on = [\"read\", \"clicked\", \"paid\"]\n";
        assert!(stop_on_warnings(src, &["paid", "called"]).is_empty());
    }

    #[test]
    fn an_undeclared_word_far_from_any_is_warned_about_without_a_guess() {
        let w = stop_on_warnings("stop_on = [\"paid\"]\n", &["called"]);
        assert_eq!(w.len(), 1, "{w:?}");
        let msg = &w[0].message;
        assert!(msg.starts_with("stop_on word `paid` is neither"), "{msg}");
        assert!(!msg.contains("did you mean"), "{msg}");
        assert!(
            msg.contains("declare your own systems' words in [receipts] custom"),
            "{msg}"
        );
    }

    #[test]
    fn a_typo_of_a_declared_word_is_guessed_too() {
        let w = stop_on_warnings("stop_on = [\"caled\"]\n", &["called"]);
        assert!(w[0].message.ends_with("did you mean `called`?"), "{w:?}");
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("raed", "read"), 2);
        assert_eq!(edit_distance("read", "read"), 0);
        assert_eq!(edit_distance("", "read"), 4);
        assert_eq!(edit_distance("opend", "opened"), 1);
        assert_eq!(edit_distance("paid", "read"), 3);
    }
}
