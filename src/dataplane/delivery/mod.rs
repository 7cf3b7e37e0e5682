//! Delivery: one worker per endpoint, started, reconfigured and stopped as routes and Secrets
//! change.

pub mod address_guard;
pub mod attempt;
pub mod backoff;
pub mod outgoing;
pub mod signature;
mod worker;

use std::{
    collections::{BTreeMap, HashMap},
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
use super::route_store::{self, RoutesRx};
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

/// What a worker needs: the endpoint's settings and its keys (or why there are none).
#[derive(Debug, PartialEq)]
pub struct EndpointState {
    pub config: EndpointConfig,
    pub keys: Result<SigningKeys, String>,
}

struct WorkerHandle {
    state: watch::Sender<Arc<EndpointState>>,
    pending: Arc<AtomicU64>,
    cancel: CancellationToken,
}

/// Runs workers for every endpoint in `routes` until `cancel`.
pub async fn run(
    ctx: Arc<DeliveryContext>,
    mut routes: RoutesRx,
    mut secrets: SecretsRx,
    cancel: CancellationToken,
) {
    let mut workers: HashMap<EndpointKey, WorkerHandle> = HashMap::new();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = route_store::loaded(&mut routes) => {}
    }
    let mut gauges = tokio::time::interval(Duration::from_secs(5));
    loop {
        let snapshot = routes.borrow_and_update().clone().unwrap_or_default();
        let current_secrets = secrets.borrow_and_update().clone();
        reconcile_workers(&ctx, &mut workers, &snapshot, &current_secrets, &cancel);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    workers.values().for_each(|w| w.cancel.cancel());
                    return;
                }
                Ok(()) = routes.changed() => break,
                Ok(()) = secrets.changed() => break,
                _ = gauges.tick() => publish_pending(&ctx.metrics, &workers),
            }
        }
    }
}

fn reconcile_workers(
    ctx: &Arc<DeliveryContext>,
    workers: &mut HashMap<EndpointKey, WorkerHandle>,
    routes: &CompiledRoutes,
    secrets: &Secrets,
    cancel: &CancellationToken,
) {
    let mut desired = HashMap::new();
    for (tenant, config) in routes.endpoints() {
        let keys = resolve_keys(secrets, tenant, config);
        desired.insert(
            EndpointKey::new(tenant, &config.name),
            EndpointState {
                config: config.clone(),
                keys,
            },
        );
    }
    workers.retain(|key, worker| {
        let keep = desired.contains_key(key);
        if !keep {
            tracing::info!(endpoint = %key, "endpoint removed; stopping its delivery (queued jobs stay queued)");
            worker.cancel.cancel();
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

fn publish_pending(metrics: &Metrics, workers: &HashMap<EndpointKey, WorkerHandle>) {
    let mut by_tenant: BTreeMap<&str, u64> = BTreeMap::new();
    for (key, worker) in workers {
        *by_tenant.entry(&key.tenant).or_default() += worker.pending.load(Ordering::Relaxed);
    }
    for (tenant, pending) in by_tenant {
        metrics
            .pending_deliveries
            .get_or_create(&Metrics::tenant(tenant))
            .set(pending as i64);
    }
}
