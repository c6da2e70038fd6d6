//! `sms` channels: SMS.ru, SMSC.ru, or any HTTP gateway described by a URL
//! and a body template — one provider, or an ordered failover list.
//!
//! A channel names its provider with `provider = "smsru"` (or `"smsc"`,
//! `"generic"`), or an ordered failover list with `providers = "smsru,smsc"`.
//! Each provider reads its own keys (see `smsru`, `smsc`, `generic`).
//!
//! **Failover** is deterministic and driven by the core's retries: the
//! attempts of a step (`[retry] attempts`) are spread over the providers in
//! order, in contiguous blocks (`provider_index`). With `attempts = 4` and
//! two providers, attempts 1–2 go to the first and 3–4 to the second; give a
//! channel at least as many attempts as providers. Every retry follows a
//! transient or rate-limited answer, so the message provably did not go out
//! — with one exception: when `on_uncertain = "resend"`, a retry may follow
//! an ambiguous answer, and a second provider cannot dedupe against the
//! first, so such a channel never fails over (every attempt goes to the
//! first provider). A failover list defaults to `on_uncertain = "skip"`, so
//! an ambiguous answer from SMS.ru (which does not dedupe) is recorded as
//! uncertain and nothing is sent again anywhere. Permanent and
//! misconfigured answers do not fail over: a bad number is bad everywhere,
//! and a misconfigured provider needs a human (the channel alerts and its
//! circuit opens).
//!
//! Before sending, the text's encoding and segment count are computed
//! (`sms_segments`), logged, and checked against `max_segments` — intake
//! already refuses longer texts; this guards against a configuration reload
//! in between.

mod answer;
pub mod generic;
pub mod smsc;
pub mod smsru;

use std::time::Duration;

use serde::Deserialize;
use serde::de::{Deserializer, Error as _};

use super::settings::{self, ChannelConfig, ChannelSettings, Role, Secret};
use super::{Outgoing, SmsEncoding, sms_segments};
use crate::core::{OnUncertain, SendOutcome};
use crate::pii;

pub(crate) use answer::{http_status_outcome, retry_after_ms, transport_outcome};

/// An SMS gateway this channel kind speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    SmsRu,
    Smsc,
    Generic,
}

impl Provider {
    pub fn parse(word: &str) -> Option<Provider> {
        match word.trim() {
            "smsru" => Some(Provider::SmsRu),
            "smsc" => Some(Provider::Smsc),
            "generic" => Some(Provider::Generic),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::SmsRu => "smsru",
            Provider::Smsc => "smsc",
            Provider::Generic => "generic",
        }
    }
}

/// The provider keys of an `sms` channel file. One channel may name several
/// gateways, so the keys of each sit side by side, prefixed where two
/// gateways would share a name.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsSettings {
    /// The one gateway; or `providers`, never both (`checked`).
    #[serde(default, deserialize_with = "one_provider")]
    pub provider: Option<Provider>,
    /// Gateways in failover order: `"smsru,smsc"`.
    #[serde(default, deserialize_with = "provider_list")]
    pub providers: Option<Vec<Provider>>,
    /// The base URL of the one gateway of a single-provider channel.
    #[serde(default, deserialize_with = "settings::base_url")]
    pub base_url: Option<String>,
    #[serde(default, deserialize_with = "settings::base_url")]
    pub smsru_base_url: Option<String>,
    #[serde(default, deserialize_with = "settings::base_url")]
    pub smsc_base_url: Option<String>,
    /// The sender name every gateway is given.
    #[serde(default)]
    pub sender: Option<String>,
    /// The last part of the delivery-report address (`http::callbacks::sms`).
    #[serde(default)]
    pub report_secret: Option<String>,
    /// SMS.ru: the account's key.
    #[serde(default)]
    pub api_id: Option<String>,
    /// SMSC: `apikey`, or `login` and `password`.
    #[serde(default)]
    pub login: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub apikey: Option<String>,
    /// Generic: the URL and body templates (`generic::render`), and the
    /// `Authorization` header (empty: none).
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub authorization: Option<String>,
}

