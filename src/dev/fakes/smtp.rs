//! A loopback SMTP sink for the `email` channel: plain SMTP on
//! `127.0.0.1:0` (no TLS — point a channel at it with `tls = "none"`),
//! storing every message it reads (envelope and raw data), with scripted
//! answers per message.
//!
//! ```text
//! 220 greeting · EHLO → 250 (8BITMIME, SIZE, AUTH PLAIN) · AUTH PLAIN → 235 / 535
//! MAIL FROM → 250 (530 if AUTH is required and missing)
//! RCPT TO   → 250 · 450 4.7.1 · 550 5.1.1            (scripted)
//! DATA → 354 · final `.` → 250 queued · 451 · 554 · drop · slow (scripted)
//! RSET, NOOP → 250 · QUIT → 221 · anything else → 502
//! ```
//!
//! The answer for a message is taken when its transaction starts (at AUTH
//! or MAIL FROM): first from the SMTP-specific queue (`then`), else from the
//! shared `Script` (`script()`), else success. Tracking "callbacks" for email
//! are the customer's GETs of the pixel and the links: `Mail::pixel_url` and
//! `Mail::links` find them in a stored message.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::script::{Script, Scripted};

/// Longest command line the sink reads.
const MAX_LINE: u64 = 4096;
/// Largest message the sink takes (advertised as SIZE).
const MAX_DATA: usize = 10 * 1024 * 1024;

/// What the sink answers for one message.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// 250 to everything; the message is stored as accepted.
    Accept,
    /// `450 4.7.1` to RCPT TO (greylisting, throttling).
    RcptTransient,
    /// `550 5.1.1 <address>: Recipient address rejected: User unknown …` to
    /// RCPT TO (as Postfix says it, repeating the address).
    RcptPermanent,
    /// `451 4.3.0` after the final `.`.
    DataTransient,
    /// `554 5.7.1` (rejected as spam) after the final `.`.
    DataPermanent,
    /// `535 5.7.8` to AUTH, or `530 5.7.0` to MAIL FROM when the client did
    /// not authenticate.
    AuthFailed,
    /// Reads the whole message, then closes the connection without a reply.
    DropAfterData,
    /// Reads the whole message, waits this long, then answers 250.
    Slow(Duration),
}

impl From<Scripted> for Answer {
    fn from(s: Scripted) -> Answer {
        match s {
            Scripted::Ok => Answer::Accept,
            Scripted::Transient => Answer::DataTransient,
            // SMTP has no retry-after: a relay throttles with a 4xx.
            Scripted::RateLimited(_) => Answer::RcptTransient,
            Scripted::Permanent => Answer::RcptPermanent,
            Scripted::Misconfigured => Answer::AuthFailed,
            Scripted::Slow(d) => Answer::Slow(d),
        }
    }
}

/// A message whose data the sink read.
#[derive(Clone, Debug)]
pub struct Mail {
    /// The envelope sender (inside `<>`).
    pub mail_from: String,
    /// The envelope recipients (inside `<>`).
    pub rcpt_to: Vec<String>,
    /// The message as sent, dot-unstuffed, CRLF line ends.
    pub data: String,
    /// What the sink answered after the final `.`: 250, 451, 554, or 0 when
    /// it dropped the connection instead.
    pub reply: u16,
}

/// The SMTP sink. Stops accepting when dropped.
pub struct FakeSmtp {
    addr: SocketAddr,
    shared: Arc<Shared>,
    script: Script,
    stop: CancellationToken,
}

#[derive(Default)]
struct Shared {
    answers: Mutex<VecDeque<Answer>>,
    mails: Mutex<Vec<Mail>>,
    connections: AtomicUsize,
    /// (username, password) AUTH must present, if any.
    credentials: Mutex<Option<(String, String)>>,
}

