//! The webhook receiver: an axum server in the bench process that answers at once, counts
//! deliveries per second, records publish->receipt latency and checks signatures.
//!
//! Paths: `/ep-<n>` (and anything else) answer 204; `/hang` never answers (until the receiver
//! shuts down or 10 s have passed), so the pipeline's request times out first.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::post,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use super::world::{SECRET, now_ns};

/// Events with a sequence number at or above this are warm-up probes, counted apart.
pub const WARMUP_SEQ: u64 = 1 << 40;
/// Sequence numbers tracked for duplicate detection.
pub const SEEN_CAPACITY: usize = 1 << 22;
const PER_SECOND_SLOTS: usize = 600;
/// How long `/hang` holds a request before answering (long after the client timed out).
const HANG_FOR: Duration = Duration::from_secs(10);
/// Deliveries whose signature is verified in full (HMAC), per receiver.
const SIGNATURES_CHECKED: u64 = 500;

#[derive(Deserialize)]
struct Body {
    seq: u64,
    sent_ns: u64,
}

struct Shared {
    /// `now_ns()` at the start of the measured window; 0 when not measuring.
    window_start: AtomicU64,
    per_second: Box<[AtomicU64]>,
    /// Non-warm-up deliveries, duplicates included.
    total: AtomicU64,
    unique: AtomicU64,
    duplicates: AtomicU64,
    warmup: AtomicU64,
    seen: Box<[AtomicBool]>,
    record: AtomicBool,
    /// (seq, latency ns) of first receipts while recording.
    samples: Mutex<Vec<(u64, u64)>>,
    hang_hits: AtomicU64,
    signatures_checked: AtomicU64,
    signatures_bad: AtomicU64,
    malformed: AtomicU64,
    first_problem: Mutex<Option<String>>,
    key: Vec<u8>,
    cancel: CancellationToken,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Self> {
        let key = STANDARD.decode(SECRET.trim_start_matches("whsec_"))?;
        let shared = Arc::new(Shared {
            window_start: AtomicU64::new(0),
            per_second: (0..PER_SECOND_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            total: AtomicU64::new(0),
            unique: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            warmup: AtomicU64::new(0),
            seen: (0..SEEN_CAPACITY).map(|_| AtomicBool::new(false)).collect(),
            record: AtomicBool::new(false),
            samples: Mutex::new(Vec::with_capacity(64 * 1024)),
            hang_hits: AtomicU64::new(0),
            signatures_checked: AtomicU64::new(0),
            signatures_bad: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            first_problem: Mutex::new(None),
            key,
            cancel: CancellationToken::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/{path}", post(handle))
            .with_state(shared.clone());
        let cancel = shared.cancel.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await;
        });
        Ok(Self { addr, shared, task })
    }

    /// Starts the measured window: per-second counts from now, latency samples if `record`.
    pub fn start_window(&self, record: bool) {
        self.shared.window_start.store(now_ns().max(1), Relaxed);
        self.shared.record.store(record, Relaxed);
    }

    pub fn stop_recording(&self) {
        self.shared.record.store(false, Relaxed);
    }

    pub fn total(&self) -> u64 {
        self.shared.total.load(Relaxed)
    }

    pub fn unique(&self) -> u64 {
        self.shared.unique.load(Relaxed)
    }

    pub fn duplicates(&self) -> u64 {
        self.shared.duplicates.load(Relaxed)
    }

    pub fn warmup(&self) -> u64 {
        self.shared.warmup.load(Relaxed)
    }

    pub fn hang_hits(&self) -> u64 {
        self.shared.hang_hits.load(Relaxed)
    }

    /// Deliveries counted in each second of the window.
    pub fn per_second(&self, seconds: usize) -> Vec<u64> {
        self.shared
            .per_second
            .iter()
            .take(seconds)
            .map(|c| c.load(Relaxed))
            .collect()
    }

    /// (seq, latency ns) of first receipts recorded so far, in order of receipt.
    pub fn samples(&self) -> Vec<(u64, u64)> {
        self.shared
            .samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn signatures(&self) -> (u64, u64) {
        let checked = self
            .shared
            .signatures_checked
            .load(Relaxed)
            .min(SIGNATURES_CHECKED);
        (checked, self.shared.signatures_bad.load(Relaxed))
    }

    pub fn first_problem(&self) -> Option<String> {
        self.shared
            .first_problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
        self.task.abort();
    }
}

async fn handle(
    State(s): State<Arc<Shared>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if path == "hang" {
        s.hang_hits.fetch_add(1, Relaxed);
        tokio::select! {
            _ = s.cancel.cancelled() => {}
            // Five times the endpoint's 2 s timeout: the client has given up long before, and
            // hyper does not notice the closed connection, so this bounds the parked tasks.
            _ = tokio::time::sleep(HANG_FOR) => {}
        }
        return StatusCode::NO_CONTENT;
    }
    let now = now_ns();
    let Ok(parsed) = serde_json::from_slice::<Body>(&body) else {
        s.malformed.fetch_add(1, Relaxed);
        s.problem(|| {
            format!(
                "unparseable body on /{path}: {:?}",
                String::from_utf8_lossy(&body)
            )
        });
        return StatusCode::NO_CONTENT;
    };
    if path.starts_with("ep-")
        && s.signatures_checked.fetch_add(1, Relaxed) < SIGNATURES_CHECKED
        && let Err(problem) = s.verify(&headers, &body)
    {
        s.signatures_bad.fetch_add(1, Relaxed);
        s.problem(|| format!("bad signature on /{path}: {problem}"));
    }
    if parsed.seq >= WARMUP_SEQ {
        s.warmup.fetch_add(1, Relaxed);
        return StatusCode::NO_CONTENT;
    }
    s.total.fetch_add(1, Relaxed);
    let start = s.window_start.load(Relaxed);
    if start != 0
        && now >= start
        && let Some(slot) = s.per_second.get(((now - start) / 1_000_000_000) as usize)
    {
        slot.fetch_add(1, Relaxed);
    }
    let first = match s.seen.get(parsed.seq as usize) {
        Some(flag) => !flag.swap(true, Relaxed),
        None => true,
    };
    if !first {
        s.duplicates.fetch_add(1, Relaxed);
        return StatusCode::NO_CONTENT;
    }
    s.unique.fetch_add(1, Relaxed);
    if s.record.load(Relaxed) {
        let latency = now.saturating_sub(parsed.sent_ns);
        s.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((parsed.seq, latency));
    }
    StatusCode::NO_CONTENT
}

impl Shared {
    fn problem(&self, describe: impl FnOnce() -> String) {
        let mut first = self.first_problem.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(describe());
        }
    }

    /// Standard Webhooks: `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| format!("missing header {name}"))
        };
        let id = header("webhook-id")?;
        let timestamp = header("webhook-timestamp")?;
        let signature = header("webhook-signature")?;
        header("webhook-event-type")?;
        if !signature.starts_with("v1,") {
            return Err(format!(
                "webhook-signature does not start with \"v1,\": {signature:?}"
            ));
        }
        let skew = timestamp
            .parse::<i64>()
            .map_err(|_| format!("bad webhook-timestamp {timestamp:?}"))?
            - jiff::Timestamp::now().as_second();
        if skew.abs() > 300 {
            return Err(format!("webhook-timestamp {timestamp} is {skew} s off"));
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).map_err(|e| e.to_string())?;
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        if signature.split(' ').any(|s| s == expected) {
            Ok(())
        } else {
            Err(format!("no matching v1 signature in {signature:?}"))
        }
    }
}
