//! The tenant API in a cluster: objects through the Kubernetes API with the controller's client,
//! keys from the labelled Secrets of every namespace (a watch, in every controller replica).

use std::{collections::BTreeMap, fmt::Debug, sync::Arc, time::Duration};

use futures::{FutureExt, StreamExt, future::BoxFuture};
use jiff::Timestamp;
use k8s_openapi::{NamespaceResourceScope, api::core::v1::Secret};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
    runtime::{WatchStreamExt, reflector, watcher},
};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    KeysRx,
    keys::{API_KEY_LABEL, KeyIndex, record_from_secret},
    store::{self, Kind, Object, SigningSecret, Spec, StoreError, TenantStore},
};
use crate::{
    controlplane::key_rotation::{self, RotationError},
    resources::{EventSubscription, WebhookEndpoint},
};

/// Field manager of the objects the API creates and replaces.
pub const MANAGER: &str = "webhook-operator-tenant-api";
/// Attempts of a replace that keeps meeting concurrent changes (optimistic concurrency).
const REPLACE_ATTEMPTS: usize = 3;

/// The custom resources, as the generic calls below need them.
trait Crd:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
}
impl<K> Crd for K where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug
        + Send
        + Sync
        + 'static
{
}

/// Objects through the Kubernetes API, always in the caller's namespace.
pub struct KubeStore {
    client: Client,
}

impl KubeStore {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    fn api<K: Crd>(&self, namespace: &str) -> Api<K> {
        Api::namespaced(self.client.clone(), namespace)
    }

    async fn list_kind<K: Crd>(
        &self,
        namespace: &str,
        kind: Kind,
    ) -> Result<Vec<Object>, StoreError> {
        let list = self
            .api::<K>(namespace)
            .list(&ListParams::default())
            .await
            .map_err(|e| store_error(kind, "", e))?;
        let mut objects: Vec<Object> = list.items.iter().map(Object::of).collect();
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(objects)
    }

    async fn get_kind<K: Crd>(
        &self,
        namespace: &str,
        kind: Kind,
        name: &str,
    ) -> Result<Object, StoreError> {
        self.api::<K>(namespace)
            .get(name)
            .await
            .map(|o| Object::of(&o))
            .map_err(|e| store_error(kind, name, e))
    }

    async fn create_kind<K: Crd>(
        &self,
        namespace: &str,
        kind: Kind,
        object: K,
    ) -> Result<Object, StoreError> {
        let params = PostParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        self.api::<K>(namespace)
            .create(&params, &object)
            .await
            .map(|o| Object::of(&o))
            .map_err(|e| store_error(kind, &object.name_any(), e))
    }

    /// Read, change the spec, write back with the resourceVersion read: a concurrent change
    /// makes the write fail (409) instead of being overwritten, and the whole step is retried.
    async fn replace_kind<K: Crd>(
        &self,
        namespace: &str,
        kind: Kind,
        name: &str,
        set_spec: impl Fn(&mut K),
    ) -> Result<Object, StoreError> {
        let api = self.api::<K>(namespace);
        let params = PostParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        let mut last = StoreError::Unavailable;
        for _ in 0..REPLACE_ATTEMPTS {
            let mut object = api
                .get(name)
                .await
                .map_err(|e| store_error(kind, name, e))?;
            set_spec(&mut object);
            match api.replace(name, &params, &object).await {
                Ok(replaced) => return Ok(Object::of(&replaced)),
                Err(error) => match store_error(kind, name, error) {
                    conflict @ StoreError::Conflict(_) => last = conflict,
                    other => return Err(other),
                },
            }
        }
        Err(last)
    }

    async fn delete_kind<K: Crd>(
        &self,
        namespace: &str,
        kind: Kind,
        name: &str,
    ) -> Result<(), StoreError> {
        self.api::<K>(namespace)
            .delete(name, &DeleteParams::default())
            .await
            .map(drop)
            .map_err(|e| store_error(kind, name, e))
    }
}

impl KubeStore {
    async fn endpoint(&self, namespace: &str, name: &str) -> Result<WebhookEndpoint, StoreError> {
        self.api::<WebhookEndpoint>(namespace)
            .get(name)
            .await
            .map_err(|e| store_error(Kind::Endpoint, name, e))
    }

    async fn read_signing_secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<SigningSecret, StoreError> {
        let endpoint = self.endpoint(namespace, name).await?;
        let current = key_rotation::current(&self.client, &endpoint)
            .await
            .map_err(|e| rotation_error(name, e))?;
        Ok(SigningSecret {
            secret: current.secret,
            ring: current.ring,
        })
    }

    /// The controller's rotation ([`key_rotation::rotate`]), on the tenant's behalf.
    async fn rotate(
        &self,
        namespace: &str,
        name: &str,
        overlap: Duration,
    ) -> Result<SigningSecret, StoreError> {
        let endpoint = self.endpoint(namespace, name).await?;
        let changed =
            key_rotation::rotate(&self.client, &endpoint, overlap, Timestamp::now(), None)
                .await
                .map_err(|e| rotation_error(name, e))?;
        Ok(SigningSecret {
            secret: changed.secret,
            ring: changed.ring,
        })
    }
}

/// What a signing Secret's read or rotation for endpoint `name` failed with, as the tenant may
/// see it.
fn rotation_error(name: &str, error: RotationError) -> StoreError {
    match error {
        RotationError::Secret(error) => error.into(),
        RotationError::Kube(error) => store_error(Kind::Endpoint, name, error),
        contended @ RotationError::Contended(_) => StoreError::Conflict(contended.to_string()),
    }
}

