//! Sending events again: an endpoint's dead letters (replay) and one event (redeliver).
//!
//! A re-sent job keeps the event id (so the `webhook-id` receivers deduplicate on), is signed
//! afresh at delivery like any job, and gets message ids of its own (see [`Job::resent`]): the
//! jobs stream would otherwise drop it as a repeat of the event's first job. Its retry clock
//! (`maxAge`) starts at the re-send.

use async_nats::jetstream::{
    self, ErrorCode,
    stream::{DeleteMessageErrorKind, Stream},
};
use futures::{StreamExt, stream};
use jiff::Timestamp;

use super::{
    inspect::{self, InspectError},
    job::Job,
    plan::{EventLimits, rejection},
    subject_reader::{self, Fetch, ForwardRead, Start},
    topology::{DEAD_LETTER_STREAM, dead_letter_subject, job_subject},
};
use crate::model::EndpointKey;

/// Dead letters carry payloads: fetched a few at a time.
const REPLAY_FETCH: Fetch = Fetch {
    batch: 32,
    headers_only: false,
};
const REPLAY_CONCURRENCY: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Inspect(#[from] InspectError),
    #[error("{0}")]
    Read(#[from] subject_reader::ReadError),
    #[error("queueing event {event_id} for {endpoint} again: {message}")]
    Enqueue {
        event_id: String,
        endpoint: EndpointKey,
        message: String,
    },
    #[error("removing the replayed dead letter {sequence} of {endpoint}: {message}")]
    Remove {
        endpoint: EndpointKey,
        sequence: u64,
        message: String,
    },
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Dead letters queued as jobs again (and removed from the dead letters).
    pub replayed: u64,
    /// Dead letters kept: they would be rejected again (payload too large, or not valid JSON,
    /// under the current limits) or are unreadable.
    pub skipped: u64,
}

/// Queues the endpoint's dead letters (those dead-lettered at or after `since`, or all) as jobs
/// again. Each is removed from the dead letters only once its job is stored: a replay that
/// fails half-way can be repeated, and within the deduplication window a repeat does not queue
/// anything twice.
pub async fn replay_dead_letters(
    js: &jetstream::Context,
    endpoint: &EndpointKey,
    since: Option<Timestamp>,
    limits: &EventLimits,
) -> Result<ReplayReport, ReplayError> {
    let letters = inspect::open_stream(js, DEAD_LETTER_STREAM).await?;
    let subject = dead_letter_subject(endpoint);
    let Some(((first, _), (last, _))) = subject_reader::bounds(&letters, &subject).await? else {
        return Ok(ReplayReport::default());
    };
    let start = since.map_or(Start::Sequence(first), Start::Time);
    // Up to the newest dead letter now: a replayed job that fails again is not replayed again.
    let mut read = ForwardRead::open(&letters, &subject, start, last + 1, REPLAY_FETCH).await?;
    let mut report = ReplayReport::default();
    let now = Timestamp::now();
    loop {
        let batch = match read.next_batch().await {
            Ok(batch) if batch.is_empty() => break,
            Ok(batch) => batch,
            Err(error) => {
                read.close();
                return Err(error.into());
            }
        };
        let outcomes: Vec<Result<bool, ReplayError>> = stream::iter(batch)
            .map(|message| replay_one(js, &letters, endpoint, message, limits, now))
            .buffer_unordered(REPLAY_CONCURRENCY)
            .collect()
            .await;
        for outcome in outcomes {
            match outcome {
                Ok(true) => report.replayed += 1,
                Ok(false) => report.skipped += 1,
                Err(error) => {
                    read.close();
                    return Err(error);
                }
            }
        }
    }
    read.close();
    if report.replayed > 0 || report.skipped > 0 {
        tracing::info!(%endpoint, replayed = report.replayed, skipped = report.skipped, "replayed dead letters");
    }
    Ok(report)
}

/// `Ok(true)` when queued again and removed, `Ok(false)` when kept.
async fn replay_one(
    js: &jetstream::Context,
    letters: &Stream,
    endpoint: &EndpointKey,
    message: jetstream::Message,
    limits: &EventLimits,
    now: Timestamp,
) -> Result<bool, ReplayError> {
    let Some((sequence, _)) = subject_reader::position(&message) else {
        return Ok(false);
    };
    let job = match Job::from_message(message.headers.as_ref(), message.payload.clone()) {
        Ok(job) => job,
        Err(error) => {
            tracing::warn!(%endpoint, sequence, %error, "keeping an unreadable dead letter");
            return Ok(false);
        }
    };
    if let Some((reason, why)) = rejection(&job, limits) {
        tracing::info!(%endpoint, event_id = %job.event_id, reason, "not replaying: {why}");
        return Ok(false);
    }
    // The dead letter's sequence makes the id: replaying it twice queues one job.
    let job = job.resent(format!("replay-{sequence}"), now);
    enqueue(js, endpoint, &job).await?;
    match letters.delete_message(sequence).await {
        Ok(_) => Ok(true),
        // Removed meanwhile by a concurrent replay of the same dead letter.
        Err(error) if matches!(error.kind(), DeleteMessageErrorKind::JetStream(e) if e.error_code() == ErrorCode::NO_MESSAGE_FOUND) => {
            Ok(true)
        }
        Err(error) => Err(ReplayError::Remove {
            endpoint: endpoint.clone(),
            sequence,
            message: error.to_string(),
        }),
    }
}

/// Publishes a re-sent job and waits until it is stored.
pub async fn enqueue(
    js: &jetstream::Context,
    endpoint: &EndpointKey,
    job: &Job,
) -> Result<(), ReplayError> {
    let error = |message: String| ReplayError::Enqueue {
        event_id: job.event_id.clone(),
        endpoint: endpoint.clone(),
        message,
    };
    js.publish_with_headers(
        job_subject(endpoint),
        job.headers(&endpoint.name),
        job.payload.clone(),
    )
    .await
    .map_err(|e| error(e.to_string()))?
    .await
    .map_err(|e| error(e.to_string()))?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum RedeliverError {
    #[error("{0}")]
    Inspect(#[from] InspectError),
    #[error("{0}")]
    Replay(#[from] ReplayError),
    #[error("event {0} is not found (unknown, or older than the events retention)")]
    NotFound(String),
    #[error(
        "event {0} is no longer stored (past the events retention): its payload cannot be sent again"
    )]
    Expired(String),
    #[error("endpoint {0} is not known")]
    UnknownEndpoint(String),
    #[error("event {event_id} was not routed to endpoint {endpoint}")]
    NotRouted { event_id: String, endpoint: String },
    #[error("event {event_id} cannot be delivered ({reason}): {message}")]
    Undeliverable {
        event_id: String,
        reason: &'static str,
        message: String,
    },
}

/// Sends an event again to `endpoints` (default: every endpoint it was routed to that still
/// exists, as `exists` tells); returns the endpoints it was queued for.
pub async fn redeliver(
    js: &jetstream::Context,
    tenant: &str,
    event_id: &str,
    endpoints: Option<Vec<String>>,
    exists: impl Fn(&str) -> bool,
    limits: &EventLimits,
) -> Result<Vec<String>, RedeliverError> {
    let Some(stored) = inspect::load_event(js, tenant, event_id).await? else {
        return Err(RedeliverError::NotFound(event_id.to_owned()));
    };
    let routed = &stored.indexed.endpoints;
    let targets = match endpoints {
        Some(names) => {
            for name in &names {
                if !exists(name) {
                    return Err(RedeliverError::UnknownEndpoint(format!("{tenant}/{name}")));
                }
                if !routed.contains(name) {
                    return Err(RedeliverError::NotRouted {
                        event_id: event_id.to_owned(),
                        endpoint: name.clone(),
                    });
                }
            }
            names
        }
        None => routed.iter().filter(|n| exists(n)).cloned().collect(),
    };
    let Some(job) = stored.job else {
        return Err(RedeliverError::Expired(event_id.to_owned()));
    };
    if let Some((reason, message)) = rejection(&job, limits) {
        return Err(RedeliverError::Undeliverable {
            event_id: event_id.to_owned(),
            reason,
            message,
        });
    }
    let job = job.resent(
        format!("redeliver-{}", uuid::Uuid::now_v7().simple()),
        Timestamp::now(),
    );
    for name in &targets {
        enqueue(js, &EndpointKey::new(tenant, name), &job).await?;
    }
    tracing::info!(tenant, event_id, endpoints = ?targets, "event queued for delivery again");
    Ok(targets)
}
