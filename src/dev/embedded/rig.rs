//! The provider fakes, started in process, one set per configured channel,
//! with the channels pointed at them: `demo` and `simulate` send through the
//! real adapters over loopback, so what they show is what the daemon would
//! do with real providers.

use std::collections::BTreeMap;
use std::future::Future;

use crate::channels::email::TlsMode;
use crate::channels::sms::Provider;
use crate::channels::{ChannelConfig, ChannelSettings};
use crate::config::Catalog;
use crate::dev::fakes::script::Script;
use crate::dev::fakes::{
    smsc::FakeSmsc, smsru::FakeSmsRu, smtp, telegram::FakeTelegram, vk::FakeVk,
    webhook::FakeWebhook, whatsapp::FakeWhatsApp,
};

/// The fakes one channel's sends reach.
pub enum Fakes {
    Vk(FakeVk),
    /// Both gateways: a failing primary hands over to the backup.
    Sms(FakeSmsRu, FakeSmsc),
    Email(smtp::FakeSmtp),
    Telegram(FakeTelegram),
    Whatsapp(FakeWhatsApp),
    Webhook(FakeWebhook),
}

impl Fakes {
    /// Messages the fakes hold.
    pub fn held(&self) -> usize {
        match self {
            Fakes::Vk(f) => f.messages().len(),
            Fakes::Sms(ru, c) => ru.received().len() + c.received().len(),
            Fakes::Email(f) => f.accepted().len(),
            Fakes::Telegram(f) => f.messages().len(),
            Fakes::Whatsapp(f) => f.messages().len(),
            Fakes::Webhook(f) => f.received().len(),
        }
    }

    /// The scripts of every fake here: what they answer next.
    pub fn scripts(&self) -> Vec<&Script> {
        match self {
            Fakes::Vk(f) => vec![f.script()],
            Fakes::Sms(ru, c) => vec![ru.script(), c.script()],
            Fakes::Email(f) => vec![f.script()],
            Fakes::Telegram(f) => vec![f.script()],
            Fakes::Whatsapp(f) => vec![f.script()],
            Fakes::Webhook(f) => vec![f.script()],
        }
    }
}

/// Fakes and rewired channels, on their own small runtime.
pub struct Rig {
    runtime: tokio::runtime::Runtime,
    /// The catalog, its channels pointed at the fakes.
    pub catalog: Catalog,
    /// Per channel: the fakes it sends to.
    pub fakes: BTreeMap<String, Fakes>,
}

impl Rig {
    pub fn start(catalog: &Catalog) -> std::io::Result<Rig> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let mut rewired = catalog.clone();
        let mut fakes = BTreeMap::new();
        for (name, channel) in &mut rewired.channels {
            let fake = runtime.block_on(point_at_fakes(channel))?;
            fakes.insert(name.clone(), fake);
        }
        Ok(Rig {
            runtime,
            catalog: rewired,
            fakes,
        })
    }

    /// Runs a future on the rig's runtime, where the fakes answer.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// The scripts of the fakes `channel` sends to.
    pub fn scripts(&self, channel: &str) -> Vec<&Script> {
        self.fakes.get(channel).map_or(Vec::new(), Fakes::scripts)
    }

    /// Messages each channel's fakes hold, to check a summary against.
    pub fn held(&self) -> Vec<(&str, usize)> {
        self.fakes
            .iter()
            .map(|(name, f)| (name.as_str(), f.held()))
            .collect()
    }
}

/// Starts the fakes of one channel and points the channel at them.
async fn point_at_fakes(channel: &mut ChannelConfig) -> std::io::Result<Fakes> {
    // The virtual clock runs far ahead of real time: a real-time
    // throughput limit would only slow the play down.
    channel.rate = None;
    Ok(match &mut channel.settings {
        ChannelSettings::Vk(s) => {
            let fake = FakeVk::start().await;
            s.base_url = Some(fake.base_url());
            Fakes::Vk(fake)
        }
        ChannelSettings::Sms(s) => {
            let (ru, c) = (FakeSmsRu::start().await, FakeSmsc::start().await);
            s.provider = None;
            s.providers = Some(vec![Provider::SmsRu, Provider::Smsc]);
            s.smsru_base_url = Some(ru.base_url().to_owned());
            s.smsc_base_url = Some(c.base_url().to_owned());
            Fakes::Sms(ru, c)
        }
        ChannelSettings::Email(s) => {
            let fake = smtp::start().await?;
            s.shape.host = fake.host();
            s.shape.port = fake.port();
            s.shape.tls = TlsMode::None;
            s.shape.username.clear();
            s.shape.password.clear();
            Fakes::Email(fake)
        }
        ChannelSettings::Telegram(s) => {
            let fake = FakeTelegram::start().await;
            s.base_url = Some(fake.base_url());
            Fakes::Telegram(fake)
        }
        ChannelSettings::Whatsapp(s) => {
            let fake = FakeWhatsApp::start().await;
            s.base_url = Some(fake.base_url());
            Fakes::Whatsapp(fake)
        }
        ChannelSettings::Webhook(s) => {
            let fake = FakeWebhook::start().await?;
            s.url = fake.url().to_owned();
            Fakes::Webhook(fake)
        }
    })
}
