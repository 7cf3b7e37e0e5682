//! Where one event stands at one endpoint: its latest attempt record there, searched within a
//! budget.

use async_nats::jetstream::{self, stream::Stream};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::{ATTEMPT_FETCH, InspectError, decode_attempt};
use crate::{
    dataplane::{
        attempt_log::{AttemptRecord, Outcome},
        subject_reader::{self, ForwardRead, NewestQuery, Start},
        topology::attempt_subject,
    },
    model::EndpointKey,
};

/// Most attempt records read to find one event's state at one endpoint, per search phase.
pub const EVENT_SEARCH_BUDGET: u64 = 100_000;
/// Attempt records carry the pipeline's clock, stream positions the server's.
const CLOCK_SLACK: SignedDuration = SignedDuration::from_secs(10);

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
