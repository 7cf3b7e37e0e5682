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
    Client, Resource,
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
    status, subscription,
    workloads::{self, WorkloadSettings},
};
use crate::{
    dataplane::stats::StatsView,
    model::{EndpointKey, EndpointStats, TenantRoutes, signing_keys::SigningKeys},
    resources::{
        EventSubscription, EventSubscriptionSpec, WebhookEndpoint, WebhookEndpointSpec,
        event_subscription::EndpointRef,
    },
};

#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
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
                    body: body.clone(),
                });
                let base = path.trim_end_matches("/status").to_owned();
                let (status, answer) = match parts.method.as_str() {
                    "GET" => (
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
                    ),
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
}

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
}

struct Fixture {
    api: ApiServer,
    sink: Arc<RecordingSink>,
    ctx: Arc<Context>,
    endpoints: Writer<WebhookEndpoint>,
    subscriptions: Writer<EventSubscription>,
    secrets: Writer<Secret>,
    config_maps: Writer<ConfigMap>,
    deployments: Writer<Deployment>,
}

fn settings() -> WorkloadSettings {
    WorkloadSettings {
        deliver_image: "example/webhook-operator:test".into(),
        deliver_replicas: 1,
        deliver_cpu_request: "50m".into(),
        deliver_memory_request: "64Mi".into(),
        deliver_cpu_limit: "1".into(),
        deliver_memory_limit: "256Mi".into(),
        deliver_nats_creds_secret: None,
        deliver_nats: Default::default(),
        deliver_nats_url: "nats://nats:4222".into(),
        deliver_allow_private_networks: false,
        deliver_allow_cidrs: Vec::new(),
        deliver_log_format: "json".into(),
        deliver_egress_proxy: None,
        require_https: false,
    }
}

impl Fixture {
    fn new() -> Self {
        Self::with_settings(settings())
    }

    fn with_settings(settings: WorkloadSettings) -> Self {
        let (client, api) = ApiServer::start();
        let (endpoints_reader, endpoints) = reflector::store();
        let (subscriptions_reader, subscriptions) = reflector::store();
        let (secrets_reader, secrets) = reflector::store();
        let (deployments_reader, deployments) = reflector::store();
        let (config_maps_reader, config_maps) = reflector::store();
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
        let deployment = workloads::build("acme", "webhook-system", &settings()).deployment;
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
    f.add_endpoint(&e);
    f.add_secret("orders-signing");
    f.add_current_workload();
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
        ..settings()
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
