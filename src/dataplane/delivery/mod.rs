//! Delivery: one worker per endpoint, started, reconfigured and stopped as routes, Secrets
//! and the auto-disabled set change.

pub mod address_guard;
pub mod attempt;
pub mod backoff;
pub mod breaker;
pub mod outgoing;
pub mod signature;
mod worker;

pub use breaker::BreakerSettings;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use self::address_guard::{AddressGuard, GuardedClient, SystemLookup};
use super::{
    route_store::{self, RoutesRx},
    stats::DisabledRx,
};
use crate::{
    metrics::Metrics,
    model::{CompiledRoutes, EndpointConfig, EndpointKey, signing_keys::SigningKeys},
    resources::compile::SecretData,
};

/// Secret data of every served tenant, by namespace.
pub type Secrets = BTreeMap<String, SecretData>;
pub type SecretsRx = watch::Receiver<Arc<Secrets>>;

/// Shared by every worker of a process.
pub struct DeliveryContext {
    pub js: jetstream::Context,
    /// One pooled client: keep-alive connections are reused per host across endpoints.
    pub client: GuardedClient,
    pub metrics: Arc<Metrics>,
    pub breaker: BreakerSettings,
}

/// Builds the outbound HTTP client: no redirects (a 3xx is a failure), pooled keep-alive, and
/// every address it connects to checked by `guard` (see [`address_guard`]).
pub fn http_client(guard: AddressGuard) -> Result<GuardedClient, reqwest::Error> {
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_keepalive(Duration::from_secs(30));
    GuardedClient::build(builder, guard, Arc::new(SystemLookup))
}

/// What a worker needs: the endpoint's settings, its keys (or why there are none), and whether
/// it is auto-disabled.
#[derive(Debug, PartialEq)]
pub struct EndpointState {
    pub config: EndpointConfig,
    pub keys: Result<SigningKeys, String>,
    pub disabled: bool,
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
    mut secrets: SecretsRx,
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
        let current_secrets = secrets.borrow_and_update().clone();
        let current_disabled = disabled.borrow_and_update().clone().unwrap_or_default();
        reconcile_workers(
            &ctx,
            &mut workers,
            &snapshot,
            &current_secrets,
            &current_disabled,
            &cancel,
        );
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    workers.values().for_each(|w| w.cancel.cancel());
                    return;
                }
                Ok(()) = routes.changed() => break,
                Ok(()) = secrets.changed() => break,
                Ok(()) = disabled.changed() => break,
                _ = gauges.tick() => publish_pending(&ctx.metrics, &workers, &mut gauge_tenants),
            }
        }
    }
}

fn reconcile_workers(
    ctx: &Arc<DeliveryContext>,
    workers: &mut HashMap<EndpointKey, WorkerHandle>,
    routes: &CompiledRoutes,
    secrets: &Secrets,
    disabled: &BTreeSet<EndpointKey>,
    cancel: &CancellationToken,
) {
    let mut desired = HashMap::new();
    for (tenant, config) in routes.endpoints() {
        let keys = resolve_keys(secrets, tenant, config);
        let key = EndpointKey::new(tenant, &config.name);
        let state = EndpointState {
            config: config.clone(),
            keys,
            disabled: disabled.contains(&key),
        };
        desired.insert(key, state);
    }
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

fn resolve_keys(
    secrets: &Secrets,
    tenant: &str,
    config: &EndpointConfig,
) -> Result<SigningKeys, String> {
    let location = &config.secret;
    let value = secrets
        .get(tenant)
        .and_then(|s| s.get(&location.name))
        .and_then(|data| data.get(&location.key))
        .ok_or_else(|| {
            format!(
                "Secret {:?} key {:?} not found",
                location.name, location.key
            )
        })?;
    SigningKeys::parse(value)
        .map_err(|e| format!("Secret {:?} key {:?}: {e}", location.name, location.key))
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
