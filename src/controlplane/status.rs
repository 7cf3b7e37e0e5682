//! Endpoint status from delivery counters: what `kubectl get webhookendpoints` shows and what
//! `kubectl describe` explains.
//!
//! The status writer runs on a timer (every [`STATUS_INTERVAL`]) on the leader only, and patches
//! an endpoint's status only when what it would write differs from what is there: at most one
//! write per endpoint per interval, none when nothing changed. Its field manager is separate from
//! the reconciler's, so server-side apply merges the two writers' conditions by type.

use std::{sync::Arc, time::Duration};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{
    conditions::{self, Desired, HEALTHY, READY},
    context::Context,
    error::Error,
};
use crate::{
    dataplane::{fifo_queue, stats::StatsView},
    model::{DeliveryOrder, EndpointKey, EndpointStats, Health},
    resources::{WebhookEndpoint, WebhookEndpointStatus},
};

pub const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// Health of an endpoint: invalid specs first, then the counters' verdict.
pub fn health(endpoint: &WebhookEndpoint, stats: &EndpointStats) -> Health {
    let status = endpoint.status.as_ref();
    let ready = status.and_then(|s| conditions::find(&s.conditions, READY));
    if ready.is_some_and(|c| c.status == "False") {
        return Health::Invalid;
    }
    stats.health(endpoint.spec.paused)
}

/// The Healthy condition, worded for someone running `kubectl describe`.
pub fn healthy_condition(
    endpoint: &WebhookEndpoint,
    health: Health,
    stats: &EndpointStats,
) -> Desired {
    let last = stats
        .last_failure
        .as_ref()
        .map(|f| format!("{}: {}", f.reason, f.message))
        .unwrap_or_else(|| "none recorded".into());
    let url = &endpoint.spec.url;
    match health {
        Health::Healthy => Desired::new(
            HEALTHY,
            true,
            "Delivering",
            format!("The last delivery to {url} succeeded."),
        ),
        Health::Degraded => Desired::new(
            HEALTHY,
            false,
            "Degraded",
            format!(
                "The last {} attempt(s) failed (last failure {last}); deliveries are retried with backoff.",
                stats.consecutive_failures
            ),
        ),
        Health::Failing => Desired::new(
            HEALTHY,
            false,
            "Failing",
            format!(
                "{} consecutive attempts failed (last failure {last}). Check that {url} is reachable and answers 2xx within {}; events are retried until maxAttempts/maxAge, then dead-lettered.",
                stats.consecutive_failures, endpoint.spec.timeout
            ),
        ),
        Health::Disabled => {
            let time = |t: Option<Timestamp>| t.map_or_else(|| "unknown".into(), |t| t.to_string());
            let namespace = endpoint.metadata.namespace.as_deref().unwrap_or_default();
            let name = endpoint.metadata.name.as_deref().unwrap_or_default();
            Desired::new(
                HEALTHY,
                false,
                "AutoDisabled",
                format!(
                    "Auto-disabled at {}: no delivery to {url} succeeded since {} (last failure {last}). Events stay queued and nothing is sent. Fix the receiver, then re-enable: set the annotation {} to a new value (e.g. the current time) or POST /v1/endpoints/{namespace}/{name}/enable.",
                    time(stats.disabled_time),
                    time(stats.failing_since),
                    super::enable::ENABLE_ANNOTATION,
                ),
            )
        }
        Health::Paused => Desired::unknown(
            HEALTHY,
            "Paused",
            "spec.paused is true: events are queued, nothing is sent.",
        ),
        Health::Pending => Desired::unknown(
            HEALTHY,
            "NoDeliveriesYet",
            "No delivery has been attempted yet.",
        ),
        Health::Invalid => Desired::unknown(
            HEALTHY,
            "Invalid",
            "The endpoint is not valid; see the Ready condition.",
        ),
    }
}

/// The counters part of the status, as the status writer owns it.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterStatus {
    pub health: Health,
    pub healthy: Condition,
    pub delivered: i64,
    pub failed_attempts: i64,
    pub dead_lettered: i64,
    pub consecutive_failures: i64,
    pub last_success_time: Option<Time>,
    pub last_failure_time: Option<Time>,
    pub last_failure: Option<crate::model::LastFailure>,
    /// FIFO endpoints only.
    pub held_back: Option<i64>,
}

