//! Read-only answers to "what happened to my webhooks?": an endpoint's recent attempts and dead
//! letters, and one event with its delivery state at each endpoint it was routed to.
//!
//! Nothing here is written on the delivery path: attempts and dead letters are read from their
//! streams with [`subject_reader`], an event is found through the [`event_index`].

use std::{fmt, str::FromStr};

use async_nats::{
    HeaderMap,
    jetstream::{
        self,
        stream::{DirectGetErrorKind, Stream},
    },
};
use futures::{StreamExt, stream};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::{
    attempt_log::{AttemptRecord, AttemptResult, Outcome},
    event_index::{self, IndexedEvent},
    inbound::Inbound,
    ingest::is_dns_label,
    job::{self, Job},
    subject_reader::{self, Fetch, ForwardRead, NewestQuery, Start},
    topology::{
        ATTEMPTS_STREAM, DEAD_LETTER_STREAM, EVENT_INDEX_BUCKET, EVENTS_STREAM, attempt_subject,
        dead_letter_subject, parse_event_subject,
    },
};
use crate::model::EndpointKey;

/// Largest `limit` of a listing.
pub const MAX_LIMIT: usize = 1000;
/// Most records one listing reads (a rare `result` filter on a busy endpoint stops here).
pub const LISTING_BUDGET: u64 = 200_000;
/// Most attempt records read to find one event's state at one endpoint, per search phase.
pub const EVENT_SEARCH_BUDGET: u64 = 100_000;
/// Endpoints of one event searched at once.
const ENDPOINT_CONCURRENCY: usize = 8;
/// Attempt records carry the pipeline's clock, stream positions the server's.
const CLOCK_SLACK: SignedDuration = SignedDuration::from_secs(10);

const ATTEMPT_FETCH: Fetch = Fetch {
    batch: 1000,
    headers_only: false,
};
const DEAD_LETTER_FETCH: Fetch = Fetch {
    batch: 1000,
    headers_only: true,
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

pub(crate) async fn open_stream(
    js: &jetstream::Context,
    name: &'static str,
) -> Result<Stream, InspectError> {
    js.get_stream(name).await.map_err(|e| InspectError::Open {
        name,
        message: e.to_string(),
    })
}

/// Which attempts a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFilter {
    Any,
    /// Anything but success.
    Failure,
    Only(AttemptResult),
}

#[derive(Debug, thiserror::Error)]
pub struct UnknownResult(String);

impl fmt::Display for UnknownResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let labels: Vec<&str> = AttemptResult::ALL.iter().map(|r| r.as_label()).collect();
        write!(
            f,
            "result {:?} is not one of failure, {}",
            self.0,
            labels.join(", ")
        )
    }
}

impl FromStr for ResultFilter {
    type Err = UnknownResult;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "failure" {
            return Ok(Self::Failure);
        }
        AttemptResult::ALL
            .into_iter()
            .find(|r| r.as_label() == text)
            .map(Self::Only)
            .ok_or_else(|| UnknownResult(text.to_owned()))
    }
}

impl ResultFilter {
    pub fn matches(self, result: AttemptResult) -> bool {
        match self {
            Self::Any => true,
            Self::Failure => result != AttemptResult::Success,
            Self::Only(wanted) => result == wanted,
        }
    }
}

/// The newest attempts of an endpoint, newest first.
pub async fn attempts(
    js: &jetstream::Context,
    endpoint: &EndpointKey,
    limit: usize,
    filter: ResultFilter,
) -> Result<Vec<AttemptRecord>, InspectError> {
    let stream = open_stream(js, ATTEMPTS_STREAM).await?;
    let query = NewestQuery {
        limit,
        not_before: None,
        budget: LISTING_BUDGET,
        fetch: ATTEMPT_FETCH,
    };
    let newest = subject_reader::newest(&stream, &attempt_subject(endpoint), &query, |m| {
        decode_attempt(m).filter(|r| filter.matches(r.result))
    })
    .await?;
    let mut items = newest.items;
    // Concurrent attempts reach the log in about the order they finished; show their times
    // in order.
    items.sort_by_key(|r| std::cmp::Reverse(r.time));
    Ok(items)
}

fn decode_attempt(message: &jetstream::Message) -> Option<AttemptRecord> {
    serde_json::from_slice(&message.payload).ok()
}

/// A dead letter as listed: the event and why it was given up on.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterView {
    pub event_id: String,
    pub event_type: String,
    pub published_time: Timestamp,
    pub dead_lettered_time: Timestamp,
    pub reason: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    pub attempts: u32,
}

impl DeadLetterView {
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let get = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
        let time = |name: &str| get(name).and_then(|v| v.parse::<Timestamp>().ok());
        Some(Self {
            event_id: get(job::EVENT_ID)?,
            event_type: get(job::EVENT_TYPE)?,
            published_time: time(job::EVENT_PUBLISHED).or_else(|| time(job::PUBLISHED))?,
            dead_lettered_time: time(job::DEAD_TIME)?,
            reason: get(job::DEAD_REASON).unwrap_or_default(),
            message: get(job::DEAD_MESSAGE).unwrap_or_default(),
            status_code: get(job::DEAD_STATUS).and_then(|v| v.parse().ok()),
            attempts: get(job::DEAD_ATTEMPTS)
                .and_then(|v| v.parse().ok())
                .unwrap_or_default(),
        })
    }
}

