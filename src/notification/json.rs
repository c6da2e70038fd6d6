//! The JSON side of intake: serde helpers for the shapes producers actually
//! send, and serde_json errors turned into intake errors that name the field.
//!
//! serde_json reports a type error as "invalid type: integer `5`, expected a
//! string at line 3 column 12" without saying which field. Rather than keep a
//! second description of the schema, `error_from_serde` re-reads the body up
//! to the reported position and works out the path (`customer.contacts.sms`)
//! from the keys it passes.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::error::{ErrorCode, IntakeError, quote};
use super::limits::key_ok;
use super::{MAX_CONTACTS, MAX_KEY_CHARS};

/// Deserializes a struct from a JSON object only. serde's derive would also
/// take an array of the fields in order, which no producer means to send.
pub(super) fn object<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Object::<T>::deserialize(d).map(|o| o.0)
}

/// A field only the daemon writes: any value a producer sends is read as
/// `None` (and `parse` drops it), so it can never refuse a notification.
pub(super) fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

/// Like `object`, but absent or `null` gives the default.
pub(super) fn object_or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<Object<T>>::deserialize(d)?
        .map(|o| o.0)
        .unwrap_or_default())
}

/// A list or map that may also be written as `null`, meaning empty.
pub(super) fn null_as_empty<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `content.channels`: channel name or kind → an object of texts.
pub(super) fn object_map<'de, D, T>(d: D) -> Result<BTreeMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let map = Option::<BTreeMap<String, Object<T>>>::deserialize(d)?.unwrap_or_default();
    Ok(map.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// `customer.contacts`: values are strings; integers (a VK or Telegram id
/// written as a number) are taken as their decimal text, and `null` means
/// "no such contact". The number of entries and the keys are checked here,
/// while the `null` entries are still there: the schema counts them too.
pub(super) fn contacts<'de, D>(d: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    use serde::de::Error;
    let map = Option::<BTreeMap<String, Contact>>::deserialize(d)?.unwrap_or_default();
    if map.len() > MAX_CONTACTS {
        return Err(D::Error::custom(format!(
            "{} entries; at most {MAX_CONTACTS} are allowed",
            map.len()
        )));
    }
    if let Some(key) = map.keys().find(|k| !key_ok(k)) {
        return Err(D::Error::custom(format!(
            "the key {} is not a channel name or kind of 1 to {MAX_KEY_CHARS} characters",
            quote(key)
        )));
    }
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.0?)))
        .collect())
}

struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(V(PhantomData)).map(Object)
    }
}

struct Contact(Option<String>);

/// What a contact must be; also tells `error_from_serde` the error came from
/// `Contact`'s visitor.
const CONTACT_EXPECTED: &str = "a string or a whole number";

/// The largest whole number a contact may be written as: 2^53 − 1, the
/// last one every JSON parser (JavaScript's too) reads exactly. Larger ids
/// are written as strings, or a float would round them to another contact.
pub const MAX_WHOLE_CONTACT: u64 = (1 << 53) - 1;