/// The secrets of an `sms` channel: a gateway's credential counts only on a
/// channel that sends through that gateway.
pub const SECRETS: &[Secret<SmsSettings>] = &[
    Secret {
        key: "api_id",
        role: Role::Credential,
        off_when_empty: false,
        value: |s| s.api_id.as_deref().filter(|_| s.uses(Provider::SmsRu)),
    },
    Secret {
        key: "password",
        role: Role::Credential,
        off_when_empty: false,
        // SMSC takes `apikey` over `login` + `password`.
        value: |s| {
            s.password
                .as_deref()
                .filter(|_| s.uses(Provider::Smsc) && s.apikey.is_none())
        },
    },
    Secret {
        key: "apikey",
        role: Role::Credential,
        off_when_empty: false,
        value: |s| s.apikey.as_deref().filter(|_| s.uses(Provider::Smsc)),
    },
    Secret {
        key: "authorization",
        role: Role::Credential,
        off_when_empty: true,
        value: |s| {
            s.authorization
                .as_deref()
                .filter(|_| s.uses(Provider::Generic))
        },
    },
    Secret {
        key: "report_secret",
        role: Role::Guard,
        off_when_empty: false,
        value: |s| s.report_secret.as_deref(),
    },
];

impl SmsSettings {
    /// The settings, when they name the gateways one way; else what would be right.
    pub fn checked(self) -> Result<SmsSettings, String> {
        match (&self.provider, &self.providers) {
            (Some(_), Some(_)) => Err("set either `provider` or `providers`, not both".into()),
            (None, None) => Err(
                "an sms channel needs `provider = \"smsru\"` (or \"smsc\", \"generic\") or `providers = \"smsru,smsc\"`"
                    .into(),
            ),
            (None, Some(list)) if list.is_empty() => {
                Err("`providers` is empty; list them in order, e.g. \"smsru,smsc\"".into())
            }
            _ => Ok(self),
        }
    }

    /// The channel's providers in failover order (never empty once `checked`).
    pub fn providers(&self) -> &[Provider] {
        match (&self.provider, &self.providers) {
            (Some(one), _) => std::slice::from_ref(one),
            (None, Some(list)) => list,
            (None, None) => &[],
        }
    }

    fn uses(&self, provider: Provider) -> bool {
        self.providers().contains(&provider)
    }
}

fn provider_word(word: &str) -> Result<Provider, String> {
    Provider::parse(word).ok_or_else(|| {
        format!(
            "sms provider `{}` is not supported; use \"smsru\", \"smsc\" or \"generic\"",
            word.trim()
        )
    })
}

fn one_provider<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Provider>, D::Error> {
    let word = String::deserialize(d)?;
    provider_word(&word).map(Some).map_err(D::Error::custom)
}

fn provider_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Provider>>, D::Error> {
    let list = String::deserialize(d)?;
    list.split(',')
        .filter(|w| !w.trim().is_empty())
        .map(provider_word)
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
        .map_err(D::Error::custom)
}

/// Which provider (index into the list) takes attempt `attempt` (1-based)
/// of a step allowed `attempts` in all: contiguous blocks in order, the
/// last provider taking any attempt beyond the configured count.
pub fn provider_index(providers: usize, attempts: u8, attempt: u8) -> usize {
    if providers <= 1 {
        return 0;
    }
    let attempts = usize::from(attempts.max(1));
    let done = usize::from(attempt.max(1) - 1);
    (done * providers / attempts).min(providers - 1)
}

/// SMSC's message id for a step: `1..=2147483647`, the same for every
/// attempt of the step, so a resend is recognised (error 9) and status
/// lookups and delivery reports name it. From SHA-256, so it never changes
/// with the Rust version.
pub fn numeric_id(idempotency_key: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(idempotency_key.as_bytes());
    let n = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    n % 2_147_483_647 + 1
}

