//! `cascade dead`: reading and replaying the dead-letter queue.
//!
//! The daemon only ever publishes to `amqp.dead_letter_queue`; it never
//! consumes it, so these commands are its only readers. They take the
//! messages with `basic.get` without acknowledging them, which holds them
//! on this connection: if the command dies, RabbitMQ returns them.
//!
//! - Inspection (`list`, `show`) takes every message there was when it
//!   started, then hands all of them back at once (`basic.nack`, multiple,
//!   requeue), so the queue holds what it held, in its order.
//! - `replay` takes every message the same way; each selected one is
//!   published to the intake queue (persistent, `mandatory`, under a
//!   publisher confirm, without the `x-cascade-error*` headers) and
//!   acknowledged — removed from the dead-letter queue — only after its
//!   confirm. The others are handed back together at the end, in their
//!   order. If a republish is not confirmed, that message and every one not
//!   yet replayed go back, and the command stops with an error.
//!
//! Messages dead-lettered while a command runs are not read, and not lost;
//! the held ones, handed back, keep their order among themselves. On a
//! classic queue they go back to their places, ahead of the newcomers; a
//! quorum queue (the default) puts returned messages at its end, behind
//! them. When nothing is dead-lettered meanwhile, the order is kept on both.

use std::collections::BTreeMap;

use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection};
use serde::Serialize;

use super::intake::IntakeConfig;
use super::republish::{Published, copy_properties, publish_confirmed};

/// The header holding a dead letter's error code.
pub const CODE_HEADER: &str = "x-cascade-error-code";
/// The header holding a dead letter's error sentence.
pub const ERROR_HEADER: &str = "x-cascade-error";
/// The code shown for a message without `x-cascade-error-code` (one the
/// broker dead-lettered on its own, past a quorum queue's delivery limit).
pub const NO_CODE: &str = "-";
/// How much of a body `show` prints.
pub const BODY_LIMIT: usize = 16 * 1024;

/// One dead letter, as read.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// `x-cascade-error-code`, or [`NO_CODE`].
    pub code: String,
    /// `x-cascade-error`, as stored (not masked).
    pub error: Option<String>,
    /// Every header, in the broker's order (by name), values as text.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// `x-delivery-count`: how often a quorum queue handed it out before.
    pub delivery_count: Option<i64>,
}

impl DeadLetter {
    fn of(delivery: &Delivery) -> DeadLetter {
        let headers = delivery.properties.headers().as_ref();
        DeadLetter {
            code: code_of(headers),
            error: string_header(headers, ERROR_HEADER),
            headers: headers
                .map(|t| {
                    t.inner()
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), value_text(v)))
                        .collect()
                })
                .unwrap_or_default(),
            body: delivery.data.clone(),
            delivery_count: Some(i64::from(super::poison::Earlier::read(headers).returns))
                .filter(|n| *n > 0),
        }
    }
}

/// From how many reads on a quorum queue `list`, `show` and `replay` warn.
pub const READS_WARNING: i64 = 10;

/// A warning when a message has been handed out often: a quorum queue
/// counts each read in `x-delivery-count`, and from RabbitMQ 4.0 to 4.2 one
/// past its `delivery-limit` (20 by default) is dropped, the dead-letter
/// queue having no dead-letter exchange of its own.
pub fn reads_warning(letters: &[DeadLetter]) -> Option<String> {
    let most = letters.iter().filter_map(|l| l.delivery_count).max()?;
    (most >= READS_WARNING).then(|| {
        format!(
            "warning: a message of the dead-letter queue was handed out {most} times (x-delivery-count); \
             RabbitMQ 4.0 to 4.2 drop a quorum queue's message past its delivery-limit (20 by default): \
             read it less often, or raise the queue's delivery-limit by policy"
        )
    })
}

/// The counts of `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub queue: String,
    pub total: u64,
    /// By code, in the order of the codes' names.
    pub by_code: BTreeMap<String, u64>,
}

/// Counts `letters` by code.
pub fn count(queue: &str, letters: &[DeadLetter]) -> Counts {
    let mut by_code = BTreeMap::new();
    for l in letters {
        *by_code.entry(l.code.clone()).or_insert(0) += 1;
    }
    Counts {
        queue: queue.to_owned(),
        total: letters.len() as u64,
        by_code,
    }
}

/// The text of `list`.
pub fn render_counts(c: &Counts) -> String {
    let mut out = String::new();
    let width = c.by_code.keys().map(String::len).max().unwrap_or(0).max(5);
    for (code, n) in &c.by_code {
        out.push_str(&format!("{code:<width$}  {n}\n"));
    }
    out.push_str(&format!(
        "{:<width$}  {}  ({})\n",
        "total", c.total, c.queue
    ));
    out
}

/// Which dead letters `replay` takes.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// These codes (`--code`, repeatable).
    pub codes: Vec<String>,
    /// Every message, with or without a code (`--all`).
    pub all: bool,
}

