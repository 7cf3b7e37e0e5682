//! `webhook-operator deliver --tenant NAMESPACE`: the delivery workers of one tenant.
//!
//! Routes come from the routes bucket; signing keys, credentials and CA bundles from the
//! tenant's Secrets and ConfigMaps (the only things this role may read in Kubernetes). Both are
//! kept in memory, so delivery goes on from the last known state while NATS's bucket writer or
//! the Kubernetes API is away.

use std::{collections::BTreeMap, sync::Arc};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api, Resource, ResourceExt,
    runtime::{WatchStreamExt, reflector, watcher},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    admin::{self, AdminState},
    dataplane::topology::Authority,
    dataplane::{
        delivery::{
            self, BreakerSettings, DeliveryContext, TenantData, TenantDataRx, clients::OutboundArgs,
        },
        ingest::is_dns_label,
        route_store::{self, Scope},
        stats::StatsView,
    },
    model::{NamespaceData, credentials::ObjectData},
    pipeline::PipelineArgs,
    resources::object_data::{config_map_data, secret_data},
};

#[derive(Debug, Clone, clap::Args)]
pub struct DeliverArgs {
    /// The namespace (tenant) whose endpoints this process delivers to.
    #[arg(long)]
    pub tenant: String,
    /// Where and how deliveries may connect.
    #[command(flatten)]
    pub outbound: OutboundArgs,
    /// `--circuit-breaker-threshold`, `--circuit-probe-interval`.
    #[command(flatten)]
    pub breaker: BreakerSettings,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

pub async fn run(args: DeliverArgs, cancel: CancellationToken) -> anyhow::Result<()> {
    if !is_dns_label(&args.tenant) {
        anyhow::bail!("--tenant {:?} is not a valid namespace name", args.tenant);
    }
    let client = kube::Client::try_default().await?;
    let references = watch_references(client, args.tenant.clone(), cancel.clone());
    serve(args, references, cancel).await
}

/// Everything but the Kubernetes watches: delivery of the tenant's endpoints from
/// `references` (its Secrets and ConfigMaps), and the admin server.
pub async fn serve(
    args: DeliverArgs,
    references: TenantDataRx,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let clients = args.outbound.clients()?;
    let connected = args.pipeline.connect("deliver", Authority::Joiner).await?;
    let routes = route_store::watch(
        connected.topology.routes.clone(),
        Scope::Tenant(args.tenant.clone()),
        cancel.clone(),
    );
    // The stats view also tells the workers which endpoints are auto-disabled.
    let stats = StatsView::start(connected.topology.stats.clone(), cancel.clone());
    let ctx = Arc::new(DeliveryContext {
        js: connected.js.clone(),
        clients,
        require_https: args.outbound.require_https,
        metrics: connected.metrics.clone(),
        breaker: args.breaker,
        limits: args.pipeline.event_limits(),
    });
    tokio::spawn(delivery::run(
        ctx,
        routes.clone(),
        references,
        stats.disabled(),
        cancel.clone(),
    ));
    let catalog = admin::catalog_from_routes(routes.clone(), cancel.clone());
    let state = AdminState::for_pipeline(
        &connected,
        catalog,
        routes,
        stats,
        args.pipeline.max_payload_bytes,
    );
    admin::serve(args.pipeline.listen, state, cancel).await?;
    Ok(())
}

/// Mirrors the tenant's Secrets and ConfigMaps into the form delivery reads; the last state is
/// kept while the API server is unreachable (the watchers retry with backoff).
fn watch_references(
    client: kube::Client,
    tenant: String,
    cancel: CancellationToken,
) -> TenantDataRx {
    let (tx, rx) = watch::channel(Arc::new(TenantData::new()));
    let tx = Arc::new(tx);
    let secrets = mirror(
        Api::<Secret>::namespaced(client.clone(), &tenant),
        secret_data,
        cancel.clone(),
    );
    let config_maps = mirror(
        Api::<ConfigMap>::namespaced(client, &tenant),
        config_map_data,
        cancel.clone(),
    );
    tokio::spawn(async move {
        let (mut secrets, mut config_maps) = (secrets, config_maps);
        loop {
            let data = NamespaceData {
                secrets: secrets.borrow_and_update().as_ref().clone(),
                config_maps: config_maps.borrow_and_update().as_ref().clone(),
            };
            tx.send_replace(Arc::new(BTreeMap::from([(tenant.clone(), data)])));
            tokio::select! {
                _ = cancel.cancelled() => return,
                Ok(()) = secrets.changed() => {}
                Ok(()) = config_maps.changed() => {}
                else => return,
            }
        }
    });
    rx
}

type ObjectsRx = watch::Receiver<Arc<BTreeMap<String, ObjectData>>>;

/// Follows the objects of `api`, each reduced to its data by `data_of`.
fn mirror<K>(api: Api<K>, data_of: fn(&K) -> ObjectData, cancel: CancellationToken) -> ObjectsRx
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (tx, rx) = watch::channel(Arc::new(BTreeMap::new()));
    let (reader, writer) = reflector::store();
    let kind = K::kind(&()).into_owned();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(
            watcher(api, watcher::Config::default())
                .default_backoff()
                .reflect(writer)
                .touched_objects()
        );
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                event = events.next() => match event {
                    None => return,
                    Some(Err(error)) => tracing::warn!(%error, kind, "watch failed; keeping the last known state"),
                    Some(Ok(_)) => {
                        let objects = reader.state().iter().map(|o| (o.name_any(), data_of(o))).collect();
                        tx.send_replace(Arc::new(objects));
                    }
                },
            }
        }
    });
    rx
}
