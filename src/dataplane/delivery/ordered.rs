//! One endpoint's FIFO queue (see [`crate::dataplane::fifo_queue`]), delivered in publish
//! order: each event is held and retried in this process until it is delivered or
//! dead-lettered, and only then is the next one let out. With a partition key, one such line
//! per key value, `maxInFlight` attempts at once (see [`partitions`]).
//!
//! Attempts go through what jobs use ([`outcome`]): the same records, dead letters and
//! metrics; the endpoint's breaker (an open circuit makes the head wait), rate limit, pause
//! and auto-disable. The queue only takes events the router would deliver to the endpoint
//! ([`crate::dataplane::plan`]), and skips (acknowledges) the rest.
//!
//! An endpoint that is not FIFO (any more) but still has a queue drains it: the events that
//! routers routed to the queue before they saw the change are delivered, then the queue goes.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use tokio::{
    sync::{Semaphore, watch},
    task::JoinSet,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::{
    DeliveryContext, EndpointState,
    breaker::Admission,
    outcome::{self, Try},
    shared::EndpointShared,
};
use crate::{
    dataplane::{
        fifo_queue::{self, Queue},
        job::Job,
        plan::{EventMessage, UnreadableEvent, events_epoch},
        route_store::RoutesRx,
    },
    model::{EndpointConfig, EndpointKey, filter::EventView},
};

mod partitions;

type StateRx = watch::Receiver<Arc<EndpointState>>;

/// How long one pull waits before the loop looks at its settings again.
const PULL_EXPIRY: Duration = Duration::from_secs(5);
/// How often a held event's wait looks at settings, the breaker and its deadline.
const RECHECK: Duration = Duration::from_secs(1);
/// After an endpoint turned unordered, how long routers get to see the change before the
/// drain fixes where the queue ends: what they route later gets jobs.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// How the endpoint's events are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Not FIFO: at most a queue to drain.
    Unordered,
    /// One event at a time.
    Single,
    /// One event at a time per partition key.
    Partitioned,
}

impl Mode {
    fn of(config: &EndpointConfig) -> Self {
        match (config.is_fifo(), fifo_queue::is_partitioned(config)) {
            (false, _) => Mode::Unordered,
            (true, false) => Mode::Single,
            (true, true) => Mode::Partitioned,
        }
    }
}

/// How a held event ended.
enum Held {
    /// Delivered or dead-lettered, and recorded: acknowledge it.
    Settled,
    /// The endpoint's mode changed under it: give it back.
    Abandoned,
}

/// One endpoint's queue, as every task of its delivery shares it.
struct Line {
    ctx: Arc<DeliveryContext>,
    key: EndpointKey,
    routes: RoutesRx,
    shared: Arc<EndpointShared>,
    /// Heads whose last attempt failed and that wait for their retry.
    failing: AtomicUsize,
    /// Said once that the queue is not there yet.
    told_missing: AtomicBool,
}