/// What the status writer would write, or `None` when the object already shows it.
/// `held_back`: the count of a FIFO endpoint, `None` for others.
pub fn counter_status(
    endpoint: &WebhookEndpoint,
    stats: &EndpointStats,
    held_back: Option<u64>,
    now: Timestamp,
) -> Option<CounterStatus> {
    let current = endpoint.status.clone().unwrap_or_default();
    let health = health(endpoint, stats);
    let desired = healthy_condition(endpoint, health, stats);
    let generation = endpoint.metadata.generation;
    let counters = CounterStatus {
        health,
        healthy: desired.to_condition(&current.conditions, generation, now),
        delivered: stats.delivered as i64,
        failed_attempts: stats.failed_attempts as i64,
        dead_lettered: stats.dead_lettered as i64,
        consecutive_failures: stats.consecutive_failures as i64,
        last_success_time: stats.last_success_time.map(Time),
        last_failure_time: stats.last_failure_time.map(Time),
        last_failure: stats.last_failure.clone(),
        held_back: held_back.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
    };
    let unchanged = current.health == Some(health)
        && desired.is_current(&current.conditions, generation)
        && counters_match(&current, &counters);
    (!unchanged).then_some(counters)
}

fn counters_match(current: &WebhookEndpointStatus, c: &CounterStatus) -> bool {
    current.delivered == c.delivered
        && current.failed_attempts == c.failed_attempts
        && current.dead_lettered == c.dead_lettered
        && current.consecutive_failures == c.consecutive_failures
        && current.last_success_time == c.last_success_time
        && current.last_failure_time == c.last_failure_time
        && current.last_failure == c.last_failure
        && current.held_back == c.held_back
}

/// Server-side apply body for the status writer's fields.
pub fn counter_patch(c: &CounterStatus) -> serde_json::Value {
    let mut patch = json!({
        "apiVersion": "webhook-operator.io/v1alpha1",
        "kind": "WebhookEndpoint",
        "status": {
            "health": c.health,
            "conditions": [c.healthy],
            "delivered": c.delivered,
            "failedAttempts": c.failed_attempts,
            "deadLettered": c.dead_lettered,
            "consecutiveFailures": c.consecutive_failures,
            "lastSuccessTime": c.last_success_time,
            "lastFailureTime": c.last_failure_time,
            "lastFailure": c.last_failure,
        }
    });
    // Left out for unordered endpoints, so applying without it removes a count left over
    // from when the endpoint was FIFO.
    if let Some(held_back) = c.held_back {
        patch["status"]["heldBack"] = json!(held_back);
    }
    patch
}

/// Transitions worth a Kubernetes Event: (type is warning, reason, note).
pub fn transitions(
    previous: &WebhookEndpointStatus,
    next: &CounterStatus,
) -> Vec<(bool, &'static str, String)> {
    let mut events = Vec::new();
    let was = previous.health;
    // From Disabled, the counters still show the failures that led there: "Enabled" says it.
    if next.health == Health::Failing && !matches!(was, Some(Health::Failing | Health::Disabled)) {
        events.push((true, "Failing", next.healthy.message.clone()));
    }
    if next.health == Health::Disabled && was != Some(Health::Disabled) {
        events.push((true, "AutoDisabled", next.healthy.message.clone()));
    }
    if was == Some(Health::Disabled) && next.health != Health::Disabled {
        events.push((
            false,
            "Enabled",
            "Re-enabled: queued events are being delivered again.".to_string(),
        ));
    }
    if next.health == Health::Healthy && matches!(was, Some(Health::Failing | Health::Degraded)) {
        events.push((false, "Recovered", "Deliveries succeed again.".to_string()));
    }
    if next.dead_lettered > previous.dead_lettered {
        let reason = next
            .last_failure
            .as_ref()
            .map(|f| f.reason.as_str())
            .unwrap_or("unknown");
        events.push((
            true,
            "DeadLettered",
            format!(
                "{} event(s) given up on (last reason {reason}); they are kept as dead letters.",
                next.dead_lettered - previous.dead_lettered
            ),
        ));
    }
    events
}

/// Field manager of the status writer (the reconciler uses [`super::tenant::MANAGER`]).
pub const STATUS_MANAGER: &str = "webhook-operator-status";

