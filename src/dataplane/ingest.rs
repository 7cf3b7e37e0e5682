//! HTTP ingest for services without a NATS client: the same subject and id rules as a publish.

use async_nats::{HeaderMap, jetstream};
use bytes::Bytes;

use super::{job::TARGET_ENDPOINT, topology::event_subject};
use crate::model::{EndpointKey, event_type::validate_event_type};

/// Event type of a send-test event unless another is asked for.
pub const TEST_EVENT_TYPE: &str = "webhook.test";

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("namespace {0:?} is not a valid Kubernetes namespace name")]
    InvalidNamespace(String),
    #[error("event type {event_type:?}: {reason}")]
    InvalidEventType { event_type: String, reason: String },
    #[error("idempotency-key must be 1 to 256 printable ASCII characters")]
    InvalidIdempotencyKey,
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("storing the event failed: {0}")]
    Publish(String),
}

/// An event accepted into the events stream.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Accepted {
    pub id: String,
    /// True when the id was seen before (within the deduplication window): nothing new was stored.
    pub duplicate: bool,
}

pub struct Event<'a> {
    pub namespace: &'a str,
    pub event_type: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub payload: Bytes,
}

/// Validates and stores an event; returns once JetStream has it.
pub async fn publish(
    js: &jetstream::Context,
    event: Event<'_>,
    max_payload_bytes: usize,
) -> Result<Accepted, IngestError> {
    if !is_dns_label(event.namespace) {
        return Err(IngestError::InvalidNamespace(event.namespace.into()));
    }
    validate_event_type(event.event_type).map_err(|e| IngestError::InvalidEventType {
        event_type: event.event_type.into(),
        reason: e.to_string(),
    })?;
    if event.payload.len() > max_payload_bytes {
        return Err(IngestError::TooLarge {
            size: event.payload.len(),
            limit: max_payload_bytes,
        });
    }
    let id = match event.idempotency_key {
        Some(key)
            if !key.is_empty() && key.len() <= 256 && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            key.to_owned()
        }
        Some(_) => return Err(IngestError::InvalidIdempotencyKey),
        None => format!("msg_{}", uuid::Uuid::now_v7().simple()),
    };
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
    headers.insert(
        "Content-Type",
        event.content_type.unwrap_or("application/json"),
    );
    let ack = js
        .publish_with_headers(
            event_subject(event.namespace, event.event_type),
            headers,
            event.payload,
        )
        .await
        .map_err(|e| IngestError::Publish(e.to_string()))?
        .await
        .map_err(|e| IngestError::Publish(e.to_string()))?;
    Ok(Accepted {
        id,
        duplicate: ack.duplicate,
    })
}

/// A synthetic event for one endpoint (send-test): stored in the events stream like any event,
/// but routed to that endpoint only (header `Webhook-Target-Endpoint`), whatever it subscribes
/// to; signed and delivered like any other. The default payload says what it is.
pub async fn publish_test(
    js: &jetstream::Context,
    endpoint: &EndpointKey,
    event_type: Option<&str>,
    payload: Option<serde_json::Value>,
) -> Result<Accepted, IngestError> {
    let event_type = event_type.unwrap_or(TEST_EVENT_TYPE);
    validate_event_type(event_type).map_err(|e| IngestError::InvalidEventType {
        event_type: event_type.into(),
        reason: e.to_string(),
    })?;
    let id = format!("test_{}", uuid::Uuid::now_v7().simple());
    let payload = payload.unwrap_or_else(|| {
        serde_json::json!({
            "type": event_type,
            "test": true,
            "namespace": endpoint.tenant,
            "endpoint": endpoint.name,
            "timestamp": jiff::Timestamp::now(),
        })
    });
    let body = serde_json::to_vec(&payload).map_err(|e| IngestError::Publish(e.to_string()))?;
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
    headers.insert("Content-Type", "application/json");
    headers.insert(TARGET_ENDPOINT, endpoint.name.as_str());
    js.publish_with_headers(
        event_subject(&endpoint.tenant, event_type),
        headers,
        body.into(),
    )
    .await
    .map_err(|e| IngestError::Publish(e.to_string()))?
    .await
    .map_err(|e| IngestError::Publish(e.to_string()))?;
    Ok(Accepted {
        id,
        duplicate: false,
    })
}

/// RFC 1123 label, as Kubernetes requires of namespace names.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::is_dns_label;

    #[test]
    fn namespaces_are_dns_labels() {
        assert!(is_dns_label("acme"));
        assert!(is_dns_label("team-7"));
        for bad in ["", "Acme", "a.b", "-a", "a-", "a_b", &"x".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }
}
