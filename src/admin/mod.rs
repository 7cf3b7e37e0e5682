//! The admin HTTP server: health, readiness, metrics, the endpoint listing and HTTP ingest;
//! attempts, dead letters, events, replay and send-test in their own files.

mod attempts;
mod events;
mod replay;
mod request;

mod dashboard;
mod health;

use std::{net::SocketAddr, sync::Arc};

use async_nats::jetstream;
use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    dataplane::{
        fifo_queue,
        ingest::{self, IngestError},
        stats::StatsView,
    },
    metrics::{HealthLabels, Metrics},
    model::{EndpointKey, Health, LastFailure},
};

/// An endpoint as the admin API lists it: from the routes, or (local mode) from the manifests,
/// which also knows the invalid ones.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogEntry {
    pub key: EndpointKey,
    pub url: String,
    pub paused: bool,
    /// `ordering: fifo`: the listing shows its held-back count.
    pub fifo: bool,
    /// Why the endpoint is invalid, if it is.
    pub problem: Option<(String, String)>,
}

pub type CatalogRx = watch::Receiver<Arc<Vec<CatalogEntry>>>;

#[derive(Clone)]
pub struct AdminState {
    pub nats: async_nats::Client,
    pub js: jetstream::Context,
    pub metrics: Arc<Metrics>,
    pub catalog: CatalogRx,
    pub stats: StatsView,
    /// True once streams exist and routes are loaded.
    pub ready: watch::Receiver<bool>,
    pub max_payload_bytes: usize,
}

impl AdminState {
    /// The admin state of a pipeline process: ready once its routes are loaded.
    pub fn for_pipeline(
        connected: &crate::pipeline::Connected,
        catalog: CatalogRx,
        mut routes: crate::dataplane::route_store::RoutesRx,
        stats: StatsView,
        max_payload_bytes: usize,
    ) -> Self {
        let (ready_tx, ready) = watch::channel(false);
        tokio::spawn(async move {
            if crate::dataplane::route_store::loaded(&mut routes)
                .await
                .is_some()
            {
                ready_tx.send_replace(true);
            }
        });
        Self {
            nats: connected.nats.clone(),
            js: connected.js.clone(),
            metrics: connected.metrics.clone(),
            catalog,
            stats,
            ready,
            max_payload_bytes,
        }
    }
}