/// One attempt, as every provider adapter sees it.
pub struct Attempt<'a> {
    pub channel: &'a ChannelConfig,
    pub settings: &'a SmsSettings,
    /// Only one provider: `base_url` applies to it.
    pub single_provider: bool,
    /// E.164 as the customer gave it, e.g. `+79161234567`.
    pub phone: &'a str,
    /// The same without `+`, as the Russian gateways take it.
    pub digits: String,
    pub text: &'a str,
    pub sender: Option<&'a str>,
    /// `<notification id>:<step>`, the same for every attempt of the step.
    pub key: String,
    pub timeout: Duration,
    /// An earlier attempt of this step went to this same provider, so a
    /// "duplicate request" answer means that attempt was accepted.
    pub repeat: bool,
}

impl Attempt<'_> {
    /// The provider's base URL: its own (`<provider>_base_url`), else
    /// `base_url` for a channel with one provider, else the provider's
    /// public address.
    pub fn base_url(&self, own: Option<&str>, default: &str) -> String {
        let shared = self
            .single_provider
            .then_some(self.settings.base_url.as_deref())
            .flatten();
        own.or(shared)
            .unwrap_or(default)
            .trim_end_matches('/')
            .to_owned()
    }
}

/// Sends one SMS through the provider this attempt falls to.
pub async fn send(http: &reqwest::Client, out: &Outgoing<'_>) -> SendOutcome {
    let channel = out.channel;
    let ChannelSettings::Sms(settings) = &channel.settings else {
        return SendOutcome::Misconfigured {
            reason: "not an sms channel".into(),
        };
    };
    let list = settings.providers();
    if list.is_empty() {
        return SendOutcome::Misconfigured {
            reason: "the sms channel names no provider".into(),
        };
    }
    let Some(phone) = out.contact.filter(|p| !p.trim().is_empty()) else {
        return SendOutcome::Permanent {
            reason: "the customer has no phone number for this channel".into(),
        };
    };
    let text = out.text();
    if text.trim().is_empty() {
        return SendOutcome::Permanent {
            reason: "the notification has no text for this channel".into(),
        };
    }
    let size = TextSize::of(text);
    let notification_id = out.notification.id.as_str();
    let masked = pii::mask_phone(phone);
    if let Some(refused) = size.refused_by(channel, notification_id, &masked) {
        return refused;
    }

    let attempt = out.order.attempt.max(1);
    let (provider, repeat) = pick_provider(channel, list, attempt, notification_id);
    let request = Attempt {
        channel,
        settings,
        single_provider: list.len() == 1,
        phone,
        digits: phone.chars().filter(char::is_ascii_digit).collect(),
        text,
        sender: settings.sender.as_deref().filter(|s| !s.is_empty()),
        key: out.idempotency_key(),
        timeout: Duration::from_millis(channel.timeout_ms.max(1) as u64),
        repeat,
    };
    let outcome = match provider {
        Provider::SmsRu => smsru::send(http, &request).await,
        Provider::Smsc => smsc::send(http, &request).await,
        Provider::Generic => generic::send(http, &request).await,
    };
    let (word, reason, pmid) = describe(&outcome);
    // The gateway's answer may repeat the number.
    let reason = reason.map(pii::scrub);
    tracing::info!(
        notification_id,
        channel = %channel.name,
        provider = provider.as_str(),
        attempt,
        phone = %masked,
        encoding = size.encoding_word(),
        segments = size.segments,
        units = size.units,
        outcome = word,
        reason = reason.as_deref(),
        provider_message_id = pmid,
        "sms attempt"
    );
    outcome
}

/// A text's encoding and length in segments and in the encoding's units.
struct TextSize {
    encoding: SmsEncoding,
    segments: u32,
    units: usize,
}

impl TextSize {
    fn of(text: &str) -> TextSize {
        let (encoding, segments, units) = sms_segments(text);
        TextSize {
            encoding,
            segments,
            units,
        }
    }