impl<'de> Deserialize<'de> for Contact {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Contact;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(CONTACT_EXPECTED)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Contact, E> {
                Ok(Contact(Some(v.to_owned())))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Contact, E> {
                if v.unsigned_abs() > MAX_WHOLE_CONTACT {
                    return Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self));
                }
                Ok(Contact(Some(v.to_string())))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Contact, E> {
                if v > MAX_WHOLE_CONTACT {
                    return Err(E::invalid_value(serde::de::Unexpected::Unsigned(v), &self));
                }
                Ok(Contact(Some(v.to_string())))
            }
            /// `5.0` or `1e9` is a whole number too, as JSON Schema's
            /// `integer` says; `5.5` is not.
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Contact, E> {
                if v.fract() == 0.0 && v.abs() <= MAX_WHOLE_CONTACT as f64 {
                    Ok(Contact(Some(format!("{v:.0}"))))
                } else {
                    Err(E::invalid_type(serde::de::Unexpected::Float(v), &self))
                }
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Contact, E> {
                Ok(Contact(None))
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Contact, E> {
                Ok(Contact(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// `send_at` / `expires_at`: an RFC 3339 string such as `2026-11-23T09:00:00Z`.
pub(super) mod rfc3339 {
    use std::fmt;

    use jiff::Timestamp;
    use serde::de::{Unexpected, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.collect_str(t),
            None => s.serialize_none(),
        }
    }

    /// Parsed inside the visitor, so serde_json places an error right after
    /// the string and the error names the field.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        d.deserialize_option(OptionVisitor)
    }

    struct OptionVisitor;

    impl<'de> Visitor<'de> for OptionVisitor {
        type Value = Option<Timestamp>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(EXPECTED)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(TimeVisitor).map(Some)
        }
    }

    struct TimeVisitor;

    impl Visitor<'_> for TimeVisitor {
        type Value = Timestamp;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(EXPECTED)
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Timestamp, E> {
            rfc3339_shape(text)
                .then(|| text.parse::<Timestamp>().ok())
                .flatten()
                .ok_or_else(|| E::invalid_value(Unexpected::Str(text), &EXPECTED))
        }
    }

    /// RFC 3339's `date-time` and nothing else jiff would also read (an
    /// offset without minutes, a time zone annotation, a time without
    /// seconds): `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, `T` and `Z` in
    /// either case, up to nine fraction digits, offsets up to ±23:59. The
    /// schema states the same pattern, so both agree on what is a time;
    /// jiff then checks the calendar (no 30 February).
    pub(super) fn rfc3339_shape(text: &str) -> bool {
        let b = text.as_bytes();
        let digits =
            |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
        let fixed = b.len() >= 20
            && digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
            && matches!(b[10], b'T' | b't')
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16)
            && b[16] == b':'
            && digits(17..19);
        if !fixed {
            return false;
        }
        let mut rest = &b[19..];
        if let Some(fraction) = rest.strip_prefix(b".") {
            let n = fraction.iter().take_while(|d| d.is_ascii_digit()).count();
            if !(1..=9).contains(&n) {
                return false;
            }
            rest = &fraction[n..];
        }
        match rest {
            [b'Z' | b'z'] => true,
            [b'+' | b'-', h1, h2, b':', m1, m2] => {
                [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit())
                    && (*h1 < b'2' || (*h1 == b'2' && *h2 <= b'3'))
                    && *m1 <= b'5'
            }
            _ => false,
        }
    }

    const EXPECTED: &str = "an RFC 3339 time with an offset, such as 2026-11-23T09:00:00Z";
}

/// The top-level fields whose data errors are `invalid_time`.
const TIME_FIELDS: [&str; 2] = ["send_at", "expires_at"];

/// Turns a serde_json error for `body` into an intake error with the field's
/// path and serde_json's line and column.
pub(super) fn error_from_serde(body: &str, e: &serde_json::Error) -> IntakeError {
    use serde_json::error::Category;
    let (line, column) = (e.line(), e.column());
    let full = e.to_string();
    let msg = full
        .strip_suffix(&format!(" at line {line} column {column}"))
        .unwrap_or(&full);
    let at = format!("(line {line}, column {column})");
    match e.classify() {
        Category::Io | Category::Syntax => IntakeError::new(
            ErrorCode::MalformedJson,
            format!("the body is not valid JSON: {msg} {at}"),
        ),
        Category::Eof => IntakeError::new(
            ErrorCode::MalformedJson,
            format!("the body ends before the JSON does: {msg} {at}"),
        ),
        Category::Data => {
            let prefix = body.get(..byte_offset(body, line, column)).unwrap_or(body);
            let path = path_at(prefix, msg.ends_with(CONTACT_EXPECTED));
            data_error(&path, msg, &at)
        }
    }
}

fn data_error(path: &str, msg: &str, at: &str) -> IntakeError {
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let field = rest.strip_suffix('`').unwrap_or(rest);
        let full = join(path, field);
        return IntakeError::new(
            ErrorCode::MissingField,
            format!("{full} is required but missing {at}"),
        )
        .at(full);
    }
    let code = if TIME_FIELDS.contains(&path) {
        ErrorCode::InvalidTime
    } else {
        ErrorCode::InvalidField
    };
    let subject = if path.is_empty() { "the body" } else { path };
    let wrong = msg
        .strip_prefix("invalid type: ")
        .or_else(|| msg.strip_prefix("invalid value: "))
        .and_then(|rest| rest.rsplit_once(", expected "));
    let sentence = if let Some((found, expected)) = wrong {
        let expected = match expected {
            "a sequence" => "an array",
            "a map" => "an object",
            "a borrowed string" => "a string",
            other => other,
        };
        let found = match found {
            "sequence" => "an array",
            "map" => "an object",
            other => other,
        };
        format!("{subject} must be {expected}, not {found} {at}")
    } else if msg.starts_with("duplicate field") {
        format!("{subject} is given twice {at}")
    } else {
        format!("{subject}: {msg} {at}")
    };
    IntakeError::new(code, sentence).at(path)
}

/// `customer` + `id` → `customer.id`.
fn join(path: &str, field: &str) -> String {
    let seg = segment(field);
    if path.is_empty() {
        seg.trim_start_matches('.').to_owned()
    } else {
        format!("{path}{seg}")
    }
}

/// A key as a path segment: `.sms` for a plain word, `["a b"]` otherwise.
pub(super) fn segment(key: &str) -> String {
    let plain = !key.is_empty()
        && key.len() <= 64
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        format!(".{key}")
    } else {
        format!("[\"{}\"]", quote(key).trim_matches('`'))
    }
}