pub fn router(state: AdminState) -> Router {
    let body_limit = state.max_payload_bytes + 64 * 1024;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/endpoints", get(list_endpoints))
        .route("/v1/events/{namespace}/{event_type}", post(ingest_event))
        .merge(dashboard::routes())
        .merge(health::routes())
        .merge(attempts::routes())
        .merge(events::routes())
        .merge(replay::routes())
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

pub async fn serve(
    listen: SocketAddr,
    state: AdminState,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(address = %listener.local_addr()?, "admin server listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let connected = state.nats.connection_state() == async_nats::connection::State::Connected;
    match (connected, *state.ready.borrow()) {
        (true, true) => (StatusCode::OK, "ready").into_response(),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "NATS not connected").into_response(),
        (true, false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "streams or routes not loaded yet",
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let entries = state.catalog.borrow().clone();
    state.metrics.endpoints.clear();
    for health in [
        Health::Pending,
        Health::Healthy,
        Health::Degraded,
        Health::Failing,
        Health::Paused,
        Health::Disabled,
        Health::Invalid,
    ] {
        state
            .metrics
            .endpoints
            .get_or_create(&HealthLabels {
                health: health_label(health),
            })
            .set(0);
    }
    for entry in entries.iter() {
        let health = endpoint_health(entry, &state.stats);
        state
            .metrics
            .endpoints
            .get_or_create(&HealthLabels {
                health: health_label(health),
            })
            .inc();
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    match state.metrics.exposition(accept) {
        Ok((content_type, text)) => ([(header::CONTENT_TYPE, content_type)], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn health_label(health: Health) -> &'static str {
    match health {
        Health::Pending => "Pending",
        Health::Healthy => "Healthy",
        Health::Degraded => "Degraded",
        Health::Failing => "Failing",
        Health::Paused => "Paused",
        Health::Disabled => "Disabled",
        Health::Invalid => "Invalid",
    }
}

fn endpoint_health(entry: &CatalogEntry, stats: &StatsView) -> Health {
    if entry.problem.is_some() {
        Health::Invalid
    } else {
        stats.get(&entry.key).health(entry.paused)
    }
}

/// One row of `GET /v1/endpoints`; the counters mean what they mean in status.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointView {
    pub namespace: String,
    pub name: String,
    pub url: String,
    pub health: Health,
    pub delivered: u64,
    pub failed_attempts: u64,
    pub dead_lettered: u64,
    pub consecutive_failures: u64,
    pub last_success_time: Option<Timestamp>,
    pub last_failure: Option<LastFailure>,
    /// FIFO endpoints: events waiting behind a failing one (as in status).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_back: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

async fn list_endpoints(State(state): State<AdminState>) -> Json<Vec<EndpointView>> {
    let entries = state.catalog.borrow().clone();
    let views = entries.iter().map(|entry| {
        let state = &state;
        async move {
            let stats = state.stats.get(&entry.key);
            // Read from the queue only while something fails: one look per failing FIFO endpoint.
            let held_back = match entry.fifo && entry.problem.is_none() {
                false => None,
                true => fifo_queue::held_back_of(
                    &state.js,
                    &entry.key,
                    fifo_queue::head_failing(&stats),
                )
                .await
                .ok(),
            };
            EndpointView {
                namespace: entry.key.tenant.clone(),
                name: entry.key.name.clone(),
                url: entry.url.clone(),
                health: endpoint_health(entry, &state.stats),
                delivered: stats.delivered,
                failed_attempts: stats.failed_attempts,
                dead_lettered: stats.dead_lettered,
                consecutive_failures: stats.consecutive_failures,
                last_success_time: stats.last_success_time,
                last_failure: stats.last_failure,
                held_back,
                reason: entry.problem.as_ref().map(|p| p.0.clone()),
                message: entry.problem.as_ref().map(|p| p.1.clone()),
            }
        }
    });
    Json(futures::future::join_all(views).await)
}

async fn ingest_event(
    State(state): State<AdminState>,
    Path((namespace, event_type)): Path<(String, String)>,
    headers: HeaderMap,
    payload: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let event = ingest::Event {
        namespace: &namespace,
        event_type: &event_type,
        idempotency_key: header("idempotency-key"),
        content_type: header("content-type"),
        payload,
    };
    match ingest::publish(&state.js, event, state.max_payload_bytes).await {
        Ok(accepted) => (StatusCode::ACCEPTED, Json(accepted)).into_response(),
        Err(error) => {
            let status = match &error {
                IngestError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                IngestError::Publish(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            };
            (
                status,
                Json(serde_json::json!({ "error": error.to_string() })),
            )
                .into_response()
        }
    }
}

/// The catalog of a process that only sees routes (router, delivery): valid endpoints only.
pub fn catalog_from_routes(
    mut routes: crate::dataplane::route_store::RoutesRx,
    cancel: CancellationToken,
) -> CatalogRx {
    let (tx, rx) = watch::channel(Arc::new(Vec::new()));
    tokio::spawn(async move {
        loop {
            let entries = routes.borrow_and_update().clone().map(|r| {
                r.endpoints()
                    .map(|(tenant, e)| CatalogEntry {
                        key: EndpointKey::new(tenant, &e.name),
                        url: e.url.clone(),
                        paused: e.paused,
                        fifo: e.is_fifo(),
                        problem: None,
                    })
                    .collect::<Vec<_>>()
            });
            tx.send_replace(Arc::new(entries.unwrap_or_default()));
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = routes.changed() => if changed.is_err() { return },
            }
        }
    });
    rx
}
