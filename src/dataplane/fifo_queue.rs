//! The FIFO queue of an endpoint with `ordering: fifo`: a durable consumer on the events
//! stream, `fifo_<tenant>_<ep>`, that the endpoint's delivery reads in publish order instead of
//! delivery jobs (the router routes concurrently, so jobs are not in publish order).
//!
//! - **Created by the router** before it routes with routes that make the endpoint FIFO
//!   ([`ensured_routes`]), starting after the router consumer's ack floor: events at or below
//!   it were routed with the old routes and got jobs; events above may get a job as well as a
//!   place in the queue (a duplicate, with the same `webhook-id`), never neither.
//!   Create-if-missing: a router never resets a queue, so routers may race.
//! - **Strict order, any number of readers.** Without a partition key the queue lets one event
//!   out at a time (`max_ack_pending: 1`): the head is retried in-process until delivered or
//!   dead-lettered, and after a crash it comes back (after `ack_wait`) before anything newer.
//! - **Partitions** (`partitionKeyHeader`): a window of events is out at once, split into
//!   per-partition queues in the delivering process. One process reads (a pinned client of the
//!   priority group [`PIN_GROUP`]); a process that becomes the pinned one replaces the queue
//!   with one starting after its ack floor, unless it created that queue itself, so events a
//!   previous reader left unacknowledged come back in order (as duplicates of what that reader
//!   did deliver, never after newer events of their partition).
//! - **The filter is the tenant's whole events subject** (`events.<tenant>.>`): the queue skips
//!   events its endpoint does not subscribe to (deciding as the router does, see
//!   [`super::plan`]). Narrower `filter_subjects` would save those skips, but a consumer with
//!   several filters is created through an API subject that does not name them, so NATS
//!   permissions could no longer keep a delivery user to its own tenant's events; and changing
//!   subscriptions would mean updating filters without a gap.
//! - **File-backed, never expires**: the consumer *is* the queue. It goes when its endpoint is
//!   deleted (the controller), or once drained after the endpoint turned unordered (its
//!   delivery, see `delivery::ordered`).

use std::{collections::BTreeMap, time::Duration};

use async_nats::jetstream::{
    self,
    consumer::{self, AckPolicy, DeliverPolicy, FromConsumer, PriorityPolicy, pull},
    context::ConsumerInfoErrorKind,
    stream::ConsumerCreateStrictErrorKind,
};
use futures::future::try_join_all;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    delivery::ACK_SLACK,
    route_store::RoutesRx,
    topology::{EVENTS_STREAM, ROUTER_CONSUMER, fifo_consumer, tenant_events},
};
use crate::model::{CompiledRoutes, EndpointConfig, EndpointKey, EndpointStats};

/// The priority group partitioned queues are read through.
pub const PIN_GROUP: &str = "fifo";
/// How long a pinned reader that stopped pulling keeps the pin: how long a partitioned queue
/// waits for its reader's replacement after a crash.
const PIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Acknowledgement deadline of a partitioned queue: long, because events wait in their
/// partition's queue in the reader, and a crashed reader's events come back through the reset,
/// not through redelivery.
const PARTITIONED_ACK_WAIT: Duration = Duration::from_secs(600);
/// Events out at once per `maxInFlight` slot in a partitioned queue.
const WINDOW_PER_SLOT: i64 = 100;
const MAX_WINDOW: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
#[error("FIFO queue of {endpoint}: {message}")]
pub struct QueueError {
    pub endpoint: EndpointKey,
    pub message: String,
}

fn error(endpoint: &EndpointKey, message: impl std::fmt::Display) -> QueueError {
    QueueError {
        endpoint: endpoint.clone(),
        message: message.to_string(),
    }
}

/// Whether the endpoint's order is kept per partition key.
pub fn is_partitioned(config: &EndpointConfig) -> bool {
    config.partition_key_header.is_some()
}

/// Events a partitioned queue lets out at once.
pub fn window(config: &EndpointConfig) -> i64 {
    (i64::from(config.max_in_flight) * WINDOW_PER_SLOT).min(MAX_WINDOW)
}

