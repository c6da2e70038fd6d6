//! One SMTP session on the wire: the greeting, then one handler per command.

use std::io;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::{Answer, Mail, Shared};
use crate::dev::fakes::script::Script;

/// Longest command line the sink reads.
const MAX_LINE: u64 = 4096;
/// Largest message the sink takes (advertised as SIZE).
const MAX_DATA: usize = 10 * 1024 * 1024;

/// One SMTP session, until QUIT, EOF or a scripted drop.
pub(super) async fn session(stream: TcpStream, shared: &Shared, script: &Script) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let read = BufReader::new(read);
    write.write_all(b"220 fake-smtp ESMTP ready\r\n").await?;
    let mut session = Session {
        read,
        write,
        shared,
        script,
        authenticated: false,
        answer: None,
        from: None,
        rcpt: Vec::new(),
    };
    loop {
        let Some(line) = read_line(&mut session.read).await? else {
            return Ok(());
        };
        match session.command(&line).await? {
            Then::Reply(reply) => session.write.write_all(reply.as_bytes()).await?,
            Then::ReplyAndClose(reply) => {
                session.write.write_all(reply.as_bytes()).await?;
                return Ok(());
            }
            Then::Close => return Ok(()),
        }
    }
}

/// What the session does after a command.
enum Then {
    /// Writes this reply and reads the next command.
    Reply(String),
    /// Writes this reply and ends the session.
    ReplyAndClose(&'static str),
    /// Ends the session without a reply.
    Close,
}

struct Session<'a> {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    shared: &'a Shared,
    script: &'a Script,
    authenticated: bool,
    // The current transaction: its answer, sender and recipients.
    answer: Option<Answer>,
    from: Option<String>,
    rcpt: Vec<String>,
}

