//! The `WebhookEndpoint` custom resource: where a tenant wants events delivered, and how.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{
    DeliveryFormat, DeliveryOrder, Health, LastFailure, duration::GO_DURATION_PATTERN,
};

/// Loose check at admission; the full parse happens in [`super::compile`]. No `@` before the
/// path: credentials do not belong in a URL that is shown in status and listings (`spec.auth`).
pub const URL_PATTERN: &str = r"^[hH][tT][tT][pP][sS]?://[^\s/?#@]+([/?#]\S*)?$";

/// Header names that endpoints may not set: they carry the signature and framing.
pub const RESERVED_HEADER_RULE: &str = "self.all(k, !k.lowerAscii().startsWith('webhook-') && !(k.lowerAscii() in ['content-type', 'host', 'content-length', 'user-agent', 'transfer-encoding', 'connection']))";

/// With `auth`, static headers may not set `Authorization` (it would be overridden silently).
pub const AUTH_HEADER_RULE: &str = "!has(self.auth) || !has(self.headers) || self.headers.all(k, k.lowerAscii() != 'authorization')";
/// `tls` configures https connections only.
pub const TLS_HTTPS_RULE: &str = "!has(self.tls) || self.url.lowerAscii().startsWith('https://')";
/// Partitions only make sense for FIFO delivery.
pub const PARTITION_FIFO_RULE: &str =
    "!has(self.partitionKeyHeader) || (has(self.ordering) && self.ordering == 'fifo')";
/// An HTTP (and NATS) header name: an RFC 9110 token.
pub const HEADER_NAME_PATTERN: &str = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";

/// Where a tenant wants events delivered, and how.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "webhook-operator.io",
    version = "v1alpha1",
    kind = "WebhookEndpoint",
    namespaced,
    status = "WebhookEndpointStatus",
    shortname = "whep",
    category = "webhooks",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.url"}"#,
    printcolumn = r#"{"name":"Health","type":"string","jsonPath":".status.health","description":"Pending, Healthy, Degraded, Failing, Paused, Disabled (auto-disabled) or Invalid"}"#,
    printcolumn = r#"{"name":"Delivered","type":"integer","jsonPath":".status.delivered"}"#,
    printcolumn = r#"{"name":"Failed","type":"integer","jsonPath":".status.failedAttempts"}"#,
    printcolumn = r#"{"name":"Dead","type":"integer","jsonPath":".status.deadLettered"}"#,
    printcolumn = r#"{"name":"Held","type":"integer","jsonPath":".status.heldBack","priority":1,"description":"FIFO endpoints: events waiting behind a failing one"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(AUTH_HEADER_RULE).message("headers cannot set Authorization when auth is set"),
    validation = Rule::new(TLS_HTTPS_RULE).message("tls applies to https URLs only"),
    validation = Rule::new(PARTITION_FIFO_RULE).message("partitionKeyHeader requires ordering: fifo")
)]
pub struct WebhookEndpointSpec {
    /// Callback URL, http or https.
    #[schemars(pattern(URL_PATTERN), length(max = 2048))]
    pub url: String,
    /// Secret holding the signing key(s); created with a fresh key when missing.
    /// Defaults to `{name: <endpoint>-signing, key: secret}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// Static headers added to every request (at most 32, values up to 4 KiB, 16 KiB in all).
    /// Cannot override `webhook-*`, `content-type` or `host`, nor `Authorization` with `auth`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new(RESERVED_HEADER_RULE).message("headers cannot override webhook-*, content-type, host, content-length, user-agent, transfer-encoding or connection"))]
    #[schemars(extend("maxProperties" = 32, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    pub headers: BTreeMap<String, String>,
    /// Per-attempt timeout (Go duration).
    #[serde(default = "default_timeout")]
    #[schemars(pattern(GO_DURATION_PATTERN))]
    pub timeout: String,
    #[serde(default)]
    pub retry: RetrySpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,
    /// Concurrent requests to this endpoint.
    #[serde(default = "default_max_in_flight")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_in_flight: i32,
    /// Keep queueing, send nothing.
    #[serde(default)]
    pub paused: bool,
    /// `standard` (Standard Webhooks) or `cloudevents` (adds CloudEvents HTTP binary mode).
    #[serde(default, skip_serializing_if = "DeliveryFormat::is_standard")]
    pub format: DeliveryFormat,
    /// TLS of the connection to an https `url`. Certificates are always verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Credentials sent as `Authorization` on every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
    /// `unordered` (parallel, up to `maxInFlight`) or `fifo`: one event at a time in publish
    /// order, a failing event holding back the ones behind it.
    #[serde(default, skip_serializing_if = "DeliveryOrder::is_unordered")]
    pub ordering: DeliveryOrder,
    /// With `ordering: fifo`: the header of the published event whose value is the partition
    /// key. Order is kept per value (events without it share one partition), partitions
    /// progress independently, `maxInFlight` of them at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(HEADER_NAME_PATTERN), length(min = 1, max = 256))]
    pub partition_key_header: Option<String>,
}

