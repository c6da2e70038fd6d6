//! The users' documentation holds together: every relative link in
//! README.md and docs/*.md leads to a file of the repository, every
//! `#anchor` to a heading of the page it names (by GitHub's rules), and no
//! link climbs out of the repository. No services needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every Markdown page under docs/, relative to the root.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| PathBuf::from("docs").join(p.file_name().expect("file name")))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The page's text with fenced code blocks and inline code spans blanked
/// out (a link there is an example, not a link), line by line.
fn prose_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut fence: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let marker: String = trimmed
            .chars()
            .take_while(|&c| c == '`' || c == '~')
            .collect();
        if let Some(open) = &fence {
            if marker.len() >= open.len() && marker.starts_with(&open[..1]) {
                fence = None;
            }
            lines.push(String::new());
            continue;
        }
        if marker.len() >= 3 {
            fence = Some(marker);
            lines.push(String::new());
            continue;
        }
        lines.push(without_code_spans(line));
    }
    lines
}

/// `a `b` c` → `a     c`: a code span's text removed, its length kept.
fn without_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        let ticks = rest[start..].chars().take_while(|&c| c == '`').count();
        let after = &rest[start + ticks..];
        let closing = "`".repeat(ticks);
        match after.find(&closing) {
            Some(end) => {
                out.push_str(&rest[..start]);
                out.push_str(&" ".repeat(ticks * 2 + end));
                rest = &after[end + ticks..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

/// The targets of a line's links: `[text](target)`, `![alt](target)`,
/// `[label]: target`, and `href="…"` / `src="…"` of inline HTML.
fn link_targets(line: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    while let Some(off) = line[i..].find("](") {
        let start = i + off + 2;
        let mut depth = 0usize;
        let mut end = start;
        while end < bytes.len() {
            match bytes[end] {
                b'(' => depth += 1,
                b')' if depth == 0 => break,
                b')' => depth -= 1,
                _ => {}
            }
            end += 1;
        }
        let inside = line[start..end].trim();
        // `(target "title")`: the target is the first word.
        let target = inside.split_whitespace().next().unwrap_or("");
        targets.push(target.trim_matches(['<', '>']).to_owned());
        i = end.min(line.len());
    }
    let trimmed = line.trim_start();
    if trimmed.starts_with('[')
        && let Some(close) = trimmed.find("]:")
        && let Some(target) = trimmed[close + 2..].split_whitespace().next()
    {
        targets.push(target.trim_matches(['<', '>']).to_owned());
    }
    for attr in ["href=\"", "src=\""] {
        let mut rest = line;
        while let Some(at) = rest.find(attr) {
            let after = &rest[at + attr.len()..];
            let end = after.find('"').unwrap_or(after.len());
            targets.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    targets
}

/// A link that leaves the repository's files: a URL with a scheme, or mail.
fn is_external(target: &str) -> bool {
    let scheme: String = target
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "+.-".contains(*c))
        .collect();
    target.starts_with("//") || (!scheme.is_empty() && target[scheme.len()..].starts_with(':'))
}

/// `docs/../README.md` → `README.md`; `None` when it climbs above the root.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part.to_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out.iter().collect())
}

/// GitHub's anchor for a heading's text: inline code, emphasis and link
/// syntax dropped, lowercased, punctuation removed (letters, digits,
/// spaces, `-` and `_` kept), each space a `-`.
fn slug(heading: &str) -> String {
    let text = link_texts(heading);
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// `[text](url)` → `text`, so a link in a heading counts by its text.
fn link_texts(heading: &str) -> String {
    let mut out = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        let Some(mid) = rest[open..].find("](") else {
            break;
        };
        let Some(close) = rest[open + mid..].find(')') else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push_str(&rest[open + 1..open + mid]);
        rest = &rest[open + mid + close + 1..];
    }
    out.push_str(rest);
    out
}

/// Every anchor a page's headings give (`#` headings outside code blocks),
/// with GitHub's `-1`, `-2`, … for repeats.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    let mut in_fence = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let level = t.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&level) || !t[level..].starts_with(' ') {
            continue;
        }
        let base = slug(t[level..].trim().trim_end_matches('#').trim());
        let n = seen.entry(base.clone()).or_default();
        let anchor = if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        *n += 1;
        out.insert(anchor);
    }
    out
}

