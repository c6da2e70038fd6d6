//! Channels: the ways a notification goes out (contract §4), one file per kind.
//! Each adapter sends one rendered notification to one address and
//! classifies the provider's answer as a `SendOutcome`, by a table that sits
//! at the top of its file. This module adds what every kind shares: one HTTP
//! connection pool, per-channel outbound throughput, and a circuit breaker
//! that stops hammering a provider that said the configuration is wrong.

pub mod email;
pub mod settings;
pub mod sms;
pub mod telegram;
pub mod texts;
pub mod vk;
pub mod webhook;
pub mod whatsapp;

pub use crate::segments::{SmsEncoding, sms_segments};
pub use settings::{ChannelConfig, ChannelSettings};

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::Clock as _;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::core::{ChannelKind, Rate, SendOrder, SendOutcome};
use crate::notification::Notification;

/// One send, as an adapter sees it.
pub struct Outgoing<'a> {
    pub notification: &'a Notification,
    pub order: &'a SendOrder,
    pub channel: &'a ChannelConfig,
    /// The customer's address on this channel (`None` for a webhook without one).
    pub contact: Option<&'a str>,
    /// Where customers reach tracking links (`http.public_url`).
    pub public_url: &'a str,
    /// Until when this send's tracking links record (`email::tracking_until`).
    pub tracking_until_ms: i64,
    /// When the send was decided, by the daemon's clock (which tests move):
    /// the circuit breaker's time.
    pub now_ms: i64,
    /// What this send says, placeholders filled in (`texts`).
    pub texts: &'a texts::Texts<'a>,
}

impl Outgoing<'_> {
    /// The text of this send (`Notification::step_texts`: the step's, the channel's,
    /// the kind's, else the common one), filled in.
    pub fn text(&self) -> &str {
        &self.texts.text
    }

    /// The subject of this send, if one is given.
    pub fn subject(&self) -> Option<&str> {
        self.texts.subject.as_deref()
    }

    /// The HTML body of this send, if one is given.
    pub fn html(&self) -> Option<&str> {
        self.texts.html.as_deref()
    }

    /// A key that is the same for every attempt of this step, for providers
    /// that deduplicate (VK `random_id`, SMSC `id`, email `Message-ID`).
    ///
    /// An opaque key, not a step number: `<notification id>:<step index
    /// from 0>`, while every step number people read counts from 1. It must
    /// stay byte for byte what earlier versions sent (the webhook's
    /// `Idempotency-Key`, WhatsApp's `biz_opaque_callback_data`, and the
    /// VK `random_id` and SMSC `id` derived from it): a send retried across
    /// an upgrade must carry the key of its first attempt, or the receiver
    /// delivers it twice.
    pub fn idempotency_key(&self) -> String {
        step_key(&self.notification.id, self.order.step)
    }
}

/// `Outgoing::idempotency_key`: `<notification id>:<step index from 0>`.
pub fn step_key(notification_id: &str, step_index: u8) -> String {
    format!("{notification_id}:{step_index}")
}

/// Milliseconds of `d`, saturating (a `Retry-After` of 2^64 s must not wrap).
fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A provider URL, parsed once and then kept: every send to a channel uses
/// the same one, and parsing it cost more than the rest of building the
/// request. `None` when it does not parse (the caller then passes the
/// string on, for the HTTP client's own error).
fn parsed_url(url: &str) -> Option<reqwest::Url> {
    /// Past this many (a reload with ever new URLs), start over.
    const MOST: usize = 256;
    static PARSED: Mutex<BTreeMap<String, reqwest::Url>> = Mutex::new(BTreeMap::new());
    let mut parsed = PARSED.lock().ok()?;
    if let Some(u) = parsed.get(url) {
        return Some(u.clone());
    }
    let u = reqwest::Url::parse(url).ok()?;
    if parsed.len() >= MOST {
        parsed.clear();
    }
    parsed.insert(url.to_owned(), u.clone());
    Some(u)
}

/// `http.post(url)`, with the URL parsed once (`parsed_url`).
pub fn post(http: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
    match parsed_url(url) {
        Some(u) => http.post(u),
        None => http.post(url),
    }
}

/// Whether a send got its share of the channel's throughput.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Taken, after waiting `waited` (zero when there was room at once).
    Now { waited: Duration },
    /// No room within the time allowed; the channel has room in `wait`.
    NoRoom { wait: Duration },
}

/// Outbound throughput limiters by channel and rate (a reload may change the rate).
type Throttles = HashMap<(String, Rate), Arc<DefaultDirectRateLimiter>>;

/// How long a channel stays closed after a provider said it is misconfigured.
pub const BREAKER_OPEN: Duration = Duration::from_secs(60);

