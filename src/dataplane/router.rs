//! The router: reads events, writes one delivery job per subscribed endpoint whose filters let
//! the event through (or a dead letter, when the event or its payload's schema says it can never
//! be delivered) and the event's index entry, then acknowledges the event. Several routers share the durable consumer; a
//! restarted router re-publishes jobs that JetStream deduplicates by `Nats-Msg-Id`.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{self, AckKind, consumer::pull, kv};
use futures::{StreamExt, future::try_join_all};
use jiff::Timestamp;

use super::{
    attempt_log::AttemptRecord,
    event_index::{self, IndexedEvent},
    inbound::Inbound,
    job::{DeadLetter, Job, TARGET_ENDPOINT},
    publisher::{self, PublishError},
    route_store::{self, RoutesRx},
    topology::{EVENTS_STREAM, ROUTER_CONSUMER, job_subject, parse_event_subject},
};
use crate::{
    metrics::{EndpointLabels, Metrics, SubscriptionLabels},
    model::{
        CompiledRoutes, CompiledTenant, EndpointConfig, EndpointKey, filter::EventView,
        payload_schema::OnInvalid,
    },
};
use tokio_util::sync::CancellationToken;

/// Limits applied to incoming events.
#[derive(Debug, Clone)]
pub struct EventLimits {
    pub max_payload_bytes: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        Self {
            max_payload_bytes: 256 * 1024,
        }
    }
}

/// Why an event can never be delivered, whichever endpoint it goes to: `(reason, message)`.
/// Re-sent jobs (replay, redeliver) are held to the same rules.
pub fn rejection(job: &Job, limits: &EventLimits) -> Option<(&'static str, String)> {
    if let Some(problem) = too_large(job.payload.len(), limits) {
        return Some(problem);
    }
    let is_json = job.content_type.split(';').next().is_some_and(|t| {
        let t = t.trim().to_ascii_lowercase();
        t == "application/json" || t.ends_with("+json")
    });
    if is_json && let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(&job.payload) {
        return Some((
            "InvalidPayload",
            format!(
                "payload declared {} is not valid JSON: {error}",
                job.content_type
            ),
        ));
    }
    None
}

/// `PayloadTooLarge`, for an event as routed and for a job re-sent alike.
fn too_large(size: usize, limits: &EventLimits) -> Option<(&'static str, String)> {
    (size > limits.max_payload_bytes).then(|| {
        (
            "PayloadTooLarge",
            format!(
                "payload of {size} bytes exceeds the limit of {} bytes",
                limits.max_payload_bytes
            ),
        )
    })
}

/// Events routed concurrently; each holds its event until its jobs are stored.
const ROUTING_CONCURRENCY: usize = 256;

/// Dead-letter reason of a payload that fails its event type's schema.
pub const SCHEMA_VALIDATION_FAILED: &str = "SchemaValidationFailed";

/// What routing decided for one event.
pub enum Plan {
    /// No subscription's patterns select it.
    Unrouted,
    /// One job per endpoint (none when every filter turned it down).
    Deliver {
        job: Job,
        endpoints: Vec<EndpointKey>,
        filtered_out: Vec<String>,
    },
    /// It can never be delivered: one dead letter per endpoint.
    Reject {
        job: Job,
        endpoints: Vec<EndpointKey>,
        reason: &'static str,
        why: String,
        filtered_out: Vec<String>,
    },
}

