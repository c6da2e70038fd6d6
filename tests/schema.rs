//! The published JSON Schema of the notification and the intake agree:
//! the committed `docs/notification.schema.json` is what `cascade schema
//! notification` prints, every `examples/*.json` validates, and on a
//! generated corpus of valid and invalid messages the schema accepts exactly
//! what the intake's structural check (`notification::parse`) accepts.
//! No services needed.

use std::cell::Cell;
use std::path::Path;

use cascade::notification::{json_schema, parse};
use jsonschema::Validator;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The schema as a validator that asserts `format` too (`date-time`), as
/// the schema's description asks of producers' validators.
fn validator() -> Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(&json_schema())
        .expect("the generated schema compiles")
}

/// Whether the intake's structural check takes `value` (no body limit: the
/// schema cannot state one).
fn intake_accepts(value: &Value) -> Result<(), String> {
    let body = serde_json::to_vec(value).unwrap();
    parse(&body, usize::MAX)
        .map(|_| ())
        .map_err(|e| format!("{}: {}", e.code, e.message))
}

#[test]
fn committed_schema_is_the_generated_one() {
    let path = root().join("docs/notification.schema.json");
    let generated = format!(
        "{}\n",
        serde_json::to_string_pretty(&json_schema()).unwrap()
    );
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/notification.schema.json is not what `cascade schema notification` prints; \
         regenerate it: cargo run -q -- schema notification > docs/notification.schema.json"
    );
}

#[test]
fn the_schema_is_valid_draft_2020_12() {
    assert!(
        jsonschema::meta::is_valid(&json_schema()),
        "the schema does not validate against its meta-schema"
    );
}

#[test]
fn every_example_validates_and_is_taken_by_the_intake() {
    let validator = validator();
    let mut seen = 0;
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let value: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        intake_accepts(&value).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        seen += 1;
    }
    assert!(seen > 0, "no examples/*.json found");
}

