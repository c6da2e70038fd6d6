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

mod mime;
mod session;

pub use mime::Part;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::script::{Script, Scripted};
use session::session;

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

#[cfg(test)]
mod tests {
    use super::session::angle;
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
