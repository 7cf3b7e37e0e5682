//! Controller scale benchmark: 1,000 endpoints and 1,000 subscriptions reconciled against an
//! in-process API server that answers instantly and counts requests.
//!
//! It measures the controller's own cost (reconciles per second, API writes per pass, memory),
//! not API-server latency: the mock answers at once, so throughput here is an upper bound and
//! the write counts are exact. `make bench` runs it; the table is printed and replaces the
//! controller section of `BENCHMARKS.md`.

// Shared with other benches; this one uses a part.
#[allow(dead_code)]
#[path = "common/sections.rs"]
mod sections;

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use futures::{FutureExt, future::BoxFuture};
use http::{Request, Response};
use jiff::Timestamp;
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Client,
    api::ObjectMeta,
    client::Body,
    runtime::{
        events::{Recorder, Reporter},
        reflector::{self, store::Writer},
        watcher,
    },
};
use serde_json::json;
use webhook_operator::{
    controlplane::{
        conditions::{Desired, READY},
        context::{Context, RouteSink, Stores},
        endpoint::{self, FINALIZER},
        error::Error,
        status, subscription,
        workloads::{self, WorkloadSettings},
    },
    dataplane::replay::ReplayReport,
    model::{EndpointKey, EndpointStats, TenantRoutes, signing_keys::SigningKeys},
    resources::{
        EventSubscription, EventSubscriptionSpec, EventType, WebhookEndpoint, WebhookEndpointSpec,
        event_subscription::EndpointRef,
    },
};

const NAMESPACES: usize = 10;
const PER_NAMESPACE: usize = 100;

#[derive(Default)]
struct Counts {
    reads: AtomicUsize,
    writes: AtomicUsize,
}

fn mock_api() -> (Client, Arc<Counts>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let counter = if parts.method == http::Method::GET {
                &c.reads
            } else {
                &c.writes
            };
            counter.fetch_add(1, Ordering::Relaxed);
            // Plausible answers: objects echo back; finalizer and status patches answer with a
            // minimal valid object of the kind in the path.
            let answer = if parts.uri.path().contains("webhookendpoints") {
                json!({"apiVersion": "webhook-operator.io/v1alpha1", "kind": "WebhookEndpoint", "metadata": {"name": "x", "namespace": "x"}, "spec": {"url": "https://x.example"}})
            } else if parts.uri.path().contains("eventsubscriptions") {
                json!({"apiVersion": "webhook-operator.io/v1alpha1", "kind": "EventSubscription", "metadata": {"name": "x", "namespace": "x"}, "spec": {"endpointRef": {"name": "x"}, "eventTypes": ["x"]}})
            } else {
                body
            };
            let response = Response::builder()
                .status(200)
                .body(Body::from(serde_json::to_vec(&answer).unwrap_or_default()));
            if let Ok(response) = response {
                send.send_response(response);
            }
        }
    });
    (client_of(service), counts)
}

fn client_of(service: tower_test::mock::Mock<Request<Body>, Response<Body>>) -> Client {
    Client::new(service, "default")
}

struct NullSink;

impl RouteSink for NullSink {
    fn publish(&self, _: TenantRoutes) -> BoxFuture<'_, Result<(), Error>> {
        async { Ok(()) }.boxed()
    }
    fn remove(&self, _: String) -> BoxFuture<'_, Result<(), Error>> {
        async { Ok(()) }.boxed()
    }
    fn discard_endpoint(&self, _: EndpointKey) -> BoxFuture<'_, Result<(), Error>> {
        async { Ok(()) }.boxed()
    }
    fn held_back(&self, _: EndpointKey, _: bool) -> BoxFuture<'_, Result<u64, Error>> {
        async { Ok(0) }.boxed()
    }
    fn enable_endpoint(&self, _: EndpointKey) -> BoxFuture<'_, Result<bool, Error>> {
        async { Ok(false) }.boxed()
    }
    fn replay_dead_letters(
        &self,
        _: EndpointKey,
        _: Timestamp,
    ) -> BoxFuture<'_, Result<ReplayReport, Error>> {
        async { Ok(ReplayReport::default()) }.boxed()
    }
}

