//! What every reconcile shares: the API client, the caches fed by watches, the event recorder,
//! and where compiled routes go.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// How long an applied workload is trusted without seeing it in the Deployment cache.
pub const APPLIED_TTL: Duration = Duration::from_secs(30);

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Secret},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder},
        reflector::{ObjectRef, Store},
    },
};

use serde_json::json;

use super::{
    conditions::{self, Desired, READY},
    error::Error,
    tenant::MANAGER,
    workloads::WorkloadSettings,
};
use crate::{
    dataplane::replay::ReplayReport,
    model::{EndpointKey, NamespaceData, TenantRoutes, signing_keys::DEFAULT_OVERLAP},
    resources::{
        EventSubscription, WebhookEndpoint,
        compile::{CompiledTenantReport, Policy, SecretData, compile_tenant},
        event_type::EventType as EventTypeResource,
        object_data::{config_map_data, secret_data},
    },
};

/// The data plane as the controller drives it: where compiled routes are published (the routes
/// bucket in production, a recorder in tests), and JetStream work asked for through resources.
pub trait RouteSink: Send + Sync {
    fn publish(&self, routes: TenantRoutes) -> BoxFuture<'_, Result<(), Error>>;
    fn remove(&self, tenant: String) -> BoxFuture<'_, Result<(), Error>>;
    /// Drops an endpoint's queued jobs, FIFO queue and counters: its resource was deleted.
    fn discard_endpoint(&self, endpoint: EndpointKey) -> BoxFuture<'_, Result<(), Error>>;
    /// A FIFO endpoint's held-back count (see [`crate::dataplane::fifo_queue::held_back`]),
    /// given whether its last attempt failed.
    fn held_back(&self, endpoint: EndpointKey, failing: bool) -> BoxFuture<'_, Result<u64, Error>>;
    /// Re-enables an auto-disabled endpoint; returns whether it was disabled.
    fn enable_endpoint(&self, endpoint: EndpointKey) -> BoxFuture<'_, Result<bool, Error>>;
    /// Queues the endpoint's dead letters since `since` for delivery again.
    fn replay_dead_letters(
        &self,
        endpoint: EndpointKey,
        since: Timestamp,
    ) -> BoxFuture<'_, Result<ReplayReport, Error>>;
}

/// The caches a reconcile reads instead of the API server.
#[derive(Clone)]
pub struct Stores {
    pub endpoints: Store<WebhookEndpoint>,
    pub subscriptions: Store<EventSubscription>,
    /// The namespaces' event catalogues (`EventType`).
    pub event_types: Store<EventTypeResource>,
    pub secrets: Store<Secret>,
    pub config_maps: Store<ConfigMap>,
    pub deployments: Store<Deployment>,
}

impl Stores {
    /// Waits until every cache has been listed once. Compiling a namespace from a cache still
    /// loading (after a restart or a leader change) would publish routes without its
    /// subscriptions, and routers would acknowledge its events as unrouted: lost.
    pub async fn ready(&self) -> Result<(), Error> {
        let (endpoints, subscriptions, event_types, secrets, config_maps, deployments) = tokio::join!(
            self.endpoints.wait_until_ready(),
            self.subscriptions.wait_until_ready(),
            self.event_types.wait_until_ready(),
            self.secrets.wait_until_ready(),
            self.config_maps.wait_until_ready(),
            self.deployments.wait_until_ready(),
        );
        endpoints
            .and(subscriptions)
            .and(event_types)
            .and(secrets)
            .and(config_maps)
            .and(deployments)
            .map_err(|_| Error::CachesClosed)
    }
}

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub stores: Stores,
    pub routes: Arc<dyn RouteSink>,
    /// Namespace the operator (and the delivery Deployments) run in.
    pub operator_namespace: String,
    pub workloads: WorkloadSettings,
    /// How long previous signing keys keep signing after a rotation (`--signing-key-overlap`).
    pub signing_key_overlap: Duration,
    failures: Mutex<HashMap<String, u32>>,
    /// Config hash last applied per tenant, and when: reconciles of a namespace's endpoints
    /// arriving before the Deployment watch has caught up must not re-apply the workload.
    applied: Mutex<HashMap<String, (String, Instant)>>,
}

impl Context {
    pub fn new(
        client: Client,
        recorder: Recorder,
        stores: Stores,
        routes: Arc<dyn RouteSink>,
        operator_namespace: String,
        workloads: WorkloadSettings,
    ) -> Self {
        Self {
            client,
            recorder,
            stores,
            routes,
            operator_namespace,
            workloads,
            signing_key_overlap: DEFAULT_OVERLAP,
            failures: Mutex::default(),
            applied: Mutex::default(),
        }
    }

    pub fn with_signing_key_overlap(mut self, overlap: Duration) -> Self {
        self.signing_key_overlap = overlap;
        self
    }

    /// Live (not being deleted) objects of a namespace.
    fn live<K: Resource<DynamicType = ()> + Clone>(store: &Store<K>, namespace: &str) -> Vec<K> {
        let mut objects: Vec<K> = store
            .state()
            .iter()
            .filter(|o| {
                o.meta().namespace.as_deref() == Some(namespace)
                    && o.meta().deletion_timestamp.is_none()
            })
            .map(|o| (**o).clone())
            .collect();
        objects.sort_by_key(|o| o.name_any());
        objects
    }

    pub fn endpoints(&self, namespace: &str) -> Vec<WebhookEndpoint> {
        Self::live(&self.stores.endpoints, namespace)
    }

