//! The console's page frame: escaping, links, the top navigation and the
//! one stylesheet. Every piece of text that comes from data (policy names,
//! segments, ids, reasons) goes through `escape` before it reaches a page.

use std::fmt::Write as _;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// Text made safe for HTML, in an element or in a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A query value percent-encoded (everything but letters, digits and `-_.~`).
pub fn url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A console link: `path` with the pairs whose value is not empty, escaped
/// for an attribute.
pub fn href(path: &str, pairs: &[(&str, &str)]) -> String {
    let query: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", url_encode(v)))
        .collect();
    if query.is_empty() {
        escape(path)
    } else {
        escape(&format!("{path}?{}", query.join("&")))
    }
}

/// A Unix ms time to the second, for timelines: `2026-11-23 14:05:09 UTC`.
pub fn time_s(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// The pages, in the order of the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Overview,
    WhatIf,
    Search,
    DeadLetters,
}

impl Tab {
    const ALL: [Tab; 4] = [Tab::Overview, Tab::WhatIf, Tab::Search, Tab::DeadLetters];

    pub fn path(self) -> &'static str {
        match self {
            Tab::Overview => "/console",
            Tab::WhatIf => "/console/what-if",
            Tab::Search => "/console/search",
            Tab::DeadLetters => "/console/dead-letters",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Tab::Overview => "Overview",
            Tab::WhatIf => "What-if",
            Tab::Search => "Search",
            Tab::DeadLetters => "Dead letters",
        }
    }
}

/// What every page carries from one to the next: the range and the policy.
pub struct Frame<'a> {
    pub tab: Tab,
    pub since: &'a str,
    pub policy: Option<&'a str>,
    /// A short line under the navigation, e.g. the range in UTC.
    pub subtitle: String,
}

/// A whole page: the frame around `body`.
pub fn layout(frame: &Frame<'_>, title: &str, body: &str) -> String {
    let mut nav = String::new();
    for tab in Tab::ALL {
        let link = href(
            tab.path(),
            &[
                ("since", frame.since),
                ("policy", frame.policy.unwrap_or("")),
            ],
        );
        let current = if tab == frame.tab {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(nav, "<a href=\"{link}\"{current}>{}</a>", tab.title());
    }
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} · cascade console</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header class=\"top\"><div class=\"bar\">\
         <a class=\"brand\" href=\"/console\">cascade <span>console</span></a>\
         <nav>{nav}</nav><span class=\"ro\" title=\"Nothing on these pages changes anything\">read-only</span>\
         </div></header>\n<main>\n<div class=\"head\"><h1>{title}</h1><p class=\"sub\">{subtitle}</p></div>\n{body}\n</main>\n\
         </body>\n</html>\n",
        title = escape(title),
        subtitle = escape(&frame.subtitle),
    )
}

