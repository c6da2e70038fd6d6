//! Email open and click tracking (contract §6): the links `channels::email` puts
//! in every message, signed with the channel's `tracking_secret`.
//!
//! * `GET /t/o/{token}.gif` — the open pixel. Always answers the same 1×1
//!   transparent GIF, uncacheable, whatever the token. A token that verifies
//!   records `opened`; the recording runs after the answer is on its way
//!   (bounded), so a forged token cannot be told from a good one by the
//!   answer or its timing — it only records nothing, and is counted.
//! * `GET /t/c/{token}` — a tracked link. A token that verifies records
//!   `clicked` and answers `302` to the URL carried inside the signed token;
//!   the query string is never read, so this is no open redirect. A bad
//!   token answers 404 without a `Location`.
//!
//! A token carries its step and the moment after which it records nothing
//! (the cascade's expiry plus the retention): an expired link still shows
//! the pixel and still redirects to the URL it signs, but records nothing.
//! A token names its channel; the channel's current `tracking_secret` (in
//! `state.catalog`) checks it, so rotating the secret invalidates old links.
//! Receipts are idempotent: a second open or click is acknowledged and
//! counted as a duplicate. Note that mail security scanners and image
//! proxies fetch links and pixels too: `opened` is a weak signal.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::Semaphore;

use super::count;
use crate::channels::email::{Tracked, TrackingToken, verify};
use crate::core::ChannelKind;
use crate::http::refusal::note;
use crate::http::{AppState, record};

const PROVIDER: &str = "tracking";
const ROUTE_OPEN: &str = "tracking/open";
const ROUTE_CLICK: &str = "tracking/click";
/// Opens being recorded in the background at most at once; past that, the
/// pixel waits for a free slot (only an overloaded store makes that happen).
const MAX_BACKGROUND_OPENS: usize = 256;

/// A transparent 1×1 GIF (43 bytes).
pub const PIXEL_GIF: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/t/o/{file}", get(open))
        .route("/t/c/{token}", get(click))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            crate::http::body_limits::TRACKING,
        ))
}

/// Verifies a token against the secret of the email channel it names.
fn check(state: &AppState, token: &str) -> Option<TrackingToken> {
    let catalog = state.catalog.load();
    verify(token, |name| {
        catalog
            .channels
            .get(name)
            .filter(|c| c.kind == ChannelKind::Email)
            .and_then(|c| c.settings.as_email()?.file.tracking_secret.as_deref())
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned)
    })
}

fn background_slots() -> Arc<Semaphore> {
    static SLOTS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    SLOTS
        .get_or_init(|| Arc::new(Semaphore::new(MAX_BACKGROUND_OPENS)))
        .clone()
}

async fn open(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    let verified = file
        .strip_suffix(".gif")
        .and_then(|token| check(&state, token))
        .filter(|t| t.tracked == Tracked::Open);
    match verified {
        Some(token) if !token.records_at(state.clock.now_ms()) => {
            count(&state, PROVIDER, "expired");
            note(&state, ROUTE_OPEN, "expired");
        }
        Some(token) => {
            let permit = match background_slots().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => background_slots().acquire_owned().await.ok(),
            };
            tokio::spawn(async move {
                let answer = record(
                    &state,
                    &token.notification_id,
                    "opened",
                    Some(&token.channel),
                )
                .await;
                count(&state, PROVIDER, result_word("opened", answer.status()));
                drop(permit);
            });
        }
        None => {
            count(&state, PROVIDER, "forged");
            note(&state, ROUTE_OPEN, "bad_token");
        }
    }
    pixel()
}

async fn click(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let unknown = || {
        count(&state, PROVIDER, "forged");
        note(&state, ROUTE_CLICK, "bad_token");
        (StatusCode::NOT_FOUND, "unknown link\n").into_response()
    };
    let Some(token) = check(&state, &token) else {
        return unknown();
    };
    let Tracked::Click { url } = &token.tracked else {
        return unknown();
    };
    let Ok(location) = HeaderValue::from_str(&location_safe(url)) else {
        return unknown();
    };
    // The customer goes on to the shop whatever the store says, and also
    // when the link is too old to record.
    if token.records_at(state.clock.now_ms()) {
        let answer = record(
            &state,
            &token.notification_id,
            "clicked",
            Some(&token.channel),
        )
        .await;
        count(&state, PROVIDER, result_word("clicked", answer.status()));
    } else {
        count(&state, PROVIDER, "expired");
        note(&state, ROUTE_CLICK, "expired");
    }
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store, private"),
            ),
        ],
    )
        .into_response()
}

/// What `record` answered, as a bounded metric label.
fn result_word(event: &'static str, status: StatusCode) -> &'static str {
    match status {
        StatusCode::ACCEPTED => event,
        StatusCode::OK => "duplicate",
        StatusCode::NOT_FOUND => "unknown",
        _ => "error",
    }
}

fn pixel() -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/gif")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store, no-cache, must-revalidate, private"),
            ),
            (header::PRAGMA, HeaderValue::from_static("no-cache")),
        ],
        PIXEL_GIF.as_slice(),
    )
        .into_response()
}

/// A `Location` value: bytes outside visible ASCII (spaces, Cyrillic paths)
/// percent-encoded, as a browser would.
fn location_safe(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for b in url.bytes() {
        if (0x21..=0x7e).contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pixel_is_a_gif() {
        assert_eq!(&PIXEL_GIF[..6], b"GIF89a");
        assert_eq!(PIXEL_GIF[PIXEL_GIF.len() - 1], 0x3b);
    }

    #[test]
    fn locations_are_header_safe() {
        assert_eq!(
            location_safe("https://shop.example/заказ 1?a=b"),
            "https://shop.example/%D0%B7%D0%B0%D0%BA%D0%B0%D0%B7%201?a=b"
        );
        assert!(
            HeaderValue::from_str(&location_safe("https://x.example/\r\nSet-Cookie: a")).is_ok()
        );
    }
}
