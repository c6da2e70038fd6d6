//! The provider keys of a channel file, read into the kind's typed settings.
//!
//! A channel file is flat: beside the keys every channel has (`COMMON_KEYS`)
//! sit the keys of its provider. Those are prepared here the way they always
//! were — values written as numbers or booleans taken as text, `${VAR}`
//! replaced, `<secret>_file` read — and then handed, with their positions,
//! to the adapter's settings type (`channels::ChannelSettings::read`), whose
//! `#[serde(deny_unknown_fields)]` makes a misspelt key an error. A
//! deserializer stops at its first error, so each bad key is reported and
//! set aside and the rest read again, until every problem is known.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::channel::COMMON_KEYS;
use super::secrets::Source;
use super::{FileCheck, plain_toml_message};
use crate::channels::ChannelSettings;
use crate::core::ChannelKind;

/// Most passes over one file's keys: each pass but the last sets one aside.
const MOST_PASSES: usize = 64;

/// The channel's typed settings, and where each secret's value came from;
/// `None` when a problem was recorded.
pub(super) fn read(
    kind: ChannelKind,
    check: &mut FileCheck,
) -> Option<(ChannelSettings, BTreeMap<String, Source>)> {
    let doc = DeTable::parse(check.src).ok()?; // a syntax error is reported by the caller
    let doc_span = doc.span();
    let before = check.errors.len();
    let (mut keys, sources, mut set_aside) = prepare(kind, doc.get_ref(), check);
    let mut placed = BTreeSet::new();
    for _ in 0..MOST_PASSES {
        let table = Spanned::new(doc_span.clone(), keys.clone());
        let error = match ChannelSettings::read(kind, toml::de::Deserializer::from(table)) {
            Ok(Ok(settings)) if check.errors.len() == before => {
                return Some((settings, sources));
            }
            // Keys set aside may be why the rest do not combine: say only
            // what is certain.
            Ok(Err(problem)) if check.errors.len() == before => {
                check.err_file(problem);
                return None;
            }
            Ok(_) => return None,
            Err(e) => e,
        };
        let message = error.message().trim().replace('\n', " ");
        if let Some(missing) = missing_key(&message) {
            // A placeholder lets the next pass find the rest.
            if !placed.insert(missing.to_owned()) {
                return None;
            }
            if set_aside.insert(missing.to_owned()) {
                check.err_file(format!(
                    "a {kind} channel needs `{missing}`; add `{missing} = \"…\"` (secrets as \"${{ENV_VAR}}\")"
                ));
            }
            let key = Spanned::new(0..0, DeString::Owned(missing.to_owned()));
            let value = Spanned::new(0..0, DeValue::String(DeString::Borrowed("")));
            keys.insert(key, value);
            continue;
        }
        let at = error.span().map_or(0, |s| s.start);
        let Some(bad) = key_at(&keys, at) else {
            check.err(at..at, plain_toml_message(&message));
            return None;
        };
        if !set_aside.contains(&bad) {
            check.err(at..at, unknown_key(kind, &message));
        }
        keys.remove(bad.as_str());
        set_aside.insert(bad);
    }
    None
}

