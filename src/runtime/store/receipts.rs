//! Receipts (contract §6): recorded by `receipt.lua`; the cascade is then
//! woken so it decides at once (`woken` in wake.lua).

use redis::{ParsingError, Value};

use super::call::{Call, FromTagged, Reply, Tagged};
use super::{Store, StoreError};
use crate::core::receipt_data::{MAX_KEYS, ReceiptData};
use crate::core::{Entry, EntryKind};
use crate::runtime::keys::Keys;
use crate::runtime::record::encode_entry;

/// What `record_receipt` found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReceiptResult {
    Recorded,
    AlreadyRecorded,
    UnknownNotification,
    /// The data would take the notification's past `receipt_data::MAX_KEYS`
    /// keys (it holds this many): nothing was recorded.
    DataFull(usize),
}

impl FromTagged for ReceiptResult {
    fn from_tagged(t: Tagged) -> Result<Self, ParsingError> {
        match t.word.as_str() {
            "recorded" => Ok(ReceiptResult::Recorded),
            "already" => Ok(ReceiptResult::AlreadyRecorded),
            "unknown" => Ok(ReceiptResult::UnknownNotification),
            "data_full" => Ok(ReceiptResult::DataFull(t.value(0)?)),
            _ => t.unexpected(),
        }
    }
}

/// `receipt.lua`'s KEYS and ARGV, and those of the cascade's `woken`
/// (wake.lua) on its timer shard.
struct ReceiptArgs<'a> {
    id: &'a str,
    event: &'a str,
    /// Merged into the data hash whenever the notification exists.
    data: &'a ReceiptData,
    now_ms: i64,
    /// The timeline entry of the receipt.
    entry: String,
}

impl ReceiptArgs<'_> {
    fn record_keys(&self, keys: &Keys) -> [String; 3] {
        [
            keys.state(self.id),
            keys.receipts(self.id),
            keys.data(self.id),
        ]
    }

    /// `receipt_record`'s parameters after its keys, but the data and its bound.
    fn record_args(&self, call: &mut Call) {
        call.arg(self.event).arg(self.now_ms).arg(&self.entry);
    }

    /// `receipt_record`'s last parameters: the data's bound, and its key
    /// and value pairs.
    fn data_args(&self, call: &mut Call) {
        call.arg(MAX_KEYS);
        for (key, value) in self.data {
            call.arg(key).arg(value);
        }
    }

    fn woken_keys(&self, keys: &Keys) -> [String; 2] {
        [keys.timer_of(self.id), keys.events_of(self.id)]
    }

    /// `woken`'s parameters after its keys. `fresh`: the receipt was
    /// recorded by this call (its entry goes to the stream); else it only
    /// wakes the cascade.
    fn woken_args(&self, call: &mut Call, events_max_len: u64, fresh: bool) {
        call.arg(self.id)
            .arg(self.now_ms)
            .arg(if fresh { self.entry.as_str() } else { "" })
            .arg(events_max_len);
    }
}

impl Store {
    /// Records a receipt (contract §6) and wakes the cascade to decide at
    /// once. On a cluster the wake-up is a second call; if this instance
    /// dies between the two, the receipt is acted on at the cascade's next
    /// wake-up instead.
    pub async fn record_receipt(
        &self,
        id: &str,
        event: &str,
        channel: Option<&str>,
        now_ms: i64,
    ) -> Result<ReceiptResult, StoreError> {
        self.record_receipt_with_data(id, event, channel, &ReceiptData::new(), now_ms)
            .await
    }