    /// The Secrets and ConfigMaps of a namespace, as compilation reads them.
    pub fn namespace_data(&self, namespace: &str) -> NamespaceData {
        let in_namespace =
            |meta: &kube::api::ObjectMeta| meta.namespace.as_deref() == Some(namespace);
        let secrets = self
            .stores
            .secrets
            .state()
            .iter()
            .filter(|s| in_namespace(&s.metadata))
            .map(|s| (s.name_any(), secret_data(s)))
            .collect();
        let config_maps = self
            .stores
            .config_maps
            .state()
            .iter()
            .filter(|c| in_namespace(&c.metadata))
            .map(|c| (c.name_any(), config_map_data(c)))
            .collect();
        NamespaceData {
            secrets,
            config_maps,
        }
    }

    pub fn secret_exists(&self, namespace: &str, name: &str) -> bool {
        self.stores
            .secrets
            .get(&ObjectRef::new(name).within(namespace))
            .is_some()
    }

    /// Compiles a namespace from the caches; `extra_secrets` covers Secrets just created.
    pub fn compile(&self, namespace: &str, extra_secrets: SecretData) -> CompiledTenantReport {
        let mut data = self.namespace_data(namespace);
        data.secrets.extend(extra_secrets);
        compile_tenant(
            namespace,
            &self.endpoints(namespace),
            &Self::live(&self.stores.subscriptions, namespace),
            &Self::live(&self.stores.event_types, namespace),
            &data,
            Policy {
                require_https: self.workloads.require_https,
            },
        )
    }

    pub async fn publish_event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(%error, reason, "could not publish a Kubernetes event");
        }
    }

    /// Exponential backoff per object, so a persistently failing object never hot-loops.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key.to_owned()).or_default();
        *n = (*n + 1).min(9);
        Duration::from_secs(1 << *n).min(Duration::from_secs(300))
    }

    /// True when `hash` was applied for `tenant` within [`APPLIED_TTL`].
    pub fn recently_applied(&self, tenant: &str, hash: &str) -> bool {
        let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        applied
            .get(tenant)
            .is_some_and(|(h, at)| h == hash && at.elapsed() < APPLIED_TTL)
    }

    pub fn record_applied(&self, tenant: &str, hash: Option<String>) {
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        match hash {
            Some(hash) => applied.insert(tenant.to_owned(), (hash, Instant::now())),
            None => applied.remove(tenant),
        };
    }

    /// The error policy shared by both reconcilers: log, then requeue after the object's backoff.
    pub fn requeue_after_error<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        error: &Error,
    ) -> Action {
        let key = backoff_key(object);
        let delay = self.backoff(&key);
        tracing::warn!(object = %key, category = error.category(), %error, retry_in = ?delay, "reconcile failed");
        Action::requeue(delay)
    }

    /// Applies `desired` as the Ready condition (with `observedGeneration` and `extra` status
    /// fields) unless the object already shows it. Returns the previous Ready status ("True",
    /// "False", "Unknown", or `None` for none) when it wrote, `None` when nothing changed.
    pub async fn write_ready<K>(
        &self,
        object: &K,
        current: &[Condition],
        observed_generation: Option<i64>,
        desired: &Desired,
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Option<Option<String>>, Error>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let generation = object.meta().generation;
        if desired.is_current(current, generation) && observed_generation == generation {
            return Ok(None);
        }
        let previous = conditions::find(current, READY).map(|c| c.status.clone());
        let mut status = extra;
        status.insert("observedGeneration".into(), json!(generation));
        status.insert(
            "conditions".into(),
            json!([desired.to_condition(current, generation, Timestamp::now())]),
        );
        let patch =
            json!({ "apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status });
        let namespace = object.meta().namespace.clone().unwrap_or_default();
        let api: Api<K> = Api::namespaced(self.client.clone(), &namespace);
        api.patch_status(
            &object.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await?;
        Ok(Some(previous))
    }

    /// [`Self::write_ready`] with no extra status fields, and a Warning Event (the condition's
    /// reason and message) when Ready turns False.
    pub async fn write_ready_and_warn<K>(
        &self,
        object: &K,
        current: &[Condition],
        observed_generation: Option<i64>,
        desired: &Desired,
    ) -> Result<(), Error>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let written = self
            .write_ready(
                object,
                current,
                observed_generation,
                desired,
                Default::default(),
            )
            .await?;
        if let Some(previous) = written
            && previous.as_deref() != Some(desired.status)
            && desired.status == "False"
        {
            self.publish_event(
                object,
                true,
                desired.reason.as_str(),
                desired.message.clone(),
            )
            .await;
        }
        Ok(())
    }

    /// Applies `status.<field>` = `record` alone, under `manager`: the record of an action
    /// asked for by annotation, so that each annotation value is acted on once.
    pub async fn record_request<T: serde::Serialize>(
        &self,
        endpoint: &WebhookEndpoint,
        field: &str,
        record: &T,
        manager: &str,
    ) -> Result<(), Error> {
        let patch = json!({
            "apiVersion": WebhookEndpoint::api_version(&()),
            "kind": WebhookEndpoint::kind(&()),
            "status": { field: record },
        });
        let namespace = endpoint.namespace().unwrap_or_default();
        Api::<WebhookEndpoint>::namespaced(self.client.clone(), &namespace)
            .patch_status(
                &endpoint.name_any(),
                &PatchParams::apply(manager).force(),
                &Patch::Apply(patch),
            )
            .await?;
        Ok(())
    }

    pub fn reset_backoff(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// Key of an object in the backoff table, e.g. `WebhookEndpoint/acme/orders`.
pub fn backoff_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.meta().namespace.clone().unwrap_or_default(),
        object.name_any()
    )
}

/// Secret data of the Secrets a reconcile created, keyed like [`SecretData`].
pub fn created_secret(name: &str, key: &str, value: Vec<u8>) -> SecretData {
    BTreeMap::from([(name.to_owned(), BTreeMap::from([(key.to_owned(), value)]))])
}
