//! The control plane: `webhook-operator controller`.
//!
//! Every replica watches and serves its admin API; the replica holding the `Lease` runs the
//! reconcilers, the status writer and the stats folder, so only it writes status and touches
//! JetStream consumers. Losing the lease stops those tasks at once; another replica takes over.

pub mod conditions;
pub mod context;
pub mod enable;
pub mod endpoint;
pub mod error;
pub mod event_type;
pub mod key_rotation;
pub mod leader;
pub mod replay;
pub mod rotate;
pub mod route_sink;
pub mod status;
pub mod subscription;
pub mod tenant;
pub mod workloads;

#[cfg(test)]
mod tests;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Secret},
};
use kube::{
    Api, Client, ResourceExt,
    runtime::{
        Controller, WatchStreamExt,
        events::{Recorder, Reporter},
        predicates, reflector,
        reflector::ObjectRef,
        utils::Predicate,
        watcher,
    },
};
use tokio_util::sync::CancellationToken;

use crate::{
    admin::{self, AdminState},
    dataplane::topology::Authority,
    dataplane::{
        route_store::{self, Scope},
        stats::{AutoDisableArgs, StatsFolder, StatsView},
    },
    model::{ObjectKind, signing_keys},
    pipeline::{Connected, PipelineArgs},
    resources::{EventSubscription, EventType, WebhookEndpoint, compile},
    tenant_api::{self, TenantApiArgs},
};
use context::{Context, Stores};
use workloads::WorkloadSettings;

#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    #[command(flatten)]
    pub workloads: WorkloadSettings,
    /// `--auto-disable-after`: the stats folder (on the leader) disables failing endpoints.
    #[command(flatten)]
    pub auto_disable: AutoDisableArgs,
    #[command(flatten)]
    pub tenant_api: TenantApiArgs,
    /// After a signing key rotation (annotation webhook-operator.io/rotate-signing-key, or the
    /// tenant API without an overlap of its own), the previous keys keep signing this long,
    /// then are removed (Go duration, at most 168h).
    #[arg(
        long,
        env = "SIGNING_KEY_OVERLAP",
        default_value = "24h",
        value_parser = parse_overlap
    )]
    pub signing_key_overlap: Duration,
    /// Namespace the operator runs in (delivery Deployments go there too).
    #[arg(long, env = "POD_NAMESPACE", default_value = "webhook-operator")]
    pub namespace: String,
    /// Identity in leader election (defaults to the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Elect a leader through a Lease; turn off only for a single replica.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
}

pub async fn run(args: ControllerArgs, cancel: CancellationToken) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let connected = args
        .pipeline
        .connect("controller", Authority::Owner)
        .await?;
    let stats = StatsView::start(connected.topology.stats.clone(), cancel.clone());
    let routes = route_store::watch(
        connected.topology.routes.clone(),
        Scope::All,
        cancel.clone(),
    );
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let admin_state = AdminState {
        nats: connected.nats.clone(),
        js: connected.js.clone(),
        metrics: connected.metrics.clone(),
        catalog: admin::catalog_from_routes(routes, cancel.clone()),
        stats: stats.clone(),
        ready: ready_rx,
        max_payload_bytes: args.pipeline.max_payload_bytes,
    };
    let admin = tokio::spawn(admin::serve(
        args.pipeline.listen,
        admin_state,
        cancel.clone(),
    ));
    ready_tx.send_replace(true);
    tenant_api::start_in_cluster(
        &args.tenant_api,
        client.clone(),
        connected.js.clone(),
        args.signing_key_overlap,
        cancel.clone(),
    )
    .await?;

    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("webhook-operator-{}", uuid::Uuid::now_v7().simple()));
    let leadership = if args.leader_election {
        leader::elect(client.clone(), &args.namespace, &identity).await?
    } else {
        tokio::sync::watch::channel(true).1
    };
    let connected = Arc::new(connected);
    leader::run_while_leader(leadership, cancel.clone(), |term| {
        lead(
            client.clone(),
            args.clone(),
            connected.clone(),
            stats.clone(),
            identity.clone(),
            term,
        )
    })
    .await;
    let _ = admin.await;
    Ok(())
}

