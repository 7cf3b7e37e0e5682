//! Reconcile tests against a mocked API server (tower-test), in the style of controller-rs:
//! each test seeds the caches, runs one reconcile, and checks the API calls it made.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{FutureExt, future::BoxFuture};
use http::{Request, Response};
use jiff::Timestamp;
use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, Secret},
    },
    apimachinery::pkg::apis::meta::v1::Time,
};
use kube::{
    Client, Resource, ResourceExt,
    api::ObjectMeta,
    client::Body,
    runtime::{
        events::{Recorder, Reporter},
        reflector::{self, store::Writer},
        watcher,
    },
};
use serde_json::{Value, json};

use super::{
    conditions::{Desired, READY},
    context::{Context, RouteSink, Stores},
    endpoint::{self, FINALIZER},
    error::Error,
    replay::{REPLAY_ANNOTATION, REPLAY_MANAGER},
    status, subscription,
    workloads::{self, WorkloadSettings},
};
use crate::{
    dataplane::{replay::ReplayReport, stats::StatsView},
    model::{EndpointKey, EndpointStats, TenantRoutes, signing_keys::SigningKeys},
    resources::{
        EventSubscription, EventSubscriptionSpec, EventType, WebhookEndpoint, WebhookEndpointSpec,
        event_subscription::EndpointRef,
    },
};

#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    query: String,
    body: Value,
}

/// A fake API server: answers every request plausibly and records it.
#[derive(Clone, Default)]
struct ApiServer {
    calls: Arc<Mutex<Vec<Call>>>,
    objects: Arc<Mutex<HashMap<String, Value>>>,
}

impl ApiServer {
    fn start() -> (Client, Self) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = Self::default();
        let this = server.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let path = parts.uri.path().to_owned();
                this.calls.lock().unwrap().push(Call {
                    method: parts.method.to_string(),
                    path: path.clone(),
                    query: parts.uri.query().unwrap_or_default().to_owned(),
                    body: body.clone(),
                });
                let base = path.trim_end_matches("/status").to_owned();
                let merge_patch = parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .is_some_and(|v| v == "application/merge-patch+json");
                let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404});
                let (status, answer) = match parts.method.as_str() {
                    "GET" => match this.objects.lock().unwrap().get(&path) {
                        Some(object) => (200, object.clone()),
                        None => (404, not_found),
                    },
                    // Merge patches (a signing Secret's keys) change the remembered object.
                    "PATCH" if merge_patch => match this.objects.lock().unwrap().get_mut(&path) {
                        Some(object) => {
                            json_patch::merge(object, &body);
                            (200, object.clone())
                        }
                        None => (404, not_found),
                    },
                    "DELETE" => (
                        200,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
                    ),
                    // JSON patches (finalizers) and status patches answer with the object itself.
                    "PATCH" if !body.is_object() || path.ends_with("/status") => (
                        200,
                        this.objects
                            .lock()
                            .unwrap()
                            .get(&base)
                            .cloned()
                            .unwrap_or(json!({})),
                    ),
                    "POST" => (201, body),
                    _ => (200, body),
                };
                let response = Response::builder()
                    .status(status)
                    .body(Body::from(serde_json::to_vec(&answer).unwrap_or_default()));
                send.send_response(response.expect("response"));
            }
        });
        (Client::new(service, "default"), server)
    }

    fn remember<K: Resource<DynamicType = ()> + serde::Serialize>(&self, object: &K) {
        let url = K::url_path(&(), object.meta().namespace.as_deref());
        let path = format!("{url}/{}", object.meta().name.clone().unwrap_or_default());
        let mut value = serde_json::to_value(object).unwrap_or_default();
        value["apiVersion"] = json!(K::api_version(&()));
        value["kind"] = json!(K::kind(&()));
        self.objects.lock().unwrap().insert(path, value);
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn is_event(call: &Call) -> bool {
        call.path.contains("/events.k8s.io/") || call.path.ends_with("/events")
    }

    /// Calls other than Kubernetes Events.
    fn writes(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| !Self::is_event(c))
            .collect()
    }

    fn events(&self) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(Self::is_event)
            .map(|c| c.body)
            .collect()
    }
}

#[derive(Default)]
struct RecordingSink {
    published: Mutex<Vec<TenantRoutes>>,
    removed: Mutex<Vec<String>>,
    discarded: Mutex<Vec<EndpointKey>>,
    enabled: Mutex<Vec<EndpointKey>>,
    replayed: Mutex<Vec<(EndpointKey, Timestamp)>>,
}

/// Dead letters every recorded replay reports as queued again.
const REPLAYED: u64 = 3;
/// What the recording sink reports as a failing FIFO endpoint's held-back count.
const HELD_BACK: u64 = 7;

impl RouteSink for RecordingSink {
    fn publish(&self, routes: TenantRoutes) -> BoxFuture<'_, Result<(), Error>> {
        self.published.lock().unwrap().push(routes);
        async { Ok(()) }.boxed()
    }
    fn remove(&self, tenant: String) -> BoxFuture<'_, Result<(), Error>> {
        self.removed.lock().unwrap().push(tenant);
        async { Ok(()) }.boxed()
    }
    fn discard_endpoint(&self, endpoint: EndpointKey) -> BoxFuture<'_, Result<(), Error>> {
        self.discarded.lock().unwrap().push(endpoint);
        async { Ok(()) }.boxed()
    }
    fn held_back(
        &self,
        _endpoint: EndpointKey,
        failing: bool,
    ) -> BoxFuture<'_, Result<u64, Error>> {
        async move { Ok(if failing { HELD_BACK } else { 0 }) }.boxed()
    }
    fn enable_endpoint(&self, endpoint: EndpointKey) -> BoxFuture<'_, Result<bool, Error>> {
        self.enabled.lock().unwrap().push(endpoint);
        async { Ok(true) }.boxed()
    }
    fn replay_dead_letters(
        &self,
        endpoint: EndpointKey,
        since: Timestamp,
    ) -> BoxFuture<'_, Result<ReplayReport, Error>> {
        self.replayed.lock().unwrap().push((endpoint, since));
        async {
            Ok(ReplayReport {
                replayed: REPLAYED,
                skipped: 0,
            })
        }
        .boxed()
    }
}

struct Fixture {
    api: ApiServer,
    sink: Arc<RecordingSink>,
    ctx: Arc<Context>,
    endpoints: Writer<WebhookEndpoint>,
    subscriptions: Writer<EventSubscription>,
    event_types: Writer<EventType>,
    secrets: Writer<Secret>,
    config_maps: Writer<ConfigMap>,
    deployments: Writer<Deployment>,
}