fn endpoint(namespace: &str, name: &str, finalized: bool, ready: bool) -> WebhookEndpoint {
    let spec: WebhookEndpointSpec =
        serde_json::from_value(json!({"url": format!("https://{name}.example/hook")}))
            .unwrap_or_else(|e| panic!("{e}"));
    let mut e = WebhookEndpoint::new(name, spec);
    e.metadata.namespace = Some(namespace.into());
    e.metadata.generation = Some(1);
    e.metadata.uid = Some(format!("{namespace}-{name}"));
    if finalized {
        e.metadata.finalizers = Some(vec![FINALIZER.into()]);
    }
    if ready {
        let condition = Desired::new(
            READY,
            true,
            "Active",
            "Valid; events of subscribed types are delivered.",
        );
        e.status = Some(webhook_operator::resources::WebhookEndpointStatus {
            observed_generation: Some(1),
            conditions: vec![condition.to_condition(&[], Some(1), Timestamp::now())],
            ..Default::default()
        });
    }
    e
}

fn subscription(namespace: &str, name: &str, ready: bool) -> EventSubscription {
    let mut s = EventSubscription::new(
        name,
        EventSubscriptionSpec {
            endpoint_ref: EndpointRef { name: name.into() },
            event_types: vec![format!("{name}.*"), "order.>".into()],
            filter: None,
        },
    );
    s.metadata.namespace = Some(namespace.into());
    s.metadata.generation = Some(1);
    s.metadata.finalizers = Some(vec![FINALIZER.into()]);
    if ready {
        let condition = Desired::new(
            READY,
            true,
            "Active",
            "Routing matching events to the endpoint.",
        );
        s.status = Some(webhook_operator::resources::EventSubscriptionStatus {
            observed_generation: Some(1),
            conditions: vec![condition.to_condition(&[], Some(1), Timestamp::now())],
        });
    }
    s
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

struct World {
    ctx: Arc<Context>,
    counts: Arc<Counts>,
    endpoints: Writer<WebhookEndpoint>,
    subscriptions: Writer<EventSubscription>,
}

fn names() -> impl Iterator<Item = (String, String)> {
    (0..NAMESPACES)
        .flat_map(|n| (0..PER_NAMESPACE).map(move |i| (format!("tenant-{n}"), format!("ep-{i}"))))
}

fn world() -> World {
    let (client, counts) = mock_api();
    let (endpoints_reader, mut endpoints) = reflector::store();
    let (subscriptions_reader, mut subscriptions) = reflector::store();
    let (event_types_reader, mut event_types) = reflector::store::<EventType>();
    event_types.apply_watcher_event(&watcher::Event::InitDone);
    let (secrets_reader, mut secrets) = reflector::store();
    let (deployments_reader, mut deployments) = reflector::store();
    // Listed first (reconciles wait for that); the objects are applied afterwards.
    endpoints.apply_watcher_event(&watcher::Event::InitDone);
    subscriptions.apply_watcher_event(&watcher::Event::InitDone);
    secrets.apply_watcher_event(&watcher::Event::InitDone);
    deployments.apply_watcher_event(&watcher::Event::InitDone);
    // No ConfigMaps in this benchmark: an empty cache.
    let (config_maps_reader, mut config_maps) = reflector::store();
    config_maps.apply_watcher_event(&watcher::Event::InitDone);
    for (namespace, name) in names() {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(format!("{name}-signing")),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "secret".to_string(),
                ByteString(SigningKeys::generate().into_bytes()),
            )])),
            ..Default::default()
        };
        secrets.apply_watcher_event(&watcher::Event::Apply(secret));
    }
    for n in 0..NAMESPACES {
        let deployment = workloads::build(
            &format!("tenant-{n}"),
            "webhook-system",
            &WorkloadSettings::default(),
        )
        .deployment;
        deployments.apply_watcher_event(&watcher::Event::Apply(deployment));
    }
    let stores = Stores {
        endpoints: endpoints_reader,
        subscriptions: subscriptions_reader,
        event_types: event_types_reader,
        secrets: secrets_reader,
        config_maps: config_maps_reader,
        deployments: deployments_reader,
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "bench".into(),
            instance: None,
        },
    );
    let ctx = Arc::new(Context::new(
        client,
        recorder,
        stores,
        Arc::new(NullSink),
        "webhook-system".into(),
        WorkloadSettings::default(),
    ));
    World {
        ctx,
        counts,
        endpoints,
        subscriptions,
    }
}

impl World {
    fn load(&mut self, finalized: bool, ready: bool) {
        for (namespace, name) in names() {
            self.endpoints
                .apply_watcher_event(&watcher::Event::Apply(endpoint(
                    &namespace, &name, finalized, ready,
                )));
            self.subscriptions
                .apply_watcher_event(&watcher::Event::Apply(subscription(
                    &namespace, &name, ready,
                )));
        }
    }

