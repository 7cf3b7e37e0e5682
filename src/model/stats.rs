//! Delivery counters of an endpoint and the health they imply.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Consecutive failures from which an endpoint counts as `Failing` rather than `Degraded`.
pub const FAILING_AFTER_CONSECUTIVE_FAILURES: u64 = 5;

/// Health as shown in status and `/v1/endpoints`. The rules live in [`EndpointStats::health`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Health {
    /// Valid, nothing attempted yet.
    Pending,
    /// The last attempt succeeded.
    Healthy,
    /// The last attempts failed, fewer than [`FAILING_AFTER_CONSECUTIVE_FAILURES`] in a row.
    Degraded,
    /// At least [`FAILING_AFTER_CONSECUTIVE_FAILURES`] consecutive failures.
    Failing,
    /// `spec.paused`: events queue up, nothing is sent.
    Paused,
    /// The spec cannot be delivered to; see the Ready condition.
    Invalid,
}

/// The most recent failed attempt, kept so users see what went wrong without reading logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastFailure {
    /// CamelCase reason, e.g. `HTTP503`, `Timeout`, `ConnectError`, `PayloadTooLarge`.
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    pub message: String,
    pub event_id: String,
    #[schemars(with = "String")]
    pub time: Timestamp,
}

/// Counters folded from the attempt log; durable in the stats bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStats {
    pub delivered: u64,
    pub failed_attempts: u64,
    pub dead_lettered: u64,
    pub consecutive_failures: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<LastFailure>,
    /// Attempt-log sequence folded last; records at or below it are not counted again.
    #[serde(default)]
    pub applied_sequence: u64,
}

impl EndpointStats {
    pub fn health(&self, paused: bool) -> Health {
        if paused {
            Health::Paused
        } else if self.consecutive_failures >= FAILING_AFTER_CONSECUTIVE_FAILURES {
            Health::Failing
        } else if self.consecutive_failures > 0 {
            Health::Degraded
        } else if self.last_success_time.is_some() {
            Health::Healthy
        } else {
            // Nothing attempted yet, or only events dead-lettered before any attempt (payload
            // too large): nothing says the endpoint itself is broken.
            Health::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_rules() {
        let mut s = EndpointStats::default();
        assert_eq!(s.health(false), Health::Pending);
        assert_eq!(s.health(true), Health::Paused);
        s.last_success_time = Some(Timestamp::UNIX_EPOCH);
        assert_eq!(s.health(false), Health::Healthy);
        s.consecutive_failures = 1;
        assert_eq!(s.health(false), Health::Degraded);
        s.consecutive_failures = FAILING_AFTER_CONSECUTIVE_FAILURES;
        assert_eq!(s.health(false), Health::Failing);
    }
}
