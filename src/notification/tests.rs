use std::path::Path;
use std::sync::OnceLock;

use serde_json::{Value, json};

use super::admit::check_send_at;
use super::*;
use crate::config::Catalog;

/// The example notification of docs/notifications.md.
fn example() -> Value {
    json!({
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
    })
}

/// The example with the value at JSON pointer `at` replaced (or removed, for `None`).
fn changed(at: &str, value: Option<Value>) -> Vec<u8> {
    let mut v = example();
    let (parent, key) = at.rsplit_once('/').expect("pointer");
    let obj = v
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .expect("parent object");
    match value {
        Some(value) => obj.insert(key.to_owned(), value),
        None => obj.remove(key),
    };
    serde_json::to_vec(&v).expect("json")
}

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("cascade.toml");
        Catalog::load_with_env(&path, &|_| None).expect("the repository's config loads")
    })
}

const BIG: usize = 256 * 1024;

fn parse_err(body: &[u8]) -> IntakeError {
    parse(body, BIG).expect_err("should be refused")
}

fn admit_err(body: &[u8]) -> IntakeError {
    admit(body, catalog()).expect_err("should be refused")
}

#[track_caller]
fn assert_refused(err: &IntakeError, code: ErrorCode, mentions: &str) {
    assert_eq!(err.code, code, "{}", err.message);
    assert!(
        err.message.contains(mentions),
        "{:?} should mention {mentions:?}",
        err.message
    );
}

#[test]
fn the_documented_example_is_admitted() {
    let body = serde_json::to_vec(&example()).unwrap();
    let a = admit(&body, catalog()).unwrap();
    let n = &a.notification;
    assert_eq!(n.id, "order-1001:delayed");
    // `delivery_delay` reads `vk` and `sms` only; the other contacts are not kept.
    assert_eq!(
        n.customer.contacts.keys().collect::<Vec<_>>(),
        ["sms", "vk"]
    );
    assert_eq!(a.recipient.contacts, n.customer.contacts);
    assert_eq!(n.customer.opt_out, ["whatsapp"]);
    assert_eq!(a.recipient.tz.iana_name(), Some("Europe/Moscow"));
    assert_eq!(a.send_at_ms, Some(1_795_424_400_000));
    assert_eq!(a.expires_at_ms, Some(1_795_521_600_000));
    assert_eq!(
        n.text_for("sms", ChannelKind::Sms),
        Some("Заказ 1001 задерживается")
    );
    assert_eq!(
        n.text_for("vk", ChannelKind::Vk),
        Some("Заказ 1001 задерживается на 2 дня")
    );
    assert_eq!(
        n.subject_for("email", ChannelKind::Email),
        Some("Заказ задерживается")
    );
}

#[test]
fn codes_are_stable_words() {
    let words: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        words,
        [
            "body_too_large",
            "invalid_utf8",
            "malformed_json",
            "missing_field",
            "invalid_field",
            "invalid_id",
            "unknown_policy",
            "invalid_timezone",
            "invalid_time",
            "invalid_contact",
            "no_reachable_channel",
            "missing_text",
            "text_too_long",
            "poison",
            "send_at_too_far",
            "invalid_placeholder",
        ]
    );
    for code in ErrorCode::ALL {
        assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        assert_eq!(
            serde_json::to_value(code).unwrap(),
            Value::String(code.as_str().into())
        );
    }
}

const DAY_MS: i64 = 86_400_000;

#[test]
fn a_send_at_beyond_the_horizon_is_refused() {
    // The example's send_at is 2026-11-23T09:00:00Z.
    let send_at = 1_795_424_400_000;
    let horizon = catalog().settings.defaults.send_at_horizon_ms;
    assert_eq!(horizon, 30 * DAY_MS, "the default horizon");
    let body = serde_json::to_vec(&example()).unwrap();
    assert!(admit_at(&body, catalog(), send_at - horizon).is_ok());
    assert!(admit_at(&body, catalog(), send_at).is_ok());
    assert!(admit_at(&body, catalog(), send_at + DAY_MS).is_ok(), "past");
    let err = admit_at(&body, catalog(), send_at - horizon - 1).unwrap_err();
    assert_refused(&err, ErrorCode::SendAtTooFar, "defaults.send_at_horizon");

    // Near the far end of what a timestamp can be.
    let far = changed("/send_at", Some(json!("9999-12-30T00:00:00Z")));
    let err = admit_at(&far, catalog(), send_at).unwrap_err();
    assert_refused(&err, ErrorCode::SendAtTooFar, "30d");
    let near = changed("/send_at", Some(json!("0001-01-03T00:00:00Z")));
    assert!(
        admit_at(&near, catalog(), send_at).is_ok(),
        "the past is now"
    );
}