    /// Reconciles every endpoint and subscription once; returns (seconds, writes).
    async fn pass(&self, finalized: bool, ready: bool) -> (f64, usize) {
        let before = self.counts.writes.load(Ordering::Relaxed);
        let started = Instant::now();
        for (namespace, name) in names() {
            let e = Arc::new(endpoint(&namespace, &name, finalized, ready));
            let _ = endpoint::reconcile(e, self.ctx.clone()).await;
            let s = Arc::new(subscription(&namespace, &name, ready));
            let _ = subscription::reconcile(s, self.ctx.clone()).await;
        }
        (
            started.elapsed().as_secs_f64(),
            self.counts.writes.load(Ordering::Relaxed) - before,
        )
    }
}

/// Replaces the controller section of BENCHMARKS.md, leaving the rest as it is.
fn write_section(table: &str) {
    let date = jiff::Zoned::now().strftime("%Y-%m-%d %H:%M %Z");
    let body = format!(
        "## Controller at 1,000 endpoints and 1,000 subscriptions\n\n\
         Command: `make bench` (runs `cargo bench --bench controller`), {date}. The reconcilers run against an \
         in-process API server that answers at once and counts requests, so reconciles/s is the controller's own \
         cost (an upper bound with a real API server) and write counts are exact. A steady-state pass reconciles \
         every object with nothing changed: the target is zero writes.\n\n{table}"
    );
    if let Err(error) = sections::write("controller-bench", &body) {
        eprintln!("could not update BENCHMARKS.md: {error}");
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(async {
        let rss_start = rss_kib();
        let mut world = world();
        let objects = NAMESPACES * PER_NAMESPACE;
        world.load(false, false);
        let (t_first, w_first) = world.pass(false, false).await;
        world.load(true, false);
        let (t_second, w_second) = world.pass(true, false).await;
        world.load(true, true);
        let mut steady = Vec::new();
        for _ in 0..5 {
            steady.push(world.pass(true, true).await);
        }
        let mut times: Vec<f64> = steady.iter().map(|s| s.0).collect();
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let steady_writes: usize = steady.iter().map(|s| s.1).sum();

        // Status writer at steady state: counters unchanged, so no writes.
        let stats = webhook_operator::dataplane::stats::StatsView::default();
        let before = world.counts.writes.load(Ordering::Relaxed);
        for endpoint in world.ctx.stores.endpoints.state() {
            let key = EndpointKey::new(endpoint.metadata.namespace.clone().unwrap_or_default(), endpoint.metadata.name.clone().unwrap_or_default());
            let counters = EndpointStats::default();
            if let Some(next) = status::counter_status(&endpoint, &counters, None, Timestamp::now()) {
                // First fold writes; mirror what the watch would bring back into the cache.
                let mut updated = (*endpoint).clone();
                let status = updated.status.get_or_insert_with(Default::default);
                status.health = Some(next.health);
                status.conditions.push(next.healthy.clone());
                world.endpoints.apply_watcher_event(&watcher::Event::Apply(updated));
            }
            stats.insert(key, counters);
        }
        let mut status_rounds_writes = 0;
        for endpoint in world.ctx.stores.endpoints.state() {
            let key = EndpointKey::new(endpoint.metadata.namespace.clone().unwrap_or_default(), endpoint.metadata.name.clone().unwrap_or_default());
            if status::counter_status(&endpoint, &stats.get(&key), None, Timestamp::now()).is_some() {
                status_rounds_writes += 1;
            }
        }
        let _ = before;
        let rss_end = rss_kib();
        let reconciles = 2 * objects;
        let table = format!(
            "| measure | value |\n|---|---|\n\
             | objects | {objects} WebhookEndpoints + {objects} EventSubscriptions in {NAMESPACES} namespaces |\n\
             | first pass (adds finalizers) | {:.2} s, {w_first} API writes |\n\
             | second pass (Ready conditions, Secrets exist, workloads current) | {:.2} s, {w_second} API writes |\n\
             | steady-state pass, median of 5 | {:.3} s = {:.0} reconciles/s |\n\
             | API writes in 5 steady-state passes | {steady_writes} |\n\
             | status writer, steady counters: endpoints needing a write per 10 s round | {status_rounds_writes} |\n\
             | process RSS (start -> end) | {} MiB -> {} MiB |\n",
            t_first,
            t_second,
            median,
            reconciles as f64 / median,
            rss_start / 1024,
            rss_end / 1024,
        );
        println!("{table}");
        write_section(&table);
        assert_eq!(steady_writes, 0, "steady state must not write");
    });
}
