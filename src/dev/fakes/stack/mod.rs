//! `cascade fakes`: every provider fake of this folder at once, each on its
//! own port (`base + offset`, see `Fake`), and an index on the base port
//! that lists what each one received and can send a fake's read receipt to
//! the daemon. The local stack (docker-compose.yml) points the shipped
//! channels at it through their `*_BASE_URL` variables; docs/local-stack.md
//! says how to use it.
//!
//! The fakes are the tests' own, unchanged: this only starts them on fixed
//! addresses and reads what they recorded.

mod index;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::smsc::FakeSmsc;
use super::smsru::FakeSmsRu;
use super::telegram::FakeTelegram;
use super::vk::FakeVk;
use super::webhook::FakeWebhook;
use super::whatsapp::FakeWhatsApp;
use crate::channels::ChannelSettings;
use crate::config::Catalog;

/// The index's port when none is given; the fakes follow it.
pub const BASE_PORT: u16 = 8100;

/// What listens where: `base port + offset()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fake {
    /// What each fake received, and the read buttons.
    Index,
    Vk,
    SmsRu,
    Smsc,
    Telegram,
    WhatsApp,
    /// The webhook receiver (the call-centre channel's task queue).
    Webhook,
}

impl Fake {
    pub const ALL: [Fake; 7] = [
        Fake::Index,
        Fake::Vk,
        Fake::SmsRu,
        Fake::Smsc,
        Fake::Telegram,
        Fake::WhatsApp,
        Fake::Webhook,
    ];

    pub fn offset(self) -> u16 {
        match self {
            Fake::Index => 0,
            Fake::Vk => 1,
            Fake::SmsRu => 2,
            Fake::Smsc => 3,
            Fake::Telegram => 4,
            Fake::WhatsApp => 5,
            Fake::Webhook => 6,
        }
    }

    /// Its name in the listing and in log lines.
    pub fn name(self) -> &'static str {
        match self {
            Fake::Index => "index",
            Fake::Vk => "vk",
            Fake::SmsRu => "smsru",
            Fake::Smsc => "smsc",
            Fake::Telegram => "telegram",
            Fake::WhatsApp => "whatsapp",
            Fake::Webhook => "webhook",
        }
    }

    /// The environment variable of the shipped channels/*.toml that points
    /// a channel at this fake, and the path after its address.
    pub fn variable(self) -> Option<(&'static str, &'static str)> {
        match self {
            Fake::Index => None,
            Fake::Vk => Some(("VK_BASE_URL", "/method")),
            Fake::SmsRu => Some(("SMSRU_BASE_URL", "")),
            Fake::Smsc => Some(("SMSC_BASE_URL", "")),
            Fake::Telegram => Some(("TELEGRAM_BASE_URL", "")),
            Fake::WhatsApp => Some(("WHATSAPP_BASE_URL", "")),
            Fake::Webhook => Some(("CALL_CENTRE_URL", "/tasks")),
        }
    }
}

/// Where a fake posts a receipt: the daemon's callback URL for one channel
/// and the secret that channel checks.
#[derive(Clone, Debug)]
pub struct Callback {
    pub url: String,
    pub secret: String,
}

/// The read receipts the index can send, one per messenger (`None`: no such
/// channel configured, or it has no secret to sign with).
#[derive(Clone, Debug, Default)]
pub struct Callbacks {
    pub vk: Option<Callback>,
    pub telegram: Option<Callback>,
    pub whatsapp: Option<Callback>,
}

impl Callbacks {
    /// The first channel of each kind in `catalog`, its callback on the
    /// daemon at `daemon_url` (e.g. `http://cascade:8080`), signed with its
    /// own secret: what the daemon checks is what the fake sends.
    pub fn of(catalog: &Catalog, daemon_url: &str) -> Callbacks {
        let base = daemon_url.trim_end_matches('/');
        let mut out = Callbacks::default();
        for (name, channel) in &catalog.channels {
            let target = |kind: &str, secret: &Option<String>| {
                secret.as_ref().filter(|s| !s.is_empty()).map(|s| Callback {
                    url: format!("{base}/callbacks/{kind}/{name}"),
                    secret: s.clone(),
                })
            };
            match &channel.settings {
                ChannelSettings::Vk(s) if out.vk.is_none() => {
                    out.vk = target("vk", &s.callback_secret);
                }
                ChannelSettings::Telegram(s) if out.telegram.is_none() => {
                    out.telegram = target("telegram", &s.webhook_secret);
                }
                ChannelSettings::Whatsapp(s) if out.whatsapp.is_none() => {
                    out.whatsapp = target("whatsapp", &s.app_secret);
                }
                _ => {}
            }
        }
        out
    }
}

/// How to start the fakes.
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// The address every fake binds (`0.0.0.0` in a container).
    pub bind: IpAddr,
    /// The index's port, the fakes' ports following it; 0: each on a free
    /// port of its own (the tests).
    pub base_port: u16,
    pub callbacks: Callbacks,
}