/// Sends on any configured channel.
#[derive(Clone)]
pub struct Outbound {
    http: reqwest::Client,
    pub email: email::Transports,
    throttles: Arc<Mutex<Throttles>>,
    /// Channel → (open until, in ms on the daemon's clock; the provider's reason).
    breakers: Arc<Mutex<HashMap<String, (i64, String)>>>,
}

impl Default for Outbound {
    fn default() -> Self {
        Self::new()
    }
}

impl Outbound {
    pub fn new() -> Self {
        // Keep as many idle connections as sends run at once (the
        // scheduler's concurrency): a smaller pool closes and reopens a
        // connection per send under load (thousands of TIME_WAITs a second).
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Outbound {
            http,
            email: email::Transports::default(),
            throttles: Arc::default(),
            breakers: Arc::default(),
        }
    }

    /// Sends one step, once the channel's throughput allows, and classifies
    /// the provider's answer.
    pub async fn send(&self, out: &Outgoing<'_>) -> SendOutcome {
        if let Some(open) = self.breaker_outcome(out.channel, out.now_ms) {
            return open;
        }
        if let Some(limiter) = self.throttle(out.channel) {
            limiter.until_ready().await;
        }
        self.send_admitted(out).await
    }

    /// Takes one send's share of the channel's throughput if it is free at
    /// once (always, for a channel without a `rate`, and none while its
    /// circuit is open: that send fails at once); the send then goes out
    /// with `send_admitted`, without waiting.
    pub fn try_admit(&self, channel: &ChannelConfig, now_ms: i64) -> bool {
        self.open_breaker(&channel.name, now_ms).is_some()
            || self.throttle(channel).is_none_or(|l| l.check().is_ok())
    }

    /// Takes one send's share of the channel's throughput, waiting for it at
    /// most `max_wait` (a send must go out inside its window or not at
    /// all). A channel without a `rate`, or whose circuit is open (the send
    /// then fails at once), is admitted at once.
    pub async fn admit_within(
        &self,
        channel: &ChannelConfig,
        max_wait: Duration,
        now_ms: i64,
    ) -> Admission {
        let started = std::time::Instant::now();
        let Some(limiter) = self.throttle(channel) else {
            return Admission::Now {
                waited: Duration::ZERO,
            };
        };
        if self.open_breaker(&channel.name, now_ms).is_some() {
            return Admission::Now {
                waited: Duration::ZERO,
            };
        }
        // `waited` stays zero unless it slept: the caller reads the
        // receipts again only after a real wait.
        let mut waited = Duration::ZERO;
        loop {
            let wait = match limiter.check() {
                Ok(()) => return Admission::Now { waited },
                Err(not_until) => not_until.wait_time_from(limiter.clock().now()),
            };
            if started.elapsed() + wait > max_wait {
                return Admission::NoRoom { wait };
            }
            // Another send may take the slot first: then look again.
            tokio::time::sleep(wait).await;
            waited = started.elapsed();
        }
    }

    /// `send` for a send whose throughput `try_admit` has already taken.
    pub async fn send_admitted(&self, out: &Outgoing<'_>) -> SendOutcome {
        let name = &out.channel.name;
        if let Some(open) = self.breaker_outcome(out.channel, out.now_ms) {
            return open;
        }
        let outcome = match out.channel.kind {
            ChannelKind::Webhook => webhook::send(&self.http, out).await,
            ChannelKind::Vk => vk::send(&self.http, out).await,
            ChannelKind::Sms => sms::send(&self.http, out).await,
            ChannelKind::Email => email::send(&self.email, out).await,
            ChannelKind::Telegram => telegram::send(&self.http, out).await,
            ChannelKind::Whatsapp => whatsapp::send(&self.http, out).await,
        };
        let outcome = scrubbed(outcome);
        if let SendOutcome::Misconfigured { reason } = &outcome {
            self.trip(name, reason, out.now_ms);
        }
        outcome
    }

    /// The outcome of a send while the channel's circuit is open.
    fn breaker_outcome(&self, channel: &ChannelConfig, now_ms: i64) -> Option<SendOutcome> {
        let reason = self.open_breaker(&channel.name, now_ms)?;
        Some(SendOutcome::Misconfigured {
            reason: format!("circuit open: {reason}"),
        })
    }

    /// Whether the channel's circuit is open: its sends fail at once,
    /// without a request (and need no throughput).
    pub fn is_open(&self, channel: &ChannelConfig, now_ms: i64) -> bool {
        self.breakers
            .lock()
            .ok()
            .and_then(|b| b.get(&channel.name).map(|(until_ms, _)| now_ms < *until_ms))
            .unwrap_or(false)
    }

