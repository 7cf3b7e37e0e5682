//! One endpoint's delivery loop: pull its jobs, send up to `maxInFlight` at once, record each
//! attempt, then acknowledge, schedule the retry, or dead-letter.
//!
//! Every endpoint has its own durable consumer, so a slow or failing endpoint only ever holds
//! its own jobs; a retry is a delayed redelivery (`NAK` with delay), not a sleeping task.
//! A circuit breaker (see [`super::breaker`]) stops fetching from an endpoint that keeps
//! failing and probes it instead; an auto-disabled endpoint, like a paused one, fetches nothing.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::StreamExt;
use tokio::{sync::watch, task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;

use super::{
    ACK_SLACK, DeliveryContext, EndpointState,
    breaker::{Admission, CircuitBreaker, Permit},
    ordered,
    outcome::{self, Try},
    shared::EndpointShared,
};
use crate::{
    dataplane::{
        job::Job,
        route_store::RoutesRx,
        topology::{JOBS_STREAM, delivery_consumer, job_subject},
    },
    model::{EndpointConfig, EndpointKey},
};

/// How long one pull waits for jobs before the loop re-reads its configuration.
const PULL_EXPIRY: Duration = Duration::from_secs(2);
/// Delay of a job given back unattempted because the circuit opened: past the pull that
/// fetched it, so that pull cannot fetch it again.
const HOLD_BACK_DELAY: Duration = Duration::from_secs(3);
/// Bound on the held-back bookkeeping (jobs given back, by stream sequence).
const MAX_HELD_BACK: usize = 50_000;

/// Delivers the endpoint's jobs until `cancel`; for a FIFO endpoint (or one that was), its
/// queue too, alongside (see [`ordered`]).
pub async fn run(
    ctx: Arc<DeliveryContext>,
    key: EndpointKey,
    mut state: watch::Receiver<Arc<EndpointState>>,
    routes: RoutesRx,
    pending: Arc<AtomicU64>,
    cancel: CancellationToken,
) {
    let shared = Arc::new(EndpointShared::new(
        key.clone(),
        ctx.metrics.clone(),
        CircuitBreaker::new(ctx.breaker),
    ));
    tokio::spawn(ordered::run(
        ctx.clone(),
        key.clone(),
        state.clone(),
        routes,
        shared.clone(),
        cancel.clone(),
    ));
    // Jobs given back unattempted, by stream sequence, with how often: JetStream counts those
    // deliveries too, and they must not use up the job's attempts.
    let mut held_back: HashMap<u64, u32> = HashMap::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            result = serve(&ctx, &key, &mut state, &pending, &shared, &mut held_back) => {
                if let Err(error) = result {
                    tracing::warn!(endpoint = %key, %error, "delivery loop interrupted; retrying");
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn serve(
    ctx: &Arc<DeliveryContext>,
    key: &EndpointKey,
    state_rx: &mut watch::Receiver<Arc<EndpointState>>,
    pending: &AtomicU64,
    shared: &Arc<EndpointShared>,
    held_back: &mut HashMap<u64, u32>,
) -> Result<(), String> {
    let breaker = &shared.breaker;
    let mut state = state_rx.borrow_and_update().clone();
    let mut consumer = ensure_consumer(&ctx.js, key, &state.config).await?;
    // A probe of an earlier loop was aborted with it: probe again.
    breaker.with(|b| b.probe_now(Instant::now()));
    // Dropping the set aborts attempts in flight; their jobs were not acknowledged and return.
    let mut in_flight = JoinSet::new();
    let mut pending_checked: Option<Instant> = None;
    loop {
        let next = state_rx.borrow_and_update().clone();
        if !Arc::ptr_eq(&next, &state) {
            if next.config.timeout != state.config.timeout {
                consumer = ensure_consumer(&ctx.js, key, &next.config).await?;
            }
            if state.disabled && !next.disabled {
                tracing::info!(endpoint = %key, "endpoint re-enabled; resuming delivery");
                breaker.with(|b| b.probe_now(Instant::now()));
            }
            state = next;
        }
        if pending_checked.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
            let info = consumer.info().await.map_err(|e| e.to_string())?;
            pending.store(
                info.num_pending + info.num_ack_pending as u64,
                Ordering::Relaxed,
            );
            pending_checked = Some(Instant::now());
        }
        if state.config.paused || state.disabled || state.resolved.is_err() {
            if let Err(problem) = &state.resolved {
                tracing::warn!(endpoint = %key, %problem, "not delivering: a referenced Secret or ConfigMap is unusable");
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), state_rx.changed()).await;
            continue;
        }
        while in_flight.try_join_next().is_some() {}
        let max_in_flight = state.config.max_in_flight as usize;
        let want = match breaker.with(|b| b.permit(Instant::now())) {
            Permit::Batch => {
                if in_flight.len() >= max_in_flight {
                    // Then decide afresh: the attempt that ends may have opened the circuit.
                    in_flight.join_next().await;
                    continue;
                }
                let mut want = max_in_flight - in_flight.len();
                if let Some(rate) = &state.config.rate_limit {
                    // Pulled jobs wait for the limiter; keep that wait well inside the ack deadline.
                    want = want.min(rate.burst.max(1) as usize);
                }
                want
            }
            Permit::Probe => 1,
            Permit::WaitUntil(until) => {
                // Woken by the probe settling, a settings change, or the next probe's time;
                // at least every 5 s, so the pending gauge stays current.
                let until = until.min(Instant::now() + Duration::from_secs(5));
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = state_rx.changed() => {}
                    Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                }
                continue;
            }
        };
        let mut batch = consumer
            .batch()
            .max_messages(want)
            .expires(PULL_EXPIRY)
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| e.to_string())?;
            let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
            let given_back = held_back.remove(&sequence).unwrap_or(0);
            let probe = match breaker.with(|b| b.admit(Instant::now())) {
                Admission::Send => false,
                Admission::Probe => true,
                Admission::HoldBack => {
                    if held_back.len() >= MAX_HELD_BACK {
                        held_back.clear();
                    }
                    held_back.insert(sequence, given_back + 1);
                    let _ = message.ack_with(AckKind::Nak(Some(HOLD_BACK_DELAY))).await;
                    continue;
                }
            };
            if let Some(limiter) = shared.limiter(&state.config) {
                let waited = Instant::now();
                limiter.until_ready().await;
                if waited.elapsed() > ACK_SLACK / 2 {
                    // Keep the job ours while it waited for the rate limiter.
                    let _ = message.ack_with(AckKind::Progress).await;
                }
            }
            in_flight.spawn(deliver(
                ctx.clone(),
                key.clone(),
                state.clone(),
                Fetched {
                    message,
                    given_back,
                    probe,
                },
                shared.clone(),
            ));
        }
    }
}