/// The provider keys with values as text and `${VAR}` replaced, `<secret>_file`
/// keys replaced by their secret; the sources of the secrets; and the keys
/// that failed here (so a later pass does not report them again).
fn prepare<'a>(
    kind: ChannelKind,
    doc: &DeTable<'a>,
    check: &mut FileCheck,
) -> (DeTable<'a>, BTreeMap<String, Source>, BTreeSet<String>) {
    let mut keys = DeTable::new();
    let mut sources = BTreeMap::new();
    let mut failed = BTreeSet::new();
    for (key, value) in doc.iter() {
        let name: &str = key.get_ref();
        if COMMON_KEYS.contains(&name) {
            continue;
        }
        let written = match value.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            DeValue::Integer(i) => Some(i.as_str().to_owned()),
            DeValue::Boolean(b) => Some(b.to_string()),
            // Left for the settings type to refuse, by name.
            _ => None,
        };
        let text = match name.strip_suffix("_file") {
            Some(secret) if ChannelSettings::is_secret(kind, secret) => {
                match secret_from_file(doc, key, value, check) {
                    Some((text, source)) => {
                        sources.insert(secret.to_owned(), source);
                        let k = Spanned::new(key.span(), DeString::Owned(secret.to_owned()));
                        keys.insert(k, Spanned::new(value.span(), DeValue::String(text.into())));
                    }
                    None => {
                        failed.insert(secret.to_owned());
                    }
                }
                continue;
            }
            _ => written,
        };
        let Some(text) = text else {
            keys.insert(key.clone(), value.clone());
            continue;
        };
        if ChannelSettings::is_secret(kind, name) {
            sources.insert(name.to_owned(), Source::written(&text));
        }
        match check.text(&Spanned::new(value.span(), text)) {
            Some(v) => {
                keys.insert(
                    key.clone(),
                    Spanned::new(value.span(), DeValue::String(v.into())),
                );
            }
            None => {
                failed.insert(name.to_owned());
            }
        }
    }
    (keys, sources, failed)
}

/// The secret a `<secret>_file` key names, read from its file.
fn secret_from_file(
    doc: &DeTable,
    key: &Spanned<DeString>,
    value: &Spanned<DeValue>,
    check: &mut FileCheck,
) -> Option<(String, Source)> {
    let name: &str = key.get_ref();
    let secret = name.strip_suffix("_file")?;
    if doc.iter().any(|(k, _)| k.get_ref() == secret) {
        check.err(key.span(), format!("set `{secret}` or `{name}`, not both"));
        return None;
    }
    let DeValue::String(path) = value.get_ref() else {
        check.err(value.span(), format!("`{name}` must be a file path"));
        return None;
    };
    check.secret_file(&Spanned::new(value.span(), path.to_string()))
}

/// The key whose name or value starts at byte `at`.
fn key_at(keys: &DeTable, at: usize) -> Option<String> {
    let holds = |span: Range<usize>| span.start <= at && at < span.end.max(span.start + 1);
    keys.iter()
        .find(|(k, v)| holds(k.span()) || holds(v.span()))
        .map(|(k, _)| k.get_ref().to_string())
}

/// `missing field `x``, serde's words for a required key left out.
fn missing_key(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// serde's `unknown field `x`, expected one of `a`, `b`` in the file's
/// terms, naming the closest key when one is a slip away; any other
/// message as `plain_toml_message` puts it.
fn unknown_key(kind: ChannelKind, message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return plain_toml_message(message);
    };
    let (key, expected) = rest.split_once('`').unwrap_or((rest, ""));
    let known: Vec<&str> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|k| !k.is_empty())
        .collect();
    let mut sentence = format!("`{key}` is not a setting of a {kind} channel");
    if let Some(near) = closest(key, &known) {
        sentence.push_str(&format!(" (did you mean `{near}`?)"));
    }
    if known.is_empty() {
        sentence.push_str("; it takes no other settings");
    } else {
        sentence.push_str(&format!("; its settings are {}", known.join(", ")));
    }
    sentence
}

/// The known key within two edits of `key` (a typo), if one is.
fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edits(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, by characters.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut last = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (last + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            last = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slip_names_the_key_meant() {
        let said = unknown_key(
            ChannelKind::Vk,
            "unknown field `acess_token`, expected one of `access_token`, `base_url`",
        );
        assert_eq!(
            said,
            "`acess_token` is not a setting of a vk channel (did you mean `access_token`?); its settings are access_token, base_url"
        );
        let far = unknown_key(
            ChannelKind::Sms,
            "unknown field `bot_token`, expected `url`",
        );
        assert_eq!(
            far,
            "`bot_token` is not a setting of a sms channel; its settings are url"
        );
        assert_eq!(edits("kitten", "sitting"), 3);
    }
}
