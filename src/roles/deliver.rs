//! `webhook-operator deliver --tenant NAMESPACE`: the delivery workers of one tenant.
//!
//! Routes come from the routes bucket, signing keys from the tenant's Secrets (the only thing
//! this role may read in Kubernetes). Both are kept in memory, so delivery goes on from the
//! last known state while NATS's bucket writer or the Kubernetes API is away.

use std::{collections::BTreeMap, sync::Arc};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    runtime::{WatchStreamExt, reflector, watcher},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    admin::{self, AdminState},
    dataplane::topology::Authority,
    dataplane::{
        delivery::{
            self, BreakerSettings, DeliveryContext, Secrets, address_guard::AddressGuardArgs,
        },
        ingest::is_dns_label,
        route_store::{self, Scope},
        stats::StatsView,
    },
    pipeline::PipelineArgs,
};

#[derive(Debug, Clone, clap::Args)]
pub struct DeliverArgs {
    /// The namespace (tenant) whose endpoints this process delivers to.
    #[arg(long)]
    pub tenant: String,
    /// `--allow-private-networks`, `--allow-cidr`: where deliveries may connect.
    #[command(flatten)]
    pub address_guard: AddressGuardArgs,
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
    let guard = args.address_guard.guard();
    tracing::info!(%guard, "outbound address guard");
    let client = kube::Client::try_default().await?;
    let connected = args.pipeline.connect("deliver", Authority::Joiner).await?;
    let secrets = watch_secrets(
        Api::namespaced(client, &args.tenant),
        args.tenant.clone(),
        cancel.clone(),
    );
    let routes = route_store::watch(
        connected.topology.routes.clone(),
        Scope::Tenant(args.tenant.clone()),
        cancel.clone(),
    );
    // The stats view also tells the workers which endpoints are auto-disabled.
    let stats = StatsView::start(connected.topology.stats.clone(), cancel.clone());
    let ctx = Arc::new(DeliveryContext {
        js: connected.js.clone(),
        client: delivery::http_client(guard)?,
        metrics: connected.metrics.clone(),
        breaker: args.breaker,
    });
    tokio::spawn(delivery::run(
        ctx,
        routes.clone(),
        secrets,
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

/// Mirrors the tenant's Secrets into the form delivery reads; the last state is kept while
/// the API server is unreachable (the watcher retries with backoff).
fn watch_secrets(
    api: Api<Secret>,
    tenant: String,
    cancel: CancellationToken,
) -> delivery::SecretsRx {
    let (tx, rx) = watch::channel(Arc::new(Secrets::new()));
    let (reader, writer) = reflector::store();
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
                    Some(Err(error)) => tracing::warn!(%error, "watching Secrets failed; keeping the last known keys"),
                    Some(Ok(_)) => {
                        let data = reader
                            .state()
                            .iter()
                            .map(|s| {
                                let values = s.data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                                (s.name_any(), values)
                            })
                            .collect();
                        tx.send_replace(Arc::new(BTreeMap::from([(tenant.clone(), data)])));
                    }
                },
            }
        }
    });
    rx
}
