//! What one attempt at an event leads to, the same for a job and for the head of a FIFO queue:
//! send it (or give up on its age), count it, decide between delivered, retry (after how long)
//! and dead letter, and store that durably before the message is acknowledged.

use std::time::Duration;

use jiff::Timestamp;

use super::{DeliveryContext, ResolvedEndpoint, attempt, backoff::retry_delay, shared::Breaker};
use crate::{
    dataplane::{
        attempt_log::{AttemptRecord, Outcome},
        job::{DeadLetter, Job},
        publisher,
    },
    metrics::{AttemptLabels, EndpointLabels, Metrics},
    model::{EndpointConfig, EndpointKey},
};

/// Which attempt at an event: its number (1-based) and whether it is the circuit's probe.
#[derive(Debug, Clone, Copy)]
pub(super) struct Try {
    pub(super) number: u32,
    pub(super) probe: bool,
}

/// One attempt at `job`: its record and, when it is to be retried, the delay.
pub(super) async fn attempt(
    ctx: &DeliveryContext,
    key: &EndpointKey,
    config: &EndpointConfig,
    resolved: &ResolvedEndpoint,
    job: &Job,
    breaker: &Breaker,
    Try {
        number: attempt,
        probe,
    }: Try,
) -> (AttemptRecord, Option<Duration>) {
    let policy = &config.retry;
    let age = |at: Timestamp| at.duration_since(job.published).unsigned_abs();
    let now = Timestamp::now();
    if age(now) > policy.max_age {
        let why = format!(
            "event is older than maxAge {}",
            crate::model::duration::format(policy.max_age)
        );
        // A probe that ends without an HTTP attempt says nothing about the endpoint.
        if probe {
            breaker.with(|b| b.probe_inconclusive(tokio::time::Instant::now()));
        }
        return (
            AttemptRecord::rejected(job, "MaxAgeExceeded", why, now),
            None,
        );
    }
    let report = attempt::send(config, resolved, job).await;
    let finished = Timestamp::now();
    observe(&ctx.metrics, key, &report, job, finished);
    breaker.record(report.succeeded());
    let mut delay = None;
    let outcome = if report.succeeded() {
        Outcome::Delivered
    } else if !report.retryable() || attempt >= policy.max_attempts {
        Outcome::DeadLettered
    } else {
        let wait = retry_delay(policy, attempt, report.retry_after);
        let next = finished + wait;
        if age(next) > policy.max_age {
            Outcome::DeadLettered
        } else {
            delay = Some(wait);
            Outcome::Retrying {
                next_attempt_time: next,
            }
        }
    };
    let record = AttemptRecord {
        time: finished,
        event_id: job.event_id.clone(),
        event_type: job.event_type.clone(),
        attempt,
        result: report.result,
        reason: report.reason,
        status_code: report.status_code,
        duration_ms: report.duration.as_millis() as u64,
        error: report.error,
        response_body: report.response_body,
        outcome,
    };
    (record, delay)
}

/// Stores what happened durably before the job is acknowledged: dead letter first, then the log.
pub(super) async fn settle(
    ctx: &DeliveryContext,
    key: &EndpointKey,
    job: &Job,
    record: &AttemptRecord,
) -> Result<(), publisher::PublishError> {
    if record.outcome == Outcome::DeadLettered {
        let letter = DeadLetter {
            reason: record
                .reason
                .clone()
                .unwrap_or_else(|| record.result.as_label().into()),
            message: record.error.clone().unwrap_or_default(),
            status_code: record.status_code,
            attempts: record.attempt,
            time: record.time,
        };
        publisher::dead_letter(&ctx.js, key, job, &letter).await?;
        publisher::record_attempt(&ctx.js, key, record).await?;
        // Counted once both are stored: a failed write is retried, and must not count twice.
        let labels = EndpointLabels {
            tenant: key.tenant.clone(),
            endpoint: ctx.metrics.endpoint_label(&key.name),
        };
        ctx.metrics.dead_lettered.get_or_create(&labels).inc();
        tracing::warn!(endpoint = %key, event_id = %job.event_id, reason = ?letter.reason, attempts = letter.attempts, "dead-lettered");
        return Ok(());
    }
    publisher::record_attempt(&ctx.js, key, record).await
}

fn observe(
    metrics: &Metrics,
    key: &EndpointKey,
    report: &attempt::AttemptReport,
    job: &Job,
    finished: Timestamp,
) {
    let tenant = Metrics::tenant(&key.tenant);
    let labels = AttemptLabels {
        tenant: key.tenant.clone(),
        endpoint: metrics.endpoint_label(&key.name),
        result: report.result.as_label(),
    };
    metrics.delivery_attempts.get_or_create(&labels).inc();
    metrics
        .delivery_duration
        .get_or_create(&tenant)
        .observe(report.duration.as_secs_f64());
    if report.succeeded() {
        let latency = finished
            .duration_since(job.published)
            .as_secs_f64()
            .max(0.0);
        metrics
            .delivery_latency
            .get_or_create(&tenant)
            .observe(latency);
    }
}