impl Selection {
    pub fn selects(&self, code: &str) -> bool {
        self.all || self.codes.iter().any(|c| c == code)
    }
}

/// The code of a message's headers, or [`NO_CODE`].
pub fn code_of(headers: Option<&FieldTable>) -> String {
    string_header(headers, CODE_HEADER).unwrap_or_else(|| NO_CODE.to_owned())
}

fn string_header(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    match headers?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// A header value as text: strings as they are, anything else as debug text.
fn value_text(v: &AMQPValue) -> String {
    match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::Boolean(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// The headers of a replayed message: the dead letter's without the
/// `x-cascade-error*` ones the daemon added, and without a quorum queue's
/// `x-delivery-count`, which counted reads of the dead letter, not
/// deliveries of this copy (intake would add them to its failures). The
/// others, among them a poison letter's `x-cascade-deliveries`, stay.
pub fn replay_headers(headers: Option<&FieldTable>) -> FieldTable {
    let mut kept = headers.map(|t| t.inner().clone()).unwrap_or_default();
    kept.retain(|k, _| {
        !k.as_str().starts_with(ERROR_HEADER) && k.as_str() != super::poison::BROKER_COUNT_HEADER
    });
    FieldTable::from(kept)
}

/// A body for the terminal: JSON re-indented (keys in their order), else
/// the text as it is (invalid UTF-8 replaced), at most `limit` bytes, with a
/// note when cut.
pub fn render_body(body: &[u8], limit: usize) -> String {
    let text = if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        indent_json(&String::from_utf8_lossy(body))
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n… (cut: {end} of {} bytes shown)",
        &text[..end],
        text.len()
    )
}

/// Re-indents valid JSON by two spaces, keeping its keys, numbers and
/// escapes as written.
fn indent_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    let mut chars = json.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // An empty object or array stays on one line.
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}' | ']')) {
                    out.push(chars.next().unwrap_or(']'));
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// An open connection holding the dead letters it took, unacknowledged.
pub struct Held {
    conn: Connection,
    channel: Channel,
    dead_letter_queue: String,
    deliveries: Vec<Delivery>,
}

impl Held {
    /// Connects, declares the queues as the daemon does, and takes every
    /// message the dead-letter queue held at that moment, in queue order.
    pub async fn take(config: &IntakeConfig) -> anyhow::Result<Held> {
        let conn = super::queues::connect(config, "dead").await?;
        let channel = super::queues::declare(&conn, config).await?;
        let queue = ShortString::from(config.dead_letter_queue.as_str());
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let there = channel
            .queue_declare(queue.clone(), passive, FieldTable::default())
            .await?
            .message_count();
        let mut deliveries = Vec::with_capacity(there as usize);
        // At most what was there: what arrives meanwhile is not read.
        while deliveries.len() < there as usize {
            match channel
                .basic_get(queue.clone(), BasicGetOptions { no_ack: false })
                .await?
            {
                Some(got) => deliveries.push(got.delivery),
                None => break,
            }
        }
        Ok(Held {
            conn,
            channel,
            dead_letter_queue: config.dead_letter_queue.clone(),
            deliveries,
        })
    }

    pub fn letters(&self) -> Vec<DeadLetter> {
        self.deliveries.iter().map(DeadLetter::of).collect()
    }

    /// Hands every message still held back to the queue, in order, and closes.
    pub async fn give_back(self) -> anyhow::Result<()> {
        if let Some(last) = self.deliveries.last() {
            self.channel
                .basic_nack(
                    last.delivery_tag,
                    BasicNackOptions {
                        multiple: true,
                        requeue: true,
                    },
                )
                .await?;
        }
        let _ = self.conn.close(200, ShortString::from("done")).await;
        Ok(())
    }
}

/// Reads the dead-letter queue and leaves it as it was.
pub async fn read(config: &IntakeConfig) -> anyhow::Result<Vec<DeadLetter>> {
    let held = Held::take(config).await?;
    let letters = held.letters();
    held.give_back().await?;
    Ok(letters)
}

/// What `replay` did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Replayed {
    /// Replayed, by code.
    pub by_code: BTreeMap<String, u64>,
    /// Left in the dead-letter queue.
    pub left: u64,
}

impl Replayed {
    pub fn total(&self) -> u64 {
        self.by_code.values().sum()
    }
}

/// What `replay` would take, without taking it.
pub fn plan(letters: &[DeadLetter], selection: &Selection) -> Replayed {
    let mut r = Replayed::default();
    for l in letters {
        if selection.selects(&l.code) {
            *r.by_code.entry(l.code.clone()).or_insert(0) += 1;
        } else {
            r.left += 1;
        }
    }
    r
}

