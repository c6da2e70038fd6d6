//! Per-customer sliding-window limits (`limit.lua`), shared by every
//! instance: a send is taken from each limit that applies to its channel,
//! or told when it would fit.

use redis::ParsingError;

use super::call::{Call, FromTagged, Scripts, Tagged, plain_reply};
use super::{Store, StoreError};
use crate::config::ChannelConfig;
use crate::core::{Policy, Rate};
use crate::runtime::keys::Keys;

/// The least time a scope's sends are kept, whatever the windows counted
/// on it lately: a limit of up to a day that starts counting on a scope
/// (a policy added, a window lengthened by a reload) still finds every
/// send of its window that a shorter one counted before it.
pub(super) const KEEP_AT_LEAST_MS: i64 = 86_400_000;

/// `limit.lua`'s KEYS and ARGV.
struct LimitArgs<'a> {
    customer: &'a str,
    member: &'a str,
    now_ms: i64,
    /// Each limit's scope (`all`, `ch:<key>`) and rate.
    limits: Vec<(String, Rate)>,
}

impl LimitArgs<'_> {
    fn call<'s>(&self, keys: &Keys, scripts: &'s Scripts) -> Call<'s> {
        let names: Vec<String> = self
            .limits
            .iter()
            .flat_map(|(scope, _)| {
                [
                    keys.limit(self.customer, scope),
                    keys.limit_keep(self.customer, scope),
                ]
            })
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut call = Call::new(&scripts.limit, &names);
        call.arg(self.now_ms).arg(self.member).arg(KEEP_AT_LEAST_MS);
        for (_, rate) in &self.limits {
            call.arg(rate.count).arg(rate.per_ms);
        }
        call
    }
}

/// `limit.lua`'s reply.
enum LimitReply {
    Taken,
    /// Blocked: the Unix ms at which it would fit.
    NotBefore(i64),
}

impl FromTagged for LimitReply {
    fn from_tagged(t: Tagged) -> Result<Self, ParsingError> {
        match t.word.as_str() {
            "taken" => Ok(LimitReply::Taken),
            "not_before" => Ok(LimitReply::NotBefore(t.value(0)?)),
            _ => t.unexpected(),
        }
    }
}
plain_reply!(LimitReply);

impl Store {
    /// Takes one send from the customer's limits that apply to `channel`, or
    /// returns when it would fit. `member` makes a repeated take idempotent.
    pub async fn take_limit(
        &self,
        customer: &str,
        policy: &Policy,
        channel: &ChannelConfig,
        member: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let limits = limit_scopes(policy, channel);
        if limits.is_empty() {
            return Ok(None);
        }
        let args = LimitArgs {
            customer,
            member,
            now_ms,
            limits,
        };
        let mut c = self.conn.clone();
        let reply: LimitReply = args.call(&self.keys, &self.scripts).invoke(&mut c).await?;
        Ok(match reply {
            LimitReply::Taken => None,
            LimitReply::NotBefore(at_ms) => Some(at_ms),
        })
    }

    /// Gives back a send taken by `take_limit` that did not reach the customer.
    pub async fn release_limit(
        &self,
        customer: &str,
        policy: &Policy,
        channel: &ChannelConfig,
        member: &str,
    ) -> Result<(), StoreError> {
        let scopes = limit_scopes(policy, channel);
        if scopes.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (scope, _) in &scopes {
            pipe.zrem(self.keys.limit(customer, scope), member).ignore();
        }
        let mut c = self.conn.clone();
        let _: () = pipe.query_async(&mut c).await?;
        Ok(())
    }
}

/// The limit scopes (`all`, `ch:<key>`) and rates a send on `channel` counts against.
pub(super) fn limit_scopes(policy: &Policy, channel: &ChannelConfig) -> Vec<(String, Rate)> {
    policy
        .limits
        .applying_to(&channel.name, channel.kind)
        .into_iter()
        .map(|(key, rate)| {
            (
                key.map_or_else(|| "all".into(), |k| format!("ch:{k}")),
                rate,
            )
        })
        .collect()
}
