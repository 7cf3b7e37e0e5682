//! The circuit breaker of one endpoint's worker.
//!
//! After `threshold` consecutive failed attempts the breaker opens: the worker stops fetching
//! the endpoint's jobs and sends one probe (the next job in line) every `probe_interval`
//! instead; the first success closes it and the backlog drains. Jobs held back this way stay
//! unfetched in the jobs stream, so they neither burn attempts nor wait on an ack deadline.
//!
//! The state is per worker, so per delivery replica: each replica counts its own failures and
//! sends its own probes (with R replicas, up to R probes per interval). What every replica
//! shares is auto-disable, decided from the attempt log (see [`crate::dataplane::stats`]).

use std::time::Duration;

use tokio::time::Instant;

/// When the breaker opens and how often it probes; from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct BreakerSettings {
    /// Consecutive failed attempts (per delivery replica) after which an endpoint's circuit
    /// opens: its backlog is held back and one probe is sent per probe interval; 0 turns
    /// the breaker off.
    #[arg(
        long = "circuit-breaker-threshold",
        env = "CIRCUIT_BREAKER_THRESHOLD",
        default_value_t = 10
    )]
    pub threshold: u32,
    /// Time between probes while a circuit is open (Go duration).
    #[arg(
        long = "circuit-probe-interval",
        env = "CIRCUIT_PROBE_INTERVAL",
        default_value = "30s",
        value_parser = crate::pipeline::parse_duration
    )]
    pub probe_interval: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            threshold: 10,
            probe_interval: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        next_probe: Instant,
    },
    /// A probe is on its way; nothing else is sent until it settles.
    Probing,
}

/// What the worker may fetch now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// As many jobs as `maxInFlight` allows.
    Batch,
    /// One job, the probe.
    Probe,
    /// Nothing until then (or until a probe settles).
    WaitUntil(Instant),
}

/// What to do with a job that was fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Send,
    Probe,
    /// The circuit opened since the fetch: give the job back without attempting it.
    HoldBack,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened,
    Closed,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    settings: BreakerSettings,
    consecutive_failures: u32,
    state: State,
}

impl CircuitBreaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            consecutive_failures: 0,
            state: State::Closed,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    pub fn permit(&self, now: Instant) -> Permit {
        match self.state {
            State::Closed => Permit::Batch,
            State::Open { next_probe } if next_probe <= now => Permit::Probe,
            State::Open { next_probe } => Permit::WaitUntil(next_probe),
            State::Probing => Permit::WaitUntil(now + self.settings.probe_interval),
        }
    }

    /// Decides on a fetched job; admitting a probe marks it on its way.
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            State::Closed => Admission::Send,
            State::Open { next_probe } if next_probe <= now => {
                self.state = State::Probing;
                Admission::Probe
            }
            State::Open { .. } | State::Probing => Admission::HoldBack,
        }
    }

    /// Records the verdict of an attempt (a probe's or any other that was in flight).
    pub fn record(&mut self, succeeded: bool, now: Instant) -> Option<Transition> {
        if succeeded {
            self.consecutive_failures = 0;
            if self.is_closed() {
                return None;
            }
            self.state = State::Closed;
            return Some(Transition::Closed);
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let reopen = State::Open {
            next_probe: now + self.settings.probe_interval,
        };
        match self.state {
            State::Closed
                if self.settings.threshold > 0
                    && self.consecutive_failures >= self.settings.threshold =>
            {
                self.state = reopen;
                Some(Transition::Opened)
            }
            State::Probing => {
                self.state = reopen;
                None
            }
            _ => None,
        }
    }

    /// A probe ended without an HTTP attempt (say, the job had expired): probe again now.
    pub fn probe_inconclusive(&mut self, now: Instant) {
        if self.state == State::Probing {
            self.state = State::Open { next_probe: now };
        }
    }

    /// Sends the next probe at once, if the circuit is open (after a re-enable, or when a
    /// probe was abandoned).
    pub fn probe_now(&mut self, now: Instant) {
        if !self.is_closed() {
            self.state = State::Open { next_probe: now };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32) -> CircuitBreaker {
        CircuitBreaker::new(BreakerSettings {
            threshold,
            probe_interval: Duration::from_secs(30),
        })
    }

    #[test]
    fn opens_after_threshold_probes_once_per_interval_and_closes_on_success() {
        let t0 = Instant::now();
        let mut b = breaker(3);
        assert_eq!(b.record(false, t0), None);
        assert_eq!(b.record(true, t0), None, "a success resets the count");
        assert_eq!(b.record(false, t0), None);
        assert_eq!(b.record(false, t0), None);
        assert_eq!(b.record(false, t0), Some(Transition::Opened));
        let first_probe = t0 + Duration::from_secs(30);
        assert_eq!(b.permit(t0), Permit::WaitUntil(first_probe));
        assert_eq!(
            b.admit(t0),
            Admission::HoldBack,
            "jobs fetched late are held back"
        );

        assert_eq!(b.permit(first_probe), Permit::Probe);
        assert_eq!(b.admit(first_probe), Admission::Probe);
        assert_eq!(
            b.admit(first_probe),
            Admission::HoldBack,
            "one probe at a time"
        );
        assert!(matches!(b.permit(first_probe), Permit::WaitUntil(_)));
        assert_eq!(b.record(false, first_probe), None, "a failed probe reopens");
        let second_probe = first_probe + Duration::from_secs(30);
        assert_eq!(b.permit(first_probe), Permit::WaitUntil(second_probe));

        assert_eq!(b.admit(second_probe), Admission::Probe);
        assert_eq!(b.record(true, second_probe), Some(Transition::Closed));
        assert_eq!(b.permit(second_probe), Permit::Batch);
        assert_eq!(b.admit(second_probe), Admission::Send);
    }

    #[test]
    fn inconclusive_probes_and_re_enable_probe_at_once() {
        let t0 = Instant::now();
        let mut b = breaker(1);
        assert_eq!(b.record(false, t0), Some(Transition::Opened));
        b.probe_now(t0);
        assert_eq!(b.admit(t0), Admission::Probe);
        b.probe_inconclusive(t0);
        assert_eq!(b.permit(t0), Permit::Probe);
    }

    #[test]
    fn threshold_zero_never_opens() {
        let t0 = Instant::now();
        let mut b = breaker(0);
        for _ in 0..100 {
            assert_eq!(b.record(false, t0), None);
        }
        assert_eq!(b.permit(t0), Permit::Batch);
    }
}
