//! The index on the base port: what each fake received (HTML for people,
//! JSON for scripts) and a "mark read" button per messenger message, which
//! has the fake send that provider's read receipt to the daemon.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | the page (refreshes every 5 s); `?format=json`: the JSON |
//! | `GET /received.json` | `FakeStack::received()` |
//! | `POST /read/{vk,telegram,whatsapp}/{message id}` | sends the receipt; back to `/`, or JSON with `?format=json` |
//! | `GET /healthz` | `ok` (the container's healthcheck) |

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Fake, FakeStack};
use crate::http::{escape, url_encode};

#[derive(Deserialize)]
struct Format {
    format: Option<String>,
}

impl Format {
    fn json(&self) -> bool {
        self.format.as_deref() == Some("json")
    }
}

pub(super) fn routes(stack: Arc<FakeStack>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/received.json", get(received))
        .route("/read/{fake}/{message}", post(read))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(stack)
}

async fn received(State(stack): State<Arc<FakeStack>>) -> Json<Value> {
    Json(stack.received())
}

async fn page(State(stack): State<Arc<FakeStack>>, Query(f): Query<Format>) -> Response {
    if f.json() {
        return Json(stack.received()).into_response();
    }
    Html(render(&stack.received())).into_response()
}

async fn read(
    State(stack): State<Arc<FakeStack>>,
    Path((fake, message)): Path<(String, String)>,
    Query(f): Query<Format>,
) -> Response {
    let fake = match fake.as_str() {
        "vk" => Fake::Vk,
        "telegram" => Fake::Telegram,
        "whatsapp" => Fake::WhatsApp,
        other => {
            let why = format!("`{other}` sends no read receipts; vk, telegram or whatsapp");
            return (StatusCode::NOT_FOUND, Json(json!({ "error": why }))).into_response();
        }
    };
    match stack.send_read(fake, &message).await {
        Ok(sent) if f.json() => {
            let status = if sent.status == 200 {
                StatusCode::OK
            } else {
                StatusCode::BAD_GATEWAY
            };
            (status, Json(json!(sent))).into_response()
        }
        Ok(_) => Redirect::to("/").into_response(),
        Err(why) => (StatusCode::NOT_FOUND, Json(json!({ "error": why }))).into_response(),
    }
}

/// What each fake holds, newest first, as a page.
fn render(received: &Value) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\"><title>cascade fakes</title>\
         <style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}\
         h2{margin-top:1.5em}</style></head><body><h1>cascade fakes</h1>\
         <p>What each provider fake received. <a href=\"/received.json\">JSON</a>. \
         The page refreshes every 5 seconds.</p>",
    );
    for fake in Fake::ALL.iter().filter(|f| **f != Fake::Index) {
        let name = fake.name();
        let entry = &received[name];
        let messages = entry["messages"].as_array().cloned().unwrap_or_default();
        let _ = write!(
            out,
            "<h2>{name} <small>port {} · {} received</small></h2>",
            entry["port"],
            messages.len()
        );
        if messages.is_empty() {
            out.push_str("<p>nothing yet</p>");
            continue;
        }
        let reads = matches!(fake, Fake::Vk | Fake::Telegram | Fake::WhatsApp);
        out.push_str("<table><tr><th>id</th><th>to</th><th>text</th>");
        if reads {
            out.push_str("<th></th>");
        }
        out.push_str("</tr>");
        for m in messages.iter().rev() {
            let text = |v: &Value| match v {
                Value::String(s) => escape(s),
                Value::Null => String::new(),
                other => escape(&other.to_string()),
            };
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td>",
                text(&m["id"]),
                text(&m["to"]),
                text(&m["text"])
            );
            if reads {
                let id = m["id"].as_str().unwrap_or_default();
                let _ = write!(
                    out,
                    "<td><form method=\"post\" action=\"/read/{name}/{}\">\
                     <button>mark read</button></form></td>",
                    escape(&url_encode(id))
                );
            }
            out.push_str("</tr>");
        }
        out.push_str("</table>");
    }
    let sent = received["receipts_sent"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !sent.is_empty() {
        out.push_str("<h2>receipts sent to the daemon</h2><table><tr><th>fake</th><th>message</th><th>to</th><th>answer</th></tr>");
        for s in sent.iter().rev() {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(s["fake"].as_str().unwrap_or_default()),
                escape(s["message"].as_str().unwrap_or_default()),
                escape(s["url"].as_str().unwrap_or_default()),
                match s["status"].as_u64() {
                    Some(0) | None => "no answer".to_owned(),
                    Some(code) => format!("HTTP {code}"),
                }
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</body></html>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_what_the_fakes_received() {
        let received = json!({
            "vk": { "port": 8101, "messages": [
                { "id": "1001", "to": "1", "text": "<script>alert(1)</script>" }
            ]},
            "whatsapp": { "port": 8105, "messages": [
                { "id": "wamid.A=\"x", "to": "7", "text": "ok" }
            ]},
        });
        let page = render(&received);
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&lt;script&gt;"));
        assert!(
            page.contains("action=\"/read/whatsapp/wamid.A%3D%22x\""),
            "{page}"
        );
        assert!(page.contains("action=\"/read/vk/1001\""));
    }
}