/// Everything the leader does, until `term` is cancelled.
async fn lead(
    client: Client,
    args: ControllerArgs,
    connected: Arc<Connected>,
    stats: StatsView,
    identity: String,
    term: CancellationToken,
) {
    tracing::info!(%identity, "leading: starting reconcilers");
    let (endpoint_reader, endpoint_writer) = reflector::store();
    let (subscription_reader, subscription_writer) = reflector::store();
    let (event_type_reader, event_type_writer) = reflector::store();
    let (secret_reader, secret_writer) = reflector::store();
    let (config_map_reader, config_map_writer) = reflector::store();
    let (deployment_reader, deployment_writer) = reflector::store();
    let wc = watcher::Config::default().any_semantic();
    let managed = watcher::Config::default().labels(&format!(
        "app.kubernetes.io/managed-by={}",
        workloads::MANAGED_BY
    ));

    // Status writes do not bump metadata.generation: filtering on generation (and finalizers,
    // and the operator's own annotations, which ask for actions) keeps the status writer from
    // re-triggering reconciles.
    let endpoints = watcher(Api::<WebhookEndpoint>::all(client.clone()), wc.clone())
        .default_backoff()
        .reflect(endpoint_writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation
                .combine(predicates::finalizers)
                .combine(replay::operator_annotations),
            Default::default(),
        );
    let subscriptions = watcher(Api::<EventSubscription>::all(client.clone()), wc.clone())
        .default_backoff()
        .reflect(subscription_writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::finalizers),
            Default::default(),
        );
    let event_types = watcher(Api::<EventType>::all(client.clone()), wc.clone())
        .default_backoff()
        .reflect(event_type_writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    let secrets = watcher(Api::<Secret>::all(client.clone()), wc.clone())
        .default_backoff()
        .reflect(secret_writer)
        .touched_objects();
    // ConfigMaps may hold endpoints' CA bundles (spec.tls.caBundleRef).
    let config_maps = watcher(Api::<ConfigMap>::all(client.clone()), wc.clone())
        .default_backoff()
        .reflect(config_map_writer)
        .touched_objects();
    let deployments = watcher(
        Api::<Deployment>::namespaced(client.clone(), &args.namespace),
        managed,
    )
    .default_backoff()
    .reflect(deployment_writer)
    .touched_objects();

    let stores = Stores {
        endpoints: endpoint_reader.clone(),
        subscriptions: subscription_reader.clone(),
        event_types: event_type_reader.clone(),
        secrets: secret_reader,
        config_maps: config_map_reader,
        deployments: deployment_reader,
    };
    let sink = Arc::new(route_sink::NatsRouteSink {
        js: connected.js.clone(),
        routes: connected.topology.routes.clone(),
        stats: connected.topology.stats.clone(),
        limits: args.pipeline.event_limits(),
    });
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "webhook-operator".into(),
            instance: Some(identity),
        },
    );
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            recorder,
            stores,
            sink,
            args.namespace.clone(),
            args.workloads.clone(),
        )
        .with_signing_key_overlap(args.signing_key_overlap),
    );

    // A Secret, ConfigMap or delivery Deployment changing re-reconciles the endpoints of its
    // namespace (that reference it).
    let for_namespace = {
        let reader = endpoint_reader.clone();
        move |namespace: Option<String>,
              object: Option<(ObjectKind, String)>|
              -> Vec<ObjectRef<WebhookEndpoint>> {
            reader
                .state()
                .iter()
                .filter(|e| e.namespace() == namespace)
                .filter(|e| {
                    object
                        .as_ref()
                        .is_none_or(|(kind, name)| compile::referenced(e, *kind).contains(name))
                })
                .map(|e| ObjectRef::from_obj(e.as_ref()))
                .collect()
        }
    };
    let secret_mapper = for_namespace.clone();
    let config_map_mapper = for_namespace.clone();
    let deployment_mapper = for_namespace;
    let endpoint_controller = Controller::for_stream(endpoints, endpoint_reader.clone())
        .watches_stream(secrets, move |secret: Secret| {
            secret_mapper(
                secret.namespace(),
                Some((ObjectKind::Secret, secret.name_any())),
            )
        })
        .watches_stream(config_maps, move |config_map: ConfigMap| {
            config_map_mapper(
                config_map.namespace(),
                Some((ObjectKind::ConfigMap, config_map.name_any())),
            )
        })
        .watches_stream(deployments, move |deployment: Deployment| {
            let tenant = deployment.labels().get(workloads::TENANT_LABEL).cloned();
            deployment_mapper(tenant, None)
                .into_iter()
                .take(1)
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(term.clone().cancelled_owned())
        .run(endpoint::reconcile, endpoint::error_policy, ctx.clone())
        .for_each(|_| async {});

    // Endpoints coming and going change which subscriptions are valid; EventTypes change how
    // they compare with the catalogue.
    let subscriptions_of = subscription_reader.clone();
    let subscriptions_in = subscription_reader.clone();
    let endpoint_changes = watcher(Api::<WebhookEndpoint>::all(client.clone()), wc.clone())
        .default_backoff()
        .touched_objects();
    let catalog_changes = watcher(Api::<EventType>::all(client.clone()), wc)
        .default_backoff()
        .touched_objects();
    let subscription_controller = Controller::for_stream(subscriptions, subscription_reader)
        .watches_stream(endpoint_changes, move |endpoint: WebhookEndpoint| {
            subscriptions_of
                .state()
                .iter()
                .filter(|s| {
                    s.namespace() == endpoint.namespace()
                        && s.spec.endpoint_ref.name == endpoint.name_any()
                })
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect::<Vec<_>>()
        })
        .watches_stream(catalog_changes, move |event_type: EventType| {
            subscriptions_in
                .state()
                .iter()
                .filter(|s| s.namespace() == event_type.namespace())
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(term.clone().cancelled_owned())
        .run(
            subscription::reconcile,
            subscription::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});

    let event_type_controller = Controller::for_stream(event_types, event_type_reader)
        .graceful_shutdown_on(term.clone().cancelled_owned())
        .run(event_type::reconcile, event_type::error_policy, ctx.clone())
        .for_each(|_| async {});

    let folder = StatsFolder::new(connected.js.clone(), connected.topology.stats.clone())
        .auto_disable_after(args.auto_disable.period())
        .run(term.clone());
    let status_writer = status::run(ctx.clone(), stats, term.clone());
    let orphans =
        remove_orphaned_routes(ctx.clone(), connected.topology.routes.clone(), term.clone());
    tokio::join!(
        endpoint_controller,
        subscription_controller,
        event_type_controller,
        folder,
        status_writer,
        orphans
    );
    tracing::info!("stopped leading");
}

/// A Go duration no longer than [`signing_keys::MAX_OVERLAP`].
fn parse_overlap(text: &str) -> Result<Duration, String> {
    crate::pipeline::parse_duration(text).and_then(signing_keys::check_overlap)
}

/// Routes of namespaces that no longer have any endpoint (e.g. the namespace was deleted while
/// the operator was down) are removed once the caches are complete.
async fn remove_orphaned_routes(
    ctx: Arc<Context>,
    routes: async_nats::jetstream::kv::Store,
    term: CancellationToken,
) {
    tokio::select! {
        _ = term.cancelled() => return,
        ready = ctx.stores.endpoints.wait_until_ready() => if ready.is_err() { return },
    }
    let live: BTreeSet<String> = ctx
        .stores
        .endpoints
        .state()
        .iter()
        .filter_map(|e| e.namespace())
        .collect();
    match route_store::tenants(&routes).await {
        Ok(tenants) => {
            for tenant in tenants.into_iter().filter(|t| !live.contains(t)) {
                tracing::info!(%tenant, "removing routes of a namespace without endpoints");
                let _ = ctx.routes.remove(tenant).await;
            }
        }
        Err(error) => tracing::warn!(%error, "could not list routes"),
    }
}