/// Runs until `cancel`: the queue while the endpoint is FIFO, its drain once it is not.
pub(super) async fn run(
    ctx: Arc<DeliveryContext>,
    key: EndpointKey,
    mut state: StateRx,
    routes: RoutesRx,
    shared: Arc<EndpointShared>,
    cancel: CancellationToken,
) {
    let line = Arc::new(Line {
        ctx,
        key,
        routes,
        shared,
        failing: AtomicUsize::new(0),
        told_missing: AtomicBool::new(false),
    });
    // When this process last created the (partitioned) queue: it then needs no reset.
    let mut created = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                line.ctx.metrics.set_held_back(&line.key.tenant, &line.key.name, None);
                return;
            }
            result = line.serve(&mut state, &mut created) => {
                if let Err(error) = result {
                    tracing::warn!(endpoint = %line.key, %error, "FIFO delivery interrupted; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

impl Line {
    /// Serves the queue in the endpoint's current mode; returns when the mode changed.
    async fn serve(
        self: &Arc<Self>,
        state: &mut StateRx,
        created: &mut Option<jetstream::consumer::Info>,
    ) -> Result<(), String> {
        let current = state.borrow_and_update().clone();
        let mode = Mode::of(&current.config);
        if mode == Mode::Unordered {
            self.ctx
                .metrics
                .set_held_back(&self.key.tenant, &self.key.name, None);
            return self.drain(state).await;
        }
        let js = &self.ctx.js;
        let Some(queue) = fifo_queue::reconcile(js, &self.key, &current.config)
            .await
            .map_err(|e| e.to_string())?
        else {
            if !self.told_missing.swap(true, Ordering::Relaxed) {
                tracing::info!(endpoint = %self.key, "waiting for a router to create the FIFO queue");
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), state.changed()).await;
            return Ok(());
        };
        self.told_missing.store(false, Ordering::Relaxed);
        let epoch = events_epoch(js).await?;
        let mut gauge = JoinSet::new();
        gauge.spawn(self.clone().publish_held_back(queue.clone()));
        match mode {
            Mode::Single => self.single(state, queue, epoch).await,
            _ => self.partitioned(state, queue, epoch, created).await,
        }
    }

    /// One event at a time: the queue lets out the next only once this one is acknowledged.
    async fn single(&self, state: &mut StateRx, queue: Queue, epoch: i64) -> Result<(), String> {
        let started = state.borrow().config.clone();
        let (mut messages, keep) = one_at_a_time(&queue).await?;
        loop {
            let current = state.borrow_and_update().clone();
            if Mode::of(&current.config) != Mode::Single
                || current.config.timeout != started.timeout
            {
                return Ok(());
            }
            let message = tokio::select! {
                next = messages.next() => match next {
                    Some(message) => message.map_err(|e| e.to_string())?,
                    None => return Err("the queue's pull ended".into()),
                },
                _ = state.changed() => continue,
            };
            if !self
                .take_one(state, &message, epoch, Mode::Single, keep)
                .await?
            {
                return Ok(());
            }
        }
    }

    /// One message of a queue read one event at a time: skipped, or held until delivered or
    /// dead-lettered; then acknowledged. `false` when the mode changed under it (given back).
    async fn take_one(
        &self,
        state: &mut StateRx,
        message: &jetstream::Message,
        epoch: i64,
        mode: Mode,
        keep: Option<Duration>,
    ) -> Result<bool, String> {
        let Some((job, _)) = self.event_for_us(message, epoch)? else {
            ack(message).await?;
            return Ok(true);
        };
        match self
            .deliver_held(state, message, &job, mode, keep, None)
            .await
        {
            Held::Settled => ack(message).await.map(|()| true),
            Held::Abandoned => {
                give_back(message).await;
                Ok(false)
            }
        }
    }

    /// An endpoint that is no longer FIFO: delivers what routers routed to its queue before
    /// they saw the change (everything up to where they had read after a grace period),
    /// then removes the queue.
    async fn drain(&self, state: &mut StateRx) -> Result<(), String> {
        let js = &self.ctx.js;
        let Some(queue) = fifo_queue::existing(js, &self.key)
            .await
            .map_err(|e| e.to_string())?
        else {
            return state
                .wait_for(|s| s.config.is_fifo())
                .await
                .map(drop)
                .map_err(|_| "endpoint removed".to_string());
        };
        tracing::info!(endpoint = %self.key, "no longer FIFO: draining the endpoint's FIFO queue");
        let turned_back = tokio::time::timeout(DRAIN_GRACE, state.wait_for(|s| s.config.is_fifo()));
        if turned_back.await.is_ok() {
            return Ok(());
        }
        let (_, until) = fifo_queue::router_position(js, &self.key)
            .await
            .map_err(|e| e.to_string())?;
        let epoch = events_epoch(js).await?;
        let mut queue = queue;
        if fifo_queue::is_pinned(queue.cached_info()) {
            // Order no longer matters, and a partitioned queue would have to wait for the pin
            // of a reader that may be gone: one event at a time from its ack floor instead.
            let current = state.borrow().clone();
            let Some(info) = fifo_queue::info(js, &self.key)
                .await
                .map_err(|e| e.to_string())?
            else {
                return Ok(());
            };
            queue = fifo_queue::recreate(
                js,
                &self.key,
                &current.config,
                fifo_queue::resume_point(&info),
            )
            .await
            .map_err(|e| e.to_string())?;
        }
        let (mut messages, keep) = one_at_a_time(&queue).await?;
        loop {
            if state.borrow_and_update().config.is_fifo() {
                return Ok(());
            }
            let message = tokio::select! {
                next = messages.next() => match next {
                    Some(message) => message.map_err(|e| e.to_string())?,
                    None => return Err("the queue's pull ended".into()),
                },
                _ = tokio::time::sleep(PULL_EXPIRY) => {
                    let info = fifo_queue::info(js, &self.key).await.map_err(|e| e.to_string())?;
                    match info {
                        None => return Ok(()),
                        Some(i) if i.ack_floor.stream_sequence >= until
                            || (i.num_pending == 0 && i.num_ack_pending == 0) => break,
                        Some(_) => continue,
                    }
                }
                _ = state.changed() => continue,
            };
            if message.info().map(|i| i.stream_sequence).unwrap_or(0) > until {
                break;
            }
            if !self
                .take_one(state, &message, epoch, Mode::Unordered, keep)
                .await?
            {
                return Ok(());
            }
        }
        drop(messages);
        fifo_queue::remove(js, &self.key)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(endpoint = %self.key, until, "FIFO queue drained and removed");
        // FIFO again meanwhile: routers may have found the old queue and kept it; a new one
        // starts where the drain stopped (what follows got jobs, or belongs in the queue).
        let current = state.borrow().clone();
        if current.config.is_fifo() {
            fifo_queue::create(js, &self.key, &current.config, until + 1)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The job (and partition key) of `message` for this endpoint, or `None` when the queue
    /// skips it (see [`EventMessage::queued_job`]).
    fn event_for_us(
        &self,
        message: &jetstream::Message,
        epoch: i64,
    ) -> Result<Option<(Job, String)>, String> {
        let read = match EventMessage::read(message, epoch, &self.ctx.limits) {
            Ok(read) => read,
            // Not an event: the router terminates it.
            Err(UnreadableEvent::Subject(_)) => return Ok(None),
            Err(error) => return Err(error.to_string()),
        };
        let routes = self
            .routes
            .borrow()
            .clone()
            .ok_or("routes are not loaded")?;
        let Some(job) = read.queued_job(&routes, &self.ctx.limits, &self.key.name) else {
            return Ok(None);
        };
        let partition = routes
            .tenant(read.tenant)
            .and_then(|t| t.routes.endpoint(&self.key.name))
            .and_then(|e| e.partition_key_header.as_deref())
            .and_then(|header| read.event.header(header))
            .unwrap_or_default()
            .to_owned();
        Ok(Some((job, partition)))
    }

    /// Delivers the event `message` holds until it is delivered or dead-lettered (and
    /// recorded), retrying in this process. While it waits, `keep` (if any) is how often it
    /// tells JetStream it still holds it; `slots` bounds attempts across partitions.
    async fn deliver_held(
        &self,
        state: &mut StateRx,
        message: &jetstream::Message,
        job: &Job,
        mode: Mode,
        keep: Option<Duration>,
        slots: Option<&Semaphore>,
    ) -> Held {
        let mut holding = Holding::new(message, keep);
        let mut failing = FailingMark::new(&self.failing);
        let breaker = &self.shared.breaker;
        let mut number = message
            .info()
            .map(|i| u32::try_from(i.delivered.max(1)).unwrap_or(1))
            .unwrap_or(1);
        let mut not_before = Instant::now();
        loop {
            // Wait for the retry's time, the endpoint to be sendable and the breaker to admit.
            let (current, probe) = loop {
                let current = state.borrow_and_update().clone();
                if Mode::of(&current.config) != mode {
                    return Held::Abandoned;
                }
                let sendable = !current.config.paused
                    && !current.disabled
                    && current.resolved.is_ok()
                    && Instant::now() >= not_before;
                if sendable {
                    match breaker.with(|b| b.admit(Instant::now())) {
                        Admission::Send => break (current, false),
                        Admission::Probe => break (current, true),
                        Admission::HoldBack => {}
                    }
                }
                let wake = not_before.max(Instant::now()).min(Instant::now() + RECHECK);
                holding.wait(state, wake).await;
            };
            let Ok(resolved) = &current.resolved else {
                continue;
            };
            if let Some(limiter) = self.shared.limiter(&current.config) {
                while tokio::time::timeout(RECHECK, limiter.until_ready())
                    .await
                    .is_err()
                {
                    holding.touch().await;
                }
            }
            holding.touch().await;
            let slot = match slots {
                Some(slots) => slots.acquire().await.ok(),
                None => None,
            };
            let (record, delay) = outcome::attempt(
                &self.ctx,
                &self.key,
                &current.config,
                resolved,
                job,
                breaker,
                Try { number, probe },
            )
            .await;
            drop(slot);
            while let Err(error) = outcome::settle(&self.ctx, &self.key, job, &record).await {
                tracing::warn!(endpoint = %self.key, event_id = %job.event_id, %error, "could not record attempt; retrying");
                holding.wait(state, Instant::now() + RECHECK).await;
            }
            match delay {
                None => return Held::Settled,
                Some(delay) => {
                    failing.set();
                    not_before = Instant::now() + delay;
                    number += 1;
                }
            }
        }
    }

    /// Keeps `webhook_fifo_held_back` current while the queue is served.
    async fn publish_held_back(self: Arc<Self>, mut queue: Queue) {
        let mut tick = tokio::time::interval(GAUGE_INTERVAL);
        loop {
            tick.tick().await;
            let failing = self.failing.load(Ordering::Relaxed) > 0;
            let held_back = match queue.info().await {
                Ok(info) => fifo_queue::held_back(failing, info.num_pending, info.num_ack_pending),
                Err(_) => continue,
            };
            self.ctx
                .metrics
                .set_held_back(&self.key.tenant, &self.key.name, Some(held_back));
        }
    }
}

/// An event held while it waits: acknowledged as in progress often enough to stay ours.
struct Holding<'a> {
    message: &'a jetstream::Message,
    every: Option<Duration>,
    last: Instant,
}

impl<'a> Holding<'a> {
    fn new(message: &'a jetstream::Message, every: Option<Duration>) -> Self {
        Self {
            message,
            every,
            last: Instant::now(),
        }
    }

    /// Says "in progress" if it is due.
    async fn touch(&mut self) {
        if self.every.is_some_and(|every| self.last.elapsed() >= every) {
            let _ = self.message.ack_with(AckKind::Progress).await;
            self.last = Instant::now();
        }
    }

    /// Waits until `until` or a settings change, holding the event.
    async fn wait(&mut self, state: &mut StateRx, until: Instant) {
        self.touch().await;
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = state.changed() => {}
        }
        self.touch().await;
    }
}

/// Counts a head among the failing ones from its first failed attempt until it ends.
struct FailingMark<'a> {
    count: &'a AtomicUsize,
    set: bool,
}

impl<'a> FailingMark<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        Self { count, set: false }
    }

    fn set(&mut self) {
        if !self.set {
            self.count.fetch_add(1, Ordering::Relaxed);
            self.set = true;
        }
    }
}

impl Drop for FailingMark<'_> {
    fn drop(&mut self) {
        if self.set {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Pulls a queue that lets one event out at a time; with how often a held event must be said
/// to be in progress (a third of the queue's ack deadline).
async fn one_at_a_time(
    queue: &Queue,
) -> Result<(jetstream::consumer::pull::Stream, Option<Duration>), String> {
    let messages = queue
        .stream()
        .max_messages_per_batch(1)
        .expires(PULL_EXPIRY)
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    Ok((messages, Some(queue.cached_info().config.ack_wait / 3)))
}

async fn ack(message: &jetstream::Message) -> Result<(), String> {
    message.ack().await.map_err(|e| e.to_string())
}

/// Returns an event unacknowledged, for the next reader at once.
async fn give_back(message: &jetstream::Message) {
    let _ = message.ack_with(AckKind::Nak(None)).await;
}
