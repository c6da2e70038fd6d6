//! The timeline a cascade leaves: one `Entry` per thing that happened.

use serde::{Deserialize, Serialize};

/// One line of a cascade's timeline; `event` is a lifecycle word of contract §7.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub at_ms: i64,
    pub event: EntryKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For `deferred` and retries: when the next try is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
}

/// The lifecycle words the core emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Accepted,
    Sent,
    SendFailed,
    Uncertain,
    Deferred,
    Skipped,
    Escalated,
    Completed,
    Exhausted,
    Expired,
    Cancelled,
    LateRead,
    /// A receipt was recorded. Written by the shell, which sees receipts arrive.
    Receipt,
    /// Intake saw an id it already knows. Written by the shell.
    Duplicate,
    /// Intake dead-lettered a message. Written by the shell.
    Rejected,
}

impl EntryKind {
    pub const ALL: [EntryKind; 15] = [
        EntryKind::Accepted,
        EntryKind::Sent,
        EntryKind::SendFailed,
        EntryKind::Uncertain,
        EntryKind::Deferred,
        EntryKind::Skipped,
        EntryKind::Escalated,
        EntryKind::Completed,
        EntryKind::Exhausted,
        EntryKind::Expired,
        EntryKind::Cancelled,
        EntryKind::LateRead,
        EntryKind::Receipt,
        EntryKind::Duplicate,
        EntryKind::Rejected,
    ];

    /// The kind a lifecycle word names ([`EntryKind::as_str`] backwards).
    pub fn from_word(word: &str) -> Option<EntryKind> {
        EntryKind::ALL.into_iter().find(|k| k.as_str() == word)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Accepted => "accepted",
            EntryKind::Sent => "sent",
            EntryKind::SendFailed => "send_failed",
            EntryKind::Uncertain => "uncertain",
            EntryKind::Deferred => "deferred",
            EntryKind::Skipped => "skipped",
            EntryKind::Escalated => "escalated",
            EntryKind::Completed => "completed",
            EntryKind::Exhausted => "exhausted",
            EntryKind::Expired => "expired",
            EntryKind::Cancelled => "cancelled",
            EntryKind::LateRead => "late_read",
            EntryKind::Receipt => "receipt",
            EntryKind::Duplicate => "duplicate",
            EntryKind::Rejected => "rejected",
        }
    }
}

impl std::fmt::Display for EntryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
