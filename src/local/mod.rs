//! `webhook-operator local`: the whole pipeline in one process, configured from manifest files
//! instead of the Kubernetes API. Routes still travel through the routes bucket, so the router
//! and delivery run exactly as they do in a cluster.

pub mod manifests;

use std::{
    collections::BTreeSet,
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
        delivery::{BreakerSettings, DeliveryContext, TenantData, clients::OutboundArgs},
        route_store::{self, Scope},
        router::Router,
        stats::{AutoDisableArgs, StatsFolder, StatsView},
    },
    model::{EndpointKey, NamespaceData},
    pipeline::PipelineArgs,
    resources::compile::{Policy, compile_tenant},
    tenant_api::{self, TenantApiArgs, local::LocalLink},
};
use manifests::Manifests;

#[derive(Debug, Clone, clap::Args)]
pub struct LocalArgs {
    /// Directory of WebhookEndpoint, EventSubscription, EventType, Secret and ConfigMap manifests
    /// (re-read on change).
    #[arg(long)]
    pub manifests: PathBuf,
    /// Where and how deliveries may connect.
    #[command(flatten)]
    pub outbound: OutboundArgs,
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
    let clients = args.outbound.clients()?;
    let connected = args.pipeline.connect("local", Authority::Owner).await?;
    let (data_tx, data_rx) = watch::channel(Arc::new(TenantData::new()));
    let (catalog_tx, catalog_rx) = watch::channel(Arc::new(Vec::new()));
    let tenant_api =
        tenant_api::start_local(&args.tenant_api, connected.js.clone(), cancel.clone()).await?;
    let mut watcher = ManifestWatcher {
        dir: args.manifests.clone(),
        routes: connected.topology.routes.clone(),
        data: data_tx,
        catalog: catalog_tx,
        policy: Policy {
            require_https: args.outbound.require_https,
        },
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
        clients,
        require_https: args.outbound.require_https,
        metrics: connected.metrics.clone(),
        breaker: args.breaker,
        limits: args.pipeline.event_limits(),
    });
    tokio::spawn(crate::dataplane::delivery::run(
        ctx,
        routes.clone(),
        data_rx,
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
    data: watch::Sender<Arc<TenantData>>,
    catalog: watch::Sender<Arc<Vec<CatalogEntry>>>,
    policy: Policy,
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
        self.tenant_api
            .revision(jiff::Timestamp::now())
            .hash(&mut hasher);
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
        self.data.send_replace(Arc::new(manifests.data.clone()));
        let mut catalog = Vec::new();
        let mut live = BTreeSet::new();
        let empty = NamespaceData::default();
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
                manifests.data.get(tenant).unwrap_or(&empty),
                self.policy,
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
                    url: without_credentials(&endpoint.spec.url),
                    paused: endpoint.spec.paused,
                    fifo: endpoint.spec.ordering.is_fifo(),
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

/// The URL as listed by the admin API: credentials (refused as invalid, but present in the
/// manifest) replaced by `***`.
fn without_credentials(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("***");
            let _ = url.set_password(None);
            url.to_string()
        }
        Ok(_) => text.to_owned(),
        // Unparseable: anything between the scheme and an '@' may be a credential.
        Err(_) => match (text.find("://"), text.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}***{}", &text[..scheme + 3], &text[at..])
            }
            _ => text.to_owned(),
        },
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
