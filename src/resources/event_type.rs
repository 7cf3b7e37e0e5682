//! The `EventType` custom resource: one entry of a namespace's event catalogue, with the JSON
//! Schema its payloads must satisfy.
//!
//! Namespaced: a tenant is a namespace, so each tenant declares (and may deprecate) its own
//! event types and schemas under its own RBAC, and its catalogue never constrains another's.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::payload_schema::OnInvalid;

/// A concrete event type: dot-separated tokens, no wildcards.
pub const EVENT_TYPE_NAME_PATTERN: &str = r"^[^.*>\s]+(\.[^.*>\s]+)*$";

/// An event type of this namespace: its name, what it means, and the schema of its payload.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "webhook-operator.io",
    version = "v1alpha1",
    kind = "EventType",
    namespaced,
    status = "EventTypeStatus",
    shortname = "whtype",
    category = "webhooks",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.name"}"#,
    printcolumn = r#"{"name":"Deprecated","type":"boolean","jsonPath":".spec.deprecated"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Description","type":"string","jsonPath":".spec.description","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeSpec {
    /// The event type as published, e.g. `order.paid` (the subject's type, or a CloudEvent's `type`).
    #[schemars(pattern(EVENT_TYPE_NAME_PATTERN), length(min = 1, max = 256))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,
    /// JSON Schema of the payload. Events of this type that fail it are dead-lettered with
    /// reason `SchemaValidationFailed` (or delivered flagged, see `onInvalid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub schema: Option<Value>,
    /// Subscriptions naming a deprecated type are told so in their status.
    #[serde(default)]
    pub deprecated: bool,
    /// `deadLetter` (default) or `deliver` (flagged with `webhook-schema-invalid: true`).
    #[serde(default, skip_serializing_if = "OnInvalid::is_default")]
    pub on_invalid: OnInvalid,
}

fn any_object(_: &mut SchemaGenerator) -> Schema {
    Schema::try_from(json!({
        "description": "JSON Schema of the payload (draft 2020-12 unless $schema says otherwise; no remote $ref).",
        "type": "object",
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true
    }))
    .unwrap_or_default()
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
