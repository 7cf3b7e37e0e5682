//! The `EventSubscription` custom resource: which event types an endpoint receives.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::filter::FilterSpec;

/// One pattern: tokens separated by dots, `*` for one token, `>` (last) for the rest.
pub const EVENT_TYPE_PATTERN: &str = r"^(>|(\*|[^.*>\s]+)(\.(\*|[^.*>\s]+))*(\.>)?)$";

/// Which event types of its namespace an endpoint receives.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "webhook-operator.io",
    version = "v1alpha1",
    kind = "EventSubscription",
    namespaced,
    status = "EventSubscriptionStatus",
    shortname = "whsub",
    category = "webhooks",
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".spec.endpointRef.name"}"#,
    printcolumn = r#"{"name":"Events","type":"string","jsonPath":".spec.eventTypes"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EventSubscriptionSpec {
    /// A WebhookEndpoint in the same namespace.
    pub endpoint_ref: EndpointRef,
    /// NATS-style patterns over event types: `order.paid`, `invoice.*`, `payment.>`.
    #[schemars(
        length(min = 1, max = 64),
        inner(pattern(EVENT_TYPE_PATTERN), length(min = 1, max = 256))
    )]
    pub event_types: Vec<String>,
    /// Optional payload filter: only events it matches are delivered (see the README).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterSpec>,
}

/// Reference to a WebhookEndpoint in the same namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct EndpointRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventSubscriptionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
