//! The event publisher: pipelined JetStream publishes (acks awaited in the background) with
//! a bound on publishes awaiting their ack; paced at a fixed rate, or as fast as the pipeline
//! absorbs.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use tokio::sync::Semaphore;

use super::{
    pacing::{Pacer, Pacing},
    world::{ENDPOINTS, TENANT, event_type, now_ns},
};

/// A paced run gives up on its schedule this long after it should have ended.
const PACED_GRACE: Duration = Duration::from_secs(10);

/// Padding so the payload looks like a small real event (~120 bytes in all).
const PAD: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub struct Publisher {
    js: jetstream::Context,
    permits: Arc<Semaphore>,
    max_in_flight: u32,
    subjects: Vec<async_nats::Subject>,
    sent: u64,
    /// Counts at the last [`Publisher::reset`] (after warm-up).
    base: (u64, u64, u64),
    acked: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    first_error: Arc<Mutex<Option<String>>>,
}

impl Publisher {
    pub async fn connect(url: &str, max_in_flight: u32) -> anyhow::Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .name("pipeline-bench")
            .connect(url)
            .await?;
        let js = jetstream::new(client);
        let subjects = (0..ENDPOINTS)
            .map(|i| format!("events.{TENANT}.{}", event_type(i)).into())
            .collect();
        Ok(Self {
            js,
            permits: Arc::new(Semaphore::new(max_in_flight as usize)),
            max_in_flight,
            subjects,
            sent: 0,
            base: (0, 0, 0),
            acked: Arc::new(AtomicU64::new(0)),
            failed: Arc::new(AtomicU64::new(0)),
            first_error: Arc::new(Mutex::new(None)),
        })
    }

    /// Publishes event `seq` to endpoint `seq % ENDPOINTS` (round robin), stamped with the
    /// current time. Waits only when `max_in_flight` publishes await their ack.
    pub async fn publish(&mut self, seq: u64) {
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        let subject = self.subjects[(seq % ENDPOINTS as u64) as usize].clone();
        let payload = Bytes::from(format!(
            r#"{{"seq":{seq},"sent_ns":{},"data":"{PAD}"}}"#,
            now_ns()
        ));
        let publish = PublishMessage::build()
            .payload(payload)
            .message_id(format!("evt-{seq}"));
        self.sent += 1;
        let (acked, failed, first_error) = (
            self.acked.clone(),
            self.failed.clone(),
            self.first_error.clone(),
        );
        let note = move |error: String| {
            failed.fetch_add(1, Relaxed);
            first_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(error);
        };
        match self.js.send_publish(subject, publish).await {
            Ok(ack) => {
                tokio::spawn(async move {
                    match ack.await {
                        Ok(_) => {
                            acked.fetch_add(1, Relaxed);
                        }
                        Err(error) => note(format!("publish ack: {error}")),
                    }
                    drop(permit);
                });
            }
            Err(error) => note(format!("publish: {error}")),
        }
    }

    /// Publishes `rate` events per second (sequence numbers from 0) for `seconds`, open loop:
    /// on schedule whatever the pipeline does, catching up in a burst when it fell behind (the
    /// result counts how often). `progress` gets the whole seconds elapsed and events sent.
    pub async fn paced(
        &mut self,
        rate: u64,
        seconds: u64,
        mut progress: impl FnMut(u64, u64),
    ) -> Pacing {
        let mut pacer = Pacer::new(rate, seconds);
        let started = Instant::now();
        let give_up = Duration::from_secs(seconds) + PACED_GRACE;
        let mut seq = 0u64;
        while !pacer.finished() && started.elapsed() < give_up {
            for _ in 0..pacer.due(started.elapsed()) {
                self.publish(seq).await;
                seq += 1;
            }
            progress(started.elapsed().as_secs(), seq);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        pacer.finish(started.elapsed().as_secs_f64())
    }

    /// Publishes for `window` as fast as the pipeline absorbs: pauses while `max_backlog`
    /// events are published but not yet `delivered()`. Returns the events sent.
    pub async fn saturate(
        &mut self,
        window: Duration,
        max_backlog: u64,
        delivered: impl Fn() -> u64,
        mut progress: impl FnMut(u64, u64),
    ) -> u64 {
        let started = Instant::now();
        let mut seq = 0u64;
        while started.elapsed() < window {
            if seq.saturating_sub(delivered()) >= max_backlog {
                tokio::time::sleep(Duration::from_millis(1)).await;
            } else {
                self.publish(seq).await;
                seq += 1;
            }
            progress(started.elapsed().as_secs(), seq);
        }
        seq
    }

    /// Counts start from zero again (call once earlier publishes have settled).
    pub fn reset(&mut self) {
        self.base = (
            self.sent,
            self.acked.load(Relaxed),
            self.failed.load(Relaxed),
        );
    }

    pub fn sent(&self) -> u64 {
        self.sent - self.base.0
    }

    pub fn acked(&self) -> u64 {
        self.acked.load(Relaxed) - self.base.1
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Relaxed) - self.base.2
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits (at most `timeout`) until every publish has its ack or its error.
    pub async fn settle(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.permits.acquire_many(self.max_in_flight))
            .await
            .is_ok_and(|p| p.is_ok())
    }
}