/// Starts a sink on `127.0.0.1:0`.
pub async fn start() -> std::io::Result<FakeSmtp> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::default());
    let script = Script::default();
    let stop = CancellationToken::new();
    let (s, sc, st) = (shared.clone(), script.clone(), stop.clone());
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = st.cancelled() => return,
                a = listener.accept() => a,
            };
            let Ok((stream, _)) = accepted else { continue };
            // SMTP is a chat of small lines: without this, Nagle and delayed
            // ACKs add ~40 ms to every message.
            let _ = stream.set_nodelay(true);
            s.connections.fetch_add(1, Ordering::SeqCst);
            let (s, sc, st) = (s.clone(), sc.clone(), st.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = st.cancelled() => {}
                    _ = session(stream, &s, &sc) => {}
                }
            });
        }
    });
    Ok(FakeSmtp {
        addr,
        shared,
        script,
        stop,
    })
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeSmtp {
    pub fn host(&self) -> String {
        self.addr.ip().to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The shared script of generic answers (see `Answer::from`).
    pub fn script(&self) -> &Script {
        &self.script
    }

    /// Queues `n` SMTP-specific answers, taken before the shared script.
    pub fn then(&self, answer: Answer, n: usize) -> &Self {
        if let Ok(mut q) = self.shared.answers.lock() {
            q.extend(std::iter::repeat_n(answer, n));
        }
        self
    }

    /// Requires AUTH PLAIN with these credentials before MAIL FROM.
    pub fn require_auth(&self, username: &str, password: &str) {
        if let Ok(mut c) = self.shared.credentials.lock() {
            *c = Some((username.to_owned(), password.to_owned()));
        }
    }

    /// Every message whose data arrived, in order, whatever the answer.
    pub fn received(&self) -> Vec<Mail> {
        self.shared
            .mails
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// The messages answered with 250.
    pub fn accepted(&self) -> Vec<Mail> {
        let mut mails = self.received();
        mails.retain(|m| m.reply == 250);
        mails
    }

    /// TCP connections accepted so far (a pooled client reuses them).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

fn next_answer(shared: &Shared, script: &Script) -> Answer {
    let queued = shared.answers.lock().ok().and_then(|mut q| q.pop_front());
    queued.unwrap_or_else(|| script.next().into())
}

/// One SMTP session, until QUIT, EOF or a scripted drop.
async fn session(stream: TcpStream, shared: &Shared, script: &Script) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 fake-smtp ESMTP ready\r\n").await?;
    let mut authenticated = false;
    // The current transaction: its answer, sender and recipients.
    let mut answer: Option<Answer> = None;
    let mut from: Option<String> = None;
    let mut rcpt: Vec<String> = Vec::new();
    loop {
        let Some(line) = read_line(&mut read).await? else {
            return Ok(());
        };
        let upper = line.to_ascii_uppercase();
        let verb = upper.split_whitespace().next().unwrap_or("");
        let reply: String = match verb {
            "EHLO" => format!(
                "250-fake-smtp\r\n250-8BITMIME\r\n250-SIZE {MAX_DATA}\r\n250 AUTH PLAIN\r\n"
            ),
            "HELO" => "250 fake-smtp\r\n".into(),
            "AUTH" => {
                let mut words = line.split_whitespace().skip(1);
                if !words
                    .next()
                    .is_some_and(|m| m.eq_ignore_ascii_case("PLAIN"))
                {
                    write.write_all(b"504 5.5.4 only AUTH PLAIN\r\n").await?;
                    continue;
                }
                let initial = match words.next() {
                    Some(r) => r.to_owned(),
                    None => {
                        write.write_all(b"334 \r\n").await?;
                        read_line(&mut read).await?.unwrap_or_default()
                    }
                };
                let this = answer.get_or_insert_with(|| next_answer(shared, script));
                let required = shared.credentials.lock().ok().and_then(|c| c.clone());
                let given = STANDARD.decode(initial.trim()).ok().map(|raw| {
                    let mut parts = raw.split(|b| *b == 0).skip(1);
                    let user = parts.next().unwrap_or_default().to_vec();
                    let pass = parts.next().unwrap_or_default().to_vec();
                    (
                        String::from_utf8_lossy(&user).into_owned(),
                        String::from_utf8_lossy(&pass).into_owned(),
                    )
                });
                let failed = *this == Answer::AuthFailed;
                let good = !failed && required.is_none_or(|r| given.as_ref() == Some(&r));
                if failed {
                    answer = None;
                }
                if good {
                    authenticated = true;
                    "235 2.7.0 Authentication successful\r\n".into()
                } else {
                    "535 5.7.8 Authentication credentials invalid\r\n".into()
                }
            }
            "MAIL" => {
                let this = answer.take().unwrap_or_else(|| next_answer(shared, script));
                let needs_auth = shared.credentials.lock().is_ok_and(|c| c.is_some());
                if this == Answer::AuthFailed || (needs_auth && !authenticated) {
                    "530 5.7.0 Authentication required\r\n".into()
                } else {
                    from = Some(angle(&line));
                    rcpt.clear();
                    answer = Some(this);
                    "250 2.1.0 Ok\r\n".into()
                }
            }
            "RCPT" => match (&from, &answer) {
                (None, _) => "503 5.5.1 MAIL first\r\n".into(),
                (_, Some(Answer::RcptTransient)) => {
                    "450 4.7.1 Too many messages, try again later\r\n".into()
                }
                // Postfix's words: the reply repeats the address.
                (_, Some(Answer::RcptPermanent)) => format!(
                    "550 5.1.1 <{}>: Recipient address rejected: User unknown in virtual mailbox table\r\n",
                    angle(&line)
                ),
                _ => {
                    rcpt.push(angle(&line));
                    "250 2.1.5 Ok\r\n".into()
                }
            },
            "DATA" if rcpt.is_empty() => "554 5.5.1 No valid recipients\r\n".into(),
            "DATA" => {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let Some(data) = read_data(&mut read).await? else {
                    write.write_all(b"552 5.3.4 Message too big\r\n").await?;
                    return Ok(());
                };
                let this = answer.take().unwrap_or(Answer::Accept);
                let (code, text) = match &this {
                    Answer::DataTransient => (451, "451 4.3.0 Temporary failure, try again later"),
                    Answer::DataPermanent => (554, "554 5.7.1 Message rejected as spam"),
                    Answer::DropAfterData => (0, ""),
                    _ => (250, ""),
                };
                let n = {
                    let mut mails = shared
                        .mails
                        .lock()
                        .map_err(|_| std::io::Error::other("the sink's mailbox is poisoned"))?;
                    mails.push(Mail {
                        mail_from: from.take().unwrap_or_default(),
                        rcpt_to: std::mem::take(&mut rcpt),
                        data,
                        reply: code,
                    });
                    mails.len()
                };
                match this {
                    Answer::DropAfterData => return Ok(()),
                    Answer::Slow(d) => tokio::time::sleep(d).await,
                    _ => {}
                }
                if code == 250 {
                    format!("250 2.0.0 Ok: queued as FAKE{n:06}\r\n")
                } else {
                    format!("{text}\r\n")
                }
            }
            "RSET" => {
                answer = None;
                from = None;
                rcpt.clear();
                "250 2.0.0 Ok\r\n".into()
            }
            "NOOP" => "250 2.0.0 Ok\r\n".into(),
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => "502 5.5.2 Command not recognized\r\n".into(),
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

/// One line without its line end; `None` at EOF or past `MAX_LINE`.
async fn read_line<R: AsyncBufReadExt + Unpin>(read: &mut R) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = (&mut *read)
        .take(MAX_LINE)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 || !buf.ends_with(b"\n") {
        return Ok(None);
    }
    let line = String::from_utf8_lossy(&buf);
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
}

/// The message after DATA up to the lone `.`, dot-unstuffed; `None` if the
/// client went away or sent more than `MAX_DATA`.
async fn read_data(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<Option<String>> {
    let mut data = String::new();
    loop {
        // Acknowledge at once: lettre writes the body and the final `.` in
        // two writes, and Nagle holds the second until our delayed ACK
        // (~40 ms a message) unless we answer quickly.
        let _ = socket2::SockRef::from(read.get_ref().as_ref()).set_tcp_quickack(true);
        let mut buf = Vec::new();
        let n = (&mut *read)
            .take(MAX_DATA as u64)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 {
            return Ok(None);
        }
        let line = String::from_utf8_lossy(&buf);
        let bare = line.trim_end_matches(['\r', '\n']);
        if bare == "." {
            return Ok(Some(data));
        }
        data.push_str(bare.strip_prefix('.').unwrap_or(bare));
        data.push_str("\r\n");
        if data.len() > MAX_DATA {
            return Ok(None);
        }
    }
}

/// The address inside `<…>` of `MAIL FROM:<a@b>` / `RCPT TO:<a@b>`.
fn angle(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line[start..].find('>').map_or(line.len(), |i| start + i);
    line[start..end].to_owned()
}

// ---------------------------------------------------------------------------
// Reading a stored message (just enough MIME for lettre's output)
// ---------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lettre_style_mime() {
        let data = "From: a@b.example\r\nContent-Type: multipart/alternative;\r\n boundary=\"XYZ\"\r\nMIME-Version: 1.0\r\n\r\n--XYZ\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nHello =D0=AF wo=\r\nrld\r\n--XYZ\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nPGEgaHJlZj0iaHR0cHM6Ly94LmV4YW1wbGUvP2E9MSZhbXA7Yj0yIj5sPC9hPg==\r\n--XYZ--\r\n";
        let mail = Mail {
            mail_from: "a@b.example".into(),
            rcpt_to: vec![],
            data: data.into(),
            reply: 250,
        };
        assert_eq!(
            mail.header("content-type").unwrap(),
            "multipart/alternative; boundary=\"XYZ\""
        );
        assert_eq!(mail.text().unwrap(), "Hello Я world");
        assert_eq!(mail.links(), ["https://x.example/?a=1&b=2"]);
        assert_eq!(
            angle("MAIL FROM:<a@b.example> BODY=8BITMIME"),
            "a@b.example"
        );
    }
}
