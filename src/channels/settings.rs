//! A configured channel and its provider settings, typed.
//!
//! Each adapter owns the settings of its kind (`vk::VkSettings`,
//! `sms::SmsSettings`, `email::EmailSettings`, …): it knows what the keys
//! mean, so it says which exist (`#[serde(deny_unknown_fields)]`), how each
//! is read, and which are secrets. `config` reads a channel file, replaces
//! `${VAR}` references and `*_file` secrets, and hands the provider keys to
//! `ChannelSettings::read` once, at load; an adapter then matches on the
//! variant and sends without parsing anything again.
//!
//! So the imports go one way: `config` uses `channels` (to build a
//! `ChannelConfig`), and `channels` never uses `config`.

use serde::de::{Deserialize, Deserializer, Error as _};

use super::{email, sms, telegram, vk, webhook, whatsapp};
use crate::core::{ChannelKind, ChannelRules, Rate};

/// A channel, validated.
#[derive(Clone, Debug)]
pub struct ChannelConfig {
    pub name: String,
    pub kind: ChannelKind,
    pub description: String,
    pub rules: ChannelRules,
    /// `contact = "none"` was written: the channel reads no contact on
    /// purpose (a webhook whose receiver looks the customer up itself).
    pub no_contact_meant: bool,
    /// Price per message, or per SMS segment when `cost_per = "segment"`.
    pub cost: Option<f64>,
    pub cost_per_segment: bool,
    pub timeout_ms: i64,
    /// Outbound throughput to the provider, per instance.
    pub rate: Option<Rate>,
    /// Longest text the channel takes, in characters.
    pub max_length: Option<usize>,
    /// SMS only: most segments one message may use.
    pub max_segments: Option<u32>,
    /// The provider keys; the variant is always the one of `kind`.
    pub settings: ChannelSettings,
}

/// The provider settings of one channel, by kind.
#[derive(Clone, Debug)]
pub enum ChannelSettings {
    Vk(vk::VkSettings),
    Sms(sms::SmsSettings),
    Email(email::EmailSettings),
    Telegram(telegram::TelegramSettings),
    Whatsapp(whatsapp::WhatsappSettings),
    Webhook(webhook::WebhookSettings),
}

impl ChannelSettings {
    /// Reads the provider keys of a `kind` channel. The outer error is the
    /// deserializer's (an unknown key, a wrong value: it knows where); the
    /// inner one is a sentence about keys that do not combine.
    pub fn read<'de, D: Deserializer<'de>>(
        kind: ChannelKind,
        keys: D,
    ) -> Result<Result<ChannelSettings, String>, D::Error> {
        Ok(match kind {
            ChannelKind::Vk => Ok(ChannelSettings::Vk(vk::VkSettings::deserialize(keys)?)),
            ChannelKind::Sms => sms::SmsSettings::deserialize(keys)?
                .checked()
                .map(ChannelSettings::Sms),
            ChannelKind::Email => {
                email::EmailSettings::from_file(email::EmailFile::deserialize(keys)?)
                    .map(ChannelSettings::Email)
            }
            ChannelKind::Telegram => Ok(ChannelSettings::Telegram(
                telegram::TelegramSettings::deserialize(keys)?,
            )),
            ChannelKind::Whatsapp => Ok(ChannelSettings::Whatsapp(
                whatsapp::WhatsappSettings::deserialize(keys)?,
            )),
            ChannelKind::Webhook => Ok(ChannelSettings::Webhook(
                webhook::WebhookSettings::deserialize(keys)?,
            )),
        })
    }

    pub fn kind(&self) -> ChannelKind {
        match self {
            ChannelSettings::Vk(_) => ChannelKind::Vk,
            ChannelSettings::Sms(_) => ChannelKind::Sms,
            ChannelSettings::Email(_) => ChannelKind::Email,
            ChannelSettings::Telegram(_) => ChannelKind::Telegram,
            ChannelSettings::Whatsapp(_) => ChannelKind::Whatsapp,
            ChannelSettings::Webhook(_) => ChannelKind::Webhook,
        }
    }

    /// Whether `key` is a secret of `kind`, and so may be read from `<key>_file`.
    pub fn is_secret(kind: ChannelKind, key: &str) -> bool {
        fn has<S>(list: &[Secret<S>], key: &str) -> bool {
            list.iter().any(|s| s.key == key)
        }
        match kind {
            ChannelKind::Vk => has(vk::SECRETS, key),
            ChannelKind::Sms => has(sms::SECRETS, key),
            ChannelKind::Email => has(email::SECRETS, key),
            ChannelKind::Telegram => has(telegram::SECRETS, key),
            ChannelKind::Whatsapp => has(whatsapp::SECRETS, key),
            ChannelKind::Webhook => has(webhook::SECRETS, key),
        }
    }

