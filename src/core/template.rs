//! Placeholders in message texts: `{{data.slot}}` (a value recorded with a
//! receipt), `{{customer.id}}` and `{{notification.id}}`, with spaces or
//! tabs allowed inside the braces (`{{ data.slot }}`). A literal `{{` is
//! written `{{{{`; a single brace, and `}}` outside a placeholder, are
//! themselves.
//!
//! Pure: `check` says where a text is malformed (policy files and the intake
//! refuse it), `render` fills a text in with values the caller looked up,
//! escaping each value for where it goes. Values never bring control
//! characters into a message.

use std::fmt;

/// Longest key of `{{data.<key>}}`, as receipt data keys.
pub const MAX_DATA_KEY_CHARS: usize = 40;

/// What a placeholder stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholder<'a> {
    /// `{{data.<key>}}`: the value recorded under `<key>` with a receipt.
    Data(&'a str),
    /// `{{customer.id}}`.
    CustomerId,
    /// `{{notification.id}}`.
    NotificationId,
}

impl fmt::Display for Placeholder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placeholder::Data(key) => write!(f, "{{{{data.{key}}}}}"),
            Placeholder::CustomerId => f.write_str("{{customer.id}}"),
            Placeholder::NotificationId => f.write_str("{{notification.id}}"),
        }
    }
}

/// A malformed text: where (a byte offset into it) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
}

/// A well-formed placeholder that has no value when the text is rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing(pub String);

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "placeholder {} has no value", self.0)
    }
}

/// How values are escaped for where the text goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// Plain text (SMS, messengers without markup, JSON bodies that serde escapes).
    Plain,
    /// HTML markup: `&`, `<`, `>`, `"` and `'` become entities.
    Html,
}

/// One piece of a parsed text.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Literal(&'a str),
    Value(Placeholder<'a>),
}

/// Whether `text` may hold a placeholder (or an escaped `{{`): the cheap test
/// that spares a send the data's read.
pub fn has_placeholders(text: &str) -> bool {
    text.contains("{{")
}

/// Checks a text's placeholders; the first malformed one.
pub fn check(text: &str) -> Result<(), TemplateError> {
    // Intake checks every text: one without `{{` has nothing to parse.
    if !has_placeholders(text) {
        return Ok(());
    }
    parse(text).map(|_| ())
}

/// The `{{data.<key>}}` keys a text names, in order (a key may repeat).
pub fn data_keys(text: &str) -> Vec<&str> {
    let Ok(pieces) = parse(text) else {
        return Vec::new();
    };
    pieces
        .into_iter()
        .filter_map(|p| match p {
            Piece::Value(Placeholder::Data(key)) => Some(key),
            _ => None,
        })
        .collect()
}

/// Fills `text` in: each placeholder with `value(placeholder)`, escaped as
/// `escape` says, control characters dropped. The first placeholder
/// without a value is an error (the text is not sent half filled).
/// A malformed text (never admitted) is an error naming where.
pub fn render<'t>(
    text: &'t str,
    value: impl Fn(Placeholder<'t>) -> Option<String>,
    escape: Escape,
) -> Result<String, RenderError> {
    let pieces = parse(text).map_err(RenderError::Malformed)?;
    let mut out = String::with_capacity(text.len() + 32);
    for piece in pieces {
        match piece {
            Piece::Literal(s) => out.push_str(s),
            Piece::Value(p) => {
                let Some(v) = value(p) else {
                    return Err(RenderError::Missing(Missing(p.to_string())));
                };
                push_escaped(&mut out, &v, escape);
            }
        }
    }
    Ok(out)
}

/// Why a text could not be rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenderError {
    Missing(Missing),
    Malformed(TemplateError),
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::Missing(m) => m.fmt(f),
            RenderError::Malformed(e) => write!(f, "malformed placeholder: {}", e.message),
        }
    }
}

fn push_escaped(out: &mut String, value: &str, escape: Escape) {
    for c in value.chars().filter(|c| !c.is_control()) {
        match (escape, c) {
            (Escape::Html, '&') => out.push_str("&amp;"),
            (Escape::Html, '<') => out.push_str("&lt;"),
            (Escape::Html, '>') => out.push_str("&gt;"),
            (Escape::Html, '"') => out.push_str("&quot;"),
            (Escape::Html, '\'') => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
}

/// Splits a text into literals and placeholders.
fn parse(text: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = text;
    let mut at = 0;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            pieces.push(Piece::Literal(&rest[..open]));
        }
        let after = &rest[open + 2..];
        if let Some(tail) = after.strip_prefix("{{") {
            // `{{{{`: a literal `{{`.
            pieces.push(Piece::Literal("{{"));
            at += open + 4;
            rest = tail;
            continue;
        }
        let Some(close) = after.find("}}") else {
            return Err(TemplateError {
                offset: at + open,
                message: "`{{` is not closed by `}}`; write a literal `{{` as `{{{{`".into(),
            });
        };
        let inner = &after[..close];
        let placeholder = placeholder(inner).map_err(|message| TemplateError {
            offset: at + open,
            message,
        })?;
        pieces.push(Piece::Value(placeholder));
        let used = open + 2 + close + 2;
        at += used;
        rest = &rest[used..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Literal(rest));
    }
    Ok(pieces)
}