/// Edge cases picked by hand, each next to the limit or the rule it probes;
/// the generated corpus below goes wider.
#[test]
fn schema_and_intake_agree_on_edge_cases() {
    let validator = validator();
    let cases = [
        base(),
        with(base(), "/id", json!("a".repeat(200))),
        with(base(), "/id", json!("ж".repeat(200))),
        with(base(), "/id", json!("ж".repeat(201))),
        with(base(), "/id", json!("a\u{feff}b")),
        with(base(), "/id", json!("a\u{200b}b")),
        with(base(), "/id", json!("a\u{85}b")),
        with(base(), "/id", json!("a{b")),
        with(base(), "/policy", json!("\u{3000}")),
        with(base(), "/customer/id", json!(" x ")),
        with(base(), "/customer/id", json!("x\u{7f}")),
        with(base(), "/customer/contacts/vk", json!(5.0)),
        with(base(), "/customer/contacts/vk", json!(5.5)),
        with(base(), "/customer/contacts/vk", json!(-12)),
        with(base(), "/customer/contacts/vk", json!(1e300)),
        with(
            base(),
            "/customer/contacts/vk",
            json!(9_007_199_254_740_991_u64),
        ),
        with(
            base(),
            "/customer/contacts/vk",
            json!(9_007_199_254_740_992_u64),
        ),
        with(
            base(),
            "/customer/contacts/vk",
            json!(-9_007_199_254_740_992_i64),
        ),
        with(
            base(),
            "/customer/contacts/vk",
            json!(9.007_199_254_740_992e15),
        ),
        with(base(), "/content/link", json!("HTTP://x")),
        with(base(), "/content/link", json!("http://")),
        with(base(), "/content/link", json!("https://a\u{a0}b")),
        with(base(), "/send_at", json!("2026-02-29T09:00:00Z")),
        with(base(), "/send_at", json!("2028-02-29T09:00:00Z")),
        with(base(), "/send_at", json!("2026-11-23t09:00:00z")),
        with(
            base(),
            "/send_at",
            json!("2026-11-23T09:00:00.123456789+03:00"),
        ),
        with(base(), "/send_at", json!("2026-11-23T09:00:00.1234567890Z")),
        with(base(), "/send_at", json!("2026-11-23T09:00:00+24:00")),
        with(base(), "/send_at", json!("2026-11-23T24:00:00Z")),
        with(base(), "/send_at", json!("2026-11-23 09:00:00Z")),
        with(base(), "/send_at", json!(" 2026-11-23T09:00:00Z")),
        with(base(), "/expires_at", json!("2026-11-23T09:00Z")),
        with(base(), "/content", Value::Null),
        with(base(), "/content/channels/sms", Value::Null),
        with(
            base(),
            "/content/text",
            json!("at {{ data.slot }} for {{customer.id}}"),
        ),
        with(
            base(),
            "/content/text",
            json!("{{notification.id}}{{data.a_1}}"),
        ),
        with(base(), "/content/text", json!("{{foo}}")),
        with(base(), "/content/text", json!("{{data.}}")),
        with(base(), "/content/text", json!("x {{data.slot")),
        with(base(), "/content/text", json!("{{{{ literal {{{{{")),
        with(base(), "/content/text", json!("{{{data.slot}}}")),
        with(base(), "/content/text", json!("{{data.slot }x}}")),
        with(base(), "/content/subject", json!("{{data.Slot}}")),
        with(base(), "/content/html", json!("<p>{{ data.slot\t}}</p>")),
        with(
            base(),
            "/content/steps/confirm/text",
            json!("{{data.slot}}"),
        ),
        with(base(), "/content/steps/confirm/text", json!("{{data.x y}}")),
        with(base(), "/content/steps/Confirm", json!({"text": "x"})),
        with(base(), "/content/steps/a b", json!({"text": "x"})),
        with(base(), "/content/steps", json!(null)),
        json!([base()]),
        json!("text"),
    ];
    for case in cases {
        check_agreement(&validator, &case).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// The corpus: a valid notification with random fields replaced by values
/// that are right, wrong in type, or at and beyond their limits. Fails on the
/// first value the two judge differently, shrunk by proptest.
#[test]
fn schema_and_intake_agree_on_a_generated_corpus() {
    let validator = validator();
    let mut runner = TestRunner::new(Config {
        cases: 2000,
        failure_persistence: None,
        ..Config::default()
    });
    let (valid, invalid) = (Cell::new(0u32), Cell::new(0u32));
    runner
        .run(&notification(), |value| {
            let accepted = check_agreement(&validator, &value).map_err(TestCaseError::fail)?;
            let count = if accepted { &valid } else { &invalid };
            count.set(count.get() + 1);
            Ok(())
        })
        .unwrap();
    let (valid, invalid) = (valid.get(), invalid.get());
    // A corpus of one kind would prove little.
    assert!(
        valid >= 200 && invalid >= 200,
        "valid {valid}, invalid {invalid}"
    );
}

/// Whether both accept `value` (Ok(true)), both refuse it (Ok(false)), or
/// a sentence saying how they differ.
fn check_agreement(validator: &Validator, value: &Value) -> Result<bool, String> {
    let by_schema: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    let by_intake = intake_accepts(value);
    match (by_schema.is_empty(), &by_intake) {
        (true, Ok(())) => Ok(true),
        (false, Err(_)) => Ok(false),
        (true, Err(e)) => Err(format!(
            "the schema accepts what the intake refuses ({e}):\n{value:#}"
        )),
        (false, Ok(())) => Err(format!(
            "the intake accepts what the schema refuses ({by_schema:?}):\n{value:#}"
        )),
    }
}

/// The shipped example, the valid notification the corpus starts from.
fn base() -> Value {
    let path = root().join("examples/delivery_delay.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// `value` with the member at the JSON pointer `at` set (parents created).
fn with(mut value: Value, at: &str, member: Value) -> Value {
    set(&mut value, at, member);
    value
}

fn set(value: &mut Value, at: &str, member: Value) {
    let mut node = value;
    let parts: Vec<&str> = at.trim_start_matches('/').split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let map = node.as_object_mut().unwrap();
        if i == parts.len() - 1 {
            map.insert((*part).to_owned(), member);
            return;
        }
        node = map.entry(*part).or_insert_with(|| json!({}));
    }
}

fn remove(value: &mut Value, at: &str) {
    let (parent, last) = at.rsplit_once('/').unwrap();
    if let Some(Value::Object(map)) = value.pointer_mut(parent) {
        map.remove(last);
    }
}

/// Characters that sit on the rules' edges: whitespace by one definition and
/// not another, control characters, braces, multi-byte letters.
/// Pieces of placeholders, so generated texts hold some (`{` is among
/// the characters too).
const PLACEHOLDER_PIECES: &[&str] = &[
    "{{data.slot}}",
    "{{ data.slot }}",
    "{{customer.id}}",
    "{{notification.id}}",
    "{{{{",
    "{{",
    "}}",
    "{{data.}}",
    "{{foo}}",
    "data.slot",
];

const EDGE_CHARS: &[char] = &[
    'a', 'Z', '0', '-', ':', '/', ' ', '\t', '\n', '\u{85}', '\u{a0}', '\u{3000}', '\u{2028}',
    '\u{feff}', '\u{200b}', '\u{7}', '\u{7f}', '\u{9f}', '{', '}', 'ж', '😀',
];

fn short_string() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(EDGE_CHARS), 0..6)
        .prop_map(|chars| chars.into_iter().collect())
}

/// A string of `n` characters, one of them `c`: lengths near a limit.
fn long_string(limits: &'static [usize]) -> impl Strategy<Value = String> {
    (
        prop::sample::select(limits),
        prop::sample::select(EDGE_CHARS),
    )
        .prop_map(|(n, c)| "ж".repeat(n.saturating_sub(1)) + &c.to_string())
}

fn string(limits: &'static [usize]) -> BoxedStrategy<Value> {
    prop_oneof![
        3 => short_string().prop_map(Value::from),
        1 => long_string(limits).prop_map(Value::from),
        1 => placeholder_text().prop_map(Value::from),
    ]
    .boxed()
}

/// Placeholder pieces and edge characters, mixed.
fn placeholder_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            prop::sample::select(PLACEHOLDER_PIECES).prop_map(str::to_owned),
            prop::sample::select(EDGE_CHARS).prop_map(|c| c.to_string()),
        ],
        0..5,
    )
    .prop_map(|pieces| pieces.concat())
}