#[test]
fn the_horizon_check_saturates_at_the_ends_of_time() {
    for now in [i64::MIN, -1, 0, i64::MAX - 1, i64::MAX] {
        for horizon in [0, 1, 30 * DAY_MS, i64::MAX] {
            for send_at in [None, Some(i64::MIN), Some(0), Some(i64::MAX)] {
                let checked = check_send_at(send_at, now, horizon);
                let expected = send_at.is_none_or(|s| s <= now.saturating_add(horizon));
                assert_eq!(checked.is_ok(), expected, "{now} {horizon} {send_at:?}");
            }
        }
    }
}

#[test]
fn body_too_large() {
    let body = serde_json::to_vec(&example()).unwrap();
    let err = parse(&body, 100).unwrap_err();
    assert_refused(&err, ErrorCode::BodyTooLarge, "at most 100");
}

#[test]
fn invalid_utf8() {
    let err = parse_err(b"{\"id\": \"\xff\"}");
    assert_refused(&err, ErrorCode::InvalidUtf8, "offset 8");
}

#[test]
fn malformed_json() {
    assert_refused(&parse_err(b""), ErrorCode::MalformedJson, "empty");
    assert_refused(
        &parse_err(b"{\"id\": \"a\",\n \"policy\" \"p\"}"),
        ErrorCode::MalformedJson,
        "line 2, column 11",
    );
    assert_refused(
        &parse_err(b"{\"id\": \"a\""),
        ErrorCode::MalformedJson,
        "ends before",
    );
    let mut body = serde_json::to_vec(&example()).unwrap();
    body.extend_from_slice(b" {}");
    assert_refused(&parse_err(&body), ErrorCode::MalformedJson, "trailing");
}

#[test]
fn missing_field() {
    let err = parse_err(&changed("/customer/id", None));
    assert_refused(&err, ErrorCode::MissingField, "customer.id is required");
    let err = parse_err(&changed("/policy", None));
    assert_refused(&err, ErrorCode::MissingField, "policy is required");
    assert!(!err.message.contains("customer"), "{}", err.message);
    let err = parse_err(&changed("/customer", None));
    assert_refused(&err, ErrorCode::MissingField, "customer is required");
}

