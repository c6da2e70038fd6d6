//! Intake against the repository's real configuration: the example of
//! docs/notifications.md is admitted, and no body whatsoever makes `parse`
//! or `admit` panic or return an error without a sentence.

use std::path::Path;
use std::sync::OnceLock;

use cascade::config::Catalog;
use cascade::notification::{ErrorCode, IntakeError, MAX_MESSAGE_BYTES, admit, parse};
use proptest::prelude::*;
use serde_json::{Value, json};

/// The example notification of docs/notifications.md, verbatim.
const DOCUMENTED_EXAMPLE: &str = r#"{
  "id": "order-1001:delayed",
  "policy": "delivery_delay",
  "customer": {
    "id": "c-42",
    "timezone": "Europe/Moscow",
    "segment": "new",
    "contacts": { "vk": "123456789", "sms": "+79161234567", "email": "ivan@example.ru",
                  "telegram": "5551234", "whatsapp": "+79161234567" },
    "preferences": ["telegram", "vk"],
    "opt_out": ["whatsapp"]
  },
  "content": {
    "text": "Заказ 1001 задерживается на 2 дня",
    "subject": "Заказ задерживается",
    "html": "<p>Заказ 1001 задерживается на 2 дня</p>",
    "link": "https://shop.example.ru/orders/1001",
    "channels": { "sms": { "text": "Заказ 1001 задерживается" } }
  },
  "send_at": "2026-11-23T09:00:00Z",
  "expires_at": "2026-11-24T12:00:00Z"
}"#;

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("cascade.toml");
        Catalog::load(path.as_path()).expect("the repository's config loads")
    })
}

#[test]
fn the_documented_example_is_admitted() {
    let a = admit(DOCUMENTED_EXAMPLE.as_bytes(), catalog()).expect("admitted");
    assert_eq!(a.notification.id, "order-1001:delayed");
    assert_eq!(a.notification.policy, "delivery_delay");
    assert_eq!(a.notification.customer.id, "c-42");
    assert_eq!(a.recipient.contacts["sms"], "+79161234567");
    assert_eq!(a.recipient.opt_out, ["whatsapp"]);
    assert!(a.send_at_ms.is_some_and(|s| a.expires_at_ms > Some(s)));
}

#[test]
fn the_documented_example_in_other_policies() {
    for (policy, admitted) in [
        ("abandoned_cart", true),
        // The call-centre step has no text of its own; content.text serves it.
        ("order_followup", true),
        ("order_call", true),
        ("nonexistent", false),
    ] {
        let body = DOCUMENTED_EXAMPLE.replace("\"delivery_delay\"", &format!("\"{policy}\""));
        assert_eq!(
            admit(body.as_bytes(), catalog()).is_ok(),
            admitted,
            "{policy}"
        );
    }
}

/// The invariant every outcome keeps.
fn check(result: Result<(), IntakeError>) {
    if let Err(e) = result {
        assert!(
            !e.message.trim().is_empty(),
            "{:?} without a message",
            e.code
        );
        assert!(e.message.len() <= MAX_MESSAGE_BYTES, "{}", e.message);
        assert!(!e.message.chars().any(char::is_control), "{:?}", e.message);
        assert_eq!(ErrorCode::parse(e.code.as_str()), Some(e.code));
        assert_eq!(e.to_string(), e.message);
    }
}

fn both(body: &[u8]) {
    check(parse(body, 256 * 1024).map(|_| ()));
    check(parse(body, 64).map(|_| ()));
    let admitted = admit(body, catalog());
    if let Ok(a) = &admitted {
        // What was admitted parses again to the same notification.
        let again = serde_json::to_vec(&a.notification).expect("serialises");
        let reparsed = parse(&again, usize::MAX).expect("reparses");
        assert_eq!(reparsed, a.notification);
    }
    check(admitted.map(|_| ()));
}

/// Any JSON value, small.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("+79161234567"),
            Just("2026-11-23T09:00:00Z"),
            Just("Europe/Moscow"),
            Just("delivery_delay"),
            Just("ivan@example.ru"),
            Just("-100123"),
            Just("{}"),
            Just(""),
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON pointers into the documented example, including fields it does not have.
const POINTERS: &[&str] = &[
    "",
    "/id",
    "/policy",
    "/customer",
    "/customer/id",
    "/customer/timezone",
    "/customer/segment",
    "/customer/contacts",
    "/customer/contacts/sms",
    "/customer/contacts/vk",
    "/customer/contacts/email",
    "/customer/contacts/telegram",
    "/customer/preferences",
    "/customer/opt_out",
    "/content",
    "/content/text",
    "/content/subject",
    "/content/html",
    "/content/link",
    "/content/channels",
    "/content/channels/sms",
    "/content/channels/sms/text",
    "/content/channels/vk",
    "/send_at",
    "/expires_at",
    "/unknown",
];

/// The documented example with one field replaced by `value`, or removed.
fn with_field(pointer: &str, value: Option<Value>) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(DOCUMENTED_EXAMPLE).expect("example");
    match (pointer.rsplit_once('/'), value) {
        (None, Some(value)) => v = value,
        (None, None) => v = Value::Null,
        (Some((parent, key)), value) => {
            if let Some(obj) = v.pointer_mut(parent).and_then(Value::as_object_mut) {
                match value {
                    Some(value) => obj.insert(key.to_owned(), value),
                    None => obj.remove(key),
                };
            }
        }
    }
    serde_json::to_vec_pretty(&v).expect("json")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        both(&body);
    }

    #[test]
    fn json_ish_text(body in r#"[{}\[\]":,0-9a-z +\-.@\\/ЖжT\n]{0,200}"#) {
        both(body.as_bytes());
    }

    #[test]
    fn the_example_with_bytes_mutated(
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..8, "\\PC{0,4}"), 1..4),
    ) {
        let mut body = DOCUMENTED_EXAMPLE.as_bytes().to_vec();
        for (at, cut, insert) in edits {
            let start = at.index(body.len() + 1);
            let end = (start + cut).min(body.len());
            body.splice(start..end, insert.bytes());
        }
        both(&body);
    }

    #[test]
    fn the_example_with_a_field_replaced(
        pointer in prop::sample::select(POINTERS),
        value in prop::option::weighted(0.9, any_json()),
    ) {
        let body = with_field(pointer, value);
        both(&body);
        // A wrong field is named in the message, by its path.
        if let Err(e) = parse(&body, usize::MAX)
            && matches!(e.code, ErrorCode::InvalidField | ErrorCode::MissingField | ErrorCode::InvalidTime)
            && !matches!(pointer, "" | "/unknown")
        {
            let path = pointer.trim_start_matches('/').replace('/', ".");
            prop_assert!(e.message.starts_with(&path), "{path}: {}", e.message);
        }
    }

    #[test]
    fn the_example_with_a_truncated_body(cut in 0usize..DOCUMENTED_EXAMPLE.len()) {
        both(&DOCUMENTED_EXAMPLE.as_bytes()[..cut]);
    }
}
