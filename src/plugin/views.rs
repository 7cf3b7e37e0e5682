//! The admin API's answers as the plugin reads them (docs: the admin API contract). Lenient on
//! purpose: unknown fields are ignored and optional ones may be absent, so a newer operator
//! still works with an older plugin.

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::Value;

/// A row of `GET /v1/endpoints`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub namespace: String,
    pub name: String,
    pub url: String,
    pub health: String,
    #[serde(default)]
    pub delivered: u64,
    #[serde(default)]
    pub failed_attempts: u64,
    #[serde(default)]
    pub dead_lettered: u64,
    pub last_failure: Option<LastFailure>,
    /// Why an `Invalid` endpoint is invalid.
    pub reason: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastFailure {
    pub reason: String,
    pub status_code: Option<u16>,
    pub time: Option<Timestamp>,
}

/// One delivery attempt (`.../attempts`, and an event's `lastAttempt`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub time: Timestamp,
    pub event_id: String,
    #[serde(default)]
    pub event_type: String,
    pub attempt: u32,
    pub result: String,
    pub reason: Option<String>,
    pub status_code: Option<u16>,
    pub duration_ms: Option<f64>,
    pub error: Option<String>,
    pub response_body: Option<String>,
    pub outcome: Option<Outcome>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// `delivered`, `retrying` or `deadLettered`.
    pub state: String,
    pub next_attempt_time: Option<Timestamp>,
}

/// One dead letter (`.../dead-letters`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub event_id: String,
    #[serde(default)]
    pub event_type: String,
    pub dead_lettered_time: Timestamp,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    pub status_code: Option<u16>,
    #[serde(default)]
    pub attempts: u32,
}

/// `GET /v1/events/{namespace}/{id}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: String,
    pub namespace: String,
    pub event_type: String,
    pub published_time: Option<Timestamp>,
    pub content_type: Option<String>,
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub deliveries: Vec<Delivery>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub endpoint: String,
    /// `pending`, `delivered`, `retrying` or `deadLettered`.
    pub state: String,
    #[serde(default)]
    pub attempts: u32,
    pub next_attempt_time: Option<Timestamp>,
    pub last_attempt: Option<Attempt>,
}

/// `POST .../replay`.
#[derive(Debug, Clone, Deserialize)]
pub struct Replayed {
    pub replayed: u64,
}

/// `POST .../test`.
#[derive(Debug, Clone, Deserialize)]
pub struct Queued {
    pub id: String,
}

/// `POST .../enable`.
#[derive(Debug, Clone, Deserialize)]
pub struct Enabled {
    pub enabled: bool,
}

/// `POST /v1/events/{namespace}/{id}/redeliver`.
#[derive(Debug, Clone, Deserialize)]
pub struct Redelivered {
    pub endpoints: Vec<String>,
}