#[test]
fn invalid_field() {
    let err = parse_err(&changed("/customer/contacts/sms", Some(json!(true))));
    assert_refused(
        &err,
        ErrorCode::InvalidField,
        "customer.contacts.sms must be a string or a whole number, not boolean `true`",
    );
    let err = parse_err(&changed("/customer/opt_out", Some(json!(["sms", 5]))));
    assert_refused(&err, ErrorCode::InvalidField, "customer.opt_out[1]");
    let err = parse_err(&changed("/customer", Some(json!(["c-42"]))));
    assert_refused(
        &err,
        ErrorCode::InvalidField,
        "customer must be an object, not an array",
    );
    let err = parse_err(&changed("/customer/id", Some(json!({}))));
    assert_refused(
        &err,
        ErrorCode::InvalidField,
        "customer.id must be a string",
    );
    let err = parse_err(br#"["order-1", "delivery_delay", {"id": "c"}]"#);
    assert_refused(&err, ErrorCode::InvalidField, "the body must be an object");
    let err = parse_err(&changed("/policy", Some(json!(""))));
    assert_refused(&err, ErrorCode::InvalidField, "policy");
    let err = parse_err(&changed("/customer/id", Some(json!(" "))));
    assert_refused(&err, ErrorCode::InvalidField, "customer.id");
    let many: serde_json::Map<String, Value> =
        (0..33).map(|i| (format!("k{i}"), json!("x"))).collect();
    let err = parse_err(&changed("/customer/contacts", Some(Value::Object(many))));
    assert_refused(&err, ErrorCode::InvalidField, "33 entries");
    let err = parse_err(&changed(
        "/customer/preferences",
        Some(json!(vec!["vk"; 17])),
    ));
    assert_refused(&err, ErrorCode::InvalidField, "customer.preferences has 17");
    let err = parse_err(&changed(
        "/customer/contacts/email",
        Some(json!("a".repeat(321))),
    ));
    assert_refused(
        &err,
        ErrorCode::InvalidField,
        "customer.contacts.email is 321",
    );
    let err = parse_err(&changed(
        "/content/link",
        Some(json!("javascript:alert(1)")),
    ));
    assert_refused(&err, ErrorCode::InvalidField, "content.link");
    let err = parse_err(&changed(
        "/content/channels/sms",
        Some(json!("just a string")),
    ));
    assert_refused(
        &err,
        ErrorCode::InvalidField,
        "content.channels.sms must be an object",
    );
    let err = parse_err(br#"{"id": "a", "id": "b", "policy": "p", "customer": {"id": "c"}}"#);
    assert_refused(&err, ErrorCode::InvalidField, "id is given twice");
}

#[test]
fn invalid_id() {
    for (id, mentions) in [
        ("", "empty"),
        ("order 1001", "a space"),
        ("order-{1001}", "`{`"),
        ("order\u{7}1001", "control character (U+0007)"),
        ("order-1001\n", "U+000A"),
    ] {
        let err = parse_err(&changed("/id", Some(json!(id))));
        assert_refused(&err, ErrorCode::InvalidId, mentions);
        assert!(!err.message.contains('\n') && !err.message.contains('\u{7}'));
    }
    let err = parse_err(&changed("/id", Some(json!("x".repeat(201)))));
    assert_refused(&err, ErrorCode::InvalidId, "201 characters");
    assert!(parse(&changed("/id", Some(json!("x".repeat(200)))), BIG).is_ok());
}

#[test]
fn unknown_policy() {
    let err = admit_err(&changed("/policy", Some(json!("delivery_delayed"))));
    assert_refused(
        &err,
        ErrorCode::UnknownPolicy,
        "known policies: abandoned_cart, delivery_delay, order_call, order_followup",
    );
}

#[test]
fn invalid_timezone() {
    for tz in ["Moscow", "Europe/Mordor", "../../etc/passwd", "UTC+3"] {
        let err = admit_err(&changed("/customer/timezone", Some(json!(tz))));
        assert_refused(&err, ErrorCode::InvalidTimezone, "customer.timezone");
    }
    let err = admit_err(&changed("/customer/timezone", Some(json!(5))));
    assert_eq!(err.code, ErrorCode::InvalidField);
    // Absent, null or empty: the configured default.
    for tz in [None, Some(Value::Null), Some(json!(""))] {
        let a = admit(&changed("/customer/timezone", tz), catalog()).unwrap();
        assert_eq!(a.recipient.tz.iana_name(), Some("Europe/Moscow"));
    }
    let a = admit(
        &changed("/customer/timezone", Some(json!("asia/yekaterinburg"))),
        catalog(),
    )
    .unwrap();
    assert_eq!(a.recipient.tz.iana_name(), Some("Asia/Yekaterinburg"));
}

#[test]
fn invalid_time() {
    for bad in [
        json!("tomorrow"),
        json!("2026-11-23 09:00"),
        json!("2026-11-23T09:00:00"),
        json!("2026-13-01T00:00:00Z"),
        json!(1795424400000_i64),
    ] {
        let err = parse_err(&changed("/send_at", Some(bad)));
        assert_refused(
            &err,
            ErrorCode::InvalidTime,
            "send_at must be an RFC 3339 time",
        );
    }
    let err = parse_err(&changed("/expires_at", Some(json!("soon"))));
    assert_refused(&err, ErrorCode::InvalidTime, "expires_at");
    let n = parse(
        &changed("/send_at", Some(json!("2026-11-23T12:00:00+03:00"))),
        BIG,
    )
    .unwrap();
    assert_eq!(n.send_at, Some("2026-11-23T09:00:00Z".parse().unwrap()));
}

#[test]
fn invalid_contact() {
    let err = admit_err(&changed("/customer/contacts/sms", Some(json!("+7916"))));
    assert_eq!(err.code, ErrorCode::InvalidContact);
    assert_eq!(
        err.message,
        "customer.contacts.sms `+•••` is not a phone number in E.164 form: a + and 8 to 15 digits, the first not 0"
    );
    let err = admit_err(&changed(
        "/customer/contacts/vk",
        Some(json!("id123456789")),
    ));
    assert_eq!(
        err.message,
        "customer.contacts.vk `•••` is not a VK peer id (a positive whole number)"
    );
    let err = admit_err(&changed(
        "/customer/contacts/sms",
        Some(json!("89161234567")),
    ));
    assert_refused(
        &err,
        ErrorCode::InvalidContact,
        "customer.contacts.sms `8916•••4567` is not",
    );
    // A contact no channel of the policy uses is not checked.
    assert!(
        admit(
            &changed("/customer/contacts/email", Some(json!("not an email"))),
            catalog()
        )
        .is_ok()
    );
}

#[test]
fn contacts_of_an_opted_out_channel_are_not_checked() {
    let mut v = example();
    v["customer"]["contacts"]["sms"] = json!("garbage");
    v["customer"]["opt_out"] = json!(["sms"]);
    assert!(admit(&serde_json::to_vec(&v).unwrap(), catalog()).is_ok());
}

#[test]
fn contacts_are_normalised() {
    let mut v = example();
    v["customer"]["contacts"]["sms"] = json!(" +7 (916) 123-45-67 ");
    v["customer"]["contacts"]["vk"] = json!(123456789);
    v["customer"]["contacts"]["telegram"] = Value::Null;
    let a = admit(&serde_json::to_vec(&v).unwrap(), catalog()).unwrap();
    let contacts = &a.notification.customer.contacts;
    assert_eq!(contacts["sms"], "+79161234567");
    assert_eq!(contacts["vk"], "123456789");
    assert!(!contacts.contains_key("telegram"));
    assert_eq!(a.recipient.contacts, *contacts);
}

#[test]
fn no_reachable_channel() {
    let mut v = example();
    v["customer"]["contacts"] = json!({ "email": "ivan@example.ru", "sms": "  " });
    let err = admit_err(&serde_json::to_vec(&v).unwrap());
    assert_refused(
        &err,
        ErrorCode::NoReachableChannel,
        "vk (no contact), sms (no contact)",
    );
    v["customer"]["contacts"] = json!({ "vk": "1", "sms": "+79161234567" });
    v["customer"]["opt_out"] = json!(["vk", "sms"]);
    let err = admit_err(&serde_json::to_vec(&v).unwrap());
    assert_refused(&err, ErrorCode::NoReachableChannel, "vk (opted out)");
}

#[test]
fn missing_text() {
    let err = admit_err(&changed("/content", None));
    assert_refused(&err, ErrorCode::MissingText, "channel `vk`");
    // A blank text is no text.
    let err = admit_err(&changed("/content/text", Some(json!("  "))));
    assert_refused(&err, ErrorCode::MissingText, "content.channels.vk.text");
    // The sms text alone does not serve vk.
    let err = admit_err(&changed("/content/text", None));
    assert_refused(&err, ErrorCode::MissingText, "channel `vk`");
}

#[test]
fn email_may_carry_html_alone() {
    let mut v = example();
    v["policy"] = json!("abandoned_cart");
    v["customer"]["contacts"] = json!({ "email": "ivan@example.ru", "telegram": "5551234" });
    v["content"] = json!({ "html": "<p>Вы забыли корзину</p>", "channels": { "telegram": { "text": "Вы забыли корзину" } } });
    assert!(admit(&serde_json::to_vec(&v).unwrap(), catalog()).is_ok());
    // Every alternative the customer can be reached on may be used (the one
    // before it may fail), so vk needs a text as soon as there is a vk contact.
    v["customer"]["contacts"]["vk"] = json!("123456789");
    let err = admit_err(&serde_json::to_vec(&v).unwrap());
    assert_refused(&err, ErrorCode::MissingText, "channel `vk`");
}

#[test]
fn webhook_steps_need_text_too() {
    let mut v = example();
    v["policy"] = json!("order_followup");
    v["content"] =
        json!({ "html": "<p>Спасибо за заказ</p>", "channels": { "sms": { "text": "Спасибо" } } });
    let err = admit_err(&serde_json::to_vec(&v).unwrap());
    assert_refused(&err, ErrorCode::MissingText, "channel `call_centre`");
    v["content"]["channels"]["webhook"] = json!({ "text": "Позвонить клиенту" });
    assert!(admit(&serde_json::to_vec(&v).unwrap(), catalog()).is_ok());
}

#[test]
fn text_too_long() {
    // sms.toml allows 3 segments: 201 Cyrillic characters fit, 202 do not.
    let fits = "ж".repeat(201);
    assert!(
        admit(
            &changed("/content/channels/sms/text", Some(json!(fits))),
            catalog()
        )
        .is_ok()
    );
    let err = admit_err(&changed(
        "/content/channels/sms/text",
        Some(json!("ж".repeat(202))),
    ));
    assert_refused(
        &err,
        ErrorCode::TextTooLong,
        "content.channels.sms.text needs 4 SMS segments (202 UTF-16 units); channel `sms` allows at most 3",
    );
    // VK takes 4096 characters by default.
    let err = admit_err(&changed("/content/text", Some(json!("ж".repeat(4097)))));
    assert_refused(
        &err,
        ErrorCode::TextTooLong,
        "content.text is 4097 characters long; channel `vk` takes at most 4096",
    );
    // Structural limit of parse.
    let err = parse_err(&changed(
        "/content/html",
        Some(json!("a".repeat(65 * 1024))),
    ));
    assert_refused(&err, ErrorCode::TextTooLong, "content.html");
}

#[test]
fn a_past_expiry_is_not_an_error() {
    let a = admit(
        &changed("/expires_at", Some(json!("2001-01-01T00:00:00Z"))),
        catalog(),
    )
    .unwrap();
    assert_eq!(a.expires_at_ms, Some(978_307_200_000));
}

#[test]
fn unknown_fields_nulls_and_bom_are_tolerated() {
    let mut v = example();
    v["priority"] = json!({ "deep": [1, 2, { "x": null }] });
    v["customer"]["loyalty"] = json!(3);
    v["content"]["channels"]["sms"]["emoji"] = json!(false);
    v["customer"]["preferences"] = Value::Null;
    v["send_at"] = Value::Null;
    let mut body = "\u{feff}".as_bytes().to_vec();
    body.extend(serde_json::to_vec(&v).unwrap());
    let a = admit(&body, catalog()).unwrap();
    assert!(a.notification.customer.preferences.is_empty());
    assert_eq!(a.send_at_ms, None);
}

#[test]
fn text_lookup_order() {
    let mut v = example();
    v["content"]["channels"] = json!({
        "sms": { "text": "by name", "subject": " " },
        "vk": { "html": "<b>vk</b>" },
    });
    let n = parse(&serde_json::to_vec(&v).unwrap(), BIG).unwrap();
    assert_eq!(n.text_for("sms", ChannelKind::Sms), Some("by name"));
    // A channel named `sms_backup` of kind sms falls back to the kind's text.
    assert_eq!(n.text_for("sms_backup", ChannelKind::Sms), Some("by name"));
    assert_eq!(
        n.text_for("vk", ChannelKind::Vk),
        Some("Заказ 1001 задерживается на 2 дня")
    );
    assert_eq!(
        n.subject_for("sms", ChannelKind::Sms),
        Some("Заказ задерживается")
    );
    assert_eq!(n.html_for("vk", ChannelKind::Vk), Some("<b>vk</b>"));
    let mut bare = n.clone();
    bare.content = Content::default();
    assert_eq!(bare.text_for("sms", ChannelKind::Sms), None);
}

#[test]
fn serialising_round_trips() {
    let n = parse(&serde_json::to_vec(&example()).unwrap(), BIG).unwrap();
    let again = serde_json::to_vec(&n).unwrap();
    assert_eq!(parse(&again, BIG).unwrap(), n);
    let v: Value = serde_json::from_slice(&again).unwrap();
    assert_eq!(v["send_at"], "2026-11-23T09:00:00Z");
    assert_eq!(v, example());
}

#[test]
fn messages_are_bounded_and_single_line() {
    let huge = format!("{}\n", "x".repeat(100_000));
    let err = parse_err(&changed("/send_at", Some(json!(huge))));
    assert_eq!(err.code, ErrorCode::InvalidTime);
    assert!(err.message.len() <= MAX_MESSAGE_BYTES);
    assert!(!err.message.contains('\n'));
    assert_eq!(err.to_string(), err.message);
}

#[test]
fn containers_where_a_contact_belongs() {
    for bad in [json!([1, 2]), json!([]), json!({}), json!({"a": 1})] {
        let mut v = example();
        v["customer"]["contacts"]["sms"] = bad;
        for body in [
            serde_json::to_vec(&v).unwrap(),
            serde_json::to_vec_pretty(&v).unwrap(),
        ] {
            let err = parse_err(&body);
            assert_eq!(err.code, ErrorCode::InvalidField);
            assert!(
                err.message.starts_with(
                    "customer.contacts.sms must be a string or a whole number, not an "
                ),
                "{}",
                err.message
            );
        }
    }
}

#[test]
fn deep_nesting_does_not_overflow() {
    // serde_json skips unknown fields without recursion, so depth is no danger there.
    let open = "[".repeat(100_000);
    let close = "]".repeat(100_000);
    let deep = format!("{{\"x\": {open}{close}}}");
    assert_eq!(parse_err(deep.as_bytes()).code, ErrorCode::MissingField);
    let deep = format!("{open}{close}");
    assert_refused(
        &parse_err(deep.as_bytes()),
        ErrorCode::InvalidField,
        "the body must be an object, not an array",
    );
    let mut v = example();
    v["customer"]["contacts"]["sms"] = json!("PLACEHOLDER");
    let body = serde_json::to_string(&v)
        .unwrap()
        .replace("\"PLACEHOLDER\"", &format!("{open}{close}"));
    assert_refused(
        &parse_err(body.as_bytes()),
        ErrorCode::InvalidField,
        "customer.contacts.sms",
    );
}

#[test]
fn a_value_that_looks_like_serde_wording_does_not_confuse_the_message() {
    let err = parse_err(&changed("/send_at", Some(json!("x, expected y"))));
    assert!(
        err.message
            .starts_with("send_at must be an RFC 3339 time with an offset, such as 2026-11-23T09:00:00Z, not string \"x, expected y\""),
        "{}",
        err.message
    );
}

/// contract §7: a refusal's sentence goes into a dead-letter header, a log line
/// and the events stream, so it quotes no contact in the clear, however the
/// contact got into it.
#[test]
fn refusals_mask_the_contacts_they_quote() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // serde_json quotes a string of the wrong type.
        (
            changed("/customer/contacts", Some(json!("+79161234567"))),
            "customer.contacts must be an object, not string \"+7916•••4567\"",
        ),
        (
            changed("/customer/segment", Some(json!(["ivan@example.ru"]))),
            "customer.segment must be a string, not an array",
        ),
        (
            changed("/customer/opt_out", Some(json!("ivan@example.ru"))),
            "customer.opt_out must be an array, not string \"iv•••@example.ru\"",
        ),
        (
            changed("/send_at", Some(json!("+79161234567"))),
            "send_at must be an RFC 3339 time with an offset, such as 2026-11-23T09:00:00Z, not string \"+7916•••4567\"",
        ),
        // Our own sentences quote values too.
        (
            changed("/id", Some(json!("ivan@example.ru 79161234567"))),
            "id `iv•••@example.ru 7916•••4567` contains a space",
        ),
        (
            abandoned_cart("email", "ivan@example"),
            "customer.contacts.email `iv•••@example` is not an email address",
        ),
        (
            abandoned_cart("telegram", "@ivan_79161234567"),
            "customer.contacts.telegram `•••` is not a Telegram chat id",
        ),
        (
            changed("/content/link", Some(json!("mailto:ivan@example.ru"))),
            "content.link `mailto:iv•••@example.ru` must be",
        ),
        // A syntax error: serde_json names no value, the body is not quoted.
        (
            br#"{"id": "x", "customer": {"contacts": {"sms": "+79161234567"}"#.to_vec(),
            "the body ends before the JSON does",
        ),
    ];
    for (body, mentions) in cases {
        let err = match parse(&body, BIG) {
            Ok(_) => admit_err(&body),
            Err(e) => e,
        };
        for raw in ["79161234567", "ivan@", "ivan_79161234567"] {
            assert!(!err.message.contains(raw), "{raw} in {:?}", err.message);
        }
        assert!(
            err.message.contains(mentions),
            "{:?} should mention {mentions:?}",
            err.message
        );
    }
}

