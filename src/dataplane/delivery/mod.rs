//! Delivery: one worker per endpoint, started, reconfigured and stopped as routes, Secrets,
//! ConfigMaps and the auto-disabled set change. A worker delivers the endpoint's jobs and, for
//! a FIFO endpoint, its FIFO queue.

pub mod address_guard;
pub mod attempt;
pub mod backoff;
pub mod breaker;
pub mod clients;
pub mod egress_proxy;
mod ordered;
mod outcome;
pub mod outgoing;
mod shared;
pub mod signature;
mod worker;

pub use breaker::BreakerSettings;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use self::{address_guard::GuardedClient, clients::Clients};
use super::{
    plan::EventLimits,
    route_store::{self, RoutesRx},
    stats::DisabledRx,
};
use crate::{
    metrics::Metrics,
    model::{
        CompiledRoutes, EndpointConfig, EndpointKey, NamespaceData, credentials::Authorization,
        signing_keys::SigningKeys,
    },
};

/// Slack on top of the request timeout before JetStream redelivers an unacknowledged job (or
/// FIFO head). Short, because it is also how long the work of a crashed process waits to come
/// back.
pub const ACK_SLACK: Duration = Duration::from_secs(5);

/// Secrets and ConfigMaps of every served tenant, by namespace.
pub type TenantData = BTreeMap<String, NamespaceData>;
pub type TenantDataRx = watch::Receiver<Arc<TenantData>>;

/// Shared by every worker of a process.
pub struct DeliveryContext {
    pub js: jetstream::Context,
    /// Pooled clients: keep-alive connections are reused per host across endpoints.
    pub clients: Clients,
    /// Refuse `http://` endpoint URLs (`--require-https`).
    pub require_https: bool,
    pub metrics: Arc<Metrics>,
    pub breaker: BreakerSettings,
    /// FIFO queues decide which events are theirs as the router does, with the same limits.
    pub limits: EventLimits,
}

/// What a worker needs: the endpoint's settings, what its references resolve to (or why they
/// do not), and whether it is auto-disabled.
#[derive(Debug, PartialEq)]
pub struct EndpointState {
    pub config: EndpointConfig,
    pub resolved: Result<ResolvedEndpoint, String>,
    pub disabled: bool,
}

/// An endpoint's signing keys, `Authorization` value and the client that trusts its CA.
/// `Debug` shows no key material.
#[derive(Clone)]
pub struct ResolvedEndpoint {
    pub keys: SigningKeys,
    pub authorization: Option<Authorization>,
    pub client: GuardedClient,
    /// Fingerprint of the CA bundle the client trusts, if not the system roots.
    trust: Option<[u8; 32]>,
}

impl PartialEq for ResolvedEndpoint {
    fn eq(&self, other: &Self) -> bool {
        self.keys == other.keys
            && self.authorization == other.authorization
            && self.trust == other.trust
    }
}

impl fmt::Debug for ResolvedEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedEndpoint")
            .field("keys", &self.keys)
            .field("authorization", &self.authorization)
            .field("custom_ca", &self.trust.is_some())
            .finish()
    }
}

struct WorkerHandle {
    state: watch::Sender<Arc<EndpointState>>,
    pending: Arc<AtomicU64>,
    cancel: CancellationToken,
}

/// Runs workers for every endpoint in `routes` until `cancel`; endpoints in `disabled` send
/// nothing (their jobs stay queued).
pub async fn run(
    ctx: Arc<DeliveryContext>,
    mut routes: RoutesRx,
    mut references: TenantDataRx,
    mut disabled: DisabledRx,
    cancel: CancellationToken,
) {
    let mut workers: HashMap<EndpointKey, WorkerHandle> = HashMap::new();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = route_store::loaded(&mut routes) => {}
    }
    // Which endpoints are auto-disabled must be known before any of them is served.
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = disabled.wait_for(Option::is_some) => {}
    }
    let mut gauges = tokio::time::interval(Duration::from_secs(5));
    let mut gauge_tenants = BTreeSet::new();
    loop {
        let snapshot = routes.borrow_and_update().clone().unwrap_or_default();
        let data = references.borrow_and_update().clone();
        let current_disabled = disabled.borrow_and_update().clone().unwrap_or_default();
        reconcile_workers(
            &ctx,
            &mut workers,
            (&snapshot, &routes),
            &data,
            &current_disabled,
            &cancel,
        );
        // At once, so a tenant's gauge exists as soon as its workers do; then on every tick.
        publish_pending(&ctx.metrics, &workers, &mut gauge_tenants);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    workers.values().for_each(|w| w.cancel.cancel());
                    return;
                }
                Ok(()) = routes.changed() => break,
                Ok(()) = references.changed() => break,
                Ok(()) = disabled.changed() => break,
                _ = gauges.tick() => publish_pending(&ctx.metrics, &workers, &mut gauge_tenants),
            }
        }
    }
}