    /// The secrets this channel has set and uses, with their values.
    pub fn secrets_in_use(&self) -> Vec<SecretInUse<'_>> {
        fn in_use<'a, S>(list: &[Secret<S>], s: &'a S) -> Vec<SecretInUse<'a>> {
            list.iter()
                .filter_map(|d| {
                    Some(SecretInUse {
                        key: d.key,
                        role: d.role,
                        off_when_empty: d.off_when_empty,
                        value: (d.value)(s)?,
                    })
                })
                .collect()
        }
        match self {
            ChannelSettings::Vk(s) => in_use(vk::SECRETS, s),
            ChannelSettings::Sms(s) => in_use(sms::SECRETS, s),
            ChannelSettings::Email(s) => in_use(email::SECRETS, s),
            ChannelSettings::Telegram(s) => in_use(telegram::SECRETS, s),
            ChannelSettings::Whatsapp(s) => in_use(whatsapp::SECRETS, s),
            ChannelSettings::Webhook(s) => in_use(webhook::SECRETS, s),
        }
    }

    pub fn as_vk(&self) -> Option<&vk::VkSettings> {
        match self {
            ChannelSettings::Vk(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_sms(&self) -> Option<&sms::SmsSettings> {
        match self {
            ChannelSettings::Sms(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_email(&self) -> Option<&email::EmailSettings> {
        match self {
            ChannelSettings::Email(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_telegram(&self) -> Option<&telegram::TelegramSettings> {
        match self {
            ChannelSettings::Telegram(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_whatsapp(&self) -> Option<&whatsapp::WhatsappSettings> {
        match self {
            ChannelSettings::Whatsapp(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_webhook(&self) -> Option<&webhook::WebhookSettings> {
        match self {
            ChannelSettings::Webhook(s) => Some(s),
            _ => None,
        }
    }
}

/// What a secret is for, which decides the rules it must meet
/// (`config::secrets` judges them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Checked on requests that come in, or signs requests that go out.
    Guard,
    /// Presented to a provider.
    Credential,
}

/// One secret key of a kind's settings `S`: each adapter lists its own
/// (`SECRETS`), the one place that says which keys are secrets.
pub struct Secret<S> {
    pub key: &'static str,
    pub role: Role,
    /// Documented as "empty: this feature is off" (no tracking, no bounce
    /// endpoint, no SMTP AUTH, no `Authorization` header).
    pub off_when_empty: bool,
    /// Its value when set and in use by the channel (an SMS credential only
    /// for the gateways it sends through, an SMTP password only with a
    /// username).
    pub value: fn(&S) -> Option<&str>,
}

/// A secret a channel has set and uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretInUse<'a> {
    pub key: &'static str,
    pub role: Role,
    pub off_when_empty: bool,
    pub value: &'a str,
}

/// An optional `http(s)://` base address, checked at load and kept without
/// a trailing `/`, so a send only appends its path.
pub fn base_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    http_url(&text).map(Some).map_err(D::Error::custom)
}

/// A required `http(s)://` address, checked at load.
pub fn url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    http_url(&text)
        .map(|_| text.trim().to_owned())
        .map_err(D::Error::custom)
}

fn http_url(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    match reqwest::Url::parse(trimmed) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {
            Ok(trimmed.trim_end_matches('/').to_owned())
        }
        _ => Err(format!(
            "`{text}` is not an http(s) address; write one like \"https://api.example.ru\""
        )),
    }
}

/// Provider keys from `key = value` pairs, for the adapters' unit tests.
#[cfg(test)]
pub(crate) fn from_pairs(
    kind: ChannelKind,
    pairs: &[(&str, &str)],
) -> Result<ChannelSettings, String> {
    let table: toml::Table = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), toml::Value::String(v.to_string())))
        .collect();
    ChannelSettings::read(kind, toml::Value::Table(table)).map_err(|e| e.to_string())?
}

/// A channel of `kind` with `settings`, for the adapters' unit tests.
#[cfg(test)]
pub(crate) fn test_channel(kind: ChannelKind, settings: ChannelSettings) -> ChannelConfig {
    ChannelConfig {
        name: kind.as_str().into(),
        kind,
        description: String::new(),
        rules: ChannelRules {
            kind,
            contact_key: kind.default_contact_key().map(str::to_owned),
            retry: Default::default(),
            on_uncertain: Default::default(),
        },
        no_contact_meant: false,
        cost: None,
        cost_per_segment: false,
        timeout_ms: 1_000,
        rate: None,
        max_length: None,
        max_segments: None,
        settings,
    }
}