/// The newest dead letters of an endpoint, newest first.
pub async fn dead_letters(
    js: &jetstream::Context,
    endpoint: &EndpointKey,
    limit: usize,
) -> Result<Vec<DeadLetterView>, InspectError> {
    let stream = open_stream(js, DEAD_LETTER_STREAM).await?;
    let query = NewestQuery {
        limit,
        not_before: None,
        budget: LISTING_BUDGET,
        fetch: DEAD_LETTER_FETCH,
    };
    let subject = dead_letter_subject(endpoint);
    let newest = subject_reader::newest(&stream, &subject, &query, |m| {
        let view = m.headers.as_ref().and_then(DeadLetterView::from_headers);
        if view.is_none() {
            tracing::warn!(%subject, "skipping a dead letter without its event headers");
        }
        view
    })
    .await?;
    let mut items = newest.items;
    items.sort_by_key(|l| std::cmp::Reverse(l.dead_lettered_time));
    Ok(items)
}

/// Where an event stands at one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DeliveryState {
    /// Routed, not attempted yet.
    Pending,
    Delivered,
    Retrying,
    DeadLettered,
    /// Its attempts are further back than the search budget reaches.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub endpoint: String,
    pub state: DeliveryState,
    /// Attempt number of the latest attempt (0: none, or rejected without one).
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_time: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<AttemptRecord>,
}

impl DeliveryView {
    fn from_latest(endpoint: String, latest: Option<AttemptRecord>, searched: bool) -> Self {
        let Some(record) = latest else {
            return Self {
                endpoint,
                state: if searched {
                    DeliveryState::Pending
                } else {
                    DeliveryState::Unknown
                },
                attempts: 0,
                next_attempt_time: None,
                last_attempt: None,
            };
        };
        let (state, next_attempt_time) = match &record.outcome {
            Outcome::Delivered => (DeliveryState::Delivered, None),
            Outcome::Retrying { next_attempt_time } => {
                (DeliveryState::Retrying, Some(*next_attempt_time))
            }
            Outcome::DeadLettered => (DeliveryState::DeadLettered, None),
        };
        Self {
            endpoint,
            state,
            attempts: record.attempt,
            next_attempt_time,
            last_attempt: Some(record),
        }
    }
}

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

/// Where `event_id` stands at `endpoint`, from its latest attempt record there; each search
/// phase reads at most `budget` records.
pub async fn delivery_state(
    attempts: &Stream,
    endpoint: &EndpointKey,
    event_id: &str,
    published: Timestamp,
    budget: u64,
) -> Result<DeliveryView, InspectError> {
    let (latest, searched) =
        latest_attempt(attempts, endpoint, event_id, published, budget).await?;
    Ok(DeliveryView::from_latest(
        endpoint.name.clone(),
        latest,
        searched,
    ))
}

/// The latest attempt record of `event_id` at `endpoint`, and whether the search was complete
/// (`false`: nothing found within the budget).
///
/// First newest-first down to the event's publication: that finds the latest record at once
/// when it is recent, re-sends included. On an endpoint too busy for that, forward from the
/// publication instead, following each `Retrying` record to the time of its next attempt (so
/// the backoff gaps are skipped, not read), up to where the first search began.
async fn latest_attempt(
    attempts: &Stream,
    endpoint: &EndpointKey,
    event_id: &str,
    published: Timestamp,
    budget: u64,
) -> Result<(Option<AttemptRecord>, bool), InspectError> {
    let subject = attempt_subject(endpoint);
    let is_ours = |m: &jetstream::Message| decode_attempt(m).filter(|r| r.event_id == event_id);
    let query = NewestQuery {
        limit: 1,
        not_before: Some(published),
        budget,
        fetch: ATTEMPT_FETCH,
    };
    let newest = subject_reader::newest(attempts, &subject, &query, is_ours).await?;
    if let Some(record) = newest.items.into_iter().next() {
        return Ok((Some(record), true));
    }
    if newest.complete {
        return Ok((None, true));
    }
    // Everything from `upper` on was read without a match.
    let upper = newest.scanned_from.unwrap_or(u64::MAX);
    let mut budget = budget;
    let mut latest = None;
    let mut start = Start::Time(published);
    loop {
        let mut read = ForwardRead::open(attempts, &subject, start, upper, ATTEMPT_FETCH).await?;
        let mut found = None;
        'read: loop {
            let batch = match read.next_batch().await {
                Ok(batch) => batch,
                Err(error) => {
                    read.close();
                    return Err(error.into());
                }
            };
            if batch.is_empty() {
                break;
            }
            for message in &batch {
                if let Some(record) = is_ours(message) {
                    found = subject_reader::position(message).map(|p| (p, record));
                    break 'read;
                }
                budget = budget.saturating_sub(1);
                if budget == 0 {
                    read.close();
                    let searched = latest.is_some();
                    return Ok((latest, searched));
                }
            }
        }
        read.close();
        let Some(((sequence, stored), record)) = found else {
            return Ok((latest, true));
        };
        let next = match &record.outcome {
            Outcome::Retrying { next_attempt_time } => Some(*next_attempt_time),
            _ => None,
        };
        latest = Some(record);
        start = match next.and_then(|t| t.checked_sub(CLOCK_SLACK).ok()) {
            Some(at) if at > stored => Start::Time(at),
            // Delivered or dead-lettered: read on for a re-send, while the budget lasts.
            _ => Start::Sequence(sequence + 1),
        };
    }
}
