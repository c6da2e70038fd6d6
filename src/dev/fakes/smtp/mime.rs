//! Reading a stored message: just enough MIME for lettre's output.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::Mail;

/// One leaf of a MIME message: its content type and decoded body.
#[derive(Clone, Debug)]
pub struct Part {
    /// Lower-case media type, e.g. `text/html`.
    pub content_type: String,
    pub body: String,
}

impl Mail {
    /// The first header of that name, unfolded (RFC 2047 words left encoded).
    pub fn header(&self, name: &str) -> Option<String> {
        header_in(split_head(&self.data).0, name)
    }

    /// Every leaf part, decoded (quoted-printable and base64).
    pub fn parts(&self) -> Vec<Part> {
        let mut out = Vec::new();
        collect_parts(&self.data, &mut out, 0);
        out
    }

    /// The text/plain part.
    pub fn text(&self) -> Option<String> {
        self.part("text/plain")
    }

    /// The text/html part.
    pub fn html(&self) -> Option<String> {
        self.part("text/html")
    }

    fn part(&self, content_type: &str) -> Option<String> {
        self.parts()
            .into_iter()
            .find(|p| p.content_type == content_type)
            .map(|p| p.body)
    }

    /// The open pixel's URL: the HTML's `<img src="…/t/o/….gif">`.
    pub fn pixel_url(&self) -> Option<String> {
        attribute_values(&self.html()?, "src")
            .into_iter()
            .find(|u| u.contains("/t/o/") && u.ends_with(".gif"))
    }

    /// Every `href` of the HTML, in order (entity `&amp;` decoded).
    pub fn links(&self) -> Vec<String> {
        self.html()
            .map(|h| attribute_values(&h, "href"))
            .unwrap_or_default()
    }
}

/// (head, body) of a message or part.
fn split_head(data: &str) -> (&str, &str) {
    match data.find("\r\n\r\n") {
        Some(i) => (&data[..i], &data[i + 4..]),
        None => (data, ""),
    }
}

fn header_in(head: &str, name: &str) -> Option<String> {
    let mut found: Option<String> = None;
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(f) = found.as_mut() {
                f.push(' ');
                f.push_str(line.trim());
            }
            continue;
        }
        if found.is_some() {
            break;
        }
        if let Some((n, v)) = line.split_once(':')
            && n.trim().eq_ignore_ascii_case(name)
        {
            found = Some(v.trim().to_owned());
        }
    }
    found
}

/// `boundary=` of a Content-Type value.
fn boundary(content_type: &str) -> Option<String> {
    let at = content_type.to_ascii_lowercase().find("boundary=")?;
    let rest = &content_type[at + "boundary=".len()..];
    let value = match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next().unwrap_or(""),
        None => rest.split([';', ' ']).next().unwrap_or(""),
    };
    (!value.is_empty()).then(|| value.to_owned())
}

fn collect_parts(entity: &str, out: &mut Vec<Part>, depth: usize) {
    let (head, body) = split_head(entity);
    let content_type = header_in(head, "Content-Type").unwrap_or_else(|| "text/plain".into());
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media.starts_with("multipart/") && depth < 8 {
        let Some(b) = boundary(&content_type) else {
            return;
        };
        let delimiter = format!("--{b}");
        for chunk in body.split(delimiter.as_str()).skip(1) {
            if chunk.starts_with("--") {
                break;
            }
            collect_parts(chunk.trim_start_matches("\r\n"), out, depth + 1);
        }
        return;
    }
    let encoding = header_in(head, "Content-Transfer-Encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let body = body.strip_suffix("\r\n").unwrap_or(body);
    let decoded = match encoding.as_str() {
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            STANDARD
                .decode(compact)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        }
        "quoted-printable" => quoted_printable(body),
        _ => body.to_owned(),
    };
    out.push(Part {
        content_type: media,
        body: decoded.replace("\r\n", "\n"),
    });
}

fn quoted_printable(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            if bytes[i + 1..].starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if bytes[i + 1..].starts_with(b"\n") {
                i += 2;
                continue;
            }
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = hex {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Double-quoted values of `name="…"` attributes, `&amp;` decoded.
fn attribute_values(html: &str, name: &str) -> Vec<String> {
    let needle = format!("{name}=\"");
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = lower[from..].find(&needle) {
        let start = from + at + needle.len();
        let Some(len) = html[start..].find('"') else {
            break;
        };
        out.push(html[start..start + len].replace("&amp;", "&"));
        from = start + len;
    }
    out
}
