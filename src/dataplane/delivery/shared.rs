//! What an endpoint's two delivery loops share (its jobs, see [`super::worker`], and its FIFO
//! queue, see [`super::ordered`]): the circuit breaker and the rate limit.

use std::{
    num::NonZeroU32,
    sync::{Arc, Mutex},
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

use super::breaker::{CircuitBreaker, Transition};
use crate::{
    metrics::Metrics,
    model::{EndpointConfig, EndpointKey, RateLimit},
};

/// The breaker of one endpoint, shared by its loops and their attempts; keeps the
/// `webhook_circuit_open` gauge in step.
pub(super) struct Breaker {
    key: EndpointKey,
    metrics: Arc<Metrics>,
    state: Mutex<CircuitBreaker>,
}

impl Breaker {
    pub(super) fn with<T>(&self, f: impl FnOnce(&mut CircuitBreaker) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub(super) fn record(&self, succeeded: bool) {
        let transition = self.with(|b| b.record(succeeded, Instant::now()));
        let gauge = self
            .metrics
            .circuit_open
            .get_or_create(&Metrics::tenant(&self.key.tenant));
        match transition {
            Some(Transition::Opened) => {
                gauge.inc();
                tracing::warn!(endpoint = %self.key, "circuit opened: consecutive failures reached the threshold; holding the backlog back and probing");
            }
            Some(Transition::Closed) => {
                gauge.dec();
                tracing::info!(endpoint = %self.key, "circuit closed: a delivery succeeded; sending the backlog");
            }
            None => {}
        }
    }
}

impl Drop for Breaker {
    fn drop(&mut self) {
        if !self.with(|b| b.is_closed()) {
            self.metrics
                .circuit_open
                .get_or_create(&Metrics::tenant(&self.key.tenant))
                .dec();
        }
    }
}

/// One endpoint's breaker and rate limiter.
pub(super) struct EndpointShared {
    pub(super) breaker: Breaker,
    limiter: Mutex<Option<(RateLimit, Arc<DefaultDirectRateLimiter>)>>,
}

impl EndpointShared {
    pub(super) fn new(key: EndpointKey, metrics: Arc<Metrics>, breaker: CircuitBreaker) -> Self {
        Self {
            breaker: Breaker {
                key,
                metrics,
                state: Mutex::new(breaker),
            },
            limiter: Mutex::new(None),
        }
    }

    /// The limiter of `config`'s rate limit (a new one when the limit changed); `None` without
    /// a limit.
    pub(super) fn limiter(&self, config: &EndpointConfig) -> Option<Arc<DefaultDirectRateLimiter>> {
        let rate = config.rate_limit?;
        let mut current = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
        match &*current {
            Some((limit, limiter)) if *limit == rate => Some(limiter.clone()),
            _ => {
                let limiter = Arc::new(rate_limiter(rate)?);
                *current = Some((rate, limiter.clone()));
                Some(limiter)
            }
        }
    }
}

fn rate_limiter(rate: RateLimit) -> Option<DefaultDirectRateLimiter> {
    let per_second = NonZeroU32::new(rate.requests_per_second)?;
    let burst = NonZeroU32::new(rate.burst).unwrap_or(per_second);
    Some(RateLimiter::direct(
        Quota::per_second(per_second).allow_burst(burst),
    ))
}
