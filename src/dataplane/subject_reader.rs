//! Reading one subject of a shared stream (an endpoint's attempts or dead letters) without
//! scanning the stream: a short-lived consumer filtered to the subject reads forward from a time
//! or sequence up to a sequence, and [`newest`] walks back from the end in widening time windows.
//!
//! JetStream has no reverse iteration; it does find the first message at or after a time, and a
//! filtered consumer skips other subjects on the server. So the newest N of a subject cost about
//! N messages read, plus one consumer per window.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
    stream::{DirectGetErrorKind, Stream},
};
use futures::{StreamExt, TryStreamExt};
use jiff::{SignedDuration, Timestamp};

#[derive(Debug, thiserror::Error)]
#[error("reading {subject}: {message}")]
pub struct ReadError {
    pub subject: String,
    pub message: String,
}

fn read_error(subject: &str, error: impl std::fmt::Display) -> ReadError {
    ReadError {
        subject: subject.to_owned(),
        message: error.to_string(),
    }
}

/// Where a forward read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The subject's first message at or after this time.
    Time(Timestamp),
    Sequence(u64),
}

/// What a read should fetch per request.
#[derive(Debug, Clone, Copy)]
pub struct Fetch {
    pub batch: usize,
    /// Headers only (dead letters listed without their payloads).
    pub headers_only: bool,
}

/// A forward read of one subject, from a start up to (excluding) a sequence.
pub struct ForwardRead {
    stream: Stream,
    subject: String,
    consumer: PullConsumer,
    upper: u64,
    fetch: Fetch,
    finished: bool,
}

