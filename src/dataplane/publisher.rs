//! Durable writes shared by router and delivery: attempt records and dead letters.

use async_nats::jetstream;
use bytes::Bytes;

use super::{
    attempt_log::AttemptRecord,
    job::{DeadLetter, Job},
    topology::{attempt_subject, dead_letter_subject},
};
use crate::model::EndpointKey;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("publishing to {subject}: {message}")]
    Publish { subject: String, message: String },
    #[error("encoding attempt record: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Publishes and waits until JetStream has stored the message.
pub async fn publish_durably(
    js: &jetstream::Context,
    subject: String,
    headers: Option<async_nats::HeaderMap>,
    payload: Bytes,
) -> Result<(), PublishError> {
    let err = |subject: &str, e: &dyn std::fmt::Display| PublishError::Publish {
        subject: subject.to_owned(),
        message: e.to_string(),
    };
    let ack = match headers {
        Some(headers) => {
            js.publish_with_headers(subject.clone(), headers, payload)
                .await
        }
        None => js.publish(subject.clone(), payload).await,
    }
    .map_err(|e| err(&subject, &e))?;
    ack.await.map_err(|e| err(&subject, &e))?;
    Ok(())
}

/// Appends to the attempt log.
///
/// A delivery attempt is recorded once: a crash before its job is acknowledged brings the job
/// back as the next attempt, with a record of its own. Rejections (attempt 0) are re-published
/// by a restarted router, so they carry a message id that JetStream deduplicates; attempts do
/// not, sparing the server a deduplication entry per delivery.
pub async fn record_attempt(
    js: &jetstream::Context,
    endpoint: &EndpointKey,
    record: &AttemptRecord,
) -> Result<(), PublishError> {
    let payload = serde_json::to_vec(record)?;
    let headers = (record.attempt == 0).then(|| {
        let mut headers = async_nats::HeaderMap::new();
        let id = format!("{}:{}:rejected", record.event_id, endpoint.name);
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
        headers
    });
    publish_durably(js, attempt_subject(endpoint), headers, payload.into()).await
}

pub async fn dead_letter(
    js: &jetstream::Context,
    endpoint: &EndpointKey,
    job: &Job,
    letter: &DeadLetter,
) -> Result<(), PublishError> {
    let headers = letter.headers(job, &endpoint.name);
    publish_durably(
        js,
        dead_letter_subject(endpoint),
        Some(headers),
        job.payload.clone(),
    )
    .await
}