/// A `content.steps` key: a step name, or not one.
fn step_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["confirm", "open_chat", "s1"]).prop_map(str::to_owned),
        2 => short_string(),
        1 => Just("x".repeat(101)),
    ]
}

/// A value of some other JSON type.
fn wrong_type() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!(true)),
        Just(json!(7)),
        Just(json!(7.5)),
        Just(json!([])),
        Just(json!(["x"])),
        Just(json!({})),
        Just(json!("x")),
    ]
    .boxed()
}

fn time() -> BoxedStrategy<Value> {
    prop_oneof![
        prop::sample::select(vec![
            "2026-11-23T09:00:00Z",
            "2026-11-23T09:00:00+03:00",
            "2026-11-23T09:00:00.5-01:30",
            "2026-11-23t09:00:00z",
            "2026-11-23T09:00:00",
            "2026-11-23T09:00Z",
            "2026-11-23",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-23T09:00:00+03",
            "2026-11-23T09:00:00+0300",
            "2026-11-23T25:00:00Z",
            "2026-11-23T09:60:00Z",
            "tomorrow",
            "",
        ])
        .prop_map(Value::from),
        wrong_type(),
    ]
    .boxed()
}

fn contact_value() -> BoxedStrategy<Value> {
    prop_oneof![
        string(&[320, 321]),
        Just(json!(123456789)),
        Just(json!(-5)),
        Just(json!(5.0)),
        Just(json!(5.25)),
        Just(Value::Null),
        Just(json!(true)),
        Just(json!(["+7"])),
    ]
    .boxed()
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["sms", "vk", "email", "telegram", "whatsapp"])
            .prop_map(str::to_owned),
        2 => short_string(),
        1 => long_string(&[100, 101]),
    ]
}

