//! One event by id: its index entry, the event while the stream keeps it, and its delivery
//! state at each endpoint it was routed to.

use async_nats::jetstream::{self, stream::DirectGetErrorKind};
use futures::{StreamExt, stream};
use jiff::Timestamp;
use serde::Serialize;

use super::{
    InspectError,
    delivery_state::{DeliveryView, EVENT_SEARCH_BUDGET, delivery_state},
    open_stream,
};
use crate::{
    dataplane::{
        event_index::{self, IndexedEvent},
        inbound::Inbound,
        ingest::is_dns_label,
        job::Job,
        topology::{ATTEMPTS_STREAM, EVENT_INDEX_BUCKET, EVENTS_STREAM, parse_event_subject},
    },
    model::EndpointKey,
};

/// Endpoints of one event searched at once.
const ENDPOINT_CONCURRENCY: usize = 8;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub id: String,
    pub namespace: String,
    pub event_type: String,
    pub published_time: Timestamp,
    pub content_type: String,
    /// The payload as JSON when it is JSON, else as text; `null` once the event has expired
    /// from the events stream.
    pub payload: serde_json::Value,
    pub deliveries: Vec<DeliveryView>,
}

/// An event as stored: its index entry, and the event itself while the stream keeps it.
pub struct StoredEvent {
    pub indexed: IndexedEvent,
    /// As a job: id, type, content type, payload, publication time.
    pub job: Option<Job>,
}

/// Finds an event of `tenant` by id; `None` when it is unknown or expired.
pub async fn load_event(
    js: &jetstream::Context,
    tenant: &str,
    id: &str,
) -> Result<Option<StoredEvent>, InspectError> {
    if !is_dns_label(tenant) {
        return Ok(None);
    }
    let index = js
        .get_key_value(EVENT_INDEX_BUCKET)
        .await
        .map_err(|e| InspectError::Open {
            name: EVENT_INDEX_BUCKET,
            message: e.to_string(),
        })?;
    let Some(indexed) = event_index::lookup(&index, tenant, id).await? else {
        return Ok(None);
    };
    let events = open_stream(js, EVENTS_STREAM).await?;
    let job = match events.direct_get(indexed.sequence).await {
        Ok(message) => match parse_event_subject(&message.subject) {
            Some((subject_tenant, subject_type)) if subject_tenant == tenant => {
                // Read as the router read it, so a CloudEvent keeps its id, type and attributes.
                let inbound = Inbound::read(
                    tenant,
                    subject_type,
                    Some(&message.headers),
                    &message.payload,
                    usize::MAX,
                    || id.to_owned(),
                );
                (inbound.event_id == id).then(|| inbound.job(indexed.published))
            }
            _ => None,
        },
        // Expired or purged: the index entry alone still says where it went.
        Err(error) if matches!(error.kind(), DirectGetErrorKind::NotFound) => None,
        Err(error) => {
            return Err(InspectError::Open {
                name: EVENTS_STREAM,
                message: error.to_string(),
            });
        }
    };
    Ok(Some(StoredEvent { indexed, job }))
}

/// An event and its delivery state at each endpoint it was routed to.
pub async fn event(
    js: &jetstream::Context,
    tenant: &str,
    id: &str,
) -> Result<Option<EventView>, InspectError> {
    let Some(stored) = load_event(js, tenant, id).await? else {
        return Ok(None);
    };
    let attempts = open_stream(js, ATTEMPTS_STREAM).await?;
    let published = stored.indexed.published;
    let searches =
        stored.indexed.endpoints.iter().map(|name| {
            let attempts = attempts.clone();
            let endpoint = EndpointKey::new(tenant, name);
            let id = id.to_owned();
            async move {
                delivery_state(&attempts, &endpoint, &id, published, EVENT_SEARCH_BUDGET).await
            }
        });
    let deliveries: Vec<Result<DeliveryView, InspectError>> =
        stream::iter(searches.collect::<Vec<_>>())
            .buffered(ENDPOINT_CONCURRENCY)
            .collect()
            .await;
    let deliveries = deliveries.into_iter().collect::<Result<Vec<_>, _>>()?;
    let (content_type, payload) = match &stored.job {
        Some(job) => (job.content_type.clone(), payload_value(job)),
        None => ("application/json".to_owned(), serde_json::Value::Null),
    };
    Ok(Some(EventView {
        id: id.to_owned(),
        namespace: tenant.to_owned(),
        event_type: stored.indexed.event_type,
        published_time: published,
        content_type,
        payload,
        deliveries,
    }))
}

fn payload_value(job: &Job) -> serde_json::Value {
    serde_json::from_slice(&job.payload)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&job.payload).into()))
}