/// `routes`: the snapshot to serve, and the watch it came from (FIFO queues follow it).
fn reconcile_workers(
    ctx: &Arc<DeliveryContext>,
    workers: &mut HashMap<EndpointKey, WorkerHandle>,
    (routes, routes_rx): (&CompiledRoutes, &RoutesRx),
    data: &TenantData,
    disabled: &BTreeSet<EndpointKey>,
    cancel: &CancellationToken,
) {
    let mut desired = HashMap::new();
    let empty = NamespaceData::default();
    for (tenant, config) in routes.endpoints() {
        let resolved = resolve(ctx, data.get(tenant).unwrap_or(&empty), config);
        let key = EndpointKey::new(tenant, &config.name);
        let state = EndpointState {
            config: config.clone(),
            resolved,
            disabled: disabled.contains(&key),
        };
        desired.insert(key, state);
    }
    let used: HashSet<[u8; 32]> = desired
        .values()
        .filter_map(|state| state.resolved.as_ref().ok()?.trust)
        .collect();
    ctx.clients.retain(&used);
    workers.retain(|key, worker| {
        let keep = desired.contains_key(key);
        if !keep {
            tracing::info!(endpoint = %key, "endpoint removed; stopping its delivery (queued jobs stay queued)");
            worker.cancel.cancel();
            ctx.metrics.forget_endpoint(&key.tenant, &key.name);
        }
        keep
    });
    ctx.metrics.set_endpoint_count(desired.len());
    for (key, state) in desired {
        match workers.get(&key) {
            Some(worker) => {
                worker.state.send_if_modified(|current| {
                    let changed = **current != state;
                    if changed {
                        *current = Arc::new(state);
                    }
                    changed
                });
            }
            None => {
                tracing::info!(endpoint = %key, "starting delivery");
                let (tx, rx) = watch::channel(Arc::new(state));
                let worker_cancel = cancel.child_token();
                let pending = Arc::new(AtomicU64::new(0));
                tokio::spawn(worker::run(
                    ctx.clone(),
                    key.clone(),
                    rx,
                    routes_rx.clone(),
                    pending.clone(),
                    worker_cancel.clone(),
                ));
                workers.insert(
                    key,
                    WorkerHandle {
                        state: tx,
                        pending,
                        cancel: worker_cancel,
                    },
                );
            }
        }
    }
}

/// Resolves what `config` references in its namespace. The error says which field and why,
/// never a value.
fn resolve(
    ctx: &DeliveryContext,
    data: &NamespaceData,
    config: &EndpointConfig,
) -> Result<ResolvedEndpoint, String> {
    if ctx.require_https && !config.url.starts_with("https://") {
        return Err("spec.url: plain http is refused (--require-https)".into());
    }
    let keys = data
        .signing_keys(&config.secret)
        .map_err(|e| e.to_string())?;
    let authorization = match &config.auth {
        Some(auth) => Some(data.authorization(auth).map_err(|e| e.to_string())?),
        None => None,
    };
    let ca = match &config.ca_bundle {
        Some(reference) => Some(data.ca_bundle(reference).map_err(|e| e.to_string())?),
        None => None,
    };
    Ok(ResolvedEndpoint {
        keys,
        authorization,
        client: ctx.clients.get(ca.as_ref())?,
        trust: ca.map(|ca| ca.fingerprint()),
    })
}

/// Sets `webhook_pending_deliveries` per served tenant, and drops tenants no longer served.
fn publish_pending(
    metrics: &Metrics,
    workers: &HashMap<EndpointKey, WorkerHandle>,
    published: &mut BTreeSet<String>,
) {
    let mut by_tenant: BTreeMap<&str, u64> = BTreeMap::new();
    for (key, worker) in workers {
        *by_tenant.entry(&key.tenant).or_default() += worker.pending.load(Ordering::Relaxed);
    }
    for gone in published
        .iter()
        .filter(|t| !by_tenant.contains_key(t.as_str()))
    {
        metrics.pending_deliveries.remove(&Metrics::tenant(gone));
    }
    published.clear();
    for (tenant, pending) in by_tenant {
        metrics
            .pending_deliveries
            .get_or_create(&Metrics::tenant(tenant))
            .set(pending as i64);
        published.insert(tenant.to_owned());
    }
}
