//! Channel throughput shared by every instance (`rate.lua`): a channel's
//! `rate` is the provider account's limit, not each instance's.

use std::time::Duration;

use redis::ParsingError;

use super::call::{Call, FromTagged, Tagged, plain_reply};
use super::{Store, StoreError};
use crate::core::Rate;

/// What taking a send's share of a channel's throughput came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateTake {
    Taken,
    /// No share free yet: one is after this long.
    Wait(Duration),
}

impl FromTagged for RateTake {
    fn from_tagged(t: Tagged) -> Result<Self, ParsingError> {
        match t.word.as_str() {
            "taken" => Ok(RateTake::Taken),
            "wait" => {
                let us: i64 = t.value(0)?;
                Ok(RateTake::Wait(Duration::from_micros(us.max(0) as u64)))
            }
            _ => t.unexpected(),
        }
    }
}
plain_reply!(RateTake);

/// Microseconds between two sends at `rate`, at least one.
pub(super) fn interval_us(rate: Rate) -> u64 {
    (rate.per_ms.max(1) as u64 * 1000 / u64::from(rate.count.max(1))).max(1)
}

impl Store {
    /// Takes one send's share of `channel`'s throughput, or says how long
    /// until one is free.
    pub async fn take_rate(&self, channel: &str, rate: Rate) -> Result<RateTake, StoreError> {
        let key = self.keys.rate(channel);
        let mut call = Call::new(&self.scripts.rate, &[&key]);
        call.arg(interval_us(rate));
        let mut c = self.conn.clone();
        Ok(call.invoke(&mut c).await?)
    }
}