impl Fixture {
    fn new() -> Self {
        Self::with_settings(WorkloadSettings::default())
    }

    fn with_settings(settings: WorkloadSettings) -> Self {
        let (client, api) = ApiServer::start();
        let (endpoints_reader, mut endpoints) = reflector::store();
        let (subscriptions_reader, mut subscriptions) = reflector::store();
        let (event_types_reader, mut event_types) = reflector::store();
        let (secrets_reader, mut secrets) = reflector::store();
        let (deployments_reader, mut deployments) = reflector::store();
        let (config_maps_reader, mut config_maps) = reflector::store();
        // Listed (and empty): reconciles wait for that, and objects are added afterwards.
        endpoints.apply_watcher_event(&watcher::Event::InitDone);
        subscriptions.apply_watcher_event(&watcher::Event::InitDone);
        event_types.apply_watcher_event(&watcher::Event::InitDone);
        secrets.apply_watcher_event(&watcher::Event::InitDone);
        deployments.apply_watcher_event(&watcher::Event::InitDone);
        config_maps.apply_watcher_event(&watcher::Event::InitDone);
        let sink = Arc::new(RecordingSink::default());
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "webhook-operator".into(),
                instance: None,
            },
        );
        let stores = Stores {
            endpoints: endpoints_reader,
            subscriptions: subscriptions_reader,
            event_types: event_types_reader,
            secrets: secrets_reader,
            config_maps: config_maps_reader,
            deployments: deployments_reader,
        };
        let ctx = Arc::new(Context::new(
            client,
            recorder,
            stores,
            sink.clone(),
            "webhook-system".into(),
            settings,
        ));
        Self {
            api,
            sink,
            ctx,
            endpoints,
            subscriptions,
            event_types,
            secrets,
            config_maps,
            deployments,
        }
    }

    fn add_endpoint(&mut self, endpoint: &WebhookEndpoint) {
        self.api.remember(endpoint);
        self.endpoints
            .apply_watcher_event(&watcher::Event::Apply(endpoint.clone()));
    }

    fn add_subscription(&mut self, subscription: &EventSubscription) {
        self.api.remember(subscription);
        self.subscriptions
            .apply_watcher_event(&watcher::Event::Apply(subscription.clone()));
    }

    fn add_event_type(&mut self, event_type: &EventType) {
        self.api.remember(event_type);
        self.event_types
            .apply_watcher_event(&watcher::Event::Apply(event_type.clone()));
    }

    fn add_secret(&mut self, name: &str) {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("acme".into()),
                ..Default::default()
            },
            data: Some(
                [(
                    "secret".to_string(),
                    ByteString(SigningKeys::generate().into_bytes()),
                )]
                .into(),
            ),
            ..Default::default()
        };
        self.api.remember(&secret);
        self.secrets
            .apply_watcher_event(&watcher::Event::Apply(secret));
    }

    fn add_secret_data(&mut self, name: &str, data: &[(&str, &[u8])]) {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("acme".into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Default::default()
        };
        self.secrets
            .apply_watcher_event(&watcher::Event::Apply(secret));
    }

    /// The endpoint's signing Secret as the controller creates it (owned by the endpoint),
    /// holding `keys` and `annotations`; in the cache and on the API server.
    fn add_managed_secret(
        &mut self,
        endpoint: &WebhookEndpoint,
        keys: &str,
        annotations: &[(&str, String)],
    ) -> Secret {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(format!("{}-signing", endpoint.name_any())),
                namespace: Some("acme".into()),
                resource_version: Some("5".into()),
                owner_references: endpoint.controller_owner_ref(&()).map(|o| vec![o]),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.clone()))
                        .collect(),
                ),
                ..Default::default()
            },
            data: Some([("secret".to_string(), ByteString(keys.as_bytes().to_vec()))].into()),
            ..Default::default()
        };
        self.api.remember(&secret);
        self.secrets
            .apply_watcher_event(&watcher::Event::Apply(secret.clone()));
        secret
    }

    /// The signing keys the API server holds for `secret` now.
    fn stored_keys(&self, secret: &str) -> Value {
        let path = format!("/api/v1/namespaces/acme/secrets/{secret}");
        self.api.objects.lock().unwrap()[&path].clone()
    }

    fn add_config_map(&mut self, name: &str, key: &str, value: &str) {
        let config_map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("acme".into()),
                ..Default::default()
            },
            data: Some([(key.to_string(), value.to_string())].into()),
            ..Default::default()
        };
        self.config_maps
            .apply_watcher_event(&watcher::Event::Apply(config_map));
    }

    fn add_current_workload(&mut self) {
        let deployment =
            workloads::build("acme", "webhook-system", &WorkloadSettings::default()).deployment;
        self.deployments
            .apply_watcher_event(&watcher::Event::Apply(deployment));
    }
}

fn endpoint(name: &str, url: &str, finalized: bool) -> WebhookEndpoint {
    endpoint_with(name, json!({ "url": url }), finalized)
}

fn endpoint_with(name: &str, spec: Value, finalized: bool) -> WebhookEndpoint {
    let spec: WebhookEndpointSpec = serde_json::from_value(spec).expect("spec");
    let mut e = WebhookEndpoint::new(name, spec);
    e.metadata.namespace = Some("acme".into());
    e.metadata.generation = Some(1);
    e.metadata.uid = Some(format!("uid-{name}"));
    if finalized {
        e.metadata.finalizers = Some(vec![FINALIZER.into()]);
    }
    e
}

fn subscription(name: &str, endpoint: &str) -> EventSubscription {
    let mut s = EventSubscription::new(
        name,
        EventSubscriptionSpec {
            endpoint_ref: EndpointRef {
                name: endpoint.into(),
            },
            event_types: vec!["order.*".into()],
            filter: None,
        },
    );
    s.metadata.namespace = Some("acme".into());
    s.metadata.generation = Some(1);
    s.metadata.finalizers = Some(vec![FINALIZER.into()]);
    s
}

fn ready_condition(call: &Call) -> Value {
    call.body["status"]["conditions"][0].clone()
}

#[tokio::test]
async fn a_new_endpoint_first_gets_the_finalizer() {
    let mut f = Fixture::new();
    let e = endpoint("orders", "https://orders.example", false);
    f.add_endpoint(&e);
    endpoint::reconcile(Arc::new(e), f.ctx.clone())
        .await
        .expect("reconcile");
    let writes = f.api.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].method, "PATCH");
    assert!(writes[0].body.to_string().contains(FINALIZER));
    assert!(
        f.sink.published.lock().unwrap().is_empty(),
        "nothing routed before the finalizer is in place"
    );
}

