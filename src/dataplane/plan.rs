//! Where one event goes: the routing decision, made by the router for every endpoint and again
//! by an endpoint's FIFO queue for itself (see [`super::fifo_queue`]), with the same code so the
//! two never disagree on what an event is, whom it is for, or why it can never be delivered.

use async_nats::jetstream;
use jiff::Timestamp;

use super::{
    inbound::{Inbound, json_problem},
    job::{Job, TARGET_ENDPOINT},
    topology::{EVENTS_STREAM, parse_event_subject},
};
use crate::model::{
    CompiledRoutes, CompiledTenant, EndpointConfig, EndpointKey, filter::EventView,
    payload_schema::OnInvalid,
};

/// Limits applied to incoming events.
#[derive(Debug, Clone)]
pub struct EventLimits {
    pub max_payload_bytes: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        Self {
            max_payload_bytes: 256 * 1024,
        }
    }
}

/// Dead-letter reason of a payload that fails its event type's schema.
pub const SCHEMA_VALIDATION_FAILED: &str = "SchemaValidationFailed";

/// Why an event can never be delivered, whichever endpoint it goes to: `(reason, message)`.
/// Re-sent jobs (replay, redeliver) are held to the same rules.
pub fn rejection(job: &Job, limits: &EventLimits) -> Option<(&'static str, String)> {
    if let Some(problem) = too_large(job.payload.len(), limits) {
        return Some(problem);
    }
    json_problem(&job.content_type, &job.payload).map(|why| ("InvalidPayload", why))
}

/// `PayloadTooLarge`, for an event as routed and for a job re-sent alike.
fn too_large(size: usize, limits: &EventLimits) -> Option<(&'static str, String)> {
    (size > limits.max_payload_bytes).then(|| {
        (
            "PayloadTooLarge",
            format!(
                "payload of {size} bytes exceeds the limit of {} bytes",
                limits.max_payload_bytes
            ),
        )
    })
}

/// An endpoint an event is delivered to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub key: EndpointKey,
    /// Through the endpoint's FIFO queue, which reads the events stream itself: no job.
    pub in_order: bool,
}

/// What routing decided for one event.
#[derive(Debug)]
pub enum Plan {
    /// No subscription's patterns select it.
    Unrouted,
    /// Delivered to these endpoints (none when every filter turned it down).
    Deliver {
        job: Job,
        endpoints: Vec<Routed>,
        filtered_out: Vec<String>,
    },
    /// It can never be delivered: one dead letter per endpoint.
    Reject {
        job: Job,
        endpoints: Vec<EndpointKey>,
        reason: &'static str,
        why: String,
        filtered_out: Vec<String>,
    },
}

impl Plan {
    /// How many endpoints the event goes to (as a delivery or as a dead letter).
    pub fn endpoint_count(&self) -> usize {
        match self {
            Plan::Unrouted => 0,
            Plan::Deliver { endpoints, .. } => endpoints.len(),
            Plan::Reject { endpoints, .. } => endpoints.len(),
        }
    }

    /// Names of the endpoints the event goes to (as a delivery or as a dead letter).
    pub fn endpoint_names(&self) -> Vec<String> {
        match self {
            Plan::Unrouted => Vec::new(),
            Plan::Deliver { endpoints, .. } => {
                endpoints.iter().map(|e| e.key.name.clone()).collect()
            }
            Plan::Reject { endpoints, .. } => endpoints.iter().map(|e| e.name.clone()).collect(),
        }
    }

    /// The job for `endpoint`, if the event is delivered to it (by job or in order).
    pub fn job_for(&self, endpoint: &str) -> Option<&Job> {
        match self {
            Plan::Deliver { job, endpoints, .. } => endpoints
                .iter()
                .any(|e| e.key.name == endpoint)
                .then_some(job),
            _ => None,
        }
    }
}

/// The events stream's creation time (unix seconds): part of the ids of events published
/// without one (see [`EventMessage::read`]).
pub async fn events_epoch(js: &jetstream::Context) -> Result<i64, String> {
    let mut stream = js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| e.to_string())?;
    let info = stream.info().await.map_err(|e| e.to_string())?;
    Ok(info.created.unix_timestamp())
}

/// Why a message of the events stream is not an event.
#[derive(Debug, thiserror::Error)]
pub enum UnreadableEvent {
    #[error("event subject {0:?} has no event type; expected events.<namespace>.<event-type>")]
    Subject(String),
    #[error("not a JetStream message: {0}")]
    Info(String),
}

/// An event as read from the events stream, the one input of every routing decision.
pub struct EventMessage<'a> {
    pub tenant: &'a str,
    pub sequence: u64,
    /// Times JetStream delivered the message to this consumer (1 the first time).
    pub delivered: i64,
    pub published: Timestamp,
    /// `Webhook-Target-Endpoint`: a send-test for that endpoint only, whatever it subscribes to.
    pub target: Option<String>,
    pub event: Inbound<'a>,
}

