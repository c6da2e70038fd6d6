//! The provider fakes, started in process, with the configured channels
//! pointed at them: `demo` sends through the real adapters (`Outbound`) over
//! loopback, so what it shows is what the daemon would do with real providers.

use std::collections::BTreeMap;

use crate::channels::email::TlsMode;
use crate::channels::sms::Provider;
use crate::channels::{ChannelConfig, ChannelSettings, Outbound, Outgoing};
use crate::config::Catalog;
use crate::core::{SendOrder, SendOutcome};
use crate::dev::fakes::script::Script;
use crate::dev::fakes::{
    smsc::FakeSmsc, smsru::FakeSmsRu, smtp, telegram::FakeTelegram, vk::FakeVk,
    webhook::FakeWebhook, whatsapp::FakeWhatsApp,
};
use crate::notification::Notification;

/// Fakes, rewired channels and the adapters, on their own small runtime.
pub struct Rig {
    runtime: tokio::runtime::Runtime,
    outbound: Outbound,
    /// The catalog's channels, pointed at the fakes.
    pub channels: BTreeMap<String, ChannelConfig>,
    /// Per channel: the script of the fake its sends reach first.
    scripts: BTreeMap<String, Script>,
    public_url: String,
    pub vk: FakeVk,
    pub smsru: FakeSmsRu,
    pub smsc: FakeSmsc,
    pub smtp: smtp::FakeSmtp,
    pub telegram: FakeTelegram,
    pub whatsapp: FakeWhatsApp,
    pub webhook: FakeWebhook,
}

impl Rig {
    pub fn start(catalog: &Catalog) -> std::io::Result<Rig> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let (vk, smsru, smsc, smtp, telegram, whatsapp, webhook) = runtime.block_on(async {
            Ok::<_, std::io::Error>((
                FakeVk::start().await,
                FakeSmsRu::start().await,
                FakeSmsc::start().await,
                smtp::start().await?,
                FakeTelegram::start().await,
                FakeWhatsApp::start().await,
                FakeWebhook::start().await?,
            ))
        })?;
        let mut channels = BTreeMap::new();
        let mut scripts = BTreeMap::new();
        for (name, config) in &catalog.channels {
            let mut c = config.clone();
            // The virtual clock runs far ahead of real time: a real-time
            // throughput limit would only slow the play down.
            c.rate = None;
            let script = match &mut c.settings {
                ChannelSettings::Vk(s) => {
                    s.base_url = Some(vk.base_url());
                    vk.script().clone()
                }
                ChannelSettings::Sms(s) => {
                    // Both gateways, so a failing primary hands over to the backup.
                    s.provider = None;
                    s.providers = Some(vec![Provider::SmsRu, Provider::Smsc]);
                    s.smsru_base_url = Some(smsru.base_url().to_owned());
                    s.smsc_base_url = Some(smsc.base_url().to_owned());
                    smsru.script().clone()
                }
                ChannelSettings::Email(s) => {
                    s.shape.host = smtp.host();
                    s.shape.port = smtp.port();
                    s.shape.tls = TlsMode::None;
                    s.shape.username.clear();
                    s.shape.password.clear();
                    smtp.script().clone()
                }
                ChannelSettings::Telegram(s) => {
                    s.base_url = Some(telegram.base_url());
                    telegram.script().clone()
                }
                ChannelSettings::Whatsapp(s) => {
                    s.base_url = Some(whatsapp.base_url());
                    whatsapp.script().clone()
                }
                ChannelSettings::Webhook(s) => {
                    s.url = webhook.url().to_owned();
                    webhook.script().clone()
                }
            };
            channels.insert(name.clone(), c);
            scripts.insert(name.clone(), script);
        }
        Ok(Rig {
            runtime,
            outbound: Outbound::new(),
            channels,
            scripts,
            public_url: catalog.settings.http.public_url.clone(),
            vk,
            smsru,
            smsc,
            smtp,
            telegram,
            whatsapp,
            webhook,
        })
    }

    /// The script of the fake a channel's sends reach first.
    pub fn script(&self, channel: &str) -> Option<&Script> {
        self.scripts.get(channel)
    }

    /// Sends one step through the real adapter to its fake, and waits.
    /// `now_ms` is the virtual clock's: tracking links record until the
    /// notification's expiry (or 30 days on) plus a week.
    pub fn send(&self, now_ms: i64, notification: &Notification, order: &SendOrder) -> SendOutcome {
        let Some(channel) = self.channels.get(&order.channel) else {
            return SendOutcome::Misconfigured {
                reason: format!("channel `{}` is not configured", order.channel),
            };
        };
        let contact = channel
            .rules
            .contact_key
            .as_ref()
            .and_then(|k| notification.customer.contacts.get(k))
            .map(String::as_str);
        let out = Outgoing {
            notification,
            order,
            channel,
            contact,
            public_url: &self.public_url,
            tracking_until_ms: crate::channels::email::tracking_until(
                notification.expires_at.map(|t| t.as_millisecond()),
                now_ms,
                7 * 24 * 3_600_000,
            ),
            now_ms,
        };
        self.runtime.block_on(self.outbound.send(&out))
    }

    /// Messages each fake holds, by provider, to check the summary against.
    pub fn received(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("vk", self.vk.messages().len()),
            ("sms.ru", self.smsru.received().len()),
            ("smsc", self.smsc.received().len()),
            ("smtp", self.smtp.accepted().len()),
            ("telegram", self.telegram.messages().len()),
            ("whatsapp", self.whatsapp.messages().len()),
            ("webhook", self.webhook.received().len()),
        ]
    }
}
