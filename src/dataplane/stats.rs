//! Endpoint counters: folded from the attempt log into the `webhook-stats` bucket (the
//! [`StatsFolder`]), and read back by anyone who shows them (the [`StatsView`]).
//!
//! Counting is exact across crashes: each bucket value carries the attempt-log sequence it has
//! folded up to, and a redelivered record at or below it is skipped.
//!
//! The same values carry the auto-disable state (`failingSince`, `disabledTime`): decided once
//! by the folder, shared by every delivery replica through the bucket, and kept across restarts.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, RwLock},
    time::Duration,
};

use async_nats::jetstream::{self, AckKind, consumer::pull, kv};
use futures::StreamExt;
use jiff::Timestamp;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    attempt_log::{AttemptRecord, AttemptResult, Outcome},
    topology::{
        ATTEMPTS_STREAM, STATS_CONSUMER, endpoint_from_attempt_subject, endpoint_from_stats_key,
        stats_key,
    },
};
use crate::model::{EndpointKey, EndpointStats, LastFailure};

/// Applies one attempt record to the counters; `auto_disable_after` is the auto-disable period
/// (`None`: never).
pub fn fold(
    stats: &mut EndpointStats,
    record: &AttemptRecord,
    auto_disable_after: Option<Duration>,
) {
    if record.attempt > 0 {
        let succeeded = record.result == AttemptResult::Success;
        stats.note_attempt(succeeded, record.time, auto_disable_after);
        if succeeded {
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

/// The auto-disable period, for the processes that run the stats folder (local, controller).
#[derive(Debug, Clone, clap::Args)]
pub struct AutoDisableArgs {
    /// Auto-disable an endpoint that has failed without a single success for this long: it
    /// stops delivering (its events stay queued) until re-enabled (Go duration; 0s: never).
    #[arg(
        long,
        env = "AUTO_DISABLE_AFTER",
        default_value = "120h",
        value_parser = crate::pipeline::parse_duration
    )]
    pub auto_disable_after: Duration,
}

impl AutoDisableArgs {
    /// The period, `None` when auto-disable is off.
    pub fn period(&self) -> Option<Duration> {
        (!self.auto_disable_after.is_zero()).then_some(self.auto_disable_after)
    }
}

/// Folds the attempt log into the stats bucket. Exactly one folder may run per NATS deployment
/// (local mode runs it in-process; in a cluster the controller's leader does).
pub struct StatsFolder {
    js: jetstream::Context,
    store: kv::Store,
    cache: HashMap<String, (EndpointStats, u64)>,
    auto_disable_after: Option<Duration>,
}

const FOLD_BATCH: usize = 1000;

impl StatsFolder {
    pub fn new(js: jetstream::Context, store: kv::Store) -> Self {
        Self {
            js,
            store,
            cache: HashMap::new(),
            auto_disable_after: None,
        }
    }

    /// Auto-disables endpoints that fail without a single success for `after` (`None`: never).
    pub fn auto_disable_after(mut self, after: Option<Duration>) -> Self {
        self.auto_disable_after = after;
        self
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
            let was_disabled = stats.is_disabled();
            for (sequence, record) in records {
                if *sequence > stats.applied_sequence {
                    fold(&mut stats, record, self.auto_disable_after);
                    stats.applied_sequence = *sequence;
                }
            }
            let value = serde_json::to_vec(&stats).map_err(|e| e.to_string())?;
            match self.store.update(key, value.into(), revision).await {
                Ok(revision) => {
                    if stats.is_disabled() && !was_disabled {
                        tracing::warn!(endpoint = key, failing_since = ?stats.failing_since, "endpoint auto-disabled: no successful delivery for the auto-disable period; its events stay queued until it is re-enabled");
                    }
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

/// Why re-enabling an endpoint failed.
#[derive(Debug, thiserror::Error)]
#[error("re-enabling endpoint {endpoint}: {message}")]
pub struct EnableError {
    pub endpoint: EndpointKey,
    pub message: String,
}

/// Re-enables an auto-disabled endpoint in the stats bucket (compare-and-set, so it neither
/// loses nor repeats what the folder writes meanwhile). Returns whether it was disabled.
pub async fn enable(store: &kv::Store, endpoint: &EndpointKey) -> Result<bool, EnableError> {
    let error = |message: String| EnableError {
        endpoint: endpoint.clone(),
        message,
    };
    let key = stats_key(endpoint);
    loop {
        let Some(entry) = store.entry(&key).await.map_err(|e| error(e.to_string()))? else {
            return Ok(false);
        };
        if entry.operation != kv::Operation::Put {
            return Ok(false);
        }
        let mut stats: EndpointStats =
            serde_json::from_slice(&entry.value).map_err(|e| error(e.to_string()))?;
        let was_disabled = stats.enable(Timestamp::now());
        if !was_disabled && stats.failing_since.is_none() {
            return Ok(false);
        }
        let value = serde_json::to_vec(&stats).map_err(|e| error(e.to_string()))?;
        match store.update(&key, value.into(), entry.revision).await {
            Ok(_) => return Ok(was_disabled),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
            Err(e) => return Err(error(e.to_string())),
        }
    }
}

/// The auto-disabled endpoints, as delivery workers follow them; `None` until the bucket's
/// initial state is loaded, so nobody delivers to an endpoint not yet known to be disabled.
pub type DisabledRx = watch::Receiver<Option<Arc<BTreeSet<EndpointKey>>>>;

/// Read side: the latest counters of every endpoint, kept current by a bucket watch.
#[derive(Clone)]
pub struct StatsView {
    inner: Arc<RwLock<HashMap<EndpointKey, EndpointStats>>>,
    disabled: Arc<watch::Sender<Option<Arc<BTreeSet<EndpointKey>>>>>,
}

impl Default for StatsView {
    /// A view that follows no bucket (tests): loaded, and empty until [`StatsView::insert`].
    fn default() -> Self {
        Self::with_disabled(Some(Arc::default()))
    }
}

impl StatsView {
    fn with_disabled(disabled: Option<Arc<BTreeSet<EndpointKey>>>) -> Self {
        Self {
            inner: Arc::default(),
            disabled: Arc::new(watch::channel(disabled).0),
        }
    }

    pub fn start(store: kv::Store, cancel: CancellationToken) -> Self {
        let view = Self::with_disabled(None);
        let this = view.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    error = follow(&store, &this) => tracing::warn!(%error, "stats watch interrupted; retrying"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        view
    }

    /// The auto-disabled endpoints; changes only when one is disabled or re-enabled.
    pub fn disabled(&self) -> DisabledRx {
        self.disabled.subscribe()
    }

    /// Publishes the disabled set from the counters once the initial state is loaded.
    fn mark_loaded(&self) {
        if self.disabled.borrow().is_some() {
            return;
        }
        let set: BTreeSet<EndpointKey> = self
            .inner
            .read()
            .map(|map| {
                map.iter()
                    .filter(|(_, stats)| stats.is_disabled())
                    .map(|(key, _)| key.clone())
                    .collect()
            })
            .unwrap_or_default();
        self.disabled.send_replace(Some(Arc::new(set)));
    }

    fn note_disabled(&self, key: &EndpointKey, disabled: bool) {
        self.disabled.send_if_modified(|set| {
            // Before the initial load, the set is computed whole by `mark_loaded`.
            let Some(set) = set else { return false };
            if set.contains(key) == disabled {
                return false;
            }
            let mut next = (**set).clone();
            if disabled {
                next.insert(key.clone());
            } else {
                next.remove(key);
            }
            *set = Arc::new(next);
            true
        });
    }

    /// Sets counters directly: for tests of code that reads the view.
    pub fn insert(&self, key: EndpointKey, stats: EndpointStats) {
        self.note_disabled(&key, stats.is_disabled());
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

async fn follow(store: &kv::Store, view: &StatsView) -> String {
    let empty = match store.status().await {
        Ok(status) => status.values() == 0,
        Err(error) => return error.to_string(),
    };
    // With history: the current value of every key first, then changes.
    let mut entries = match store.watch_with_history(">").await {
        Ok(entries) => entries,
        Err(error) => return error.to_string(),
    };
    if empty {
        view.mark_loaded();
    }
    while let Some(entry) = entries.next().await {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => return error.to_string(),
        };
        if let Some(key) = endpoint_from_stats_key(&entry.key)
            && let Err(error) = apply_entry(view, key, &entry)
        {
            return error;
        }
        if entry.seen_current || entry.delta == 0 {
            view.mark_loaded();
        }
    }
    "watch ended".into()
}

fn apply_entry(view: &StatsView, key: EndpointKey, entry: &kv::Entry) -> Result<(), String> {
    let stats = match entry.operation {
        kv::Operation::Put => match serde_json::from_slice::<EndpointStats>(&entry.value) {
            Ok(stats) => Some(stats),
            Err(error) => {
                tracing::error!(key = %entry.key, %error, "unreadable endpoint stats");
                return Ok(());
            }
        },
        kv::Operation::Delete | kv::Operation::Purge => None,
    };
    view.note_disabled(&key, stats.as_ref().is_some_and(EndpointStats::is_disabled));
    let mut map = view.inner.write().map_err(|_| "stats map poisoned")?;
    match stats {
        Some(stats) => map.insert(key, stats),
        None => map.remove(&key),
    };
    Ok(())
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
            None,
        );
        fold(&mut stats, &record(AttemptResult::Http5xx, 2, retry), None);
        assert_eq!((stats.failed_attempts, stats.consecutive_failures), (2, 2));
        fold(
            &mut stats,
            &record(AttemptResult::Success, 3, Outcome::Delivered),
            None,
        );
        assert_eq!((stats.delivered, stats.consecutive_failures), (1, 0));
        fold(
            &mut stats,
            &record(AttemptResult::Rejected, 0, Outcome::DeadLettered),
            None,
        );
        assert_eq!((stats.dead_lettered, stats.failed_attempts), (1, 2));
        assert_eq!(
            stats.last_failure.map(|f| f.reason),
            Some("HTTP500".to_string())
        );
    }
}