    fn encoding_word(&self) -> &'static str {
        match self.encoding {
            SmsEncoding::Gsm7 => "gsm7",
            SmsEncoding::Ucs2 => "ucs2",
        }
    }

    /// Intake refuses longer texts already; this guards against a reload of
    /// the channel's `max_segments` in between.
    fn refused_by(
        &self,
        channel: &ChannelConfig,
        notification_id: &str,
        masked_phone: &str,
    ) -> Option<SendOutcome> {
        let max = channel.max_segments?;
        if self.segments <= max {
            return None;
        }
        let reason = format!(
            "the text needs {} SMS segments ({} {}); channel `{}` allows at most {max}",
            self.segments,
            self.units,
            self.encoding.unit_name(),
            channel.name
        );
        tracing::warn!(
            notification_id,
            channel = %channel.name,
            phone = %masked_phone,
            encoding = self.encoding_word(),
            segments = self.segments,
            max_segments = max,
            "sms refused: too many segments"
        );
        Some(SendOutcome::Permanent { reason })
    }
}

/// The provider attempt `attempt` goes to, and whether the previous attempt
/// went to the same one. A channel that resends an uncertain send never
/// fails over (see the module comment).
fn pick_provider(
    channel: &ChannelConfig,
    list: &[Provider],
    attempt: u8,
    notification_id: &str,
) -> (Provider, bool) {
    let attempts = channel.rules.retry.attempts;
    let may_fail_over = channel.rules.on_uncertain == OnUncertain::Skip;
    let index_of = |n: u8| {
        if may_fail_over {
            provider_index(list.len(), attempts, n)
        } else {
            0
        }
    };
    if !may_fail_over && list.len() > 1 && attempt > 1 {
        tracing::warn!(
            notification_id,
            channel = %channel.name,
            "no failover: on_uncertain = \"resend\" keeps every attempt on the first provider"
        );
    }
    let index = index_of(attempt);
    let provider = list[index.min(list.len() - 1)];
    (provider, attempt > 1 && index_of(attempt - 1) == index)
}

/// An outcome's word, reason and message id, for the log line.
fn describe(o: &SendOutcome) -> (&'static str, Option<&str>, Option<&str>) {
    match o {
        SendOutcome::Sent {
            provider_message_id,
        } => ("sent", None, provider_message_id.as_deref()),
        SendOutcome::Transient { reason, .. } => ("transient", Some(reason), None),
        SendOutcome::RateLimited { .. } => ("rate_limited", None, None),
        SendOutcome::Permanent { reason } => ("permanent", Some(reason), None),
        SendOutcome::Misconfigured { reason } => ("misconfigured", Some(reason), None),
        SendOutcome::Ambiguous { reason } => ("ambiguous", Some(reason), None),
    }
}

/// A channel with these provider keys, for the adapters' unit tests.
#[cfg(test)]
pub(crate) fn test_channel(pairs: &[(&str, &str)]) -> ChannelConfig {
    let kind = crate::core::ChannelKind::Sms;
    let settings = settings::from_pairs(kind, pairs).expect("test settings");
    settings::test_channel(kind, settings)
}

/// Sends one attempt through `provider` to a loopback server that answers
/// every request with `status` and `body`, for the adapters' unit tests.
#[cfg(test)]
pub(crate) async fn answer_with(
    provider: Provider,
    status: u16,
    body: &'static str,
) -> SendOutcome {
    use axum::http::StatusCode;
    let code = StatusCode::from_u16(status).unwrap();
    let app = axum::Router::new().fallback(move || async move { (code, body) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let channel = test_channel(&[
        ("provider", provider.as_str()),
        ("base_url", base.as_str()),
        ("url", base.as_str()),
        ("api_id", "k"),
        ("apikey", "k"),
    ]);
    let attempt = Attempt {
        channel: &channel,
        settings: channel.settings.as_sms().expect("sms settings"),
        single_provider: true,
        phone: "+79161234567",
        digits: "79161234567".into(),
        text: "hi",
        sender: None,
        key: "n:0".into(),
        timeout: Duration::from_secs(2),
        repeat: false,
    };
    let http = reqwest::Client::new();
    let outcome = match provider {
        Provider::SmsRu => smsru::send(&http, &attempt).await,
        Provider::Smsc => smsc::send(&http, &attempt).await,
        Provider::Generic => generic::send(&http, &attempt).await,
    };
    server.abort();
    outcome
}

#[cfg(test)]
mod tests;
