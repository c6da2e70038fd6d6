//! The little HTML handling composing needs: escaping, link rewriting and
//! inserting before `</body>`. Not a parser: it finds `href` attributes.

use super::settings::is_http_url;

/// Escapes text for HTML content and double- or single-quoted attributes.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Decodes the character references an attribute value may hold.
pub(super) fn unescape_html(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest.find(';').filter(|e| *e <= 10);
        let decoded = end.and_then(|e| {
            let name = &rest[1..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let n = if let Some(hex) = name.strip_prefix("#x").or(name.strip_prefix("#X")) {
                        u32::from_str_radix(hex, 16).ok()
                    } else {
                        name.strip_prefix('#').and_then(|d| d.parse().ok())
                    };
                    n.and_then(char::from_u32)
                }
            };
            c.map(|c| (c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Rewrites every `href` whose value is an http(s) URL through `track`
/// (`None` leaves it). Returns the HTML and the original URLs it saw.
pub(super) fn rewrite_links(
    html: &str,
    mut track: impl FnMut(&str) -> Option<String>,
) -> (String, Vec<String>) {
    let bytes = html.as_bytes();
    let mut out = String::with_capacity(html.len() + 256);
    let mut originals = Vec::new();
    let mut copied = 0;
    let mut i = 0;
    while i + 4 <= bytes.len() {
        let is_href = bytes[i..i + 4].eq_ignore_ascii_case(b"href")
            && i > 0
            && bytes[i - 1].is_ascii_whitespace();
        if !is_href {
            i += 1;
            continue;
        }
        // `href`, spaces, `=`, spaces, then the value.
        let mut j = i + 4;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        if j >= bytes.len() || bytes[j] != b'=' {
            i += 4;
            continue;
        }
        j += 1;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        let (start, end, after) = match bytes.get(j) {
            Some(&q @ (b'"' | b'\'')) => match html[j + 1..].find(q as char) {
                Some(len) => (j + 1, j + 1 + len, j + 2 + len),
                None => break,
            },
            Some(_) => {
                let len = html[j..]
                    .find(|c: char| c.is_ascii_whitespace() || c == '>')
                    .unwrap_or(html.len() - j);
                (j, j + len, j + len)
            }
            None => break,
        };
        let url = unescape_html(html[start..end].trim());
        if is_http_url(&url) {
            let replacement = track(&url);
            originals.push(url);
            if let Some(new) = replacement {
                out.push_str(&html[copied..i]);
                out.push_str("href=\"");
                out.push_str(&escape_html(&new));
                out.push('"');
                copied = after;
            }
        }
        i = after.max(i + 1);
    }
    out.push_str(&html[copied..]);
    (out, originals)
}

pub(super) fn insert_before_body_end(html: &str, piece: &str) -> String {
    let lower = html.to_ascii_lowercase();
    match lower.rfind("</body") {
        Some(at) => format!("{}{piece}\n{}", &html[..at], &html[at..]),
        None => format!("{html}\n{piece}"),
    }
}