#[tokio::test]
async fn missing_secret_is_created_and_the_endpoint_becomes_ready() {
    let mut f = Fixture::new();
    let e = endpoint("orders", "https://orders.example", true);
    f.add_endpoint(&e);
    endpoint::reconcile(Arc::new(e), f.ctx.clone())
        .await
        .expect("reconcile");

    let writes = f.api.writes();
    let secret = writes
        .iter()
        .find(|c| c.method == "POST" && c.path.ends_with("/namespaces/acme/secrets"))
        .expect("secret created");
    assert_eq!(secret.body["metadata"]["name"], "orders-signing");
    assert_eq!(
        secret.body["metadata"]["ownerReferences"][0]["kind"],
        "WebhookEndpoint"
    );
    let key = secret.body["data"]["secret"].as_str().unwrap_or_default();
    assert!(!key.is_empty());
    let status = writes
        .iter()
        .find(|c| c.path.ends_with("/webhookendpoints/orders/status"))
        .expect("status written");
    assert_eq!(ready_condition(status)["status"], "True");
    assert_eq!(ready_condition(status)["reason"], "Active");
    assert_eq!(status.body["status"]["observedGeneration"], 1);
    let applied: Vec<&str> = writes
        .iter()
        .filter(|c| c.method == "PATCH" && !c.path.contains("webhookendpoints"))
        .map(|c| c.path.as_str())
        .collect();
    assert_eq!(
        applied.len(),
        4,
        "ServiceAccount, Role, RoleBinding, Deployment: {applied:?}"
    );
    assert!(
        applied
            .iter()
            .any(|p| p.ends_with("/namespaces/webhook-system/deployments/webhook-deliver-acme"))
    );
    assert!(
        applied
            .iter()
            .any(|p| p.ends_with("/namespaces/acme/roles/webhook-operator-deliver"))
    );
    let published = f.sink.published.lock().unwrap();
    assert_eq!(published.last().map(|r| r.endpoints.len()), Some(1));
    assert!(
        f.api
            .events()
            .iter()
            .any(|e| e["reason"] == "SecretCreated"),
        "{:?}",
        f.api.events()
    );
}

#[tokio::test]
async fn an_invalid_spec_is_reported_and_not_routed() {
    let mut f = Fixture::new();
    let e = endpoint("orders", "ftp://orders.example", true);
    f.add_endpoint(&e);
    f.add_secret("orders-signing");
    endpoint::reconcile(Arc::new(e), f.ctx.clone())
        .await
        .expect("reconcile");
    let writes = f.api.writes();
    let status = writes
        .iter()
        .find(|c| c.path.ends_with("/status"))
        .expect("status");
    assert_eq!(ready_condition(status)["status"], "False");
    assert_eq!(ready_condition(status)["reason"], "InvalidUrl");
    assert_eq!(status.body["status"]["health"], "Invalid");
    assert!(
        ready_condition(status)["message"]
            .as_str()
            .unwrap_or_default()
            .contains("spec.url")
    );
    assert_eq!(
        f.sink.removed.lock().unwrap().as_slice(),
        ["acme"],
        "a tenant without valid endpoints has no routes"
    );
    assert!(
        f.api
            .events()
            .iter()
            .any(|e| e["reason"] == "InvalidUrl" && e["type"] == "Warning")
    );
}

#[tokio::test]
async fn steady_state_reconciles_write_nothing() {
    let mut f = Fixture::new();
    let e = ready_endpoint(&mut f);
    f.add_endpoint(&e);
    for _ in 0..3 {
        endpoint::reconcile(Arc::new(e.clone()), f.ctx.clone())
            .await
            .expect("reconcile");
    }
    assert!(
        f.api.calls().is_empty(),
        "no API call when nothing changed: {:?}",
        f.api.calls()
    );
}

#[tokio::test]
async fn a_burst_of_reconciles_applies_the_workload_once() {
    let mut f = Fixture::new();
    let names: Vec<String> = (0..20).map(|i| format!("ep-{i}")).collect();
    for name in &names {
        f.add_endpoint(&endpoint(name, "https://orders.example", true));
        f.add_secret(&format!("{name}-signing"));
    }
    // The Deployment cache never catches up here, as at start-up before the watch delivers.
    for name in &names {
        endpoint::reconcile(
            Arc::new(endpoint(name, "https://orders.example", true)),
            f.ctx.clone(),
        )
        .await
        .expect("reconcile");
    }
    let deployments = f
        .api
        .writes()
        .into_iter()
        .filter(|c| c.path.contains("/deployments/"))
        .count();
    assert_eq!(deployments, 1, "one namespace, one workload apply");
}