impl ForwardRead {
    pub async fn open(
        stream: &Stream,
        subject: &str,
        start: Start,
        upper: u64,
        fetch: Fetch,
    ) -> Result<Self, ReadError> {
        let deliver_policy = match start {
            Start::Time(time) => DeliverPolicy::ByStartTime {
                start_time: async_nats::datetime::from_nanos(time.as_nanosecond())
                    .map_err(|e| read_error(subject, e))?,
            },
            Start::Sequence(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
        };
        let consumer = stream
            .create_consumer(pull::Config {
                deliver_policy,
                ack_policy: AckPolicy::None,
                filter_subject: subject.to_owned(),
                headers_only: fetch.headers_only,
                memory_storage: true,
                num_replicas: 1,
                // Removed by the server if this process goes away before closing it.
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(|e| read_error(subject, e))?;
        Ok(Self {
            stream: stream.clone(),
            subject: subject.to_owned(),
            consumer,
            upper,
            fetch,
            finished: false,
        })
    }

    /// Messages of the subject from the start to the end of the stream when the read opened.
    pub fn pending(&self) -> u64 {
        self.consumer.cached_info().num_pending
    }

    /// The next messages in stream order; empty once the range is read.
    pub async fn next_batch(&mut self) -> Result<Vec<jetstream::Message>, ReadError> {
        if self.finished {
            return Ok(Vec::new());
        }
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(self.fetch.batch)
            .messages()
            .await
            .map_err(|e| read_error(&self.subject, e))?;
        let mut messages = Vec::new();
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| read_error(&self.subject, e))?;
            let info = message.info().map_err(|e| read_error(&self.subject, e))?;
            if info.stream_sequence >= self.upper {
                self.finished = true;
                break;
            }
            let last = info.pending == 0;
            messages.push(message);
            if last {
                self.finished = true;
                break;
            }
        }
        if messages.is_empty() {
            self.finished = true;
        }
        Ok(messages)
    }

    /// Deletes the consumer (in the background: nobody waits for it).
    pub fn close(self) {
        let name = self.consumer.cached_info().name.clone();
        let stream = self.stream;
        tokio::spawn(async move {
            let _ = stream.delete_consumer(&name).await;
        });
    }
}

/// Stream sequence and server time of a message.
pub fn position(message: &jetstream::Message) -> Option<(u64, Timestamp)> {
    let info = message.info().ok()?;
    let time = Timestamp::from_nanosecond(info.published.unix_timestamp_nanos()).ok()?;
    Some((info.stream_sequence, time))
}

/// First and last message of a subject: `(sequence, time)` each; `None` when it has none.
pub async fn bounds(
    stream: &Stream,
    subject: &str,
) -> Result<Option<((u64, Timestamp), (u64, Timestamp))>, ReadError> {
    let last = match stream.direct_get_last_for_subject(subject).await {
        Ok(message) => message,
        Err(error) if matches!(error.kind(), DirectGetErrorKind::NotFound) => return Ok(None),
        Err(error) => return Err(read_error(subject, error)),
    };
    let first = match stream.direct_get_first_for_subject(subject).await {
        Ok(message) => message,
        Err(error) if matches!(error.kind(), DirectGetErrorKind::NotFound) => return Ok(None),
        Err(error) => return Err(read_error(subject, error)),
    };
    let time = |t: async_nats::datetime::DateTime| {
        Timestamp::from_nanosecond(t.unix_timestamp_nanos()).unwrap_or(Timestamp::UNIX_EPOCH)
    };
    Ok(Some((
        (first.sequence, time(first.time)),
        (last.sequence, time(last.time)),
    )))
}

/// What [`newest`] looks for.
#[derive(Debug, Clone, Copy)]
pub struct NewestQuery {
    pub limit: usize,
    /// Nothing older than this (server time) is read.
    pub not_before: Option<Timestamp>,
    /// At most this many messages are read.
    pub budget: u64,
    pub fetch: Fetch,
}

/// The result of [`newest`].
#[derive(Debug)]
pub struct Newest<T> {
    /// Newest first.
    pub items: Vec<T>,
    /// False when the budget ran out before `limit` items were found or the start was reached.
    pub complete: bool,
    /// The oldest sequence read: everything from there on was seen.
    pub scanned_from: Option<u64>,
}

/// Smallest window; windows shrink to it when one would exceed the budget.
const MIN_WINDOW: SignedDuration = SignedDuration::from_secs(1);

/// The newest `query.limit` messages of `subject` that `pick` turns into an item, newest first.
///
/// Windows `[end - width, end)` are read forward, each up to where the previous one began, and
/// prepended; the width starts from the subject's average rate and doubles. A window that would
/// take more than the remaining budget is narrowed first, and the search stops (incomplete) when
/// even the narrowest one would.
pub async fn newest<T>(
    stream: &Stream,
    subject: &str,
    query: &NewestQuery,
    mut pick: impl FnMut(&jetstream::Message) -> Option<T>,
) -> Result<Newest<T>, ReadError> {
    let mut result = Newest {
        items: Vec::new(),
        complete: true,
        scanned_from: None,
    };
    let Some(((first_seq, first_time), (last_seq, last_time))) = bounds(stream, subject).await?
    else {
        return Ok(result);
    };
    let floor = query.not_before.map_or(first_time, |t| t.max(first_time));
    let mut upper = last_seq + 1;
    let mut end = last_time;
    let mut width = initial_width(stream, subject, query.limit, first_time, last_time).await;
    let mut scanned: u64 = 0;
    while result.items.len() < query.limit {
        if end < floor {
            break;
        }
        let start_time = end.checked_sub(width).unwrap_or(Timestamp::MIN);
        let reaches_floor = start_time <= floor;
        let start = match (reaches_floor, query.not_before) {
            (true, Some(t)) if t > first_time => Start::Time(t),
            (true, _) => Start::Sequence(first_seq),
            (false, _) => Start::Time(start_time),
        };
        let mut read = ForwardRead::open(stream, subject, start, upper, query.fetch).await?;
        // Everything from the start on, minus what later windows already read: this window,
        // give or take messages that arrived meanwhile.
        let estimate = read.pending().saturating_sub(scanned);
        if scanned + estimate > query.budget {
            read.close();
            if width > MIN_WINDOW {
                width = (width / 4).max(MIN_WINDOW);
                continue;
            }
            result.complete = false;
            break;
        }
        let mut window = Vec::new();
        let mut window_start = None;
        loop {
            let batch = read.next_batch().await;
            let batch = match batch {
                Ok(batch) => batch,
                Err(error) => {
                    read.close();
                    return Err(error);
                }
            };
            if batch.is_empty() {
                break;
            }
            for message in &batch {
                if window_start.is_none() {
                    window_start = position(message).map(|(sequence, _)| sequence);
                }
                scanned += 1;
                if let Some(item) = pick(message) {
                    window.push(item);
                }
            }
        }
        read.close();
        result.items.extend(window.into_iter().rev());
        if let Some(sequence) = window_start {
            upper = sequence;
            result.scanned_from = Some(sequence);
        }
        if reaches_floor {
            break;
        }
        end = start_time;
        width *= 2;
    }
    result.items.truncate(query.limit);
    Ok(result)
}

/// A window expected to hold about `limit` messages at the subject's average rate.
async fn initial_width(
    stream: &Stream,
    subject: &str,
    limit: usize,
    first: Timestamp,
    last: Timestamp,
) -> SignedDuration {
    let span = last.duration_since(first).max(MIN_WINDOW);
    let count = match stream.info_with_subjects(subject).await {
        Ok(info) => info
            .try_collect::<Vec<_>>()
            .await
            .ok()
            .and_then(|subjects| subjects.first().map(|(_, count)| *count)),
        Err(_) => None,
    };
    let Some(count) = count.filter(|c| *c > 0) else {
        return span;
    };
    let fraction = (limit as f64 * 1.5 / count as f64).min(1.0);
    SignedDuration::from_secs_f64(span.as_secs_f64() * fraction).max(MIN_WINDOW)
}
