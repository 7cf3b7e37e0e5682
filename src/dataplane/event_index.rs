//! Events by id: one entry per event in the `webhook-event-index` bucket, written by the router
//! before it acknowledges the event, and kept as long as the events stream keeps events.
//!
//! JetStream finds messages by subject and sequence, not by `Nats-Msg-Id`; this bucket maps
//! `(tenant, event id)` to the event's sequence and where it was routed. It costs one small
//! write per event (not per attempt): what happened at each endpoint is read from the attempt
//! log when someone asks (see [`super::inspect`]).

use async_nats::jetstream::kv;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// What the router knew about an event when it routed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexedEvent {
    /// Sequence of the event in the events stream.
    pub sequence: u64,
    pub event_type: String,
    pub published: Timestamp,
    /// Endpoints a job was created for (empty when no subscription matched).
    pub endpoints: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EventIndexError {
    #[error("indexing event {id}: {message}")]
    Write { id: String, message: String },
    #[error("looking up event {id}: {message}")]
    Read { id: String, message: String },
}

/// Key of an event: event ids are any printable ASCII (`Nats-Msg-Id`, `idempotency-key`), key
/// tokens may not contain `.`, `*`, `>` or spaces, so the id is base64url-encoded.
pub fn index_key(tenant: &str, event_id: &str) -> String {
    format!("{tenant}.{}", URL_SAFE_NO_PAD.encode(event_id))
}

pub async fn record(
    store: &kv::Store,
    tenant: &str,
    event_id: &str,
    event: &IndexedEvent,
) -> Result<(), EventIndexError> {
    let error = |message: String| EventIndexError::Write {
        id: event_id.to_owned(),
        message,
    };
    let value = serde_json::to_vec(event).map_err(|e| error(e.to_string()))?;
    store
        .put(index_key(tenant, event_id), value.into())
        .await
        .map_err(|e| error(e.to_string()))?;
    Ok(())
}

/// The entry of an event; `None` when unknown or expired.
pub async fn lookup(
    store: &kv::Store,
    tenant: &str,
    event_id: &str,
) -> Result<Option<IndexedEvent>, EventIndexError> {
    let error = |message: String| EventIndexError::Read {
        id: event_id.to_owned(),
        message,
    };
    let Some(value) = store
        .get(index_key(tenant, event_id))
        .await
        .map_err(|e| error(e.to_string()))?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&value)
        .map(Some)
        .map_err(|e| error(format!("unreadable index entry: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_for_any_event_id() {
        let valid = |key: &str| {
            key.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_/=.".contains(&b))
        };
        for id in [
            "order-42",
            "a.b*c>d e",
            "évènement",
            "x/y:z",
            &"k".repeat(256),
        ] {
            let key = index_key("acme", id);
            assert!(valid(&key), "{key}");
            assert_eq!(key.matches('.').count(), 1, "{key}");
        }
        assert_ne!(index_key("acme", "a"), index_key("acme", "b"));
        assert_ne!(index_key("acme", "a"), index_key("other", "a"));
    }
}