/// Folds counters into every endpoint's status every [`STATUS_INTERVAL`] until `cancel`.
pub async fn run(ctx: Arc<Context>, stats: StatsView, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(STATUS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        for endpoint in ctx.stores.endpoints.state() {
            if let Err(error) = write_counters(&ctx, &endpoint, &stats).await {
                tracing::warn!(endpoint = %endpoint.name_any(), %error, "status write failed; next round retries");
            }
        }
    }
}

async fn write_counters(
    ctx: &Context,
    endpoint: &WebhookEndpoint,
    stats: &StatsView,
) -> Result<(), Error> {
    let Some(namespace) = endpoint.namespace() else {
        return Ok(());
    };
    if endpoint.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let key = EndpointKey::new(&namespace, endpoint.name_any());
    let counters = stats.get(&key);
    let held_back = match endpoint.spec.ordering {
        DeliveryOrder::Unordered => None,
        // One look at the queue per failing FIFO endpoint and round; on error the count stays.
        DeliveryOrder::Fifo => match ctx
            .routes
            .held_back(key, fifo_queue::head_failing(&counters))
            .await
        {
            Ok(count) => Some(count),
            Err(error) => {
                tracing::debug!(%error, "held-back count unavailable; keeping the last one");
                endpoint
                    .status
                    .as_ref()
                    .and_then(|s| s.held_back)
                    .and_then(|n| u64::try_from(n).ok())
            }
        },
    };
    let Some(next) = counter_status(endpoint, &counters, held_back, Timestamp::now()) else {
        return Ok(());
    };
    let api: Api<WebhookEndpoint> = Api::namespaced(ctx.client.clone(), &namespace);
    api.patch_status(
        &endpoint.name_any(),
        &PatchParams::apply(STATUS_MANAGER).force(),
        &Patch::Apply(counter_patch(&next)),
    )
    .await?;
    let previous = endpoint.status.clone().unwrap_or_default();
    for (warning, reason, note) in transitions(&previous, &next) {
        ctx.publish_event(endpoint, warning, reason, note).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::WebhookEndpointSpec;

    fn endpoint() -> WebhookEndpoint {
        let spec: WebhookEndpointSpec = serde_json::from_value(json!({"url": "https://a.example"}))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut e = WebhookEndpoint::new("a", spec);
        e.metadata.generation = Some(1);
        e
    }

    fn applied(endpoint: &mut WebhookEndpoint, c: &CounterStatus) {
        let status = endpoint.status.get_or_insert_with(Default::default);
        status.health = Some(c.health);
        status.conditions = vec![c.healthy.clone()];
        status.delivered = c.delivered;
        status.failed_attempts = c.failed_attempts;
        status.dead_lettered = c.dead_lettered;
        status.consecutive_failures = c.consecutive_failures;
        status.last_success_time = c.last_success_time.clone();
        status.last_failure_time = c.last_failure_time.clone();
        status.last_failure = c.last_failure.clone();
        status.held_back = c.held_back;
    }

    #[test]
    fn writes_only_when_something_changed() {
        let mut endpoint = endpoint();
        let stats = EndpointStats {
            delivered: 3,
            last_success_time: Some(Timestamp::UNIX_EPOCH),
            ..Default::default()
        };
        let first = counter_status(&endpoint, &stats, None, Timestamp::now()).expect("first write");
        assert_eq!(first.health, Health::Healthy);
        applied(&mut endpoint, &first);
        assert_eq!(
            counter_status(&endpoint, &stats, None, Timestamp::now()),
            None,
            "nothing changed, nothing written"
        );
        let more = EndpointStats {
            delivered: 4,
            ..stats
        };
        assert!(counter_status(&endpoint, &more, None, Timestamp::now()).is_some());
    }

    #[test]
    fn failing_and_recovery_raise_events() {
        let endpoint = endpoint();
        let failing = EndpointStats {
            failed_attempts: 6,
            consecutive_failures: 6,
            dead_lettered: 1,
            ..Default::default()
        };
        let next = counter_status(&endpoint, &failing, None, Timestamp::now()).expect("write");
        assert_eq!(next.health, Health::Failing);
        assert!(
            next.healthy.message.contains("https://a.example"),
            "{}",
            next.healthy.message
        );
        let reasons: Vec<_> = transitions(&WebhookEndpointStatus::default(), &next)
            .into_iter()
            .map(|e| e.1)
            .collect();
        assert_eq!(reasons, ["Failing", "DeadLettered"]);
        let previous = WebhookEndpointStatus {
            health: Some(Health::Failing),
            dead_lettered: 1,
            ..Default::default()
        };
        let healthy = EndpointStats {
            delivered: 1,
            last_success_time: Some(Timestamp::UNIX_EPOCH),
            dead_lettered: 1,
            ..Default::default()
        };
        let recovered = counter_status(&endpoint, &healthy, None, Timestamp::now()).expect("write");
        let reasons: Vec<_> = transitions(&previous, &recovered)
            .into_iter()
            .map(|e| e.1)
            .collect();
        assert_eq!(reasons, ["Recovered"]);
    }

    #[test]
    fn auto_disable_and_re_enable_raise_events() {
        let endpoint = endpoint();
        let disabled = EndpointStats {
            failed_attempts: 40,
            consecutive_failures: 40,
            failing_since: Some(Timestamp::UNIX_EPOCH),
            disabled_time: Some(Timestamp::UNIX_EPOCH),
            ..Default::default()
        };
        let previous = WebhookEndpointStatus {
            health: Some(Health::Failing),
            ..Default::default()
        };
        let next = counter_status(&endpoint, &disabled, None, Timestamp::now()).expect("write");
        assert_eq!(next.health, Health::Disabled);
        assert_eq!(next.healthy.reason, "AutoDisabled");
        assert_eq!(next.healthy.status, "False");
        assert!(
            next.healthy.message.contains("webhook-operator.io/enable"),
            "{}",
            next.healthy.message
        );
        let reasons: Vec<_> = transitions(&previous, &next)
            .into_iter()
            .map(|e| (e.0, e.1))
            .collect();
        assert_eq!(reasons, [(true, "AutoDisabled")]);

        let was_disabled = WebhookEndpointStatus {
            health: Some(Health::Disabled),
            ..Default::default()
        };
        let enabled = EndpointStats {
            disabled_time: None,
            ..disabled
        };
        let next = counter_status(&endpoint, &enabled, None, Timestamp::now()).expect("write");
        let reasons: Vec<_> = transitions(&was_disabled, &next)
            .into_iter()
            .map(|e| (e.0, e.1))
            .collect();
        assert_eq!(reasons, [(false, "Enabled")]);
    }

    #[test]
    fn fifo_endpoints_show_their_held_back_count() {
        let mut endpoint = endpoint();
        let failing = EndpointStats {
            failed_attempts: 2,
            consecutive_failures: 2,
            ..Default::default()
        };
        assert!(fifo_queue::head_failing(&failing));
        let next = counter_status(&endpoint, &failing, Some(41), Timestamp::now()).expect("write");
        assert_eq!(next.held_back, Some(41));
        assert_eq!(counter_patch(&next)["status"]["heldBack"], 41);
        applied(&mut endpoint, &next);
        assert_eq!(
            counter_status(&endpoint, &failing, Some(41), Timestamp::now()),
            None,
            "an unchanged count is not written again"
        );
        let recovered = EndpointStats {
            delivered: 1,
            failed_attempts: 2,
            last_success_time: Some(Timestamp::UNIX_EPOCH),
            ..Default::default()
        };
        assert!(!fifo_queue::head_failing(&recovered));
        let next = counter_status(&endpoint, &recovered, Some(0), Timestamp::now()).expect("write");
        assert_eq!(next.held_back, Some(0));
        applied(&mut endpoint, &next);
        let unordered = counter_status(&endpoint, &recovered, None, Timestamp::now())
            .expect("the count goes when the endpoint is no longer FIFO");
        assert!(
            counter_patch(&unordered)["status"]
                .get("heldBack")
                .is_none()
        );
    }

    #[test]
    fn invalid_spec_wins_over_counters() {
        let mut endpoint = endpoint();
        endpoint.status = Some(WebhookEndpointStatus {
            conditions: vec![
                Desired::new(READY, false, "InvalidUrl", "bad").to_condition(
                    &[],
                    Some(1),
                    Timestamp::now(),
                ),
            ],
            ..Default::default()
        });
        assert_eq!(
            health(&endpoint, &EndpointStats::default()),
            Health::Invalid
        );
    }
}