/// The queue's consumer settings, starting at stream sequence `start`.
pub fn consumer_config(key: &EndpointKey, config: &EndpointConfig, start: u64) -> pull::Config {
    let name = fifo_consumer(key);
    let base = pull::Config {
        name: Some(name.clone()),
        durable_name: Some(name),
        description: Some(format!("FIFO queue of webhook endpoint {key}")),
        filter_subject: tenant_events(&key.tenant),
        deliver_policy: DeliverPolicy::ByStartSequence {
            start_sequence: start.max(1),
        },
        ack_policy: AckPolicy::Explicit,
        // Attempts are counted and capped by the endpoint's retry policy.
        max_deliver: -1,
        ..Default::default()
    };
    if is_partitioned(config) {
        pull::Config {
            ack_wait: PARTITIONED_ACK_WAIT,
            max_ack_pending: window(config),
            priority_policy: PriorityPolicy::PinnedClient,
            priority_groups: vec![PIN_GROUP.into()],
            priority_timeout: PIN_TIMEOUT,
            ..base
        }
    } else {
        pull::Config {
            ack_wait: config.timeout + ACK_SLACK,
            max_ack_pending: 1,
            ..base
        }
    }
}

/// Whether an existing queue is read through pinned clients (it was made for partitions).
pub fn is_pinned(info: &consumer::Info) -> bool {
    info.config.priority_policy == PriorityPolicy::PinnedClient
}

/// Where a replacement of the queue starts: after its ack floor (everything at or below it was
/// delivered or dead-lettered), never before where the queue itself started.
pub fn resume_point(info: &consumer::Info) -> u64 {
    let start = match info.config.deliver_policy {
        DeliverPolicy::ByStartSequence { start_sequence } => start_sequence,
        _ => 1,
    };
    (info.ack_floor.stream_sequence + 1).max(start)
}

/// The queue's state; `None` when it does not exist.
pub async fn info(
    js: &jetstream::Context,
    key: &EndpointKey,
) -> Result<Option<consumer::Info>, QueueError> {
    consumer_info(js, &fifo_consumer(key))
        .await
        .map_err(|e| error(key, e))
}

