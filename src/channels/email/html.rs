//! The little HTML handling composing needs: escaping, link rewriting (with
//! lol_html, an HTML rewriter: only the links a person clicks are
//! tracked) and inserting before `</body>`.

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

/// Rewrites the http(s) links a person clicks — `<a href>` and `<area
/// href>` — through `track` (`None` leaves one as it is). Never `<link
/// href>` (a stylesheet a mail client loads would count as a click) or
/// `<base href>`. Returns the HTML and the original URLs it saw; HTML the
/// rewriter cannot read is returned as it came, with none.
pub(super) fn rewrite_links(
    html: &str,
    mut track: impl FnMut(&str) -> Option<String>,
) -> (String, Vec<String>) {
    let mut originals = Vec::new();
    let settings = lol_html::RewriteStrSettings {
        element_content_handlers: vec![lol_html::element!("a[href], area[href]", |el| {
            let Some(raw) = el.get_attribute("href") else {
                return Ok(());
            };
            let url = unescape_html(raw.trim());
            if !is_http_url(&url) {
                return Ok(());
            }
            if let Some(tracked) = track(&url) {
                // lol_html escapes only `"`; the rest as any attribute value.
                el.set_attribute("href", &escape_html(&tracked))?;
            }
            originals.push(url);
            Ok(())
        })],
        ..lol_html::RewriteStrSettings::new()
    };
    match lol_html::rewrite_str(html, settings) {
        Ok(out) => (out, originals),
        Err(e) => {
            tracing::warn!(error = %e, "cannot rewrite an email's links; sent untracked");
            (html.to_owned(), Vec::new())
        }
    }
}

pub(super) fn insert_before_body_end(html: &str, piece: &str) -> String {
    let lower = html.to_ascii_lowercase();
    match lower.rfind("</body") {
        Some(at) => format!("{}{piece}\n{}", &html[..at], &html[at..]),
        None => format!("{html}\n{piece}"),
    }
}