#[tokio::test(start_paused = true)]
async fn deleting_an_endpoint_removes_routes_jobs_workload_and_finalizer() {
    let mut f = Fixture::new();
    let mut e = endpoint("orders", "https://orders.example", true);
    e.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    f.add_endpoint(&e);
    f.add_secret("orders-signing");
    f.add_current_workload();
    endpoint::reconcile(Arc::new(e), f.ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(f.sink.removed.lock().unwrap().as_slice(), ["acme"]);
    assert_eq!(
        f.sink.discarded.lock().unwrap().as_slice(),
        [EndpointKey::new("acme", "orders")]
    );
    let writes = f.api.writes();
    let deletes: Vec<&str> = writes
        .iter()
        .filter(|c| c.method == "DELETE")
        .map(|c| c.path.as_str())
        .collect();
    assert_eq!(
        deletes.len(),
        4,
        "the tenant's last endpoint takes its workload along: {deletes:?}"
    );
    let last = writes.last().expect("finalizer removal");
    assert_eq!(last.method, "PATCH");
    assert!(last.body.to_string().contains("remove"), "{}", last.body);
}

#[tokio::test]
async fn subscriptions_report_missing_endpoints_and_route_valid_ones() {
    let mut f = Fixture::new();
    let dangling = subscription("dangling", "nowhere");
    f.add_subscription(&dangling);
    subscription::reconcile(Arc::new(dangling), f.ctx.clone())
        .await
        .expect("reconcile");
    let status = f
        .api
        .writes()
        .into_iter()
        .find(|c| c.path.ends_with("/eventsubscriptions/dangling/status"))
        .expect("status");
    assert_eq!(ready_condition(&status)["reason"], "EndpointNotFound");
    assert!(
        f.api
            .events()
            .iter()
            .any(|e| e["reason"] == "EndpointNotFound")
    );

    let e = endpoint("orders", "https://orders.example", true);
    f.add_endpoint(&e);
    f.add_secret("orders-signing");
    let good = subscription("paid", "orders");
    f.add_subscription(&good);
    subscription::reconcile(Arc::new(good), f.ctx.clone())
        .await
        .expect("reconcile");
    let status = f
        .api
        .writes()
        .into_iter()
        .find(|c| c.path.ends_with("/eventsubscriptions/paid/status"))
        .expect("status");
    assert_eq!(ready_condition(&status)["status"], "True");
    let published = f.sink.published.lock().unwrap();
    let routes = published.last().expect("routes");
    assert_eq!(
        routes
            .routes
            .iter()
            .map(|r| r.subscription.as_str())
            .collect::<Vec<_>>(),
        ["paid"]
    );
}

#[tokio::test(start_paused = true)]
async fn status_is_folded_at_most_once_per_interval() {
    let mut f = Fixture::new();
    let e = endpoint("orders", "https://orders.example", true);
    f.add_endpoint(&e);
    let stats = StatsView::default();
    let key = EndpointKey::new("acme", "orders");
    let cancel = tokio_util::sync::CancellationToken::new();
    let writer = tokio::spawn(status::run(f.ctx.clone(), stats.clone(), cancel.clone()));
    // Counters change every second for a minute.
    for second in 1..=60u64 {
        stats.insert(
            key.clone(),
            EndpointStats {
                delivered: second,
                last_success_time: Some(Timestamp::now()),
                ..Default::default()
            },
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    cancel.cancel();
    let _ = writer.await;
    let writes: Vec<Call> = f
        .api
        .writes()
        .into_iter()
        .filter(|c| c.path.ends_with("/status"))
        .collect();
    assert!(
        (6..=7).contains(&writes.len()),
        "one write per 10 s interval, got {}",
        writes.len()
    );
    assert_eq!(writes[0].body["status"]["health"], "Healthy");
    assert_eq!(
        writes
            .last()
            .map(|c| c.body["status"]["delivered"] != json!(0)),
        Some(true)
    );
}

#[tokio::test(start_paused = true)]
async fn the_status_writer_shows_held_back_counts_of_fifo_endpoints_only() {
    let mut f = Fixture::new();
    let fifo = endpoint_with(
        "ordered",
        json!({ "url": "https://ordered.example", "ordering": "fifo" }),
        true,
    );
    let plain = endpoint("plain", "https://plain.example", true);
    f.add_endpoint(&fifo);
    f.add_endpoint(&plain);
    let stats = StatsView::default();
    let failing = EndpointStats {
        failed_attempts: 1,
        consecutive_failures: 1,
        ..Default::default()
    };
    stats.insert(EndpointKey::new("acme", "ordered"), failing.clone());
    stats.insert(EndpointKey::new("acme", "plain"), failing);
    let cancel = tokio_util::sync::CancellationToken::new();
    let writer = tokio::spawn(status::run(f.ctx.clone(), stats.clone(), cancel.clone()));
    tokio::time::sleep(Duration::from_secs(11)).await;
    cancel.cancel();
    let _ = writer.await;
    let written = |name: &str| {
        f.api
            .writes()
            .into_iter()
            .find(|c| {
                c.path
                    .ends_with(&format!("/webhookendpoints/{name}/status"))
            })
            .map(|c| c.body["status"].clone())
            .unwrap_or_else(|| panic!("no status write for {name}"))
    };
    assert_eq!(written("ordered")["heldBack"], json!(HELD_BACK));
    assert!(written("plain").get("heldBack").is_none());
}

#[tokio::test]
async fn the_enable_annotation_re_enables_once_per_value() {
    use super::{enable::ENABLE_ANNOTATION, replay::operator_annotations};
    use crate::resources::webhook_endpoint::LastEnable;

    let mut f = Fixture::new();
    let mut e = ready_endpoint(&mut f);
    let plain = operator_annotations(&e);
    e.metadata.annotations = Some(
        [(
            ENABLE_ANNOTATION.to_string(),
            "2026-11-23T10:00:00Z".to_string(),
        )]
        .into(),
    );
    assert_ne!(
        operator_annotations(&e),
        plain,
        "setting the annotation passes the watch filter"
    );
    f.add_endpoint(&e);

    endpoint::reconcile(Arc::new(e.clone()), f.ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(
        f.sink.enabled.lock().unwrap().as_slice(),
        [EndpointKey::new("acme", "orders")]
    );
    let writes = f.api.writes();
    assert_eq!(writes.len(), 1, "only the lastEnable record: {writes:?}");
    assert_eq!(writes[0].method, "PATCH");
    assert!(writes[0].path.ends_with("/webhookendpoints/orders/status"));
    let recorded = &writes[0].body["status"]["lastEnable"];
    assert_eq!(recorded["requested"], "2026-11-23T10:00:00Z");
    assert_eq!(recorded["wasDisabled"], true);
    assert_eq!(
        writes[0].body["status"].as_object().map(|s| s.len()),
        Some(1),
        "the enable field manager applies lastEnable alone"
    );

    // The status now shows the request as handled: a status write neither triggers the
    // reconciler nor, when it runs anyway, a second re-enable.
    let before_status = operator_annotations(&e);
    if let Some(status) = e.status.as_mut() {
        status.last_enable = Some(LastEnable {
            requested: "2026-11-23T10:00:00Z".into(),
            time: Time(Timestamp::now()),
            was_disabled: true,
        });
    }
    assert_eq!(operator_annotations(&e), before_status);
    f.add_endpoint(&e);
    endpoint::reconcile(Arc::new(e.clone()), f.ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(f.sink.enabled.lock().unwrap().len(), 1, "acted on once");
    assert_eq!(f.api.writes().len(), 1);

    // A new value is a new request.
    e.metadata.annotations = Some(
        [(
            ENABLE_ANNOTATION.to_string(),
            "2026-11-24T08:00:00Z".to_string(),
        )]
        .into(),
    );
    f.add_endpoint(&e);
    endpoint::reconcile(Arc::new(e), f.ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(f.sink.enabled.lock().unwrap().len(), 2);
}

/// A valid endpoint whose status already shows it Ready: reconciles write nothing else.
fn ready_endpoint(f: &mut Fixture) -> WebhookEndpoint {
    let mut e = endpoint("orders", "https://orders.example", true);
    let ready = Desired::new(
        READY,
        true,
        "Active",
        "Valid; events of subscribed types are delivered.",
    );
    e.status = Some(crate::resources::WebhookEndpointStatus {
        observed_generation: Some(1),
        conditions: vec![ready.to_condition(&[], Some(1), Timestamp::now())],
        ..Default::default()
    });
    f.add_secret("orders-signing");
    f.add_current_workload();
    e
}

#[tokio::test]
async fn a_replay_annotation_is_acted_on_once_and_recorded_in_status() {
    let mut f = Fixture::new();
    let mut e = ready_endpoint(&mut f);
    let since = "2025-01-31T00:00:00Z";
    e.metadata.annotations = Some([(REPLAY_ANNOTATION.to_string(), since.to_string())].into());
    f.add_endpoint(&e);
    endpoint::reconcile(Arc::new(e.clone()), f.ctx.clone())
        .await
        .expect("reconcile");

    assert_eq!(
        f.sink.replayed.lock().unwrap().as_slice(),
        [(
            EndpointKey::new("acme", "orders"),
            since.parse::<Timestamp>().expect("time")
        )]
    );
    let writes = f.api.writes();
    assert_eq!(writes.len(), 1, "only the replay record: {writes:?}");
    let status = &writes[0];
    assert_eq!(status.method, "PATCH");
    assert!(status.path.ends_with("/webhookendpoints/orders/status"));
    assert!(
        status
            .query
            .contains(&format!("fieldManager={REPLAY_MANAGER}")),
        "its own field manager, so the other writers' fields stay: {}",
        status.query
    );
    let last = &status.body["status"]["lastReplay"];
    assert_eq!(last["requestedSince"], since);
    assert_eq!(last["replayed"], REPLAYED);
    assert!(last["time"].is_string());
    assert_eq!(
        status.body["status"].as_object().map(|s| s.len()),
        Some(1),
        "nothing but lastReplay: {}",
        status.body
    );
    assert!(
        f.api
            .events()
            .iter()
            .any(|e| e["reason"] == "DeadLettersReplayed" && e["type"] == "Normal"),
        "{:?}",
        f.api.events()
    );

    // The recorded value is not acted on again.
    let recorded: crate::resources::webhook_endpoint::LastReplay =
        serde_json::from_value(last.clone()).expect("lastReplay");
    if let Some(status) = e.status.as_mut() {
        status.last_replay = Some(recorded);
    }
    f.add_endpoint(&e);
    endpoint::reconcile(Arc::new(e), f.ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(f.sink.replayed.lock().unwrap().len(), 1);
    assert_eq!(f.api.writes().len(), 1, "{:?}", f.api.writes());
}

#[tokio::test]
async fn an_invalid_replay_annotation_is_reported_not_acted_on() {
    let mut f = Fixture::new();
    let mut e = ready_endpoint(&mut f);
    e.metadata.annotations =
        Some([(REPLAY_ANNOTATION.to_string(), "last tuesday".to_string())].into());
    f.add_endpoint(&e);
    endpoint::reconcile(Arc::new(e), f.ctx.clone())
        .await
        .expect("reconcile");
    assert!(f.sink.replayed.lock().unwrap().is_empty());
    let writes = f.api.writes();
    let last = &writes.last().expect("status").body["status"]["lastReplay"];
    assert_eq!(last["requestedSince"], "last tuesday");
    assert_eq!(last["replayed"], 0);
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| m.contains("RFC 3339") && m.contains(REPLAY_ANNOTATION)),
        "{last}"
    );
    assert!(
        f.api
            .events()
            .iter()
            .any(|e| e["reason"] == "InvalidReplayRequest" && e["type"] == "Warning")
    );
}

fn event_type(name: &str, spec: Value) -> EventType {
    let mut e = EventType::new(name, serde_json::from_value(spec).expect("spec"));
    e.metadata.namespace = Some("acme".into());
    e.metadata.generation = Some(1);
    e
}

fn subscription_to(name: &str, types: &[&str]) -> EventSubscription {
    let mut s = subscription(name, "orders");
    s.spec.event_types = types.iter().map(|t| t.to_string()).collect();
    s
}

/// The catalogue condition each status write carried, in order.
fn catalog_writes(api: &ApiServer, name: &str) -> Vec<Value> {
    api.writes()
        .into_iter()
        .filter(|c| {
            c.path
                .ends_with(&format!("/eventsubscriptions/{name}/status"))
        })
        .filter(|c| {
            let conditions = &c.body["status"]["conditions"];
            conditions.as_array().is_some_and(|l| l.is_empty())
                || conditions[0]["type"] == super::event_type::CATALOGUED
        })
        .map(|c| c.body["status"]["conditions"].clone())
        .collect()
}

#[tokio::test]
async fn without_event_types_subscriptions_get_no_catalogue_condition() {
    let mut f = Fixture::new();
    f.add_endpoint(&endpoint("orders", "https://orders.example", true));
    f.add_secret("orders-signing");
    let s = subscription_to("anything", &["whatever.happens"]);
    f.add_subscription(&s);
    subscription::reconcile(Arc::new(s), f.ctx.clone())
        .await
        .expect("reconcile");
    assert!(catalog_writes(&f.api, "anything").is_empty());
    assert!(
        f.api
            .writes()
            .iter()
            .any(|c| c.path.ends_with("/eventsubscriptions/anything/status")),
        "the Ready condition is written as usual"
    );
}

#[tokio::test]
async fn subscriptions_are_compared_with_the_catalogue() {
    let mut f = Fixture::new();
    f.add_endpoint(&endpoint("orders", "https://orders.example", true));
    f.add_secret("orders-signing");
    f.add_event_type(&event_type("order-paid", json!({"name": "order.paid"})));
    f.add_event_type(&event_type(
        "order-legacy",
        json!({"name": "order.legacy", "deprecated": true}),
    ));
    for (name, types) in [
        ("known", &["order.paid", "order.*"][..]),
        ("typo", &["order.payed"][..]),
        ("old", &["order.legacy"][..]),
    ] {
        let s = subscription_to(name, types);
        f.add_subscription(&s);
        subscription::reconcile(Arc::new(s), f.ctx.clone())
            .await
            .expect("reconcile");
    }
    let condition = |name: &str| {
        let writes = catalog_writes(&f.api, name);
        assert_eq!(writes.len(), 1, "{name}: {writes:?}");
        writes[0][0].clone()
    };
    let known = condition("known");
    assert_eq!(
        (known["status"].as_str(), known["reason"].as_str()),
        (Some("True"), Some("Catalogued"))
    );
    let typo = condition("typo");
    assert_eq!(
        (typo["status"].as_str(), typo["reason"].as_str()),
        (Some("False"), Some("UnknownEventTypes"))
    );
    assert!(
        typo["message"]
            .as_str()
            .unwrap_or_default()
            .contains("\"order.payed\""),
        "{typo}"
    );
    let old = condition("old");
    assert_eq!(old["reason"], "DeprecatedEventTypes");
    let reasons: Vec<Value> = f.api.events().iter().map(|e| e["reason"].clone()).collect();
    assert!(reasons.contains(&json!("UnknownEventTypes")), "{reasons:?}");
    assert!(
        reasons.contains(&json!("DeprecatedEventTypes")),
        "{reasons:?}"
    );
    // Routing is not affected: every subscription is Ready and routed.
    let published = f.sink.published.lock().unwrap();
    assert_eq!(published.last().map(|r| r.routes.len()), Some(3));
}

#[tokio::test]
async fn the_catalogue_condition_is_current_or_removed() {
    let mut f = Fixture::new();
    f.add_endpoint(&endpoint("orders", "https://orders.example", true));
    f.add_secret("orders-signing");
    let catalogued = Desired::new(
        super::event_type::CATALOGUED,
        true,
        "Catalogued",
        "Every event type is declared by a current EventType.",
    );
    let ready = Desired::new(
        READY,
        true,
        "Active",
        "Routing matching events to the endpoint.",
    );
    let mut s = subscription_to("known", &["order.paid"]);
    s.status = Some(crate::resources::EventSubscriptionStatus {
        observed_generation: Some(1),
        conditions: vec![
            ready.to_condition(&[], Some(1), Timestamp::now()),
            catalogued.to_condition(&[], Some(1), Timestamp::now()),
        ],
    });
    f.add_subscription(&s);
    f.add_event_type(&event_type("order-paid", json!({"name": "order.paid"})));
    subscription::reconcile(Arc::new(s.clone()), f.ctx.clone())
        .await
        .expect("reconcile");
    assert!(
        f.api.writes().iter().all(|c| !c.path.ends_with("/status")),
        "nothing changed, nothing written: {:?}",
        f.api.writes()
    );

    // The namespace's last EventType goes: the condition goes with it.
    f.event_types
        .apply_watcher_event(&watcher::Event::Delete(event_type(
            "order-paid",
            json!({"name": "order.paid"}),
        )));
    subscription::reconcile(Arc::new(s), f.ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(catalog_writes(&f.api, "known"), vec![json!([])]);
}

#[tokio::test]
async fn event_types_report_broken_schemas_and_publish_valid_ones() {
    let mut f = Fixture::new();
    f.add_endpoint(&endpoint("orders", "https://orders.example", true));
    f.add_secret("orders-signing");
    f.add_subscription(&subscription("paid", "orders"));
    let good = event_type(
        "order-paid",
        json!({"name": "order.paid", "schema": {"type": "object", "required": ["order"]}, "onInvalid": "deliver"}),
    );
    let broken = event_type(
        "order-broken",
        json!({"name": "order.broken", "schema": {"type": "nonsense"}}),
    );
    f.add_event_type(&good);
    f.add_event_type(&broken);
    super::event_type::reconcile(Arc::new(broken), f.ctx.clone())
        .await
        .expect("reconcile");
    super::event_type::reconcile(Arc::new(good), f.ctx.clone())
        .await
        .expect("reconcile");
    let status = |name: &str| {
        f.api
            .writes()
            .into_iter()
            .find(|c| c.path.ends_with(&format!("/eventtypes/{name}/status")))
            .map(|c| ready_condition(&c))
            .unwrap_or_else(|| panic!("{name}: no status written"))
    };
    let broken = status("order-broken");
    assert_eq!(
        (broken["status"].as_str(), broken["reason"].as_str()),
        (Some("False"), Some("InvalidSchema"))
    );
    assert!(
        broken["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("spec.schema: "),
        "{broken}"
    );
    assert_eq!(status("order-paid")["reason"], "Active");
    assert!(
        f.api
            .events()
            .iter()
            .any(|e| e["reason"] == "InvalidSchema" && e["type"] == "Warning")
    );
    let published = f.sink.published.lock().unwrap();
    let schemas = &published.last().expect("routes").schemas;
    assert_eq!(schemas.len(), 1);
    assert_eq!(schemas[0].event_type, "order.paid");
    assert_eq!(
        schemas[0].on_invalid,
        crate::model::payload_schema::OnInvalid::Deliver
    );
}

#[tokio::test]
async fn reconciles_wait_until_every_cache_is_listed() {
    let (endpoints_reader, mut endpoints) = reflector::store::<WebhookEndpoint>();
    let (subscriptions_reader, mut subscriptions) = reflector::store::<EventSubscription>();
    let (event_types_reader, mut event_types) = reflector::store::<EventType>();
    let (secrets_reader, mut secrets) = reflector::store::<Secret>();
    let (deployments_reader, mut deployments) = reflector::store::<Deployment>();
    let (config_maps_reader, mut config_maps) = reflector::store::<ConfigMap>();
    let stores = Stores {
        endpoints: endpoints_reader,
        subscriptions: subscriptions_reader,
        event_types: event_types_reader,
        secrets: secrets_reader,
        deployments: deployments_reader,
        config_maps: config_maps_reader,
    };
    endpoints.apply_watcher_event(&watcher::Event::InitDone);
    event_types.apply_watcher_event(&watcher::Event::InitDone);
    config_maps.apply_watcher_event(&watcher::Event::InitDone);
    secrets.apply_watcher_event(&watcher::Event::InitDone);
    deployments.apply_watcher_event(&watcher::Event::InitDone);
    // Subscriptions still loading: compiling now would publish routes without them.
    assert!(
        stores.ready().now_or_never().is_none(),
        "not ready while the subscriptions are being listed"
    );
    subscriptions.apply_watcher_event(&watcher::Event::InitDone);
    assert!(matches!(stores.ready().now_or_never(), Some(Ok(()))));
}

/// The Ready condition of the last status write of endpoint `name`.
fn last_ready(api: &ApiServer, name: &str) -> Value {
    let writes = api.writes();
    let status = writes
        .iter()
        .rev()
        .find(|c| {
            c.path
                .ends_with(&format!("/webhookendpoints/{name}/status"))
        })
        .unwrap_or_else(|| panic!("no status written for {name}: {writes:?}"));
    ready_condition(status)
}

/// A CA certificate in PEM, as a receiver's private PKI would hand it out.
fn ca_pem() -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().expect("key");
    rcgen::CertifiedIssuer::self_signed(params, key)
        .expect("CA")
        .pem()
}

#[tokio::test]
async fn auth_and_ca_references_are_validated_into_ready_with_the_field_named() {
    let mut f = Fixture::new();
    let spec = json!({
        "url": "https://orders.example",
        "auth": { "basic": { "secretName": "orders-auth" } },
        "tls": { "caBundleRef": { "kind": "ConfigMap", "name": "orders-ca" } },
    });
    let e = endpoint_with("orders", spec, true);
    f.add_endpoint(&e);
    f.add_secret("orders-signing");
    let reconcile = |f: &Fixture| endpoint::reconcile(Arc::new(e.clone()), f.ctx.clone());

    reconcile(&f).await.expect("reconcile");
    let ready = last_ready(&f.api, "orders");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("SecretNotFound"))
    );
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("spec.auth.basic.usernameKey: Secret \"orders-auth\" does not exist"),
        "{ready}"
    );
    assert_eq!(
        f.sink.removed.lock().unwrap().as_slice(),
        ["acme"],
        "not routed"
    );

    f.add_secret_data("orders-auth", &[("username", b"app")]);
    reconcile(&f).await.expect("reconcile");
    let ready = last_ready(&f.api, "orders");
    assert_eq!(ready["reason"], "SecretKeyMissing", "{ready}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .contains("spec.auth.basic.passwordKey"),
        "{ready}"
    );

    f.add_secret_data(
        "orders-auth",
        &[("username", b"app"), ("password", b"pw-hunter2")],
    );
    reconcile(&f).await.expect("reconcile");
    assert_eq!(last_ready(&f.api, "orders")["reason"], "ConfigMapNotFound");

    f.add_config_map("orders-ca", "ca.crt", "not a certificate");
    reconcile(&f).await.expect("reconcile");
    let ready = last_ready(&f.api, "orders");
    assert_eq!(ready["reason"], "InvalidCaBundle", "{ready}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("spec.tls.caBundleRef: ConfigMap \"orders-ca\""),
        "{ready}"
    );

    f.add_config_map("orders-ca", "ca.crt", &ca_pem());
    reconcile(&f).await.expect("reconcile");
    let ready = last_ready(&f.api, "orders");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("True"), Some("Active"))
    );
    let published = f.sink.published.lock().unwrap();
    let routes = published.last().expect("routes published");
    let config = &routes.endpoints[0];
    assert!(
        config.auth.is_some() && config.ca_bundle.is_some(),
        "{config:?}"
    );
    // Routes travel through NATS: references only, never the values.
    let json = serde_json::to_string(routes).unwrap_or_default();
    assert!(
        !json.contains("hunter2") && !json.contains("BEGIN CERTIFICATE"),
        "{json}"
    );
    for event in f.api.events() {
        assert!(!event.to_string().contains("hunter2"), "{event}");
    }
}

