//! When to try again: exponential backoff with jitter, or the receiver's `Retry-After`.

use std::time::Duration;

use rand::Rng;

use crate::model::RetryPolicy;

/// Delay after failed attempt number `attempt` (1-based). `Retry-After` wins over the schedule;
/// both are capped by `maxBackoff`.
pub fn retry_delay(policy: &RetryPolicy, attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(requested) = retry_after {
        return requested.min(policy.max_backoff);
    }
    let doublings = attempt.saturating_sub(1).min(40);
    let base = policy
        .initial_backoff
        .saturating_mul(1u32 << doublings.min(31))
        .min(policy.max_backoff);
    // +/-20% spreads retries of a burst of failures so they do not all land at once.
    let jitter = rand::rng().random_range(0.8..=1.2);
    base.mul_f64(jitter).min(policy.max_backoff)
}

/// Parses `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(60),
            max_age: Duration::from_secs(3600),
        }
    }

    #[test]
    fn doubles_with_bounded_jitter_and_caps() {
        for (attempt, base) in [(1, 5.0), (2, 10.0), (3, 20.0), (4, 40.0)] {
            let d = retry_delay(&policy(), attempt, None).as_secs_f64();
            assert!(
                (base * 0.8..=base * 1.2).contains(&d),
                "attempt {attempt}: {d}"
            );
        }
        assert!(retry_delay(&policy(), 30, None) <= Duration::from_secs(60));
        assert!(retry_delay(&policy(), u32::MAX, None) <= Duration::from_secs(60));
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        assert_eq!(
            retry_delay(&policy(), 1, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert_eq!(
            retry_delay(&policy(), 1, Some(Duration::from_secs(600))),
            Duration::from_secs(60)
        );
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
