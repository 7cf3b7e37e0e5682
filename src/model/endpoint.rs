//! What the data plane needs to know to deliver to one endpoint, free of Kubernetes types.

use std::{collections::BTreeMap, fmt, time::Duration};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::serde_go;

/// Identity of an endpoint: its tenant (namespace) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EndpointKey {
    pub tenant: String,
    pub name: String,
}

impl EndpointKey {
    pub fn new(tenant: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            tenant: tenant.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for EndpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.name)
    }
}

/// Where the signing keys of an endpoint live: a key of a Secret in the endpoint's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SecretLocation {
    pub name: String,
    pub key: String,
}

/// Delivery settings of one validated endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointConfig {
    pub name: String,
    pub url: String,
    pub secret: SecretLocation,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(with = "serde_go")]
    pub timeout: Duration,
    pub retry: RetryPolicy,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    pub max_in_flight: u32,
    #[serde(default)]
    pub paused: bool,
    #[serde(default, skip_serializing_if = "DeliveryFormat::is_standard")]
    pub format: DeliveryFormat,
    /// CA bundle trusted for this endpoint instead of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<ObjectKey>,
    /// Credentials sent as `Authorization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<EndpointAuth>,
    /// Parallel delivery, or one event at a time in publish order.
    #[serde(default, skip_serializing_if = "DeliveryOrder::is_unordered")]
    pub ordering: DeliveryOrder,
    /// With [`DeliveryOrder::Fifo`]: the event header whose value names the partition order
    /// is kept in (events without it share one partition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_key_header: Option<String>,
}

impl EndpointConfig {
    /// Whether events reach this endpoint in publish order (through its FIFO queue, not jobs).
    pub fn is_fifo(&self) -> bool {
        self.ordering.is_fifo()
    }
}

/// In which order an endpoint receives its events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryOrder {
    /// In parallel, up to `maxInFlight` at once; a failing event is retried without holding
    /// back the others.
    #[default]
    Unordered,
    /// One at a time in publish order; a failing event holds back the ones behind it.
    Fifo,
}

impl DeliveryOrder {
    pub fn is_unordered(&self) -> bool {
        *self == Self::Unordered
    }

    pub fn is_fifo(&self) -> bool {
        *self == Self::Fifo
    }
}

/// How a webhook is framed on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryFormat {
    /// Standard Webhooks: the payload as published, `webhook-*` headers.
    #[default]
    Standard,
    /// Standard Webhooks plus CloudEvents HTTP binary mode (`ce-*` headers, the event's data as body).
    CloudEvents,
}

impl DeliveryFormat {
    pub fn is_standard(&self) -> bool {
        *self == Self::Standard
    }
}

/// Which kind of object holds a referenced value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ObjectKind {
    Secret,
    ConfigMap,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Secret => "Secret",
            Self::ConfigMap => "ConfigMap",
        })
    }
}

/// A key of a Secret or ConfigMap in the endpoint's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    pub kind: ObjectKind,
    pub name: String,
    pub key: String,
}

/// How requests to an endpoint authenticate. Only where the values live travels in routes;
/// the values stay in the tenant's Secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "scheme")]
pub enum EndpointAuth {
    /// `Authorization: Basic base64(username:password)`.
    #[serde(rename_all = "camelCase")]
    Basic {
        secret: String,
        username_key: String,
        password_key: String,
    },
    /// `Authorization: Bearer <token>`.
    #[serde(rename_all = "camelCase")]
    Bearer { secret: String, token_key: String },
}

impl EndpointAuth {
    /// The Secret holding the credentials.
    pub fn secret(&self) -> &str {
        match self {
            Self::Basic { secret, .. } | Self::Bearer { secret, .. } => secret,
        }
    }
}

/// When to try again and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Total attempts including the first.
    pub max_attempts: u32,
    #[serde(with = "serde_go")]
    pub initial_backoff: Duration,
    #[serde(with = "serde_go")]
    pub max_backoff: Duration,
    /// Give up once the event is older than this.
    #[serde(with = "serde_go")]
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 24,
            initial_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(6 * 3600),
            max_age: Duration::from_secs(72 * 3600),
        }
    }
}

/// Token bucket applied to requests sent to one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    pub requests_per_second: u32,
    pub burst: u32,
}