#[test]
fn only_the_contacts_the_policy_reads_are_kept() {
    let mut v = example();
    v["policy"] = json!("abandoned_cart");
    v["customer"]["contacts"]["fax"] = json!("+74951234567");
    let a = admit(&serde_json::to_vec(&v).unwrap(), catalog()).unwrap();
    // email, then telegram, whatsapp or vk: no sms, no fax. The opted-out
    // whatsapp stays: its channel is one of the policy's.
    assert_eq!(
        a.notification.customer.contacts.keys().collect::<Vec<_>>(),
        ["email", "telegram", "vk", "whatsapp"]
    );
    assert_eq!(a.recipient.contacts, a.notification.customer.contacts);
}

/// The example for `abandoned_cart` (email, then a messenger), with one contact changed.
fn abandoned_cart(key: &str, contact: &str) -> Vec<u8> {
    let mut v = example();
    v["policy"] = json!("abandoned_cart");
    v["customer"]["opt_out"] = json!([]);
    v["customer"]["contacts"][key] = json!(contact);
    serde_json::to_vec(&v).expect("json")
}

#[test]
fn large_counts_are_grouped_not_masked() {
    let err = parse(&vec![b' '; 1_048_577], 1_048_576).unwrap_err();
    assert_eq!(
        err.message,
        "the body is 1,048,577 bytes; at most 1,048,576 are accepted (amqp.max_body_bytes)"
    );
}

