//! Per-customer sliding-window limits in memory: `limit.lua` step for step.
//! Per scope (`all`, `ch:<key>`) of a customer, its sends (member -> the
//! time it was taken), shared by every limit on the scope whatever its
//! window, and the longest window counted on it lately ("keep", at least
//! `KEEP_AT_LEAST_MS`), which bounds what may be trimmed. Both expire like
//! their Redis keys, on the store's clock.

use std::collections::HashMap;

use super::alive;
use crate::core::Rate;
use crate::runtime::store::limits::KEEP_AT_LEAST_MS;

/// (customer, scope).
type ScopeKey = (String, String);

#[derive(Default)]
pub(super) struct Limits {
    sends: HashMap<ScopeKey, Sends>,
    /// The longest window lately, and when that expires.
    keeps: HashMap<ScopeKey, (i64, i64)>,
}

/// A scope's sends (a sorted set in Redis).
struct Sends {
    taken_ms: HashMap<String, i64>,
    expires_at_ms: i64,
}

/// One limit as counted for a take: its sends within the window now.
struct Counted {
    count: usize,
    window_ms: i64,
    /// (member, taken at).
    recent: Vec<(String, i64)>,
}

impl Limits {
    /// Takes one send from every limit in `scopes`, or tells when it would
    /// fit (`Some(ms)`); nothing is taken then.
    pub fn take(
        &mut self,
        customer: &str,
        scopes: &[(String, Rate)],
        member: &str,
        now_ms: i64,
        clock_ms: i64,
    ) -> Option<i64> {
        let mut limits = Vec::with_capacity(scopes.len());
        let mut keeps = Vec::with_capacity(scopes.len());
        for (scope, rate) in scopes {
            let key = (customer.to_owned(), scope.clone());
            let keep = self.keep(&key, rate.per_ms, clock_ms);
            let recent = self.trim(&key, now_ms, keep, rate.per_ms, clock_ms);
            limits.push(Counted {
                count: rate.count as usize,
                window_ms: rate.per_ms,
                recent,
            });
            keeps.push((key, keep));
        }
        if !fits(&limits, member, now_ms) {
            return Some(not_before(&limits, member, now_ms));
        }
        for (key, keep) in keeps {
            let sends = self.sends.entry(key).or_insert_with(|| Sends {
                taken_ms: HashMap::new(),
                expires_at_ms: 0,
            });
            sends.taken_ms.insert(member.to_owned(), now_ms);
            sends.expires_at_ms = clock_ms + keep;
        }
        None
    }

    /// Gives back `member` in every scope (`ZREM`).
    pub fn release(
        &mut self,
        customer: &str,
        scopes: &[(String, Rate)],
        member: &str,
        clock_ms: i64,
    ) {
        for (scope, _) in scopes {
            let key = (customer.to_owned(), scope.clone());
            if let Some(sends) = self.live_sends(&key, clock_ms) {
                sends.taken_ms.remove(member);
                if sends.taken_ms.is_empty() {
                    self.sends.remove(&key);
                }
            }
        }
    }

    /// The scope's keep for a limit of `window_ms`, remembered (also when
    /// the send is blocked: its retry counts over this window).
    fn keep(&mut self, key: &ScopeKey, window_ms: i64, clock_ms: i64) -> i64 {
        let kept = self
            .keeps
            .get(key)
            .filter(|(_, at)| alive(Some(*at), clock_ms))
            .map_or(0, |(keep, _)| *keep);
        let keep = window_ms.max(KEEP_AT_LEAST_MS).max(kept);
        self.keeps.insert(key.clone(), (keep, clock_ms + keep));
        keep
    }

    fn live_sends(&mut self, key: &ScopeKey, clock_ms: i64) -> Option<&mut Sends> {
        if self
            .sends
            .get(key)
            .is_some_and(|s| !alive(Some(s.expires_at_ms), clock_ms))
        {
            self.sends.remove(key);
        }
        self.sends.get_mut(key)
    }

    /// Drops the scope's sends older than `keep`, renews its lifetime, and
    /// returns those within `window_ms` of now, earliest first.
    fn trim(
        &mut self,
        key: &ScopeKey,
        now_ms: i64,
        keep: i64,
        window_ms: i64,
        clock_ms: i64,
    ) -> Vec<(String, i64)> {
        let Some(sends) = self.live_sends(key, clock_ms) else {
            return Vec::new();
        };
        sends.taken_ms.retain(|_, at| *at > now_ms - keep);
        if sends.taken_ms.is_empty() {
            self.sends.remove(key);
            return Vec::new();
        }
        sends.expires_at_ms = clock_ms + keep;
        let mut recent: Vec<(String, i64)> = sends
            .taken_ms
            .iter()
            .filter(|(_, at)| **at > now_ms - window_ms)
            .map(|(m, at)| (m.clone(), *at))
            .collect();
        recent.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        recent
    }
}

/// Does the send fit every limit at `at_ms`: fewer than `count` sends less
/// than the window before it, or it holds a place itself (a retry)?
fn fits(limits: &[Counted], member: &str, at_ms: i64) -> bool {
    limits.iter().all(|l| {
        let within = l.recent.iter().filter(|(_, t)| at_ms - t < l.window_ms);
        let (mut n, mut mine) = (0, false);
        for (m, _) in within {
            n += 1;
            mine = mine || m == member;
        }
        mine || n < l.count
    })
}

/// It fits again only when some send leaves a window: the first such
/// moment at which it fits them all (else the last of them).
fn not_before(limits: &[Counted], member: &str, now_ms: i64) -> i64 {
    let mut leaving: Vec<i64> = limits
        .iter()
        .flat_map(|l| l.recent.iter().map(move |(_, t)| t + l.window_ms))
        .collect();
    leaving.sort_unstable();
    leaving
        .iter()
        .copied()
        .find(|at| *at > now_ms && fits(limits, member, *at))
        .or(leaving.last().copied())
        // Not reached: a blocked send has a full window, which has sends.
        .unwrap_or(now_ms)
}
