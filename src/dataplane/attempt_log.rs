//! The attempt log: one JSON record per delivery attempt (and per event given up on without an
//! attempt). Endpoint counters are folded from it, so it is written before a job is acknowledged.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::job::Job;

/// How an attempt ended, as used in the `result` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptResult {
    Success,
    // Spelled as the metric label; `snake_case` alone would say `http3xx` (as early records do).
    #[serde(rename = "http_3xx", alias = "http3xx")]
    Http3xx,
    #[serde(rename = "http_4xx", alias = "http4xx")]
    Http4xx,
    #[serde(rename = "http_5xx", alias = "http5xx")]
    Http5xx,
    Timeout,
    ConnectError,
    TlsError,
    Blocked,
    /// The request could not be sent for another reason (e.g. an invalid header).
    Error,
    /// No attempt was made: the event itself cannot be delivered (too large, not JSON, expired).
    Rejected,
}

impl AttemptResult {
    pub const ALL: [Self; 10] = [
        Self::Success,
        Self::Http3xx,
        Self::Http4xx,
        Self::Http5xx,
        Self::Timeout,
        Self::ConnectError,
        Self::TlsError,
        Self::Blocked,
        Self::Error,
        Self::Rejected,
    ];

    pub fn as_label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Http3xx => "http_3xx",
            Self::Http4xx => "http_4xx",
            Self::Http5xx => "http_5xx",
            Self::Timeout => "timeout",
            Self::ConnectError => "connect_error",
            Self::TlsError => "tls_error",
            Self::Blocked => "blocked",
            Self::Error => "error",
            Self::Rejected => "rejected",
        }
    }
}

/// What happens to the event after this attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum Outcome {
    Delivered,
    Retrying {
        // `rename_all` above names the variants only; records written before this field was
        // renamed used the Rust name.
        #[serde(rename = "nextAttemptTime", alias = "next_attempt_time")]
        next_attempt_time: Timestamp,
    },
    DeadLettered,
}

/// One line of the attempt log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    pub time: Timestamp,
    pub event_id: String,
    pub event_type: String,
    /// 1 for the first attempt; 0 when the event was rejected without an attempt.
    pub attempt: u32,
    pub result: AttemptResult,
    /// CamelCase failure reason (`HTTP503`, `Timeout`, ...); absent on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// First KiB of the response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    pub outcome: Outcome,
}

impl AttemptRecord {
    /// Record of an event given up on without an attempt (too large, not JSON, expired).
    pub fn rejected(job: &Job, reason: &str, why: String, now: Timestamp) -> Self {
        Self {
            time: now,
            event_id: job.event_id.clone(),
            event_type: job.event_type.clone(),
            attempt: 0,
            result: AttemptResult::Rejected,
            reason: Some(reason.into()),
            status_code: None,
            duration_ms: 0,
            error: Some(why),
            response_body: None,
            outcome: Outcome::DeadLettered,
        }
    }

    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.duration_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_spelled_as_their_labels() {
        for result in AttemptResult::ALL {
            assert_eq!(
                serde_json::to_value(result).unwrap_or_default(),
                serde_json::json!(result.as_label())
            );
        }
        let old: AttemptResult =
            serde_json::from_str(r#""http5xx""#).unwrap_or(AttemptResult::Error);
        assert_eq!(old, AttemptResult::Http5xx);
    }

    #[test]
    fn outcomes_are_camel_case_and_old_records_still_read() {
        let retrying = Outcome::Retrying {
            next_attempt_time: Timestamp::UNIX_EPOCH,
        };
        let json = serde_json::to_value(&retrying).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"state": "retrying", "nextAttemptTime": "1970-01-01T00:00:00Z"})
        );
        let old: Outcome = serde_json::from_str(
            r#"{"state":"retrying","next_attempt_time":"1970-01-01T00:00:00Z"}"#,
        )
        .unwrap_or(Outcome::Delivered);
        assert_eq!(old, retrying);
        assert_eq!(
            serde_json::to_value(Outcome::DeadLettered).unwrap_or_default(),
            serde_json::json!({"state": "deadLettered"})
        );
    }
}