    fn open_breaker(&self, channel: &str, now_ms: i64) -> Option<String> {
        let mut breakers = self.breakers.lock().ok()?;
        match breakers.get(channel) {
            Some((until_ms, reason)) if now_ms < *until_ms => Some(reason.clone()),
            Some(_) => {
                // Half-open: let the next send find out whether it was fixed.
                breakers.remove(channel);
                None
            }
            None => None,
        }
    }

    fn trip(&self, channel: &str, reason: &str, now_ms: i64) {
        if reason.starts_with("circuit open") {
            return;
        }
        tracing::error!(
            channel,
            reason,
            open_for_s = BREAKER_OPEN.as_secs(),
            "provider says the channel is misconfigured; stopping sends on it for a while"
        );
        if let Ok(mut b) = self.breakers.lock() {
            b.insert(
                channel.to_owned(),
                (now_ms + BREAKER_OPEN.as_millis() as i64, reason.to_owned()),
            );
        }
    }

    fn throttle(&self, channel: &ChannelConfig) -> Option<Arc<DefaultDirectRateLimiter>> {
        let rate = channel.rate?;
        let mut throttles = self.throttles.lock().ok()?;
        let key = (channel.name.clone(), rate);
        if let Some(l) = throttles.get(&key) {
            return Some(l.clone());
        }
        let burst = NonZeroU32::new(rate.count)?;
        let period = Duration::from_millis((rate.per_ms as u64 / rate.count as u64).max(1));
        let quota = Quota::with_period(period)?.allow_burst(burst);
        let limiter = Arc::new(RateLimiter::direct(quota));
        throttles.insert(key, limiter.clone());
        Some(limiter)
    }
}

/// The outcome with contacts masked in its reason. Every send passes here,
/// and a reason becomes a timeline entry, a log line, an events-stream entry
/// and `cascade status` output, while providers like to repeat the address
/// they refused (`550 5.1.1 <ivan@example.ru>: Recipient address rejected`).
fn scrubbed(outcome: SendOutcome) -> SendOutcome {
    let scrub = |reason: String| match crate::pii::scrub(&reason) {
        std::borrow::Cow::Borrowed(_) => reason,
        std::borrow::Cow::Owned(masked) => masked,
    };
    match outcome {
        SendOutcome::Transient {
            reason,
            retry_after_ms,
        } => SendOutcome::Transient {
            reason: scrub(reason),
            retry_after_ms,
        },
        SendOutcome::Permanent { reason } => SendOutcome::Permanent {
            reason: scrub(reason),
        },
        SendOutcome::Misconfigured { reason } => SendOutcome::Misconfigured {
            reason: scrub(reason),
        },
        SendOutcome::Ambiguous { reason } => SendOutcome::Ambiguous {
            reason: scrub(reason),
        },
        sent_or_limited @ (SendOutcome::Sent { .. } | SendOutcome::RateLimited { .. }) => {
            sent_or_limited
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::webhook::WebhookSettings;
    use crate::core::Rate;

    /// The keys a receiver deduplicates a retried send by, pinned byte for
    /// byte: derived from the step's index from 0, they must not change with
    /// the step numbers people read (from 1), nor across upgrades.
    #[test]
    fn step_keys_are_opaque_and_stable_across_versions() {
        let first = step_key("order-1001:delayed", 0);
        assert_eq!(first, "order-1001:delayed:0");
        assert_eq!(vk::random_id(&first), 315_475_945);
        assert_eq!(sms::numeric_id(&first), 315_475_947);
        assert_eq!(
            email::message_id("order-1001:delayed", 0, "shop.example"),
            "<f642e07874d9d2cf8850361500536b42@shop.example>"
        );
    }

    #[tokio::test]
    async fn admission_says_it_waited_only_when_it_did() {
        let settings = ChannelSettings::Webhook(WebhookSettings {
            url: "http://127.0.0.1:9/unused".into(),
            secret: None,
        });
        let mut channel = settings::test_channel(ChannelKind::Webhook, settings);
        channel.rate = Some(Rate {
            count: 1,
            per_ms: 200,
        });
        let outbound = Outbound::new();
        let window = Duration::from_secs(5);
        // Room at once: no wait, so the worker reads no receipts again.
        assert_eq!(
            outbound.admit_within(&channel, window, 0).await,
            Admission::Now {
                waited: Duration::ZERO
            }
        );
        // The next one waits for the rate.
        let Admission::Now { waited } = outbound.admit_within(&channel, window, 0).await else {
            panic!("room within 5 s");
        };
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        // No room inside a window shorter than the wait.
        assert!(matches!(
            outbound
                .admit_within(&channel, Duration::from_millis(10), 0)
                .await,
            Admission::NoRoom { .. }
        ));
    }
}
