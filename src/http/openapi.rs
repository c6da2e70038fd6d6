//! The OpenAPI 3.1 description of the `/v1` API, generated from the
//! handlers' `#[utoipa::path]` attributes and served without auth at
//! `GET /openapi.json` on the public listener. tests/openapi.rs checks that
//! it lists every `/v1` route and fuzzes the daemon against it.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ArrayBuilder, OneOfBuilder, Ref, RefOr, Schema};
use utoipa::{Modify, OpenApi, ToSchema};

use super::submit::{AcceptedBody, CodedError, IntakeProblem, IntakeRefusal, MAX_BATCH};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cascade",
        description = "Cascading notification delivery: submit notifications, record receipts, read timelines and reports. Every `/v1` route takes one of the bearer tokens of `[http] receipt_token` / `[http.receipt_tokens]`."
    ),
    paths(
        super::post_receipt,
        super::cancel,
        super::submit::post_notifications,
        super::timeline::get_notification,
        super::reports::get_report,
        super::reports::get_customer,
        super::inbound_email::post_inbound_email,
    ),
    components(schemas(
        ApiError,
        ReceiptAnswer,
        InboundAnswer,
        AcceptedBody,
        IntakeProblem,
        IntakeRefusal,
        CodedError,
        ReportDoc,
        ReplyRowDoc,
        CustomerNotificationsDoc,
    )),
    modifiers(&BearerScheme),
    tags(
        (name = "notifications", description = "Submitting notifications and reading their state"),
        (name = "receipts", description = "Recording what the customer did"),
        (name = "reports", description = "Counts and a customer's recent notifications"),
    )
)]
struct ApiDoc;

/// The `bearer` security scheme every `/v1` route names.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "One of the receipts API's tokens (`[http] receipt_token`, `[http.receipt_tokens]`)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The body of most refusals outside notification intake: one sentence,
/// and the refused field where one is to blame (a receipt's `data.<key>`).
#[derive(Serialize, ToSchema)]
pub struct ApiError {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "data.slot")]
    pub field: Option<String>,
}

/// A receipt or a cancellation: `recorded` (`202`) or `already_recorded` (`200`).
#[derive(Serialize, ToSchema)]
pub struct ReceiptAnswer {
    #[schema(pattern = "^(recorded|already_recorded)$")]
    pub status: String,
}

/// An inbound reply: `recorded` (`202`), `already_recorded` (`200`), or
/// `unmapped` (`202`: it answers none of our messages; not to be sent again).
#[derive(Serialize, ToSchema)]
pub struct InboundAnswer {
    #[schema(pattern = "^(recorded|already_recorded|unmapped|ignored|foreign_sender)$")]
    pub status: String,
}

/// `GET /v1/report`: as `cascade report --json` prints it.
#[derive(Serialize, ToSchema)]
#[schema(as = Report)]
pub struct ReportDoc {
    pub from_ms: i64,
    pub to_ms: i64,
    /// The dimensions the rows are grouped by.
    pub by: Vec<String>,
    /// The policy the report is limited to, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// One row per group: its keys and counts.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Value>,
    /// The rows summed.
    #[schema(value_type = Object)]
    pub total: Value,
    /// Customers' replies and staff's answers, one per policy replied to
    /// (and segment, when grouped by segment); empty when none were received.
    pub replies: Vec<ReplyRowDoc>,
}

/// The replies to one policy's notifications (`GET /v1/report`'s `replies`).
/// The counts that need an answer deadline are `null` for a policy without
/// `answer_within`.
#[derive(Serialize, ToSchema)]
#[schema(as = ReplyRow)]
pub struct ReplyRowDoc {
    /// The policy of the notifications replied to.
    pub policy: String,
    /// The customers' segment, when the report is grouped by segment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// Whether replies must be answered within a deadline (`answer_within`).
    pub deadline: bool,
    /// Replies received.
    pub received: i64,
    /// Replies handed to `[replies] sink`.
    pub handed_over: i64,
    /// Replies answered, in time or after escalation.
    pub answered: i64,
    /// Answered before the deadline (business hours), no staff asked.
    pub answered_in_time: Option<i64>,
    /// The deadline missed: escalated to the first staff channel.
    pub escalated: Option<i64>,
    /// Answered after the deadline (staff asked, or the deadline passed with none to ask).
    pub answered_after_escalation: Option<i64>,
    /// The staff escalation ran out (the last staff channel asked, or the deadline passed with none to ask) and nobody answered since.
    pub unanswered: Option<i64>,
    /// Not answered yet (or received before the range).
    pub open: Option<i64>,
    /// answered_in_time ÷ (answered_in_time + deadlines missed).
    pub in_time_rate: Option<f64>,
    /// Time from the hand-over to the answer, from the buckets.
    pub answer_p50_ms: Option<i64>,
    pub answer_p90_ms: Option<i64>,
    /// Answers by answer-time bucket (`1m` … `1d`, `more`).
    pub answer_time: std::collections::BTreeMap<String, i64>,
}

