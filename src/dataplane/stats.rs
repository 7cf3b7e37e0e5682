//! Endpoint counters: folded from the attempt log into the `webhook-stats` bucket (the
//! [`StatsFolder`]), and read back by anyone who shows them (the [`StatsView`]).
//!
//! Counting is exact across crashes: each bucket value carries the attempt-log sequence it has
//! folded up to, and a redelivered record at or below it is skipped.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use async_nats::jetstream::{self, AckKind, consumer::pull, kv};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{
    attempt_log::{AttemptRecord, AttemptResult, Outcome},
    topology::{
        ATTEMPTS_STREAM, STATS_CONSUMER, endpoint_from_attempt_subject, endpoint_from_stats_key,
        stats_key,
    },
};
use crate::model::{EndpointKey, EndpointStats, LastFailure};

/// Applies one attempt record to the counters.
pub fn fold(stats: &mut EndpointStats, record: &AttemptRecord) {
    if record.attempt > 0 {
        if record.result == AttemptResult::Success {
            stats.delivered += 1;
            stats.consecutive_failures = 0;
            stats.last_success_time = Some(record.time);
        } else {
            stats.failed_attempts += 1;
            stats.consecutive_failures += 1;
        }
    }
    if record.result != AttemptResult::Success {
        stats.last_failure_time = Some(record.time);
        stats.last_failure = Some(LastFailure {
            reason: record
                .reason
                .clone()
                .unwrap_or_else(|| record.result.as_label().into()),
            status_code: record.status_code,
            message: record.error.clone().unwrap_or_default(),
            event_id: record.event_id.clone(),
            time: record.time,
        });
    }
    if record.outcome == Outcome::DeadLettered {
        stats.dead_lettered += 1;
    }
}

/// Folds the attempt log into the stats bucket. Exactly one folder may run per NATS deployment
/// (local mode runs it in-process; in a cluster the controller's leader does).
pub struct StatsFolder {
    js: jetstream::Context,
    store: kv::Store,
    cache: HashMap<String, (EndpointStats, u64)>,
}

const FOLD_BATCH: usize = 1000;

