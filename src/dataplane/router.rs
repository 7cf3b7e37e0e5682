//! The router: reads events, writes one delivery job per subscribed endpoint whose filters let
//! the event through (or a dead letter, when the event or its payload's schema says it can never
//! be delivered) and the event's index entry, then acknowledges the event. FIFO endpoints get no
//! job: their queue reads the events stream in order (see [`super::fifo_queue`]); the router
//! creates that queue before it routes with routes that make the endpoint FIFO. Several routers
//! share the durable consumer; a restarted router re-publishes jobs that JetStream deduplicates
//! by `Nats-Msg-Id`.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{self, AckKind, consumer::pull, kv};
use futures::{StreamExt, future::try_join_all};
use jiff::Timestamp;

use super::{
    attempt_log::AttemptRecord,
    event_index::{self, IndexedEvent},
    fifo_queue,
    job::{DeadLetter, Job},
    plan::{EventLimits, EventMessage, Plan, UnreadableEvent, events_epoch},
    publisher::{self, PublishError},
    route_store::{self, RoutesRx},
    topology::{EVENTS_STREAM, ROUTER_CONSUMER, job_subject},
};
use crate::{
    metrics::{EndpointLabels, Metrics, SubscriptionLabels},
    model::{CompiledRoutes, EndpointKey},
};
use tokio_util::sync::CancellationToken;

/// Events routed concurrently; each holds its event until its jobs are stored.
const ROUTING_CONCURRENCY: usize = 256;

pub struct Router {
    pub js: jetstream::Context,
    /// The `webhook-event-index` bucket.
    pub event_index: kv::Store,
    pub routes: RoutesRx,
    pub metrics: Arc<Metrics>,
    pub limits: EventLimits,
}