async fn ensure_consumer(
    js: &jetstream::Context,
    key: &EndpointKey,
    config: &EndpointConfig,
) -> Result<jetstream::consumer::Consumer<pull::Config>, String> {
    let name = delivery_consumer(key);
    js.create_consumer_on_stream(
        pull::Config {
            durable_name: Some(name),
            filter_subject: job_subject(key),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: config.timeout + ACK_SLACK,
            // Attempts are counted and capped by us (maxAttempts); JetStream never gives up.
            max_deliver: -1,
            // Jobs waiting for their retry count here; large enough that a failing endpoint's
            // retries never starve its fresh jobs.
            max_ack_pending: 20_000,
            // A consumer nobody pulls from (endpoint deleted, or recreated by a worker racing
            // the deletion) is removed by the server; jobs stay in the work queue stream, and a
            // new consumer with the same filter picks them up.
            inactive_threshold: Duration::from_secs(3600),
            // Consumer state in memory: with one consumer per endpoint, persisting each one's
            // state file after every ack was most of nats-server's CPU (see BENCHMARKS.md).
            // The jobs themselves stay on disk in the work-queue stream; if nats-server
            // restarts, the consumer is recreated and unacknowledged jobs are delivered again
            // (at-least-once), with the attempt count starting over (maxAge still bounds them).
            memory_storage: true,
            ..Default::default()
        },
        JOBS_STREAM,
    )
    .await
    .map_err(|e| format!("creating consumer for {key}: {e}"))
}

/// A job as fetched for one attempt.
struct Fetched {
    message: jetstream::Message,
    /// Times it was given back unattempted (circuit open); not attempts.
    given_back: u32,
    /// Sent as the circuit's probe.
    probe: bool,
}

/// Delivers one job and settles it. Every path ends in ack, delayed NAK, or (on an internal
/// error) a short NAK so the job comes back: a job is never dropped.
async fn deliver(
    ctx: Arc<DeliveryContext>,
    key: EndpointKey,
    state: Arc<EndpointState>,
    fetched: Fetched,
    shared: Arc<EndpointShared>,
) {
    let Fetched {
        message,
        given_back,
        probe,
    } = fetched;
    let breaker = &shared.breaker;
    // A probe that ends without an HTTP attempt says nothing about the endpoint.
    let inconclusive = || {
        if probe {
            breaker.with(|b| b.probe_inconclusive(Instant::now()));
        }
    };
    // JetStream's delivery count, less the deliveries that only gave the job back.
    let number = message
        .info()
        .map(|i| {
            (i.delivered.max(1) as u32)
                .saturating_sub(given_back)
                .max(1)
        })
        .unwrap_or(1);
    let job = match Job::from_message(message.headers.as_ref(), message.payload.clone()) {
        Ok(job) => job,
        Err(error) => {
            tracing::error!(endpoint = %key, %error, "discarding malformed delivery job");
            let _ = message.ack_with(AckKind::Term).await;
            inconclusive();
            return;
        }
    };
    let Ok(resolved) = &state.resolved else {
        let _ = message
            .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
            .await;
        inconclusive();
        return;
    };
    let (record, delay) = outcome::attempt(
        &ctx,
        &key,
        &state.config,
        resolved,
        &job,
        breaker,
        Try { number, probe },
    )
    .await;
    if let Err(error) = outcome::settle(&ctx, &key, &job, &record).await {
        tracing::warn!(endpoint = %key, event_id = %job.event_id, %error, "could not record attempt; job will be retried");
        let _ = message
            .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
            .await;
        return;
    }
    let ack = match delay {
        Some(delay) => message.ack_with(AckKind::Nak(Some(delay))).await,
        None => message.ack().await,
    };
    if let Err(error) = ack {
        tracing::warn!(endpoint = %key, event_id = %job.event_id, %error, "acknowledgement lost; the job may be delivered again");
    }
}