/// One receipt the index sent to the daemon, and what the daemon answered.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Sent {
    pub fake: &'static str,
    pub message: String,
    pub url: String,
    /// The daemon's HTTP status (0: it did not answer).
    pub status: u16,
}

/// Every fake, running. The fakes stop with the runtime that started them.
pub struct FakeStack {
    pub vk: FakeVk,
    pub smsru: FakeSmsRu,
    pub smsc: FakeSmsc,
    pub telegram: FakeTelegram,
    pub whatsapp: FakeWhatsApp,
    pub webhook: FakeWebhook,
    callbacks: Mutex<Callbacks>,
    addrs: Vec<(Fake, SocketAddr)>,
    sent: Mutex<Vec<Sent>>,
}

impl FakeStack {
    /// Binds every fake and the index; an error names the fake whose port
    /// was taken.
    pub async fn start(options: StackOptions) -> std::io::Result<Arc<FakeStack>> {
        let last = Fake::ALL.iter().map(|f| f.offset()).max().unwrap_or(0);
        if options.base_port.checked_add(last).is_none() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "the fakes take ports {}..={}: past 65535",
                    options.base_port,
                    u32::from(options.base_port) + u32::from(last)
                ),
            ));
        }
        // Base port 0: every fake on a free port of its own.
        let at = |fake: Fake| {
            let port = match options.base_port {
                0 => 0,
                base => base + fake.offset(),
            };
            SocketAddr::new(options.bind, port)
        };
        let named = |fake: Fake| {
            let addr = at(fake);
            move |e: std::io::Error| {
                std::io::Error::new(e.kind(), format!("fake {} on {addr}: {e}", fake.name()))
            }
        };
        let vk = FakeVk::start_on(at(Fake::Vk))
            .await
            .map_err(named(Fake::Vk))?;
        let smsru = FakeSmsRu::start_on(at(Fake::SmsRu))
            .await
            .map_err(named(Fake::SmsRu))?;
        let smsc = FakeSmsc::start_on(at(Fake::Smsc))
            .await
            .map_err(named(Fake::Smsc))?;
        let telegram = FakeTelegram::start_on(at(Fake::Telegram))
            .await
            .map_err(named(Fake::Telegram))?;
        let whatsapp = FakeWhatsApp::start_on(at(Fake::WhatsApp))
            .await
            .map_err(named(Fake::WhatsApp))?;
        let webhook = FakeWebhook::start_on(at(Fake::Webhook))
            .await
            .map_err(named(Fake::Webhook))?;
        let index = tokio::net::TcpListener::bind(at(Fake::Index))
            .await
            .map_err(named(Fake::Index))?;
        let on = |base_url: &str| {
            let port = reqwest::Url::parse(base_url)
                .ok()
                .and_then(|u| u.port())
                .unwrap_or(0);
            SocketAddr::new(options.bind, port)
        };
        let addrs = vec![
            (Fake::Index, index.local_addr()?),
            (Fake::Vk, on(&vk.base_url())),
            (Fake::SmsRu, on(smsru.base_url())),
            (Fake::Smsc, on(smsc.base_url())),
            (Fake::Telegram, on(&telegram.base_url())),
            (Fake::WhatsApp, on(&whatsapp.base_url())),
            (Fake::Webhook, on(webhook.url())),
        ];
        let stack = Arc::new(FakeStack {
            vk,
            smsru,
            smsc,
            telegram,
            whatsapp,
            webhook,
            callbacks: Mutex::new(options.callbacks),
            addrs,
            sent: Mutex::default(),
        });
        let app = index::routes(stack.clone());
        tokio::spawn(async move {
            let _ = axum::serve(index, app).await;
        });
        Ok(stack)
    }

    /// Where `fake` listens.
    pub fn addr(&self, fake: Fake) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(f, _)| *f == fake)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| SocketAddr::new(IpAddr::from([127, 0, 0, 1]), 0))
    }

    /// `http://<host>:<port>`: `host` as the daemon reaches the fakes
    /// (`fakes` in the compose stack, `127.0.0.1` on one machine).
    pub fn url(&self, fake: Fake, host: &str) -> String {
        format!("http://{host}:{}", self.addr(fake).port())
    }

    /// The variables that point the shipped channels at these fakes, as
    /// reached on `host`: `VK_BASE_URL=http://<host>:8101/method`, …
    pub fn env(&self, host: &str) -> Vec<(&'static str, String)> {
        Fake::ALL
            .iter()
            .filter_map(|&f| {
                let (name, path) = f.variable()?;
                Some((name, format!("{}{path}", self.url(f, host))))
            })
            .collect()
    }

    /// Where the read buttons send from now on (the tests learn the
    /// daemon's address only after the fakes started).
    pub fn set_callbacks(&self, callbacks: Callbacks) {
        if let Ok(mut c) = self.callbacks.lock() {
            *c = callbacks;
        }
    }

    /// Every receipt the index sent, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// What each fake received, as `GET /received.json` answers it: per
    /// fake its address and its messages, oldest first.
    pub fn received(&self) -> Value {
        let vk: Vec<Value> = self
            .vk
            .messages()
            .into_iter()
            .map(|m| json!({ "id": m.message_id.to_string(), "to": m.peer_id.to_string(), "text": m.text }))
            .collect();
        let sms = |list: Vec<super::smsru::ReceivedSms>| -> Vec<Value> {
            list.into_iter()
                .map(|m| json!({ "id": m.id, "to": m.phone, "text": m.text, "sender": m.sender }))
                .collect()
        };
        let telegram: Vec<Value> = self
            .telegram
            .messages()
            .into_iter()
            .map(|m| json!({ "id": m.message_id.to_string(), "to": m.chat_id.to_string(), "text": m.text }))
            .collect();
        let whatsapp: Vec<Value> = self
            .whatsapp
            .messages()
            .into_iter()
            .map(|m| {
                json!({ "id": m.wamid, "to": m.to, "text": whatsapp_text(&m.body), "kind": m.kind })
            })
            .collect();
        let webhook: Vec<Value> = self
            .webhook
            .received()
            .into_iter()
            .map(|r| {
                let body = r.json();
                json!({
                    "id": r.idempotency_key,
                    "to": body.pointer("/customer/id").cloned().unwrap_or(Value::Null),
                    "text": body.get("text").cloned().unwrap_or(Value::Null),
                    "body": body,
                })
            })
            .collect();
        let fake = |f: Fake, messages: Vec<Value>| json!({ "port": self.addr(f).port(), "messages": messages });
        json!({
            "vk": fake(Fake::Vk, vk),
            "smsru": fake(Fake::SmsRu, sms(self.smsru.received())),
            "smsc": fake(Fake::Smsc, sms(self.smsc.received())),
            "telegram": fake(Fake::Telegram, telegram),
            "whatsapp": fake(Fake::WhatsApp, whatsapp),
            "webhook": fake(Fake::Webhook, webhook),
            "receipts_sent": self.sent(),
        })
    }

    /// Sends the read receipt of one message a messenger fake holds to
    /// the daemon, as that provider would: VK's `message_read` event,
    /// Telegram's button press, WhatsApp's signed `read` status.
    pub async fn send_read(&self, fake: Fake, message: &str) -> Result<Sent, String> {
        let unconfigured = |what: &str| {
            format!(
                "no {what} channel to send a receipt to (start with the daemon's configuration)"
            )
        };
        let unknown = || format!("the fake {} holds no message `{message}`", fake.name());
        let callbacks = self.callbacks.lock().map(|c| c.clone()).unwrap_or_default();
        let (url, status) = match fake {
            Fake::Vk => {
                let cb = callbacks.vk.as_ref().ok_or_else(|| unconfigured("VK"))?;
                let m = self
                    .vk
                    .messages()
                    .into_iter()
                    .find(|m| m.message_id.to_string() == message)
                    .ok_or_else(unknown)?;
                let event = self.vk.message_read(&cb.secret, m.peer_id, m.message_id);
                (cb.url.clone(), self.vk.deliver(&cb.url, &event).await.0)
            }
            Fake::Telegram => {
                let cb = callbacks
                    .telegram
                    .as_ref()
                    .ok_or_else(|| unconfigured("Telegram"))?;
                let m = self
                    .telegram
                    .messages()
                    .into_iter()
                    .find(|m| m.message_id.to_string() == message)
                    .ok_or_else(unknown)?;
                let status = self.telegram.press_button(&cb.url, &cb.secret, &m).await;
                (cb.url.clone(), status)
            }
            Fake::WhatsApp => {
                let cb = callbacks
                    .whatsapp
                    .as_ref()
                    .ok_or_else(|| unconfigured("WhatsApp"))?;
                let m = self
                    .whatsapp
                    .messages()
                    .into_iter()
                    .find(|m| m.wamid == message)
                    .ok_or_else(unknown)?;
                let status = self
                    .whatsapp
                    .send_status(&cb.url, &cb.secret, &m, "read")
                    .await;
                (cb.url.clone(), status)
            }
            other => return Err(format!("the fake {} sends no read receipts", other.name())),
        };
        let sent = Sent {
            fake: fake.name(),
            message: message.to_owned(),
            url,
            status,
        };
        if let Ok(mut s) = self.sent.lock() {
            s.push(sent.clone());
        }
        Ok(sent)
    }
}

/// The words a WhatsApp message shows: its text, or its template's body
/// parameters.
fn whatsapp_text(body: &Value) -> String {
    if let Some(t) = body.pointer("/text/body").and_then(Value::as_str) {
        return t.to_owned();
    }
    let params = body
        .pointer("/template/components")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("parameters").and_then(Value::as_array))
        .flatten()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>();
    params.join(" ")
}