/// A page as the answer, with headers that keep it from being cached,
/// framed or given any script.
pub fn respond(status: StatusCode, page: String) -> Response {
    let mut r = (status, Html(page)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// An empty state: a sentence in a quiet box instead of an empty table.
pub fn empty(sentence: &str) -> String {
    format!("<p class=\"empty\">{}</p>", escape(sentence))
}

/// A notice about the request (a word that could not be read).
pub fn notice(sentence: &str) -> String {
    format!(
        "<p class=\"notice\" role=\"status\">{}</p>",
        escape(sentence)
    )
}

/// A `<select>` of `options` (value, label), `current` selected.
pub fn select(name: &str, label: &str, options: &[(String, String)], current: &str) -> String {
    let mut out = format!("<label>{}<select name=\"{}\">", escape(label), escape(name));
    for (value, text) in options {
        let selected = if value == current { " selected" } else { "" };
        let _ = write!(
            out,
            "<option value=\"{}\"{selected}>{}</option>",
            escape(value),
            escape(text)
        );
    }
    out.push_str("</select></label>");
    out
}

/// The ranges the selector offers.
pub const RANGES: [(&str, &str); 3] = [
    ("24h", "last 24 hours"),
    ("7d", "last 7 days"),
    ("30d", "last 30 days"),
];

/// The range selector's options, with `since` itself when it is another.
pub fn range_options(since: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = RANGES
        .iter()
        .map(|(v, l)| (v.to_string(), l.to_string()))
        .collect();
    if !RANGES.iter().any(|(v, _)| *v == since) {
        out.push((since.to_owned(), format!("last {since}")));
    }
    out
}

const STYLE: &str = r#"
:root{--bg:#f5f6f8;--card:#fff;--line:#e2e5ea;--ink:#1b2330;--mute:#5f6b7a;--accent:#2458d3;
--sent:#5b7bd5;--read:#1a9a7d;--esc:#d98a1c;--late:#d4456a;--acc:#8792a2;--money:#3f7f3a}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue","Liberation Sans","DejaVu Sans",Arial,sans-serif}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
.top{background:#17202e;color:#fff}
.bar{max-width:1240px;margin:0 auto;padding:0 24px;display:flex;align-items:center;gap:28px;height:52px}
.brand{color:#fff;font-weight:650;font-size:16px;letter-spacing:.2px}.brand span{color:#9fb4dc;font-weight:500}
.brand:hover{text-decoration:none}
nav{display:flex;gap:4px;flex:1}
nav a{color:#cdd6e4;padding:6px 12px;border-radius:6px}
nav a:hover{background:#26324a;text-decoration:none;color:#fff}
nav a[aria-current=page]{background:#2d3b57;color:#fff}
.ro{font-size:12px;color:#9fb4dc;border:1px solid #3a4a68;border-radius:10px;padding:1px 9px}
main{max-width:1240px;margin:0 auto;padding:18px 24px 48px}
.head{display:flex;align-items:baseline;gap:16px;flex-wrap:wrap;margin:6px 0 12px}
h1{font-size:22px;margin:0;font-weight:650}
.sub{color:var(--mute);margin:0}
h2{font-size:17px;margin:0 0 10px;font-weight:650}
h3{font-size:14px;margin:0 0 8px;font-weight:600}
h2 small,h3 small{color:var(--mute);font-weight:400;font-size:13px;margin-left:6px}
.tools{display:flex;gap:14px;align-items:end;flex-wrap:wrap;background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 16px;margin-bottom:16px}
.tools label{display:flex;flex-direction:column;font-size:12px;color:var(--mute);gap:3px}
select,input[type=text],input[type=search]{font:inherit;color:var(--ink);padding:6px 8px;border:1px solid #c9cfd8;border-radius:6px;background:#fff;min-width:150px}
input[type=search]{min-width:360px}
button{font:inherit;padding:6px 16px;border-radius:6px;border:1px solid var(--accent);background:var(--accent);color:#fff;cursor:pointer}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px 18px;margin-bottom:16px}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(104px,1fr));gap:10px;margin-bottom:16px}
.kpi{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:10px 12px}
.kpi .v{display:block;font-size:21px;font-weight:650;font-variant-numeric:tabular-nums;white-space:nowrap}
.kpi .k{display:block;font-size:12px;color:var(--mute)}
.kpi.money .v{color:var(--money)}
.policy{display:grid;grid-template-columns:minmax(0,3fr) minmax(220px,1fr);gap:18px;align-items:start}
.facts{margin:0;display:grid;grid-template-columns:auto auto;gap:4px 14px;font-variant-numeric:tabular-nums}
.facts dt{color:var(--mute)}.facts dd{margin:0;text-align:right;font-weight:600;white-space:nowrap}
.desc{color:var(--mute);margin:-4px 0 10px}
.narrow{max-width:720px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums;font-size:13px}
th,td{padding:5px 7px;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}
th{font-size:12px;color:var(--mute);font-weight:600;border-bottom:1px solid #cfd5dd;white-space:normal;vertical-align:bottom;line-height:1.25}
th.num,td.num{text-align:right}
tr.total td{font-weight:650;border-top:2px solid #cfd5dd}
tr.now td{background:#eef3ff}tr.asked td{background:#fff6e6}
td.reason{white-space:normal;color:var(--mute);max-width:420px}
.note{color:var(--mute);font-size:12px;margin:8px 0 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:14px}
.grid .card{margin:0}
svg{display:block;width:100%;height:auto}
svg text{font-family:inherit;fill:var(--ink)}
svg .lbl{fill:var(--mute);font-size:11px}
svg .val{font-size:11px;font-variant-numeric:tabular-nums}
svg .axis{stroke:#c9cfd8;stroke-width:1}
svg .gridl{stroke:#eceef2;stroke-width:1}
.f-accepted{fill:var(--acc)}.f-sent{fill:var(--sent)}.f-read{fill:var(--read)}.f-escalated{fill:var(--esc)}.f-late{fill:var(--late)}.f-failed{fill:#8a5a9e}
.l-escalations{stroke:var(--esc)}.l-late{stroke:var(--late)}
.legend{display:flex;gap:16px;font-size:12px;color:var(--mute);margin-top:4px}
.legend i{display:inline-block;width:14px;height:3px;vertical-align:middle;margin-right:6px}
.empty{background:var(--card);border:1px dashed #c9cfd8;border-radius:10px;padding:22px;color:var(--mute);text-align:center;margin:0 0 16px}
.card .empty{border:0;padding:10px;margin:0}
.notice{background:#fff6e6;border:1px solid #f0d49c;border-radius:8px;padding:8px 12px;margin:0 0 14px}
.badge{display:inline-block;border-radius:10px;padding:1px 10px;font-size:12px;font-weight:600;background:#e8ecf3;color:#36435a}
.badge.completed{background:#dff3ec;color:#11694f}.badge.running{background:#e4ecfd;color:#2148a6}
.badge.exhausted,.badge.expired{background:#fdf0dc;color:#8a5200}.badge.cancelled{background:#eceef2;color:#4d5666}
ul.plain{margin:6px 0 0;padding-left:18px;color:var(--mute)}
.two{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,2fr);gap:16px;align-items:start}
code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:13px;background:#eef0f4;padding:1px 5px;border-radius:4px}
@media (max-width:1000px){.policy,.two{grid-template-columns:1fr}.bar{gap:14px;padding:0 14px}main{padding:14px}nav a{padding:6px 8px}input[type=search]{min-width:240px}}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_leaves_no_markup_and_no_quote_to_break_out_of() {
        assert_eq!(
            escape("<script>alert('x')</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape("\" onmouseover=\"x"), "&quot; onmouseover=&quot;x");
        assert_eq!(escape("a & b"), "a &amp; b");
        assert_eq!(escape("заказ 1001"), "заказ 1001");
        let hostile = "\"'><script>&";
        let out = escape(hostile);
        assert!(!out.contains(['<', '>', '"', '\'']), "{out}");
    }

    #[test]
    fn links_encode_their_values_and_escape_the_ampersands() {
        assert_eq!(
            href(
                "/console/search",
                &[("q", "a&b \"<x>\""), ("since", "7d"), ("policy", "")]
            ),
            "/console/search?q=a%26b%20%22%3Cx%3E%22&amp;since=7d"
        );
        assert_eq!(href("/console", &[("policy", "")]), "/console");
    }
}