impl Session<'_> {
    async fn command(&mut self, line: &str) -> io::Result<Then> {
        let upper = line.to_ascii_uppercase();
        let verb = upper.split_whitespace().next().unwrap_or("");
        let reply: String = match verb {
            "EHLO" => format!(
                "250-fake-smtp\r\n250-8BITMIME\r\n250-SIZE {MAX_DATA}\r\n250 AUTH PLAIN\r\n"
            ),
            "HELO" => "250 fake-smtp\r\n".into(),
            "AUTH" => self.auth(line).await?,
            "MAIL" => self.mail(line),
            "RCPT" => self.rcpt(line),
            "DATA" if self.rcpt.is_empty() => "554 5.5.1 No valid recipients\r\n".into(),
            "DATA" => return self.data().await,
            "RSET" => self.reset(),
            "NOOP" => "250 2.0.0 Ok\r\n".into(),
            "QUIT" => return Ok(Then::ReplyAndClose("221 2.0.0 Bye\r\n")),
            _ => "502 5.5.2 Command not recognized\r\n".into(),
        };
        Ok(Then::Reply(reply))
    }

    /// AUTH PLAIN, its initial response on the line or after a `334`. It
    /// starts the transaction's answer; a scripted `AuthFailed` fails it and
    /// is used up.
    async fn auth(&mut self, line: &str) -> io::Result<String> {
        let mut words = line.split_whitespace().skip(1);
        if !words
            .next()
            .is_some_and(|m| m.eq_ignore_ascii_case("PLAIN"))
        {
            return Ok("504 5.5.4 only AUTH PLAIN\r\n".into());
        }
        let initial = match words.next() {
            Some(r) => r.to_owned(),
            None => {
                self.write.write_all(b"334 \r\n").await?;
                read_line(&mut self.read).await?.unwrap_or_default()
            }
        };
        let (shared, script) = (self.shared, self.script);
        let this = self
            .answer
            .get_or_insert_with(|| next_answer(shared, script));
        let required = shared.credentials.lock().ok().and_then(|c| c.clone());
        let given = plain_credentials(&initial);
        let failed = *this == Answer::AuthFailed;
        let good = !failed && required.is_none_or(|r| given.as_ref() == Some(&r));
        if failed {
            self.answer = None;
        }
        Ok(if good {
            self.authenticated = true;
            "235 2.7.0 Authentication successful\r\n".into()
        } else {
            "535 5.7.8 Authentication credentials invalid\r\n".into()
        })
    }

    /// MAIL FROM: starts a transaction (taking its answer), refused when
    /// the answer is `AuthFailed` or AUTH is required and missing.
    fn mail(&mut self, line: &str) -> String {
        let this = self
            .answer
            .take()
            .unwrap_or_else(|| next_answer(self.shared, self.script));
        let needs_auth = self.shared.credentials.lock().is_ok_and(|c| c.is_some());
        if this == Answer::AuthFailed || (needs_auth && !self.authenticated) {
            "530 5.7.0 Authentication required\r\n".into()
        } else {
            self.from = Some(angle(line));
            self.rcpt.clear();
            self.answer = Some(this);
            "250 2.1.0 Ok\r\n".into()
        }
    }

    /// RCPT TO: a recipient, unless the transaction's answer refuses it.
    fn rcpt(&mut self, line: &str) -> String {
        match (&self.from, &self.answer) {
            (None, _) => "503 5.5.1 MAIL first\r\n".into(),
            (_, Some(Answer::RcptTransient)) => {
                "450 4.7.1 Too many messages, try again later\r\n".into()
            }
            // Postfix's words: the reply repeats the address.
            (_, Some(Answer::RcptPermanent)) => format!(
                "550 5.1.1 <{}>: Recipient address rejected: User unknown in virtual mailbox table\r\n",
                angle(line)
            ),
            _ => {
                self.rcpt.push(angle(line));
                "250 2.1.5 Ok\r\n".into()
            }
        }
    }

    /// DATA with recipients: reads the message, stores it with the reply
    /// the transaction's answer calls for, then replies, waits or drops.
    async fn data(&mut self) -> io::Result<Then> {
        self.write
            .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            .await?;
        let Some(data) = read_data(&mut self.read).await? else {
            return Ok(Then::ReplyAndClose("552 5.3.4 Message too big\r\n"));
        };
        let this = self.answer.take().unwrap_or(Answer::Accept);
        let (code, text) = match &this {
            Answer::DataTransient => (451, "451 4.3.0 Temporary failure, try again later"),
            Answer::DataPermanent => (554, "554 5.7.1 Message rejected as spam"),
            Answer::DropAfterData => (0, ""),
            _ => (250, ""),
        };
        let n = self.store(data, code)?;
        match this {
            Answer::DropAfterData => return Ok(Then::Close),
            Answer::Slow(d) => tokio::time::sleep(d).await,
            _ => {}
        }
        Ok(Then::Reply(if code == 250 {
            format!("250 2.0.0 Ok: queued as FAKE{n:06}\r\n")
        } else {
            format!("{text}\r\n")
        }))
    }

    /// Stores the transaction's message with the reply it gets, ending the
    /// transaction; returns how many messages the sink holds.
    fn store(&mut self, data: String, reply: u16) -> io::Result<usize> {
        let mut mails = self
            .shared
            .mails
            .lock()
            .map_err(|_| io::Error::other("the sink's mailbox is poisoned"))?;
        mails.push(Mail {
            mail_from: self.from.take().unwrap_or_default(),
            rcpt_to: std::mem::take(&mut self.rcpt),
            data,
            reply,
        });
        Ok(mails.len())
    }

    /// RSET: forgets the transaction.
    fn reset(&mut self) -> String {
        self.answer = None;
        self.from = None;
        self.rcpt.clear();
        "250 2.0.0 Ok\r\n".into()
    }
}

fn next_answer(shared: &Shared, script: &Script) -> Answer {
    let queued = shared.answers.lock().ok().and_then(|mut q| q.pop_front());
    queued.unwrap_or_else(|| script.next().into())
}

/// (username, password) of an AUTH PLAIN response (`\0user\0pass`, base64).
fn plain_credentials(response: &str) -> Option<(String, String)> {
    STANDARD.decode(response.trim()).ok().map(|raw| {
        let mut parts = raw.split(|b| *b == 0).skip(1);
        let user = parts.next().unwrap_or_default().to_vec();
        let pass = parts.next().unwrap_or_default().to_vec();
        (
            String::from_utf8_lossy(&user).into_owned(),
            String::from_utf8_lossy(&pass).into_owned(),
        )
    })
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
pub(super) fn angle(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line[start..].find('>').map_or(line.len(), |i| start + i);
    line[start..end].to_owned()
}