impl Plan {
    /// The endpoints the event goes to (as a job or as a dead letter).
    pub fn endpoints(&self) -> &[EndpointKey] {
        match self {
            Plan::Unrouted => &[],
            Plan::Deliver { endpoints, .. } | Plan::Reject { endpoints, .. } => endpoints,
        }
    }
}

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
        let mut stream = self
            .js
            .get_stream(EVENTS_STREAM)
            .await
            .map_err(|e| e.to_string())?;
        let stream_created = stream
            .info()
            .await
            .map_err(|e| e.to_string())?
            .created
            .unix_timestamp();
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
        let info = message.info().map_err(|e| e.to_string())?;
        let sequence = info.stream_sequence;
        let published = Timestamp::from_nanosecond(info.published.unix_timestamp_nanos())
            .unwrap_or_else(|_| Timestamp::now());
        let Some((tenant, event_type)) = parse_event_subject(&message.subject) else {
            tracing::warn!(subject = %message.subject, "event subject has no event type; expected events.<namespace>.<event-type>");
            return message
                .ack_with(AckKind::Term)
                .await
                .map_err(|e| e.to_string());
        };
        // Counted once per event: a redelivery (routing failed, or a router crashed) is not new.
        let first_delivery = info.delivered <= 1;
        if first_delivery {
            self.metrics
                .events_received
                .get_or_create(&Metrics::tenant(tenant))
                .inc();
        }
        let target = message
            .headers
            .as_ref()
            .and_then(|h| h.get(TARGET_ENDPOINT))
            .map(|v| v.as_str().to_owned());
        let event = Inbound::read(
            tenant,
            event_type,
            message.headers.as_ref(),
            &message.payload,
            self.limits.max_payload_bytes,
            // Without a publisher-chosen id, the stream position is the stable identity.
            || format!("evt_{stream_created:x}_{sequence}"),
        );
        let routes = self
            .routes
            .borrow()
            .clone()
            .unwrap_or_else(|| Arc::new(CompiledRoutes::default()));
        let plan = match (routes.tenant(tenant), target) {
            (Some(compiled), None) => plan(tenant, compiled, &event, published, &self.limits),
            // A send-test event: that one endpoint, if the tenant has it.
            (Some(compiled), Some(name)) => {
                self.plan_test(tenant, compiled, &name, &event, published)
            }
            (None, _) => Plan::Unrouted,
        };
        let event_type = event.event_type.as_str();
        let indexed = IndexedEvent {
            sequence,
            event_type: event_type.to_owned(),
            published,
            endpoints: plan.endpoints().iter().map(|e| e.name.clone()).collect(),
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
                    try_join_all(
                        endpoints
                            .iter()
                            .map(|endpoint| self.enqueue(endpoint, &job)),
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

    /// A send-test event goes to the one endpoint it names, if the tenant has it; an event that
    /// can never be delivered is dead-lettered there.
    fn plan_test(
        &self,
        tenant: &str,
        routes: &CompiledTenant,
        name: &str,
        event: &Inbound<'_>,
        published: Timestamp,
    ) -> Plan {
        let Some(endpoint) = routes.routes.endpoint(name) else {
            return Plan::Unrouted;
        };
        let endpoints = vec![EndpointKey::new(tenant, &endpoint.name)];
        let job = event.job(published);
        match reject_reason(event, false, &self.limits) {
            Some((reason, why)) => Plan::Reject {
                job,
                endpoints,
                reason,
                why,
                filtered_out: Vec::new(),
            },
            None => Plan::Deliver {
                job,
                endpoints,
                filtered_out: Vec::new(),
            },
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

/// Where an event goes: nowhere, to the endpoints whose subscriptions' patterns select it
/// and whose filters let it through, or to their dead letters. No I/O, so the routes bench
/// measures exactly what the router runs per event.
pub fn plan(
    tenant: &str,
    routes: &CompiledTenant,
    event: &Inbound<'_>,
    published: Timestamp,
    limits: &EventLimits,
) -> Plan {
    let subscribed = routes.subscribed(&event.event_type);
    if subscribed.is_empty() {
        return Plan::Unrouted;
    }
    let keys = |endpoints: Vec<&EndpointConfig>| -> Vec<EndpointKey> {
        endpoints
            .iter()
            .map(|e| EndpointKey::new(tenant, &e.name))
            .collect()
    };
    let mut job = event.job(published);
    let schema = routes.schema(&event.event_type);
    // A broken event goes to every subscriber's dead letters: filters cannot judge it.
    let need_body = subscribed.has_filters() || schema.is_some();
    if let Some((reason, why)) = reject_reason(event, need_body, limits) {
        return Plan::Reject {
            job,
            endpoints: keys(subscribed.endpoints()),
            reason,
            why,
            filtered_out: Vec::new(),
        };
    }
    let selection = subscribed.select(event);
    let filtered_out = selection
        .filtered_out
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let endpoints = keys(selection.endpoints);
    if let Some(schema) = schema
        && !endpoints.is_empty()
        && let Err(error) = schema.check(event.body())
    {
        match schema.on_invalid {
            OnInvalid::DeadLetter => {
                return Plan::Reject {
                    job,
                    endpoints,
                    reason: SCHEMA_VALIDATION_FAILED,
                    why: format!(
                        "payload does not match the schema of event type {}: {error}",
                        event.event_type
                    ),
                    filtered_out,
                };
            }
            OnInvalid::Deliver => job.schema_invalid = true,
        }
    }
    Plan::Deliver {
        job,
        endpoints,
        filtered_out,
    }
}

/// Events that can never be delivered, whichever endpoint they go to.
fn reject_reason(
    event: &Inbound<'_>,
    need_body: bool,
    limits: &EventLimits,
) -> Option<(&'static str, String)> {
    if let Some(problem) = too_large(event.payload_len(), limits) {
        return Some(problem);
    }
    if let Some(why) = &event.invalid_cloudevent {
        return Some(("InvalidCloudEvent", why.clone()));
    }
    event
        .json_error(need_body)
        .map(|why| ("InvalidPayload", why))
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
