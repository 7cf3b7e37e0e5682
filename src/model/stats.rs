//! Delivery counters of an endpoint, the health they imply, and auto-disable.

use std::time::Duration;

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
    /// Auto-disabled after failing without a single success for the auto-disable period:
    /// events queue up, nothing is sent until the endpoint is re-enabled.
    Disabled,
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
    /// Start of the current run of failed attempts: the first failure after the last success
    /// (or after the last re-enable). Absent while the last attempt succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<Timestamp>,
    /// When the endpoint was auto-disabled; absent while it is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_time: Option<Timestamp>,
}

impl EndpointStats {
    /// Health from the counters; `Invalid` is decided by whoever knows the spec.
    pub fn health(&self, paused: bool) -> Health {
        if self.disabled_time.is_some() {
            Health::Disabled
        } else if paused {
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

    pub fn is_disabled(&self) -> bool {
        self.disabled_time.is_some()
    }

    /// Notes an attempt's verdict at `time`: a success ends the run of failures; a failure
    /// starts one, and disables the endpoint once the run has lasted `auto_disable_after`.
    pub fn note_attempt(
        &mut self,
        succeeded: bool,
        time: Timestamp,
        auto_disable_after: Option<Duration>,
    ) {
        if succeeded {
            self.failing_since = None;
            return;
        }
        let since = *self.failing_since.get_or_insert(time);
        let failing_for = time.duration_since(since).unsigned_abs();
        if let Some(after) = auto_disable_after
            && self.disabled_time.is_none()
            && failing_for >= after
        {
            self.disabled_time = Some(time);
        }
    }

    /// Re-enables the endpoint at `now`; a run of failures in progress counts from `now`,
    /// so a re-enabled endpoint gets a full auto-disable period again. Returns whether it was
    /// disabled.
    pub fn enable(&mut self, now: Timestamp) -> bool {
        let was_disabled = self.disabled_time.take().is_some();
        if self.failing_since.is_some() {
            self.failing_since = Some(now);
        }
        was_disabled
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
        s.disabled_time = Some(Timestamp::UNIX_EPOCH);
        assert_eq!(s.health(false), Health::Disabled);
        assert_eq!(
            s.health(true),
            Health::Disabled,
            "disabled wins over paused"
        );
    }

    #[test]
    fn failing_without_success_for_the_period_disables() {
        let at = |s: i64| Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH);
        let after = Some(Duration::from_secs(100));
        let mut s = EndpointStats::default();
        s.note_attempt(false, at(1_000), after);
        s.note_attempt(false, at(1_099), after);
        assert!(!s.is_disabled(), "99 s of failures is not yet 100 s");
        s.note_attempt(true, at(1_099), after);
        assert_eq!(s.failing_since, None, "a success ends the run");
        s.note_attempt(false, at(1_200), after);
        s.note_attempt(false, at(1_300), None);
        assert!(!s.is_disabled(), "no period, no auto-disable");
        s.note_attempt(false, at(1_300), after);
        assert_eq!(s.disabled_time, Some(at(1_300)));
        assert_eq!(s.health(false), Health::Disabled);

        assert!(s.enable(at(2_000)));
        assert!(
            !s.enable(at(2_000)),
            "enabling twice reports it was not disabled"
        );
        assert_eq!(
            s.failing_since,
            Some(at(2_000)),
            "a fresh period from re-enable"
        );
        s.note_attempt(false, at(2_050), after);
        assert!(!s.is_disabled());
        s.note_attempt(false, at(2_100), after);
        assert!(s.is_disabled());
    }
}