#[tokio::test]
async fn require_https_refuses_http_endpoints_and_reaches_the_delivery_pods() {
    let mut f = Fixture::with_settings(WorkloadSettings {
        require_https: true,
        ..Default::default()
    });
    let plain = endpoint("plain", "http://orders.example/hook", true);
    let secure = endpoint("secure", "https://orders.example/hook", true);
    f.add_endpoint(&plain);
    f.add_endpoint(&secure);
    f.add_secret("plain-signing");
    f.add_secret("secure-signing");
    endpoint::reconcile(Arc::new(plain), f.ctx.clone())
        .await
        .expect("reconcile");
    let ready = last_ready(&f.api, "plain");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("HttpsRequired"))
    );
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .contains("--require-https"),
        "{ready}"
    );
    assert!(
        f.api
            .events()
            .iter()
            .any(|e| e["reason"] == "HttpsRequired" && e["type"] == "Warning")
    );

    endpoint::reconcile(Arc::new(secure), f.ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(last_ready(&f.api, "secure")["reason"], "Active");
    let published = f.sink.published.lock().unwrap();
    let names: Vec<&str> = published
        .last()
        .map(|r| r.endpoints.iter().map(|e| e.name.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["secure"]);
    let deployment = f
        .api
        .writes()
        .into_iter()
        .find(|c| c.path.ends_with("/deployments/webhook-deliver-acme"))
        .expect("delivery workload applied");
    let args = &deployment.body["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_array()
            .is_some_and(|a| a.iter().any(|v| v == "--require-https")),
        "{args}"
    );
    let role = f
        .api
        .writes()
        .into_iter()
        .find(|c| c.path.ends_with("/roles/webhook-operator-deliver"))
        .expect("tenant role applied");
    assert_eq!(
        role.body["rules"][0]["resources"],
        json!(["secrets", "configmaps"])
    );
}

/// The keys a stored Secret (as [`Fixture::stored_keys`] returns it) holds, newest first.
fn keys_of(secret: &Value) -> Vec<String> {
    use base64::{Engine, engine::general_purpose::STANDARD};
    let encoded = secret["data"]["secret"].as_str().unwrap_or_default();
    let decoded = STANDARD.decode(encoded).expect("base64");
    String::from_utf8_lossy(&decoded)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn annotate(e: &mut WebhookEndpoint, key: &str, value: &str) {
    e.metadata
        .annotations
        .get_or_insert_default()
        .insert(key.into(), value.into());
}

#[tokio::test]
async fn the_rotate_annotation_puts_a_new_key_first_once_per_value() {
    use super::rotate::ROTATE_ANNOTATION;
    use crate::resources::signing_secret::{KEY_EXPIRY_ANNOTATION, ROTATION_REQUEST_ANNOTATION};

    let mut f = Fixture::new();
    let mut e = ready_endpoint(&mut f);
    let old = SigningKeys::generate();
    f.add_managed_secret(&e, &old, &[]);
    annotate(&mut e, ROTATE_ANNOTATION, "first");
    f.add_endpoint(&e);
    let before = Timestamp::now();
    endpoint::reconcile(Arc::new(e.clone()), f.ctx.clone())
        .await
        .expect("reconcile");

    let writes = f.api.writes();
    let secret_patch = writes
        .iter()
        .find(|c| c.method == "PATCH" && c.path.ends_with("/secrets/orders-signing"))
        .expect("the Secret is patched");
    assert_eq!(
        secret_patch.body["metadata"]["resourceVersion"], "5",
        "guarded by the version read"
    );
    let stored = f.stored_keys("orders-signing");
    let keys = keys_of(&stored);
    assert_eq!(keys.len(), 2, "{stored}");
    assert_ne!(keys[0], old);
    assert_eq!(keys[1], old, "the new key first, the old one kept");
    let annotations = &stored["metadata"]["annotations"];
    assert_eq!(annotations[ROTATION_REQUEST_ANNOTATION], "first");
    let expiry: std::collections::BTreeMap<String, Timestamp> =
        serde_json::from_str(annotations[KEY_EXPIRY_ANNOTATION].as_str().unwrap_or("{}"))
            .expect("expiry map");
    let day = jiff::SignedDuration::from_hours(24);
    let old_expires = expiry[&crate::model::signing_keys::fingerprint(&old)];
    assert!(old_expires >= before + day && old_expires <= Timestamp::now() + day);

    let status = writes
        .iter()
        .find(|c| c.path.ends_with("/webhookendpoints/orders/status"))
        .expect("lastRotation recorded");
    assert!(
        status
            .query
            .contains("fieldManager=webhook-operator-rotation")
    );
    let last = &status.body["status"]["lastRotation"];
    assert_eq!(
        (&last["requested"], &last["rotated"]),
        (&json!("first"), &json!(true))
    );
    assert_eq!(
        last["previousKeysExpire"]
            .as_str()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .map(|t| t.as_second()),
        Some(old_expires.as_second()),
        "status times are in whole seconds"
    );
    let events = f.api.events();
    assert!(
        events.iter().any(|e| e["reason"] == "SigningKeyRotated"),
        "{events:?}"
    );
    // No key material in status, Events or logs' inputs.
    let observed = format!("{}{events:?}", status.body);
    for key in &keys {
        assert!(!observed.contains(&key["whsec_".len()..]), "{observed}");
    }

    // Recorded: the same value is not acted on again.
    let recorded = serde_json::from_value(last.clone()).expect("lastRotation");
    if let Some(status) = e.status.as_mut() {
        status.last_rotation = Some(recorded);
    }
    f.add_endpoint(&e);
    let calls = f.api.calls().len();
    endpoint::reconcile(Arc::new(e.clone()), f.ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(f.api.calls().len(), calls, "{:?}", &f.api.calls()[calls..]);
    assert_eq!(keys_of(&f.stored_keys("orders-signing")), keys);

    // A new value whose rotation reached the Secret before the controller stopped (status not
    // written): recorded, not rotated a second time.
    annotate(&mut e, ROTATE_ANNOTATION, "second");
    f.add_endpoint(&e);
    f.api
        .objects
        .lock()
        .unwrap()
        .get_mut("/api/v1/namespaces/acme/secrets/orders-signing")
        .expect("secret")["metadata"]["annotations"][ROTATION_REQUEST_ANNOTATION] = json!("second");
    endpoint::reconcile(Arc::new(e.clone()), f.ctx.clone())
        .await
        .expect("reconcile");
    let later = &f.api.writes()[writes.len()..];
    assert!(
        later
            .iter()
            .all(|c| !(c.method == "PATCH" && c.path.contains("/secrets/"))),
        "{later:?}"
    );
    assert_eq!(
        later
            .last()
            .map(|c| c.body["status"]["lastRotation"]["requested"].clone()),
        Some(json!("second"))
    );
    assert_eq!(keys_of(&f.stored_keys("orders-signing")), keys);
}

#[tokio::test]
async fn previous_keys_are_removed_when_their_overlap_is_over() {
    use crate::{
        model::signing_keys::fingerprint, resources::signing_secret::KEY_EXPIRY_ANNOTATION,
    };

    let mut f = Fixture::new();
    let e = ready_endpoint(&mut f);
    f.add_endpoint(&e);
    let (new, old) = (SigningKeys::generate(), SigningKeys::generate());
    let expiry = |at: Timestamp| json!({ fingerprint(&old): at }).to_string();
    // Still in its overlap: nothing to do, no API call.
    let later = Timestamp::now() + jiff::SignedDuration::from_hours(1);
    f.add_managed_secret(
        &e,
        &format!("{new} {old}"),
        &[(KEY_EXPIRY_ANNOTATION, expiry(later))],
    );
    endpoint::reconcile(Arc::new(e.clone()), f.ctx.clone())
        .await
        .expect("reconcile");
    assert!(f.api.calls().is_empty(), "{:?}", f.api.calls());

    // Over: the old key goes, and with it the expiry annotation.
    let past = Timestamp::now() - jiff::SignedDuration::from_secs(1);
    f.add_managed_secret(
        &e,
        &format!("{new} {old}"),
        &[(KEY_EXPIRY_ANNOTATION, expiry(past))],
    );
    endpoint::reconcile(Arc::new(e.clone()), f.ctx.clone())
        .await
        .expect("reconcile");
    let stored = f.stored_keys("orders-signing");
    assert_eq!(keys_of(&stored), [new]);
    assert!(
        stored["metadata"]["annotations"]
            .get(KEY_EXPIRY_ANNOTATION)
            .is_none(),
        "{stored}"
    );
    let writes = f.api.writes();
    assert_eq!(
        writes.iter().map(|c| c.method.as_str()).collect::<Vec<_>>(),
        ["GET", "PATCH"],
        "read fresh, then patch: {writes:?}"
    );
    assert!(
        f.api
            .events()
            .iter()
            .any(|e| e["reason"] == "PreviousSigningKeysRemoved")
    );
}

#[tokio::test]
async fn a_secret_the_operator_does_not_manage_is_not_rotated() {
    use super::rotate::ROTATE_ANNOTATION;

    let mut f = Fixture::new();
    // ready_endpoint's Secret is the user's: no owner reference, no annotation.
    let mut e = ready_endpoint(&mut f);
    annotate(&mut e, ROTATE_ANNOTATION, "now");
    f.add_endpoint(&e);
    endpoint::reconcile(Arc::new(e), f.ctx.clone())
        .await
        .expect("reconcile");
    let writes = f.api.writes();
    assert!(
        writes
            .iter()
            .all(|c| c.method != "PATCH" || !c.path.contains("/secrets/")),
        "{writes:?}"
    );
    let last = &writes.last().expect("lastRotation").body["status"]["lastRotation"];
    assert_eq!(
        (&last["requested"], &last["rotated"]),
        (&json!("now"), &json!(false))
    );
    assert!(
        last["message"]
            .as_str()
            .unwrap_or_default()
            .contains("is not managed for endpoint \"orders\""),
        "{last}"
    );
    assert!(
        f.api
            .events()
            .iter()
            .any(|e| e["reason"] == "SecretNotManaged" && e["type"] == "Warning"),
        "{:?}",
        f.api.events()
    );
}