    /// `record_receipt`, with data merged into the notification's data hash
    /// in the same call (`Keys::data`), also when the event was recorded
    /// before.
    pub async fn record_receipt_with_data(
        &self,
        id: &str,
        event: &str,
        channel: Option<&str>,
        data: &ReceiptData,
        now_ms: i64,
    ) -> Result<ReceiptResult, StoreError> {
        let args = ReceiptArgs {
            id,
            event,
            data,
            now_ms,
            entry: encode_entry(&receipt_entry(event, channel, now_ms)),
        };
        let mut c = self.conn.clone();
        let (record, woken) = (args.record_keys(&self.keys), args.woken_keys(&self.keys));
        if self.split {
            let mut call = Call::new(
                &self.scripts.receipt_record,
                &[&record[0], &record[1], &record[2]],
            );
            args.record_args(&mut call);
            args.data_args(&mut call);
            let reply: Reply<ReceiptResult> = call.invoke(&mut c).await?;
            let reply = reply.about(id)?;
            // Also for one already recorded: the call that recorded it may
            // have failed before it woke the cascade, and its sender retried.
            if matches!(
                reply,
                ReceiptResult::Recorded | ReceiptResult::AlreadyRecorded
            ) {
                let mut call = Call::new(&self.scripts.woken, &[&woken[0], &woken[1]]);
                let fresh = reply == ReceiptResult::Recorded;
                args.woken_args(&mut call, self.events_max_len, fresh);
                let _: Value = call.invoke(&mut c).await?;
            }
            return Ok(reply);
        }
        // receipt_whole.lua's layout.
        let keys = [&record[0][..], &record[1], &record[2], &woken[0], &woken[1]];
        let mut call = Call::new(&self.scripts.receipt, &keys);
        call.arg(id);
        args.record_args(&mut call);
        call.arg(self.events_max_len);
        args.data_args(&mut call);
        let reply: Reply<ReceiptResult> = call.invoke(&mut c).await?;
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

/// Most staff cascades one notification's replies open.
pub const MAX_REPLIES: usize = 20;

/// A replies-hash value saying an `answered` came before the staff
/// cascade was stored.
const ANSWERED_MARK: &str = "answered:";

impl Store {
    /// Notes that a customer's reply to notification `id` opens the staff
    /// cascade `staff_id`, so that an `answered` for `id` reaches it.
    /// `false` when the notification has `MAX_REPLIES` open already: a
    /// customer writing on and on pages staff that often at most.
    pub async fn note_reply(
        &self,
        id: &str,
        staff_id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let key = self.keys.replies(id);
        let mut c = self.conn.clone();
        let (known, count): (bool, usize) = redis::pipe()
            .hexists(&key, staff_id)
            .hlen(&key)
            .query_async(&mut c)
            .await?;
        if !known && count >= MAX_REPLIES {
            return Ok(false);
        }
        redis::pipe()
            .hset(&key, staff_id, now_ms)
            .ignore()
            .pexpire(&key, self.retention_ms)
            .ignore()
            .query_async::<()>(&mut c)
            .await?;
        Ok(true)
    }

    /// Whether an `answered` reached the staff cascade `staff_id` before it
    /// was stored (`spread_answer` marks it in the replies hash).
    pub async fn answered_before_start(
        &self,
        id: &str,
        staff_id: &str,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let value: Option<String> = redis::cmd("HGET")
            .arg(self.keys.replies(id))
            .arg(staff_id)
            .query_async(&mut c)
            .await?;
        Ok(value.is_some_and(|v| v.starts_with(ANSWERED_MARK)))
    }

    /// The staff cascades replies to notification `id` opened (`note_reply`).
    pub async fn replies_of(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let mut c = self.conn.clone();
        let ids: Vec<String> = redis::cmd("HKEYS")
            .arg(self.keys.replies(id))
            .query_async(&mut c)
            .await?;
        Ok(ids)
    }

    /// After `answered` was recorded on `id` (or found recorded): a
    /// notification's answer reaches every staff cascade its customers'
    /// replies opened; a staff cascade's answer is noted on its
    /// notification too. Returns how many were newly recorded.
    pub async fn spread_answer(&self, id: &str, now_ms: i64) -> Result<usize, StoreError> {
        use crate::core::replies::{ANSWERED, replied_to};
        let targets = match replied_to(id) {
            Some(notification) => vec![notification.to_owned()],
            None => self.replies_of(id).await?,
        };
        let mut fresh = 0;
        for target in targets {
            let mut result = self.record_receipt(&target, ANSWERED, None, now_ms).await?;
            if result == ReceiptResult::UnknownNotification && replied_to(&target).is_some() {
                // A staff cascade noted but not stored yet: mark it, for
                // its start to see (`answered_before_start`), then try
                // once more, in case it was stored in between.
                let mut c = self.conn.clone();
                let _: () = redis::cmd("HSET")
                    .arg(self.keys.replies(id))
                    .arg(&target)
                    .arg(format!("{ANSWERED_MARK}{now_ms}"))
                    .query_async(&mut c)
                    .await?;
                result = self.record_receipt(&target, ANSWERED, None, now_ms).await?;
            }
            fresh += usize::from(result == ReceiptResult::Recorded);
        }
        Ok(fresh)
    }
}
