//! Data that comes with a receipt: what a manager typed when reporting
//! `called` (`{"slot": "Friday 10-14"}`), for follow-up texts to quote
//! (`{{data.slot}}`, `core::template`). It comes from the network, so it is
//! checked here before anything stores it: a flat object of a few short
//! entries, keys of `[a-z0-9_]{1,40}`, values strings (numbers and booleans
//! kept as their JSON text), without control characters.

use std::collections::BTreeMap;

use super::template::{MAX_DATA_KEY_CHARS, is_data_key};

/// Most entries one receipt may carry.
pub const MAX_ENTRIES: usize = 16;
/// Longest value, in characters.
pub const MAX_VALUE_CHARS: usize = 500;
/// Most keys one notification's data may hold, over all its receipts: a
/// caller cannot grow it without bound.
pub const MAX_KEYS: usize = 64;

/// Key → value, checked.
pub type ReceiptData = BTreeMap<String, String>;

/// Why receipt data was refused: the field (`data` or `data.<key>`) and
/// what would be right.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataError {
    pub field: String,
    pub message: String,
}

fn refused(field: impl Into<String>, message: impl Into<String>) -> DataError {
    DataError {
        field: field.into(),
        message: message.into(),
    }
}

/// `data` of a receipt as JSON; `null` is none.
pub fn from_json(data: &serde_json::Value) -> Result<ReceiptData, DataError> {
    use serde_json::Value;
    let object = match data {
        Value::Null => return Ok(ReceiptData::new()),
        Value::Object(o) => o,
        _ => {
            return Err(refused(
                "data",
                "`data` must be a flat object of strings, e.g. {\"slot\": \"Friday 10-14\"}",
            ));
        }
    };
    if object.len() > MAX_ENTRIES {
        return Err(refused(
            "data",
            format!(
                "`data` holds {} entries; at most {MAX_ENTRIES} are taken",
                object.len()
            ),
        ));
    }
    let mut out = ReceiptData::new();
    for (key, value) in object {
        let value = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(refused(
                    field_of(key),
                    format!("{} must be a string, a number or a boolean", field_of(key)),
                ));
            }
        };
        let (key, value) = checked(key, value)?;
        out.insert(key, value);
    }
    Ok(out)
}

/// `key=value` pairs as given on the command line; a later key wins.
pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<ReceiptData, DataError> {
    let mut out = ReceiptData::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(refused(
                "data",
                format!("`{}` is not key=value", shown(pair)),
            ));
        };
        let (key, value) = checked(key, value.to_owned())?;
        out.insert(key, value);
    }
    if out.len() > MAX_ENTRIES {
        return Err(refused(
            "data",
            format!(
                "{} entries given; at most {MAX_ENTRIES} are taken",
                out.len()
            ),
        ));
    }
    Ok(out)
}

/// One entry, checked.
fn checked(key: &str, value: String) -> Result<(String, String), DataError> {
    if !is_data_key(key) {
        return Err(refused(
            format!("data.{}", shown(key)),
            format!(
                "the key `{}` is not 1 to {MAX_DATA_KEY_CHARS} lowercase letters, digits or `_`",
                shown(key)
            ),
        ));
    }
    let field = field_of(key);
    let chars = value.chars().count();
    if chars > MAX_VALUE_CHARS {
        return Err(refused(
            field.clone(),
            format!("{field} is {chars} characters; at most {MAX_VALUE_CHARS} are taken"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(refused(
            field.clone(),
            format!("{field} holds a control character (a line break, a tab…); none are taken"),
        ));
    }
    Ok((key.to_owned(), value))
}

fn field_of(key: &str) -> String {
    format!("data.{}", shown(key))
}

/// A caller's word as a message may quote it: short, no control characters.
fn shown(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_numbers_and_booleans_are_taken() {
        let d = from_json(&json!({"slot": "Friday 10-14", "n": 3, "x": 1.5, "ok": true})).unwrap();
        assert_eq!(d["slot"], "Friday 10-14");
        assert_eq!(d["n"], "3");
        assert_eq!(d["x"], "1.5");
        assert_eq!(d["ok"], "true");
        assert!(from_json(&json!(null)).unwrap().is_empty());
    }

    #[test]
    fn hostile_data_is_refused_naming_the_field() {
        let field = |v| from_json(&v).unwrap_err().field;
        assert_eq!(field(json!("x")), "data");
        assert_eq!(field(json!([1])), "data");
        assert_eq!(field(json!({"Slot": "x"})), "data.Slot");
        assert_eq!(field(json!({"": "x"})), "data.");
        assert_eq!(
            field(json!({"a".repeat(41): "x"})),
            format!("data.{}", "a".repeat(40))
        );
        assert_eq!(field(json!({"slot": {"a": 1}})), "data.slot");
        assert_eq!(field(json!({"slot": ["a"]})), "data.slot");
        assert_eq!(field(json!({"slot": null})), "data.slot");
        assert_eq!(field(json!({"slot": "a\nb"})), "data.slot");
        assert_eq!(field(json!({"slot": "\u{0}"})), "data.slot");
        assert_eq!(field(json!({"slot": "x".repeat(501)})), "data.slot");
        assert!(from_json(&json!({"slot": "я".repeat(500)})).is_ok());
        let many: serde_json::Map<String, serde_json::Value> =
            (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert_eq!(field(serde_json::Value::Object(many)), "data");
    }

    #[test]
    fn pairs_from_the_command_line_are_checked_alike() {
        let d = from_pairs(["slot=Friday 10-14", "a=b=c", "slot=Monday"]).unwrap();
        assert_eq!(d["slot"], "Monday");
        assert_eq!(d["a"], "b=c");
        assert_eq!(from_pairs(["nokey"]).unwrap_err().field, "data");
        assert_eq!(from_pairs(["Bad=x"]).unwrap_err().field, "data.Bad");
    }
}