/// Republishes the selected dead letters to `amqp.queue`, removing each
/// from the dead-letter queue once RabbitMQ confirmed its copy; the others
/// go back in their order. `dry_run` only counts.
pub async fn replay(
    config: &IntakeConfig,
    selection: &Selection,
    dry_run: bool,
) -> anyhow::Result<Replayed> {
    let held = Held::take(config).await?;
    if dry_run {
        let planned = plan(&held.letters(), selection);
        held.give_back().await?;
        return Ok(planned);
    }
    // Publishes on a channel of their own: a failed publish closes its
    // channel, and the held messages must stay in hand to go back.
    let publisher = held.conn.create_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut done = Replayed::default();
    let mut failure = None;
    for d in &held.deliveries {
        let headers = d.properties.headers().as_ref();
        let code = code_of(headers);
        if !selection.selects(&code) {
            done.left += 1;
            continue;
        }
        let properties = copy_properties(&d.properties, replay_headers(headers));
        match publish_confirmed(&publisher, &config.queue, &d.data, properties).await {
            Published::Confirmed => {
                held.channel
                    .basic_ack(d.delivery_tag, BasicAckOptions { multiple: false })
                    .await?;
                *done.by_code.entry(code).or_insert(0) += 1;
            }
            not => {
                failure = Some(not);
                break;
            }
        }
    }
    let queue = held.dead_letter_queue.clone();
    // The unselected and, after a failure, the rest: acked ones are not
    // covered by a multiple nack.
    let given_back = held.give_back().await;
    if let Some(not) = failure {
        // Should the hand-back fail too, closing the connection returns them.
        anyhow::bail!(
            "the republish to {} was not confirmed ({not}); stopped after {} replayed, the rest stays in {queue}",
            config.queue,
            done.total()
        );
    }
    given_back?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::LongString;

    fn table(pairs: &[(&str, &str)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert(
                ShortString::from(*k),
                AMQPValue::LongString(LongString::from(*v)),
            );
        }
        t
    }

    fn letter(code: &str) -> DeadLetter {
        DeadLetter {
            code: code.into(),
            error: None,
            headers: vec![],
            body: vec![],
            delivery_count: None,
        }
    }

    #[test]
    fn replayed_headers_lose_only_the_error_ones() {
        let t = table(&[
            (CODE_HEADER, "poison"),
            (ERROR_HEADER, "failed 5 times"),
            ("x-cascade-deliveries", "5"),
            ("x-delivery-count", "3"),
            ("trace", "abc"),
        ]);
        let kept = replay_headers(Some(&t));
        let names: Vec<&str> = kept.inner().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["trace", "x-cascade-deliveries"]);
        assert!(replay_headers(None).inner().is_empty());
    }

    #[test]
    fn a_message_without_a_code_is_counted_apart_and_replayed_only_with_all() {
        assert_eq!(code_of(Some(&table(&[("x", "y")]))), NO_CODE);
        assert_eq!(
            code_of(Some(&table(&[(CODE_HEADER, "unknown_policy")]))),
            "unknown_policy"
        );
        let letters = [letter("unknown_policy"), letter(NO_CODE), letter("poison")];
        let by_code = plan(
            &letters,
            &Selection {
                codes: vec!["unknown_policy".into(), "poison".into()],
                all: false,
            },
        );
        assert_eq!(by_code.total(), 2);
        assert_eq!(by_code.left, 1);
        let all = plan(
            &letters,
            &Selection {
                codes: vec![],
                all: true,
            },
        );
        assert_eq!((all.total(), all.left), (3, 0));
    }

    #[test]
    fn often_read_messages_are_warned_about() {
        let mut letters = vec![letter("a"), letter("b")];
        assert_eq!(reads_warning(&letters), None);
        letters[1].delivery_count = Some(READS_WARNING - 1);
        assert_eq!(reads_warning(&letters), None);
        letters[0].delivery_count = Some(READS_WARNING);
        assert!(
            reads_warning(&letters)
                .unwrap()
                .contains("handed out 10 times")
        );
    }

    #[test]
    fn counts_by_code_and_total() {
        let c = count(
            "q.dead",
            &[letter("b"), letter("a"), letter("b"), letter(NO_CODE)],
        );
        assert_eq!(c.total, 4);
        assert_eq!(
            c.by_code.into_iter().collect::<Vec<_>>(),
            [("-".into(), 1), ("a".into(), 1), ("b".into(), 2)]
        );
    }

    #[test]
    fn json_bodies_are_indented_in_their_own_key_order() {
        let body = br#"{"z":1,"a":{"s":"x, {y}: \"q\"","e":[],"n":[1,2]}}"#;
        assert_eq!(
            render_body(body, 1000),
            "{\n  \"z\": 1,\n  \"a\": {\n    \"s\": \"x, {y}: \\\"q\\\"\",\n    \"e\": [],\n    \"n\": [\n      1,\n      2\n    ]\n  }\n}"
        );
    }

    #[test]
    fn other_bodies_are_shown_as_they_are_and_long_ones_cut() {
        assert_eq!(render_body(b"{not json", 100), "{not json");
        let long = "ж".repeat(10);
        let shown = render_body(long.as_bytes(), 5);
        assert!(
            shown.starts_with("жж\n… (cut: 4 of 20 bytes shown)"),
            "{shown}"
        );
    }
}