impl StatsFolder {
    pub fn new(js: jetstream::Context, store: kv::Store) -> Self {
        Self {
            js,
            store,
            cache: HashMap::new(),
        }
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                result = self.fold_forever() => {
                    if let Err(error) = result {
                        tracing::warn!(%error, "stats folder interrupted; retrying");
                        self.cache.clear();
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn fold_forever(&mut self) -> Result<(), String> {
        let stream = self
            .js
            .get_stream(ATTEMPTS_STREAM)
            .await
            .map_err(|e| e.to_string())?;
        let consumer = stream
            .get_or_create_consumer(
                STATS_CONSUMER,
                pull::Config {
                    durable_name: Some(STATS_CONSUMER.into()),
                    ack_policy: jetstream::consumer::AckPolicy::All,
                    ack_wait: Duration::from_secs(10),
                    max_ack_pending: (FOLD_BATCH * 2) as i64,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let mut batch = consumer
                .batch()
                .max_messages(FOLD_BATCH)
                .expires(Duration::from_millis(250))
                .messages()
                .await
                .map_err(|e| e.to_string())?;
            let mut pending: HashMap<String, Vec<(u64, AttemptRecord)>> = HashMap::new();
            let mut last = None;
            while let Some(message) = batch.next().await {
                let message = message.map_err(|e| e.to_string())?;
                let info = message.info().map_err(|e| e.to_string())?;
                let sequence = info.stream_sequence;
                match (
                    endpoint_from_attempt_subject(&message.subject),
                    serde_json::from_slice(&message.payload),
                ) {
                    (Some(key), Ok(record)) => pending
                        .entry(stats_key(&key))
                        .or_default()
                        .push((sequence, record)),
                    _ => {
                        tracing::error!(subject = %message.subject, sequence, "skipping unreadable attempt record")
                    }
                }
                last = Some(message);
            }
            let Some(last) = last else { continue };
            for (key, records) in pending {
                self.apply(&key, &records).await?;
            }
            last.ack_with(AckKind::Ack)
                .await
                .map_err(|e| e.to_string())?;
        }
    }

    async fn apply(&mut self, key: &str, records: &[(u64, AttemptRecord)]) -> Result<(), String> {
        loop {
            let (mut stats, revision) = match self.cache.remove(key) {
                Some(cached) => cached,
                None => match self.store.entry(key).await.map_err(|e| e.to_string())? {
                    Some(entry) if entry.operation == kv::Operation::Put => (
                        serde_json::from_slice(&entry.value).unwrap_or_default(),
                        entry.revision,
                    ),
                    Some(entry) => (EndpointStats::default(), entry.revision),
                    None => (EndpointStats::default(), 0),
                },
            };
            for (sequence, record) in records {
                if *sequence > stats.applied_sequence {
                    fold(&mut stats, record);
                    stats.applied_sequence = *sequence;
                }
            }
            let value = serde_json::to_vec(&stats).map_err(|e| e.to_string())?;
            match self.store.update(key, value.into(), revision).await {
                Ok(revision) => {
                    self.cache.insert(key.to_owned(), (stats, revision));
                    return Ok(());
                }
                // Someone else wrote (e.g. a reset); reload and fold again, sequences prevent double counting.
                Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(error) => return Err(error.to_string()),
            }
        }
    }
}

/// Read side: the latest counters of every endpoint, kept current by a bucket watch.
#[derive(Clone, Default)]
pub struct StatsView {
    inner: Arc<RwLock<HashMap<EndpointKey, EndpointStats>>>,
}

impl StatsView {
    pub fn start(store: kv::Store, cancel: CancellationToken) -> Self {
        let view = Self::default();
        let inner = view.inner.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    error = follow(&store, &inner) => tracing::warn!(%error, "stats watch interrupted; retrying"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        view
    }

    /// Sets counters directly: for tests of code that reads the view.
    pub fn insert(&self, key: EndpointKey, stats: EndpointStats) {
        if let Ok(mut map) = self.inner.write() {
            map.insert(key, stats);
        }
    }

    pub fn get(&self, key: &EndpointKey) -> EndpointStats {
        self.inner
            .read()
            .ok()
            .and_then(|m| m.get(key).cloned())
            .unwrap_or_default()
    }
}

async fn follow(store: &kv::Store, inner: &RwLock<HashMap<EndpointKey, EndpointStats>>) -> String {
    // With history: the current value of every key first, then changes.
    let mut entries = match store.watch_with_history(">").await {
        Ok(entries) => entries,
        Err(error) => return error.to_string(),
    };
    while let Some(entry) = entries.next().await {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => return error.to_string(),
        };
        let Some(key) = endpoint_from_stats_key(&entry.key) else {
            continue;
        };
        let Ok(mut map) = inner.write() else {
            return "stats map poisoned".into();
        };
        match entry.operation {
            kv::Operation::Put => match serde_json::from_slice(&entry.value) {
                Ok(stats) => {
                    map.insert(key, stats);
                }
                Err(error) => {
                    tracing::error!(key = %entry.key, %error, "unreadable endpoint stats")
                }
            },
            kv::Operation::Delete | kv::Operation::Purge => {
                map.remove(&key);
            }
        }
    }
    "watch ended".into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    fn record(result: AttemptResult, attempt: u32, outcome: Outcome) -> AttemptRecord {
        AttemptRecord {
            time: Timestamp::UNIX_EPOCH,
            event_id: "e".into(),
            event_type: "t".into(),
            attempt,
            result,
            reason: (result != AttemptResult::Success).then(|| "HTTP500".into()),
            status_code: Some(500),
            duration_ms: 1,
            error: None,
            response_body: None,
            outcome,
        }
    }

    #[test]
    fn folding_counts_attempts_failures_and_dead_letters() {
        let mut stats = EndpointStats::default();
        let retry = Outcome::Retrying {
            next_attempt_time: Timestamp::UNIX_EPOCH,
        };
        fold(
            &mut stats,
            &record(AttemptResult::Http5xx, 1, retry.clone()),
        );
        fold(&mut stats, &record(AttemptResult::Http5xx, 2, retry));
        assert_eq!((stats.failed_attempts, stats.consecutive_failures), (2, 2));
        fold(
            &mut stats,
            &record(AttemptResult::Success, 3, Outcome::Delivered),
        );
        assert_eq!((stats.delivered, stats.consecutive_failures), (1, 0));
        fold(
            &mut stats,
            &record(AttemptResult::Rejected, 0, Outcome::DeadLettered),
        );
        assert_eq!((stats.dead_lettered, stats.failed_attempts), (1, 2));
        assert_eq!(
            stats.last_failure.map(|f| f.reason),
            Some("HTTP500".to_string())
        );
    }
}