impl Router {
    pub async fn run(mut self, cancel: CancellationToken) {
        // A snapshot that makes an endpoint FIFO is routed with only once its queue exists.
        self.routes = fifo_queue::ensured_routes(self.js.clone(), self.routes, cancel.clone());
        // Routing before the routes are loaded would count every event as unrouted.
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = route_store::loaded(&mut self.routes) => {}
        }
        tokio::spawn(count_subscriptions(
            self.routes.clone(),
            self.metrics.clone(),
            cancel.clone(),
        ));
        tokio::spawn(track_endpoint_count(
            self.routes.clone(),
            self.metrics.clone(),
            cancel.clone(),
        ));
        let this = Arc::new(self);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                result = this.clone().consume() => {
                    if let Err(error) = result {
                        tracing::warn!(%error, "router consumer interrupted; retrying");
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn consume(self: Arc<Self>) -> Result<(), String> {
        let stream_created = events_epoch(&self.js).await?;
        let stream = self
            .js
            .get_stream_no_info(EVENTS_STREAM)
            .await
            .map_err(|e| e.to_string())?;
        let consumer = stream
            .get_or_create_consumer(
                ROUTER_CONSUMER,
                pull::Config {
                    durable_name: Some(ROUTER_CONSUMER.into()),
                    ack_wait: Duration::from_secs(10),
                    max_ack_pending: 10_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(ROUTING_CONCURRENCY)
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        let mut routed = messages
            .map(|message| {
                let this = self.clone();
                async move {
                    match message {
                        Ok(message) => this.route(message, stream_created).await,
                        Err(error) => Err(error.to_string()),
                    }
                }
            })
            .buffer_unordered(ROUTING_CONCURRENCY);
        while let Some(result) = routed.next().await {
            if let Err(error) = result {
                tracing::warn!(%error, "routing an event failed; it will be redelivered");
            }
        }
        Err("events consumer ended".into())
    }

    async fn route(&self, message: jetstream::Message, stream_created: i64) -> Result<(), String> {
        let read = match EventMessage::read(&message, stream_created, &self.limits) {
            Ok(read) => read,
            Err(UnreadableEvent::Subject(subject)) => {
                tracing::warn!(%subject, "event subject has no event type; expected events.<namespace>.<event-type>");
                return message
                    .ack_with(AckKind::Term)
                    .await
                    .map_err(|e| e.to_string());
            }
            Err(error) => return Err(error.to_string()),
        };
        let tenant = read.tenant;
        // Counted once per event: a redelivery (routing failed, or a router crashed) is not new.
        let first_delivery = read.delivered <= 1;
        if first_delivery {
            self.metrics
                .events_received
                .get_or_create(&Metrics::tenant(tenant))
                .inc();
        }
        let routes = self
            .routes
            .borrow()
            .clone()
            .unwrap_or_else(|| Arc::new(CompiledRoutes::default()));
        let plan = read.plan(&routes, &self.limits);
        let event = &read.event;
        let event_type = event.event_type.as_str();
        let indexed = IndexedEvent {
            sequence: read.sequence,
            event_type: event_type.to_owned(),
            published: read.published,
            endpoints: plan.endpoint_names(),
        };
        // In parallel with the jobs: the index entry costs no latency, and the event is
        // acknowledged only once both are stored.
        let index = async {
            event_index::record(&self.event_index, tenant, &event.event_id, &indexed)
                .await
                .map_err(|e| e.to_string())
        };
        let jobs = async {
            match plan {
                Plan::Unrouted => {
                    if first_delivery {
                        self.metrics
                            .events_unrouted
                            .get_or_create(&Metrics::tenant(tenant))
                            .inc();
                    }
                    // Indexed all the same: "matched no subscription" answers "where is my webhook?".
                    tracing::debug!(tenant, event_type, event_id = %event.event_id, "event matched no subscription");
                    Ok(Vec::new())
                }
                Plan::Deliver {
                    job,
                    endpoints,
                    filtered_out,
                } => {
                    if endpoints.is_empty() {
                        tracing::debug!(tenant, event_type, event_id = %job.event_id, "every subscription's filter turned the event down");
                    }
                    // FIFO endpoints read the event from the stream themselves, in order.
                    try_join_all(
                        endpoints
                            .iter()
                            .filter(|endpoint| !endpoint.in_order)
                            .map(|endpoint| self.enqueue(&endpoint.key, &job)),
                    )
                    .await
                    .map(|_| filtered_out)
                    .map_err(|e| e.to_string())
                }
                Plan::Reject {
                    job,
                    endpoints,
                    reason,
                    why,
                    filtered_out,
                } => {
                    tracing::warn!(tenant, event_type, event_id = %job.event_id, reason, "{why}; dead-lettering the event");
                    try_join_all(
                        endpoints
                            .iter()
                            .map(|endpoint| self.reject(endpoint, &job, reason, &why)),
                    )
                    .await
                    .map(|_| filtered_out)
                    .map_err(|e| e.to_string())
                }
            }
        };
        match tokio::try_join!(jobs, index) {
            Ok((filtered_out, ())) => {
                if first_delivery {
                    for subscription in filtered_out {
                        let labels = SubscriptionLabels {
                            tenant: tenant.to_owned(),
                            subscription: self.metrics.subscription_label(&subscription),
                        };
                        self.metrics.events_filtered.get_or_create(&labels).inc();
                    }
                }
                message.ack().await.map_err(|e| e.to_string())
            }
            Err(error) => {
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
                Err(error)
            }
        }
    }

    async fn enqueue(&self, endpoint: &EndpointKey, job: &Job) -> Result<(), PublishError> {
        publisher::publish_durably(
            &self.js,
            job_subject(endpoint),
            Some(job.headers(&endpoint.name)),
            job.payload.clone(),
        )
        .await
    }

    async fn reject(
        &self,
        endpoint: &EndpointKey,
        job: &Job,
        reason: &str,
        why: &str,
    ) -> Result<(), PublishError> {
        let now = Timestamp::now();
        let letter = DeadLetter {
            reason: reason.into(),
            message: why.into(),
            status_code: None,
            attempts: 0,
            time: now,
        };
        publisher::dead_letter(&self.js, endpoint, job, &letter).await?;
        let record = AttemptRecord::rejected(job, reason, why.into(), now);
        publisher::record_attempt(&self.js, endpoint, &record).await?;
        let labels = EndpointLabels {
            tenant: endpoint.tenant.clone(),
            endpoint: self.metrics.endpoint_label(&endpoint.name),
        };
        self.metrics.dead_lettered.get_or_create(&labels).inc();
        Ok(())
    }
}

/// Keeps the metrics' subscription count (for the label cap) in step with the routes.
async fn count_subscriptions(
    mut routes: RoutesRx,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    loop {
        let count = routes
            .borrow_and_update()
            .as_ref()
            .map_or(0, |r| r.subscription_count());
        metrics.set_subscription_count(count);
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = routes.changed() => if changed.is_err() { return },
        }
    }
}

/// Keeps the metrics' endpoint-label cap informed of how many endpoints there are: a router
/// labels dead letters by endpoint too.
async fn track_endpoint_count(
    mut routes: RoutesRx,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    loop {
        let count = routes
            .borrow_and_update()
            .as_ref()
            .map_or(0, |r| r.endpoints().count());
        metrics.set_endpoint_count(count);
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = routes.changed() => if changed.is_err() { return },
        }
    }
}