/// `GET /v1/customers/{id}/notifications`.
#[derive(Serialize, ToSchema)]
#[schema(as = CustomerNotifications)]
pub struct CustomerNotificationsDoc {
    pub customer_id: String,
    /// The start of the range, Unix ms.
    pub since_ms: i64,
    /// Newest first.
    pub notifications: Vec<crate::runtime::store::CustomerNotification>,
}

/// The request body of `POST /v1/notifications`: one `Notification`, or an
/// array of 1 to `MAX_BATCH`.
pub struct NotificationOrBatch;

impl utoipa::PartialSchema for NotificationOrBatch {
    fn schema() -> RefOr<Schema> {
        let one = Ref::from_schema_name("Notification");
        OneOfBuilder::new()
            .item(one.clone())
            .item(
                ArrayBuilder::new()
                    .items(one)
                    .min_items(Some(1))
                    .max_items(Some(MAX_BATCH)),
            )
            .into()
    }
}

impl ToSchema for NotificationOrBatch {}

/// Puts a JSON Schema into `components/schemas` under `name`: its `$defs`
/// become components of their own, and its references point there, as
/// references inside an OpenAPI document resolve from the document's root.
fn embed_schema(doc: &mut Value, name: &str, mut schema: Value) {
    let defs = schema
        .as_object_mut()
        .and_then(|o| {
            // Resolved from the document's root, not from an `$id` of its own.
            o.remove("$schema");
            o.remove("$id");
            o.remove("$defs").or_else(|| o.remove("definitions"))
        })
        .and_then(|d| d.as_object().cloned())
        .unwrap_or_default();
    let schemas = &mut doc["components"]["schemas"];
    for (def, mut value) in defs {
        rewrite_refs(&mut value);
        schemas[def] = value;
    }
    rewrite_refs(&mut schema);
    schemas[name] = schema;
}

/// `#/$defs/X` and `#/definitions/X` → `#/components/schemas/X`.
fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "$ref"
                    && let Value::String(target) = v
                {
                    for prefix in ["#/$defs/", "#/definitions/"] {
                        if let Some(rest) = target.strip_prefix(prefix) {
                            *target = format!("#/components/schemas/{rest}");
                        }
                    }
                } else {
                    rewrite_refs(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// The whole description, as `GET /openapi.json` serves it.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
    embed_schema(&mut doc, "Notification", crate::notification::json_schema());
    doc
}

/// `GET /openapi.json`.
pub(super) async fn serve() -> Response {
    Json(document()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_embedded_schema_brings_its_definitions_along() {
        let mut doc = json!({ "components": { "schemas": {} } });
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": { "customer": { "$ref": "#/$defs/Customer" } },
            "$defs": { "Customer": { "type": "object", "properties": { "c": { "$ref": "#/$defs/Contact" } } } }
        });
        embed_schema(&mut doc, "Notification", schema);
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["Notification"]["properties"]["customer"]["$ref"],
            "#/components/schemas/Customer"
        );
        assert_eq!(
            schemas["Customer"]["properties"]["c"]["$ref"],
            "#/components/schemas/Contact"
        );
        assert!(schemas["Notification"].get("$schema").is_none());
    }

    /// The documented reply row has the fields the report's JSON gives.
    #[test]
    fn the_reply_row_is_described_as_the_report_serializes_it() {
        let doc = document();
        let described: std::collections::BTreeSet<String> =
            doc["components"]["schemas"]["ReplyRow"]["properties"]
                .as_object()
                .expect("ReplyRow is described")
                .keys()
                .cloned()
                .collect();
        let row = crate::report::ReplyRow {
            segment: Some("new".into()),
            ..Default::default()
        };
        let given: std::collections::BTreeSet<String> = serde_json::to_value(row)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(described, given);
        let report = &doc["components"]["schemas"]["Report"];
        assert!(
            report["required"].to_string().contains("\"replies\""),
            "{report}"
        );
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        for part in text.split("\"$ref\":\"").skip(1) {
            let target = &part[..part.find('"').unwrap()];
            let name = target.strip_prefix("#/components/schemas/").unwrap();
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "{target} is not in the document"
            );
        }
    }
}