async fn consumer_info(
    js: &jetstream::Context,
    name: &str,
) -> Result<Option<consumer::Info>, String> {
    let stream = js
        .get_stream_no_info(EVENTS_STREAM)
        .await
        .map_err(|e| e.to_string())?;
    match stream.consumer_info(name).await {
        Ok(info) => Ok(Some(info)),
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// How far the routers are: `(ack floor, last delivered)` stream sequences of their consumer.
pub async fn router_position(
    js: &jetstream::Context,
    key: &EndpointKey,
) -> Result<(u64, u64), QueueError> {
    // No router consumer yet: the routers will read every event, with the routes of the time.
    Ok(consumer_info(js, ROUTER_CONSUMER)
        .await
        .map_err(|e| error(key, e))?
        .map_or((0, 0), |i| {
            (i.ack_floor.stream_sequence, i.delivered.stream_sequence)
        }))
}

/// Creates the queue at `start`; `None` when it exists already (whatever its settings).
pub async fn create(
    js: &jetstream::Context,
    key: &EndpointKey,
    config: &EndpointConfig,
    start: u64,
) -> Result<Option<Queue>, QueueError> {
    match js
        .create_consumer_strict_on_stream(consumer_config(key, config, start), EVENTS_STREAM)
        .await
    {
        Ok(queue) => Ok(Some(queue)),
        Err(e) if e.kind() == ConsumerCreateStrictErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(error(key, e)),
    }
}

/// Creates the queue if it is missing, starting after everything the routers acknowledged.
/// An existing queue is left as it is.
pub async fn ensure(
    js: &jetstream::Context,
    key: &EndpointKey,
    config: &EndpointConfig,
) -> Result<(), QueueError> {
    if info(js, key).await?.is_some() {
        return Ok(());
    }
    let (floor, _) = router_position(js, key).await?;
    if create(js, key, config, floor + 1).await?.is_some() {
        tracing::info!(endpoint = %key, start = floor + 1, "created the endpoint's FIFO queue");
    }
    Ok(())
}

/// The queue's consumer, to pull from.
pub type Queue = consumer::Consumer<pull::Config>;

fn bind(
    js: &jetstream::Context,
    key: &EndpointKey,
    info: consumer::Info,
) -> Result<Queue, QueueError> {
    let config =
        pull::Config::try_from_consumer_config(info.config.clone()).map_err(|e| error(key, e))?;
    Ok(consumer::Consumer::new(config, info, js.clone()))
}

/// Replaces the queue with one starting at `start`. Whoever else replaces it meanwhile
/// starts no earlier than everything acknowledged, so the retry keeps the earliest start.
pub async fn recreate(
    js: &jetstream::Context,
    key: &EndpointKey,
    config: &EndpointConfig,
    start: u64,
) -> Result<Queue, QueueError> {
    for _ in 0..5 {
        remove(js, key).await?;
        if let Some(queue) = create(js, key, config, start).await? {
            return Ok(queue);
        }
    }
    Err(error(key, "kept being recreated by someone else"))
}

/// Deletes the queue; one that does not exist is fine.
pub async fn remove(js: &jetstream::Context, key: &EndpointKey) -> Result<(), QueueError> {
    let stream = js
        .get_stream_no_info(EVENTS_STREAM)
        .await
        .map_err(|e| error(key, e))?;
    match stream.delete_consumer(&fifo_consumer(key)).await {
        Ok(_) => Ok(()),
        Err(e) if info(js, key).await?.is_none() => {
            tracing::debug!(endpoint = %key, error = %e, "FIFO queue already gone");
            Ok(())
        }
        Err(e) => Err(error(key, e)),
    }
}

/// The queue as the endpoint's settings want it, or `None` while it does not exist (the
/// router creates it). A change between partitioned and not replaces it (NATS cannot move a
/// consumer into or out of priority groups); other settings are updated in place.
pub async fn reconcile(
    js: &jetstream::Context,
    key: &EndpointKey,
    config: &EndpointConfig,
) -> Result<Option<Queue>, QueueError> {
    let Some(info) = info(js, key).await? else {
        return Ok(None);
    };
    if is_pinned(&info) != is_partitioned(config) {
        let start = resume_point(&info);
        tracing::info!(endpoint = %key, start, "partitioning changed: replacing the FIFO queue");
        return recreate(js, key, config, start).await.map(Some);
    }
    let mut desired = consumer_config(key, config, 1);
    desired.deliver_policy = info.config.deliver_policy;
    let current = &info.config;
    if current.ack_wait != desired.ack_wait
        || current.max_ack_pending != desired.max_ack_pending
        || current.priority_timeout != desired.priority_timeout
    {
        let updated = js
            .update_consumer_on_stream(desired, EVENTS_STREAM)
            .await
            .map_err(|e| error(key, e))?;
        return Ok(Some(updated));
    }
    bind(js, key, info).map(Some)
}

/// The existing queue to pull from, whatever its settings; `None` when there is none.
pub async fn existing(
    js: &jetstream::Context,
    key: &EndpointKey,
) -> Result<Option<Queue>, QueueError> {
    match info(js, key).await? {
        Some(info) => bind(js, key, info).map(Some),
        None => Ok(None),
    }
}

/// Whether a FIFO endpoint's events are held back, as status and the admin API tell: its last
/// attempt failed (the head's, or a re-send's, which fails alike).
pub fn head_failing(stats: &EndpointStats) -> bool {
    stats.consecutive_failures > 0
}

/// Events waiting behind a failing head: what the queue has yet to let through, but the head.
/// With partitions, an upper bound: the window also holds other partitions' events. Either
/// way it counts the tenant's events the endpoint will skip (the queue reads them all).
pub fn held_back(failing: bool, num_pending: u64, num_ack_pending: usize) -> u64 {
    if !failing {
        return 0;
    }
    num_pending + (num_ack_pending as u64).saturating_sub(1)
}

/// [`held_back`] of an endpoint whose last attempt failed or not, read from its queue.
pub async fn held_back_of(
    js: &jetstream::Context,
    key: &EndpointKey,
    failing: bool,
) -> Result<u64, QueueError> {
    if !failing {
        return Ok(0);
    }
    Ok(info(js, key)
        .await?
        .map_or(0, |i| held_back(true, i.num_pending, i.num_ack_pending)))
}

/// The FIFO endpoints of a routes snapshot.
fn fifo_endpoints(routes: &CompiledRoutes) -> BTreeMap<EndpointKey, &EndpointConfig> {
    routes
        .endpoints()
        .filter(|(_, config)| config.is_fifo())
        .map(|(tenant, config)| (EndpointKey::new(tenant, &config.name), config))
        .collect()
}

/// `routes`, each snapshot passed on only once the queues of the endpoints it makes FIFO
/// exist: what a router routes with. Until then (NATS unavailable) the previous snapshot stays.
pub fn ensured_routes(
    js: jetstream::Context,
    mut routes: RoutesRx,
    cancel: CancellationToken,
) -> RoutesRx {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        // The endpoints FIFO in the snapshot last passed on: their queues were made sure of.
        // Only a queue drained after its endpoint turned unordered goes away, and then the
        // endpoint is not FIFO here any more (or its drain recreates the queue).
        let mut ensured: Vec<EndpointKey> = Vec::new();
        loop {
            let snapshot = routes.borrow_and_update().clone();
            let mut ready = true;
            if let Some(snapshot) = &snapshot {
                let fifo = fifo_endpoints(snapshot);
                let missing = fifo
                    .iter()
                    .filter(|(key, _)| !ensured.contains(key))
                    .map(|(key, config)| ensure(&js, key, config));
                match try_join_all(missing).await {
                    Ok(_) => ensured = fifo.into_keys().collect(),
                    Err(error) => {
                        tracing::warn!(%error, "cannot create a FIFO queue; routing with the previous routes until it exists");
                        ready = false;
                    }
                }
            }
            if ready {
                tx.send_replace(snapshot);
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = routes.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(Duration::from_secs(1)), if !ready => {}
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(partition: Option<&str>) -> EndpointConfig {
        serde_json::from_value(serde_json::json!({
            "name": "orders.v2",
            "url": "https://a.example",
            "secret": { "name": "s", "key": "secret" },
            "timeout": "10s",
            "retry": { "maxAttempts": 3, "initialBackoff": "1s", "maxBackoff": "1m", "maxAge": "1h" },
            "maxInFlight": 4,
            "ordering": "fifo",
            "partitionKeyHeader": partition,
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn one_event_at_a_time_or_a_pinned_window() {
        let key = EndpointKey::new("acme", "orders.v2");
        let single = consumer_config(&key, &endpoint(None), 42);
        assert_eq!(single.durable_name.as_deref(), Some("fifo_acme_orders_v2"));
        assert_eq!(single.filter_subject, "events.acme.>");
        assert_eq!(single.max_ack_pending, 1);
        assert_eq!(single.ack_wait, Duration::from_secs(10) + ACK_SLACK);
        assert_eq!(single.priority_policy, PriorityPolicy::None);
        assert!(!single.memory_storage, "the queue's state is on disk");
        assert_eq!(single.inactive_threshold, Duration::ZERO, "never expires");
        assert_eq!(
            single.deliver_policy,
            DeliverPolicy::ByStartSequence { start_sequence: 42 }
        );
        let partitioned = consumer_config(&key, &endpoint(Some("x-customer")), 42);
        assert_eq!(partitioned.max_ack_pending, 400);
        assert_eq!(partitioned.priority_policy, PriorityPolicy::PinnedClient);
        assert_eq!(partitioned.priority_groups, [PIN_GROUP]);
    }

    #[test]
    fn held_back_counts_what_waits_behind_a_failing_head() {
        assert_eq!(
            held_back(false, 120, 1),
            0,
            "nothing fails, nothing held back"
        );
        assert_eq!(held_back(true, 120, 1), 120);
        assert_eq!(held_back(true, 0, 1), 0, "the head alone");
        assert_eq!(held_back(true, 5, 30), 34);
        assert_eq!(held_back(true, 0, 0), 0);
    }
}