impl<'a> EventMessage<'a> {
    /// Reads `message`; `stream_created` (the events stream's creation, unix seconds) names an
    /// event without a publisher-chosen id by its stream position, the same for every reader.
    pub fn read(
        message: &'a jetstream::Message,
        stream_created: i64,
        limits: &EventLimits,
    ) -> Result<Self, UnreadableEvent> {
        let info = message
            .info()
            .map_err(|e| UnreadableEvent::Info(e.to_string()))?;
        let sequence = info.stream_sequence;
        let delivered = info.delivered;
        let published = Timestamp::from_nanosecond(info.published.unix_timestamp_nanos())
            .unwrap_or_else(|_| Timestamp::now());
        let (tenant, event_type) = parse_event_subject(&message.subject)
            .ok_or_else(|| UnreadableEvent::Subject(message.subject.to_string()))?;
        let target = message
            .headers
            .as_ref()
            .and_then(|h| h.get(TARGET_ENDPOINT))
            .map(|v| v.as_str().to_owned());
        let event = Inbound::read(
            tenant,
            event_type,
            message.headers.as_ref(),
            &message.payload,
            limits.max_payload_bytes,
            || format!("evt_{stream_created:x}_{sequence}"),
        );
        Ok(Self {
            tenant,
            sequence,
            delivered,
            published,
            target,
            event,
        })
    }

    /// What `endpoint`'s FIFO queue delivers of this event: its job, when the event goes to
    /// the endpoint and is not a send-test (those go as jobs). Whether the endpoint is FIFO in
    /// `routes` does not matter: around a change of `ordering`, routers and the queue may not
    /// see the same routes, and the event may then have a job too (a duplicate), but skipping
    /// it could lose it.
    pub fn queued_job(
        &self,
        routes: &CompiledRoutes,
        limits: &EventLimits,
        endpoint: &str,
    ) -> Option<Job> {
        if self.target.is_some() {
            return None;
        }
        self.plan(routes, limits).job_for(endpoint).cloned()
    }

    /// Where the event goes under `routes`.
    pub fn plan(&self, routes: &CompiledRoutes, limits: &EventLimits) -> Plan {
        match (routes.tenant(self.tenant), &self.target) {
            (Some(compiled), None) => self.plan_subscribed(compiled, limits),
            // A send-test event: that one endpoint, if the tenant has it.
            (Some(compiled), Some(name)) => self.plan_test(compiled, name, limits),
            (None, _) => Plan::Unrouted,
        }
    }

    /// A send-test event goes to the one endpoint it names, if the tenant has it, as a job even
    /// to a FIFO endpoint (re-sends are outside the order); an event that can never be
    /// delivered is dead-lettered there.
    fn plan_test(&self, routes: &CompiledTenant, name: &str, limits: &EventLimits) -> Plan {
        let Some(endpoint) = routes.routes.endpoint(name) else {
            return Plan::Unrouted;
        };
        let key = EndpointKey::new(self.tenant, &endpoint.name);
        let job = self.event.job(self.published);
        match reject_reason(&self.event, false, limits) {
            Some((reason, why)) => Plan::Reject {
                job,
                endpoints: vec![key],
                reason,
                why,
                filtered_out: Vec::new(),
            },
            None => Plan::Deliver {
                job,
                endpoints: vec![Routed {
                    key,
                    in_order: false,
                }],
                filtered_out: Vec::new(),
            },
        }
    }

    /// Nowhere, to the endpoints whose subscriptions' patterns select the event and whose
    /// filters let it through, or to their dead letters. No I/O: the routes bench measures
    /// exactly this.
    pub fn plan_subscribed(&self, routes: &CompiledTenant, limits: &EventLimits) -> Plan {
        let event = &self.event;
        let subscribed = routes.subscribed(&event.event_type);
        if subscribed.is_empty() {
            return Plan::Unrouted;
        }
        let key = |e: &EndpointConfig| EndpointKey::new(self.tenant, &e.name);
        let mut job = event.job(self.published);
        let schema = routes.schema(&event.event_type);
        // A broken event goes to every subscriber's dead letters: filters cannot judge it.
        let need_body = subscribed.has_filters() || schema.is_some();
        if let Some((reason, why)) = reject_reason(event, need_body, limits) {
            return Plan::Reject {
                job,
                endpoints: subscribed.endpoints().into_iter().map(key).collect(),
                reason,
                why,
                filtered_out: Vec::new(),
            };
        }
        let selection = subscribed.select(event);
        let filtered_out = selection
            .filtered_out
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        if let Some(schema) = schema
            && !selection.endpoints.is_empty()
            && let Err(error) = schema.check(event.body())
        {
            match schema.on_invalid {
                OnInvalid::DeadLetter => {
                    return Plan::Reject {
                        job,
                        endpoints: selection.endpoints.into_iter().map(key).collect(),
                        reason: SCHEMA_VALIDATION_FAILED,
                        why: format!(
                            "payload does not match the schema of event type {}: {error}",
                            event.event_type
                        ),
                        filtered_out,
                    };
                }
                OnInvalid::Deliver => job.schema_invalid = true,
            }
        }
        Plan::Deliver {
            job,
            endpoints: selection
                .endpoints
                .into_iter()
                .map(|e| Routed {
                    key: key(e),
                    in_order: e.is_fifo(),
                })
                .collect(),
            filtered_out,
        }
    }
}

