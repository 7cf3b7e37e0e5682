//! Routes in the `webhook-routes` bucket: written by the control plane (or local mode), watched
//! by routers and delivery processes, which keep serving their last routes if the writer is gone.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_nats::jetstream::kv;
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::model::{CompiledRoutes, CompiledTenant, TenantRoutes};

#[derive(Debug, thiserror::Error)]
pub enum RouteStoreError {
    #[error("encoding routes of tenant {tenant}: {source}")]
    Encode {
        tenant: String,
        source: serde_json::Error,
    },
    #[error("routes bucket: {0}")]
    Bucket(String),
}

/// Routes as last loaded; `None` until the initial load completed, so nobody acts on a partial view.
pub type RoutesRx = watch::Receiver<Option<Arc<CompiledRoutes>>>;

/// Writes a tenant's routes unless the stored value is already identical. Returns whether it wrote.
pub async fn publish(store: &kv::Store, routes: &TenantRoutes) -> Result<bool, RouteStoreError> {
    let encoded = serde_json::to_vec(routes).map_err(|source| RouteStoreError::Encode {
        tenant: routes.tenant.clone(),
        source,
    })?;
    let current = store
        .get(&routes.tenant)
        .await
        .map_err(|e| RouteStoreError::Bucket(e.to_string()))?;
    if current.as_deref() == Some(encoded.as_slice()) {
        return Ok(false);
    }
    store
        .put(&routes.tenant, encoded.into())
        .await
        .map_err(|e| RouteStoreError::Bucket(e.to_string()))?;
    Ok(true)
}

/// Removes a tenant's routes (its last endpoint is gone).
pub async fn remove(store: &kv::Store, tenant: &str) -> Result<(), RouteStoreError> {
    store
        .delete(tenant)
        .await
        .map_err(|e| RouteStoreError::Bucket(e.to_string()))
}

/// Tenants that currently have routes.
pub async fn tenants(store: &kv::Store) -> Result<Vec<String>, RouteStoreError> {
    let keys = store
        .keys()
        .await
        .map_err(|e| RouteStoreError::Bucket(e.to_string()))?;
    Ok(keys.filter_map(|k| async move { k.ok() }).collect().await)
}

/// Which tenants a process serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Tenant(String),
}

/// Starts watching the bucket; the receiver follows every change until `cancel`.
pub fn watch(store: kv::Store, scope: Scope, cancel: CancellationToken) -> RoutesRx {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut tenants = BTreeMap::new();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                result = follow(&store, &scope, &tx, &mut tenants) => {
                    if let Err(error) = result {
                        tracing::warn!(%error, "routes watch interrupted; serving last known routes and retrying");
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    rx
}

async fn follow(
    store: &kv::Store,
    scope: &Scope,
    tx: &watch::Sender<Option<Arc<CompiledRoutes>>>,
    tenants: &mut BTreeMap<String, Arc<CompiledTenant>>,
) -> Result<(), String> {
    let (mut entries, empty) = match scope {
        Scope::All => {
            let empty = store.status().await.map_err(|e| e.to_string())?.values() == 0;
            (
                store
                    .watch_with_history(">")
                    .await
                    .map_err(|e| e.to_string())?,
                empty,
            )
        }
        Scope::Tenant(tenant) => {
            let empty = store
                .entry(tenant)
                .await
                .map_err(|e| e.to_string())?
                .is_none();
            (
                store
                    .watch_with_history(tenant)
                    .await
                    .map_err(|e| e.to_string())?,
                empty,
            )
        }
    };
    tracing::debug!(?scope, empty, "watching routes");
    let mut current = empty;
    let publish = |tenants: &BTreeMap<String, Arc<CompiledTenant>>| {
        let snapshot = CompiledRoutes {
            tenants: tenants.clone(),
        };
        tx.send_replace(Some(Arc::new(snapshot)));
    };
    if current {
        tenants.clear();
        publish(tenants);
    }
    while let Some(entry) = entries.next().await {
        let entry = entry.map_err(|e| e.to_string())?;
        tracing::debug!(tenant = %entry.key, operation = ?entry.operation, revision = entry.revision, "routes changed");
        match entry.operation {
            kv::Operation::Put => match decode(&entry.key, &entry.value) {
                Ok(compiled) => {
                    tenants.insert(entry.key.clone(), Arc::new(compiled));
                }
                Err(error) => {
                    tracing::error!(tenant = %entry.key, %error, "ignoring unreadable routes; keeping the previous ones")
                }
            },
            kv::Operation::Delete | kv::Operation::Purge => {
                tenants.remove(&entry.key);
            }
        }
        current |= entry.seen_current || entry.delta == 0;
        if current {
            publish(tenants);
        }
    }
    Err("watch ended".into())
}

fn decode(key: &str, value: &[u8]) -> Result<CompiledTenant, String> {
    let routes: TenantRoutes = serde_json::from_slice(value).map_err(|e| e.to_string())?;
    if routes.tenant != key {
        return Err(format!(
            "routes stored under {key:?} name tenant {:?}",
            routes.tenant
        ));
    }
    CompiledTenant::compile(Arc::new(routes)).map_err(|e| e.to_string())
}

/// Waits for the initial load of routes.
pub async fn loaded(rx: &mut RoutesRx) -> Option<Arc<CompiledRoutes>> {
    rx.wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|r| r.clone())
}
