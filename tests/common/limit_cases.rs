//! The random per-customer limit cases two property tests share:
//! `limit_script` (`limit.lua` against a model of the rule) and
//! `store_contract` (the Redis and memory stores answering alike).

use std::collections::BTreeMap;

use proptest::prelude::*;

use cascade::channels::ChannelSettings;
use cascade::channels::webhook::WebhookSettings;
use cascade::config::ChannelConfig;
use cascade::core::{ChannelKind, ChannelRules, Limits, OnUncertain, Policy, Rate};

const MIN: i64 = 60_000;

/// Channels a send can go on; `email` has no limit of its own.
pub const CHANNELS: [(&str, ChannelKind); 3] = [
    ("sms", ChannelKind::Sms),
    ("vk", ChannelKind::Vk),
    ("email", ChannelKind::Email),
];
/// Sends (`<notification id>:<step>`) a case takes and gives back.
pub const MEMBERS: [&str; 4] = ["n1:0", "n1:1", "n2:0", "n3:0"];

/// At most `count` sends per `window_ms`.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub count: usize,
    pub window_ms: i64,
}

/// A case's limits: all channels together, and SMS and VK each.
#[derive(Clone, Debug)]
pub struct CaseLimits {
    pub all: Option<Window>,
    pub sms: Option<Window>,
    pub vk: Option<Window>,
}

impl CaseLimits {
    /// A reload changes limit `limit`'s count (0: all channels, 1: SMS,
    /// 2: VK); its window stays.
    pub fn recount(&mut self, limit: usize, count: usize) {
        let w = match limit {
            0 => &mut self.all,
            1 => &mut self.sms,
            _ => &mut self.vk,
        };
        if let Some(w) = w {
            w.count = count;
        }
    }
}

#[derive(Clone, Debug)]
pub enum Op {
    /// The clock moves on `after_ms`, then a send is taken.
    Take {
        after_ms: i64,
        member: usize,
        channel: usize,
        policy: usize,
    },
    /// A send is taken at the moment the last blocked take was told (the
    /// daemon's deferred retry), or now if that has passed.
    TakeWhenTold {
        member: usize,
        channel: usize,
        policy: usize,
    },
    /// A taken send did not reach the customer: it is given back.
    Release {
        member: usize,
        channel: usize,
        policy: usize,
    },
    /// A reload changes a limit's count (its window stays): a lower count
    /// finds more sends in the window than it allows.
    Recount { limit: usize, count: usize },
}

pub fn window() -> impl Strategy<Value = Window> {
    (1usize..=3, 1i64..=4).prop_map(|(count, minutes)| Window {
        count,
        window_ms: minutes * MIN,
    })
}

pub fn limits() -> impl Strategy<Value = CaseLimits> {
    let maybe = || proptest::option::weighted(0.85, window());
    (maybe(), maybe(), maybe()).prop_map(|(all, sms, vk)| CaseLimits { all, sms, vk })
}

pub fn op() -> impl Strategy<Value = Op> {
    // Steps of half a minute (windows are whole minutes) land sends exactly
    // on window edges; a millisecond either side probes the edge itself.
    let after_ms = prop_oneof![
        (0i64..=4).prop_map(|n| n * MIN / 2),
        (1i64..=4, prop_oneof![Just(-1i64), Just(1)]).prop_map(|(n, e)| n * MIN / 2 + e),
        0i64..3 * MIN,
    ];
    let (member, channel, policy) = (0..MEMBERS.len(), 0..CHANNELS.len(), 0..2usize);
    prop_oneof![
        6 => (after_ms, member.clone(), channel.clone(), policy.clone()).prop_map(
            |(after_ms, member, channel, policy)| Op::Take { after_ms, member, channel, policy }
        ),
        2 => (member.clone(), channel.clone(), policy.clone())
            .prop_map(|(member, channel, policy)| Op::TakeWhenTold { member, channel, policy }),
        1 => (member, channel, policy)
            .prop_map(|(member, channel, policy)| Op::Release { member, channel, policy }),
        2 => (0usize..3, 1usize..=3).prop_map(|(limit, count)| Op::Recount { limit, count }),
    ]
}

pub fn rate(w: Window) -> Rate {
    Rate {
        count: w.count as u32,
        per_ms: w.window_ms,
    }
}

pub fn policy(limits: &CaseLimits) -> Policy {
    let per_channel = [("sms", limits.sms), ("vk", limits.vk)]
        .into_iter()
        .filter_map(|(k, w)| Some((k.to_owned(), rate(w?))))
        .collect();
    Policy {
        name: "limited".into(),
        description: String::new(),
        stop_on: vec![],
        expire_after_ms: None,
        steps: vec![],
        limits: Limits {
            per_customer: limits.all.map(rate),
            per_channel,
        },
        quiet_hours: BTreeMap::new(),
        quiet_off: Default::default(),
        answer: None,
        awake_hours: None,
    }
}

pub fn channel(name: &str, kind: ChannelKind) -> ChannelConfig {
    ChannelConfig {
        name: name.into(),
        kind,
        description: String::new(),
        rules: ChannelRules {
            kind,
            contact_key: None,
            retry: Default::default(),
            on_uncertain: OnUncertain::Skip,
        },
        no_contact_meant: false,
        cost: None,
        cost_per_segment: false,
        timeout_ms: 1_000,
        rate: None,
        max_length: None,
        max_segments: None,
        // The store reads no provider settings; any will do.
        settings: ChannelSettings::Webhook(WebhookSettings {
            url: "http://127.0.0.1:9/unused".into(),
            secret: None,
        }),
    }
}