/// Events that can never be delivered, whichever endpoint they go to.
fn reject_reason(
    event: &Inbound<'_>,
    need_body: bool,
    limits: &EventLimits,
) -> Option<(&'static str, String)> {
    if let Some(problem) = too_large(event.payload_len(), limits) {
        return Some(problem);
    }
    if let Some(why) = &event.invalid_cloudevent {
        return Some(("InvalidCloudEvent", why.clone()));
    }
    event
        .json_error(need_body)
        .map(|why| ("InvalidPayload", why))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::model::{Route, TenantRoutes};

    fn routes() -> CompiledRoutes {
        let endpoint = |name: &str, ordering: &str| -> EndpointConfig {
            serde_json::from_value(serde_json::json!({
                "name": name,
                "url": "https://a.example",
                "secret": { "name": "s", "key": "secret" },
                "timeout": "5s",
                "retry": { "maxAttempts": 3, "initialBackoff": "1s", "maxBackoff": "1m", "maxAge": "1h" },
                "maxInFlight": 4,
                "ordering": ordering,
            }))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let route = |endpoint: &str| Route {
            subscription: endpoint.into(),
            endpoint: endpoint.into(),
            event_types: vec!["order.*".into()],
            filter: None,
        };
        let tenant = TenantRoutes {
            tenant: "acme".into(),
            endpoints: vec![
                endpoint("ordered", "fifo"),
                endpoint("parallel", "unordered"),
            ],
            routes: vec![route("ordered"), route("parallel")],
            schemas: Vec::new(),
        };
        let compiled = CompiledTenant::compile(Arc::new(tenant)).unwrap_or_else(|e| panic!("{e}"));
        CompiledRoutes {
            tenants: [("acme".to_string(), Arc::new(compiled))].into(),
        }
    }

    fn event<'a>(payload: &'a Bytes, target: Option<&str>) -> EventMessage<'a> {
        EventMessage {
            tenant: "acme",
            sequence: 7,
            delivered: 1,
            published: Timestamp::UNIX_EPOCH,
            target: target.map(str::to_owned),
            event: Inbound::read("acme", "order.paid", None, payload, 1024, || "evt_1".into()),
        }
    }

    #[test]
    fn fifo_endpoints_take_their_events_in_order_and_send_tests_as_jobs() {
        let routes = routes();
        let limits = EventLimits::default();
        let payload = Bytes::from_static(b"{}");
        let plan = event(&payload, None).plan(&routes, &limits);
        assert_eq!(plan.endpoint_names(), ["ordered", "parallel"]);
        let Plan::Deliver { endpoints, .. } = &plan else {
            panic!("{plan:?}")
        };
        let in_order: Vec<bool> = endpoints.iter().map(|e| e.in_order).collect();
        assert_eq!(in_order, [true, false], "no job for the FIFO endpoint");
        let queued = event(&payload, None).queued_job(&routes, &limits, "ordered");
        assert_eq!(queued.map(|j| j.event_id), Some("evt_1".to_owned()));
        assert!(plan.job_for("other").is_none());

        let test = event(&payload, Some("ordered"));
        let plan = test.plan(&routes, &limits);
        assert!(
            matches!(&plan, Plan::Deliver { endpoints, .. } if endpoints.len() == 1 && !endpoints[0].in_order),
            "a send-test is a job, outside the order: {plan:?}"
        );
        assert!(test.queued_job(&routes, &limits, "ordered").is_none());
    }

    #[test]
    fn events_that_can_never_be_delivered_stay_the_routers_business() {
        let payload = Bytes::from(vec![b' '; 2048]);
        let plan = event(&payload, None).plan(
            &routes(),
            &EventLimits {
                max_payload_bytes: 1024,
            },
        );
        assert!(matches!(
            &plan,
            Plan::Reject {
                reason: "PayloadTooLarge",
                ..
            }
        ));
        assert_eq!(plan.endpoint_names(), ["ordered", "parallel"]);
        assert!(plan.job_for("ordered").is_none(), "a FIFO queue skips it");
    }
}
