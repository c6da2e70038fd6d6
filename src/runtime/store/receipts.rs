//! Receipts (contract §6): recorded by `receipt.lua`, which wakes the
//! cascade so it decides at once.

use redis::ParsingError;

use super::call::{Call, FromTagged, Reply, Scripts, Tagged};
use super::{EVENTS_MAX_LEN, Store, StoreError};
use crate::core::{Entry, EntryKind};
use crate::runtime::keys::Keys;
use crate::runtime::record::encode_entry;

/// What `record_receipt` found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReceiptResult {
    Recorded,
    AlreadyRecorded,
    UnknownNotification,
}

impl FromTagged for ReceiptResult {
    fn from_tagged(t: Tagged) -> Result<Self, ParsingError> {
        match t.word.as_str() {
            "recorded" => Ok(ReceiptResult::Recorded),
            "already" => Ok(ReceiptResult::AlreadyRecorded),
            "unknown" => Ok(ReceiptResult::UnknownNotification),
            _ => t.unexpected(),
        }
    }
}

/// `receipt.lua`'s KEYS and ARGV.
struct ReceiptArgs<'a> {
    id: &'a str,
    event: &'a str,
    now_ms: i64,
    /// The timeline entry of the receipt.
    entry: String,
}

impl ReceiptArgs<'_> {
    fn call<'s>(&self, keys: &Keys, scripts: &'s Scripts) -> Call<'s> {
        let id = self.id;
        let mut call = Call::new(
            &scripts.receipt,
            &[
                &keys.state(id),
                &keys.receipts(id),
                &keys.timer_of(id),
                &keys.events(),
            ],
        );
        call.arg(id)
            .arg(self.event)
            .arg(self.now_ms)
            .arg(&self.entry)
            .arg(EVENTS_MAX_LEN);
        call
    }
}

impl Store {
    /// Records a receipt (contract §6) and wakes the cascade to decide at once.
    pub async fn record_receipt(
        &self,
        id: &str,
        event: &str,
        channel: Option<&str>,
        now_ms: i64,
    ) -> Result<ReceiptResult, StoreError> {
        let args = ReceiptArgs {
            id,
            event,
            now_ms,
            entry: encode_entry(&receipt_entry(event, channel, now_ms)),
        };
        let mut c = self.conn.clone();
        let reply: Reply<ReceiptResult> =
            args.call(&self.keys, &self.scripts).invoke(&mut c).await?;
        reply.about(id)
    }
}

/// The timeline entry of a receipt.
pub(super) fn receipt_entry(event: &str, channel: Option<&str>, now_ms: i64) -> Entry {
    Entry {
        at_ms: now_ms,
        event: EntryKind::Receipt,
        step: None,
        channel: channel.map(str::to_owned),
        reason: Some(event.to_owned()),
        until_ms: None,
        provider_message_id: None,
    }
}

/// `Loaded::receipts_seen` of a receipts hash with `fields` fields and this
/// `failed` value (touch.lua builds the same from the hash it reads).
pub fn receipts_seen(fields: usize, failed: Option<&str>) -> String {
    format!("{fields}\t{}", failed.unwrap_or(""))
}
