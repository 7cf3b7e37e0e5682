//! Dead-letter replay the Kubernetes way: the annotation
//! `webhook-operator.io/replay-dead-letters: <RFC 3339 time>` on a WebhookEndpoint queues its
//! dead letters since that time for delivery again. The leader acts on each value once and
//! records it in `status.lastReplay`; a new value (or the same time written again after another
//! one) asks for a new replay.

use std::hash::{DefaultHasher, Hash, Hasher};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::{context::Context, error::Error};
use crate::{
    model::EndpointKey,
    resources::{WebhookEndpoint, webhook_endpoint::LastReplay},
};

pub const REPLAY_ANNOTATION: &str = "webhook-operator.io/replay-dead-letters";
/// Prefix of the annotations through which users ask the operator for an action.
pub const ANNOTATION_PREFIX: &str = "webhook-operator.io/";
/// Field manager of `status.lastReplay` (the reconciler's and the status writer's own fields
/// stay theirs under server-side apply).
pub const REPLAY_MANAGER: &str = "webhook-operator-replay";

/// Watch predicate: a hash of the `webhook-operator.io/` annotations, so setting one triggers a
/// reconcile while status writes still do not.
pub fn operator_annotations(endpoint: &WebhookEndpoint) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    endpoint
        .annotations()
        .iter()
        .filter(|(key, _)| key.starts_with(ANNOTATION_PREFIX))
        .for_each(|entry| entry.hash(&mut hasher));
    Some(hasher.finish())
}

/// The value of `annotation` on `endpoint` unless it is `handled` (the value last acted on, as
/// recorded in status): each value is acted on once.
pub fn unhandled<'a>(
    endpoint: &'a WebhookEndpoint,
    annotation: &str,
    handled: Option<&str>,
) -> Option<&'a str> {
    let value = endpoint.annotations().get(annotation)?.as_str();
    (handled != Some(value)).then_some(value)
}

/// What the annotation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayRequest {
    /// Replay dead letters since this time; `value` is the annotation as written.
    Since { value: String, since: Timestamp },
    /// The annotation is not a time.
    Invalid { value: String, problem: String },
}

/// The replay the endpoint asks for and has not had yet.
pub fn pending_request(endpoint: &WebhookEndpoint) -> Option<ReplayRequest> {
    let value = endpoint
        .annotations()
        .get(REPLAY_ANNOTATION)?
        .trim()
        .to_owned();
    let done = endpoint
        .status
        .as_ref()
        .and_then(|s| s.last_replay.as_ref())
        .is_some_and(|last| last.requested_since == value);
    if done {
        return None;
    }
    Some(match value.parse::<Timestamp>() {
        Ok(since) => ReplayRequest::Since { value, since },
        Err(error) => ReplayRequest::Invalid {
            problem: format!(
                "annotation {REPLAY_ANNOTATION} {value:?} is not an RFC 3339 time (e.g. 2025-01-31T00:00:00Z): {error}"
            ),
            value,
        },
    })
}

/// Carries out a pending replay and records it. A failed replay is not recorded: the reconcile
/// fails and is retried with backoff, and the dead letters already replayed are gone from the
/// dead letters by then, so nothing is queued twice.
pub async fn reconcile(
    endpoint: &WebhookEndpoint,
    namespace: &str,
    ctx: &Context,
) -> Result<(), Error> {
    let Some(request) = pending_request(endpoint) else {
        return Ok(());
    };
    let key = EndpointKey::new(namespace, endpoint.name_any());
    let now = Timestamp::now();
    let record = match request {
        ReplayRequest::Invalid { value, problem } => {
            ctx.publish_event(endpoint, true, "InvalidReplayRequest", problem.clone())
                .await;
            LastReplay {
                requested_since: value,
                time: Time(now),
                replayed: 0,
                message: Some(problem),
            }
        }
        ReplayRequest::Since { value, since } => {
            let report = ctx.routes.replay_dead_letters(key.clone(), since).await?;
            let kept = (report.skipped > 0).then(|| {
                format!(
                    "{} dead letter(s) kept: they would be rejected again (payload too large or not valid JSON).",
                    report.skipped
                )
            });
            tracing::info!(endpoint = %key, %since, replayed = report.replayed, skipped = report.skipped, "replayed dead letters on request");
            ctx.publish_event(
                endpoint,
                false,
                "DeadLettersReplayed",
                format!(
                    "Queued {} dead letter(s) since {value} for delivery again.{}",
                    report.replayed,
                    kept.as_deref().map(|k| format!(" {k}")).unwrap_or_default()
                ),
            )
            .await;
            LastReplay {
                requested_since: value,
                time: Time(now),
                replayed: report.replayed as i64,
                message: kept,
            }
        }
    };
    ctx.record_request(endpoint, "lastReplay", &record, REPLAY_MANAGER)
        .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources::{WebhookEndpointSpec, WebhookEndpointStatus};

    fn endpoint(annotation: Option<&str>, done: Option<&str>) -> WebhookEndpoint {
        let spec: WebhookEndpointSpec = serde_json::from_value(json!({"url": "https://a.example"}))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut e = WebhookEndpoint::new("a", spec);
        if let Some(value) = annotation {
            e.metadata.annotations =
                Some([(REPLAY_ANNOTATION.to_string(), value.to_string())].into());
        }
        e.status = done.map(|value| WebhookEndpointStatus {
            last_replay: Some(LastReplay {
                requested_since: value.into(),
                time: Time(Timestamp::UNIX_EPOCH),
                replayed: 1,
                message: None,
            }),
            ..Default::default()
        });
        e
    }

    #[test]
    fn each_annotation_value_is_acted_on_once() {
        assert_eq!(pending_request(&endpoint(None, None)), None);
        let since = "2025-01-31T00:00:00Z";
        assert_eq!(
            pending_request(&endpoint(Some(since), None)),
            Some(ReplayRequest::Since {
                value: since.into(),
                since: Timestamp::from_second(1_738_281_600).unwrap_or(Timestamp::UNIX_EPOCH),
            })
        );
        assert_eq!(pending_request(&endpoint(Some(since), Some(since))), None);
        assert!(pending_request(&endpoint(Some("2025-02-01T00:00:00Z"), Some(since))).is_some());
        match pending_request(&endpoint(Some("yesterday"), None)) {
            Some(ReplayRequest::Invalid { problem, .. }) => {
                assert!(problem.contains(REPLAY_ANNOTATION), "{problem}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_predicate_sees_operator_annotations_not_status() {
        let plain = endpoint(None, None);
        let asked = endpoint(Some("2025-01-31T00:00:00Z"), None);
        let recorded = endpoint(Some("2025-01-31T00:00:00Z"), Some("2025-01-31T00:00:00Z"));
        let mut other = plain.clone();
        other.metadata.annotations = Some([("team".to_string(), "x".to_string())].into());
        assert_ne!(operator_annotations(&plain), operator_annotations(&asked));
        assert_eq!(
            operator_annotations(&asked),
            operator_annotations(&recorded)
        );
        assert_eq!(operator_annotations(&plain), operator_annotations(&other));
    }
}
