//! The tenant API: customers without cluster access manage their own WebhookEndpoints and
//! EventSubscriptions over HTTP, authenticated by an API key that belongs to one namespace.
//!
//! - [`keys`]: issuing and checking keys (SHA-256 digests in labelled Secrets).
//! - [`validate`]: request bodies, through the controller's compile step.
//! - [`store`]: where objects live: [`cluster`] (Kubernetes API) or [`local`] (memory).
//! - [`audit`]: a record of every change, and of every read of signing keys.
//! - [`http`]: routes and status codes; [`cli`]: `webhook-operator api-key`.
//!
//! It has its own listener (`--tenant-api-listen`, off by default) rather than a route on the
//! admin server: the admin port serves unauthenticated ingest and every tenant's counters and
//! stays cluster-internal, while this port is the one meant to be exposed to customers.

pub mod audit;
pub mod cli;
pub mod cluster;
pub mod http;
pub mod keys;
pub mod local;
pub mod store;
pub mod validate;

#[cfg(test)]
mod tests;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::model::signing_keys::DEFAULT_OVERLAP;
pub use http::{TenantApiState, router};
use keys::KeyIndex;

/// The current keys; `None` until they have been loaded once.
pub type KeysRx = watch::Receiver<Option<Arc<KeyIndex>>>;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct TenantApiArgs {
    /// Serve the tenant API (API-key authenticated, for customers) on this address, e.g.
    /// 0.0.0.0:8081. Off when unset.
    #[arg(long, env = "TENANT_API_LISTEN")]
    pub tenant_api_listen: Option<SocketAddr>,
}

/// Binds `listen` (so a taken port fails start-up) and serves the API until `cancel`.
pub async fn start(
    listen: SocketAddr,
    state: TenantApiState,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(address = %listener.local_addr()?, "tenant API listening");
    tokio::spawn(async move {
        let served = axum::serve(listener, router(state))
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "tenant API server stopped");
        }
    });
    Ok(())
}

/// In a cluster: objects through the Kubernetes API, keys from Secrets, audit to JetStream.
/// `default_overlap`: the controller's `--signing-key-overlap`.
pub async fn start_in_cluster(
    args: &TenantApiArgs,
    client: kube::Client,
    js: async_nats::jetstream::Context,
    default_overlap: Duration,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let Some(listen) = args.tenant_api_listen else {
        return Ok(());
    };
    let state = TenantApiState {
        store: Arc::new(cluster::KubeStore::new(client.clone())),
        keys: cluster::watch_keys(client, cancel.clone()),
        audit: Arc::new(audit::JetStreamAudit { js }),
        default_overlap,
    };
    start(listen, state, cancel).await
}

/// In local mode: objects in memory beside the manifests. Returns the manifest watcher's side.
pub async fn start_local(
    args: &TenantApiArgs,
    js: async_nats::jetstream::Context,
    cancel: CancellationToken,
) -> std::io::Result<local::LocalLink> {
    let (store, link, keys) = local::store();
    if let Some(listen) = args.tenant_api_listen {
        let state = TenantApiState {
            store: Arc::new(store),
            keys,
            audit: Arc::new(audit::JetStreamAudit { js }),
            default_overlap: DEFAULT_OVERLAP,
        };
        start(listen, state, cancel).await?;
    }
    Ok(link)
}