/// The placeholder between `{{` and `}}`.
fn placeholder(inner: &str) -> Result<Placeholder<'_>, String> {
    let name = inner.trim_matches([' ', '\t']);
    match name {
        "customer.id" => return Ok(Placeholder::CustomerId),
        "notification.id" => return Ok(Placeholder::NotificationId),
        _ => {}
    }
    if let Some(key) = name.strip_prefix("data.")
        && is_data_key(key)
    {
        return Ok(Placeholder::Data(key));
    }
    let shown: String = inner.chars().take(60).filter(|c| !c.is_control()).collect();
    Err(format!(
        "unknown placeholder `{{{{{shown}}}}}`; use {{{{data.<key>}}}} (key: lowercase letters, digits and `_`, at most {MAX_DATA_KEY_CHARS}), {{{{customer.id}}}} or {{{{notification.id}}}}; a literal `{{{{` is written `{{{{{{{{`"
    ))
}

/// A receipt data key: `[a-z0-9_]{1,40}`.
pub fn is_data_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_DATA_KEY_CHARS
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn values(p: Placeholder<'_>) -> Option<String> {
        match p {
            Placeholder::Data("slot") => Some("Friday 10-14".into()),
            Placeholder::Data("html") => Some("<b>\"x\" & 'y'</b>".into()),
            Placeholder::Data("ctl") => Some("a\nb\u{7}c".into()),
            Placeholder::Data(_) => None,
            Placeholder::CustomerId => Some("c-1".into()),
            Placeholder::NotificationId => Some("order-1".into()),
        }
    }

    fn plain(text: &str) -> Result<String, RenderError> {
        render(text, values, Escape::Plain)
    }

    #[test]
    fn placeholders_are_filled_in_with_spaces_allowed_inside_the_braces() {
        assert_eq!(
            plain("Delivery {{data.slot}}, {{ data.slot }}, {{\tcustomer.id }} for {{notification.id}}").unwrap(),
            "Delivery Friday 10-14, Friday 10-14, c-1 for order-1"
        );
        assert_eq!(
            plain("no placeholders { } }}").unwrap(),
            "no placeholders { } }}"
        );
        assert_eq!(plain("").unwrap(), "");
    }

    #[test]
    fn four_braces_are_a_literal_pair() {
        assert_eq!(plain("a {{{{data.slot}} b").unwrap(), "a {{data.slot}} b");
        assert_eq!(plain("{{{{").unwrap(), "{{");
        assert!(check("{{{{ not a placeholder").is_ok());
    }

    #[test]
    fn malformed_placeholders_say_where() {
        for (text, offset) in [
            ("x {{foo}}", 2),
            ("{{data.}}", 0),
            ("ab {{data.slot", 3),
            ("{{data.Slot}}", 0),
            ("ok {{data.a}} {{ data.a b }}", 14),
            ("{{customer.name}}", 0),
        ] {
            let e = check(text).unwrap_err();
            assert_eq!(e.offset, offset, "{text}: {e:?}");
        }
        assert!(
            check("{{foo}}")
                .unwrap_err()
                .message
                .contains("unknown placeholder `{{foo}}`")
        );
        assert!(check("{{x").unwrap_err().message.contains("not closed"));
        let long = format!("{{{{data.{}}}}}", "a".repeat(41));
        assert!(check(&long).is_err());
        assert!(check(&format!("{{{{data.{}}}}}", "a".repeat(40))).is_ok());
    }

    #[test]
    fn a_missing_value_is_an_error_that_names_the_placeholder() {
        let e = plain("at {{ data.when }}").unwrap_err();
        assert_eq!(e.to_string(), "placeholder {{data.when}} has no value");
    }

    #[test]
    fn values_are_escaped_for_html_and_lose_control_characters() {
        let html = render("<p>{{data.html}}</p>", values, Escape::Html).unwrap();
        assert_eq!(
            html,
            "<p>&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;</p>"
        );
        assert_eq!(plain("{{data.html}}").unwrap(), "<b>\"x\" & 'y'</b>");
        assert_eq!(plain("{{data.ctl}}").unwrap(), "abc");
    }

    #[test]
    fn data_keys_lists_the_keys_named() {
        assert_eq!(
            data_keys("{{data.a}} {{customer.id}} {{ data.b }}"),
            ["a", "b"]
        );
        assert!(!has_placeholders("plain"));
    }

    proptest! {
        #[test]
        fn rendering_never_panics(text in ".{0,80}", value in ".{0,40}") {
            let _ = render(&text, |_| Some(value.clone()), Escape::Plain);
            let _ = render(&text, |_| None, Escape::Html);
            let _ = check(&text);
            let _ = data_keys(&text);
        }

        #[test]
        fn html_rendering_never_lets_a_value_bring_markup(
            before in "[^<{\\x00-\\x1f\\x7f-\\x9f]{0,20}",
            after in "[^<{\\x00-\\x1f\\x7f-\\x9f]{0,20}",
            value in ".{0,60}",
        ) {
            let text = format!("{before}{{{{ data.v }}}}{after}");
            let out = render(&text, |_| Some(value.clone()), Escape::Html).unwrap();
            prop_assert!(!out.contains('<'));
            prop_assert!(!out.chars().any(char::is_control));
        }
    }
}