impl TenantStore for KubeStore {
    fn list<'a>(
        &'a self,
        namespace: &'a str,
        kind: Kind,
    ) -> BoxFuture<'a, Result<Vec<Object>, StoreError>> {
        match kind {
            Kind::Endpoint => self.list_kind::<WebhookEndpoint>(namespace, kind).boxed(),
            Kind::Subscription => self.list_kind::<EventSubscription>(namespace, kind).boxed(),
        }
    }

    fn get<'a>(
        &'a self,
        namespace: &'a str,
        kind: Kind,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Object, StoreError>> {
        match kind {
            Kind::Endpoint => self
                .get_kind::<WebhookEndpoint>(namespace, kind, name)
                .boxed(),
            Kind::Subscription => self
                .get_kind::<EventSubscription>(namespace, kind, name)
                .boxed(),
        }
    }

    fn create<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        spec: Spec,
    ) -> BoxFuture<'a, Result<Object, StoreError>> {
        match spec {
            Spec::Endpoint(spec) => {
                let object = store::endpoint(namespace, name, spec);
                self.create_kind(namespace, Kind::Endpoint, object).boxed()
            }
            Spec::Subscription(spec) => {
                let object = store::subscription(namespace, name, spec);
                self.create_kind(namespace, Kind::Subscription, object)
                    .boxed()
            }
        }
    }

    fn replace<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        spec: Spec,
    ) -> BoxFuture<'a, Result<Object, StoreError>> {
        match spec {
            Spec::Endpoint(spec) => self
                .replace_kind(
                    namespace,
                    Kind::Endpoint,
                    name,
                    move |o: &mut WebhookEndpoint| o.spec = spec.clone(),
                )
                .boxed(),
            Spec::Subscription(spec) => self
                .replace_kind(
                    namespace,
                    Kind::Subscription,
                    name,
                    move |o: &mut EventSubscription| o.spec = spec.clone(),
                )
                .boxed(),
        }
    }

    fn delete<'a>(
        &'a self,
        namespace: &'a str,
        kind: Kind,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        match kind {
            Kind::Endpoint => self
                .delete_kind::<WebhookEndpoint>(namespace, kind, name)
                .boxed(),
            Kind::Subscription => self
                .delete_kind::<EventSubscription>(namespace, kind, name)
                .boxed(),
        }
    }

    fn signing_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<SigningSecret, StoreError>> {
        self.read_signing_secret(namespace, name).boxed()
    }

    fn rotate_signing_key<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        overlap: Duration,
    ) -> BoxFuture<'a, Result<SigningSecret, StoreError>> {
        self.rotate(namespace, name, overlap).boxed()
    }
}

/// What the API server said, as the tenant may see it. Anything but a verdict on the request
/// itself (RBAC, connectivity, server errors) is logged and answered as unavailable.
fn store_error(kind: Kind, name: &str, error: kube::Error) -> StoreError {
    let kind_name = kind.kind();
    match error {
        kube::Error::Api(status) => match status.code {
            404 => StoreError::NotFound {
                kind: kind_name,
                name: name.to_owned(),
            },
            409 if status.reason == "AlreadyExists" => StoreError::AlreadyExists {
                kind: kind_name,
                name: name.to_owned(),
            },
            409 => StoreError::Conflict(format!(
                "{kind_name} {name:?} was changed concurrently; try again"
            )),
            400 | 422 => StoreError::Rejected(status.message),
            _ => {
                tracing::warn!(kind = kind_name, %name, code = status.code, reason = %status.reason, message = %status.message, "tenant API: Kubernetes API refused");
                StoreError::Unavailable
            }
        },
        other => {
            tracing::warn!(kind = kind_name, %name, error = %other, "tenant API: Kubernetes API unavailable");
            StoreError::Unavailable
        }
    }
}

/// Keeps the key index in step with the labelled Secrets of every namespace. `None` until the
/// first complete list, so requests meanwhile are answered "not ready", not "unauthorized".
pub fn watch_keys(client: Client, cancel: CancellationToken) -> KeysRx {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let (reader, writer) = reflector::store::<Secret>();
        let config = watcher::Config::default().labels(&format!("{API_KEY_LABEL}=true"));
        let events = watcher(Api::<Secret>::all(client), config)
            .default_backoff()
            .reflect(writer);
        futures::pin_mut!(events);
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => return,
                event = events.next() => event,
            };
            match event {
                None => return,
                Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => {}
                Some(Ok(_)) => {
                    let index = index_of(reader.state().iter().map(AsRef::as_ref));
                    tracing::debug!(keys = index.len(), "API keys loaded");
                    tx.send_replace(Some(Arc::new(index)));
                }
                Some(Err(error)) => tracing::warn!(%error, "watching API key Secrets"),
            }
        }
    });
    rx
}

/// The valid keys among `secrets`; a malformed key Secret is reported (by name) and skipped.
pub fn index_of<'a>(secrets: impl Iterator<Item = &'a Secret>) -> KeyIndex {
    let mut records = Vec::new();
    for secret in secrets {
        let namespace = secret.namespace().unwrap_or_default();
        let name = secret.name_any();
        let data: BTreeMap<String, Vec<u8>> = secret
            .data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        match record_from_secret(&namespace, &name, &data) {
            Ok(record) => records.push(record),
            Err(error) => {
                tracing::warn!(%namespace, secret = %name, "API key Secret skipped: {error}")
            }
        }
    }
    KeyIndex::new(records)
}
