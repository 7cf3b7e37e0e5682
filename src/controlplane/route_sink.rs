//! The production [`RouteSink`]: the routes bucket, JetStream clean-up for deleted endpoints,
//! and dead-letter replays.

use async_nats::jetstream::{self, kv};
use futures::{FutureExt, future::BoxFuture};
use jiff::Timestamp;

use super::{context::RouteSink, error::Error};
use crate::{
    dataplane::{
        fifo_queue,
        plan::EventLimits,
        replay::{self, ReplayReport},
        route_store, stats,
        topology::{JOBS_STREAM, delivery_consumer, job_subject, stats_key},
    },
    model::{EndpointKey, TenantRoutes},
};

pub struct NatsRouteSink {
    pub js: jetstream::Context,
    pub routes: kv::Store,
    pub stats: kv::Store,
    /// Replayed dead letters are held to the limits events are.
    pub limits: EventLimits,
}

fn routes_error(tenant: &str, error: impl std::fmt::Display) -> Error {
    Error::Routes {
        tenant: tenant.to_owned(),
        message: error.to_string(),
    }
}

impl RouteSink for NatsRouteSink {
    fn publish(&self, routes: TenantRoutes) -> BoxFuture<'_, Result<(), Error>> {
        async move {
            if route_store::publish(&self.routes, &routes).await.map_err(|e| routes_error(&routes.tenant, e))? {
                tracing::info!(tenant = %routes.tenant, endpoints = routes.endpoints.len(), routes = routes.routes.len(), "published routes");
            }
            Ok(())
        }
        .boxed()
    }

    fn remove(&self, tenant: String) -> BoxFuture<'_, Result<(), Error>> {
        async move {
            if self
                .routes
                .get(&tenant)
                .await
                .map_err(|e| routes_error(&tenant, e))?
                .is_some()
            {
                route_store::remove(&self.routes, &tenant)
                    .await
                    .map_err(|e| routes_error(&tenant, e))?;
            }
            Ok(())
        }
        .boxed()
    }

    fn discard_endpoint(&self, endpoint: EndpointKey) -> BoxFuture<'_, Result<(), Error>> {
        async move {
            let tenant = endpoint.tenant.clone();
            let stream = self
                .js
                .get_stream(JOBS_STREAM)
                .await
                .map_err(|e| routes_error(&tenant, e))?;
            // Missing consumer or jobs are fine: the endpoint may never have received any.
            let _ = stream.delete_consumer(&delivery_consumer(&endpoint)).await;
            fifo_queue::remove(&self.js, &endpoint)
                .await
                .map_err(|e| routes_error(&tenant, e))?;
            stream
                .purge()
                .filter(job_subject(&endpoint))
                .await
                .map_err(|e| routes_error(&tenant, e))?;
            self.stats
                .purge(stats_key(&endpoint))
                .await
                .map_err(|e| routes_error(&tenant, e))?;
            Ok(())
        }
        .boxed()
    }

    fn held_back(&self, endpoint: EndpointKey, failing: bool) -> BoxFuture<'_, Result<u64, Error>> {
        async move {
            fifo_queue::held_back_of(&self.js, &endpoint, failing)
                .await
                .map_err(|e| routes_error(&endpoint.tenant, e))
        }
        .boxed()
    }

    fn enable_endpoint(&self, endpoint: EndpointKey) -> BoxFuture<'_, Result<bool, Error>> {
        async move { Ok(stats::enable(&self.stats, &endpoint).await?) }.boxed()
    }

    fn replay_dead_letters(
        &self,
        endpoint: EndpointKey,
        since: Timestamp,
    ) -> BoxFuture<'_, Result<ReplayReport, Error>> {
        async move {
            replay::replay_dead_letters(&self.js, &endpoint, Some(since), &self.limits)
                .await
                .map_err(|e| Error::Replay {
                    endpoint: endpoint.to_string(),
                    message: e.to_string(),
                })
        }
        .boxed()
    }
}
