//! The shared model: endpoints, subscriptions, routes and delivery counters.
//!
//! Nothing here knows about NATS or Kubernetes; the control plane produces these types and
//! the data plane consumes them.

pub mod cloudevent;
pub mod credentials;
pub mod duration;
pub mod endpoint;
pub mod event_type;
pub mod filter;
pub mod payload_schema;
pub mod routes;
pub mod signing_keys;
pub mod stats;

pub use credentials::NamespaceData;
pub use endpoint::{
    DeliveryFormat, DeliveryOrder, EndpointAuth, EndpointConfig, EndpointKey, ObjectKey,
    ObjectKind, RateLimit, RetryPolicy, SecretLocation,
};
pub use routes::{CompiledRoutes, CompiledTenant, Route, TenantRoutes};
pub use stats::{EndpointStats, Health, LastFailure};
