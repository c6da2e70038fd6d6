//! Reading lettre's errors, and what each kind of failure means for the
//! cascade.

use crate::core::SendOutcome;

/// Reply codes that mean the relay refused our credentials (RFC 4954):
/// 530 authentication required, 534 mechanism too weak, 535 credentials
/// invalid, 538 encryption required for the mechanism.
const AUTH_CODES: [u16; 4] = [530, 534, 535, 538];

/// What went wrong with one SMTP send, read from lettre's error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A 4xx or 5xx reply (to the greeting, EHLO, AUTH, MAIL, RCPT, DATA or
    /// the final `.`).
    Reply { code: u16, text: String },
    /// No session: refused, unreachable, unknown host, connect timed out.
    /// Nothing of the message was sent.
    NoConnection(String),
    /// The TLS handshake failed: a bad certificate, or `tls` does not match
    /// what the port speaks.
    Handshake(String),
    /// The server lacks what the settings require (STARTTLS, an AUTH
    /// mechanism we offer, 8BITMIME).
    Unsupported(String),
    /// The recipient's address needs SMTPUTF8, which the server lacks.
    UnsupportedAddress(String),
    /// The connection broke, or a reply could not be read, once the session
    /// had begun: lettre does not say after which command, so the message
    /// may have been accepted (a drop right after the final `.`).
    Lost(String),
    /// No answer within the channel's `timeout`.
    TimedOut,
}

impl Failure {
    /// Reads lettre's error. lettre has no accessor for its connection-error
    /// kind, so that one is recognised by its text (pinned by a test).
    pub fn of(e: &lettre::transport::smtp::Error) -> Failure {
        let text = e.to_string();
        if let Some(code) = e.status() {
            return Failure::Reply {
                code: code.into(),
                text,
            };
        }
        if e.is_tls() {
            return Failure::Handshake(text);
        }
        if e.is_client() {
            return if text.contains("Envelope") {
                Failure::UnsupportedAddress(text)
            } else {
                Failure::Unsupported(text)
            };
        }
        if e.is_transport_shutdown() {
            return Failure::NoConnection(text);
        }
        if text.starts_with("Connection error") {
            return if has_invalid_data(e) {
                Failure::Handshake(text)
            } else {
                Failure::NoConnection(text)
            };
        }
        Failure::Lost(text)
    }
}

/// TLS libraries report a refused handshake as `InvalidData`.
fn has_invalid_data(e: &lettre::transport::smtp::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::InvalidData
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// How an SMTP send is read.
///
/// | what happened | outcome |
/// |---|---|
/// | 250 after the final `.` | sent; the provider message id is our `Message-ID` |
/// | 530, 534, 535, 538 (authentication refused) | misconfigured: the credentials are wrong for everyone |
/// | any other 5xx (550 user unknown, 552, 553, 554 on DATA, …) | permanent: escalate now |
/// | 4xx (421, 450, 451, 452, 454) | transient: retry with backoff |
/// | no connection (refused, unreachable, unknown host, connect timeout) | transient: nothing was sent |
/// | TLS handshake failed (certificate, `tls` not what the port speaks) | misconfigured |
/// | server lacks STARTTLS, our AUTH mechanisms or 8BITMIME | misconfigured |
/// | server lacks SMTPUTF8 for a non-ASCII address | permanent |
/// | connection lost or reply unreadable once the session began | ambiguous: it may have been queued |
/// | no answer within the channel's `timeout` | ambiguous |
///
/// Before any of that: settings that cannot work (`from`, `tls`, `port`) are
/// misconfigured; a contact that is not an address is permanent.
pub fn classify(failure: &Failure) -> SendOutcome {
    match failure {
        Failure::Reply { code, text } if AUTH_CODES.contains(code) => SendOutcome::Misconfigured {
            reason: format!("the relay refused our credentials: {text}"),
        },
        Failure::Reply { code, text } if *code >= 500 => SendOutcome::Permanent {
            reason: text.clone(),
        },
        Failure::Reply { text, .. } => SendOutcome::Transient {
            reason: text.clone(),
            retry_after_ms: None,
        },
        Failure::NoConnection(text) => SendOutcome::Transient {
            reason: format!("cannot connect: {text}"),
            retry_after_ms: None,
        },
        Failure::Handshake(text) => SendOutcome::Misconfigured {
            reason: format!("TLS handshake failed (check `tls` and `port`): {text}"),
        },
        Failure::Unsupported(text) => SendOutcome::Misconfigured {
            reason: format!("the relay cannot do what the settings need: {text}"),
        },
        Failure::UnsupportedAddress(text) => SendOutcome::Permanent {
            reason: format!("the relay cannot take this address: {text}"),
        },
        Failure::Lost(text) => SendOutcome::Ambiguous {
            reason: format!("connection lost mid-send: {text}"),
        },
        Failure::TimedOut => SendOutcome::Ambiguous {
            reason: "no answer from the relay within the timeout".into(),
        },
    }
}
