//! Loopback fakes of the providers, speaking their real wire formats, for the
//! tests, `demo`, the benchmark and `cascade fakes` (`stack`: every fake on
//! fixed ports for the local stack). Each starts on `127.0.0.1:0` (or where
//! `start_on` says), records what it receives, and can be scripted per test:
//! succeed, fail transiently N times, rate-limit with a retry-after, fail
//! permanently, and send callbacks (read, delivered, failed) back to the
//! daemon.
//!
//! A fake stands for the provider, so it reads requests (and signs what it
//! sends) with code of its own, never with the daemon's adapter or callback
//! helpers: a bug in one of those would otherwise be shared by the fake and
//! pass unseen.

pub mod script;
pub mod smsc;
pub mod smsru;
pub mod smtp;
pub mod stack;
pub mod telegram;
pub mod vk;
pub mod webhook;
pub mod whatsapp;

/// `127.0.0.1:0`: where a fake starts unless told otherwise.
pub(crate) const LOOPBACK_ANY: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// The pairs of a query string or `application/x-www-form-urlencoded` body,
/// in order (`+` is a space). Decoded by `url`'s WHATWG parser, not by the
/// daemon's callback parser, which the fakes' reports are sent to.
pub(crate) fn form_pairs(encoded: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://fake.invalid/?{encoded}"))
        .map(|url| {
            url.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}
