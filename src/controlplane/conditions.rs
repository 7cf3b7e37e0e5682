//! `metav1.Condition` bookkeeping: `lastTransitionTime` moves only when the status flips.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const HEALTHY: &str = "Healthy";

/// A condition as we want it, before transition time is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    /// "True", "False" or "Unknown".
    pub status: &'static str,
    pub reason: String,
    pub message: String,
}

impl Desired {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status: if status { "True" } else { "False" },
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn unknown(
        type_: &'static str,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status: "Unknown",
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// The full condition, keeping the previous transition time when the status did not change.
    pub fn to_condition(
        &self,
        previous: &[Condition],
        generation: Option<i64>,
        now: Timestamp,
    ) -> Condition {
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == self.type_ && c.status == self.status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        Condition {
            type_: self.type_.into(),
            status: self.status.into(),
            reason: self.reason.clone(),
            message: self.message.clone(),
            observed_generation: generation,
            last_transition_time,
        }
    }

    /// True when `previous` already says exactly this (for this generation).
    pub fn is_current(&self, previous: &[Condition], generation: Option<i64>) -> bool {
        previous.iter().any(|c| {
            c.type_ == self.type_
                && c.status == self.status
                && c.reason == self.reason
                && c.message == self.message
                && c.observed_generation == generation
        })
    }
}

pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_flip() {
        let t0 = Timestamp::from_second(1_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let t1 = Timestamp::from_second(2_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let ready = Desired::new(READY, true, "Active", "ok");
        let first = ready.to_condition(&[], Some(1), t0);
        assert_eq!(first.last_transition_time, Time(t0));
        let reworded = Desired::new(READY, true, "Active", "still ok").to_condition(
            std::slice::from_ref(&first),
            Some(2),
            t1,
        );
        assert_eq!(
            reworded.last_transition_time,
            Time(t0),
            "same status keeps its transition time"
        );
        let flipped = Desired::new(READY, false, "InvalidUrl", "bad").to_condition(
            std::slice::from_ref(&first),
            Some(2),
            t1,
        );
        assert_eq!(flipped.last_transition_time, Time(t1));
        assert!(ready.is_current(std::slice::from_ref(&first), Some(1)));
        assert!(
            !ready.is_current(&[first], Some(2)),
            "a new generation is not yet observed"
        );
    }
}
