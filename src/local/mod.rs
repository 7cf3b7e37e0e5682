//! `webhook-operator local`: the whole pipeline in one process, configured from manifest files
//! instead of the Kubernetes API. Routes still travel through the routes bucket, so the router
//! and delivery run exactly as they do in a cluster.

pub mod manifests;

use std::{
    collections::{BTreeMap, BTreeSet},
    hash::{DefaultHasher, Hash, Hasher},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use async_nats::jetstream::kv;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    admin::{self, AdminState, CatalogEntry},
    dataplane::topology::Authority,
    dataplane::{
        delivery::{
            self, BreakerSettings, DeliveryContext, Secrets, address_guard::AddressGuardArgs,
        },
        route_store::{self, Scope},
        router::Router,
        stats::{AutoDisableArgs, StatsFolder, StatsView},
    },
    model::EndpointKey,
    pipeline::PipelineArgs,
    resources::compile::compile_tenant,
    tenant_api::{self, TenantApiArgs, local::LocalLink},
};
use manifests::Manifests;

#[derive(Debug, Clone, clap::Args)]
pub struct LocalArgs {
    /// Directory of WebhookEndpoint, EventSubscription, EventType and Secret manifests (re-read on change).
    #[arg(long)]
    pub manifests: PathBuf,
    /// `--allow-private-networks`, `--allow-cidr`: where deliveries may connect.
    #[command(flatten)]
    pub address_guard: AddressGuardArgs,
    /// `--circuit-breaker-threshold`, `--circuit-probe-interval`.
    #[command(flatten)]
    pub breaker: BreakerSettings,
    /// `--auto-disable-after`.
    #[command(flatten)]
    pub auto_disable: AutoDisableArgs,
    /// `--tenant-api-listen`: API-created objects live in memory beside the manifests.
    #[command(flatten)]
    pub tenant_api: TenantApiArgs,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

/// How often the manifests directory is checked for changes.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

pub async fn run(args: LocalArgs, cancel: CancellationToken) -> anyhow::Result<()> {
    if !args.manifests.is_dir() {
        anyhow::bail!("--manifests {}: not a directory", args.manifests.display());
    }
    let guard = args.address_guard.guard();
    tracing::info!(%guard, "outbound address guard");
    let connected = args.pipeline.connect("local", Authority::Owner).await?;
    let (secrets_tx, secrets_rx) = watch::channel(Arc::new(Secrets::new()));
    let (catalog_tx, catalog_rx) = watch::channel(Arc::new(Vec::new()));
    let tenant_api =
        tenant_api::start_local(&args.tenant_api, connected.js.clone(), cancel.clone()).await?;
    let mut watcher = ManifestWatcher {
        dir: args.manifests.clone(),
        routes: connected.topology.routes.clone(),
        secrets: secrets_tx,
        catalog: catalog_tx,
        fingerprint: None,
        tenant_api,
    };
    watcher.refresh().await;
    tokio::spawn(watcher.run(cancel.clone()));

    let routes = route_store::watch(
        connected.topology.routes.clone(),
        Scope::All,
        cancel.clone(),
    );
    let stats = StatsView::start(connected.topology.stats.clone(), cancel.clone());
    tokio::spawn(
        StatsFolder::new(connected.js.clone(), connected.topology.stats.clone())
            .auto_disable_after(args.auto_disable.period())
            .run(cancel.clone()),
    );
    tokio::spawn(
        Router {
            js: connected.js.clone(),
            event_index: connected.topology.event_index.clone(),
            routes: routes.clone(),
            metrics: connected.metrics.clone(),
            limits: args.pipeline.event_limits(),
        }
        .run(cancel.clone()),
    );
    let ctx = Arc::new(DeliveryContext {
        js: connected.js.clone(),
        client: delivery::http_client(guard)?,
        metrics: connected.metrics.clone(),
        breaker: args.breaker,
    });
    tokio::spawn(delivery::run(
        ctx,
        routes.clone(),
        secrets_rx,
        stats.disabled(),
        cancel.clone(),
    ));
    let state = AdminState::for_pipeline(
        &connected,
        catalog_rx,
        routes,
        stats,
        args.pipeline.max_payload_bytes,
    );
    admin::serve(args.pipeline.listen, state, cancel.clone()).await?;
    Ok(())
}

struct ManifestWatcher {
    dir: PathBuf,
    routes: kv::Store,
    secrets: watch::Sender<Arc<Secrets>>,
    catalog: watch::Sender<Arc<Vec<CatalogEntry>>>,
    fingerprint: Option<u64>,
    /// Objects created through the tenant API, merged into what the files define.
    tenant_api: LocalLink,
}

impl ManifestWatcher {
    async fn run(mut self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => self.refresh().await,
                _ = self.tenant_api.changed() => self.refresh().await,
            }
        }
    }

    /// Re-reads the directory; applies it when any file changed.
    async fn refresh(&mut self) {
        let files = match read_files(&self.dir) {
            Ok(files) => files,
            Err(error) => {
                tracing::error!(dir = %self.dir.display(), %error, "cannot read manifests; keeping the current configuration");
                return;
            }
        };
        let mut hasher = DefaultHasher::new();
        files.hash(&mut hasher);
        self.tenant_api.generation().hash(&mut hasher);
        let fingerprint = hasher.finish();
        if self.fingerprint == Some(fingerprint) {
            return;
        }
        let mut manifests = manifests::load(&files);
        self.tenant_api.merge(&mut manifests);
        for error in &manifests.errors {
            tracing::error!("skipping manifest {error}");
        }
        match self.apply(manifests).await {
            Ok(()) => self.fingerprint = Some(fingerprint),
            Err(error) => tracing::warn!(%error, "could not publish routes; will retry"),
        }
    }

    async fn apply(&self, manifests: Manifests) -> Result<(), route_store::RouteStoreError> {
        // Secrets first: delivery must know a new endpoint's key by the time its route arrives.
        self.secrets
            .send_replace(Arc::new(manifests.secrets.clone()));
        let mut catalog = Vec::new();
        let mut live = BTreeSet::new();
        let empty = BTreeMap::new();
        for tenant in manifests.tenants() {
            let endpoints = manifests
                .endpoints
                .get(tenant)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let subscriptions = manifests
                .subscriptions
                .get(tenant)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let event_types = manifests
                .event_types
                .get(tenant)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let report = compile_tenant(
                tenant,
                endpoints,
                subscriptions,
                event_types,
                manifests.secrets.get(tenant).unwrap_or(&empty),
            );
            let verdicts = [
                ("WebhookEndpoint", &report.endpoints),
                ("EventSubscription", &report.subscriptions),
                ("EventType", &report.event_types),
            ];
            for (kind, verdicts) in verdicts {
                for (name, verdict) in verdicts {
                    if let Err(problem) = verdict {
                        tracing::warn!(namespace = %tenant, kind, %name, reason = problem.reason, "{}", problem.message);
                    }
                }
            }
            for (name, verdict) in report.catalog.iter().flatten() {
                if let Err(problem) = verdict {
                    tracing::warn!(namespace = %tenant, kind = "EventSubscription", %name, reason = problem.reason, "{}", problem.message);
                }
            }
            for endpoint in endpoints {
                let name = kube::ResourceExt::name_any(endpoint);
                catalog.push(CatalogEntry {
                    key: EndpointKey::new(tenant, &name),
                    url: endpoint.spec.url.clone(),
                    paused: endpoint.spec.paused,
                    problem: report
                        .endpoints
                        .get(&name)
                        .and_then(|v| v.clone().err())
                        .map(|p| (p.reason.to_owned(), p.message)),
                });
            }
            if report.routes.endpoints.is_empty() {
                continue;
            }
            route_store::publish(&self.routes, &report.routes).await?;
            live.insert(tenant.clone());
        }
        for tenant in route_store::tenants(&self.routes).await? {
            if !live.contains(&tenant) {
                route_store::remove(&self.routes, &tenant).await?;
            }
        }
        self.catalog.send_replace(Arc::new(catalog));
        Ok(())
    }
}

fn read_files(dir: &std::path::Path) -> std::io::Result<Vec<(PathBuf, String)>> {
    manifests::manifest_files(dir)?
        .into_iter()
        // Lossy, so a file that is not UTF-8 is reported as bad YAML instead of stalling reloads.
        .map(|path| {
            std::fs::read(&path).map(|bytes| (path, String::from_utf8_lossy(&bytes).into_owned()))
        })
        .collect()
}
