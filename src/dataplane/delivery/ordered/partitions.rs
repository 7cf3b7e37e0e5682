//! A partitioned FIFO queue (`partitionKeyHeader`): a window of events out at once to one
//! reader, the pinned client of the queue's priority group, which keeps one line per key
//! value: each line delivers its head before the next, `maxInFlight` attempts at once across
//! lines. Whoever becomes the pinned reader (or finds events out to a reader that is gone)
//! first replaces the queue with one starting after its ack floor, unless it made the queue
//! itself: events a previous reader held then come back before anything newer of their
//! partition (see [`crate::dataplane::fifo_queue`]).

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
};

use async_nats::jetstream;
use futures::StreamExt;
use tokio::{
    sync::{Semaphore, mpsc},
    task::JoinSet,
};

use super::{Held, Line, Mode, PULL_EXPIRY, StateRx, ack, give_back};
use crate::{
    dataplane::{
        fifo_queue::{self, PIN_GROUP, Queue},
        job::Job,
    },
    model::EndpointConfig,
};

impl Line {
    /// A window of events out at once, one line per partition. Only the pinned reader gets
    /// events; when it becomes the pinned one, it first replaces the queue with one starting
    /// after its ack floor (unless it made the queue itself), so what a previous reader held
    /// comes back before anything newer of its partition.
    pub(super) async fn partitioned(
        self: &Arc<Self>,
        state: &mut StateRx,
        queue: Queue,
        epoch: i64,
        created: &mut Option<jetstream::consumer::Info>,
    ) -> Result<(), String> {
        let started = state.borrow().config.clone();
        let ours = created
            .as_ref()
            .is_some_and(|c| c.created == queue.cached_info().created);
        let window = usize::try_from(fifo_queue::window(&started)).unwrap_or(1);
        let mut pulled = queue
            .stream()
            .group(PIN_GROUP)
            .max_messages_per_batch(window)
            .expires(PULL_EXPIRY)
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        // Pulled without pause, whatever the lines do: a reader that stops pulling loses the pin.
        let (tx, mut received) = mpsc::channel(window + 64);
        let mut reader = JoinSet::new();
        reader.spawn(async move {
            while let Some(message) = pulled.next().await {
                if tx.send(message).await.is_err() {
                    return;
                }
            }
        });
        let slots = Arc::new(Semaphore::new(started.max_in_flight as usize));
        let mut pin: Option<String> = None;
        // Every event out to this reader and not acknowledged, by stream sequence.
        let mut held: HashMap<u64, jetstream::Message> = HashMap::new();
        let mut waiting: HashMap<String, VecDeque<(jetstream::Message, Job)>> = HashMap::new();
        let mut busy: HashSet<String> = HashSet::new();
        let mut heads = JoinSet::new();
        // Unpinned, look whether events are out to nobody: their reader is gone, and the
        // server pins a new one only when there are new events to hand out.
        let mut orphans = tokio::time::interval(PULL_EXPIRY);
        let result = loop {
            let current = state.borrow_and_update().clone();
            let config = &current.config;
            if Mode::of(config) != Mode::Partitioned
                || config.partition_key_header != started.partition_key_header
                || config.max_in_flight != started.max_in_flight
                || config.timeout != started.timeout
            {
                break Ok(());
            }
            tokio::select! {
                message = received.recv() => {
                    let message = match message {
                        Some(Ok(message)) => message,
                        Some(Err(error)) => break Err(error.to_string()),
                        None => break Err("the queue's pull ended".into()),
                    };
                    let pin_id = message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(async_nats::header::NATS_PIN_ID))
                        .map(|v| v.as_str().to_owned());
                    if let Some(id) = pin_id
                        && pin.as_deref() != Some(id.as_str())
                    {
                        let first = pin.replace(id).is_none();
                        if !(first && ours) {
                            break self.take_over(&started, created).await;
                        }
                    }
                    let Ok(sequence) = message.info().map(|i| i.stream_sequence) else {
                        break Err("a message of the queue without JetStream metadata".into());
                    };
                    if held.contains_key(&sequence) {
                        // Out so long it was sent again: the line holding it carries on.
                        continue;
                    }
                    let (job, partition) = match self.event_for_us(&message, epoch) {
                        Ok(Some(ours)) => ours,
                        Ok(None) => match ack(&message).await {
                            Ok(()) => continue,
                            Err(error) => break Err(error),
                        },
                        Err(error) => break Err(error),
                    };
                    held.insert(sequence, message.clone());
                    if busy.insert(partition.clone()) {
                        heads.spawn(self.clone().head(state.clone(), partition, message, job, slots.clone()));
                    } else {
                        waiting.entry(partition).or_default().push_back((message, job));
                    }
                }
                Some(done) = heads.join_next(), if !heads.is_empty() => {
                    let (partition, sequence, ended) = match done {
                        Ok(done) => done,
                        Err(error) => break Err(error.to_string()),
                    };
                    held.remove(&sequence);
                    if matches!(ended, Held::Abandoned) {
                        break Ok(());
                    }
                    match waiting.get_mut(&partition).and_then(VecDeque::pop_front) {
                        Some((message, job)) => {
                            heads.spawn(self.clone().head(state.clone(), partition, message, job, slots.clone()));
                        }
                        None => {
                            waiting.remove(&partition);
                            busy.remove(&partition);
                        }
                    }
                }
                _ = orphans.tick(), if pin.is_none() => match self.orphaned().await {
                    Ok(true) => break self.take_over(&started, created).await,
                    Ok(false) => {}
                    Err(error) => break Err(error),
                },
                _ = state.changed() => {}
            }
        };
        // Whatever is still out comes back at once, for whoever reads next.
        heads.abort_all();
        for message in held.values() {
            give_back(message).await;
        }
        result
    }

    /// This reader became the pinned one of a queue another reader may have left events
    /// unacknowledged in: replaces the queue with one that starts after its ack floor.
    async fn take_over(
        &self,
        config: &EndpointConfig,
        created: &mut Option<jetstream::consumer::Info>,
    ) -> Result<(), String> {
        let js = &self.ctx.js;
        let Some(info) = fifo_queue::info(js, &self.key)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        let start = fifo_queue::resume_point(&info);
        let mut queue = fifo_queue::recreate(js, &self.key, config, start)
            .await
            .map_err(|e| e.to_string())?;
        let info = queue.info().await.map_err(|e| e.to_string())?;
        tracing::info!(endpoint = %self.key, start, "took over the FIFO queue; replaying it from after its ack floor");
        *created = Some(info.clone());
        Ok(())
    }

    /// Whether the partitioned queue has events out while no reader holds the pin.
    async fn orphaned(&self) -> Result<bool, String> {
        let info = fifo_queue::info(&self.ctx.js, &self.key)
            .await
            .map_err(|e| e.to_string())?;
        Ok(info.is_some_and(|info| {
            let pinned = info.priority_groups.iter().any(|g| {
                g.pinned_client_id
                    .as_deref()
                    .is_some_and(|id| !id.is_empty())
            });
            !pinned && info.num_ack_pending > 0
        }))
    }

    /// The line of one partition: its head delivered, for the dispatcher to send the next.
    async fn head(
        self: Arc<Self>,
        mut state: StateRx,
        partition: String,
        message: jetstream::Message,
        job: Job,
        slots: Arc<Semaphore>,
    ) -> (String, u64, Held) {
        let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
        let held = self
            .deliver_held(
                &mut state,
                &message,
                &job,
                Mode::Partitioned,
                None,
                Some(&slots),
            )
            .await;
        if matches!(held, Held::Settled) && ack(&message).await.is_err() {
            tracing::warn!(endpoint = %self.key, event_id = %job.event_id, "acknowledgement lost; the event may be delivered again");
        }
        (partition, sequence, held)
    }
}