/// `%20` and the like in a link's path.
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every problem with one page's links, as `page:line: what`.
fn problems_of(page: &Path) -> Vec<String> {
    let root = root();
    let text = std::fs::read_to_string(root.join(page)).expect("page");
    let dir = page.parent().unwrap_or(Path::new(""));
    let mut problems = Vec::new();
    for (n, line) in prose_lines(&text).iter().enumerate() {
        for target in link_targets(line) {
            let at = format!("{}:{}", page.display(), n + 1);
            if target.is_empty() {
                problems.push(format!("{at}: an empty link"));
                continue;
            }
            if is_external(&target) {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                page.to_path_buf()
            } else {
                match normalise(&dir.join(percent_decoded(path))) {
                    Some(f) => f,
                    None => {
                        problems.push(format!("{at}: `{target}` leads out of the repository"));
                        continue;
                    }
                }
            };
            let full = root.join(&file);
            if !full.exists() {
                problems.push(format!("{at}: `{target}`: no file {}", file.display()));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if full.extension().is_none_or(|e| e != "md") {
                problems.push(format!(
                    "{at}: `{target}`: an anchor into a file that is not Markdown"
                ));
                continue;
            }
            let target_text = std::fs::read_to_string(&full).expect("linked page");
            if !anchors(&target_text).contains(&percent_decoded(anchor)) {
                problems.push(format!(
                    "{at}: `{target}`: {} has no heading with the anchor #{anchor}",
                    file.display()
                ));
            }
        }
    }
    problems
}

#[test]
fn every_relative_link_in_the_docs_leads_to_a_file_and_a_heading() {
    let pages = pages();
    assert!(
        pages.len() > 5,
        "README.md and the docs/ pages: found only {pages:?}"
    );
    let problems: Vec<String> = pages.iter().flat_map(|p| problems_of(p)).collect();
    assert!(
        problems.is_empty(),
        "broken links in the docs:\n{}",
        problems.join("\n")
    );
}

#[test]
fn anchors_follow_githubs_rules() {
    let page = "# cascade\n## Try it\n### `cascade check`\n## §6 Receipts\n## Reports: where customers read\n## Try it\n```\n# not a heading\n```\n## A [link](x.md) in it\n## Ошибки и коды\n";
    let got = anchors(page);
    for want in [
        "cascade",
        "try-it",
        "cascade-check",
        "6-receipts",
        "reports-where-customers-read",
        "try-it-1",
        "a-link-in-it",
        "ошибки-и-коды",
    ] {
        assert!(got.contains(want), "{want} missing from {got:?}");
    }
    assert!(!got.contains("not-a-heading"));
}

#[test]
fn links_are_read_from_prose_only_and_classified() {
    let lines = prose_lines(
        "See [a](a.md#x) and `[b](b.md)`.\n```\n[c](c.md)\n```\n[d]: d.md\n<img src=\"e.png\">\n",
    );
    let found: Vec<String> = lines.iter().flat_map(|l| link_targets(l)).collect();
    assert_eq!(found, ["a.md#x", "d.md", "e.png"]);
    assert!(is_external("https://example.ru"));
    assert!(is_external("mailto:a@example.ru"));
    assert!(!is_external("docs/contract.md#6-receipts"));
    assert_eq!(
        normalise(Path::new("docs/../README.md")),
        Some("README.md".into())
    );
    assert_eq!(normalise(Path::new("docs/../../elsewhere/x.md")), None);
}
