//! Where the tenant API keeps objects: the Kubernetes API in a cluster ([`super::cluster`]), memory
//! in local mode ([`super::local`]). Every call is scoped to one namespace, the caller's.

use std::time::Duration;

use futures::future::BoxFuture;
use kube::ResourceExt;
use serde::Serialize;
use serde_json::Value;

use crate::{
    model::signing_keys::KeyRing,
    resources::{
        EventSubscription, EventSubscriptionSpec, WebhookEndpoint, WebhookEndpointSpec,
        signing_secret::SigningSecretError,
    },
};

/// The two kinds the API manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Endpoint,
    Subscription,
}

impl Kind {
    /// From the URL's collection segment: `endpoints` or `subscriptions`.
    pub fn from_collection(collection: &str) -> Option<Self> {
        match collection {
            "endpoints" => Some(Self::Endpoint),
            "subscriptions" => Some(Self::Subscription),
            _ => None,
        }
    }

    pub fn collection(self) -> &'static str {
        match self {
            Self::Endpoint => "endpoints",
            Self::Subscription => "subscriptions",
        }
    }

    /// The Kubernetes kind.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Endpoint => "WebhookEndpoint",
            Self::Subscription => "EventSubscription",
        }
    }
}

/// A validated spec of either kind.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per request, moved once; boxing would only add noise"
)]
pub enum Spec {
    Endpoint(WebhookEndpointSpec),
    Subscription(EventSubscriptionSpec),
}

impl Spec {
    pub fn kind(&self) -> Kind {
        match self {
            Self::Endpoint(_) => Kind::Endpoint,
            Self::Subscription(_) => Kind::Subscription,
        }
    }
}

/// An object as the API shows it: name, spec, and (in a cluster) the status the controller wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Object {
    pub name: String,
    pub spec: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}

impl Object {
    pub fn of<K: ResourceExt + Serialize>(object: &K) -> Self {
        let mut value = serde_json::to_value(object).unwrap_or_default();
        let status = value
            .get_mut("status")
            .map(Value::take)
            .filter(|s| !s.is_null());
        Self {
            name: object.name_any(),
            spec: value.get_mut("spec").map(Value::take).unwrap_or_default(),
            status,
        }
    }
}

/// Builds the resource for `spec`, in `namespace`.
pub fn endpoint(namespace: &str, name: &str, spec: WebhookEndpointSpec) -> WebhookEndpoint {
    let mut object = WebhookEndpoint::new(name, spec);
    object.metadata.namespace = Some(namespace.to_owned());
    object
}

pub fn subscription(namespace: &str, name: &str, spec: EventSubscriptionSpec) -> EventSubscription {
    let mut object = EventSubscription::new(name, spec);
    object.metadata.namespace = Some(namespace.to_owned());
    object
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    /// The change cannot be made as asked (e.g. defined in a manifest file, or changed meanwhile).
    #[error("{0}")]
    Conflict(String),
    /// The Kubernetes API refused the object; the message names the field.
    #[error("{0}")]
    Rejected(String),
    /// Details are logged, not shown: they describe the operator's installation, not the request.
    #[error("the object store is unavailable; try again")]
    Unavailable,
    /// The endpoint's signing Secret is missing, not managed for it, or unreadable.
    #[error(transparent)]
    SigningSecret(#[from] SigningSecretError),
}

/// An endpoint's signing keys, for its tenant. `Debug` never prints them.
#[derive(Debug, Clone)]
pub struct SigningSecret {
    /// The Secret's name.
    pub secret: String,
    pub ring: KeyRing,
}

/// Objects of one namespace at a time.
pub trait TenantStore: Send + Sync {
    fn list<'a>(
        &'a self,
        namespace: &'a str,
        kind: Kind,
    ) -> BoxFuture<'a, Result<Vec<Object>, StoreError>>;
    fn get<'a>(
        &'a self,
        namespace: &'a str,
        kind: Kind,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Object, StoreError>>;
    fn create<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        spec: Spec,
    ) -> BoxFuture<'a, Result<Object, StoreError>>;
    /// Replaces the whole spec; metadata and status stay.
    fn replace<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        spec: Spec,
    ) -> BoxFuture<'a, Result<Object, StoreError>>;
    fn delete<'a>(
        &'a self,
        namespace: &'a str,
        kind: Kind,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The signing keys of endpoint `name`, if its Secret is managed for it
    /// ([`crate::resources::signing_secret`]).
    fn signing_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<SigningSecret, StoreError>>;
    /// Puts a fresh key first; the keys there keep signing for `overlap`.
    fn rotate_signing_key<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        overlap: Duration,
    ) -> BoxFuture<'a, Result<SigningSecret, StoreError>>;
}