/// TLS settings of an endpoint.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// CA certificates (PEM) trusted for this endpoint instead of the system roots, e.g. the CA
    /// of a private PKI. Without it the system's roots are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_ref: Option<CaBundleRef>,
}

/// A key of a Secret or ConfigMap in the endpoint's namespace holding PEM certificates.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaBundleRef {
    pub kind: CaBundleKind,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CaBundleKind {
    Secret,
    ConfigMap,
}

/// Endpoint authentication: exactly one scheme.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.basic) != has(self.bearer)").message("set exactly one of basic or bearer"))]
pub struct AuthSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuthSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<BearerAuthSpec>,
}

/// HTTP Basic authentication from a Secret (a `kubernetes.io/basic-auth` Secret fits as is).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuthSpec {
    /// Secret in the endpoint's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    #[serde(default = "default_username_key")]
    #[schemars(length(min = 1, max = 253))]
    pub username_key: String,
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1, max = 253))]
    pub password_key: String,
}

/// A bearer token from a Secret.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BearerAuthSpec {
    /// Secret in the endpoint's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    #[serde(default = "default_token_key")]
    #[schemars(length(min = 1, max = 253))]
    pub token_key: String,
}

/// A key of a Secret in the endpoint's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Retry policy; every field has a default.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetrySpec {
    /// Total attempts including the first.
    #[serde(default = "default_max_attempts")]
    #[schemars(range(min = 1, max = 100))]
    pub max_attempts: i32,
    /// Delay before attempt 2; doubles each attempt, with jitter.
    #[serde(default = "default_initial_backoff")]
    #[schemars(pattern(GO_DURATION_PATTERN))]
    pub initial_backoff: String,
    #[serde(default = "default_max_backoff")]
    #[schemars(pattern(GO_DURATION_PATTERN))]
    pub max_backoff: String,
    /// Give up when the event is older than this.
    #[serde(default = "default_max_age")]
    #[schemars(pattern(GO_DURATION_PATTERN))]
    pub max_age: String,
}

impl Default for RetrySpec {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            max_age: default_max_age(),
        }
    }
}

/// Token bucket: a sustained rate and a burst.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.burst) || self.burst >= self.requestsPerSecond").message("burst must be at least requestsPerSecond"))]
pub struct RateLimitSpec {
    #[schemars(range(min = 1, max = 100000))]
    pub requests_per_second: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub burst: Option<i32>,
}

/// Observed state: health, conditions and delivery counters.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpointStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Events delivered (2xx).
    #[serde(default)]
    pub delivered: i64,
    /// Attempts that failed.
    #[serde(default)]
    pub failed_attempts: i64,
    /// Events given up on.
    #[serde(default)]
    pub dead_lettered: i64,
    #[serde(default)]
    pub consecutive_failures: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<LastFailure>,
    /// FIFO endpoints: events waiting behind a failing one (0 when nothing fails); see README.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_back: Option<i64>,
    /// The last `webhook-operator.io/enable` annotation value the controller acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_enable: Option<LastEnable>,
    /// The last dead-letter replay asked for with the annotation
    /// `webhook-operator.io/replay-dead-letters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_replay: Option<LastReplay>,
    /// The last signing key rotation asked for with the annotation
    /// `webhook-operator.io/rotate-signing-key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation: Option<LastRotation>,
}

/// A re-enable requested with the `webhook-operator.io/enable` annotation, as acted on (once
/// per annotation value).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastEnable {
    /// The annotation value acted on.
    pub requested: String,
    /// When the controller acted on it.
    pub time: Time,
    /// Whether the endpoint was auto-disabled at that moment.
    pub was_disabled: bool,
}

/// A dead-letter replay the controller carried out (once per annotation value).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastReplay {
    /// The annotation's value: dead letters dead-lettered at or after this time were replayed.
    pub requested_since: String,
    /// When the replay ran.
    pub time: Time,
    /// Dead letters queued for delivery again.
    pub replayed: i64,
    /// Why nothing was replayed (an invalid time), or what was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A signing key rotation requested with the `webhook-operator.io/rotate-signing-key`
/// annotation, as acted on (once per annotation value). Never holds a key.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastRotation {
    /// The annotation value acted on.
    pub requested: String,
    /// When the controller acted on it.
    pub time: Time,
    /// Whether a new key was put first in the signing Secret.
    pub rotated: bool,
    /// When the previous keys stop signing (they are then removed from the Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_keys_expire: Option<Time>,
    /// Why the rotation was refused (e.g. a Secret the operator does not manage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn default_timeout() -> String {
    "15s".into()
}
fn default_max_in_flight() -> i32 {
    10
}
fn default_secret_key() -> String {
    "secret".into()
}
fn default_ca_key() -> String {
    "ca.crt".into()
}
fn default_username_key() -> String {
    "username".into()
}
fn default_password_key() -> String {
    "password".into()
}
fn default_token_key() -> String {
    "token".into()
}
fn default_max_attempts() -> i32 {
    24
}
fn default_initial_backoff() -> String {
    "5s".into()
}
fn default_max_backoff() -> String {
    "6h".into()
}
fn default_max_age() -> String {
    "72h".into()
}