/// Each refusal names the field at fault as a JSON path, for the HTTP
/// intake's `field` (and a form that points at it); a body-level one names none.
#[test]
fn refusals_name_the_field_at_fault() {
    let cases: [(Vec<u8>, Option<&str>); 9] = [
        (
            changed("/customer/contacts/sms", Some(json!([1]))),
            Some("customer.contacts.sms"),
        ),
        (changed("/customer/id", None), Some("customer.id")),
        (
            changed("/customer/opt_out", Some(json!(["x", 7]))),
            Some("customer.opt_out[1]"),
        ),
        (changed("/id", Some(json!("a b"))), Some("id")),
        (
            changed("/send_at", Some(json!("tomorrow"))),
            Some("send_at"),
        ),
        (
            changed("/content/text", Some(json!("x".repeat(70_000)))),
            Some("content.text"),
        ),
        (
            changed("/content/link", Some(json!("ftp://x"))),
            Some("content.link"),
        ),
        (changed("/policy", Some(json!("nope"))), Some("policy")),
        (b"[1]".to_vec(), None),
    ];
    for (body, field) in cases {
        let err = admit(&body, catalog()).expect_err("refused");
        assert_eq!(err.field.as_deref(), field, "{}", err.message);
    }
}

#[test]
fn a_malformed_placeholder_is_refused_naming_the_field_and_where() {
    let body = serde_json::json!({
        "id": "o-1", "policy": "p", "customer": {"id": "c"},
        "content": {"text": "ok {{data.slot}}", "steps": {"confirm": {"text": "see {{foo}}"}}},
    });
    let e = parse(body.to_string().as_bytes(), 1 << 20).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidPlaceholder);
    assert_eq!(e.field.as_deref(), Some("content.steps.confirm.text"));
    assert!(e.message.contains("at character 4"), "{}", e.message);
    let bad_key = serde_json::json!({
        "id": "o-1", "policy": "p", "customer": {"id": "c"},
        "content": {"text": "x", "steps": {"Confirm": {"text": "y"}}},
    });
    let e = parse(bad_key.to_string().as_bytes(), 1 << 20).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("content.steps"));
    let literal = serde_json::json!({
        "id": "o-1", "policy": "p", "customer": {"id": "c"},
        "content": {"text": "{{{{ and {{ customer.id }}"},
    });
    assert!(parse(literal.to_string().as_bytes(), 1 << 20).is_ok());
}

#[test]
fn a_step_text_must_fit_the_channels_of_its_step() {
    let body = |text: String| {
        serde_json::to_vec(&json!({
            "id": "order-1002:call", "policy": "order_call",
            "customer": {"id": "c-43", "contacts": {"email": "a@example.ru", "sms": "+79161234568"}},
            "content": {"text": "Заказ 1002 оформлен", "steps": {"confirm": {"text": text}}},
        }))
        .unwrap()
    };
    assert!(admit(&body("ж".repeat(201)), catalog()).is_ok());
    let err = admit_err(&body("ж".repeat(202)));
    assert_refused(
        &err,
        ErrorCode::TextTooLong,
        "content.steps.confirm.text needs 4 SMS segments",
    );
    assert_eq!(err.field.as_deref(), Some("content.steps.confirm.text"));
}