fn map_of(values: BoxedStrategy<Value>, sizes: std::ops::Range<usize>) -> BoxedStrategy<Value> {
    prop::collection::vec((key(), values), sizes)
        .prop_map(|entries| Value::Object(entries.into_iter().collect()))
        .boxed()
}

fn words() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => prop::collection::vec(string(&[100, 101]), 0..4).prop_map(Value::from),
        1 => prop::collection::vec(Just(json!("vk")), 15..18).prop_map(Value::from),
        1 => prop::collection::vec(wrong_type(), 1..2).prop_map(Value::from),
        1 => wrong_type(),
    ]
    .boxed()
}

fn texts() -> BoxedStrategy<Value> {
    let text = || string(&[2048, 2049, 65536, 65537]);
    prop_oneof![
        4 => (text(), text(), text()).prop_map(|(t, s, h)| json!({"text": t, "subject": s, "html": h})),
        1 => wrong_type(),
    ]
    .boxed()
}

/// One field to change, and what to.
fn change() -> BoxedStrategy<(&'static str, Option<Value>)> {
    let field = |at: &'static str, values: BoxedStrategy<Value>| {
        prop_oneof![
            4 => values.prop_map(move |v| (at, Some(v))),
            1 => wrong_type().prop_map(move |v| (at, Some(v))),
            1 => Just((at, None)),
        ]
        .boxed()
    };
    let link = prop_oneof![
        prop::sample::select(vec![
            "https://shop.example.ru/o/1",
            "HTTPS://X",
            "http://",
            "ftp://x",
            "https://a b",
            "https://a\u{85}b",
            "https://a\u{feff}b",
            "https:/x",
            "mailto:x@y",
        ])
        .prop_map(Value::from),
        long_string(&[2048]).prop_map(|s| Value::from(format!("https://{s}"))),
    ]
    .boxed();
    prop_oneof![
        field("/id", string(&[200, 201])),
        field("/policy", string(&[100, 101])),
        field("/customer", wrong_type()),
        field("/customer/id", string(&[200, 201])),
        field("/customer/timezone", string(&[100, 101])),
        field("/customer/segment", string(&[100, 101])),
        field("/customer/contacts", map_of(contact_value(), 0..4)),
        field(
            "/customer/contacts",
            map_of(Just(Value::Null).boxed(), 31..35)
        ),
        field("/customer/contacts/sms", contact_value()),
        field("/customer/preferences", words()),
        field("/customer/opt_out", words()),
        field("/content", texts()),
        field("/content/text", string(&[65536, 65537])),
        field("/content/subject", string(&[2048, 2049])),
        field("/content/link", link),
        field("/content/channels", map_of(texts(), 0..3)),
        field("/content/channels", map_of(Just(json!({})).boxed(), 31..35)),
        field("/content/channels/sms", texts()),
        field(
            "/content/steps",
            prop::collection::vec((step_key(), texts()), 0..3)
                .prop_map(|entries| Value::Object(entries.into_iter().collect()))
                .boxed()
        ),
        field("/content/steps", map_of(Just(json!({})).boxed(), 31..35)),
        field("/content/steps/confirm", texts()),
        field("/send_at", time()),
        field("/expires_at", time()),
        field("/unknown", wrong_type()),
    ]
    .boxed()
}

/// The base notification with up to three changes applied.
fn notification() -> impl Strategy<Value = Value> {
    prop::collection::vec(change(), 0..=3).prop_map(|changes| {
        let mut value = base();
        for (at, member) in changes {
            match member {
                Some(member) => set(&mut value, at, member),
                None => remove(&mut value, at),
            }
        }
        value
    })
}
