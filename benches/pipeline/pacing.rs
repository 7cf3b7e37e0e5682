//! Open-loop pacing: how many events of a fixed-rate run are due at a given moment, and how far
//! behind that schedule the publisher fell.

use std::time::Duration;

use super::numbers::thousands;

/// A moment counts as behind schedule when the oldest unsent event is this late: far more than
/// the publish loop's 1 ms tick.
pub const LATE_AFTER: Duration = Duration::from_millis(50);

/// The schedule of `rate` events per second for a fixed number of seconds.
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: u64,
    total: u64,
    sent: u64,
    max_lag: Duration,
    /// Distinct seconds of the run in which the publisher was behind, in order.
    late_seconds: Vec<u64>,
}

/// How well a paced run kept its schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Pacing {
    pub rate: u64,
    /// Events the schedule asked for.
    pub scheduled: u64,
    pub sent: u64,
    /// The furthest behind schedule the publisher was at any check.
    pub max_lag: Duration,
    /// Seconds of the run in which it was more than [`LATE_AFTER`] behind.
    pub late_seconds: u64,
    /// Wall time from the first to the last send.
    pub seconds: f64,
}

impl Pacing {
    /// The schedule held: everything sent, never [`LATE_AFTER`] behind.
    pub fn held(&self) -> bool {
        self.sent >= self.scheduled && self.late_seconds == 0
    }

    /// One line for a report.
    pub fn describe(&self) -> String {
        let lag = self.max_lag.as_secs_f64() * 1e3;
        let sent = format!(
            "{} of {} events sent in {:.1} s",
            thousands(self.sent as f64),
            thousands(self.scheduled as f64),
            self.seconds
        );
        if self.held() {
            format!("held: {sent}, never more than {lag:.0} ms behind")
        } else {
            format!(
                "**fell behind** (over {} ms) in {} s of the run, at worst {lag:.0} ms; {sent}",
                LATE_AFTER.as_millis(),
                self.late_seconds
            )
        }
    }
}

impl Pacer {
    pub fn new(rate: u64, seconds: u64) -> Self {
        Self {
            rate: rate.max(1),
            total: rate * seconds,
            sent: 0,
            max_lag: Duration::ZERO,
            late_seconds: Vec::new(),
        }
    }

    /// Events to send now, `elapsed` into the run; they count as sent from here on.
    pub fn due(&mut self, elapsed: Duration) -> u64 {
        let scheduled = ((elapsed.as_secs_f64() * self.rate as f64) as u64).min(self.total);
        let backlog = scheduled.saturating_sub(self.sent);
        let lag = Duration::from_secs_f64(backlog as f64 / self.rate as f64);
        self.max_lag = self.max_lag.max(lag);
        let second = elapsed.as_secs();
        if lag > LATE_AFTER && self.late_seconds.last() != Some(&second) {
            self.late_seconds.push(second);
        }
        self.sent += backlog;
        backlog
    }

    pub fn finished(&self) -> bool {
        self.sent >= self.total
    }

    pub fn finish(&self, seconds: f64) -> Pacing {
        Pacing {
            rate: self.rate,
            scheduled: self.total,
            sent: self.sent,
            max_lag: self.max_lag,
            late_seconds: self.late_seconds.len() as u64,
            seconds,
        }
    }
}
