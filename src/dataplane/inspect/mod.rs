//! Read-only answers to "what happened to my webhooks?": an endpoint's recent attempts and dead
//! letters (`listings`), and one event (`event`) with its delivery state at each endpoint it was
//! routed to (`delivery_state`).
//!
//! Nothing here is written on the delivery path: attempts and dead letters are read from their
//! streams with [`subject_reader`], an event is found through the [`event_index`].

mod delivery_state;
mod event;
mod listings;

pub use delivery_state::{DeliveryState, DeliveryView, EVENT_SEARCH_BUDGET, delivery_state};
pub use event::{EventView, StoredEvent, event, load_event};
pub use listings::{
    DeadLetterView, LISTING_BUDGET, MAX_LIMIT, ResultFilter, UnknownResult, attempts, dead_letters,
};

use async_nats::jetstream::{self, stream::Stream};

use super::{
    attempt_log::AttemptRecord,
    event_index,
    subject_reader::{self, Fetch},
};

const ATTEMPT_FETCH: Fetch = Fetch {
    batch: 1000,
    headers_only: false,
};

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{0}")]
    Read(#[from] subject_reader::ReadError),
    #[error("{0}")]
    Index(#[from] event_index::EventIndexError),
    #[error("reading {name}: {message}")]
    Open { name: &'static str, message: String },
}

/// Opens one of the pipeline's streams for reading.
pub(crate) async fn open_stream(
    js: &jetstream::Context,
    name: &'static str,
) -> Result<Stream, InspectError> {
    js.get_stream(name).await.map_err(|e| InspectError::Open {
        name,
        message: e.to_string(),
    })
}

fn decode_attempt(message: &jetstream::Message) -> Option<AttemptRecord> {
    serde_json::from_slice(&message.payload).ok()
}