/// serde_json's line (1-based) and column (bytes from the line's start) as a
/// byte offset into `body`, moved back to a character boundary.
fn byte_offset(body: &str, line: usize, column: usize) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        body.match_indices('\n')
            .nth(line - 2)
            .map_or(body.len(), |(i, _)| i + 1)
    };
    let mut offset = line_start.saturating_add(column).min(body.len());
    while offset > 0 && !body.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// One open object or array while reading towards an error.
enum Frame {
    Object {
        key: Option<String>,
        expecting_key: bool,
    },
    Array {
        index: usize,
    },
}

/// The path of the value being read at the end of `prefix`, a JSON text cut
/// where serde_json stopped: `customer.contacts.sms`, `customer.opt_out[2]`,
/// or `` for the document itself. serde_json stops just after a scalar that
/// has the wrong type, just before an object or array that does, and just
/// after the `}` of an object that misses a field, so in each case the keys
/// passed so far name the field. The exception is a visitor that takes any
/// type (`Contact`): it meets an unwanted array or object only after its
/// opening bracket, which `inside_value` says is not part of the path.
fn path_at(prefix: &str, inside_value: bool) -> String {
    let mut stack: Vec<Frame> = Vec::new();
    let mut chars = prefix.chars();
    while let Some(c) = chars.next() {
        match c {
            '{' => stack.push(Frame::Object {
                key: None,
                expecting_key: true,
            }),
            '[' => stack.push(Frame::Array { index: 0 }),
            '}' | ']' => {
                stack.pop();
            }
            ',' => match stack.last_mut() {
                Some(Frame::Object { expecting_key, .. }) => *expecting_key = true,
                Some(Frame::Array { index }) => *index += 1,
                None => {}
            },
            '"' => {
                let s = read_string(&mut chars);
                if let Some(Frame::Object { key, expecting_key }) = stack.last_mut()
                    && *expecting_key
                {
                    *key = Some(s);
                    *expecting_key = false;
                }
            }
            _ => {}
        }
    }
    if inside_value && prefix.trim_end().ends_with(['{', '[']) {
        stack.pop();
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Object { key: Some(k), .. } => path.push_str(&segment(k)),
            Frame::Object { key: None, .. } => {}
            Frame::Array { index } => path.push_str(&format!("[{index}]")),
        }
    }
    path.trim_start_matches('.').to_owned()
}

/// Reads the rest of a JSON string after its opening quote, decoding escapes.
fn read_string(chars: &mut std::str::Chars) -> String {
    let mut out = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('b') => out.push('\u{8}'),
                Some('f') => out.push('\u{c}'),
                Some('u') => {
                    let hex: String = chars.by_ref().take(4).collect();
                    let decoded = u32::from_str_radix(&hex, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .unwrap_or(char::REPLACEMENT_CHARACTER);
                    out.push(decoded);
                }
                Some(other) => out.push(other),
                None => break,
            },
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_names_the_value_being_read() {
        assert_eq!(path_at(r#"{"id": 5"#, false), "id");
        assert_eq!(
            path_at(r#"{"a": 1, "customer": {"id": "c", "contacts": "#, false),
            "customer.contacts"
        );
        assert_eq!(
            path_at(r#"{"customer": {"contacts": {"sms": 5"#, false),
            "customer.contacts.sms"
        );
        assert_eq!(
            path_at(r#"{"customer": {"opt_out": ["a", 7"#, false),
            "customer.opt_out[1]"
        );
        // After the `}` of an object that misses a field: the object itself.
        assert_eq!(
            path_at(r#"{"customer": {"tz": "x", "contacts": {}}"#, false),
            "customer"
        );
        assert_eq!(path_at(r#"{"id": "a"}"#, false), "");
        // Just inside an unwanted array or object: the field holding it,
        // or the element, for a visitor that peeks before the bracket.
        assert_eq!(
            path_at("{\"customer\": {\"contacts\": {\"sms\": [\n  ", true),
            "customer.contacts.sms"
        );
        assert_eq!(
            path_at(r#"{"customer": {"contacts": {"sms": {"#, true),
            "customer.contacts.sms"
        );
        // Keys with escapes, braces inside strings and odd keys.
        assert_eq!(
            path_at(r#"{"x": "}{,[", "c\u006fntent": {"a b": 1"#, false),
            r#"content["a b"]"#
        );
    }

    #[test]
    fn brackets_count_unless_the_error_is_inside_the_value() {
        let prefix = r#"{"customer": {"preferences": ["#;
        assert_eq!(path_at(prefix, false), "customer.preferences[0]");
        assert_eq!(path_at(prefix, true), "customer.preferences");
    }

    #[test]
    fn offsets_follow_lines_and_char_boundaries() {
        let body = "{\n  \"id\": 5\n}";
        assert_eq!(byte_offset(body, 2, 9), 11);
        assert_eq!(byte_offset(body, 9, 9), body.len());
        assert_eq!(byte_offset("жж", 1, 1), 0);
    }
}
