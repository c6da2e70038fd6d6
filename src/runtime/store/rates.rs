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
    /// Reserved: send after this long (zero: now).
    Taken(Duration),
    /// No share within the wait asked for: the next is after this long.
    Wait(Duration),
}

impl FromTagged for RateTake {
    fn from_tagged(t: Tagged) -> Result<Self, ParsingError> {
        match t.word.as_str() {
            "taken" => Ok(RateTake::Taken(micros(&t)?)),
            "wait" => Ok(RateTake::Wait(micros(&t)?)),
            _ => t.unexpected(),
        }
    }
}
plain_reply!(RateTake);

fn micros(t: &Tagged) -> Result<Duration, ParsingError> {
    let us: i64 = t.value(0)?;
    Ok(Duration::from_micros(us.max(0) as u64))
}

/// Microseconds between two sends at `rate`, at least one.
pub(super) fn interval_us(rate: Rate) -> u64 {
    (rate.per_ms.max(1) as u64 * 1000 / u64::from(rate.count.max(1))).max(1)
}

impl Store {
    /// Reserves one send's share of `channel`'s throughput if it comes
    /// within `max_wait`, or says how long until the next is free.
    pub async fn take_rate(
        &self,
        channel: &str,
        rate: Rate,
        max_wait: Duration,
    ) -> Result<RateTake, StoreError> {
        let key = self.keys.rate(channel);
        let mut call = Call::new(&self.scripts.rate, &[&key]);
        call.arg(interval_us(rate))
            .arg(max_wait.as_micros().min(i64::MAX as u128) as i64);
        let mut c = self.conn.clone();
        Ok(call.invoke(&mut c).await?)
    }
}
