//! The router: reads events, writes one delivery job per subscribed endpoint and the event's
//! index entry, then acknowledges the event. Several routers share the durable consumer; a
//! restarted router re-publishes jobs that JetStream deduplicates by `Nats-Msg-Id`.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{self, AckKind, consumer::pull, kv};
use futures::{StreamExt, future::try_join_all};
use jiff::Timestamp;

use super::{
    attempt_log::AttemptRecord,
    event_index::{self, IndexedEvent},
    job::{DeadLetter, Job, TARGET_ENDPOINT},
    publisher::{self, PublishError},
    route_store::{self, RoutesRx},
    topology::{EVENTS_STREAM, ROUTER_CONSUMER, job_subject, parse_event_subject},
};
use crate::{
    metrics::{EndpointLabels, Metrics},
    model::{CompiledRoutes, EndpointKey},
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
    if job.payload.len() > limits.max_payload_bytes {
        return Some((
            "PayloadTooLarge",
            format!(
                "payload of {} bytes exceeds the limit of {} bytes",
                job.payload.len(),
                limits.max_payload_bytes
            ),
        ));
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
        // Routing before the routes are loaded would count every event as unrouted.
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = route_store::loaded(&mut self.routes) => {}
        }
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
        let headers = message.headers.as_ref();
        let header = |name: &str| {
            headers
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        let job = Job {
            // Without a publisher-chosen id, the stream position is the stable identity.
            event_id: header(async_nats::header::NATS_MESSAGE_ID.as_ref())
                .unwrap_or_else(|| format!("evt_{stream_created:x}_{sequence}")),
            event_type: event_type.to_owned(),
            content_type: header("Content-Type").unwrap_or_else(|| "application/json".into()),
            published,
            payload: message.payload.clone(),
            resend: None,
        };
        // Counted once per event: a redelivery (routing failed, or a router crashed) is not new.
        let first_delivery = info.delivered <= 1;
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
        let targets: Vec<EndpointKey> = match header(TARGET_ENDPOINT) {
            // A send-test event: that one endpoint, if the tenant has it.
            Some(name) => routes
                .tenant(tenant)
                .and_then(|t| t.routes.endpoint(&name))
                .map(|e| vec![EndpointKey::new(tenant, &e.name)])
                .unwrap_or_default(),
            None => routes
                .tenant(tenant)
                .map(|t| {
                    t.endpoints_for(event_type)
                        .map(|e| EndpointKey::new(tenant, &e.name))
                        .collect()
                })
                .unwrap_or_default(),
        };
        let indexed = IndexedEvent {
            sequence,
            event_type: event_type.to_owned(),
            published,
            endpoints: targets.iter().map(|e| e.name.clone()).collect(),
        };
        let index = async {
            event_index::record(&self.event_index, tenant, &job.event_id, &indexed)
                .await
                .map_err(|e| e.to_string())
        };
        if targets.is_empty() {
            if first_delivery {
                self.metrics
                    .events_unrouted
                    .get_or_create(&Metrics::tenant(tenant))
                    .inc();
            }
            // Indexed all the same: "matched no subscription" answers "where is my webhook?".
            tracing::debug!(tenant, event_type, event_id = %job.event_id, "event matched no subscription");
        }
        let jobs = async {
            if targets.is_empty() {
                return Ok(Vec::new());
            }
            match rejection(&job, &self.limits) {
                None => {
                    try_join_all(targets.iter().map(|endpoint| self.enqueue(endpoint, &job))).await
                }
                Some((reason, why)) => {
                    tracing::warn!(tenant, event_type, event_id = %job.event_id, reason, "{why}; dead-lettering the event");
                    try_join_all(
                        targets
                            .iter()
                            .map(|endpoint| self.reject(endpoint, &job, reason, &why)),
                    )
                    .await
                }
            }
            .map_err(|e| e.to_string())
        };
        // In parallel: the index entry costs no latency, and the event is acknowledged only
        // once both are stored.
        match tokio::try_join!(jobs, index) {
            Ok(_) => message.ack().await.map_err(|e| e.to_string()),
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
