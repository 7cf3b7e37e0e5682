//! An endpoint's newest attempts and dead letters, read back from their streams.

use std::{fmt, str::FromStr};

use async_nats::{HeaderMap, jetstream};
use jiff::Timestamp;
use serde::Serialize;

use super::{ATTEMPT_FETCH, InspectError, decode_attempt, open_stream};
use crate::{
    dataplane::{
        attempt_log::{AttemptRecord, AttemptResult},
        job,
        subject_reader::{self, Fetch, NewestQuery},
        topology::{ATTEMPTS_STREAM, DEAD_LETTER_STREAM, attempt_subject, dead_letter_subject},
    },
    model::EndpointKey,
};

/// Largest `limit` of a listing.
pub const MAX_LIMIT: usize = 1000;
/// Most records one listing reads (a rare `result` filter on a busy endpoint stops here).
pub const LISTING_BUDGET: u64 = 200_000;

const DEAD_LETTER_FETCH: Fetch = Fetch {
    batch: 1000,
    headers_only: true,
};

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
